"""Start an EO step through the worker's step server, or as a fresh interpreter when there is none.

Run as ``python -S -E launch.py <step> <args...>`` (standard library only, no site: ~10 ms to start). It
hands its argv, working directory, environment and standard streams to the step server named by
``OGCFLOW_STEP_SOCKET``, which forks a process that has numpy, rasterio and the rest imported already, and
exits with the step's exit status. The step process watches this one: when this launcher dies (a dismissed
or timed-out job's process group is killed), the step stops at once.
"""

import json
import os
import socket
import struct
import sys
from typing import NoReturn


def _direct(argv: list[str]) -> NoReturn:
    python = sys.executable
    os.execv(python, [python, "-m", "ogcflow.eo", *argv])


def main() -> None:
    argv = sys.argv[1:]
    path = os.environ.get("OGCFLOW_STEP_SOCKET")
    if not path:
        _direct(argv)
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        _direct(argv)
    assert path
    payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    socket.send_fds(conn, [struct.pack("!I", len(payload))], [0, 1, 2])
    conn.sendall(payload)
    data = b""
    while len(data) < 4:
        chunk = conn.recv(4 - len(data))
        if not chunk:
            sys.stderr.write("ERROR step: the step process ended without an exit status\n")
            sys.exit(1)
        data += chunk
    sys.exit(struct.unpack("!i", data)[0])


main()
