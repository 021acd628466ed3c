"""Pieces with rules of their own: the Prefer header, the network policy, OpenAPI 3.0 conversion,
input occurrences, settings."""

from __future__ import annotations

import pytest

from ogcflow.api.openapi import to_oas30
from ogcflow.api.prefer import parse_prefer
from ogcflow.errors import InvalidInput
from ogcflow.models import Execute, InputDescription, Process
from ogcflow.netpolicy import URLRefused, check_url
from ogcflow.processes.inputs import check_request, resolve_inputs
from ogcflow.settings import Settings


@pytest.mark.parametrize(("headers", "async_", "wait", "ret"), [
    (["respond-async"], True, None, None),
    (["respond-async;return=representation"], True, None, "representation"),
    (["respond-async, wait=100"], True, 100.0, None),
    (["wait=5", "respond-async"], True, 5.0, None),
    (["return=minimal"], False, None, "minimal"),
    (["RESPOND-ASYNC ; return = representation"], True, None, "representation"),
    (["respond-sync"], False, None, None),
    ([""], False, None, None),
])
def test_prefer(headers: list[str], async_: bool, wait: float | None, ret: str | None) -> None:
    prefs = parse_prefer(headers)
    assert prefs.respond_async is async_
    assert prefs.wait == wait
    assert prefs.return_ == ret


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost:8080/", "http://10.1.2.3/",
                                 "http://192.168.0.1/", "http://169.254.169.254/latest/meta-data",
                                 "http://[::1]/", "file:///etc/passwd", "gopher://example.com/",
                                 "http:///nohost"])
def test_private_and_odd_urls_are_refused(url: str) -> None:
    with pytest.raises(URLRefused):
        check_url(url, Settings(allow_private_urls=False).network)


def test_policy_can_be_relaxed() -> None:
    check_url("http://127.0.0.1:9/x", Settings(allow_private_urls=True).network)
    check_url("http://127.0.0.1:9/x", Settings(allowed_hosts=["127.0.0.1"]).network)
    with pytest.raises(URLRefused):
        check_url("ftp://127.0.0.1/x", Settings(allow_private_urls=True).network)


def test_callbacks_to_private_targets_are_refused_by_default(tmp_path) -> None:
    import httpx

    from ogcflow.jobs.callbacks import deliver_due
    from ogcflow.store import migrate
    from ogcflow.wiring import build

    settings = Settings(data_dir=tmp_path)
    migrate(settings.store.db_url)
    rt = build(settings).rt
    rt.store.callbacks.queue("job-1", "http://127.0.0.1:9/hook", {"a": 1})
    with httpx.Client() as client:
        assert deliver_due(rt, client) == 1
    [cb] = rt.store.callbacks.of_job("job-1")
    assert cb.state == "failed" and cb.last_error and "private" in cb.last_error
    rt.close()


def test_to_oas30() -> None:
    src = {"anyOf": [{"type": "string"}, {"type": "null"}], "examples": ["a"]}
    assert to_oas30(src) == {"type": "string", "nullable": True, "example": "a"}
    assert to_oas30({"const": 3}) == {"enum": [3]}
    assert to_oas30({"type": "number", "exclusiveMinimum": 0}) == {"type": "number", "minimum": 0,
                                                                   "exclusiveMinimum": True}
    assert to_oas30({"type": "object", "required": []}) == {"type": "object"}


ARRAY_PROCESS = Process(id="p", version="1", inputs={
    "list": InputDescription(schema={"type": "array", "items": {"type": "integer"}}),
    "many": InputDescription(schema={"type": "integer"}, minOccurs=2, maxOccurs="unbounded"),
    "opt": InputDescription(schema={"type": "string", "default": "d"}, minOccurs=0),
})


def test_occurrences_and_defaults() -> None:
    req = Execute(inputs={"list": [1, 2], "many": [3, 4, 5]})
    check_request(ARRAY_PROCESS, req)
    resolved = resolve_inputs(ARRAY_PROCESS, req.inputs, fetch=None)
    assert resolved == {"list": [1, 2], "many": [3, 4, 5], "opt": "d"}
    with pytest.raises(InvalidInput, match="'many' needs at least 2"):
        check_request(ARRAY_PROCESS, Execute(inputs={"list": [1], "many": 3}))
    with pytest.raises(InvalidInput, match=r"'list'\[1\]"):
        check_request(ARRAY_PROCESS, Execute(inputs={"list": [1, "x"], "many": [1, 2]}))


