"""A control group per job (cgroup v1's memory and pids hierarchies): one memory limit and one process limit
for everything a job runs together (the job's process, every sandboxed command, the EO steps a step server
forks for it), an out-of-memory kill that stays inside the job and is told as the job's failure, and an end
that leaves nothing of the job running, whatever it forked.

Rlimits (:class:`ogcflow.packages.sandbox.Limits`) stay the limits of each process; a job's group adds the
limits of the whole: eight commands of 4 GiB each no longer make 32 GiB. The groups are made under the
worker's own group of each hierarchy (``<mount>/<own path>/ogcflow/<worker pid>/<job id>``), removed when
their job ends; groups left by a worker that died are removed when a worker of the host starts.

cgroup v2 (the unified hierarchy) is not used yet: a v2 group can only have children with controllers if it
has no processes of its own, so the server would have to move itself into a leaf first (docs/security.md).
Where the v1 hierarchies are missing or not writable, jobs get rlimits only, and the worker says why once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ogcflow.cgroups")

#: the v1 hierarchies a job's group is made in
CONTROLLERS = ("memory", "pids")
#: the directory of the job groups under the worker's own group, in each hierarchy
BASE = "ogcflow"
MiB = 1024 * 1024
_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _mounts(mountinfo: str = "/proc/self/mountinfo") -> dict[str, str]:
    """Where each v1 controller's hierarchy is mounted (read-write mounts only)."""
    found: dict[str, str] = {}
    try:
        with open(mountinfo, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return found
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 6 or len(tail) < 3 or tail[0] != "cgroup":
            continue
        options = set(tail[2].split(",")) | set(fields[5].split(","))
        if "rw" not in fields[5].split(","):
            continue
        for controller in CONTROLLERS:
            if controller in options and controller not in found:
                found[controller] = fields[4]
    return found


def _single_threaded() -> bool:
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _membership(pid: int | str = "self") -> dict[str, str]:
    """The v1 group of a process in each of :data:`CONTROLLERS` (path from the hierarchy's root)."""
    groups: dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return groups
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(","):
                if controller in CONTROLLERS:
                    groups[controller] = parts[2]
    return groups


@dataclass(frozen=True)
class JobGroup:
    """One job's group: a directory in each hierarchy."""

    job_id: str
    #: controller -> directory of the group
    dirs: dict[str, Path]

    def join(self, pid: int = 0) -> None:
        """Move a process (0: the caller) into the group; its children are born in it.

        A single-threaded caller (a job's process just forked, before it starts anything) moves its one
        thread through ``tasks``: the kernel then skips the lock that moving a whole process takes, whose
        RCU grace period cost ~6 ms of wall time per job here against ~0.5 ms."""
        name = "tasks" if pid == 0 and _single_threaded() else "cgroup.procs"
        for path in self.dirs.values():
            (path / name).write_text(str(pid), encoding="ascii")

    def pids(self) -> set[int]:
        found: set[int] = set()
        for path in self.dirs.values():
            with contextlib.suppress(OSError):
                found.update(int(p) for p in (path / "cgroup.procs").read_text(encoding="ascii").split())
        return found

    def memory_limit_mb(self) -> int | None:
        path = self.dirs.get("memory")
        try:
            return int((path / "memory.limit_in_bytes").read_text(encoding="ascii")) // MiB if path else None
        except (OSError, ValueError):
            return None

    def oom_kills(self) -> int:
        """How many processes of the job the kernel killed for the group's memory limit."""
        path = self.dirs.get("memory")
        if path is None:
            return 0
        try:
            text = (path / "memory.oom_control").read_text(encoding="ascii")
        except OSError:
            return 0
        found = re.search(r"^oom_kill (\d+)$", text, re.M)
        return int(found.group(1)) if found else 0

    def kill(self, timeout: float = 5.0) -> int:
        """SIGKILL every process in the group until none is left (a process forking meanwhile is met on the
        next round; the pids limit bounds how many); how many were killed."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while (left := self.pids() - {os.getpid()}) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed |= left
            time.sleep(0.005)
        return len(killed)

    def remove(self, timeout: float = 2.0) -> bool:
        """Kill what is left and remove the group's directories; False if one could not be removed."""
        self.kill()
        ok = True
        for path in self.dirs.values():
            deadline = time.monotonic() + timeout
            while True:
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy: a killed process has not left yet
                    if time.monotonic() > deadline:
                        log.warning("could not remove the job group %s", path)
                        ok = False
                        break
                    time.sleep(0.01)
        return ok


@dataclass(frozen=True)
class JobCgroups:
    """The job groups of this host's worker: their parent directory in each hierarchy."""

    bases: dict[str, Path]

    def create(self, job_id: str, memory_mb: int | None, processes: int | None) -> JobGroup:
        """The job's group, with its limits (None: none of the group's own)."""
        if not _JOB_ID.match(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        dirs = {c: base / job_id for c, base in self.bases.items()}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        group = JobGroup(job_id, dirs)
        if memory_mb is not None and "memory" in dirs:
            limit = str(memory_mb * MiB)
            (dirs["memory"] / "memory.limit_in_bytes").write_text(limit, encoding="ascii")
            with contextlib.suppress(OSError):  # swap counted too, where the kernel accounts it
                (dirs["memory"] / "memory.memsw.limit_in_bytes").write_text(limit, encoding="ascii")
        if processes is not None and "pids" in dirs:
            (dirs["pids"] / "pids.max").write_text(str(processes), encoding="ascii")
        return group

    def group(self, job_id: str) -> JobGroup | None:
        """The job's group if it exists."""
        if not _JOB_ID.match(job_id):
            return None
        dirs = {c: base / job_id for c, base in self.bases.items()}
        return JobGroup(job_id, dirs) if all(p.is_dir() for p in dirs.values()) else None

    def of_worker(self, pid: int) -> JobCgroups:
        """The groups of one worker's jobs (several workers of a host share their own group)."""
        return JobCgroups({c: base / str(pid) for c, base in self.bases.items()})

    def remove_empty(self) -> None:
        """Remove the group directories themselves (a worker's, once its jobs' groups are gone)."""
        for base in self.bases.values():
            with contextlib.suppress(OSError):
                base.rmdir()

    def sweep(self, alive: Callable[[int], bool]) -> int:
        """Remove the job groups of workers that are gone (``alive(pid)`` false), and of the caller's own
        earlier life (a reused pid): what still ran in them is killed; how many groups were removed."""
        workers: set[str] = set()
        for base in self.bases.values():
            with contextlib.suppress(OSError):
                workers.update(p.name for p in base.iterdir() if p.is_dir() and p.name.isdigit())
        removed = 0
        for name in sorted(workers):
            if int(name) != os.getpid() and alive(int(name)):
                continue
            mine = self.of_worker(int(name))
            jobs: set[str] = set()
            for base in mine.bases.values():
                with contextlib.suppress(OSError):
                    jobs.update(p.name for p in base.iterdir() if p.is_dir())
            for job_id in sorted(jobs):
                group = mine.group(job_id)
                if group is not None and group.remove():
                    removed += 1
            mine.remove_empty()
        return removed


def detect(mountinfo: str = "/proc/self/mountinfo") -> JobCgroups | str:
    """This host's job groups, or why jobs cannot have one here."""
    mounts = _mounts(mountinfo)
    missing = [c for c in CONTROLLERS if c not in mounts]
    if missing:
        return f"no writable cgroup v1 hierarchy of the {', '.join(missing)} controller(s)"
    own = _membership()
    bases: dict[str, Path] = {}
    for controller in CONTROLLERS:
        base = Path(mounts[controller]) / own.get(controller, "/").lstrip("/") / BASE
        try:
            base.mkdir(exist_ok=True)
        except OSError as exc:
            return f"cannot make {base}: {exc.strerror}"
        if not os.access(base, os.W_OK):
            return f"{base} is not writable"
        bases[controller] = base
    if "memory" in bases:  # a job's limit applies to the groups it makes too
        with contextlib.suppress(OSError):
            (bases["memory"] / "memory.use_hierarchy").write_text("1", encoding="ascii")
    return JobCgroups(bases)


def _job_group(mounts: dict[str, str], membership: dict[str, str]) -> JobGroup | None:
    """The job group of a process in these groups (``.../ogcflow/<worker pid>/<job group>`` in every
    hierarchy), if it is in one."""
    dirs: dict[str, Path] = {}
    for controller in CONTROLLERS:
        path = membership.get(controller)
        if controller not in mounts or path is None:
            return None
        parts = Path(path).parts
        if len(parts) < 4 or parts[-3] != BASE or not parts[-2].isdigit() or not _JOB_ID.match(parts[-1]):
            return None
        dirs[controller] = Path(mounts[controller]) / path.lstrip("/")
    return JobGroup(dirs["memory"].name, dirs)


def join_group_of(pid: int) -> bool:
    """Move the caller into the job group of process ``pid`` (a step server's fork, into the group of the
    sandboxed launcher that asked for it); False if ``pid`` is in no job group. Only a job group
    (``.../ogcflow/<worker pid>/<job group>``) is joined, whatever the process's other groups."""
    group = _job_group(_mounts(), _membership(pid))
    if group is None:
        return False
    group.join()
    return True


def own_group() -> JobGroup | None:
    """The job group the caller runs in, if any."""
    return _job_group(_mounts(), _membership())


def default_job_memory_mb() -> int:
    """Three quarters of the host's memory."""
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 3 // 4 // MiB)


def out_of_memory_message(group: JobGroup | None) -> str:
    """What to tell of a job whose group ran out of memory ("" if it did not)."""
    if group is None:
        return ""
    kills = group.oom_kills()
    if not kills:
        return ""
    limit = group.memory_limit_mb()
    return (f"the job ran out of memory: its processes together reached the job's limit"
            f"{f' of {limit} MB' if limit else ''} (OGCFLOW_JOB_MEMORY_MB), and the kernel killed "
            f"{kills} of them")
