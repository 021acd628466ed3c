"""OGC API - Processes - Part 2 over HTTP with real cwltool: deploy, describe, execute, replace, undeploy."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import yaml

from tests.conftest import Recorder, store_env, wait_for
from tests.ogc_schemas import validate, validate_exception
from tests.server import Server, gone
from tests.test_cwl_runner import SCATTER

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CWL = {"Content-Type": "application/cwl+yaml", **AUTH}

COUNT = """
cwlVersion: v1.2
class: CommandLineTool
id: count-words
label: Count words
doc: Counts the words of a text file.
$namespaces: {s: https://schema.org/}
s:softwareVersion: 2.0.1
baseCommand: [wc, -w]
stdout: count.txt
inputs:
  text: {type: File, inputBinding: {position: 1}}
outputs:
  count: {type: stdout}
"""


@pytest.fixture(scope="module")
def dserver(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Server]:
    env = {**store_env(backend), "OGCFLOW_ADMIN_TOKEN": TOKEN,
           "OGCFLOW_CWL_IMAGE_MAP": json.dumps({"greeter": ["sh", "-c", 'echo "mapped $0" > out.txt']})}
    srv = Server(tmp_path_factory.mktemp("deploy"), env=env).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def dc(dserver: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dserver.url, timeout=60) as c:
        yield c


def test_deploy_needs_the_admin_token(dc: httpx.Client) -> None:
    resp = dc.post("/processes", content=SCATTER, headers={"Content-Type": "application/cwl+yaml"})
    validate_exception(resp, 401)
    assert resp.headers["www-authenticate"].startswith("Bearer")
    resp = dc.post("/processes", content=SCATTER, headers={"Content-Type": "application/cwl+yaml",
                                                           "Authorization": "Bearer wrong"})
    validate_exception(resp, 401)  # a credential that is not valid here
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]


def test_deploy_describe_execute_replace_undeploy(dc: httpx.Client) -> None:
    resp = dc.post("/processes", content=SCATTER, headers=CWL)
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"].endswith("/processes/shout")
    summary = resp.json()
    validate(summary, "processSummary")
    assert summary["id"] == "shout" and summary["mutable"] is True
    doc = validate_exception(dc.post("/processes", content=SCATTER, headers=CWL), 409)
    assert "exists already" in doc["detail"]
    listed = {p["id"]: p for p in dc.get("/processes").json()["processes"]}
    assert listed["shout"]["mutable"] is True and listed["echo"]["mutable"] is False
    desc = dc.get("/processes/shout").json()
    validate(desc, "process")
    assert desc["inputs"]["words"]["schema"] == {"type": "array", "items": {"type": "string"}}
    api = dc.get("/api").json()
    assert "/processes/shout/execution" in api["paths"]

    body = {"inputs": {"words": ["ab", "cd"]}, "outputs": {"joined": {"transmissionMode": "reference"}},
            "response": "document"}
    resp = dc.post("/processes/shout/execution", json=body)
    assert resp.status_code == 200, resp.text
    href = resp.json()["joined"]["href"]
    assert dc.get(href).text == "ABCD"

    resp = dc.post("/processes/shout/execution", json={**body, "outputs": {"joined": {}}},
                   headers={"Prefer": "respond-async"})
    assert resp.status_code == 201
    assert wait_for(dc, resp.headers["location"], timeout=60)["status"] == "successful"
    # text inline, with its media type
    assert dc.get(resp.headers["location"] + "/results").json() == {"joined": {"value": "ABCD",
                                                                               "mediaType": "text/plain"}}

    changed = SCATTER.replace("tr a-z A-Z", "tr a-z A-Z | rev")
    validate_exception(dc.put("/processes/shout", content=changed, headers={"Content-Type":
                                                                            "application/cwl+yaml"}), 401)
    assert dc.put("/processes/shout", content=changed, headers=CWL).status_code == 204
    resp = dc.post("/processes/shout/execution", json={"inputs": {"words": ["ab", "cd"]},
                                                       "outputs": {"joined": {}}})
    assert resp.text == "BADC"

    package = dc.get("/processes/shout/package")
    assert package.headers["content-type"].startswith("application/cwl+yaml")
    assert package.text == changed
    as_json = dc.get("/processes/shout/package", headers={"Accept": "application/cwl+json"})
    assert as_json.json() == yaml.safe_load(changed)

    assert dc.delete("/processes/shout", headers=AUTH).status_code == 204
    validate_exception(dc.get("/processes/shout"), 404)
    validate_exception(dc.delete("/processes/shout", headers=AUTH), 404)
    assert "/processes/shout/execution" not in dc.get("/api").json()["paths"]


def test_application_package_by_reference_with_a_file_input(dc: httpx.Client, recorder: Recorder) -> None:
    recorder.files["/count.cwl"] = (COUNT.encode(), "application/cwl+yaml")
    recorder.files["/words.txt"] = (b"one two three four\n", "text/plain")
    apppkg = {"executionUnit": {"href": recorder.url + "/count.cwl", "type": "application/cwl+yaml"}}
    resp = dc.post("/processes", content=json.dumps(apppkg),
                   headers={"Content-Type": "application/ogcapppkg+json", **AUTH})
    assert resp.status_code == 201, resp.text
    desc = dc.get("/processes/count-words").json()
    assert (desc["version"], desc["title"]) == ("2.0.1", "Count words")
    assert desc["inputs"]["text"]["schema"]["format"] == "uri"
    resp = dc.post("/processes/count-words/execution",
                   json={"inputs": {"text": {"href": recorder.url + "/words.txt"}}})
    assert resp.status_code == 200, resp.text
    assert resp.text.split()[0] == "4"
    assert dc.delete("/processes/count-words", headers=AUTH).status_code == 204


P2 = "http://www.opengis.net/def/exceptions/ogcapi-processes-2/1.0/"


@pytest.mark.parametrize(("content", "media", "status", "needle", "kind"), [
    ("cwlVersion: v1.0\nclass: [", "application/cwl+yaml", 400, "not valid YAML", P2 + "invalid-package"),
    (SCATTER.replace('run: "#join"', 'run: "#gone"'), "application/cwl+yaml", 400, "'#gone'", P2 + "invalid-package"),
    (SCATTER, "text/plain", 415, "application/cwl+yaml", P2 + "unsupported-media-type"),
    ('{"executionUnit": 3}', "application/ogcapppkg+json", 400, "executionUnit", P2 + "invalid-package"),
    ('{"executionUnit": {"value": "cwlVersion: v1.2"}, "processDescription": {"process": {"keywords": 3}}}',
     "application/ogcapppkg+json", 400, "processDescription.keywords", P2 + "invalid-package"),
])
def test_bad_packages(dc: httpx.Client, content: str, media: str, status: int, needle: str, kind: str) -> None:
    doc = validate_exception(dc.post("/processes", content=content, headers={"Content-Type": media, **AUTH}),
                             status)
    assert needle in doc["detail"] and doc["type"] == kind


def test_part2_exception_types(dc: httpx.Client) -> None:
    doc = validate_exception(dc.post("/processes", params={"w": "nowhere"}, content=SCATTER, headers=CWL), 400)
    assert doc["type"] == P2 + "workflow-not-found" and "'nowhere'" in doc["detail"]
    assert dc.post("/processes", content=COUNT, headers=CWL).status_code == 201
    doc = validate_exception(dc.post("/processes", content=COUNT, headers=CWL), 409)
    assert doc["type"] == P2 + "duplicated-process"
    doc = validate_exception(dc.put("/processes/echo", content=SCATTER, headers=CWL), 403)
    assert doc["type"] == P2 + "immutable-process"
    doc = validate_exception(dc.put("/processes/count-words", content=COUNT, headers={**CWL, "Content-Type":
                                                                                      "text/yaml"}), 415)
    assert doc["type"] == P2 + "unsupported-media-type"
    assert dc.delete("/processes/count-words", headers=AUTH).status_code == 204


def test_application_package_as_deployed_and_its_description(dc: httpx.Client) -> None:
    """An OGC application package's processDescription is applied over what its CWL says, on deploy and on
    replace; GET .../package gives the package back as deployed, or its CWL when asked for CWL."""
    apppkg = {"processDescription": {"process": {
        "id": "count-words", "version": "9.9.9", "title": "Word counter", "description": "Counts words, fast.",
        "keywords": ["text", "count"], "metadata": [{"title": "Docs", "role": "doc", "href": "https://ex.org/d"}]}},
        "executionUnit": {"value": COUNT, "mediaType": "application/cwl+yaml"}}
    body = json.dumps(apppkg)
    resp = dc.post("/processes", content=body, headers={"Content-Type": "application/ogcapppkg+json", **AUTH})
    assert resp.status_code == 201, resp.text
    desc = dc.get("/processes/count-words").json()
    validate(desc, "process")
    assert (desc["title"], desc["description"], desc["keywords"]) == ("Word counter", "Counts words, fast.",
                                                                      ["text", "count"])
    assert desc["metadata"] == [{"title": "Docs", "role": "doc", "href": "https://ex.org/d"}]
    assert desc["version"] == "2.0.1"  # the CWL's version: only the description fields are taken over
    package = dc.get("/processes/count-words/package")
    assert package.headers["content-type"].startswith("application/ogcapppkg+json")
    assert package.json() == apppkg
    cwl = dc.get("/processes/count-words/package", headers={"Accept": "application/cwl+yaml"})
    assert cwl.headers["content-type"].startswith("application/cwl+yaml") and cwl.text == COUNT

    apppkg["processDescription"]["process"]["title"] = "Word counter, replaced"
    resp = dc.put("/processes/count-words", content=json.dumps(apppkg),
                  headers={"Content-Type": "application/ogcapppkg+json", **AUTH})
    assert resp.status_code == 204, resp.text
    assert dc.get("/processes/count-words").json()["title"] == "Word counter, replaced"
    assert dc.get("/processes/count-words/package").json()["processDescription"]["process"]["title"] == \
        "Word counter, replaced"
    resp = dc.put("/processes/count-words", content=COUNT, headers=CWL)  # replaced by plain CWL: the CWL's words
    assert resp.status_code == 204
    assert dc.get("/processes/count-words").json()["title"] == "Count words"
    assert dc.get("/processes/count-words/package").headers["content-type"].startswith("application/cwl+yaml")
    assert dc.delete("/processes/count-words", headers=AUTH).status_code == 204


def test_builtin_processes_are_immutable(dc: httpx.Client) -> None:
    validate_exception(dc.delete("/processes/echo", headers=AUTH), 403)
    validate_exception(dc.put("/processes/echo", content=SCATTER, headers=CWL), 403)


SLOW = """
cwlVersion: v1.2
class: CommandLineTool
id: slow-tool
baseCommand: [sh, -c, 'echo started; sleep 60 & wait']
inputs:
  fail: {type: boolean, default: false}
outputs: {}
"""

FAIL = """
cwlVersion: v1.2
class: CommandLineTool
id: failing-tool
baseCommand: [sh, -c, 'echo "band nir9 not found" >&2; exit 4']
inputs: {}
outputs: {}
"""


def _sleeps_of(job_pid: int) -> list[int]:
    """The ``sleep`` processes descending from a job's process (its tools run in sandboxes of their own
    session)."""
    import os

    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    head, rest = fh.read().rsplit(")", 1)
                parents[int(entry)] = int(rest.split()[1])
                names[int(entry)] = head.split("(", 1)[1]
            except (OSError, ValueError, IndexError):
                continue

    def under(pid: int) -> bool:
        for _ in range(64):
            pid = parents.get(pid, 0)
            if pid == job_pid:
                return True
            if pid <= 1:
                return False
        return False

    return [pid for pid, name in names.items() if name == "sleep" and under(pid)]


def test_job_log_and_dismiss_stops_every_step(dc: httpx.Client, dserver: Server) -> None:
    import time

    assert dc.post("/processes", content=FAIL, headers=CWL).status_code == 201
    resp = dc.post("/processes/failing-tool/execution", json={"inputs": {}}, headers={"Prefer": "respond-async"})
    info = wait_for(dc, resp.headers["location"], timeout=60)
    assert info["status"] == "failed" and "permanentFail" in info["message"]
    logs = [link["href"] for link in info["links"] if link["rel"] == "describedby"]
    assert logs, info["links"]
    text = dc.get(logs[0]).text
    assert "band nir9 not found" in text or "exited with" in text or "permanentFail" in text

    assert dc.post("/processes", content=SLOW, headers=CWL).status_code == 201
    resp = dc.post("/processes/slow-tool/execution", json={"inputs": {}}, headers={"Prefer": "respond-async"})
    loc = resp.headers["location"]
    wait_for(dc, loc, statuses=("running",), timeout=30)
    session = dserver.job_process(loc.rsplit("/", 1)[1], timeout=20)
    deadline = time.monotonic() + 20
    sleeps: list[int] = []
    while time.monotonic() < deadline and not sleeps:
        sleeps = _sleeps_of(session)
        time.sleep(0.1)
    assert sleeps, "the CWL step never started"
    assert dc.delete(loc).json()["status"] == "dismissed"
    assert gone(*sleeps), "a step of the dismissed job still runs"
    validate_exception(dc.get(loc + "/logs"), 404)
    for pid in ("failing-tool", "slow-tool"):
        assert dc.delete(f"/processes/{pid}", headers=AUTH).status_code == 204


DOCKER = """
cwlVersion: v1.2
class: CommandLineTool
id: docker-tool
requirements:
  DockerRequirement: {dockerPull: "ghcr.io/example/apps/greeter@sha256:0123abcd"}