def test_settings_from_yaml(tmp_path, monkeypatch) -> None:
    cfg = tmp_path / "ogcflow.yml"
    cfg.write_text("title: From YAML\nsync_timeout: 12\n")
    monkeypatch.setenv("OGCFLOW_CONFIG", str(cfg))
    monkeypatch.setenv("OGCFLOW_SYNC_TIMEOUT", "7")
    settings = Settings()
    assert settings.server.title == "From YAML"
    assert settings.server.sync_timeout == 7  # the environment wins


SCALAR_SCHEMAS = [
    {"type": "string"}, {"type": "string", "minLength": 2, "maxLength": 3}, {"type": "string", "enum": ["a", "b"]},
    {"type": "number", "minimum": 0, "maximum": 10}, {"type": "number", "minimum": 0, "exclusiveMinimum": True},
    {"type": "number", "maximum": 1, "exclusiveMaximum": True}, {"type": "integer", "minimum": 1},
    {"type": "boolean"},
    # annotations do not constrain: the quick check takes these too (hello-world's inputs are like this)
    {"type": "string", "minLength": 1, "maxLength": 3, "example": "World", "examples": ["a"], "$comment": "x",
     "deprecated": False, "readOnly": False, "writeOnly": False},
]
VALUES = ["", "a", "abc", "abcd", 0, 1, 1.0, 0.5, 10, 11, -1, True, False, None, [], {}]


@pytest.mark.parametrize("schema", SCALAR_SCHEMAS)
def test_quick_scalar_check_agrees_with_jsonschema(schema: dict) -> None:
    from ogcflow.processes.inputs import _scalar_check, validator_for

    for value in VALUES:
        quick = _scalar_check(schema, value)
        assert quick is not None
        assert (quick == "") == validator_for(schema).is_valid(value), (schema, value, quick)


def test_a_failed_job_keeps_no_partial_files(tmp_path) -> None:
    from ogcflow import models
    from ogcflow.errors import ProcessError
    from ogcflow.jobs.execution import new_job, run_job
    from ogcflow.processes.base import JobContext
    from ogcflow.processes.base import Process as BaseProcess
    from ogcflow.store import migrate
    from ogcflow.wiring import build

    class HalfWay(BaseProcess):
        description = models.Process(id="half-way", version="1", inputs={}, outputs={})

        def execute(self, inputs: dict, ctx: JobContext) -> dict:
            assert ctx.storage is not None
            ctx.storage.put_bytes(ctx.job_id, "catalog/item/otsu.tif", b"half a catalog")
            raise ProcessError("the upload broke off")

    settings = Settings(data_dir=tmp_path)
    migrate(settings.store.db_url)
    rt = build(settings).rt
    rt.catalog.builtins.add(HalfWay())
    job = new_job(HalfWay.description, models.Execute(inputs={}), mode="async", namespace="default",
                  engine="local", base_url="http://x")
    rt.store.jobs.create(job)
    assert rt.store.jobs.mark_running(job.id)
    running = rt.store.jobs.get(job.id, "default")
    assert running is not None
    assert run_job(rt, running).value == "failed"
    ended = rt.store.jobs.get(job.id, "default")
    assert ended is not None and ended.message == "the upload broke off"
    assert rt.storage.list_job(job.id) == []
    rt.close()


def test_an_unreachable_object_store_is_a_clear_503(monkeypatch) -> None:
    import socket

    from ogcflow.storage.s3 import S3Storage, StorageUnavailable

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    storage = S3Storage("s3://results")
    with pytest.raises(StorageUnavailable, match="the results storage could not be reached") as info:
        storage.put_bytes("job-1", "a.json", b"{}")
    assert info.value.status == 503


