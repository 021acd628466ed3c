"""Overhead of running a CWL package through ogcflow (API + local engine + cwltool + storage) over the
tool's own time, beside cwltool's command line, in one run.

    bench/run.sh cwl [--runs 20]

The package is one CommandLineTool (`sh -c 'echo ...'`). Figures: median seconds per synchronous
execution through the API, per `cwltool` command-line run, and per direct run of the tool's command.
Target (issue 4): <= 0.2 s of overhead over the tool's own time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, start_ogcflow  # noqa: E402

TOOL = """
cwlVersion: v1.2
class: CommandLineTool
id: bench-echo
baseCommand: [sh, -c, 'echo "$0" > out.txt']
inputs:
  word: {type: string, inputBinding: {position: 1}}
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""


def median_time(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    work = WORK / f"cwl-{int(time.time())}"
    work.mkdir(parents=True)
    (work / "tool.cwl").write_text(TOOL)
    (work / "job.yml").write_text("word: hello\n")
    token = "bench-token"
    svc = start_ogcflow(work, api_workers=1, workers=2, env={"OGCFLOW_ADMIN_TOKEN": token})
    try:
        with httpx.Client(base_url=svc.url, timeout=60) as c:
            resp = c.post("/processes", content=TOOL, headers={"Content-Type": "application/cwl+yaml",
                                                               "Authorization": f"Bearer {token}"})
            resp.raise_for_status()

            def via_api() -> None:
                r = c.post("/processes/bench-echo/execution", json={"inputs": {"word": "hello"}})
                assert r.status_code == 200 and r.text.strip() == "hello", r.text

            api = median_time(via_api, args.runs)
    finally:
        svc.stop()
    cwltool = str(Path(sys.executable).parent / "cwltool")

    def via_cli() -> None:
        subprocess.run([cwltool, "--quiet", "--outdir", str(work / "cli-out"), str(work / "tool.cwl"),
                        str(work / "job.yml")], check=True, capture_output=True)

    def direct() -> None:
        subprocess.run(["sh", "-c", 'echo "$0" > /dev/null', "hello"], check=True)

    cli = median_time(via_cli, max(5, args.runs // 4))
    tool = median_time(direct, args.runs)
    print(f"{'path':44} {'median s':>9} {'overhead s':>11}")
    print(f"{'the tool alone (sh -c echo)':44} {tool:9.3f} {'-':>11}")
    print(f"{'ogcflow: sync execution through the API':44} {api:9.3f} {api - tool:11.3f}   target <= 0.2")
    print(f"{'cwltool command line':44} {cli:9.3f} {cli - tool:11.3f}")
    print(f"\nogcflow vs cwltool command line: {cli / api:.1f}x faster")


if __name__ == "__main__":
    main()
