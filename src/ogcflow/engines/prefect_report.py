"""What a job's flow run shows in the Prefect UI while and after the job runs, sent from the job's process:

- its log lines (ogcflow's warnings and errors, the job's start and end, the job's own log, e.g. a CWL run's,
  as it is written), sent about once a second while the job runs;
- its progress, as a progress artifact (made once the job has run for a second, or reports a percentage);
- optionally (``OGCFLOW_PREFECT_TASK_RUNS``), each job of a CWL run (a step, a scatter job) as a task run,
  Running from the first line of the log that names it to the line that says how it completed;
- at the end of a successful job, a markdown artifact linking the job's results (each output by reference,
  and for STAC results the catalog and every asset of every item).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from ogcflow.domain import Job
from ogcflow.engines.prefect_api import PrefectSync
from ogcflow.errors import ServiceUnavailable
from ogcflow.jobs.results import load_value, output_href
from ogcflow.packages.runner import redact_paths, step_event
from ogcflow.processes.base import JobContext
from ogcflow.runtime import Runtime

log = logging.getLogger("ogcflow.prefect")

LogRecord = tuple[float, int, str, str]

#: seconds between two sendings of log lines (and progress) while a job runs
SEND_EVERY = 1.0
#: the most lines of a job's own log sent to its flow run
MAX_LINES = 5000
MAX_LOG_BYTES = 8 * 1024 * 1024  # of a log file read at a time


class RunReport:
    """The log lines and artifacts of one job's flow run (one per job process, every attempt included)."""

    def __init__(self, rt: Runtime, api: PrefectSync, job: Job, run_id: str) -> None:
        self.rt = rt
        self.api = api
        self.job = job
        self.run_id = run_id
        self.lock = threading.Lock()
        self.records: list[LogRecord] = []
        self._ctx: JobContext | None = None  # the current attempt's
        self.log_path: Path | None = None  # the current attempt's log file, as followed
        self.log_lines = 0  # complete lines of it read (lines, not bytes: the runner rewrites it redacted)
        self.lines_sent = 0
        self.percent: float | None = None
        self.percent_sent: float | None = None
        self.progress_id: str | None = None
        self.attempt_started = time.monotonic()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.task_runs = rt.settings.prefect.task_runs
        self.tasks: dict[str, str | None] = {}  # CWL job name -> its task run (None: ended)

    # -- what the job's process adds ---------------------------------------------------------------

    def add(self, level: int, name: str, message: str) -> None:
        with self.lock:
            self.records.append((time.time(), level, name, message))

    def started(self, ctx: JobContext) -> None:
        """An attempt starts (``run_job``'s hook): follow its log file and its progress."""
        with self.lock:
            self.log_path, self.log_lines = None, 0
        self.attempt_started = time.monotonic()
        self.percent = 0.0 if self.percent is not None else None
        inner = ctx.report
        report = self

        def progress(percent: int | None, message: str | None) -> None:
            inner(percent, message)
            if percent is not None:
                report.percent = float(max(0, min(100, percent)))

        ctx.report = progress
        self._ctx = ctx
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="prefect-report", daemon=True)
            self.thread.start()

    # -- while the job runs --------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stopping.wait(SEND_EVERY):
            try:
                self._tail()
                self.send()
                self._progress()
            except ServiceUnavailable as exc:  # the lines are kept and sent with the next ones
                log.debug("flow run %s: not updated now: %s", self.run_id, exc)
            except Exception:  # the UI's view is a courtesy: never the job's failure
                log.debug("flow run %s: report failed", self.run_id, exc_info=True)

    def _tail(self) -> None:
        """New complete lines of the attempt's log file."""
        ctx = self._ctx
        path = ctx.log_path if ctx is not None else None
        if path is None:
            return
        with self.lock:
            if path != self.log_path:
                self.log_path, self.log_lines = path, 0
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_LOG_BYTES)
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        self._lines(data[:end + 1], path.parent)

    def _lines(self, data: bytes, workdir: Path | None) -> None:
        """The lines of the log (all of it, as read now) past those read before, sent with the server's paths
        redacted."""
        now = time.time()
        every = data.decode("utf-8", errors="replace").split("\n")
        if every and every[-1] == "":
            every.pop()
        with self.lock:
            fresh, self.log_lines = every[self.log_lines:], max(self.log_lines, len(every))
            lines = [redact_paths(line, workdir) if workdir is not None else line for line in fresh if line]
            room = max(0, MAX_LINES - self.lines_sent)
            self.lines_sent += min(room, len(lines))
            self.records.extend((now, logging.INFO, "ogcflow.job-log", line) for line in lines[:room])
        if self.task_runs:
            self._steps(lines)

    def _steps(self, lines: list[str]) -> None:
        """Task runs of the CWL jobs these log lines name: made Running, ended as they say."""
        for line in lines:
            event = step_event(line)
            if event is None:
                continue
            name, how = event
            if name not in self.tasks:
                self.tasks[name] = self.api.create_task_run(self.run_id, name)
            task_id = self.tasks[name]
            if how is not None and task_id is not None:
                self.api.end_task_run(task_id, "COMPLETED" if how == "success" else "FAILED", f"completed {how}")
                self.tasks[name] = None

    def _end_steps(self, successful: bool) -> None:
        """Task runs whose end the log did not say: the job's."""
        for name, task_id in list(self.tasks.items()):
            if task_id is not None:
                self.api.end_task_run(task_id, "COMPLETED" if successful else "FAILED", "the job ended")
                self.tasks[name] = None

    def send(self) -> None:
        """Send the lines gathered (kept if Prefect cannot take them now)."""
        with self.lock:
            records, self.records = self.records, []
        if not records:
            return
        try:
            self.api.post_logs(self.run_id, records)
        except ServiceUnavailable:
            with self.lock:
                self.records[:0] = records
            raise

    def _progress(self) -> None:
        percent = self.percent
        if percent is None:
            if time.monotonic() - self.attempt_started < SEND_EVERY:
                return
            percent = self.percent = 0.0
        if percent == self.percent_sent:
            return
        if self.progress_id is None:
            self.progress_id = self.api.create_artifact(self.run_id, "progress", percent,
                                                        description=f"progress of OGC job {self.job.id}")
        else:
            self.api.update_artifact(self.progress_id, percent)
        self.percent_sent = percent

    # -- the end --------------------------------------------------------------------------------

    def ended(self, log_key: str | None, successful: bool) -> None:
        """The attempt's process ended: stop following it and gather the rest of its log (from storage: its
        file is gone)."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None
        self.stopping.clear()
        try:
            if log_key:
                with self.lock:
                    workdir = self.log_path.parent if self.log_path is not None else None
                    if self.log_path is None:
                        self.log_lines = 0
                self._lines(self.rt.storage_for(self.job.namespace).read(log_key), workdir)
            self._end_steps(successful)
        except ServiceUnavailable as exc:
            log.warning("flow run %s: its task runs are not all ended: %s", self.run_id, exc)
        except Exception:  # the log is a courtesy to Prefect's UI; the job's outcome is recorded already
            log.warning("could not read the job log %s", log_key, exc_info=True)
        finally:
            with self.lock:
                self.log_path, self.log_lines = None, 0
            self.tasks = {}

    def finish(self, job: Job) -> None:
        """After the job's success (``job``: as recorded): progress at 100 %, the results artifact (best
        effort)."""
        try:
            if self.progress_id is not None and self.percent_sent != 100.0:
                self.api.update_artifact(self.progress_id, 100.0)
            self.api.create_artifact(self.run_id, "markdown", results_markdown(self.rt, job),
                                     description=f"results of OGC job {job.id}")
        except ServiceUnavailable as exc:
            log.warning("flow run %s: no results artifact: %s", self.run_id, exc)
        except Exception:
            log.warning("flow run %s: no results artifact", self.run_id, exc_info=True)


def base_of(rt: Runtime, job: Job) -> str:
    """Where clients reach the job: the URL of its request, else the server's public URL."""
    if job.request.base_url:
        return job.request.base_url
    root = (rt.settings.server.public_url or "").rstrip("/")
    return root if job.namespace == "default" else f"{root}/{job.namespace}/ogc-api"


