"""What the Prefect engine adds: every job a flow run seen in Prefect, cancellation both ways, lost workers,
and honest errors when Prefect is unreachable."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import store_env, wait_for
from tests.ogc_schemas import validate_exception
from tests.server import Server, gone

pytestmark = pytest.mark.skipif(not os.environ.get("PREFECT_API_URL"),
                                reason="needs PREFECT_API_URL (scripts/test.sh starts a Prefect server)")


class Proxy:
    """A TCP relay to the Prefect server that the test can cut, as a network failure would."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.open = False
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def resume(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def prefect() -> httpx.Client:
    return httpx.Client(base_url=os.environ["PREFECT_API_URL"].rstrip("/") + "/", timeout=10)


def flow_run(run_id: str) -> dict:
    with prefect() as p:
        return p.get(f"flow_runs/{run_id}").json()


def wait_state(run_id: str, states: tuple[str, ...], timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = flow_run(run_id)["state"]["type"]
        if state in states:
            return state
        time.sleep(0.1)
    return state


def run_id_of(info: dict) -> str:
    [link] = [lk["href"] for lk in info["links"] if "/runs/flow-run/" in lk["href"]]
    return link.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def pserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("prefect"), env=store_env("prefect")).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pc(pserver: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pserver.url, timeout=30) as c:
        yield c


def submit(c: httpx.Client, process: str, inputs: dict) -> dict:
    resp = c.post(f"/processes/{process}/execution", json={"inputs": inputs}, headers={"Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_every_job_is_a_flow_run(pc: httpx.Client) -> None:
    info = submit(pc, "hello-world", {"name": "flow"})
    run_id = run_id_of(info)
    assert wait_for(pc, f"/jobs/{info['jobID']}")["status"] == "successful"
    run = flow_run(run_id)
    assert run["name"] == info["jobID"]
    assert {"ogcflow", "process:hello-world", "namespace:default"} <= set(run["tags"])
    assert run["parameters"] == {"name": "flow"}  # the job's inputs
    assert wait_state(run_id, ("COMPLETED",)) == "COMPLETED"
    failed = submit(pc, "sleep", {"seconds": 0, "fail": True})
    assert wait_for(pc, f"/jobs/{failed['jobID']}")["status"] == "failed"
    assert wait_state(run_id_of(failed), ("FAILED",)) == "FAILED"
    assert "fail=true" in flow_run(run_id_of(failed))["state"]["message"]


def test_flow_runs_show_state_history_and_logs(pc: httpx.Client) -> None:
    info = submit(pc, "hello-world", {"name": "history"})
    run_id = run_id_of(info)
    assert wait_for(pc, f"/jobs/{info['jobID']}")["status"] == "successful"
    assert wait_state(run_id, ("COMPLETED",)) == "COMPLETED"
    with prefect() as api:
        states = api.get("flow_run_states/", params={"flow_run_id": run_id}).json()
        history = [st["type"] for st in sorted(states, key=lambda st: st["timestamp"])]
        assert history == ["SCHEDULED", "PENDING", "RUNNING", "COMPLETED"], history
        run = api.get(f"flow_runs/{run_id}").json()
        assert run["start_time"] and run["end_time"] and run["total_run_time"] >= 0
        logs = api.post("logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}}).json()
    lines = [entry["message"] for entry in logs]
    assert f"job {info['jobID']}: process hello-world" in lines
    assert f"job {info['jobID']}: successful" in lines


def test_dismiss_cancels_the_flow_run_and_stops_the_work(pc: httpx.Client, pserver: Server) -> None:
    info = submit(pc, "sleep", {"seconds": 60})
    wait_for(pc, f"/jobs/{info['jobID']}", statuses=("running",))
    pid = pserver.job_process(info["jobID"])
    started = time.monotonic()
    assert pc.delete(f"/jobs/{info['jobID']}").json()["status"] == "dismissed"
    assert gone(pid), "the job's process is still running"
    assert time.monotonic() - started < 2
    assert wait_state(run_id_of(info), ("CANCELLED",)) == "CANCELLED"


def test_cancel_from_prefect_dismisses_the_job(pc: httpx.Client, pserver: Server) -> None:
    info = submit(pc, "sleep", {"seconds": 60})
    wait_for(pc, f"/jobs/{info['jobID']}", statuses=("running",))
    pid = pserver.job_process(info["jobID"])
    with prefect() as p:
        resp = p.post(f"flow_runs/{run_id_of(info)}/set_state",
                      json={"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True})
        assert resp.status_code in (200, 201)
    assert wait_for(pc, f"/jobs/{info['jobID']}", statuses=("dismissed",), timeout=10)["status"] == "dismissed"
    assert gone(pid)
    assert wait_state(run_id_of(info), ("CANCELLED",)) == "CANCELLED"


def test_queued_dismissed_job_is_cancelled_at_once(pc: httpx.Client) -> None:
    blockers = [submit(pc, "sleep", {"seconds": 2}) for _ in range(2)]
    queued = submit(pc, "hello-world", {"name": "never"})
    assert pc.delete(f"/jobs/{queued['jobID']}").json()["status"] == "dismissed"
    assert wait_state(run_id_of(queued), ("CANCELLED",)) == "CANCELLED"
    for b in blockers:
        assert wait_for(pc, f"/jobs/{b['jobID']}")["status"] == "successful"
    assert pc.get(f"/jobs/{queued['jobID']}").json()["status"] == "dismissed"


def test_lost_worker_fails_the_job_and_crashes_the_run(pc: httpx.Client, pserver: Server) -> None:
    info = submit(pc, "sleep", {"seconds": 60})
    wait_for(pc, f"/jobs/{info['jobID']}", statuses=("running",))
    pserver.job_process(info["jobID"])
    # kill the worker daemon and its job processes (the server's supervisor starts a new worker)
    assert pserver.proc is not None
    subprocess.run(["pkill", "-9", "-f", "--", f"--parent-pid {pserver.proc.pid}( |$)"], check=True)
    final = wait_for(pc, f"/jobs/{info['jobID']}", timeout=30)
    assert final["status"] == "failed", final
    assert "submit it again" in final["message"]
    assert wait_state(run_id_of(info), ("CRASHED",)) == "CRASHED"
    again = submit(pc, "hello-world", {"name": "after"})
    assert wait_for(pc, f"/jobs/{again['jobID']}")["status"] == "successful"


@pytest.fixture
def behind_proxy(tmp_path: Path) -> Iterator[tuple[Server, Proxy, httpx.Client]]:
    """A server (API and worker) that reaches Prefect through a relay the test can cut."""
    prefect_url = httpx.URL(os.environ["PREFECT_API_URL"])
    proxy = Proxy((prefect_url.host, prefect_url.port or 80))
    env = store_env("prefect")
    env["PREFECT_API_URL"] = f"http://127.0.0.1:{proxy.port}/api"
    env["OGCFLOW_PREFECT_UNREACHABLE_SECONDS"] = "2"  # an outage, not a transient failure: said after 2 s
    srv = Server(tmp_path / "data", env=env).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            yield srv, proxy, c
    finally:
        srv.stop()
        proxy.close()


def test_prefect_unreachable_is_said_not_hidden(behind_proxy: tuple[Server, Proxy, httpx.Client]) -> None:
    srv, proxy, c = behind_proxy
    done = submit(c, "hello-world", {"name": "before"})
    assert wait_for(c, f"/jobs/{done['jobID']}")["status"] == "successful"
    running = submit(c, "sleep", {"seconds": 30})
    wait_for(c, f"/jobs/{running['jobID']}", statuses=("running",))
    proxy.cut()
    doc = validate_exception(c.post("/processes/hello-world/execution", json={"inputs": {"name": "x"}},
                                    headers={"Prefer": "respond-async"}), 503)
    assert "Prefect" in doc["detail"] and "unreachable" in doc["detail"]
    validate_exception(c.post("/processes/hello-world/execution", json={"inputs": {"name": "x"}}), 503)
    listed = c.get("/jobs", params={"limit": 100}).json()["jobs"]
    assert {j["jobID"] for j in listed} == {done["jobID"], running["jobID"]}  # not empty, nothing new
    assert c.get(f"/jobs/{done['jobID']}").json()["status"] == "successful"
    assert c.get(f"/jobs/{done['jobID']}/results").json()["greeting"]["value"] == "Hello before!"
    time.sleep(1.1)  # Prefect is asked about an active job at most once a second
    validate_exception(c.get(f"/jobs/{running['jobID']}"), 503)
    # the work goes on without Prefect (its flow run is brought up to date when Prefect is back)
    assert srv.query("select status from jobs where id = :id", id=running["jobID"]) == [("running",)]
    assert c.delete(f"/jobs/{running['jobID']}").json()["status"] == "dismissed"


def test_a_job_outlives_a_prefect_outage_and_its_run_catches_up(
        behind_proxy: tuple[Server, Proxy, httpx.Client]) -> None:
    _srv, proxy, c = behind_proxy
    info = submit(c, "sleep", {"seconds": 2})
    wait_for(c, f"/jobs/{info['jobID']}", statuses=("running",))
    proxy.cut()  # Prefect gone while the job runs (or before its run is marked Running)
    time.sleep(1.0)
    proxy.resume()
    assert wait_for(c, f"/jobs/{info['jobID']}", timeout=30)["status"] == "successful"
    assert wait_state(run_id_of(info), ("COMPLETED",), timeout=60) == "COMPLETED"
