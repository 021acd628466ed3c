"""Run inside a tool's sandbox, before the tool: ``python3 -I -S forwarder.py PORT SOCKET -- COMMAND...``.

Listens on ``127.0.0.1:PORT`` of the sandbox's own network namespace (the address the tool's HTTP(S)_PROXY
names), then becomes COMMAND; a child it leaves behind hands every connection the tool makes there, as a
file descriptor, over the UNIX socket SOCKET to the job's policing proxy on the host
(:mod:`ogcflow.packages.toolnet`), which reads and answers it. No byte of the tool's traffic passes through
this process, and it makes no connection of its own: the sandbox has no route anywhere, only its loopback.

Standard library only, no ogcflow import: it runs with the sandbox's interpreter (``/usr/bin/python3``), which
does not see ogcflow's code. C modules only (``_socket``, not ``socket``, whose import of ``enum`` costs half
as much again as the interpreter's start): it runs before every tool that has the network.
"""

from __future__ import annotations

import _socket
import os
import sys


def main(argv: list[str]) -> None:
    port, path, dash, *command = argv
    if dash != "--" or not command:
        sys.exit("usage: forwarder.py PORT SOCKET -- COMMAND...")
    listener = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    listener.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(port)))  # before the tool starts: its first connection finds it
    listener.listen(128)
    host = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    host.connect(path)
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # never the tool's output files
            os.dup2(null, fd)
        try:
            while True:
                fd, _ = listener._accept()  # type: ignore[attr-defined]  # the C socket's: a bare descriptor
                host.sendmsg([b"c"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))])
                os.close(fd)
        finally:  # the host side went away: the tool's proxy connections are refused from now on
            os._exit(0)
    listener.close()
    host.close()
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"{command[0]}: {exc.strerror}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
