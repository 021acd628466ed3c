"""What a durable record of cheap synchronous jobs costs: the sync hello-world figures of bench_part1 with the
records written after the response in batches (``OGCFLOW_SYNC_RECORD=batched``, the default) and before it
(``durable``, group-committed), optionally beside another source tree (e.g. main, for the 1.1x check).

    python bench/bench_sync_record.py [--seconds 5] [--rounds 2] [--baseline /path/to/other/src]

Rounds are interleaved (each configuration once per round) and the median of the rounds is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_part1 import sync_figures  # noqa: E402
from bench.common import ROOT, start_ogcflow  # noqa: E402

FIGURES = ("sync_c1_p50_ms", "sync_c1_p95_ms", "sync_c8_p50_ms", "sync_c8_rps", "errors")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--api-workers", type=int, default=2)
    ap.add_argument("--baseline", type=Path, help="another src/ directory to measure too (batched)")
    args = ap.parse_args()
    here = str(ROOT / "src")
    configs = {"batched": (here, "batched"), "durable": (here, "durable")}
    if args.baseline:
        configs = {"baseline batched": (str(args.baseline), "batched"), **configs}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in configs}
    for _ in range(args.rounds):
        for name, (src, mode) in configs.items():
            work = Path(tempfile.mkdtemp(prefix="bench-sync-record-"))
            env = {"PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", ""), "OGCFLOW_SYNC_RECORD": mode}
            svc = start_ogcflow(work, api_workers=args.api_workers, env=env)
            try:
                results[name].append(sync_figures(svc, args.seconds))
            finally:
                svc.stop()
                shutil.rmtree(work, ignore_errors=True)
    print(f"{'configuration':20}" + "".join(f"{f:>16}" for f in FIGURES))
    for name, runs in results.items():
        print(f"{name:20}" + "".join(f"{statistics.median(r[f] for r in runs):16.2f}" for f in FIGURES))


if __name__ == "__main__":
    main()
