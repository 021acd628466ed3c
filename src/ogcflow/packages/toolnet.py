"""The network of a sandboxed tool that declares CWL ``NetworkAccess``: HTTP(S) through the network policy.

The tool keeps a network namespace of its own (only its loopback: no route to the host, its loopback
services or anything else). In it, :mod:`ogcflow.packages.forwarder` listens on ``127.0.0.1:PORT`` before the
tool starts, and the tool's environment names that address as its proxy (``HTTP_PROXY``, ``HTTPS_PROXY``,
``ALL_PROXY`` and their lower-case forms; ``NO_PROXY`` empty). Every connection the tool makes there is
handed, as a file descriptor, through a UNIX socket bound into the sandbox to this side, in the job's
process, where :class:`ogcflow.netpolicy.PolicingProxy` answers it with the server's network policy:
``CONNECT host:port`` (https) is checked by host and resolved address and connected to the checked
address; an absolute-URI request (http) likewise, its redirects passed back to the tool, whose next hop
comes through the proxy again and is checked again. A refusal is a 403 to the tool, with the reason, which
the job's log (and its failure message, if the tool fails) repeats. What the tools of one job receive
through their proxies, all their commands and connections together, is capped by the job's
:class:`ogcflow.netpolicy.DownloadBudget` (``OGCFLOW_TOOL_DOWNLOAD_MAX_BYTES``).
"""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path

from ogcflow.netpolicy import DownloadBudget, PolicingProxy, Policy

#: where the tool's proxy listens in its own network namespace, and where the pieces are in the sandbox
PORT = 3128
SOCKET = "/run/ogcflow/proxy.sock"
FORWARDER = "/run/ogcflow/forwarder.py"
FORWARDER_SOURCE = str(Path(__file__).with_name("forwarder.py"))
#: connections one command may have open through its proxy at once (more are closed at once)
MAX_CONNECTIONS = 64


def proxy_env() -> dict[str, str]:
    """The variables that send a tool's HTTP(S) clients (curl, wget, Python, GDAL...) to its proxy."""
    url = f"http://127.0.0.1:{PORT}"
    env = {name: url for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                                  "all_proxy", "GDAL_HTTP_PROXY", "GDAL_HTTPS_PROXY")}
    return {**env, "NO_PROXY": "", "no_proxy": ""}  # never a host's own exceptions: nothing is reachable directly


class ToolNetwork:
    """The host side of a job's policed tool network: a UNIX socket in the job's directory (only the
    sandbox user may connect) that takes the tools' connections and serves them with the policy, what
    they receive counted against ``budget`` (the job's)."""

    def __init__(self, directory: Path, policy: Policy, uid: int, budget: DownloadBudget | None = None) -> None:
        self.proxy = PolicingProxy(policy, listen=False, budget=budget)
        directory.mkdir(mode=0o700, exist_ok=True)  # bwrap binds the socket as root: no one else needs in
        self._dir = Path(tempfile.mkdtemp(dir=directory if len(str(directory)) < 80 else None,
                                          prefix="ogcflow-net-"))
        self.path = self._dir / "proxy.sock"  # a UNIX socket's path has at most 107 bytes
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        os.chown(self.path, uid, uid)
        os.chmod(self.path, 0o600)
        self._listener.listen(16)
        self._closed = False
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        threading.Thread(target=self._accept, name="ogcflow-toolnet", daemon=True).start()

    @property
    def refused(self) -> list[str]:
        return self.proxy.refused

    def _accept(self) -> None:
        while not self._closed:
            try:
                forwarder, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._receive, args=(forwarder,), name="ogcflow-toolnet-fds",
                             daemon=True).start()

    def _receive(self, forwarder: socket.socket) -> None:
        """Serve every connection a sandbox's forwarder hands over (whatever else comes is closed)."""
        with forwarder:
            while True:
                try:
                    _data, fds, _flags, _addr = socket.recv_fds(forwarder, 1, 4)
                except OSError:
                    return
                if not _data and not fds:
                    return
                for fd in fds:
                    try:
                        conn = socket.socket(fileno=fd)
                    except OSError:  # not a socket
                        os.close(fd)
                        continue
                    if conn.family not in (socket.AF_INET, socket.AF_INET6) or conn.type != socket.SOCK_STREAM \
                            or not self._slots.acquire(blocking=False):  # not a TCP connection, or too many
                        conn.close()
                        continue
                    self.proxy.serve(conn, on_end=self._slots.release)

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self.path.unlink(missing_ok=True)
        try:
            self._dir.rmdir()
        except OSError:
            pass
