"""The Prefect engine follows Prefect's orchestration (against a real Prefect server): runs claimed only when
due, concurrency limits and pauses of deployments, work pools and queues honoured, runs with retries retried
and never left AwaitingRetry, transient failures of Prefect's API retried, bursts taken without a failed
submission."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.conftest import Recorder, store_env, wait_for
from tests.server import Server

pytestmark = pytest.mark.skipif(not os.environ.get("PREFECT_API_URL"),
                                reason="needs PREFECT_API_URL (scripts/test.sh starts a Prefect server)")


class _Patient(httpx.HTTPTransport):
    """The test's own calls to Prefect retry its "busy" answers too (a SQLite Prefect server gives many)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + 60
        while True:
            resp = super().handle_request(request)
            if resp.status_code not in (429, 503) or time.monotonic() > deadline:
                return resp
            resp.read()
            resp.close()
            time.sleep(0.1)


def prefect() -> httpx.Client:
    return httpx.Client(base_url=os.environ["PREFECT_API_URL"].rstrip("/") + "/", timeout=10,
                        transport=_Patient())


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_id_of(info: dict[str, Any]) -> str:
    [link] = [lk["href"] for lk in info["links"] if "/runs/flow-run/" in lk["href"]]
    return link.rsplit("/", 1)[1]


