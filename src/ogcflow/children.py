"""Child processes of a worker (the callback dispatcher, the step server, job processes): how they end."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: children end by their own watching
        pass


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` to this process when its parent dies (a worker killed with -9 takes its
    children with it). Call it first thing in a forked child, then check that the parent is still there."""
    _prctl(PR_SET_PDEATHSIG, int(sig))


def become_subreaper() -> None:
    """Orphaned descendants of this process become its children (not init's), so it can end them."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def children_of(pid: int) -> list[int]:
    """The children of ``pid``, whichever of its threads started them (from /proc)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                found += [int(p) for p in fh.read().split()]
        except OSError:
            continue
    return found


def kill_descendants(keep: frozenset[int] = frozenset()) -> int:
    """SIGKILL every descendant of this process (a subreaper: orphans come back as children) except the
    children in ``keep``, and reap them. Returns how many were killed."""
    me = os.getpid()
    killed = 0
    for _ in range(1000):
        targets = [p for p in children_of(me) if p not in keep]
        if not targets:
            break
        for pid in targets:
            try:
                if os.getpgid(pid) == pid:  # a group leader: its group too
                    os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        for pid in targets:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return killed


def stop_child(pid: int) -> None:
    """Ask a child process to end (SIGTERM) and reap it; nothing if it is gone already."""
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
