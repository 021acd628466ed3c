"""A restart or a crash loses no accepted job; jobs that were running are run again (a built-in may be: its
second attempt), or, with the Prefect engine (whose runs are Crashed), end as failed, saying why."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.conftest import store_env, wait_for
from tests.server import Server


def _submit(c: httpx.Client, process: str, inputs: dict) -> str:
    resp = c.post(f"/processes/{process}/execution", json={"inputs": inputs}, headers={"Prefer": "respond-async"})
    assert resp.status_code == 201
    return resp.headers["location"].rsplit("/", 1)[1]


def _restart_case(data_dir: Path, crash: bool, env: dict[str, str]) -> None:
    first = Server(data_dir, workers=1, env=env).start()
    with httpx.Client(base_url=first.url, timeout=30) as c:
        running = _submit(c, "sleep", {"seconds": 30})
        wait_for(c, f"/jobs/{running}", statuses=("running",))
        queued = [_submit(c, "hello-world", {"name": f"q{i}"}) for i in range(3)]
        assert all(c.get(f"/jobs/{j}").json()["status"] == "accepted" for j in queued)
    if crash:
        first.kill()
    else:
        first.stop()
    second = Server(data_dir, workers=2, env=env).start()
    try:
        with httpx.Client(base_url=second.url, timeout=30) as c:
            for job_id in queued:
                info = wait_for(c, f"/jobs/{job_id}")
                assert info["status"] == "successful", info
                assert c.get(f"/jobs/{job_id}/results").json()["greeting"]["value"].startswith("Hello q")
            if env.get("OGCFLOW_ENGINE") == "prefect":
                info = wait_for(c, f"/jobs/{running}", timeout=10)
                assert info["status"] == "failed", info
                assert "submit it again" in info["message"]
                results = c.get(f"/jobs/{running}/results").json()
                assert results["detail"] == info["message"]
            else:
                deadline = time.monotonic() + 15
                while "attempt 2" not in (info := c.get(f"/jobs/{running}").json())["message"]:
                    assert time.monotonic() < deadline, info
                    time.sleep(0.1)
                assert info["status"] in ("accepted", "running"), info
                assert c.delete(f"/jobs/{running}").status_code == 200
    finally:
        second.stop()


def test_graceful_restart_keeps_queued_jobs(tmp_path: Path, backend: str) -> None:
    _restart_case(tmp_path / "data", crash=False, env=store_env(backend))


def test_crash_keeps_queued_jobs_and_reruns_running_ones(tmp_path: Path, backend: str) -> None:
    started = time.monotonic()
    _restart_case(tmp_path / "data", crash=True, env=store_env(backend))
    assert time.monotonic() - started < 60
