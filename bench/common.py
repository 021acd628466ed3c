"""Shared pieces of the benchmark scripts: servers started side by side, wrk runs, figures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@dataclass
class Service:
    name: str
    url: str
    proc: subprocess.Popen
    workdir: Path
    extra: dict = field(default_factory=dict)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        subprocess.run(["pkill", "-9", "-f", "--", f"--parent-pid {self.proc.pid}( |$)"], check=False)


def start_ogcflow(workdir: Path, *, api_workers: int = 2, workers: int = 2, env: dict | None = None,
                  prepare: Callable[[Path], None] | None = None) -> Service:
    port = free_port()
    data = workdir / "ogcflow-data"
    data.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "OGCFLOW_DATA_DIR": str(data), **(env or {})}
    if prepare is not None:
        prepare(data)
    cmd = [sys.executable, "-m", "ogcflow", "serve", "--port", str(port), "--api-workers", str(api_workers),
           "--workers", str(workers), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=full_env, stdout=open(workdir / "ogcflow.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/conformance", proc=proc)
    return Service("ogcflow", url, proc, data)


def pygeoapi_python() -> str:
    """The peer needs Python >= 3.12 (pygeoapi >= 0.22): its own virtualenv under bench/.work."""
    venv = WORK / "pygeoapi-venv"
    py = venv / "bin" / "python"
    if not py.exists():
        # a pyenv shim may be on PATH without its version selected: take the first interpreter that runs
        candidates = [shutil.which("python3.12"), str(Path.home() / ".pyenv/versions/3.12.1/bin/python3.12")]
        base = next((c for c in candidates if c and subprocess.run([c, "--version"], capture_output=True,
                                                                     check=False).returncode == 0), None)
        if base is None:
            raise SystemExit("the pygeoapi peer needs python3.12 on PATH")
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "pygeoapi==0.24.0", "gunicorn==27.0.1"], check=True)
    return str(py)


def start_pygeoapi(workdir: Path, prepare: Callable[[Path], None] | None = None) -> Service:
    """pygeoapi 0.24 with hello-world and the TinyDB manager under gunicorn (2 workers x 4 threads)."""
    py = pygeoapi_python()
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "pygeoapi-outputs").mkdir(exist_ok=True)
    template = (ROOT / "bench" / "pygeoapi-config.yml").read_text()
    cfg = workdir / "pygeoapi.yml"
    cfg.write_text(template.replace("PORT", str(port)).replace("WORKDIR", str(workdir)))
    oapi = workdir / "pygeoapi-openapi.yml"
    env = {**os.environ, "PYGEOAPI_CONFIG": str(cfg), "PYGEOAPI_OPENAPI": str(oapi)}
    bindir = Path(py).parent
    subprocess.run([str(bindir / "pygeoapi"), "openapi", "generate", str(cfg), "--output-file", str(oapi)],
                   env=env, check=True, capture_output=True)
    if prepare is not None:
        prepare(workdir)
    proc = subprocess.Popen([str(bindir / "gunicorn"), "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}",
                             "pygeoapi.flask_app:APP"], env=env, stdout=open(workdir / "pygeoapi.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/conformance", proc=proc)
    return Service("pygeoapi", url, proc, workdir)


def start_bare(workdir: Path) -> Service:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "bench"), "bare_asgi:app",
                             "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
                             "--log-level", "warning"], stdout=open(workdir / "bare.log", "ab"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", proc=proc)
    return Service("bare ASGI", url, proc, workdir)


_LUA = """
wrk.method = "{method}"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{headers}
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %f\\n", summary.requests, latency:percentile(50),
    latency:percentile(95), latency:percentile(99), summary.errors.status + summary.errors.connect +
    summary.errors.read + summary.errors.write + summary.errors.timeout, summary.duration / 1e6))
end
"""


@dataclass
class WrkResult:
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(url: str, *, method: str = "GET", body: str | None = None, headers: dict[str, str] | None = None,
        connections: int = 1, threads: int = 1, seconds: float = 10, timeout: float = 30) -> WrkResult:
    """Run wrk (Debian's package) against ``url``; percentiles from its full latency histogram."""
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk (bench/run.sh installs it)")
    lua = _LUA.format(method=method, body=json.dumps(body) if body is not None else "nil",
                      headers="\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items()))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(lua)
    try:
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", f"--timeout={int(timeout)}s",
               "-s", fh.name, url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(fh.name)
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    n, p50, p95, p99, errors, secs = line.split()[1:]
    return WrkResult(int(n), int(p50) / 1000, int(p95) / 1000, int(p99) / 1000, int(errors), float(secs))


def burst(func: Callable[[int], object], count: int, concurrency: int) -> tuple[float, list[object]]:
    """Call ``func(i)`` for i < count on ``concurrency`` threads; (seconds, results)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(func, range(count)))
    return time.perf_counter() - started, results


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
