"""The Prefect engine beside Prefect's own process work pool (the pygeoapi-prefect path), in one run.

    bench/run.sh prefect [--burst 20] [--samples 10] [--trace] [--against DIR --rounds 2]

Needs a Prefect server (PREFECT_API_URL) and PostgreSQL (OGCFLOW_TEST_POSTGRES_URL); bench/run.sh starts
both. Figures: median submit->running, trivial jobs per second in a burst, dismiss/cancel->work stopped.
Targets (issue 3): submit->running <= 1 s, >= 5 jobs/s, dismiss->stopped <= 1 s.

Also, per job of the burst (load-independent): the CPU seconds of the Prefect server's processes, of
PostgreSQL and of ogcflow's (API, worker, job processes), and with ``--trace`` the HTTP calls ogcflow made
(``bench/prefect_trace``), by method and path. ``--against DIR`` measures another checkout's ``src`` (or a
git revision, checked out under bench/.work) too, round by round on the same Prefect server (no peer).
"""

from __future__ import annotations

import argparse
import os
import re
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
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, Service, start_ogcflow  # noqa: E402

TRACE_DIR = Path(__file__).resolve().parent / "prefect_trace"
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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


# -- CPU and calls per job -----------------------------------------------------------------------------

def listener_group(url: str) -> list[psutil.Process]:
    """The processes of the server listening on the URL's port: its listener's ancestors up to the first
    that does not share its process group, and all their descendants."""
    port = httpx.URL(url).port
    pid = next((c.pid for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid
                and c.laddr and c.laddr.port == port), None)
    if pid is None:
        return []
    top = psutil.Process(pid)
    pgid = os.getpgid(pid)
    while (parent := top.parent()) is not None and parent.pid > 1 and os.getpgid(parent.pid) == pgid:
        top = parent
    return [top, *top.children(recursive=True)]


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def ogcflow_part(svc: Service, worker: bool) -> list[psutil.Process]:
    """The processes of ``ogcflow serve``: its worker daemon (``--parent-pid``, with its job processes and
    their children), or the rest (the API)."""
    workers: list[psutil.Process] = []
    rest: list[psutil.Process] = []
    for proc in tree(psutil.Process(svc.proc.pid)):
        try:
            (workers if "--parent-pid" in proc.cmdline() else rest).append(proc)
        except psutil.NoSuchProcess:
            continue
    if worker:
        return [p for w in workers for p in tree(w)]
    inside = {p.pid for w in workers for p in tree(w)}
    return [p for p in rest if p.pid not in inside]


def cpu_of(procs: list[psutil.Process]) -> float:
    """CPU seconds of the processes, and of their children that ended (waited for)."""
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class CPU:
    """CPU seconds per group of processes between two looks (processes that ended meanwhile: in their
    parents' figures once waited for)."""

    def __init__(self, svc: Service) -> None:
        self.groups = {"Prefect server": lambda: listener_group(os.environ["PREFECT_API_URL"]),
                       "PostgreSQL": lambda: listener_group(os.environ["OGCFLOW_TEST_POSTGRES_URL"]
                                                            .replace("postgresql://", "http://")),
                       "ogcflow API": lambda: ogcflow_part(svc, worker=False),
                       "ogcflow worker and jobs": lambda: ogcflow_part(svc, worker=True)}
        self.start = {name: cpu_of(find()) for name, find in self.groups.items()}
        self.start["bench client"] = time.process_time()

    def spent(self) -> dict[str, float]:
        spent = {name: cpu_of(find()) - self.start[name] for name, find in self.groups.items()}
        spent["bench client"] = time.process_time() - self.start["bench client"]
        return spent


def calls_between(trace: Path, t0: float, t1: float) -> list[tuple[str, float]]:
    """(method and path with ids as {id}, seconds) of the traced calls that started between t0 and t1."""
    if not trace.exists():
        return []
    out = []
    for line in trace.read_text().splitlines():
        started, _pid, seconds, method, path, _status = line.split(" ", 5)
        if t0 <= float(started) <= t1:
            path = re.sub(r"/work_pools/[^/]+/", "/work_pools/{pool}/", _ID.sub("{id}", path))
            out.append((f"{method} {path.removeprefix('/api')}", float(seconds)))
    return out


# -- ogcflow ------------------------------------------------------------------------------------------

def bench_ogcflow(svc: Service, samples: int, burst: int, trace: Path | None = None) -> dict[str, float]:
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
    time.sleep(1.0)  # the samples' last calls (logs, artifacts) are not the burst's
    cpu = CPU(svc)
    wall0 = time.time()
    t0 = time.perf_counter()
    locs = [submit("hello-world", hello) for _ in range(burst)]
    for loc in locs:
        assert wait(loc)["status"] == "successful"
    burst_s = time.perf_counter() - t0
    time.sleep(1.5)  # what the burst's jobs do after they are successful (their runs' ends) counts too
    spent = cpu.spent()
    calls = calls_between(trace, wall0, time.time()) if trace is not None else []
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
    figures = {"submit_to_running_s": statistics.median(to_running), "burst_jobs_per_s": burst / burst_s,
               "dismiss_to_stopped_s": statistics.median(stops)}
    figures.update({f"cpu_per_job_{name}": value / burst for name, value in spent.items()})
    if trace is not None:
        figures["calls_per_job"] = len(calls) / burst
        for name in sorted({n for n, _ in calls}):
            took = [sec for n, sec in calls if n == name]
            figures[f"calls {name}"] = len(took) / burst
            figures[f"ms {name}"] = 1000 * statistics.median(took)
    return figures


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


