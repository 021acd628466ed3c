"""A Prefect `process` work pool with the deployments of tests/prefect_flows (Prefect's own worker, started
with `prefect worker start --type process`), for the tests and benchmarks of Prefect-native processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

FLOWS = Path(__file__).resolve().parent / "prefect_flows"
SRC = Path(__file__).resolve().parent.parent / "src"
#: flow function -> its flow name (tests/prefect_flows/native_flows.py)
FLOW_NAMES = {"area": "native-area", "flaky": "native-flaky", "broken": "native-broken", "sleepy": "native-sleep"}


@dataclass
class ProcessPool:
    pool: str
    workdir: Path
    env: dict[str, str]
    #: flow function -> "<flow name>/<deployment name>"
    deployments: dict[str, str] = field(default_factory=dict)
    worker: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> httpx.Client:
        return httpx.Client(base_url=os.environ["PREFECT_API_URL"].rstrip("/") + "/", timeout=30)

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()


def start_process_pool(workdir: Path, limit: int = 4, poll_seconds: float = 1.0) -> ProcessPool:
    """A new process work pool, the test flows deployed to it, and a Prefect process worker polling it every
    ``poll_seconds`` (Prefect's default: 10 s)."""
    pool = "native-" + uuid.uuid4().hex[:8]
    storage = workdir / "flows"
    storage.mkdir(parents=True)
    shutil.copy(FLOWS / "native_flows.py", storage)
    path = os.pathsep.join([str(storage), str(SRC), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {**os.environ, "PYTHONPATH": path, "PREFECT_LOGGING_LEVEL": "WARNING",
           "PREFECT_WORKER_QUERY_SECONDS": str(poll_seconds)}
    prefect = str(Path(sys.executable).parent / "prefect")
    subprocess.run([prefect, "work-pool", "create", pool, "--type", "process"], env=env, check=True,
                   capture_output=True)
    deploy = (
        "import json, native_flows\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.utilities.callables import parameter_schema\n"
        f"names = {json.dumps(FLOW_NAMES)}\n"
        "out = {}\n"
        "with get_client(sync_client=True) as c:\n"
        "    for fn in names:\n"
        "        f = getattr(native_flows, fn)\n"
        "        fid = c.create_flow(f)\n"
        f"        c.create_deployment(flow_id=fid, name='{pool}', work_pool_name='{pool}',\n"
        "            entrypoint=f'native_flows.py:{fn}', path=%r,\n" % str(storage) +
        "            parameter_openapi_schema=parameter_schema(f).model_dump_for_openapi())\n"
        f"        out[fn] = names[fn] + '/{pool}'\n"
        "print(json.dumps(out))\n"
    )
    done = subprocess.run([sys.executable, "-c", deploy], env=env, check=True, capture_output=True, text=True)
    deployments = json.loads(done.stdout.strip().splitlines()[-1])
    log = open(workdir / "process-worker.log", "ab")
    worker = subprocess.Popen([prefect, "worker", "start", "--pool", pool, "--type", "process", "--limit",
                               str(limit)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return ProcessPool(pool=pool, workdir=workdir, env=env, deployments=deployments, worker=worker)


def register(env: dict[str, str], deployment: str, process_id: str, *outputs: str) -> str:
    """`ogcflow prefect register` with a server's settings; the process id it printed."""
    cmd = [sys.executable, "-m", "ogcflow", "prefect", "register", deployment, "--id", process_id]
    for out in outputs:
        cmd += ["--output", out]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout.strip().splitlines()[-1]


def runs_of_job(api: httpx.Client, job_id: str) -> list[dict]:
    """The flow runs Prefect holds for an OGC job of a Prefect-native process."""
    resp = api.post("flow_runs/filter", json={"flow_runs": {"tags": {"all_": [f"ogcflow-job:{job_id}"]}}})
    resp.raise_for_status()
    return list(resp.json())


def wait_run(api: httpx.Client, run_id: str, states: tuple[str, ...], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"flow_runs/{run_id}").json()
        if run["state"]["type"] in states or time.monotonic() > deadline:
            return dict(run)
        time.sleep(0.1)


def task_states(api: httpx.Client, run_id: str, want: list[str], timeout: float = 30) -> list[str]:
    """The states of a flow run's task runs, waited for until they are `want` (or the timeout): Prefect 3
    records task-run states from the events the flow-run process sends, in the server's task-run recorder,
    so they can show PENDING for a moment after the flow run itself is COMPLETED."""
    deadline = time.monotonic() + timeout
    while True:
        resp = api.post("task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}})
        resp.raise_for_status()
        states = [t["state"]["type"] for t in resp.json()]
        if states == want or time.monotonic() > deadline:
            return states
        time.sleep(0.2)
