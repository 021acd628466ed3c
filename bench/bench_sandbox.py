"""What the sandbox of CWL tools (bubblewrap, ``ogcflow.packages.sandbox``) costs per job process.

    bench/run.sh sandbox [--runs 30]
    (or: PYTHONPATH=src python bench/bench_sandbox.py --runs 30)

In one warm process (cwltool imported and the package loaded once, as in a worker's job process), the same
one-command CommandLineTool (`sh -c 'echo ... > out.txt'`) is run with cwltool's Python API with and
without the sandbox; the figure is the difference of the medians, i.e. what a job process of a one-command
package pays: the sandbox's set-up (its directory, passwd/group), bwrap's namespaces and mounts, prlimit and
setpriv, and the check of the inputs and outputs. A bare `bwrap ... true` beside a bare `true` shows the
share of the namespaces alone. Target (issue 12): <= 20 ms.

Where the host has writable cgroup v1 ``memory`` and ``pids`` hierarchies (``ogcflow.cgroups``), the worker
also gives each job process a control group of its own: a bare fork-and-exit beside the same fork with the
group created, joined by the child and removed after it, shows what that adds per job process.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_cwl import TOOL  # noqa: E402  (the same one-command package)
from ogcflow import cgroups  # noqa: E402
from ogcflow.packages.runner import load_package, run_package  # noqa: E402
from ogcflow.packages.sandbox import Limits, Sandbox  # noqa: E402
from ogcflow.settings import SandboxSettings  # noqa: E402


def cpu_seconds() -> float:
    """CPU time of this process and of the children it waited for (bwrap, prlimit, setpriv, the tool)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def median_ms(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """The median wall time and the mean CPU time (this process and its children) of ``fn``, in ms."""
    fn()  # warm-up
    times = []
    cpu = cpu_seconds()
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000, (cpu_seconds() - cpu) / runs * 1000


def fork_and_wait(groups: cgroups.JobCgroups | None, name: str) -> None:
    """What the worker does per job process, without the job: fork a child that exits at once (in a group of
    its own, created before the fork, joined first by the child, removed once it has exited)."""
    group = groups.create(name, memory_mb=1024, processes=64) if groups is not None else None
    pid = os.fork()
    if pid == 0:
        if group is not None:
            group.join()
        os._exit(0)
    os.waitpid(pid, 0)
    if group is not None:
        group.kill()
        group.remove()


def group_figures(runs: int) -> tuple[tuple[float, float], tuple[float, float]] | str:
    """Fork-and-exit without and with a job group, or why groups cannot be used here."""
    detected = cgroups.detect()
    if isinstance(detected, str):
        return detected
    groups = detected.of_worker(os.getpid())
    count = iter(range(10**9))
    try:
        bare = median_ms(lambda: fork_and_wait(None, ""), runs)
        grouped = median_ms(lambda: fork_and_wait(groups, f"bench.{next(count)}"), runs)
    finally:
        groups.remove_empty()
    return bare, grouped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    settings = SandboxSettings.from_flat({})
    with tempfile.TemporaryDirectory(prefix="ogcflow-bench-sandbox-") as tmp:
        package = Path(tmp) / "tool.cwl"
        package.write_text(TOOL, encoding="utf-8")
        load_package(package, "bench-echo")

        def job(sandboxed: bool) -> None:
            workdir = Path(tempfile.mkdtemp(dir=tmp))
            sandbox = Sandbox(settings, workdir) if sandboxed else None
            run = run_package(package, "bench-echo", {"word": "hi"}, workdir / "cwl", parallel=False,
                              sandbox=sandbox)
            assert Path(run.outputs["out"]["path"]).read_text() == "hi\n"

        plain = median_ms(lambda: job(False), args.runs)
        boxed = median_ms(lambda: job(True), args.runs)
        root = Path(tempfile.mkdtemp(dir=tmp))
        prefix = Sandbox(settings, root).command_prefix([], "/", "deny", Limits.ceilings(settings))
        bare = median_ms(lambda: subprocess.run(["true"], check=True), args.runs)
        wrapped = median_ms(lambda: subprocess.run([*prefix, "true"], check=True), args.runs)
    groups = group_figures(max(args.runs, 200))
    print(f"one-command package, {args.runs} job runs in a warm process (load average "
          f"{os.getloadavg()[0]:.1f}):    wall (median)  CPU (mean, with children)")
    print(f"  without the sandbox   {plain[0]:7.1f} ms {plain[1]:13.1f} ms")
    print(f"  with the sandbox      {boxed[0]:7.1f} ms {boxed[1]:13.1f} ms")
    print(f"  cost of the sandbox   {boxed[0] - plain[0]:7.1f} ms {boxed[1] - plain[1]:13.1f} ms per job process "
          "(target <= 20 ms)")
    print(f"bare command: true {bare[0]:.1f} ms, in the sandbox {wrapped[0]:.1f} ms (+{wrapped[0] - bare[0]:.1f} ms "
          f"wall, +{wrapped[1] - bare[1]:.1f} ms CPU: namespaces, mounts, prlimit, setpriv)")
    if isinstance(groups, str):
        print(f"control group per job: not measured ({groups})")
    else:
        (forked, forked_cpu), (grouped, grouped_cpu) = groups
        print(f"control group per job: fork and exit {forked:.2f} ms, in a group of its own {grouped:.2f} ms "
              f"(+{grouped - forked:.2f} ms wall, +{grouped_cpu - forked_cpu:.2f} ms CPU: create, join, kill, remove)")


if __name__ == "__main__":
    main()
