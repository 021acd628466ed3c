"""What operators ask of a running server: is it ready (store, engine and results storage reachable), and what
the store knows of all jobs (the metrics read at scrape time)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ogcflow.engines.base import Engine
from ogcflow.runtime import Runtime
from ogcflow.store import JobStats

#: seconds each readiness check may take before it counts as failed
CHECK_TIMEOUT = 3.0


@dataclass(frozen=True, slots=True)
class Check:
    """One dependency of the server, as a readiness probe found it."""

    name: str
    ok: bool
    seconds: float
    #: why it failed (None when it is fine)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: list[Check]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text}"[:500] if text else exc.__class__.__name__


class OpsService:
    def __init__(self, rt: Runtime, engine: Engine) -> None:
        self.rt = rt
        self.engine = engine

    async def _check(self, name: str, probe: Callable[[], Awaitable[None]]) -> Check:
        started = time.monotonic()
        try:
            await asyncio.wait_for(probe(), CHECK_TIMEOUT)
        except TimeoutError:
            return Check(name, False, time.monotonic() - started, f"no answer within {CHECK_TIMEOUT:g} s")
        except Exception as exc:  # whatever failed is the answer
            return Check(name, False, time.monotonic() - started, _reason(exc))
        return Check(name, True, time.monotonic() - started)

    async def ready(self) -> Readiness:
        """The store answers a query, the engine its health check, the results storage a look-up; all at once,
        each bounded by :data:`CHECK_TIMEOUT`."""
        rt = self.rt
        checks = await asyncio.gather(
            self._check("store", lambda: asyncio.to_thread(rt.store.ping)),
            self._check(f"engine ({self.engine.name})", self.engine.check),
            self._check("results storage", lambda: asyncio.to_thread(rt.storage.check)),
        )
        return Readiness(list(checks))

    async def job_stats(self) -> JobStats:
        """Jobs by namespace, process and status with their durations; the workers busy now."""
        fresh = self.rt.settings.engine.stale_after_seconds
        return await asyncio.to_thread(self.rt.store.stats.jobs, fresh)
