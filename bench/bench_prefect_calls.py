"""What each Prefect call that a job of the Prefect engine makes costs the Prefect server, in CPU seconds.

    bench/run.sh prefect_calls [--calls 40]

Each kind of call is made ``--calls`` times in a row (on runs of a deployment of a fresh work pool, with
ogcflow's own client, ``engines/prefect_api.py``), then the server is left alone for 2 s; the server's
processes' CPU seconds over that, less what it spends idle in as long, per call. PostgreSQL's likewise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_prefect import cpu_of, listener_group  # noqa: E402

SETTLE = 2.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=40)
    args = ap.parse_args()
    from ogcflow.engines.prefect_api import PrefectSync, PrefectTarget
    from ogcflow.engines.prefect_deploy import DeploymentSpec

    n = args.calls
    api = PrefectSync(PrefectTarget(os.environ["PREFECT_API_URL"], "calls-" + uuid.uuid4().hex[:6]))
    api.ensure_pool()
    schema = {"title": "Parameters", "type": "object", "required": [], "definitions": {},
              "properties": {"name": {"type": "string", "position": 0, "title": "name"}}}
    dep = api.ensure_deployment(DeploymentSpec("hello", "default", api.target.work_pool, "a process", schema))

    def server() -> float:
        return cpu_of(listener_group(os.environ["PREFECT_API_URL"]))

    def postgres() -> float:
        return cpu_of(listener_group(os.environ["OGCFLOW_TEST_POSTGRES_URL"].replace("postgresql://", "http://")))

    s0, p0 = server(), postgres()
    time.sleep(SETTLE)
    idle_s, idle_p = (server() - s0) / SETTLE, (postgres() - p0) / SETTLE
    print(f"idle: Prefect server {idle_s:.3f} CPU-s/s, PostgreSQL {idle_p:.3f} CPU-s/s")
    print(f"{'call':30} {'server ms':>10} {'PostgreSQL ms':>14} {'wall ms':>8}")

    def phase(name: str, call: Callable[[int], Any]) -> list[Any]:
        s0, p0, t0 = server(), postgres(), time.perf_counter()
        out = [call(i) for i in range(n)]
        wall = time.perf_counter() - t0
        time.sleep(SETTLE)
        spent_s = server() - s0 - idle_s * (wall + SETTLE)
        spent_p = postgres() - p0 - idle_p * (wall + SETTLE)
        print(f"{name:30} {1000 * spent_s / n:10.1f} {1000 * spent_p / n:14.1f} {1000 * wall / n:8.1f}", flush=True)
        return out

    tags = ["ogcflow", "process:hello", "namespace:default"]
    ids = phase("create_flow_run", lambda i: api._call(
        "POST", f"deployments/{dep}/create_flow_run", "create a flow run",
        json={"name": f"r{i}", "parameters": {"name": "x"}, "idempotency_key": str(uuid.uuid4()),
              "tags": tags}).json()["id"])
    phase("get_scheduled_flow_runs", lambda i: api.scheduled_runs(limit=8))
    phase("set_state Pending", lambda i: api.set_state(ids[i], "PENDING", message="claimed"))
    phase("set_state Running", lambda i: api.set_state(ids[i], "RUNNING"))
    phase("logs (2 lines)", lambda i: api.post_logs(ids[i], [(time.time(), 20, "ogcflow.jobs", "start"),
                                                             (time.time(), 20, "ogcflow.jobs", "end")]))
    phase("artifact (markdown)", lambda i: api.create_artifact(ids[i], "markdown", "# job\n- results",
                                                               description="results"))
    phase("GET flow_run", lambda i: api._call("GET", f"flow_runs/{ids[i]}", "read a flow run"))
    phase("flow_runs/filter (4 ids)", lambda i: api.states(ids[i:i + 4]))
    phase("set_state Completed", lambda i: api.set_state(ids[i], "COMPLETED"))
    phase("worker heartbeat", lambda i: api.heartbeat("bench", 30))
    api.close()


if __name__ == "__main__":
    main()
