"""The worker daemon: job slots, one forked process (its own process group) per job, heartbeats, dismissal,
time limits and recovery. Where jobs come from and how a job process drives them is its :class:`JobSource`
(the store's queue for the local engine, a work pool's flow runs for Prefect); what must be running before
jobs fork (a step server, a warm cwltool) comes from :class:`WorkerPlugin` objects.

``ogcflow serve`` starts one worker daemon with ``--workers N`` slots; ``ogcflow worker`` starts one on any
machine that reaches the store and the results storage.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

from ogcflow.cgroups import JobCgroups, JobGroup, default_job_memory_mb, out_of_memory_message
from ogcflow.children import become_subreaper, children_of, die_with_parent, kill_descendants, stop_child
from ogcflow.domain import Job
from ogcflow.jobs.callbacks import dispatch_forever
from ogcflow.jobs.execution import run_job
from ogcflow.models import StatusCode
from ogcflow.runtime import Runtime
from ogcflow.store import worker_identity

log = logging.getLogger("ogcflow.worker")

WAKE_FIFO = "worker.wake"


def wake_workers(data_dir: Path) -> None:
    """Nudge a local worker of this host that a job waits (a byte into a FIFO); workers elsewhere poll."""
    try:
        fd = os.open(data_dir / WAKE_FIFO, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no FIFO or no worker reading it: the workers' polling picks the job up
        return
    try:
        os.write(fd, b"j")
    except OSError:
        pass
    finally:
        os.close(fd)


class End(Enum):
    """How the worker ended a job that its process did not record."""

    lost = "lost"  # failed: killed, crashed, timed out, worker gone
    stopped = "stopped"  # dismissed: its processes were killed


class JobSource(Protocol):
    """Where a worker's jobs come from, and what else must know when they run and end."""

    #: the engine whose jobs these are (the store's ``engine`` column)
    engine: str

    def take(self, woken: bool) -> Job | None:
        """The next job for a free slot, already marked running for this worker; None when none waits.
        ``woken``: a job was submitted on this host since the last call."""
        ...

    def execute(self, job: Job) -> None:
        """Run the job (in its forked process): ``run_job`` and whatever the engine shows of it. The job
        may be given back (its status accepted again) when the engine says it cannot start yet."""
        ...

    def cancelled(self, job_ids: Sequence[str], *, fresh: bool) -> list[str]:
        """Of these running jobs, those cancelled in the engine itself. Asked every ~0.1 s while jobs run
        (``fresh=False``: the source may answer from its last look, or not look), and when a job process
        ended without recording an end (``fresh=True``)."""
        ...

    def ended(self, job_id: str, how: End, reason: str) -> None:
        """The worker ended a job (the store is updated already)."""
        ...

    #: a job whose run was lost may be queued again as its next attempt (``JobStore.rerun_lost``), which
    #: this source then takes again
    reruns_lost: bool


class WorkerPlugin(Protocol):
    """Something a worker starts before it forks job processes and stops when it stops."""

    #: lower starts first (a plugin that forks a process of its own wants to start before threads exist)
    order: int

    def start(self) -> None: ...

    def stop(self) -> None: ...


class StoreQueue:
    """The local engine's jobs: accepted rows of the store, claimed with a conditional update."""

    engine = "local"
    reruns_lost = True

    def __init__(self, rt: Runtime, identity: str) -> None:
        self.rt = rt
        self.identity = identity

    def take(self, woken: bool) -> Job | None:
        return self.rt.store.jobs.claim(self.engine, self.identity)

    def execute(self, job: Job) -> None:
        run_job(self.rt, job)

    def cancelled(self, job_ids: Sequence[str], *, fresh: bool) -> list[str]:
        return []  # a dismissal is a status in the store, which the worker watches

    def ended(self, job_id: str, how: End, reason: str) -> None:
        return None


