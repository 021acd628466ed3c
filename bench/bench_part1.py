"""Part 1 figures of ogcflow beside pygeoapi (and a bare ASGI endpoint), in one run, with ratios.

    python bench/bench_part1.py [--seconds 10] [--jobs 500] [--store-jobs 100000]

Measures: sync hello-world latency p50/p95 at concurrency 1 and 8 and throughput at 8 (wrk); async
submission rate and time until all jobs are successful; GET /jobs/{id} latency; GET /jobs latency with
--store-jobs jobs in the store. Targets (issue 2) are printed beside the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, Service, burst, start_bare, start_ogcflow, start_pygeoapi, wrk  # noqa: E402

HELLO = json.dumps({"inputs": {"name": "World"}})


def sync_figures(svc: Service, seconds: float) -> dict[str, float]:
    url = svc.url + ("/processes/hello-world/execution" if svc.name != "bare ASGI" else "/")
    one = wrk(url, method="POST", body=HELLO, seconds=seconds)
    eight = wrk(url, method="POST", body=HELLO, connections=8, threads=2, seconds=seconds)
    return {"sync_c1_p50_ms": one.p50_ms, "sync_c1_p95_ms": one.p95_ms, "sync_c8_p50_ms": eight.p50_ms,
            "sync_c8_p95_ms": eight.p95_ms, "sync_c8_rps": eight.rps, "errors": one.errors + eight.errors}


def async_figures(svc: Service, jobs: int) -> dict[str, float]:
    clients = [httpx.Client(timeout=60) for _ in range(8)]

    resets: list[int] = []

    def submit(i: int) -> str:
        for attempt in range(3):  # a dropped connection is counted and the submission sent again
            try:
                resp = clients[i % 8].post(svc.url + "/processes/hello-world/execution", content=HELLO,
                                           headers={"Content-Type": "application/json", "Prefer": "respond-async"})
                break
            except httpx.TransportError:
                resets.append(i)
                if attempt == 2:
                    raise
        assert resp.status_code == 201, (resp.status_code, resp.text[:200])
        return resp.headers["Location"]

    started = time.perf_counter()
    seconds, locations = burst(submit, jobs, 8)
    pending = set(locations)
    failed = 0
    with httpx.Client(timeout=60) as c:
        while pending and time.perf_counter() - started < 600:
            for loc in list(pending):
                status = c.get(loc).json()["status"]
                if status in ("successful", "failed", "dismissed"):
                    pending.discard(loc)
                    failed += status != "successful"
            if pending:
                time.sleep(0.05)
    all_done = time.perf_counter() - started
    for c in clients:
        c.close()
    job_url = locations[-1]
    status = wrk(job_url, seconds=5)
    return {"async_submit_rps": jobs / seconds, "async_all_done_s": all_done, "async_failed": failed,
            "async_unfinished": len(pending), "async_dropped_connections": len(resets),
            "status_p50_ms": status.p50_ms, "status_p95_ms": status.p95_ms}


def list_figures(svc: Service, seconds: float) -> dict[str, float]:
    res = wrk(svc.url + "/jobs?limit=10", seconds=seconds, timeout=120)
    return {"jobs_list_p50_ms": res.p50_ms, "jobs_list_p95_ms": res.p95_ms, "jobs_list_requests": res.requests}


def fill_ogcflow(count: int):
    def prepare(data: Path) -> None:
        from ogcflow.domain import Job, JobRequest, OutputEntry
        from ogcflow.models import ResponseMode, StatusCode, TransmissionMode
        from ogcflow.store import Store, migrate

        url = f"sqlite:///{data / 'ogcflow.db'}"
        migrate(url)
        store = Store(url)
        now = datetime.now(UTC)
        batch = []
        for i in range(count):
            created = now - timedelta(seconds=count - i)
            request = JobRequest(inputs={"name": f"n{i}"}, outputs={"greeting": TransmissionMode.value},
                                 response=ResponseMode.raw)
            batch.append(Job(id=str(uuid.uuid4()), process_id="hello-world", status=StatusCode.successful,
                             created=created, updated=created, started=created, finished=created, duration=0.001,
                             progress=100, message="successful", request=request,
                             results={"greeting": OutputEntry(media_type="text/plain", value=f"Hello n{i}!")},
                             mode="async"))
            if len(batch) == 10000:
                store.jobs.create_many(batch)
                batch = []
        if batch:
            store.jobs.create_many(batch)
        store.dispose()
    return prepare


def fill_pygeoapi(count: int):
    def prepare(workdir: Path) -> None:
        now = datetime.now(UTC)
        rows = {}
        for i in range(count):
            t = (now - timedelta(seconds=count - i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            ident = str(uuid.uuid4())
            rows[str(i + 1)] = {"type": "process", "identifier": ident, "process_id": "hello-world", "created": t,
                                "started": t, "updated": t, "finished": t, "status": "successful",
                                "location": str(workdir / "pygeoapi-outputs" / f"hello-world-{ident}"),
                                "mimetype": "application/json", "message": "Job complete", "progress": 100}
        (workdir / "pygeoapi-jobs.db").write_text(json.dumps({"_default": rows}))
    return prepare


def ratio(a: float, b: float) -> str:
    return f"{a / b:6.1f}x" if b else "   n/a"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10, help="duration of each wrk run")
    ap.add_argument("--jobs", type=int, default=500, help="async jobs submitted in the burst")
    ap.add_argument("--store-jobs", type=int, default=100_000, help="jobs in the store for the GET /jobs run")
    ap.add_argument("--api-workers", type=int, default=2, help="ogcflow API processes")
    args = ap.parse_args()

    work = WORK / f"part1-{int(time.time())}"
    work.mkdir(parents=True)
    results: dict[str, dict[str, float]] = {"ogcflow": {}, "pygeoapi": {}, "bare ASGI": {}}
    try:
        for name, start in (("ogcflow", lambda: start_ogcflow(work / "o1", api_workers=args.api_workers)),
                            ("pygeoapi", lambda: start_pygeoapi(work / "p1")),
                            ("bare ASGI", lambda: start_bare(work))):
            print(f"-- {name}: sync", flush=True)
            (work / "o1").mkdir(exist_ok=True)
            svc = start()
            try:
                results[name].update(sync_figures(svc, args.seconds))
                if name != "bare ASGI":
                    print(f"-- {name}: async burst of {args.jobs}", flush=True)
                    results[name].update(async_figures(svc, args.jobs))
            finally:
                svc.stop()
        print(f"-- filling stores with {args.store_jobs} jobs", flush=True)
        for name, start in (("ogcflow", lambda: start_ogcflow(work / "o2", api_workers=args.api_workers,
                                                              prepare=fill_ogcflow(args.store_jobs))),
                            ("pygeoapi", lambda: start_pygeoapi(work / "p2", prepare=fill_pygeoapi(args.store_jobs)))):
            (work / "o2").mkdir(exist_ok=True)
            svc = start()
            try:
                print(f"-- {name}: GET /jobs", flush=True)
                results[name].update(list_figures(svc, args.seconds))
            finally:
                svc.stop()
    finally:
        (work / "results.json").write_text(json.dumps(results, indent=2))

    o, p, b = results["ogcflow"], results["pygeoapi"], results["bare ASGI"]
    rows = [
        ("sync hello-world p50, c=1 (ms)", "sync_c1_p50_ms", True, "pygeoapi/ogcflow >= 5"),
        ("sync hello-world p95, c=1 (ms)", "sync_c1_p95_ms", True, ""),
        ("sync hello-world p50, c=8 (ms)", "sync_c8_p50_ms", True, ""),
        ("sync hello-world p95, c=8 (ms)", "sync_c8_p95_ms", True, ""),
        ("sync throughput, c=8 (req/s)", "sync_c8_rps", False, "ogcflow/pygeoapi >= 5"),
        ("async submissions (jobs/s)", "async_submit_rps", False, "ogcflow/pygeoapi >= 10"),
        (f"{args.jobs} async jobs all done (s)", "async_all_done_s", True, ""),
        ("GET /jobs/{id} p50 (ms)", "status_p50_ms", True, ""),
        ("GET /jobs/{id} p95 (ms)", "status_p95_ms", True, ""),
        (f"GET /jobs p50, {args.store_jobs} jobs (ms)", "jobs_list_p50_ms", True, ""),
        (f"GET /jobs p95, {args.store_jobs} jobs (ms)", "jobs_list_p95_ms", True, "ogcflow <= 25 ms"),
    ]
    print()
    print(f"{'figure':42} {'ogcflow':>10} {'pygeoapi':>10} {'bare ASGI':>10} {'advantage':>10}  target")
    for label, key, lower_better, target in rows:
        ov, pv, bv = o.get(key), p.get(key), b.get(key)
        adv = (ratio(pv, ov) if lower_better else ratio(ov, pv)) if ov and pv else "   n/a"
        fmt = lambda v: f"{v:10.2f}" if isinstance(v, int | float) else f"{'-':>10}"  # noqa: E731
        print(f"{label:42} {fmt(ov)} {fmt(pv)} {fmt(bv)} {adv:>10}  {target}")
    if b.get("sync_c1_p50_ms"):
        print(f"\nogcflow sync p50 / bare ASGI p50 = {o['sync_c1_p50_ms'] / b['sync_c1_p50_ms']:.2f} (target <= 2)")
    print(f"errors: ogcflow {o.get('errors')}, pygeoapi {p.get('errors')}; async failed/unfinished: "
          f"ogcflow {o.get('async_failed')}/{o.get('async_unfinished')}, "
          f"pygeoapi {p.get('async_failed')}/{p.get('async_unfinished')}; dropped connections during the burst: "
          f"ogcflow {o.get('async_dropped_connections')}, pygeoapi {p.get('async_dropped_connections')}")
    print(f"raw figures: {work / 'results.json'}")
    shutil.rmtree(work / "o2" / "ogcflow-data", ignore_errors=True)


if __name__ == "__main__":
    main()
