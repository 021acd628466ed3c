"""Start an EO step through the worker's step server, or as a fresh interpreter when there is none.

Run as ``python -S -E launch.py <step> <args...>``: C modules of the standard library only (``_socket``, no
``socket``, ``json`` or ``struct``, whose imports of ``enum`` and ``re`` cost more than the interpreter's own
start; ~8 ms in all). It hands its argv, working directory, environment and standard streams to the step
server named by ``OGCFLOW_STEP_SOCKET``, which forks a process that has numpy, rasterio and the rest imported
already, and exits with the step's exit status. The step process watches this one: when this launcher dies
(a dismissed or timed-out job's process group is killed), the step stops at once.

The request (:func:`ogcflow.eo.stepserver.parse_request` reads it): a 4-byte big-endian length, then
NUL-separated fields: ``MAGIC``, the number of arguments, the arguments, the working directory, then one
``NAME=value`` per environment variable (none of them can hold a NUL).
"""

import _socket
import os
import sys

MAGIC = b"ogcflow-step/2"


def _direct(argv: list[str]) -> None:
    python = sys.executable
    os.execv(python, [python, "-m", "ogcflow.eo", *argv])


def request(argv: list[str]) -> bytes:
    fields = [MAGIC, str(len(argv)).encode(), *(os.fsencode(a) for a in argv), os.getcwdb(),
              *(k + b"=" + v for k, v in os.environb.items())]
    payload = b"\0".join(fields)
    return len(payload).to_bytes(4, "big") + payload


def main() -> None:
    argv = sys.argv[1:]
    path = os.environ.get("OGCFLOW_STEP_SOCKET")
    if not path:
        _direct(argv)  # execv: does not return
        return
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        _direct(argv)
        return
    data = request(argv)
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2))  # three C ints: SCM_RIGHTS' payload
    status = b""
    try:
        sent = conn.sendmsg([data[:4]], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        rest = data[sent:]
        while rest:
            rest = rest[conn.send(rest):]
        while len(status) < 4:
            chunk = conn.recv(4 - len(status))
            if not chunk:
                break
            status += chunk
    except OSError as exc:  # the server refused the request or went away
        sys.stderr.write(f"ERROR step: the step server did not run the step ({exc.strerror or exc})\n")
        sys.exit(1)
    if len(status) < 4:
        sys.stderr.write("ERROR step: the step process ended without an exit status\n")
        sys.exit(1)
    sys.exit(int.from_bytes(status, "big", signed=True))


if __name__ == "__main__":
    main()
