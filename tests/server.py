"""A real ``ogcflow serve`` process for the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``ogcflow serve`` on a free port with its own data directory and settings."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None, workers: int = 2,
                 args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "OGCFLOW_DATA_DIR": str(data_dir), "OGCFLOW_ALLOW_PRIVATE_URLS": "true",
                    "OGCFLOW_CALLBACK_BACKOFF": "0.2", **(env or {})}
        self.workers = workers
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"
        self.db_url = self.env.get("OGCFLOW_DATABASE_URL") or f"sqlite:///{data_dir / 'ogcflow.db'}"

    def query(self, sql: str, **params: object) -> list[tuple]:
        """Read the server's store directly (what the API does not show, e.g. worker pids)."""
        from sqlalchemy import create_engine, text

        url = self.db_url.replace("postgresql://", "postgresql+psycopg://")
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(sql), params)]
        finally:
            engine.dispose()

    def start(self, timeout: float = 60) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "ogcflow", "serve", "--port", str(self.port), "--workers",
               str(self.workers), "--log-level", "warning", *self.args]
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()  # leave nothing running behind a failed start
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def job_process(self, job_id: str, timeout: float = 10) -> int:
        """The pid of the process running a job (the worker records ``host:pid/child``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.query("select worker from jobs where id = :id", id=job_id)
            worker = (rows[0][0] if rows else None) or ""
            if "/" in worker:
                return int(worker.rsplit("/", 1)[1])
            time.sleep(0.05)
        raise AssertionError(f"no process recorded for job {job_id}")

    def kill(self) -> None:
        """Kill the server and everything it started, at once (a crash)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        # the worker runs in a session of its own: kill it as a crash would
        subprocess.run(["pkill", "-9", "-f", "--", f"--parent-pid {self.proc.pid}( |$)"], check=False)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before or while /proc was read
        return False


def gone(*pids: int, timeout: float = 5) -> bool:
    """Wait up to ``timeout`` for every process to end; True when they all did."""
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