def test_example_requests_are_valid_requests() -> None:
    """The example of every built-in process (what the HTML form starts with and /api offers) is accepted."""
    from ogcflow.processes.builtin import builtin_processes
    from ogcflow.processes.examples import example_request, schema_example

    for process in builtin_processes():
        example = example_request(process.description)
        check_request(process.description, Execute.model_validate(example))
    hello = builtin_processes().get("hello-world")
    assert example_request(hello.description) == {"inputs": {"name": "World", "message": "Welcome to ogcflow."}}
    # made from the type when nothing is declared: bounds, formats, required properties, minItems
    assert schema_example({"type": "integer", "minimum": 3}) == 3
    assert schema_example({"type": "string", "format": "uri"}).startswith("https://")
    assert schema_example({"type": "array", "minItems": 2, "items": {"type": "boolean"}}) == [False, False]
    assert schema_example({"type": "object", "required": ["a"], "properties": {
        "a": {"enum": ["x", "y"]}, "b": {"type": "number"}}}) == {"a": "x"}
    assert schema_example({"oneOf": [{"type": "number", "default": 1.5}, {"type": "string"}]}) == 1.5


def test_expected_steps_of_a_scattered_workflow() -> None:
    """CWL progress: the tool runs of water-bodies, counted before the run (scatter over items and bands)."""
    from ogcflow.eo.packages import shipped_package
    from ogcflow.packages.runner import expected_steps, load_package, package_file

    wf = load_package(package_file(shipped_package("water-bodies")), "water-bodies")
    # per item: crop per band, norm_diff, otsu; then one stac step
    assert expected_steps(wf, {"aoi": "0,0,1,1", "stac_items": ["a", "b", "c"]}) == 3 * 4 + 1
    assert expected_steps(wf, {"aoi": "0,0,1,1", "stac_items": ["a"], "bands": ["g", "n", "r"]}) == 5 + 1


def test_area_of_interest_of_a_job() -> None:
    from ogcflow.api.routes.jobs import area_of_interest

    assert area_of_interest({"aoi": "-121.4,40.2,-121.3,40.3", "epsg": "EPSG:4326"}) == [-121.4, 40.2, -121.3, 40.3]
    assert area_of_interest({"where": {"bbox": [0, 1, 5, 2, 3, 9]}}) == [0.0, 1.0, 2.0, 3.0]
    assert area_of_interest({"name": "1,2,3,4"}) is None  # a string named like no area
    assert area_of_interest({"aoi": "a,b,c,d"}) is None


def test_a_package_declares_itself_idempotent_with_a_cwl_hint() -> None:
    from ogcflow.packages.cwl import lost_reruns

    tool = "cwlVersion: v1.2\nclass: CommandLineTool\nid: t\nbaseCommand: [true]\ninputs: []\noutputs: []\n"
    assert lost_reruns(tool, "t") == 0
    ns = "$namespaces: {ogcflow: 'https://ogcflow.dev/cwl#'}\n"
    assert lost_reruns(tool + ns + "hints:\n  ogcflow:Idempotent: {}\n", "t") == 1
    assert lost_reruns(tool + ns + "hints:\n  - {class: 'ogcflow:Idempotent', reruns: 3}\n", "t") == 3
    assert lost_reruns(tool + ns + "hints:\n  - {class: 'ogcflow:Idempotent', reruns: 99}\n", "t") == 5
    other = "$namespaces: {of: 'https://ogcflow.dev/cwl#'}\nhints:\n  of:Idempotent: {reruns: 2}\n"
    assert lost_reruns(tool + other, "t") == 2
    assert lost_reruns(tool + ns + "hints:\n  ogcflow:NotIdempotent: {}\n", "t") == 0
    graph = ("cwlVersion: v1.2\n" + ns + "$graph:\n"
             "  - {class: CommandLineTool, id: a, baseCommand: [true], inputs: [], outputs: [],\n"
             "     hints: [{class: 'ogcflow:Idempotent'}]}\n"
             "  - {class: CommandLineTool, id: b, baseCommand: [true], inputs: [], outputs: []}\n")
    assert (lost_reruns(graph, "a"), lost_reruns(graph, "b")) == (1, 0)
    assert lost_reruns("not: [cwl", "t") == 0