baseCommand: [python, -m, app]
inputs:
  name: {type: string, inputBinding: {position: 1}}
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""


def test_required_images_run_as_mapped_local_commands(dc: httpx.Client) -> None:
    assert dc.post("/processes", content=DOCKER, headers=CWL).status_code == 201
    resp = dc.post("/processes/docker-tool/execution", json={"inputs": {"name": "Ada"}})
    assert resp.status_code == 200, resp.text
    assert resp.text.strip() == "mapped Ada"
    unmapped = DOCKER.replace("docker-tool", "unmapped-tool").replace("greeter@", "painter@")
    assert dc.post("/processes", content=unmapped, headers=CWL).status_code == 201
    resp = dc.post("/processes/unmapped-tool/execution", json={"inputs": {"name": "Ada"}},
                   headers={"Prefer": "respond-async"})
    info = wait_for(dc, resp.headers["location"], timeout=60)
    assert info["status"] == "failed"
    assert "requires the container image" in info["message"] and "'painter'" in info["message"]
    for pid in ("docker-tool", "unmapped-tool"):
        assert dc.delete(f"/processes/{pid}", headers=AUTH).status_code == 204


def test_other_api_processes_see_deployments_at_once(dc: httpx.Client, dserver: Server) -> None:
    other = Server(dserver.data_dir, env={k: v for k, v in dserver.env.items() if k.startswith(("OGCFLOW_",
                                                                                                 "PREFECT_"))},
                   args=["--no-worker"]).start()
    try:
        with httpx.Client(base_url=other.url, timeout=30) as oc:
            assert "count-words" not in {p["id"] for p in oc.get("/processes").json()["processes"]}
            assert dc.post("/processes", content=COUNT, headers=CWL).status_code == 201
            assert "count-words" in {p["id"] for p in oc.get("/processes").json()["processes"]}
            assert "/processes/count-words/execution" in oc.get("/api").json()["paths"]
            assert oc.delete("/processes/count-words", headers=AUTH).status_code == 204
            validate_exception(dc.get("/processes/count-words"), 404)
    finally:
        other.stop()
