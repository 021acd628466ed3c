"""Job list and filters, dismiss, callbacks (OGC 18-062r2 §11-13: job-list, dismiss, callback)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import Recorder, store_env, wait_for
from tests.ogc_schemas import validate, validate_exception
from tests.server import Server, alive, gone


def submit(client: httpx.Client, process: str, inputs: dict, **extra: object) -> str:
    resp = client.post(f"/processes/{process}/execution", json={"inputs": inputs, **extra},
                       headers={"Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    return resp.headers["location"]


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory, backend: str):
    srv = Server(tmp_path_factory.mktemp("jobs"), env=store_env(backend)).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def jc(jobs_server: Server):
    with httpx.Client(base_url=jobs_server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def populated(jc: httpx.Client) -> dict[str, list[str]]:
    """3 hello-world successes, 2 sleep failures, 1 slower sleep success."""
    made: dict[str, list[str]] = {"hello": [], "failed": [], "slow": []}
    for i in range(3):
        made["hello"].append(submit(jc, "hello-world", {"name": f"n{i}"}))
    for _ in range(2):
        made["failed"].append(submit(jc, "sleep", {"seconds": 0, "fail": True}))
    made["slow"].append(submit(jc, "sleep", {"seconds": 3}))
    for loc in sum(made.values(), []):
        assert wait_for(jc, loc)["status"] in ("successful", "failed")
    return {k: [u.rsplit("/", 1)[1] for u in v] for k, v in made.items()}


def ids(doc: dict) -> set[str]:
    return {j["jobID"] for j in doc["jobs"]}


def test_job_list_fits_schema_and_filters(jc: httpx.Client, populated: dict[str, list[str]]) -> None:
    doc = jc.get("/jobs", params={"limit": 100}).json()
    validate(doc, "jobList")
    everything = set(sum(populated.values(), []))
    assert everything <= ids(doc)
    assert ids(jc.get("/jobs", params={"processID": "hello-world", "limit": 100}).json()) == set(populated["hello"])
    assert ids(jc.get("/jobs", params={"status": "failed", "limit": 100}).json()) == set(populated["failed"])
    both = jc.get("/jobs", params=[("status", "failed"), ("status", "successful"), ("limit", "100")]).json()
    assert ids(both) == everything
    comma = jc.get("/jobs", params={"processID": "sleep,hello-world", "limit": 100}).json()
    assert ids(comma) == everything
    assert ids(jc.get("/jobs", params={"type": "process", "limit": 100}).json()) == everything
    # 2 s apart from both: a quick job on a loaded machine (Prefect engine, CI) has taken over 1 s
    slow = ids(jc.get("/jobs", params={"minDuration": 2, "limit": 100}).json())
    assert slow == set(populated["slow"])
    quick = ids(jc.get("/jobs", params={"maxDuration": 2, "limit": 100}).json())
    assert set(populated["slow"]).isdisjoint(quick) and set(populated["hello"]) <= quick


def test_datetime_filter(jc: httpx.Client, populated: dict[str, list[str]]) -> None:
    now = datetime.now(UTC)
    past = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    future = (now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    everything = set(sum(populated.values(), []))
    assert everything <= ids(jc.get("/jobs", params={"datetime": f"{past}/..", "limit": 100}).json())
    assert ids(jc.get("/jobs", params={"datetime": f"{future}/..", "limit": 100}).json()) == set()
    assert everything <= ids(jc.get("/jobs", params={"datetime": f"../{future}", "limit": 100}).json())
    assert everything <= ids(jc.get("/jobs", params={"datetime": f"{past}/{future}", "limit": 100}).json())
    assert ids(jc.get("/jobs", params={"datetime": past}).json()) == set()


def test_paging_links(jc: httpx.Client, populated: dict[str, list[str]]) -> None:
    seen: list[str] = []
    url: str | None = "/jobs?limit=2"
    pages = 0
    while url:
        doc = jc.get(url).json()
        validate(doc, "jobList")
        assert len(doc["jobs"]) <= 2
        seen += [j["jobID"] for j in doc["jobs"]]
        nxt = [link["href"] for link in doc["links"] if link["rel"] == "next"]
        if pages:
            assert any(link["rel"] == "prev" for link in doc["links"])
        url = nxt[0] if nxt else None
        pages += 1
    assert len(seen) == len(set(seen))
    assert set(sum(populated.values(), [])) <= set(seen)
    created = [jc.get(f"/jobs/{j}").json()["created"] for j in seen]
    assert created == sorted(created, reverse=True)


@pytest.mark.parametrize("params", [{"status": "done"}, {"type": "workflow"}, {"limit": 0}, {"limit": "x"},
                                    {"minDuration": -1}, {"datetime": "yesterday"},
                                    {"minDuration": 5, "maxDuration": 1},
                                    {"datetime": "2024-02-01T00:00:00Z/2024-01-01T00:00:00Z"}])
def test_bad_job_list_parameters(jc: httpx.Client, params: dict) -> None:
    validate_exception(jc.get("/jobs", params=params), 400)


def test_unknown_job(jc: httpx.Client) -> None:
    for resp in (jc.get("/jobs/nope"), jc.get("/jobs/nope/results"), jc.delete("/jobs/nope")):
        doc = validate_exception(resp, 404)
        assert doc["type"].endswith("/no-such-job")


def test_dismiss_running_job_kills_its_process(jc: httpx.Client, jobs_server: Server) -> None:
    loc = submit(jc, "sleep", {"seconds": 60})
    job_id = loc.rsplit("/", 1)[1]
    wait_for(jc, loc, statuses=("running",))
    pid = jobs_server.job_process(job_id)
    assert alive(pid)
    resp = jc.delete(loc)
    assert resp.status_code == 200
    info = resp.json()
    validate(info, "statusInfo")
    assert info["status"] == "dismissed"
    assert gone(pid), "the job's process still runs after dismiss"
    time.sleep(0.5)
    assert jc.get(loc).json()["status"] == "dismissed"
    doc = validate_exception(jc.get(loc + "/results"), 404)
    assert "dismissed" in doc["detail"]


def test_dismiss_queued_job_never_runs(jc: httpx.Client) -> None:
    blockers = [submit(jc, "sleep", {"seconds": 3}) for _ in range(2)]
    queued = submit(jc, "hello-world", {"name": "never"})
    assert jc.get(queued).json()["status"] == "accepted"
    assert jc.delete(queued).json()["status"] == "dismissed"
    for b in blockers:
        assert wait_for(jc, b)["status"] == "successful"
    time.sleep(0.5)
    info = jc.get(queued).json()
    assert info["status"] == "dismissed" and "started" not in info


def test_dismiss_finished_job_removes_results(jc: httpx.Client, jobs_server: Server) -> None:
    loc = submit(jc, "echo", {"imageInput": {"value": "aGVsbG8=", "mediaType": "image/png"}},
                 outputs={"imageInput": {"transmissionMode": "reference"}}, response="document")
    assert wait_for(jc, loc)["status"] == "successful"
    href = jc.get(loc + "/results").json()["imageInput"]["href"]
    assert jc.get(href).content == b"hello"
    job_id = loc.rsplit("/", 1)[1]
    assert (jobs_server.data_dir / "results" / job_id).is_dir()
    assert jc.delete(loc).json()["status"] == "dismissed"
    assert not (jobs_server.data_dir / "results" / job_id).exists()
    validate_exception(jc.get(href), 404)


def test_callbacks_delivered_with_retries(jc: httpx.Client, recorder: Recorder) -> None:
    p = "/" + uuid.uuid4().hex
    recorder.fail_first[p + "/ok"] = 2
    sub = {"successUri": recorder.url + p + "/ok", "inProgressUri": recorder.url + p + "/progress",
           "failedUri": recorder.url + p + "/failed"}
    loc = submit(jc, "hello-world", {"name": "cb"}, subscriber=sub, response="document")
    job_id = loc.rsplit("/", 1)[1]
    assert wait_for(jc, loc)["status"] == "successful"
    deadline = time.monotonic() + 15
    while not recorder.received(p + "/ok") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert recorder.received(p + "/ok") == [{"greeting": {"value": "Hello cb!", "mediaType": "text/plain"}}]
    assert recorder.posts.count((p + "/ok#failed", None)) == 2
    progress = recorder.received(p + "/progress")
    assert progress and progress[0]["jobID"] == job_id and progress[0]["status"] == "running"
    validate(progress[0], "statusInfo")
    assert recorder.received(p + "/failed") == []
    loc = submit(jc, "sleep", {"seconds": 0, "fail": True}, subscriber={"failedUri": recorder.url + p + "/failed"})
    wait_for(jc, loc)
    deadline = time.monotonic() + 15
    while not recorder.received(p + "/failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    failed = recorder.received(p + "/failed")[0]
    validate(failed, "exception")
    assert "fail=true" in failed["detail"] and failed["jobID"] == loc.rsplit("/", 1)[1]