@dataclass
class _Child:
    job_id: str
    pid: int
    started: float
    pidfd: int = -1
    attempt: int = 1
    #: the job's control group (None: the host gives none)
    group: JobGroup | None = None


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie (an orphan that no init has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # it ended meanwhile
        return False
    except OSError:
        return True


def _end_group(worker: str) -> None:
    """Kill what is left of the process group of a job whose worker died (``host:pid/child``): the job's
    process died with its worker, processes it started in its group may not have (without the sandbox)."""
    child = worker.rsplit("/", 1)[-1] if "/" in worker else ""
    if child.isdigit() and not pid_alive(int(child)):  # the group's leader is gone: the id is not reused
        try:
            os.killpg(int(child), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class Worker:
    """A worker daemon with ``concurrency`` job slots, taking jobs from ``source``."""

    def __init__(self, rt: Runtime, source: JobSource, *, concurrency: int = 2, callbacks: bool = True,
                 parent_pid: int | None = None, plugins: Sequence[WorkerPlugin] = (),
                 identity: str | None = None, cgroups: JobCgroups | None = None) -> None:
        self.rt = rt
        #: where this host's job groups are made (None: jobs get rlimits only)
        self.cgroups = cgroups
        self._groups: JobCgroups | None = None
        self._job_memory_mb = 0
        self._forks = 0
        self.source = source
        self.parent_pid = parent_pid
        self.concurrency = max(1, concurrency)
        self.identity = identity or worker_identity()
        self.plugins = sorted(plugins, key=lambda p: p.order)
        self.children: dict[int, _Child] = {}
        self.stopping = False
        self.callbacks = callbacks
        self.dispatcher_pid: int | None = None
        self.wake_fd = -1
        self._wake_keep = -1
        self.woken = False  # a job was submitted on this host since the last look
        self.last_watch = self.last_beat = self.last_reap = 0.0
        self._started: list[WorkerPlugin] = []
        self._own: set[int] = set()

    # -- what the worker does to a job it ends ---------------------------------------------------

    def lost(self, job_id: str, reason: str, *, rerun: bool = False, attempt: int | None = None) -> None:
        """A job ended without its process recording it (killed, crashed, timed out, worker gone).
        ``rerun``: its run was lost through no fault of its own (worker or process killed), so it is queued
        again while its process allows another attempt (:meth:`rerun_lost`). ``attempt``: the attempt that
        was lost, if known (a later one is left alone)."""
        if rerun:
            reason = self.rerun_lost(job_id, reason, attempt)
            if not reason:
                return
        self.rt.store.jobs.fail_lost(job_id, reason, attempt)
        self.source.ended(job_id, End.lost, reason)

    def rerun_lost(self, job_id: str, reason: str, attempt: int | None = None) -> str:
        """Queue a lost job again as its next attempt, up to ``1 + Process.lost_reruns`` attempts: "" when it
        is queued (or a later attempt runs already), else the reason to fail it with (naming the attempt
        when it was a re-run)."""
        job = self.rt.store.jobs.for_engine(job_id) if self.source.reruns_lost else None
        if job is None:
            return f"{reason}; submit it again"
        if attempt is not None and attempt != job.attempt:
            return ""
        try:
            attempts = 1 + max(0, self.rt.catalog.get(job.process_id, job.namespace).lost_reruns)
        except Exception:  # undeployed meanwhile: nothing to run again
            attempts = 1
        if self.rt.store.jobs.rerun_lost(job_id, job.attempt, reason, attempts):
            log.warning("job %s: attempt %d lost (%s); queued again", job_id, job.attempt, reason)
            return ""
        if attempts > 1:
            return f"{reason} (attempt {job.attempt} of {attempts}); submit it again"
        return f"{reason}; submit it again"

    def stopped(self, job_id: str) -> None:
        """A dismissed job's processes were killed: keep nothing of it."""
        job = self.rt.store.jobs.for_engine(job_id)
        self.rt.storage_for(job.namespace if job else "").delete_job(job_id)
        self.source.ended(job_id, End.stopped, "dismissed; the job's processes were stopped")

    # -- life cycle ---------------------------------------------------------------------------

    def recover(self) -> None:
        """Fail the jobs a dead worker of this host left running (its process is gone)."""
        host = socket.gethostname()
        for job in self.rt.store.jobs.running_on(self.source.engine, host + ":"):
            pid = int((job.worker or "").rsplit(":", 1)[-1].split("/")[0] or 0)
            if not pid or not pid_alive(pid) or pid == os.getpid():
                _end_group(job.worker or "")
                self.lost(job.id, "the server stopped while this job was running", rerun=True)
                log.warning("job %s failed: its worker %s is gone", job.id, job.worker)

    def _start_plugins(self) -> None:
        for plugin in self.plugins:
            try:
                plugin.start()
                self._started.append(plugin)
            except Exception:  # a slower or plainer job is all a missing plugin costs
                log.warning("worker plugin %s did not start", type(plugin).__name__, exc_info=True)
        try:
            self.rt.storage.prepare()  # connect once, before any fork
        except Exception:  # job processes connect by themselves (and say so if they cannot)
            log.warning("could not prepare the results storage", exc_info=True)

    def _start_dispatcher(self) -> None:
        worker = os.getpid()
        pid = os.fork()
        if pid == 0:
            die_with_parent()
            if os.getppid() != worker:
                os._exit(0)
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.rt.after_fork()
            try:
                dispatch_forever(self.rt)
            finally:
                os._exit(0)
        self.dispatcher_pid = pid

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def run(self) -> None:
        if self.parent_pid:  # started by serve: stop (and stop every job) as soon as serve is gone
            die_with_parent(signal.SIGTERM)
            if not pid_alive(self.parent_pid):
                return
        become_subreaper()  # what a job's processes leave behind comes back to the worker, which ends it
        if self.cgroups is not None:
            removed = self.cgroups.sweep(pid_alive)
            if removed:
                log.info("removed %d job group(s) of workers that are gone", removed)
            self._groups = self.cgroups.of_worker(os.getpid())
            sandbox = self.rt.settings.sandbox
            self._job_memory_mb = sandbox.job_memory_mb or default_job_memory_mb()
            log.info("each job runs in a control group of its own: %d MB and %d processes for all its processes",
                     self._job_memory_mb, sandbox.job_processes)
        self._start_plugins()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.recover()
        if self.callbacks:
            self._start_dispatcher()
        self._own = set(children_of(os.getpid()))  # the plugins' processes (a step server)
        log.info("worker %s: %d slot(s)", self.identity, self.concurrency)
        self._open_wake()
        try:
            while not self.stopping:
                try:
                    self._tick()
                except Exception:  # the store or the engine may be briefly unreachable: keep going
                    log.exception("worker loop")
                    time.sleep(1.0)
        finally:
            self.shutdown()

    def _tick(self) -> None:
        """One turn of the loop: reap, claim, watch, heartbeat, reap stale jobs, then wait."""
        settings = self.rt.settings.engine
        self._collect()
        claimed = False
        if len(self.children) < self.concurrency:
            woken, self.woken = self.woken, False
            job = self.source.take(woken)
            if job is not None:
                self._fork(job)
                claimed = True
        now = time.monotonic()
        if self.children and now - self.last_watch >= 0.1:
            self._watch(now)
            self.last_watch = now
        if now - self.last_beat >= settings.heartbeat_seconds:
            self.rt.store.jobs.heartbeat([c.job_id for c in self.children.values()])
            self._beat()
            self.last_beat = now
        if now - self.last_reap >= 5.0:
            self.last_reap = now
            mine = {c.job_id for c in self.children.values()}  # alive: silent only while the store was not
            for job_id in self.rt.store.jobs.stale_running(self.source.engine, settings.stale_after_seconds):
                if job_id in mine:
                    continue
                log.warning("job %s failed: its worker went silent", job_id)
                self.lost(job_id, "the worker running this job stopped responding (lost worker)", rerun=True)
            self._check_dispatcher()
            self.rt.store.idempotency.purge()
            if self.parent_pid and not pid_alive(self.parent_pid):
                log.warning("the server that started this worker is gone; stopping")
                self.stopping = True
        if not claimed:
            self._wait(min(settings.poll_interval, 0.1))

    def _beat(self) -> None:
        """This worker is alive, with its slots and the jobs it runs (the metrics count workers so)."""
        self.rt.store.stats.worker_beat(self.identity, self.source.engine, self.concurrency, len(self.children))

    def _open_wake(self) -> None:
        """The FIFO that API processes of this host write to when they accept a job."""
        path = self.rt.settings.store.data_dir / WAKE_FIFO
        try:
            if not path.exists():
                os.mkfifo(path, 0o600)
            self.wake_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            self._wake_keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # no EOF storm without writers
        except OSError as exc:
            log.info("no wake-up FIFO (%s): polling every %s s", exc, self.rt.settings.engine.poll_interval)
            self.wake_fd = -1

    def _wait(self, timeout: float) -> None:
        """Sleep until a job is submitted on this host, a job process ends, or ``timeout`` passes."""
        fds = [c.pidfd for c in self.children.values() if c.pidfd >= 0]
        if self.wake_fd >= 0:
            fds.append(self.wake_fd)
        if not fds:
            time.sleep(timeout)
            return
        try:
            ready, _, _ = select.select(fds, [], [], timeout)
        except InterruptedError:
            return
        if self.wake_fd in ready:
            self.woken = True
            try:
                os.read(self.wake_fd, 4096)
            except BlockingIOError:
                pass

    def shutdown(self) -> None:
        for child in list(self.children.values()):
            self._kill(child)
            self.lost(child.job_id, "the worker was stopped while this job was running", rerun=True,
                      attempt=child.attempt)
        self._collect()
        self._sweep()
        if self._groups is not None:  # its jobs' groups are gone with them: the worker's own directory too
            self._groups.remove_empty()
        for plugin in reversed(self._started):
            try:
                plugin.stop()
            except Exception:
                log.warning("worker plugin %s did not stop cleanly", type(plugin).__name__, exc_info=True)
        self._started = []
        if self.dispatcher_pid:
            stop_child(self.dispatcher_pid)
            self.dispatcher_pid = None
        try:
            self.rt.store.stats.worker_gone(self.identity)
        except Exception:  # the store is down: the row ages out of the metrics (a heartbeat too old)
            log.warning("could not remove this worker's row from the store", exc_info=True)

    # -- jobs ---------------------------------------------------------------------------------

    def _prepare(self, job: Job) -> None:
        try:
            self.rt.catalog.get(job.process_id, job.namespace).prepare()
        except Exception:  # the job process will meet the problem and report it
            log.debug("job %s: could not prepare process %s", job.id, job.process_id, exc_info=True)

    def _group(self, job: Job) -> JobGroup | None:
        """A control group for the job's next process (named apart from an earlier attempt's, which may
        still be ending)."""
        if self._groups is None:
            return None
        self._forks += 1
        try:
            return self._groups.create(f"{job.id}.{self._forks}", self._job_memory_mb,
                                       self.rt.settings.sandbox.job_processes)
        except OSError as exc:
            log.warning("job %s: no control group of its own (%s); its processes have rlimits only", job.id, exc)
            return None

    def _fork(self, job: Job) -> None:
        self._prepare(job)
        worker = os.getpid()
        group = self._group(job)
        pid = os.fork()
        if pid == 0:  # the job's process
            code = 0
            try:
                if group is not None:
                    try:
                        group.join()  # first: whatever the job starts is born in its group
                    except OSError as exc:  # the job runs all the same, with rlimits only
                        log.warning("job %s: could not join its control group (%s)", job.id, exc)
                die_with_parent()  # a worker killed with -9 takes its jobs with it
                if os.getppid() != worker:
                    os._exit(1)
                become_subreaper()  # the job's own orphans stay its children: it ends them all below
                os.setsid()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                self.rt.after_fork()
                self.source.execute(job)
            except BaseException:  # noqa: BLE001 - the child must never return into the worker loop
                log.exception("job %s: the job process failed", job.id)
                code = 1
            finally:
                try:
                    kill_descendants()  # nothing the job started outlives it
                finally:
                    os._exit(code)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        self.children[pid] = _Child(job_id=job.id, pid=pid, started=time.monotonic(), pidfd=pidfd,
                                    attempt=job.attempt, group=group)
        self.rt.store.jobs.set_worker(job.id, f"{self.identity}/{pid}")

    def _collect(self) -> None:
        """Reap ended job processes; a job whose process died without recording an end is failed."""
        for pid, child in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            group = self._forget(child)  # removed once its OOM count is read
            try:
                self._sweep()
                if any(c.job_id == child.job_id for c in self.children.values()):
                    continue  # a new attempt of its job runs already (a retry asked in the engine): not its end
                self._ended(child, status, group)
            finally:
                if group is not None:
                    group.remove()

    def _ended(self, child: _Child, status: int, group: JobGroup | None) -> None:
        """What a job whose process ended (wait status ``status``) comes to, if it did not record its end."""
        now_status = self.rt.store.jobs.status_of([child.job_id]).get(child.job_id)
        if now_status is StatusCode.dismissed:
            self.stopped(child.job_id)  # dismissed while it ended by itself
            return
        # the kernel's OOM kills in its group matter only to a job that did not end by itself
        if os.WIFSIGNALED(status) or now_status is StatusCode.running:
            out_of_memory = out_of_memory_message(group)
            if out_of_memory:
                self.lost(child.job_id, out_of_memory, attempt=child.attempt)  # it would again: no re-run
                return
        if os.WIFSIGNALED(status) or (os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0):
            how = (f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                   else f"exited with code {os.WEXITSTATUS(status)}")
            self.lost(child.job_id, f"the job's process {how}", rerun=True, attempt=child.attempt)
        elif now_status is StatusCode.running:
            self._unfinished(child.job_id, child.attempt)
        # accepted: the job's process gave it back to its source, which starts it again later

    def _unfinished(self, job_id: str, attempt: int) -> None:
        """A job process ended normally without recording its job's end: cancelled in the engine, or lost."""
        try:
            cancelled = job_id in self.source.cancelled([job_id], fresh=True)
        except Exception:
            log.warning("job %s: could not ask the engine about it", job_id, exc_info=True)
            cancelled = False
        if cancelled:
            self._dismiss(job_id)
            self.stopped(job_id)
        else:
            self.lost(job_id, "the job's process ended without recording a result", attempt=attempt)

    def _dismiss(self, job_id: str) -> None:
        job = self.rt.store.jobs.for_engine(job_id)
        if job is not None:
            self.rt.store.jobs.dismiss(job.id, job.namespace)

    def _watch(self, now: float) -> None:
        """Kill the process groups of dismissed jobs (here or in the engine) and of jobs over the time limit."""
        ids = [c.job_id for c in self.children.values()]
        try:
            for job_id in self.source.cancelled(ids, fresh=False):
                self._dismiss(job_id)  # the status check below then kills its processes
        except Exception:
            log.warning("could not ask the engine about cancellations", exc_info=True)
        statuses = self.rt.store.jobs.status_of(ids)
        limit = self.rt.settings.engine.job_timeout
        for child in list(self.children.values()):
            status = statuses.get(child.job_id)
            if status is None or status is StatusCode.dismissed:
                self._kill(child)
                self.stopped(child.job_id)
            elif now - child.started > limit:
                self._kill(child)
                self.lost(child.job_id, f"the job ran longer than the limit of {limit:g} s and was stopped",
                          attempt=child.attempt)

    def _kill(self, child: _Child) -> None:
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(child.pid, 0)
        except ChildProcessError:
            pass
        group = self._forget(child)
        if group is not None:
            group.remove()
        self._sweep()

    def _sweep(self) -> None:
        """End the orphans that killed job processes left (they came back to the worker, a subreaper)."""
        keep = self._own | set(self.children) | ({self.dispatcher_pid} if self.dispatcher_pid else set())
        killed = kill_descendants(frozenset(keep))
        if killed:
            log.info("ended %d process(es) left behind by ended jobs", killed)

    def _forget(self, child: _Child) -> JobGroup | None:
        """Drop an ended job process; its control group is returned emptied (nothing of the job runs on,
        wherever it was forked from), for the caller to remove."""
        self.children.pop(child.pid, None)
        if child.pidfd >= 0:
            os.close(child.pidfd)
            child.pidfd = -1
        group, child.group = child.group, None
        if group is not None and (killed := group.kill()):
            log.info("job %s: ended %d process(es) left in its group", child.job_id, killed)
        return group

    def _check_dispatcher(self) -> None:
        if not self.dispatcher_pid:
            return
        try:
            done, _ = os.waitpid(self.dispatcher_pid, os.WNOHANG)
        except ChildProcessError:
            done = self.dispatcher_pid
        if done:
            log.warning("callback dispatcher ended; starting it again")
            self._start_dispatcher()
