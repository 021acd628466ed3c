"""The local engine: worker daemons that claim accepted jobs from the store and run each one in a forked
child process (its own process group), so that a dismissed or timed-out job is really killed, and a
crashing job cannot take the worker down.

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ogcflow.callbacks import dispatch_forever
from ogcflow.children import stop_child
from ogcflow.engines.base import StoreEngine
from ogcflow.jobs.service import Runtime, run_job
from ogcflow.jobs.store import Job, worker_identity
from ogcflow.models import StatusCode
from ogcflow.settings import Settings

if TYPE_CHECKING:
    from ogcflow.eo.stepserver import StepServer

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


class LocalEngine(StoreEngine):
    """API side of the local engine: the store is the queue; workers watch it."""

    name = "local"

    async def submit(self, job: Job) -> None:
        wake_workers(self.rt.settings.data_dir)

    # dismiss: nothing to do here, the worker running the job sees the status and kills its process group


@dataclass
class _Child:
    job_id: str
    pid: int
    started: float
    pidfd: int = -1


def _pid_alive(pid: int) -> bool:
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


class Worker:
    """A worker daemon with ``concurrency`` job slots. Subclasses change where jobs come from and how a
    job process runs them (see engines/prefect.py); the slots, process groups, heartbeats, dismissal and
    recovery stay here."""

    engine = "local"

    def __init__(self, rt: Runtime, concurrency: int = 2, callbacks: bool = True,
                 parent_pid: int | None = None) -> None:
        self.rt = rt
        self.parent_pid = parent_pid
        self.concurrency = max(1, concurrency)
        self.identity = worker_identity()
        self.children: dict[int, _Child] = {}
        self.stopping = False
        self.callbacks = callbacks
        self.dispatcher_pid: int | None = None
        self.wake_fd = -1
        self.woken = False  # a job was submitted on this host since the last look
        self.last_watch = self.last_beat = self.last_reap = 0.0
        self.step_server: StepServer | None = None

    # -- life cycle ---------------------------------------------------------------------------

    def recover(self) -> None:
        """Fail the jobs a dead worker of this host left running (its process is gone)."""
        host = socket.gethostname()
        for job in self.rt.store.running_on(self.engine, host + ":"):
            pid = int((job.worker or "").rsplit(":", 1)[-1].split("/")[0] or 0)
            if not pid or not _pid_alive(pid) or pid == os.getpid():
                self.lost(job.id, "the server stopped while this job was running; submit it again")
                log.warning("job %s failed: its worker %s is gone", job.id, job.worker)

    # -- what subclasses change -----------------------------------------------------------------

    def next_job(self) -> Job | None:
        """The next job for a free slot, already marked running for this worker; None when none waits."""
        return self.rt.store.claim(self.engine, self.identity)

    def run_in_child(self, job: Job) -> None:
        """Runs in the forked job process."""
        run_job(self.rt, job)

    def lost(self, job_id: str, reason: str) -> None:
        """A job ended without its process recording it (killed, crashed, timed out, worker gone)."""
        self.rt.store.fail_lost(job_id, reason)

    def stopped(self, job_id: str) -> None:
        """A dismissed job's process was killed."""
        self.rt.storage.delete_job(job_id)

    def poll_engine(self, now: float) -> None:
        """Periodic work of the engine (e.g. cancellations requested elsewhere)."""

    def unfinished(self, job_id: str) -> None:
        """A job process ended normally without recording how its job ended."""
        self.lost(job_id, "the job's process ended without recording a result")

    def _start_dispatcher(self) -> None:
        pid = os.fork()
        if pid == 0:
            os.setsid()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.rt.store.after_fork()
            try:
                dispatch_forever(self.rt)
            finally:
                os._exit(0)
        self.dispatcher_pid = pid

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stopping = True

    def preload(self) -> None:
        """Do once, before any fork, what job processes would otherwise each do: import cwltool and build
        its CWL schema loaders (0.6 s cold, 12 ms warm per run), connect to the results storage."""
        try:
            from ogcflow.packages.runner import warm_up

            warm_up()
        except Exception:  # a slower first CWL job is all this costs
            log.warning("could not warm cwltool up", exc_info=True)
        try:
            self.rt.storage.prepare()
        except Exception:  # job processes connect by themselves (and say so if they cannot)
            log.warning("could not prepare the results storage", exc_info=True)

    def run(self) -> None:
        if self.rt.settings.cwl_step_images and self.rt.settings.cwl_container_runtime == "none":
            from ogcflow.eo.stepserver import StepServer

            self.step_server = StepServer().start()  # forked first, while this process has no threads
        self.preload()
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.recover()
        if self.callbacks:
            self._start_dispatcher()
        log.info("worker %s: %d slot(s)", self.identity, self.concurrency)
        settings = self.rt.settings
        self._open_wake()
        try:
            while not self.stopping:
                try:
                    self._tick(settings)
                except Exception:  # the store or the engine may be briefly unreachable: keep going
                    log.exception("worker loop")
                    time.sleep(1.0)
        finally:
            self.shutdown()

    def _tick(self, settings: Settings) -> None:
        """One turn of the loop: reap, claim, watch, heartbeat, reap stale jobs, then wait."""
        self._collect()
        claimed = False
        if len(self.children) < self.concurrency:
            job = self.next_job()
            if job is not None:
                self._fork(job)
                claimed = True
        now = time.monotonic()
        if self.children and now - self.last_watch >= 0.1:
            self._watch(now)
            self.poll_engine(now)
            self.last_watch = now
        if now - self.last_beat >= settings.heartbeat_seconds:
            self.rt.store.heartbeat([c.job_id for c in self.children.values()])
            self.last_beat = now
        if now - self.last_reap >= 5.0:
            self.last_reap = now
            for job_id in self.rt.store.stale_running(self.engine, settings.stale_after_seconds):
                log.warning("job %s failed: its worker went silent", job_id)
                self.lost(job_id, "the worker running this job stopped responding (lost worker)")
            self._check_dispatcher()
            if self.parent_pid and not _pid_alive(self.parent_pid):
                log.warning("the server that started this worker is gone; stopping")
                self.stopping = True
        if not claimed:
            self._wait(min(settings.poll_interval, 0.1))

    def _open_wake(self) -> None:
        """The FIFO that API processes of this host write to when they accept a job."""
        path = self.rt.settings.data_dir / WAKE_FIFO
        try:
            if not path.exists():
                os.mkfifo(path, 0o600)
            self.wake_fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            self._wake_keep = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # no EOF storm without writers
        except OSError as exc:
            log.info("no wake-up FIFO (%s): polling every %s s", exc, self.rt.settings.poll_interval)
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
            self.lost(child.job_id, "the worker was stopped while this job was running; submit it again")
        self._collect()
        if self.step_server is not None:
            self.step_server.stop()
            self.step_server = None
        if self.dispatcher_pid:
            stop_child(self.dispatcher_pid)
            self.dispatcher_pid = None

    # -- jobs ---------------------------------------------------------------------------------

    def _prepare(self, job: Job) -> None:
        try:
            self.rt.registry.get(job.process_id, job.namespace).prepare()
        except Exception:  # the job process will meet the problem and report it
            log.debug("job %s: could not prepare process %s", job.id, job.process_id, exc_info=True)

    def _fork(self, job: Job) -> None:
        self._prepare(job)
        pid = os.fork()
        if pid == 0:  # the job's process
            code = 0
            try:
                os.setsid()
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                self.rt.store.after_fork()
                self.run_in_child(job)
            except BaseException:  # noqa: BLE001 - the child must never return into the worker loop
                log.exception("job %s: the job process failed", job.id)
                code = 1
            finally:
                os._exit(code)
        try:
            pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = -1
        self.children[pid] = _Child(job_id=job.id, pid=pid, started=time.monotonic(), pidfd=pidfd)
        self.rt.store.set_worker(job.id, f"{self.identity}/{pid}")

    def _collect(self) -> None:
        """Reap ended job processes; a job whose process died without recording an end is failed."""
        for pid, child in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done == 0:
                continue
            self._forget(child)
            now_status = self.rt.store.status_of([child.job_id]).get(child.job_id)
            if now_status == StatusCode.dismissed.value:
                self.stopped(child.job_id)  # dismissed while it ended by itself
            elif os.WIFSIGNALED(status) or (os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0):
                how = (f"was killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
                       else f"exited with code {os.WEXITSTATUS(status)}")
                self.lost(child.job_id, f"the job's process {how}")
            elif now_status in (StatusCode.accepted.value, StatusCode.running.value):
                self.unfinished(child.job_id)

    def _watch(self, now: float) -> None:
        """Kill the process groups of dismissed jobs and of jobs over the time limit."""
        statuses = self.rt.store.status_of([c.job_id for c in self.children.values()])
        for child in list(self.children.values()):
            status = statuses.get(child.job_id)
            if status is None or status == StatusCode.dismissed.value:
                self._kill(child)
                self.stopped(child.job_id)
            elif now - child.started > self.rt.settings.job_timeout:
                self._kill(child)
                self.lost(child.job_id, f"the job ran longer than the limit of "
                                        f"{self.rt.settings.job_timeout:g} s and was stopped")

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
        self._forget(child)

    def _forget(self, child: _Child) -> None:
        self.children.pop(child.pid, None)
        if child.pidfd >= 0:
            os.close(child.pidfd)
            child.pidfd = -1

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
