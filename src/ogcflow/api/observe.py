"""Request metrics and the access log: one pure ASGI middleware around everything (the fast path included),
and the Prometheus exposition of ``/metrics``.

Requests are counted and timed by method, route template (``/jobs/{jobId}``, never the path itself) and
status, in plain per-process tables (a request costs a few dictionary updates, not prometheus_client's
locked writes). When ``OGCFLOW_METRICS_DIR`` is set (``ogcflow serve`` sets it), every API process writes its
table there once a second and ``/metrics`` adds up those of all of them (its own read live). Job figures are
read from the store at scrape time (:class:`ogcflow.services.ops.OpsService`), so they count every worker on
every host once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from bisect import bisect_left
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ogcflow import __version__
from ogcflow.models import StatusCode
from ogcflow.store import JobStats
from ogcflow.store.stats import DURATION_BUCKETS

access = logging.getLogger("ogcflow.access")
log = logging.getLogger("ogcflow.api")

#: the route of requests no route matched (a 404): one label, whatever the path
UNMATCHED = "<unmatched>"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_DIR = "OGCFLOW_METRICS_DIR"
#: label sets kept at most (a route template is a bounded set; this bounds methods and statuses too)
MAX_SERIES = 10000


class RequestStats:
    """This process's requests: counts by (method, route, status), latency histograms by (method, route)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        #: per (method, route): a count per latency bucket (the last: above every bound), then the sum
        self.latency: dict[tuple[str, str], list[float]] = {}
        self.dirty = False

    def add(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        count = self.counts.get(key)
        if count is None and len(self.counts) >= MAX_SERIES:
            return
        self.counts[key] = (count or 0) + 1
        hist = self.latency.get((method, route))
        if hist is None:
            hist = self.latency[(method, route)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        hist[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hist[-1] += seconds
        self.dirty = True

    def snapshot(self) -> dict[str, Any]:
        return {"counts": [[m, r, s, n] for (m, r, s), n in self.counts.items()],
                "latency": [[m, r, list(h)] for (m, r), h in self.latency.items()]}

    def flush(self, directory: Path) -> None:
        """This process's table into ``directory`` (replaced whole: a reader never sees half of it)."""
        path = directory / f"requests-{os.getpid()}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot()), encoding="utf-8")
        tmp.replace(path)
        self.dirty = False


REQUESTS = RequestStats()


def metrics_dir() -> Path | None:
    found = os.environ.get(METRICS_DIR)
    return Path(found) if found and os.path.isdir(found) else None


async def flush_forever(interval: float = 1.0) -> None:
    """Publish this process's table to the metrics directory once a second (when it changed)."""
    directory = metrics_dir()
    if directory is None:
        return
    while True:
        await asyncio.sleep(interval)
        if REQUESTS.dirty:
            try:
                await asyncio.to_thread(REQUESTS.flush, directory)
            except OSError:  # a full or vanished directory: the next turn tries again
                log.warning("could not write the request metrics to %s", directory, exc_info=True)


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    found = scope.get("ogcflow.route")  # the fast path says which route it stands for
    return found if isinstance(found, str) else UNMATCHED


class Observe:
    """Counts, times and logs every HTTP request."""

    def __init__(self, app: ASGIApp, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            elapsed = time.perf_counter() - started
            method: str = scope["method"]
            route = route_of(scope)
            REQUESTS.add(method, route, status, elapsed)
            if self.access_log and access.isEnabledFor(logging.INFO):
                self._log(scope, method, route, status, elapsed)

    @staticmethod
    def _log(scope: Scope, method: str, route: str, status: int, elapsed: float) -> None:
        client = scope.get("client")
        host = client[0] if client else "-"
        query = scope.get("query_string", b"")
        path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        ms = round(elapsed * 1000, 2)
        # the record made directly: logging's search of the caller's frame is most of what a log call costs
        record = access.makeRecord(access.name, logging.INFO, "(access)", 0, '%s "%s %s HTTP/%s" %d %.2fms',
                                   (host, method, path, scope.get("http_version", "1.1"), status, ms), None,
                                   extra={"client": host, "method": method, "path": scope["path"],
                                          "route": route, "status": status, "duration_ms": ms})
        access.handle(record)


class _RequestCollector(Collector):
    """The request tables of every API process (this one's as it is now, the others' as last written)."""

    def __init__(self, own: dict[str, Any], directory: Path | None) -> None:
        self.own = own
        self.directory = directory

    def _tables(self) -> Iterator[dict[str, Any]]:
        yield self.own
        if self.directory is None:
            return
        mine = f"requests-{os.getpid()}.json"
        for path in sorted(self.directory.glob("requests-*.json")):
            if path.name == mine:
                continue
            try:
                yield json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # replaced or removed while read: its figures come next scrape
                continue

    def collect(self) -> Iterator[Metric]:
        counts: dict[tuple[str, str, int], float] = {}
        latency: dict[tuple[str, str], list[float]] = {}
        for table in self._tables():
            for m, r, s, n in table.get("counts", []):
                counts[(m, r, s)] = counts.get((m, r, s), 0) + n
            for m, r, h in table.get("latency", []):
                found = latency.get((m, r))
                if found is None:
                    latency[(m, r)] = list(h)
                else:
                    for i, v in enumerate(h):
                        found[i] += v
        requests = CounterMetricFamily("ogcflow_http_requests", "HTTP requests answered, by method, route "
                                       "template and status", labels=["method", "route", "status"])
        for (m, r, s), n in sorted(counts.items()):
            requests.add_metric([m, r, str(s)], n)
        yield requests
        hist = HistogramMetricFamily("ogcflow_http_request_duration_seconds", "Time to answer an HTTP request "
                                     "(until the body was handed to the server), by method and route template",
                                     labels=["method", "route"])
        for (m, r), h in sorted(latency.items()):
            total, buckets = 0.0, []
            for bound, n in zip(LATENCY_BUCKETS, h, strict=False):
                total += n
                buckets.append((f"{bound:g}", total))
            buckets.append(("+Inf", total + h[len(LATENCY_BUCKETS)]))
            hist.add_metric([m, r], buckets, h[-1])
        yield hist


class _JobCollector(Collector):
    """The figures of the store, read once per scrape."""

    def __init__(self, stats: JobStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        jobs = GaugeMetricFamily("ogcflow_jobs", "Jobs in the store, by namespace, process and status",
                                 labels=["namespace", "process", "status"])
        queued = GaugeMetricFamily("ogcflow_jobs_queued", "Jobs accepted and waiting for a worker (queue depth)",
                                   labels=["namespace", "process"])
        durations = HistogramMetricFamily("ogcflow_job_duration_seconds", "Run time of ended jobs (started to "
                                          "finished), by namespace, process and status",
                                          labels=["namespace", "process", "status"])
        total_queued = 0
        for g in stats.groups:
            jobs.add_metric([g.namespace, g.process_id, g.status.value], g.count)
            if g.status is StatusCode.accepted:
                queued.add_metric([g.namespace, g.process_id], g.count)
                total_queued += g.count
            if g.timed and g.buckets:
                cumulative = [(f"{bound:g}", float(n)) for bound, n in zip(DURATION_BUCKETS, g.buckets, strict=True)]
                cumulative.append(("+Inf", float(g.timed)))
                durations.add_metric([g.namespace, g.process_id, g.status.value], cumulative, g.duration_sum)
        yield jobs
        yield queued
        yield GaugeMetricFamily("ogcflow_queue_depth", "Jobs accepted and waiting for a worker, in all",
                                value=total_queued)
        yield durations
        alive = GaugeMetricFamily("ogcflow_workers", "Worker daemons alive (a heartbeat within "
                                  "OGCFLOW_STALE_AFTER_SECONDS), by engine", labels=["engine"])
        slots = GaugeMetricFamily("ogcflow_worker_slots", "Job slots of the workers alive, by engine",
                                  labels=["engine"])
        running = GaugeMetricFamily("ogcflow_worker_jobs_running", "Jobs the workers alive run now, by engine",
                                    labels=["engine"])
        for engine, (count, total, busy) in sorted(stats.workers.items()):
            alive.add_metric([engine], count)
            slots.add_metric([engine], total)
            running.add_metric([engine], busy)
        yield alive
        yield slots
        yield running
        yield GaugeMetricFamily("ogcflow_workers_busy", "Workers running at least one job now (a heartbeat "
                                "within OGCFLOW_STALE_AFTER_SECONDS)", value=stats.busy_workers)
        info = GaugeMetricFamily("ogcflow_build_info", "The version of ogcflow", labels=["version"])
        info.add_metric([__version__], 1)
        yield info


def exposition(own: dict[str, Any], stats: JobStats) -> bytes:
    """The text of ``/metrics``: the request tables of every API process (``own``: this one's snapshot) and the
    job figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RequestCollector(own, metrics_dir()))
    registry.register(_JobCollector(stats))
    return generate_latest(registry)