def test_the_prefect_parameter_schema_of_a_process() -> None:
    """The deployment of a process shows its inputs as Prefect parameters: literals as form fields,
    documents by value or by reference, repeatable inputs as lists, required as the description says."""
    from ogcflow.engines.prefect_deploy import parameter_schema

    process = Process(id="p", version="1", inputs={
        "n": InputDescription(title="N", schema={"type": "integer", "maximum": 5}),
        "doc": InputDescription(title="Doc", schema={"type": "object"}, minOccurs=0),
        "tags": InputDescription(title="Tags", schema={"type": "string"}, maxOccurs="unbounded"),
        "two": InputDescription(title="Two", schema={"type": "number"}, minOccurs=2, maxOccurs=3),
        "d": InputDescription(title="D", schema={"type": "string", "default": "x"}),
    })
    schema = parameter_schema(process)
    props = schema["properties"]
    assert schema["required"] == ["n", "tags", "two"]
    assert props["n"] == {"type": "integer", "maximum": 5, "title": "N", "position": 0}
    assert props["doc"]["anyOf"][0] == {"type": "object"} and props["doc"]["anyOf"][1]["required"] == ["href"]
    assert props["tags"]["anyOf"][0]["type"] == "string" and props["tags"]["anyOf"][1]["type"] == "array"
    assert props["two"] == {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 3,
                            "title": "Two", "position": 3}
    assert props["d"]["default"] == "x"


@pytest.mark.parametrize("member", [{"retries": -1}, {"retries": True}, {"retryDelaySeconds": "5"},
                                    {"workQueue": ""}, {"workQueue": "a%b"}, {"other": 1}, "gpu"])
def test_a_bad_prefect_member_of_an_execute_request_is_a_400(member: object) -> None:
    from ogcflow.errors import InvalidParameter
    from ogcflow.jobs.execution import run_options

    with pytest.raises(InvalidParameter):
        run_options(Execute.model_validate({"inputs": {}, "prefect": member}))


def test_the_prefect_member_of_an_execute_request_overrides_the_process() -> None:
    from ogcflow.engines.prefect_deploy import run_policy
    from ogcflow.jobs.execution import run_options
    from ogcflow.settings import ProcessRuns

    asked = run_options(Execute.model_validate({"prefect": {"retries": 0, "workQueue": "gpu"}}))
    policy = run_policy(asked, ProcessRuns(retries=3, retry_delay_seconds=10, work_queue="cpu"))
    assert (policy.retries, policy.retry_delay_seconds, policy.work_queue) == (0, 10, "gpu")
    assert run_policy(None, None).retries == 0


def test_a_job_id_is_a_random_version_4_uuid() -> None:
    import uuid

    from ogcflow.domain import new_job_id

    ids = [new_job_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        u = uuid.UUID(text)
        assert (u.version, u.variant, str(u)) == (4, uuid.RFC_4122, text)


@pytest.mark.parametrize("depth, deep", [(64, False), (65, True)])
@pytest.mark.parametrize("kind", ["object", "array"])
def test_the_body_depth_limit_is_exact(depth: int, deep: bool, kind: str) -> None:
    """The request body's nesting limit holds at its boundary, whether or not the walk is skipped for
    bodies with few brackets (a body of exactly the limit's depth has as many brackets as the limit)."""
    import asyncio

    import orjson
    from starlette.requests import Request

    from ogcflow.api.routes.processes import MAX_DEPTH, read_json_body

    assert depth in (MAX_DEPTH, MAX_DEPTH + 1)
    value: object = "x"
    for _ in range(depth):
        value = {"a": value} if kind == "object" else [value]
    body = orjson.dumps(value)

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request({"type": "http", "method": "POST", "headers": [(b"content-type", b"application/json")]},
                      receive)
    if deep:
        with pytest.raises(InvalidInput, match="nested more than 64"):
            asyncio.run(read_json_body(request, 1 << 20))
    else:
        assert asyncio.run(read_json_body(request, 1 << 20)) == value


def test_a_schema_with_several_types_goes_to_the_full_validator() -> None:
    """JSON Schema draft 4 allows ``type`` to be a list (an optional CWL input may be described so)."""
    process = Process(id="p", version="1", inputs={"x": InputDescription(schema={"type": ["string", "null"]})},
                      outputs={})
    check_request(process, Execute(inputs={"x": "text"}))
    check_request(process, Execute(inputs={"x": None}))
    with pytest.raises(InvalidInput, match="'x'"):
        check_request(process, Execute(inputs={"x": 3}))