def submit(c: httpx.Client, process: str, inputs: dict[str, Any]) -> dict[str, Any]:
    resp = c.post(f"/processes/{process}/execution", json={"inputs": inputs}, headers={"Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def history(run_id: str) -> list[dict[str, Any]]:
    with prefect() as p:
        states = p.get("flow_run_states/", params={"flow_run_id": run_id}).json()
    return sorted(states, key=lambda st: st["timestamp"])


def flow_run(run_id: str) -> dict[str, Any]:
    with prefect() as p:
        return p.get(f"flow_runs/{run_id}").json()


def ended_run(run_id: str, timeout: float = 15) -> dict[str, Any]:
    """The flow run once it is final (a job's success is recorded before its run is told)."""
    deadline = time.monotonic() + timeout
    while (run := flow_run(run_id))["state"]["type"] not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
        assert time.monotonic() < deadline, run["state"]
        time.sleep(0.05)
    return run


def never_two_at_once(intervals: list[tuple[datetime, datetime]]) -> bool:
    spans = sorted(intervals)
    return all(spans[i][1] <= spans[i + 1][0] for i in range(len(spans) - 1))


class Pool:
    """The work pool, default queue and deployment of one ogcflow server, as a Prefect user changes them."""

    def __init__(self, name: str) -> None:
        self.name = name

    def patch(self, what: str, body: dict[str, Any], process: str = "sleep") -> None:
        path = {"pool": f"work_pools/{self.name}", "queue": f"work_pools/{self.name}/queues/default",
                "deployment": f"deployments/{self.deployment_id(process)}"}[what]
        with prefect() as p:
            resp = p.patch(path, json=body)
            assert resp.status_code in (200, 204), resp.text

    def deployment_id(self, process: str = "sleep") -> str:
        """The deployment of a process (made by the server's worker as it starts)"""
        deadline = time.monotonic() + 30
        with prefect() as p:
            while (resp := p.get(f"deployments/name/ogcflow:{process}/{self.name}")).status_code == 404:
                assert time.monotonic() < deadline, "the worker made no deployment"
                time.sleep(0.1)
            return str(resp.json()["id"])


@pytest.fixture(scope="module")
def pserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("prefect-orch"), env=store_env("prefect")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pc(pserver: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pserver.url, timeout=60) as c:
        yield c


@pytest.fixture
def pool(pserver: Server) -> Iterator[Pool]:
    """The server's pool, every limit and pause lifted after the test."""
    pool = Pool(pserver.env["OGCFLOW_PREFECT_WORK_POOL"])
    yield pool
    pool.patch("pool", {"is_paused": False, "concurrency_limit": None})
    pool.patch("queue", {"is_paused": False, "concurrency_limit": None})
    pool.patch("deployment", {"concurrency_limit": None})


class Watch:
    """Polls jobs in the background: every (status, message) each job showed."""

    def __init__(self, c: httpx.Client, job_ids: list[str]) -> None:
        self.seen: dict[str, list[tuple[str, str]]] = {j: [] for j in job_ids}
        self.running_together = 0
        self.stop = threading.Event()
        self.base_url = str(c.base_url)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as c:
            while not self.stop.is_set():
                running = 0
                for job_id, seen in self.seen.items():
                    info = c.get(f"/jobs/{job_id}").json()
                    item = (info["status"], info.get("message") or "")
                    if not seen or seen[-1] != item:
                        seen.append(item)
                    running += info["status"] == "running"
                self.running_together = max(self.running_together, running)
                time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


@pytest.mark.parametrize("limited", ["deployment", "pool", "queue"])
def test_a_concurrency_limit_of_1_runs_3_jobs_one_at_a_time(pc: httpx.Client, pool: Pool, limited: str) -> None:
    pool.patch(limited, {"concurrency_limit": 1})
    infos = [submit(pc, "sleep", {"seconds": 1}) for _ in range(3)]
    watch = Watch(pc, [i["jobID"] for i in infos])
    try:
        finals = [wait_for(pc, f"/jobs/{i['jobID']}", timeout=150) for i in infos]
    finally:
        watch.close()
    assert [f["status"] for f in finals] == ["successful"] * 3, finals
    assert watch.running_together == 1
    assert never_two_at_once([(ts(f["started"]), ts(f["finished"])) for f in finals])
    runs = [ended_run(run_id_of(i)) for i in infos]
    assert [r["state"]["type"] for r in runs] == ["COMPLETED"] * 3
    assert never_two_at_once([(ts(r["start_time"]), ts(r["end_time"])) for r in runs])
    for info in infos:  # one claim, one start, one end: no failed start, no run left Pending
        types = [st["type"] for st in history(run_id_of(info))]
        assert types.count("PENDING") == 1 and types.count("RUNNING") == 1 and "FAILED" not in types, types
    if limited == "deployment":  # a job that waits for a slot says so
        messages = [m for seen in watch.seen.values() for status, m in seen if status == "accepted"]
        assert any("concurrency limit" in m for m in messages), watch.seen


@pytest.mark.parametrize("paused", ["pool", "queue"])
def test_jobs_wait_while_the_pool_is_paused_then_run(pc: httpx.Client, pool: Pool, paused: str) -> None:
    pool.patch(paused, {"is_paused": True})
    infos = [submit(pc, "hello-world", {"name": f"paused-{n}"}) for n in range(2)]
    time.sleep(2.0)
    for info in infos:
        assert pc.get(f"/jobs/{info['jobID']}").json()["status"] == "accepted"
        assert flow_run(run_id_of(info))["state"]["type"] == "SCHEDULED"
    pool.patch(paused, {"is_paused": False})
    for info in infos:
        assert wait_for(pc, f"/jobs/{info['jobID']}")["status"] == "successful"


def test_a_run_scheduled_later_is_not_claimed_before_its_time(pc: httpx.Client, pool: Pool) -> None:
    pool.patch("pool", {"is_paused": True})
    info = submit(pc, "hello-world", {"name": "later"})
    run_id = run_id_of(info)
    due = datetime.now(UTC) + timedelta(seconds=4)
    with prefect() as p:  # rescheduled, as from the UI
        resp = p.post(f"flow_runs/{run_id}/set_state", json={"force": True, "state": {
            "type": "SCHEDULED", "name": "Scheduled", "state_details": {"scheduled_time": due.isoformat()}}})
        assert resp.status_code in (200, 201), resp.text
    pool.patch("pool", {"is_paused": False})
    while datetime.now(UTC) < due - timedelta(seconds=0.5):
        assert pc.get(f"/jobs/{info['jobID']}").json()["status"] == "accepted"
        time.sleep(0.1)
    final = wait_for(pc, f"/jobs/{info['jobID']}")
    assert final["status"] == "successful"
    assert ts(final["started"]) >= due - timedelta(seconds=0.1)
    states = history(run_id)
    assert [st["type"] for st in states].count("PENDING") == 1, states
    assert ts(flow_run(run_id)["start_time"]) >= due - timedelta(seconds=0.1)


@pytest.fixture
def flaky_input() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


def _with_retries(pc: httpx.Client, pool: Pool, inputs: dict[str, Any], retries: int, delay: int) -> dict[str, Any]:
    """A job whose flow run has retries (set on the run, as a Prefect user sets them, before it is claimed)."""
    pool.patch("pool", {"is_paused": True})
    info = submit(pc, "hello-world", inputs)
    with prefect() as p:
        resp = p.patch(f"flow_runs/{run_id_of(info)}",
                       json={"empirical_policy": {"retries": retries, "retry_delay": delay}})
        assert resp.status_code == 204, resp.text
    pool.patch("pool", {"is_paused": False})
    return info


def test_a_run_with_retries_is_retried_and_completes(pc: httpx.Client, pool: Pool, flaky_input: Recorder) -> None:
    info = _with_retries(pc, pool, {"name": {"href": flaky_input.url + "/name.txt"}}, retries=2, delay=3)
    run_id = run_id_of(info)
    # the first attempt fails (its input is missing); Prefect rejects Failed into AwaitingRetry
    deadline = time.monotonic() + 30
    while (state := flow_run(run_id)["state"])["name"] != "AwaitingRetry":
        assert time.monotonic() < deadline and state["type"] not in ("FAILED", "COMPLETED", "CRASHED"), state
        time.sleep(0.05)
    deadline = time.monotonic() + 5  # (its process says why right after Prefect's answer)
    while "attempt 1" not in (job := pc.get(f"/jobs/{info['jobID']}").json())["message"]:
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
    assert job["status"] == "running", job  # a retry is not an end: the job stays running and says why
    assert "attempt 1 failed" in job["message"] and "404" in job["message"], job
    flaky_input.files["/name.txt"] = (b"retried", "text/plain")
    final = wait_for(pc, f"/jobs/{info['jobID']}", timeout=60)
    assert final["status"] == "successful", final
    assert pc.get(f"/jobs/{info['jobID']}/results").json()["greeting"]["value"] == "Hello retried!"
    run = ended_run(run_id)
    assert run["state"]["type"] == "COMPLETED" and run["run_count"] == 2, run
    types = [(st["type"], st["name"]) for st in history(run_id)]
    assert types == [("SCHEDULED", "Scheduled"), ("PENDING", "Pending"), ("RUNNING", "Running"),
                     ("SCHEDULED", "AwaitingRetry"), ("RUNNING", "Running"), ("COMPLETED", "Completed")], types


def test_a_run_out_of_retries_fails_and_is_not_left_awaiting_retry(pc: httpx.Client, pool: Pool,
                                                                  flaky_input: Recorder) -> None:
    info = _with_retries(pc, pool, {"name": {"href": flaky_input.url + "/missing.txt"}}, retries=1, delay=0)
    final = wait_for(pc, f"/jobs/{info['jobID']}", timeout=60)
    assert final["status"] == "failed" and "404" in final["message"], final
    run = ended_run(run_id_of(info))
    assert run["state"]["type"] == "FAILED" and run["run_count"] == 2, run


# -- transient failures of Prefect's API -----------------------------------------------------------------

class FlakyPrefect:
    """An HTTP proxy in front of Prefect that answers some requests itself (a 503 of an overloaded server,
    a 429 with Retry-After, a 502 of a gateway), and records every request."""

    def __init__(self, upstream: str) -> None:
        self.upstream = httpx.Client(base_url=upstream, timeout=30)
        self.faults: list[tuple[str, int, dict[str, str]]] = []  # (part of the path, status, headers)
        self.answered: list[tuple[str, int]] = []  # the faults answered: (path, status)
        self.requests: list[tuple[float, str, Any]] = []  # (time, path, JSON body)
        self.lock = threading.Lock()
        self.work_pool = ""  # of the server behind it
        flaky = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                with flaky.lock:
                    flaky.requests.append((time.monotonic(), self.path, parsed))
                    fault = next((f for f in flaky.faults if f[0] in self.path), None)
                    if fault is not None:
                        flaky.faults.remove(fault)
                        flaky.answered.append((self.path, fault[1]))
                if fault is not None:
                    data = b'{"detail": "injected by the test"}'
                    self.send_response(fault[1])
                    for key, value in fault[2].items():
                        self.send_header(key, value)
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                    resp = flaky.upstream.request(self.command, self.path, content=body, headers=headers)
                    data = resp.content
                    self.send_response(resp.status_code)
                    if "content-type" in resp.headers:
                        self.send_header("Content-Type", resp.headers["content-type"])
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _relay

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def fail(self, path_part: str, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self.faults += [(path_part, status, headers or {})] * times

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.upstream.close()


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FlakyPrefect, httpx.Client]]:
    """A server (API and worker) that reaches Prefect through :class:`FlakyPrefect`."""
    upstream = os.environ["PREFECT_API_URL"].rstrip("/").removesuffix("/api")
    proxy = FlakyPrefect(upstream)
    env = store_env("prefect")
    env["PREFECT_API_URL"] = f"{proxy.url}/api"
    proxy.work_pool = env["OGCFLOW_PREFECT_WORK_POOL"]
    srv = Server(tmp_path_factory.mktemp("flaky"), env=env).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            yield proxy, c
    finally:
        srv.stop()
        proxy.close()


def test_transient_errors_of_prefect_are_retried_before_anything_is_reported(
        flaky: tuple[FlakyPrefect, httpx.Client]) -> None:
    proxy, c = flaky
    proxy.fail("/create_flow_run", 503, times=3)
    proxy.fail("/create_flow_run", 502)
    proxy.fail("/get_scheduled_flow_runs", 503, times=2)
    proxy.fail("/set_state", 503, times=3)
    proxy.fail("/logs/", 503)
    info = submit(c, "hello-world", {"name": "flaky"})
    assert wait_for(c, f"/jobs/{info['jobID']}")["status"] == "successful"
    assert ended_run(run_id_of(info))["state"]["type"] == "COMPLETED"
    assert not proxy.faults, proxy.faults  # every failure was met, and got over
    assert len(proxy.answered) == 10


def test_retry_after_is_honoured(flaky: tuple[FlakyPrefect, httpx.Client]) -> None:
    proxy, c = flaky
    proxy.fail("/create_flow_run", 429, headers={"Retry-After": "1"})
    started = time.monotonic()
    info = submit(c, "hello-world", {"name": "later"})
    assert time.monotonic() - started >= 1.0
    assert wait_for(c, f"/jobs/{info['jobID']}")["status"] == "successful"


def test_a_run_waiting_for_a_slot_is_not_claimed_in_a_tight_loop(flaky: tuple[FlakyPrefect, httpx.Client]) -> None:
    proxy, c = flaky
    pool = Pool(proxy.work_pool)
    pool.patch("deployment", {"concurrency_limit": 1})
    try:
        blocker = submit(c, "sleep", {"seconds": 4})
        wait_for(c, f"/jobs/{blocker['jobID']}", statuses=("running",))
        waiting = submit(c, "sleep", {"seconds": 0})  # (the same process: the same deployment)
        assert wait_for(c, f"/jobs/{waiting['jobID']}", timeout=60)["status"] == "successful"
    finally:
        pool.patch("deployment", {"concurrency_limit": None})
    run_id = run_id_of(waiting)
    claims = [t for t, path, body in proxy.requests
              if path.endswith(f"/flow_runs/{run_id}/set_state") and body and body["state"]["type"] == "PENDING"]
    assert len(claims) >= 2, claims  # refused while the blocker held the slot, then taken
    assert all(b - a >= 0.9 for a, b in zip(claims, claims[1:], strict=False)), claims


def test_a_burst_of_submissions_fails_none(pc: httpx.Client) -> None:
    """200 submissions from 8 clients at once (a SQLite Prefect server answers some of them 503)."""
    base_url = str(pc.base_url)

    def one(n: int) -> tuple[int, str]:
        with httpx.Client(base_url=base_url, timeout=60) as c:
            resp = c.post("/processes/hello-world/execution", json={"inputs": {"name": f"burst-{n}"}},
                          headers={"Prefer": "respond-async"})
            return resp.status_code, resp.headers.get("Location", resp.text)

    with ThreadPoolExecutor(8) as ex:
        answers = list(ex.map(one, range(200)))
    failed = [a for a in answers if a[0] != 201]
    assert not failed, failed[:5]
    for _, location in answers:
        assert wait_for(pc, location.removeprefix(base_url), timeout=120)["status"] == "successful"


# -- in one process: a worker's job source against the real Prefect server ---------------------------------

@pytest.fixture
def source(tmp_path: Any) -> Iterator[Any]:
    """A worker's job source (PrefectRuns) of a fresh work pool, on a store of its own."""
    import uuid

    from ogcflow.engines.prefect import PrefectRuns
    from ogcflow.settings import Settings
    from ogcflow.store import migrate
    from ogcflow.wiring import build

    settings = Settings(data_dir=tmp_path / "data", default_packages=[], engine="prefect",
                        prefect_work_pool="test-" + uuid.uuid4().hex[:10])
    migrate(settings.store.db_url)
    srv = build(settings)
    runs = PrefectRuns(srv.rt, "test-host:1", 1)
    yield runs
    runs.api.close()
    srv.close()


def _job_and_run(source: Any, state: dict[str, Any]) -> tuple[Any, str]:
    """A job marked running and its flow run, put in ``state`` (forced)."""
    from ogcflow import models
    from ogcflow.jobs.execution import new_job

    rt = source.rt
    process = rt.catalog.get("hello-world", "default").description
    job = new_job(process, models.Execute(inputs={"name": "in-process"}), mode="async", namespace="default",
                  engine="prefect", base_url="http://ogcflow.test")
    rt.store.jobs.create(job)
    with prefect() as p:
        dep = p.get(f"deployments/name/ogcflow:hello-world/{source.target.work_pool}").json()
        run = p.post(f"deployments/{dep['id']}/create_flow_run",
                     json={"name": job.id, "parameters": {"name": "in-process"}, "idempotency_key": job.id}).json()
        resp = p.post(f"flow_runs/{run['id']}/set_state", json={"state": state, "force": True})
        assert resp.status_code in (200, 201), resp.text
    assert rt.store.jobs.mark_running(job.id, worker="test-host:1", run_ref=run["id"])
    return rt.store.jobs.for_engine(job.id), str(run["id"])


def test_a_long_wait_before_running_gives_the_run_and_the_job_back(source: Any) -> None:
    """Prefect answers WAIT to Running (its Pending state starts later): the job's slot is not kept asleep;
    the run goes back to Scheduled at that time and the job back to accepted."""
    from ogcflow.engines.prefect import _JobRun
    from ogcflow.engines.prefect_api import PrefectSync

    due = datetime.now(UTC) + timedelta(seconds=60)
    job, run_id = _job_and_run(source, {"type": "PENDING", "name": "Pending",
                                        "state_details": {"scheduled_time": due.isoformat()}})
    api = PrefectSync(source.target)
    try:
        started = time.monotonic()
        assert _JobRun(source, api, job).start() is False
        assert time.monotonic() - started < 3
    finally:
        api.close()
    again = source.rt.store.jobs.for_engine(job.id)
    assert again.status.value == "accepted" and "not due before" in (again.message or ""), again
    state = flow_run(run_id)["state"]
    assert state["type"] == "SCHEDULED", state
    assert abs((ts(state["state_details"]["scheduled_time"]) - due).total_seconds()) < 5
    assert source.api.scheduled_runs(limit=10) == []  # not due: not polled


@pytest.mark.parametrize("left", [("RUNNING", "Running"), ("SCHEDULED", "AwaitingRetry")])
def test_runs_left_behind_an_ended_job_are_ended(source: Any, left: tuple[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A run left Running (its job's process could not tell Prefect) or AwaitingRetry (its worker died while
    it waited) behind a job that ended is brought to the job's end by any worker."""
    from ogcflow.engines import prefect as engine

    job, run_id = _job_and_run(source, {"type": left[0], "name": left[1]})
    jobs = source.rt.store.jobs
    assert jobs.fail_lost(job.id, "it went wrong")
    source._reconcile()  # just ended: its process may still be telling Prefect
    assert flow_run(run_id)["state"]["type"] == left[0]
    monkeypatch.setattr(engine, "LEFT_BEHIND_AFTER", 0.5)  # (rather than waiting for 90 s)
    time.sleep(0.6)
    source._reconcile()
    state = flow_run(run_id)["state"]
    assert state["type"] == "FAILED" and state["message"] == "it went wrong", state


def test_a_retry_asked_in_prefect_after_the_job_ended_is_not_left_behind(source: Any) -> None:
    """AwaitingRetry set on the run of a job that ended long ago (the UI's Retry): a worker takes it (a
    new attempt of the job) rather than end it as left behind."""
    from sqlalchemy import update

    from ogcflow.store.schema import jobs as table

    job, run_id = _job_and_run(source, {"type": "RUNNING", "name": "Running"})
    jobs = source.rt.store.jobs
    assert jobs.fail_lost(job.id, "it went wrong")
    with source.rt.store.jobs.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == job.id)
                     .values(finished=datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)))
    with prefect() as p:
        resp = p.post(f"flow_runs/{run_id}/set_state", json={"force": True, "state": {
            "type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}})
        assert resp.status_code in (200, 201), resp.text
    source._reconcile()
    assert flow_run(run_id)["state"]["name"] == "AwaitingRetry"
    again = source.take(True)
    assert again is not None and again.id == job.id and again.status.value == "running", again
    assert flow_run(run_id)["state"]["type"] == "PENDING"
