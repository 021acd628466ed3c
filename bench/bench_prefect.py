"""The Prefect engine beside Prefect's own process work pool (the pygeoapi-prefect path), in one run.

    bench/run.sh prefect [--burst 20] [--samples 10]

Needs a Prefect server (PREFECT_API_URL) and PostgreSQL (OGCFLOW_TEST_POSTGRES_URL); bench/run.sh starts
both. Figures: median submit->running, trivial jobs per second in a burst, dismiss/cancel->work stopped.
Targets (issue 3): submit->running <= 1 s, >= 5 jobs/s, dismiss->stopped <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, Service, start_ogcflow  # noqa: E402


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def new_db() -> str:
    import psycopg

    base = os.environ["OGCFLOW_TEST_POSTGRES_URL"]
    name = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name


def pid_gone(pid: int, timeout: float = 30) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
                    return time.perf_counter() - started
        except (FileNotFoundError, ProcessLookupError):
            return time.perf_counter() - started
        time.sleep(0.01)
    return None


# -- ogcflow ------------------------------------------------------------------------------------------

def bench_ogcflow(svc: Service, samples: int, burst: int) -> dict[str, float]:
    from sqlalchemy import create_engine, text

    c = httpx.Client(base_url=svc.url, timeout=60)
    hello = {"name": "bench"}

    def submit(process: str, inputs: dict) -> str:
        resp = c.post(f"/processes/{process}/execution", json={"inputs": inputs}, headers={"Prefer": "respond-async"})
        resp.raise_for_status()
        return resp.headers["Location"]

    def wait(loc: str, statuses: tuple[str, ...] = ("successful", "failed")) -> dict:
        while (info := c.get(loc).json())["status"] not in statuses:
            time.sleep(0.05)
        return info

    to_running = []
    for _ in range(samples):
        info = wait(submit("hello-world", hello))
        to_running.append(ts(info["started"]) - ts(info["created"]))
        time.sleep(0.3)
    t0 = time.perf_counter()
    locs = [submit("hello-world", hello) for _ in range(burst)]
    for loc in locs:
        assert wait(loc)["status"] == "successful"
    burst_s = time.perf_counter() - t0
    engine = create_engine(os.environ["OGCFLOW_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://"))
    stops = []
    for _ in range(3):
        loc = submit("sleep", {"seconds": 60})
        wait(loc, ("running",))
        job_id = loc.rsplit("/", 1)[1]
        while True:
            with engine.connect() as conn:
                worker = conn.execute(text("select worker from jobs where id = :i"), {"i": job_id}).scalar() or ""
            if "/" in worker:
                break
            time.sleep(0.01)
        pid = int(worker.rsplit("/", 1)[1])
        t = time.perf_counter()
        c.delete(loc).raise_for_status()
        gone = pid_gone(pid)
        stops.append((time.perf_counter() - t) if gone is not None else float("nan"))
    engine.dispose()
    c.close()
    return {"submit_to_running_s": statistics.median(to_running), "burst_jobs_per_s": burst / burst_s,
            "dismiss_to_stopped_s": statistics.median(stops)}


# -- Prefect's process work pool -------------------------------------------------------------------------

def bench_process_pool(workdir: Path, samples: int, burst: int) -> dict[str, float]:
    api = os.environ["PREFECT_API_URL"].rstrip("/") + "/"
    pool = "bench-process-" + uuid.uuid4().hex[:6]
    flows = workdir / "peer-flows"  # the deployment's storage: a directory holding only the flow file
    flows.mkdir()
    shutil.copy(Path(__file__).resolve().parent / "prefect_peer_flow.py", flows)
    env = {**os.environ, "PYTHONPATH": str(flows)}
    py = sys.executable
    bindir = Path(py).parent
    subprocess.run([str(bindir / "prefect"), "work-pool", "create", pool, "--type", "process"], env=env,
                   check=True, capture_output=True)
    deploy = (
        "from prefect_peer_flow import trivial, sleeper\n"
        "from prefect.client.orchestration import get_client\n"
        "import sys\n"
        "with get_client(sync_client=True) as c:\n"
        "    for f in (trivial, sleeper):\n"
        "        fid = c.create_flow(f)\n"
        f"        d = c.create_deployment(flow_id=fid, name='{pool}', work_pool_name='{pool}',\n"
        f"              entrypoint=f'prefect_peer_flow.py:{{f.fn.__name__}}', path='{flows}')\n"
        "        print(d)\n"
    )
    out = subprocess.run([py, "-c", deploy], env=env, check=True, capture_output=True, text=True).stdout.split()
    trivial_dep, sleep_dep = out[-2], out[-1]
    worker = subprocess.Popen([str(bindir / "prefect"), "worker", "start", "--pool", pool, "--type", "process",
                               "--limit", "4"], env=env, stdout=open(workdir / "process-worker.log", "ab"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    c = httpx.Client(base_url=api, timeout=60)

    def create(dep: str, params: dict) -> str:
        resp = c.post(f"deployments/{dep}/create_flow_run", json={"parameters": params})
        resp.raise_for_status()
        return resp.json()["id"]

    def wait(run_id: str, states: tuple[str, ...]) -> dict:
        while (run := c.get(f"flow_runs/{run_id}").json())["state"]["type"] not in states:
            time.sleep(0.02)
        return run

    try:
        time.sleep(3)  # the worker's first poll
        to_running = []
        for _ in range(samples):
            run_id = create(trivial_dep, {"name": "bench"})
            run = wait(run_id, ("COMPLETED", "FAILED", "CRASHED"))
            if run["state"]["type"] != "COMPLETED":
                raise SystemExit(f"the process pool's flow run ended {run['state']}; see {workdir}")
            to_running.append(ts(run["start_time"]) - ts(run["created"]))
        t0 = time.perf_counter()
        ids = [create(trivial_dep, {"name": "bench"}) for _ in range(burst)]
        for run_id in ids:
            wait(run_id, ("COMPLETED", "FAILED", "CRASHED"))
        burst_s = time.perf_counter() - t0
        stops = []
        for _ in range(3):
            run_id = create(sleep_dep, {"seconds": 60})
            wait(run_id, ("RUNNING",))
            time.sleep(0.5)
            t = time.perf_counter()
            c.post(f"flow_runs/{run_id}/set_state", json={"state": {"type": "CANCELLING", "name": "Cancelling"},
                                                          "force": True}).raise_for_status()
            wait(run_id, ("CANCELLED", "CRASHED", "FAILED"))
            stops.append(time.perf_counter() - t)
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        c.close()
    return {"submit_to_running_s": statistics.median(to_running), "burst_jobs_per_s": burst / burst_s,
            "dismiss_to_stopped_s": statistics.median(stops)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--burst", type=int, default=20)
    ap.add_argument("--skip-peer", action="store_true", help="measure ogcflow only")
    args = ap.parse_args()
    for var in ("PREFECT_API_URL", "OGCFLOW_TEST_POSTGRES_URL"):
        if not os.environ.get(var):
            raise SystemExit(f"{var} is needed: run through bench/run.sh prefect")
    work = WORK / f"prefect-{int(time.time())}"
    work.mkdir(parents=True)
    db = new_db()
    os.environ["OGCFLOW_DATABASE_URL"] = db
    pool = "bench-" + uuid.uuid4().hex[:6]
    print("-- ogcflow, Prefect engine", flush=True)
    svc = start_ogcflow(work, api_workers=1, workers=4,
                        env={"OGCFLOW_ENGINE": "prefect", "OGCFLOW_DATABASE_URL": db,
                             "OGCFLOW_PREFECT_WORK_POOL": pool})
    try:
        ours = bench_ogcflow(svc, args.samples, args.burst)
    finally:
        svc.stop()
    if args.skip_peer:
        print(ours)
        return
    print("-- Prefect process work pool", flush=True)
    peer = bench_process_pool(work, args.samples, args.burst)
    print()
    print(f"{'figure':34} {'ogcflow':>10} {'process pool':>13} {'advantage':>10}  target")
    rows = [("median submit -> running (s)", "submit_to_running_s", True, "<= 1 s"),
            (f"burst of {args.burst} trivial jobs (jobs/s)", "burst_jobs_per_s", False, ">= 5 jobs/s"),
            ("dismiss -> work stopped (s)", "dismiss_to_stopped_s", True, "<= 1 s")]
    for label, key, lower, target in rows:
        o, p = ours[key], peer[key]
        adv = p / o if lower else o / p
        print(f"{label:34} {o:10.3f} {p:13.3f} {adv:9.1f}x  {target}")
    print("\n(process pool: cancel -> Prefect state Cancelled; ogcflow: DELETE /jobs/{id} -> job process gone)")


if __name__ == "__main__":
    main()
