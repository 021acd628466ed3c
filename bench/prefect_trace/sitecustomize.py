"""Counts the HTTP calls of an ogcflow server's processes (``bench/bench_prefect.py --trace``): put this
directory first on PYTHONPATH and name a file in OGCFLOW_BENCH_TRACE; every request an httpx client sends
appends ``time pid seconds method path status`` to it (job processes, forked, included)."""

from __future__ import annotations

import os
import time

_PATH = os.environ.get("OGCFLOW_BENCH_TRACE")

if _PATH:
    import httpx

    def _note(started: float, request: httpx.Request, status: int) -> None:
        line = (f"{started:.6f} {os.getpid()} {time.time() - started:.6f} {request.method} "
                f"{request.url.path} {status}\n")
        fd = os.open(_PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    _send = httpx.Client.send
    _asend = httpx.AsyncClient.send

    def send(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.time()
        status = 0
        try:
            resp = _send(self, request, *args, **kwargs)
            status = resp.status_code
            return resp
        finally:
            _note(started, request, status)

    async def asend(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        started = time.time()
        status = 0
        try:
            resp = await _asend(self, request, *args, **kwargs)
            status = resp.status_code
            return resp
        finally:
            _note(started, request, status)

    httpx.Client.send = send  # type: ignore[method-assign]
    httpx.AsyncClient.send = asend  # type: ignore[method-assign]
