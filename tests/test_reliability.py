"""The reliability suite (``-m reliability``): kill -9 of each part mid-job (the API, a worker, a job process,
the S3 server, PostgreSQL), each ending with every accepted job final (or run again: a built-in, or a package
that declares itself idempotent, gets a second attempt) and nothing of the server left running; and a burst
of submissions from 16 clients through a kill of the server, retried with idempotency keys: none lost, none
doubled (2,000 of them; ``OGCFLOW_RELIABILITY_JOBS`` sets another number)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import new_postgres_db, wait_for
from tests.eo_support import ROOT, start_s3, stop_s3
from tests.server import Server, alive, free_port

pytestmark = pytest.mark.reliability

ASYNC = {"Prefer": "respond-async"}
TOKEN = "reliability-admin"
#: quick reaping of jobs whose worker went silent (a store outage ends with them)
FAST = {"OGCFLOW_STALE_AFTER_SECONDS": "6", "OGCFLOW_HEARTBEAT_SECONDS": "1", "OGCFLOW_ADMIN_TOKEN": TOKEN}


def _package(name: str, idempotent: bool, seconds: float = 2) -> str:
    hint = ("$namespaces: {ogcflow: 'https://ogcflow.dev/cwl#'}\nhints:\n  ogcflow:Idempotent: {}\n"
            if idempotent else "")
    return f"""cwlVersion: v1.2
class: CommandLineTool
id: {name}
{hint}baseCommand: [sh, -c]
arguments: ["sleep {seconds}; echo done > out.txt"]
inputs: []
outputs:
  out: {{type: File, outputBinding: {{glob: out.txt}}}}