def source_of(against: str) -> Path:
    """The ``src`` of a checkout directory, or of a git revision checked out under bench/.work."""
    path = Path(against)
    if (path / "src" / "ogcflow").is_dir():
        return path / "src"
    from bench.bench_ab import worktree

    return worktree(against) / "src"


def measure(label: str, work: Path, args: argparse.Namespace, src: Path | None = None) -> dict[str, float]:
    work.mkdir(parents=True)
    db = new_db()
    os.environ["OGCFLOW_DATABASE_URL"] = db
    pool = "bench-" + uuid.uuid4().hex[:6]
    env = {"OGCFLOW_ENGINE": "prefect", "OGCFLOW_DATABASE_URL": db, "OGCFLOW_PREFECT_WORK_POOL": pool}
    path = [str(src)] if src is not None else []
    trace = work / "prefect-calls.trace" if args.trace else None
    if trace is not None:
        path.insert(0, str(TRACE_DIR))
        env["OGCFLOW_BENCH_TRACE"] = str(trace)
    if path:
        env["PYTHONPATH"] = os.pathsep.join(path + [p for p in [os.environ.get("PYTHONPATH")] if p])
    print(f"-- ogcflow, Prefect engine: {label}", flush=True)
    svc = start_ogcflow(work, api_workers=1, workers=4, env=env)
    try:
        return bench_ogcflow(svc, args.samples, args.burst, trace)
    finally:
        svc.stop()


def print_figures(columns: dict[str, dict[str, float]]) -> None:
    keys = list(dict.fromkeys(k for figures in columns.values() for k in figures))
    width = max(10, *(len(name) for name in columns))
    print(f"\n{'figure':52}" + "".join(f" {name:>{width}}" for name in columns))
    for key in keys:
        print(f"{key[:52]:52}" + "".join(f" {figures.get(key, float('nan')):{width}.3f}"
                                         for figures in columns.values()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--burst", type=int, default=20)
    ap.add_argument("--skip-peer", action="store_true", help="measure ogcflow only")
    ap.add_argument("--trace", action="store_true", help="count ogcflow's HTTP calls per job of the burst")
    ap.add_argument("--against", help="another checkout (a directory) or git revision, measured alternately")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each side with --against")
    args = ap.parse_args()
    for var in ("PREFECT_API_URL", "OGCFLOW_TEST_POSTGRES_URL"):
        if not os.environ.get(var):
            raise SystemExit(f"{var} is needed: run through bench/run.sh prefect")
    work = WORK / f"prefect-{int(time.time())}"
    if args.against:
        sides = {"this": None, args.against: source_of(args.against)}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        for r in range(args.rounds):
            for i, (name, src) in enumerate(sides.items()):
                runs[name].append(measure(f"{name}, round {r + 1}", work / f"{r}-{i}", args, src))
        columns = {f"{name} r{r + 1}": figures for name, all_ in runs.items() for r, figures in enumerate(all_)}
        columns.update({f"{name} median": {k: statistics.median(f[k] for f in all_ if k in f) for k in all_[0]}
                        for name, all_ in runs.items()})
        print_figures(columns)
        print(f"load average: {os.getloadavg()}")
        return
    ours = measure("this checkout", work / "ogcflow", args)
    if args.skip_peer:
        print_figures({"ogcflow": ours})
        print(f"load average: {os.getloadavg()}")
        return
    print("-- Prefect process work pool", flush=True)
    peer = bench_process_pool(work, args.samples, args.burst)
    print()
    print(f"{'figure':34} {'ogcflow':>10} {'process pool':>13} {'advantage':>10}  target")
    rows = [("submit_to_running_s", "median submit -> running (s)", True, "<= 1 s"),
            ("burst_jobs_per_s", f"burst of {args.burst} trivial jobs (jobs/s)", False, ">= 5 jobs/s"),
            ("dismiss_to_stopped_s", "dismiss -> work stopped (s)", True, "<= 1 s")]
    for key, label, lower, target in rows:
        o, p = ours[key], peer[key]
        adv = p / o if lower else o / p
        print(f"{label:34} {o:10.3f} {p:13.3f} {adv:9.1f}x  {target}")
    print("\n(process pool: cancel -> Prefect state Cancelled; ogcflow: DELETE /jobs/{id} -> job process gone)")
    print_figures({"ogcflow": {k: v for k, v in ours.items() if k not in {row[0] for row in rows}}})
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
