"""Child processes of a worker (the callback dispatcher, the step server)."""

from __future__ import annotations

import os
import signal


def stop_child(pid: int) -> None:
    """Ask a child process to end (SIGTERM) and reap it; nothing if it is gone already."""
    try:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass
