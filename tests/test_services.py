"""The service layer in-process (no HTTP): JobService and ProcessService on a real store, results storage and
local engine (no worker runs here, so queued jobs stay accepted)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ogcflow import models
from ogcflow.domain import Caller, ExecutionPreferences, JobFilter, OutputEntry, Role
from ogcflow.errors import (
    ExceptionType,
    InvalidInput,
    InvalidParameter,
    NoSuchJob,
    NoSuchProcess,
    OGCError,
    ResultNotReady,
)
from ogcflow.jobs.recorder import JobRecorder
from ogcflow.models import JobControlOption, StatusCode
from ogcflow.packages.cwl import InvalidPackage
from ogcflow.processes.base import JobContext, Process
from ogcflow.services.jobs import JobService, choose_mode
from ogcflow.services.processes import ProcessService
from ogcflow.settings import Settings
from ogcflow.store import migrate
from ogcflow.wiring import Server, build, make_engine

BASE = "http://ogcflow.test/api"


#: callers of the tests' namespaces (deployers: they may do everything there, so only the namespace matters)
A, B, X, Y = (Caller(ns, subject=f"tester-{ns}", role=Role.deployer) for ns in "abxy")

def make_server(data_dir: Path, **flat: Any) -> Server:
    settings = Settings(data_dir=data_dir, default_packages=[], **flat)
    migrate(settings.store.db_url)
    return build(settings)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path / "data")
    yield srv
    srv.close()


def job_service(server: Server) -> JobService:
    """Made inside the event loop that uses it (the recorder's task lives there)."""
    rt = server.rt
    return JobService(rt, make_engine(rt), JobRecorder(rt.store.jobs))


def process(server: Server, process_id: str, namespace: str = "a") -> Process:
    return server.processes().get(Caller(namespace), process_id).process


# -- JobService ---------------------------------------------------------------------------------------------


def test_inline_sync_execution_is_recorded_in_its_namespace_only(server: Server) -> None:
    async def scenario() -> None:
        svc = job_service(server)
        hello = process(server, "hello-world")
        request = models.Execute(inputs={"name": "Ada", "message": "Welcome."})
        ex = await svc.execute(A, hello, request, ExecutionPreferences(), BASE)
        assert ex.done is True and ex.mode == "sync" and ex.applied == []
        job = ex.job
        assert job.status is StatusCode.successful and job.engine == "inline" and job.namespace == "a"
        assert job.results == {"greeting": OutputEntry(media_type="text/plain", value="Hello Ada! Welcome.")}
        assert job.progress == 100 and job.finished is not None and job.duration is not None
        assert ex.location == f"{BASE}/jobs/{job.id}"

        await svc.recorder.flush()
        stored = await svc.get(A, job.id)
        assert stored.status is StatusCode.successful and stored.mode == "sync"
        assert stored.results == job.results and stored.request.inputs == request.inputs
        assert (await svc.successful(A, job.id)).id == job.id
        assert await svc.output(A, job.id, "greeting") == (b"Hello Ada! Welcome.", "text/plain; charset=utf-8")
        for call in (svc.get, svc.finished, svc.successful, svc.dismiss):
            with pytest.raises(NoSuchJob) as err:
                await call(B, job.id)
            assert err.value.status == 404
        with pytest.raises(NoSuchJob):
            await svc.output(B, job.id, "greeting")
        assert (await svc.find(B, JobFilter(namespace="b"))).jobs == []
        assert server.rt.store.jobs.count("a") == 1 and server.rt.store.jobs.count("b") == 0
        assert (await svc.get(A, job.id)).status is StatusCode.successful  # b's dismiss changed nothing

    asyncio.run(scenario())


@pytest.mark.parametrize(("process_id", "inputs", "prefs", "named"), [
    ("hello-world", {}, ExecutionPreferences(), "'name' is required"),
    ("hello-world", {"name": ""}, ExecutionPreferences(), "'name'"),
    ("hello-world", {"name": "Ada", "nmae": "typo"}, ExecutionPreferences(), "unknown input 'nmae'"),
    ("hello-world", {"name": 7}, ExecutionPreferences(), "'name'"),
    ("sleep", {"seconds": "soon"}, ExecutionPreferences(respond_async=True), "'seconds'"),
    ("sleep", {"seconds": -1}, ExecutionPreferences(respond_async=True), "'seconds'"),
    ("sleep", {"seconds": 1}, ExecutionPreferences(wait=1), None),  # an unknown output, below
])
def test_invalid_inputs_raise_and_create_no_job(server: Server, process_id: str, inputs: dict[str, Any],
                                                prefs: ExecutionPreferences, named: str | None) -> None:
    async def scenario() -> None:
        svc = job_service(server)
        request = models.Execute(inputs=inputs)
        if named is None:
            request = models.Execute(inputs=inputs, outputs={"nope": models.OutputRequest()})
        with pytest.raises(InvalidInput) as err:
            await svc.execute(A, process(server, process_id), request, prefs, BASE)
        assert err.value.status == 400 and err.value.type == ExceptionType.INVALID_INPUT
        assert (named or "unknown output 'nope'") in err.value.detail
        await svc.recorder.flush()
        assert server.rt.store.jobs.count("a") == 0
        assert server.rt.store.jobs.find(JobFilter(namespace="a")) == []

    asyncio.run(scenario())


def test_async_submission_stays_accepted_and_is_dismissed_in_its_namespace(server: Server) -> None:
    async def scenario() -> None:
        svc = job_service(server)
        sleep = process(server, "sleep")
        ex = await svc.execute(A, sleep, models.Execute(inputs={"seconds": 30}),
                               ExecutionPreferences(respond_async=True), BASE)
        assert ex.done is False and ex.mode == "async" and ex.applied == ["respond-async"]
        assert ex.job.status is StatusCode.accepted and ex.location == f"{BASE}/jobs/{ex.job.id}"
        job_id = ex.job.id
        stored = await svc.get(A, job_id)
        assert stored.status is StatusCode.accepted and stored.engine == "local" and stored.mode == "async"
        assert stored.request.inputs == {"seconds": 30} and stored.request.base_url == BASE
        waited = await svc.wait(A, job_id, 0.1)  # no worker: still accepted once the wait is over
        assert waited.status is StatusCode.accepted

        for call in (svc.finished, svc.successful):
            with pytest.raises(ResultNotReady) as err:
                await call(A, job_id)
            assert err.value.status == 404 and err.value.type == ExceptionType.RESULT_NOT_READY
        with pytest.raises(ResultNotReady):
            await svc.output(A, job_id, "slept")
        with pytest.raises(ResultNotReady):
            await svc.log(A, job_id)

        with pytest.raises(NoSuchJob):
            await svc.dismiss(B, job_id)
        assert (await svc.get(A, job_id)).status is StatusCode.accepted

        dismissed = await svc.dismiss(A, job_id)
        assert dismissed.id == job_id and dismissed.status is StatusCode.dismissed
        assert dismissed.message == "dismissed by the user"
        assert (await svc.get(A, job_id)).status is StatusCode.dismissed
        with pytest.raises(NoSuchJob):
            await svc.finished(A, job_id)
        with pytest.raises(NoSuchJob):
            await svc.dismiss(B, job_id)
        with pytest.raises(NoSuchJob):
            await svc.get(B, job_id)

    asyncio.run(scenario())


def test_sync_request_of_a_queued_process_answers_after_its_wait(server: Server) -> None:
    async def scenario() -> None:
        svc = job_service(server)
        started = time.monotonic()
        ex = await svc.execute(A, process(server, "sleep"), models.Execute(inputs={"seconds": 30}),
                               ExecutionPreferences(wait=0.3), BASE)
        elapsed = time.monotonic() - started
        assert ex.done is False and ex.mode == "sync" and ex.applied == ["wait=0.3"]
        assert ex.job.status is StatusCode.accepted
        assert 0.3 <= elapsed < 15
        stored = await svc.get(A, ex.job.id)
        assert stored.status is StatusCode.accepted and stored.mode == "sync"

    asyncio.run(scenario())


def test_find_pages_newest_first(server: Server) -> None:
    async def scenario() -> None:
        svc = job_service(server)
        hello = process(server, "hello-world")
        made = []
        for n in range(5):
            ex = await svc.execute(A, hello, models.Execute(inputs={"name": f"n{n}"}), ExecutionPreferences(), BASE)
            made.append(ex.job)
        sleep = await svc.execute(A, process(server, "sleep"), models.Execute(inputs={"seconds": 5}),
                                  ExecutionPreferences(respond_async=True), BASE)
        made.append(sleep.job)
        await svc.execute(B, hello, models.Execute(inputs={"name": "elsewhere"}), ExecutionPreferences(), BASE)
        await svc.recorder.flush()
        newest_first = [j.id for j in sorted(made, key=lambda j: (j.created, j.id), reverse=True)]

        pages = []
        for offset in (0, 2, 4):
            page = await svc.find(A, JobFilter(namespace="a", limit=2, offset=offset))
            pages.append(([j.id for j in page.jobs], page.more))
        assert pages == [(newest_first[0:2], True), (newest_first[2:4], True), (newest_first[4:6], False)]
        everything = await svc.find(A, JobFilter(namespace="a", limit=6))
        assert [j.id for j in everything.jobs] == newest_first and everything.more is False
        only_sleep = await svc.find(A, JobFilter(namespace="a", process_ids=["sleep"]))
        assert [j.id for j in only_sleep.jobs] == [sleep.job.id] and only_sleep.more is False
        accepted = await svc.find(A, JobFilter(namespace="a", statuses=[StatusCode.accepted]))
        assert [j.id for j in accepted.jobs] == [sleep.job.id]
        theirs = await svc.find(B, JobFilter(namespace="b"))
        assert len(theirs.jobs) == 1 and theirs.jobs[0].id not in newest_first

    asyncio.run(scenario())


def test_find_limit_is_capped_by_the_settings(tmp_path: Path) -> None:
    srv = make_server(tmp_path / "capped", job_list_max=2)

    async def scenario() -> None:
        svc = job_service(srv)
        hello = process(srv, "hello-world")
        for n in range(3):
            await svc.execute(A, hello, models.Execute(inputs={"name": f"n{n}"}), ExecutionPreferences(), BASE)
        await svc.recorder.flush()
        page = await svc.find(A, JobFilter(namespace="a", limit=100))
        assert len(page.jobs) == 2 and page.more is True

    try:
        asyncio.run(scenario())
    finally:
        srv.close()


def test_durable_sync_records_are_stored_before_the_answer(tmp_path: Path) -> None:
    srv = make_server(tmp_path / "durable", sync_record="durable")

    async def scenario() -> None:
        svc = job_service(srv)
        hello = process(srv, "hello-world")
        runs = await asyncio.gather(*(svc.execute(A, hello, models.Execute(inputs={"name": f"d{n}"}),
                                                  ExecutionPreferences(), BASE) for n in range(20)))
        assert not svc.recorder.pending  # nothing left to write after the answers
        assert srv.rt.store.jobs.count("a") == 20
        assert {srv.rt.store.jobs.get(r.job.id, "a").status for r in runs} == {StatusCode.successful}

    try:
        asyncio.run(scenario())
    finally:
        srv.close()


def test_idempotency_keys_are_kept_per_caller(server: Server) -> None:
    from ogcflow.domain import IdempotencyKey

    async def scenario() -> None:
        svc = job_service(server)
        sleep = process(server, "sleep")
        request = models.Execute(inputs={"seconds": 30})
        key = IdempotencyKey(key="same", fingerprint="f" * 64)
        prefs = ExecutionPreferences(respond_async=True)
        alice, bob = Caller("a", subject="alice"), Caller("a", subject="bob")
        first = await svc.execute(alice, sleep, request, prefs, BASE, key)
        again = await svc.execute(alice, sleep, request, prefs, BASE, key)
        theirs = await svc.execute(bob, sleep, request, prefs, BASE, key)
        assert again.job.id == first.job.id and again.replayed and not first.replayed
        assert theirs.job.id != first.job.id and not theirs.replayed
        assert server.rt.store.jobs.count("a") == 2
        with pytest.raises(OGCError) as err:
            await svc.execute(alice, sleep, request, prefs, BASE, IdempotencyKey(key="same", fingerprint="0" * 64))
        assert err.value.status == 422

    asyncio.run(scenario())


class Controlled(Process):
    def __init__(self, options: list[JobControlOption]) -> None:
        self.description = models.Process(id="controlled", version="1", jobControlOptions=options)

    def execute(self, inputs: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        return {}


SYNC, ASYNC, DISMISS = JobControlOption.sync_execute, JobControlOption.async_execute, JobControlOption.dismiss


@pytest.mark.parametrize(("options", "prefs", "mode", "applied"), [
    ([SYNC, ASYNC], ExecutionPreferences(), "sync", []),
    ([ASYNC, SYNC], ExecutionPreferences(), "sync", []),
    ([SYNC, ASYNC], ExecutionPreferences(respond_async=True), "async", ["respond-async"]),
    ([SYNC, ASYNC, DISMISS], ExecutionPreferences(respond_async=True, return_representation=True), "async",
     ["respond-async", "return=representation"]),
    ([SYNC, ASYNC], ExecutionPreferences(wait=5), "sync", ["wait=5"]),
    ([SYNC, ASYNC], ExecutionPreferences(wait=0.25), "sync", ["wait=0.25"]),
    ([ASYNC], ExecutionPreferences(), "async", []),
    ([ASYNC], ExecutionPreferences(respond_async=True), "async", ["respond-async"]),
    ([SYNC], ExecutionPreferences(respond_async=True), "sync", []),  # cannot be honoured: not applied
    ([SYNC, DISMISS], ExecutionPreferences(respond_async=True, wait=2), "sync", ["wait=2"]),
])
def test_choose_mode_honours_prefer_within_job_control_options(
        options: list[JobControlOption], prefs: ExecutionPreferences, mode: str, applied: list[str]) -> None:
    assert choose_mode(Controlled(options), prefs) == (mode, applied)


@pytest.mark.parametrize("prefs", [ExecutionPreferences(), ExecutionPreferences(respond_async=True)])
def test_choose_mode_refuses_a_process_that_cannot_be_executed(prefs: ExecutionPreferences) -> None:
    with pytest.raises(InvalidParameter) as err:
        choose_mode(Controlled([DISMISS]), prefs)
    assert err.value.status == 400 and "'controlled'" in err.value.detail


# -- ProcessService -------------------------------------------------------------------------------------

SAY = """cwlVersion: v1.2
class: CommandLineTool
id: say
label: Say
doc: Says the text.
baseCommand: echo
stdout: said.txt
inputs:
  text: {type: string, inputBinding: {position: 1}}
outputs:
  said: {type: stdout}
"""

#: two tools: 'say' (the first one) and 'shout'
GRAPH = """cwlVersion: v1.2
$graph:
- class: CommandLineTool
  id: say
  baseCommand: echo
  stdout: said.txt
  inputs: {text: {type: string, inputBinding: {position: 1}}}
  outputs: {said: {type: stdout}}
- class: CommandLineTool
  id: shout
  baseCommand: echo
  stdout: shouted.txt
  inputs: {text: {type: string, inputBinding: {position: 1}}}
  outputs: {shouted: {type: stdout}}
"""

CWL = "application/cwl+yaml"


def deploy(ps: ProcessService, caller: Caller, text: str, media: str = CWL,
           w: str | None = None) -> models.Process:
    return asyncio.run(ps.deploy(caller, text.encode(), media, w))


def test_a_deployed_process_belongs_to_its_namespace(server: Server) -> None:
    ps = server.processes()
    before = ps.version(A)
    described = deploy(ps, A, SAY)
    assert described.id == "say" and described.title == "Say" and "text" in described.inputs
    assert ps.version(A) != before
    offered = ps.get(A, "say")
    assert offered.mutable is True and offered.process.id == "say"
    assert set(offered.process.description.inputs) == {"text"}
    assert set(offered.process.description.outputs) == {"said"}
    assert "say" in [p.id for p in ps.all(A)]
    listed = {o.process.id: o.mutable for o in ps.page(A, 100, 0).processes}
    assert listed["say"] is True and listed["echo"] is False and listed["hello-world"] is False

    with pytest.raises(NoSuchProcess) as err:
        ps.get(B, "say")
    assert err.value.status == 404
    assert "say" not in [p.id for p in ps.all(B)]
    assert "say" not in [o.process.id for o in ps.page(B, 100, 0).processes]
    with pytest.raises(NoSuchProcess):
        asyncio.run(ps.package(B, "say", CWL))
    with pytest.raises(NoSuchProcess):
        asyncio.run(ps.undeploy(B, "say"))
    assert ps.get(A, "say").mutable is True  # b's undeploy left a's alone


def test_deploying_twice_is_a_duplicate(server: Server) -> None:
    ps = server.processes()
    deploy(ps, A, SAY)
    with pytest.raises(OGCError) as err:
        deploy(ps, A, SAY.replace("label: Say", "label: Say again"))
    assert err.value.status == 409 and err.value.type == ExceptionType.DUPLICATED_PROCESS
    assert ps.get(A, "say").process.description.title == "Say"  # the first deployment stands
    with pytest.raises(OGCError) as err:
        deploy(ps, A, SAY.replace("id: say", "id: echo"))  # a built-in's id
    assert err.value.status == 409 and err.value.type == ExceptionType.DUPLICATED_PROCESS
    assert deploy(ps, B, SAY).id == "say"  # the same id in another namespace is another process


def test_replace(server: Server) -> None:
    ps = server.processes()
    deploy(ps, A, SAY)
    changed = SAY.replace("label: Say", "label: Say it")
    asyncio.run(ps.replace(A, "say", changed.encode(), CWL, None))
    assert ps.get(A, "say").process.description.title == "Say it"
    assert asyncio.run(ps.package(A, "say", CWL)) == (changed, CWL)

    with pytest.raises(InvalidPackage) as err:
        asyncio.run(ps.replace(A, "other", SAY.encode(), CWL, None))
    assert err.value.status == 400
    with pytest.raises(InvalidPackage) as err:
        asyncio.run(ps.replace(A, "say", GRAPH.encode(), CWL, "shout"))
    assert err.value.status == 400 and "'shout', not 'say'" in err.value.detail
    assert asyncio.run(ps.package(A, "say", CWL)) == (changed, CWL)  # unchanged by the refused ones
    with pytest.raises(NoSuchProcess):
        ps.get(A, "other")
    with pytest.raises(NoSuchProcess):
        asyncio.run(ps.replace(B, "say", SAY.encode(), CWL, None))  # nothing to replace there


@pytest.mark.parametrize("builtin", ["echo", "hello-world", "sleep"])
def test_builtins_are_immutable(server: Server, builtin: str) -> None:
    ps = server.processes()
    assert ps.get(A, builtin).mutable is False
    for attempt in (lambda: ps.undeploy(A, builtin), lambda: ps.replace(A, builtin, SAY.encode(), CWL, None)):
        with pytest.raises(OGCError) as err:
            asyncio.run(attempt())
        assert err.value.status == 403 and err.value.type == ExceptionType.IMMUTABLE_PROCESS
    with pytest.raises(NoSuchProcess):
        asyncio.run(ps.package(A, builtin, CWL))
    assert ps.get(A, builtin).process.id == builtin


def test_undeploy(server: Server) -> None:
    ps = server.processes()
    deploy(ps, A, SAY)
    assert ps.get(A, "say").process.id == "say"  # built (and cached) before the undeploy
    before = ps.version(A)
    asyncio.run(ps.undeploy(A, "say"))
    assert ps.version(A) != before
    with pytest.raises(NoSuchProcess) as err:
        ps.get(A, "say")
    assert err.value.status == 404
    assert "say" not in [p.id for p in ps.all(A)]
    with pytest.raises(NoSuchProcess):
        asyncio.run(ps.package(A, "say", CWL))
    with pytest.raises(NoSuchProcess):
        asyncio.run(ps.undeploy(A, "say"))
    assert deploy(ps, A, SAY).id == "say"  # may be deployed again


def test_package_as_deployed_or_as_json(server: Server) -> None:
    ps = server.processes()
    deploy(ps, A, SAY)
    assert asyncio.run(ps.package(A, "say", CWL)) == (SAY, CWL)
    assert asyncio.run(ps.package(A, "say", "*/*")) == (SAY, CWL)
    text, media = asyncio.run(ps.package(A, "say", "application/cwl+json"))
    assert media == "application/cwl+json" and json.loads(text) == yaml.safe_load(SAY)
    text, media = asyncio.run(ps.package(A, "say", "application/json"))
    assert media == "application/cwl+json" and json.loads(text) == yaml.safe_load(SAY)

    as_json = json.dumps(yaml.safe_load(SAY.replace("id: say", "id: say-json")))
    assert deploy(ps, A, as_json, "application/cwl+json").id == "say-json"
    assert asyncio.run(ps.package(A, "say-json", "application/cwl+json")) == (
        json.dumps(json.loads(as_json), indent=2), "application/cwl+json")
    text, media = asyncio.run(ps.package(A, "say-json", CWL))
    assert media == CWL and yaml.safe_load(text) == json.loads(as_json)


def test_seed_deploys_shipped_packages_once_per_namespace(tmp_path: Path) -> None:
    srv = make_server(tmp_path / "seeded")  # the default plugins: EO ships 'water-bodies'
    try:
        ps = srv.processes()
        with pytest.raises(NoSuchProcess):
            ps.get(X, "water-bodies")
        assert ps.seed(["water-bodies"], "x") == ["water-bodies"]
        seeded = ps.get(X, "water-bodies")
        assert seeded.mutable is True and "aoi" in seeded.process.description.inputs
        assert srv.rt.store.processes.seeded("x") == {"water-bodies"}
        assert ps.seed(["water-bodies"], "x") == []
        with pytest.raises(NoSuchProcess):
            ps.get(Y, "water-bodies")

        asyncio.run(ps.undeploy(X, "water-bodies"))
        assert ps.seed(["water-bodies"], "x") == []  # an operator's undeploy stays
        with pytest.raises(NoSuchProcess):
            ps.get(X, "water-bodies")

        assert ps.seed(["water-bodies"], "y") == ["water-bodies"]
        assert ps.get(Y, "water-bodies").mutable is True
        with pytest.raises(KeyError, match="water-bodies"):
            ps.seed(["no-such-package"], "x")
    finally:
        srv.close()
