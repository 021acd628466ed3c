"""This checkout beside an earlier revision of ogcflow, in one run: did a change slow anything down?

    python bench/bench_ab.py --against REV [--seconds 5] [--jobs 300] [--rounds 2]

The revision is checked out into a git worktree (bench/.work/ab-<rev>) and served from there with the same
interpreter and packages (its ``src`` first on PYTHONPATH). Both servers are measured alternately, round by
round, with the Part 1 figures (sync hello-world latency and throughput, async submissions and completion,
GET /jobs/{id}); the best round of each is printed with the ratio new / old (below 1 is faster for times).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_part1 import async_figures, sync_figures  # noqa: E402
from bench.common import WORK, start_ogcflow  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def worktree(rev: str) -> Path:
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    path = WORK / f"ab-{sha}"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True,
                       capture_output=True)
    return path


def measure(label: str, work: Path, env: dict[str, str], seconds: float, jobs: int) -> dict[str, float]:
    work.mkdir(parents=True, exist_ok=True)
    svc = start_ogcflow(work, env=env)
    try:
        print(f"-- {label}", flush=True)
        figures = sync_figures(svc, seconds)
        figures.update(async_figures(svc, jobs))
        return figures
    finally:
        svc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", required=True, help="the earlier revision (e.g. HEAD~1, a commit)")
    ap.add_argument("--seconds", type=float, default=5, help="duration of each wrk run")
    ap.add_argument("--jobs", type=int, default=300, help="async jobs submitted in each burst")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds (the best of each is kept)")
    args = ap.parse_args()

    old_src = worktree(args.against) / "src"
    work = WORK / f"ab-run-{int(time.time())}"
    sides = {"this checkout": {}, args.against: {"PYTHONPATH": str(old_src)}}
    best: dict[str, dict[str, float]] = {name: {} for name in sides}
    lower_better = {"sync_c1_p50_ms", "sync_c1_p95_ms", "sync_c8_p50_ms", "sync_c8_p95_ms", "async_all_done_s",
                    "status_p50_ms", "status_p95_ms"}
    for r in range(args.rounds):
        for i, (name, env) in enumerate(sides.items()):
            figures = measure(f"{name}, round {r + 1}", work / f"{r}-{i}", env, args.seconds, args.jobs)
            for key, value in figures.items():
                old = best[name].get(key)
                better = old is None or (value < old if key in lower_better else value > old)
                best[name][key] = value if better else old  # type: ignore[assignment]
    new, old = best["this checkout"], best[args.against]
    print(f"\n{'figure (best of ' + str(args.rounds) + ')':36} {'this checkout':>14} {args.against:>14} {'new/old':>8}")
    for key in ("sync_c1_p50_ms", "sync_c1_p95_ms", "sync_c8_p50_ms", "sync_c8_p95_ms", "sync_c8_rps",
                "async_submit_rps", "async_all_done_s", "status_p50_ms", "status_p95_ms"):
        a, b = new.get(key), old.get(key)
        if a is None or b is None:
            continue
        print(f"{key:36} {a:14.2f} {b:14.2f} {a / b if b else float('nan'):8.2f}")
    print(f"errors: this checkout {new.get('errors')}, {args.against} {old.get('errors')}; async failed: "
          f"{new.get('async_failed')} / {old.get('async_failed')}")


if __name__ == "__main__":
    main()