"""


def survivors(data_dir: Path) -> list[int]:
    """Processes (not zombies) started for the server of ``data_dir``: they have it in their environment."""
    mark = f"OGCFLOW_DATA_DIR={data_dir}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if mark in fh.read() + b"\0" and alive(int(entry)):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def assert_nothing_left(data_dir: Path, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while (left := survivors(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [Path(f"/proc/{p}/cmdline").read_bytes()[:200] for p in left if Path(f"/proc/{p}").exists()]


def submit(c: httpx.Client, process: str, inputs: dict | None = None) -> str:
    resp = c.post(f"/processes/{process}/execution", json={"inputs": inputs or {}}, headers=ASYNC)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["jobID"])


def attempt_of(srv: Server, job_id: str) -> int:
    return int(srv.query("SELECT attempt FROM jobs WHERE id = :id", id=job_id)[0][0])


def deploy(c: httpx.Client, name: str, idempotent: bool) -> None:
    resp = c.post("/processes", content=_package(name, idempotent), headers={
        "Content-Type": "application/cwl+yaml", "Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 201, resp.text


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data", env=FAST, workers=3).start()
    yield server
    server.stop()
    assert_nothing_left(server.data_dir)


def test_kill_of_a_job_process_runs_a_builtin_again_once(srv: Server) -> None:
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        job = submit(c, "sleep", {"seconds": 2})
        wait_for(c, f"/jobs/{job}", statuses=("running",))
        first = srv.job_process(job)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while attempt_of(srv, job) < 2 or srv.job_process(job) == first:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = c.get(f"/jobs/{job}").json()
        assert "attempt 2" in info["message"], info
        os.kill(srv.job_process(job), signal.SIGKILL)  # the second attempt is the last one
        info = wait_for(c, f"/jobs/{job}")
        assert info["status"] == "failed", info
        assert "killed by signal 9 (attempt 2 of 2)" in info["message"], info
        again = submit(c, "sleep", {"seconds": 0.5})
        assert wait_for(c, f"/jobs/{again}")["status"] == "successful"


def test_kill_of_a_worker_reruns_idempotent_jobs_and_fails_the_others(srv: Server) -> None:
    with httpx.Client(base_url=srv.url, timeout=60) as c:
        deploy(c, "plain-tool", idempotent=False)
        deploy(c, "idem-tool", idempotent=True)
        jobs = {"builtin": submit(c, "sleep", {"seconds": 3}), "plain": submit(c, "plain-tool"),
                "idem": submit(c, "idem-tool")}
        for job in jobs.values():
            wait_for(c, f"/jobs/{job}", statuses=("running",), timeout=30)
            srv.job_process(job)
        # the worker daemon and what it forked (job processes, dispatcher: the same command line) die at
        # once, as on a crash of its machine; the supervisor of ``serve`` starts a new worker
        assert srv.proc is not None
        subprocess.run(["pkill", "-9", "-f", "--", f"--parent-pid {srv.proc.pid}( |$)"], check=True)
        final = {name: wait_for(c, f"/jobs/{job}", timeout=60) for name, job in jobs.items()}
        assert final["builtin"]["status"] == "successful", final
        assert attempt_of(srv, jobs["builtin"]) == 2
        assert final["builtin"]["message"] == "successful (attempt 2)"
        assert c.get(f"/jobs/{jobs['builtin']}/results").json()["slept"] >= 3
        assert final["idem"]["status"] == "successful", final
        assert attempt_of(srv, jobs["idem"]) == 2
        assert c.get(f"/jobs/{jobs['idem']}/results/out").text.strip() == "done"
        assert final["plain"]["status"] == "failed", final
        assert "submit it again" in final["plain"]["message"]
        assert attempt_of(srv, jobs["plain"]) == 1


def test_kill_of_the_api_reruns_its_running_job_after_a_restart(tmp_path: Path) -> None:
    first = Server(tmp_path / "data", env=FAST, workers=1).start()
    try:
        with httpx.Client(base_url=first.url, timeout=30) as c:
            # long enough to outlast the worker's look at its parent (every 5 s)
            running = submit(c, "sleep", {"seconds": 10})
            wait_for(c, f"/jobs/{running}", statuses=("running",))
            queued = [submit(c, "hello-world", {"name": f"q{i}"}) for i in range(3)]
        assert first.proc is not None
        os.kill(first.proc.pid, signal.SIGKILL)  # the API alone: its worker sees it gone and stops
        first.proc.wait()
        second = Server(tmp_path / "data", env=FAST, workers=2).start()
        try:
            with httpx.Client(base_url=second.url, timeout=30) as c:
                for job in [running, *queued]:
                    assert wait_for(c, f"/jobs/{job}", timeout=60)["status"] == "successful"
                assert attempt_of(second, running) == 2
        finally:
            second.stop()
    finally:
        first.stop()
    assert_nothing_left(tmp_path / "data")


def test_kill_of_the_s3_server_fails_what_cannot_be_stored_and_nothing_more(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    weed = Path(sys.executable).with_name("weed")  # the venv's SeaweedFS (scripts/s3.sh looks in ./.venv)
    if weed.exists():
        monkeypatch.setenv("WEED", str(weed))
    s3dir = tmp_path / "s3"
    values = start_s3(s3dir)
    env = {**FAST, **values, "OGCFLOW_RESULTS_URL": f"s3://rel-{uuid.uuid4().hex[:10]}"}
    srv = Server(tmp_path / "data", env=env, workers=2).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            deploy(c, "idem-tool", idempotent=True)
            jobs = [submit(c, "idem-tool"), submit(c, "sleep", {"seconds": 2})]
            for job in jobs:
                wait_for(c, f"/jobs/{job}", statuses=("running",), timeout=30)
            os.kill(int((s3dir / "weed.pid").read_text()), signal.SIGKILL)
            final = [wait_for(c, f"/jobs/{job}", timeout=90) for job in jobs]
            assert final[0]["status"] == "failed", final  # its file could not be stored: it says so
            assert "results storage could not" in final[0]["message"], final[0]["message"]
            assert final[1]["status"] == "successful", final  # a JSON result lives in the store
            # the API still answers, and says what the storage's absence costs
            assert c.get(f"/jobs/{jobs[1]}/results").json()["slept"] >= 2
    finally:
        srv.stop()
        stop_s3(s3dir)
    assert_nothing_left(tmp_path / "data")


def _pg(pgdir: Path, port: int, action: str) -> str:
    env = {**os.environ, "OGCFLOW_PG_DIR": str(pgdir), "OGCFLOW_PG_PORT": str(port)}
    return subprocess.run([str(ROOT / "scripts" / "postgres.sh"), action], env=env, check=True,
                          capture_output=True, text=True, timeout=120).stdout


def test_kill_of_postgresql_ends_every_job_when_it_is_back(tmp_path: Path) -> None:
    if not os.environ.get("OGCFLOW_TEST_POSTGRES_URL"):
        new_postgres_db()  # skips, saying why
    pgdir, port = Path(f"/tmp/ogcflow-rel-pg-{uuid.uuid4().hex[:8]}"), free_port()
    url = _pg(pgdir, port, "start").strip().split("=", 1)[1]
    try:
        srv = Server(tmp_path / "data", env={**FAST, "OGCFLOW_DATABASE_URL": url}, workers=2).start()
        try:
            with httpx.Client(base_url=srv.url, timeout=60) as c:
                jobs = [submit(c, "sleep", {"seconds": 3}), submit(c, "sleep", {"seconds": 1})]
                queued = [submit(c, "hello-world", {"name": f"pg{i}"}) for i in range(3)]
                for job in jobs:
                    wait_for(c, f"/jobs/{job}", statuses=("running",))
                postmaster = int((pgdir / "data" / "postmaster.pid").read_text().split()[0])
                os.kill(postmaster, signal.SIGKILL)
                time.sleep(4)  # the jobs end (or try to) while the store is gone
                _pg(pgdir, port, "start")
                for job in [*jobs, *queued]:
                    info = wait_for(c, f"/jobs/{job}", timeout=90)
                    assert info["status"] == "successful", info["message"]
        finally:
            srv.stop()
    finally:
        _pg(pgdir, port, "stop")
        subprocess.run(["rm", "-rf", str(pgdir)], check=False)
    assert_nothing_left(tmp_path / "data")


def test_submissions_through_a_server_kill_with_idempotency_keys(tmp_path: Path) -> None:
    n, clients = int(os.environ.get("OGCFLOW_RELIABILITY_JOBS", "2000")), 16
    first = Server(tmp_path / "data", env=FAST, workers=2).start()
    accepted: dict[str, str] = {}  # key -> job id of its 201
    lock = threading.Lock()
    answered = threading.Event()
    retried = [0]

    def client(index: int) -> None:
        with httpx.Client(base_url=first.url, timeout=10) as c:
            for i in range(index, n, clients):
                key = f"k-{i}-{uuid.uuid4().hex[:8]}"
                body = {"inputs": {"name": f"burst-{i}"}}
                deadline = time.monotonic() + 90
                while True:
                    try:
                        resp = c.post("/processes/hello-world/execution", json=body,
                                      headers={**ASYNC, "Idempotency-Key": key})
                        if resp.status_code == 201:
                            break
                        assert resp.status_code >= 500, resp.text
                    except httpx.TransportError:
                        pass
                    with lock:
                        retried[0] += 1
                    assert time.monotonic() < deadline, "the server did not come back"
                    time.sleep(0.1)
                with lock:
                    accepted[key] = resp.json()["jobID"]
                    if len(accepted) >= n // 3:
                        answered.set()

    second = Server(tmp_path / "data", env=FAST, workers=2)
    second.port, second.url = first.port, first.url  # clients retry on the same address
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        assert answered.wait(120)
        first.kill()
        second.start()
        for f in futures:
            f.result()
    try:
        assert len(accepted) == n
        ids = set(accepted.values())
        assert len(ids) == n  # no key got two jobs
        rows = second.query("SELECT id, status FROM jobs")
        assert len(rows) == n, f"{len(rows) - n} duplicated or lost"  # no job without its key's answer
        deadline = time.monotonic() + 120
        while (pending := second.query("SELECT count(*) FROM jobs WHERE status <> 'successful'")[0][0]):
            assert time.monotonic() < deadline, f"{pending} jobs not successful"
            time.sleep(0.5)
        assert {r[0] for r in rows} == ids
        assert retried[0] > 0  # the kill happened mid-burst
    finally:
        second.stop()
        first.stop()
    assert_nothing_left(tmp_path / "data")