def _web(href: str) -> bool:
    return href.startswith(("http://", "https://"))


def _stac_lines(value: Any, base: str, job_id: str) -> list[str]:
    """A STAC result (a FeatureCollection of items): its catalog (through the API, where the job's files are
    served, and where it is stored), then each asset of each item (its web address: the href, or an http(s)
    alternate of a storage href)."""
    if not (isinstance(value, dict) and value.get("type") == "FeatureCollection"):
        return []
    lines: list[str] = []
    features = [f for f in value.get("features") or [] if isinstance(f, dict)]
    catalogs = {str(link.get("href")) for f in features for link in f.get("links") or []
                if isinstance(link, dict) and link.get("rel") == "root" and link.get("href")}
    for href in sorted(catalogs):
        inside = href.split(f"/{job_id}/", 1)
        if len(inside) == 2 and not _web(href):
            api = f"{base}/jobs/{job_id}/files/{inside[1]}"
            lines.append(f"- STAC catalog: [{api}]({api}) (stored at `{href}`)")
        else:
            lines.append(f"- STAC catalog: [{href}]({href})")
    for feature in features:
        for key, asset in (feature.get("assets") or {}).items():
            if not (isinstance(asset, dict) and asset.get("href")):
                continue
            href = str(asset["href"])
            alternates = [str(alt.get("href")) for alt in (asset.get("alternate") or {}).values()
                          if isinstance(alt, dict) and _web(str(alt.get("href", "")))]
            web = href if _web(href) else next(iter(alternates), None)
            title = asset.get("title") or key
            where = f"[{web}]({web})" if web else f"`{href}`"
            stored = f" (stored at `{href}`)" if web and web != href else ""
            lines.append(f"  - item `{feature.get('id', '')}`, {title}: {where}{stored}")
    return lines


def results_markdown(rt: Runtime, job: Job) -> str:
    base = base_of(rt, job)
    results = f"{base}/jobs/{job.id}/results"
    lines = [f"# OGC job `{job.id}`", "",
             f"Process `{job.process_id}` (namespace `{job.namespace}`): **{job.status.value}**", "",
             f"- results: [{results}]({results})", f"- status: [{base}/jobs/{job.id}]({base}/jobs/{job.id})"]
    storage = rt.storage_for(job.namespace)
    for output_id, entry in (job.results or {}).items():
        href = output_href(base, job.id, output_id)
        lines.append(f"- output `{output_id}` ({entry.media_type}): [{href}]({href})")
        if entry.media_type.split(";")[0].strip() in ("application/geo+json", "application/json") \
                and not entry.binary:
            try:
                value = load_value(entry, storage)
            except Exception:
                continue
            lines.extend(_stac_lines(value, base, job.id))
    return "\n".join(lines) + "\n"
