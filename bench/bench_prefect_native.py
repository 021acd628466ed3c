"""A Prefect-native process (a Prefect deployment offered as an OGC process, ``ogcflow prefect register``)
beside calling Prefect's ``run_deployment`` on the same deployment, run by the same Prefect ``process``
worker: the time from the request to the flow's end, each lane in turn, sample after sample.

The OGC lane: POST /processes/{id}/execution (async), then GET the job every 50 ms until it is successful
(its outputs read from the flow). The direct lane: ``run_deployment(name, parameters, poll_interval=P)``
(the deployment's flow run, returned when it is final; P defaults to 0.1 s, Prefect's default is 5 s).
Target: the OGC lane's median within 1.2x of the direct lane's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.prefect_native_support import register, start_process_pool  # noqa: E402

from bench.common import WORK, start_ogcflow  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--poll-interval", type=float, default=0.1, help="run_deployment's poll_interval (s)")
    args = ap.parse_args()
    if not os.environ.get("PREFECT_API_URL"):
        raise SystemExit("PREFECT_API_URL is needed: run through bench/run.sh prefect_native")
    work = WORK / f"prefect-native-{int(time.time())}"
    work.mkdir(parents=True)
    pool = start_process_pool(work / "pool", limit=4, poll_seconds=0.5)
    os.environ["PYTHONPATH"] = pool.env["PYTHONPATH"]  # the flows' environment: ogcflow.flows importable
    os.environ["PREFECT_WORKER_QUERY_SECONDS"] = pool.env["PREFECT_WORKER_QUERY_SECONDS"]
    deployment = pool.deployments["area"]
    svc = None
    try:
        env = {"OGCFLOW_DATA_DIR": str(work / "ogcflow-data"), "PYTHONPATH": pool.env["PYTHONPATH"]}
        register({**os.environ, **env}, deployment, "area", "area", "report=text/plain")
        svc = start_ogcflow(work, api_workers=1, workers=4, env=env)
        from prefect.deployments import run_deployment

        c = httpx.Client(base_url=svc.url, timeout=60)
        params = {"width": 3.0, "height": 2.0}

        def ogc() -> float:
            t = time.perf_counter()
            resp = c.post("/processes/area/execution", json={"inputs": params}, headers={"Prefer": "respond-async"})
            resp.raise_for_status()
            loc = resp.headers["location"]
            while (info := c.get(loc).json())["status"] not in ("successful", "failed", "dismissed"):
                time.sleep(0.05)
            took = time.perf_counter() - t
            if info["status"] != "successful" or c.get(loc + "/results").json()["area"] != 6.0:
                raise SystemExit(f"the OGC job ended {info}; see {work}")
            return took

        def direct() -> float:
            t = time.perf_counter()
            run = run_deployment(deployment, parameters=params, poll_interval=args.poll_interval, timeout=None,
                                 as_subflow=False)
            took = time.perf_counter() - t
            if run.state is None or run.state.type.value != "COMPLETED":
                raise SystemExit(f"the direct flow run ended {run.state}; see {work}")
            return took

        ogc(), direct()  # warm-up: the worker's first polls, the server's caches
        ours, theirs = [], []
        for i in range(args.samples):
            for lane, out in ((ogc, ours), (direct, theirs)) if i % 2 == 0 else ((direct, theirs), (ogc, ours)):
                out.append(lane())
            print(f"sample {i + 1}: OGC {ours[-1]:.2f} s, run_deployment {theirs[-1]:.2f} s", flush=True)
    finally:
        if svc is not None:
            svc.stop()
        pool.stop()
    o, d = statistics.median(ours), statistics.median(theirs)
    print()
    print(f"{'figure':44} {'value':>8}  target")
    print(f"{'median OGC job, request -> successful (s)':44} {o:8.3f}")
    print(f"{'median run_deployment (poll ' + str(args.poll_interval) + ' s) (s)':44} {d:8.3f}")
    print(f"{'ratio':44} {o / d:8.2f}  <= 1.2")


if __name__ == "__main__":
    main()
