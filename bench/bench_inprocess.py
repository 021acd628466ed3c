"""The server's own CPU per synchronous hello-world request, in-process (no sockets, no HTTP server): the whole
ASGI application, middleware included, called directly, for this checkout and optionally an earlier revision
side by side (each in its own interpreter, its ``src`` first on PYTHONPATH). The best of several rounds is
printed (the machine is shared), and the ratio new / old.

    python bench/bench_inprocess.py [--against REV] [--requests 3000] [--rounds 5] [--profile N]

``--profile N`` prints the N functions of this checkout with the most own time over one round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_ab import worktree  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

# run in a child interpreter: the application of whichever ogcflow is first on the path
CHILD = r"""
import asyncio, cProfile, json, os, pstats, sys, time

requests, rounds, profile = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
from ogcflow.api.app import create_app

app = create_app()
BODY = json.dumps({"inputs": {"name": "World"}}).encode()
HEADERS = [(b"host", b"127.0.0.1:5000"), (b"content-type", b"application/json"),
           (b"content-length", str(len(BODY)).encode()), (b"accept", b"*/*"), (b"user-agent", b"wrk")]
SCOPE = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
         "path": "/processes/hello-world/execution", "raw_path": b"/processes/hello-world/execution",
         "query_string": b"", "root_path": "", "headers": HEADERS, "client": ("127.0.0.1", 40000),
         "server": ("127.0.0.1", 5000)}
statuses = set()


async def receive():
    return {"type": "http.request", "body": BODY, "more_body": False}


async def send(message):
    if message["type"] == "http.response.start":
        statuses.add(message["status"])


async def one_round(n):
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        await app(dict(SCOPE), receive, send)
    return (time.process_time() - cpu) / n * 1e6, (time.perf_counter() - wall) / n * 1e6


async def main():
    state = {}
    lifespan_in, started = asyncio.Queue(), asyncio.Event()
    await lifespan_in.put({"type": "lifespan.startup"})

    async def l_send(message):
        if message["type"] == "lifespan.startup.complete":
            started.set()

    life = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": state},
                                   lifespan_in.get, l_send))
    await started.wait()
    SCOPE["state"] = state
    await one_round(200)  # warm: caches, the store's first connections
    best = None
    for _ in range(rounds):
        cpu, wall = await one_round(requests)
        best = (cpu, wall) if best is None or cpu < best[0] else best
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        await one_round(requests)
        prof.disable()
        stats = pstats.Stats(prof, stream=sys.stderr)
        calls = sum(v[1] for v in stats.stats.values())
        print(f"python calls per request: {calls / requests:.0f}", file=sys.stderr)
        stats.sort_stats(os.environ.get("BENCH_SORT", "tottime")).print_stats(profile)
    await lifespan_in.put({"type": "lifespan.shutdown"})
    await life
    print(json.dumps({"cpu_us": best[0], "wall_us": best[1], "statuses": sorted(statuses)}))


asyncio.run(main())
"""


def measure(src: Path, requests: int, rounds: int, profile: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="ogcflow-inprocess-") as data:
        env = {**os.environ, "PYTHONPATH": str(src), "OGCFLOW_DATA_DIR": data, "OGCFLOW_ACCESS_LOG": "false"}
        env.pop("OGCFLOW_METRICS_DIR", None)
        subprocess.run([sys.executable, "-m", "ogcflow", "db", "upgrade"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        out = subprocess.run([sys.executable, "-c", CHILD, str(requests), str(rounds), str(profile)], env=env,
                             stdout=subprocess.PIPE, text=True, check=True).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    if figures["statuses"] != [200]:
        raise SystemExit(f"the requests were not all answered 200: {figures['statuses']}")
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", help="an earlier revision to measure beside this checkout")
    ap.add_argument("--requests", type=int, default=3000, help="requests per round")
    ap.add_argument("--rounds", type=int, default=5, help="rounds (the best is kept)")
    ap.add_argument("--profile", type=int, default=0, help="print this many functions of a profiled round")
    args = ap.parse_args()
    sides = {"this checkout": ROOT / "src"}
    if args.against:
        sides[args.against] = worktree(args.against) / "src"
    results = {}
    for label, src in sides.items():
        results[label] = measure(src, args.requests, args.rounds, args.profile if label == "this checkout" else 0)
    print(f"{'':16} {'CPU µs/request':>15} {'wall µs/request':>16}")
    for label, r in results.items():
        print(f"{label:16} {r['cpu_us']:15.1f} {r['wall_us']:16.1f}")
    if args.against:
        new, old = results["this checkout"], results[args.against]
        print(f"{'ratio new/old':16} {new['cpu_us'] / old['cpu_us']:15.2f}x {new['wall_us'] / old['wall_us']:15.2f}x")


if __name__ == "__main__":
    main()
