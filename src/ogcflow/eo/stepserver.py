"""A warm process that forks EO steps: numpy, rasterio, pyproj, pystac, rio-stac and scikit-image are
imported once per worker instead of once per step (0.2-0.35 s each, most of a small job's time).

The worker forks the server at start; it listens on a UNIX socket in a private directory
(``OGCFLOW_STEP_SOCKET``, passed on to CWL steps), and for every connection of :mod:`ogcflow.eo.launch`
forks a step process that takes the launcher's standard streams, working directory and environment, runs
the step and sends back its exit status. A step process kills itself when its launcher goes away. The
server ends when the worker does (and at once if the worker is killed: PR_SET_PDEATHSIG).

A launcher running in a CWL sandbox (``ogcflow.packages.sandbox``: another user) gets a step process that
enters the sandbox's mount namespace and becomes the sandbox's user before it runs anything: the step sees
the files the tool sees, no more, while it keeps the host's network, which the steps use under the network
policy of the server's own step configuration (never one the launcher sends).
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("ogcflow.steps")

ENV = "OGCFLOW_STEP_SOCKET"
LAUNCHER = Path(__file__).with_name("launch.py")


def answering(path: str | None) -> bool:
    """Whether a step server listens at ``path`` (its socket file outlives a server that was killed)."""
    if not path:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            probe.connect(path)  # then closed unsent: the server drops it at once
    except OSError:
        return False
    return True


def launcher_command(step: str) -> list[str]:
    """The command a CWL tool runs for ``step`` (through the step server when there is one)."""
    return [sys.executable, "-S", "-E", str(LAUNCHER), step]


def _preload() -> None:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # no BLAS thread pools in a process that forks
    import numpy  # noqa: F401
    import pyproj  # noqa: F401
    import pystac  # noqa: F401
    import rasterio  # noqa: F401
    import rasterio.mask  # noqa: F401
    import rio_stac  # noqa: F401
    import shapely.geometry  # noqa: F401
    from skimage.filters import threshold_otsu  # noqa: F401

    import ogcflow.eo.__main__
    import ogcflow.eo.items  # noqa: F401
    import ogcflow.eo.signing  # noqa: F401
    import ogcflow.eo.steps  # noqa: F401

    try:
        _warm_up()
        ogcflow.eo.__main__._parser()  # the steps' command line, parsed in every step
    except Exception:  # slower steps are all this costs
        log.warning("could not warm the EO steps up", exc_info=True)


def _warm_up() -> None:
    """Run the four steps once on a tiny local scene, and fail one HTTP request: what every step process would
    otherwise do first (register GDAL's drivers, open PROJ's database, import the HTTP stack and pystac's
    extensions, load the CA certificates: ~0.2 s a step) is done here, once."""

    import httpx
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from ogcflow.eo import steps
    from ogcflow.eo.config import StepConfig
    from ogcflow.netpolicy import ssl_context

    try:
        with httpx.Client(verify=ssl_context(), timeout=1) as client:
            client.get("http://127.0.0.1:9/")  # the discard port: refused at once
    except httpx.HTTPError:
        pass
    with tempfile.TemporaryDirectory(prefix="ogcflow-warm-") as tmp:
        root = Path(tmp)
        profile = {"driver": "COG", "width": 16, "height": 16, "count": 1, "dtype": "uint16", "nodata": 0,
                   "crs": "EPSG:32610", "transform": from_origin(630015, 4470015, 30, 30), "compress": "lzw"}
        assets = {}
        for band, value in (("green", 9000), ("nir08", 7000)):
            with rasterio.open(root / f"{band}.tif", "w", **profile) as dst:
                data = np.full((16, 16), value, dtype="uint16")
                data[4:12, 4:12] = 16000 - value
                dst.write(data, 1)
            assets[band] = {"href": f"./{band}.tif", "roles": ["data"], "eo:bands": [{"common_name": band}]}
        item: dict[str, Any] = {"type": "Feature", "stac_version": "1.0.0", "id": "warm-up", "collection": "warm-up",
                "geometry": None, "properties": {"datetime": "2023-10-07T00:00:00Z"}, "links": [],
                "assets": assets, "stac_extensions": []}
        (root / "item.json").write_text(json.dumps(item), encoding="utf-8")
        cfg = StepConfig(data_dir=root, eo_local_roots=[root])
        crops = []
        for band in ("green", "nir08"):
            (root / band).mkdir()
            crops.append(steps.crop(str(root / "item.json"), "-121.47,40.36,-121.46,40.371", "EPSG:4326", band,
                                    root / band, cfg))
        mask = steps.otsu(steps.norm_diff(crops[0], crops[1], root), root)
        (root / "catalog").mkdir()
        steps.stac([str(root / "item.json")], [mask], root / "catalog", cfg)


@dataclass(frozen=True, slots=True)
class StepRequest:
    """What a launcher asks for: the step's arguments, working directory and environment."""

    argv: list[str]
    cwd: str
    env: dict[str, str]


def parse_request(payload: bytes) -> StepRequest:
    """A launcher's request (the format :mod:`ogcflow.eo.launch` writes); ValueError when it is not one."""
    from ogcflow.eo.launch import MAGIC

    fields = payload.split(b"\0")
    if len(fields) < 3 or fields[0] != MAGIC or not fields[1].isdigit():
        raise ValueError("not a step request")
    n = int(fields[1])
    if len(fields) < n + 3:
        raise ValueError("a truncated step request")
    env = {}
    for entry in fields[n + 3:]:
        name, eq, value = entry.partition(b"=")
        if not eq or not name:
            raise ValueError("a malformed environment variable")
        env[os.fsdecode(name)] = os.fsdecode(value)
    return StepRequest(argv=[os.fsdecode(a) for a in fields[2:n + 2]], cwd=os.fsdecode(fields[n + 2]), env=env)


#: the longest request a launcher may send (its argv and environment, which execve bounds far lower)
MAX_REQUEST = 16 << 20
#: seconds a launcher has to send its whole request (it sends it at once)
REQUEST_SECONDS = 5.0
#: launchers whose requests are being read at once (more wait in the listen queue)
MAX_PENDING = 64


class _Incoming:
    """A launcher's request as it arrives: its standard streams come with the first bytes."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.deadline = time.monotonic() + REQUEST_SECONDS
        self.fds: list[int] = []
        self.data = bytearray()
        self.started = False

    def read(self) -> StepRequest | None:
        """Take what has arrived (the socket is readable); the request once whole, None until then.
        ValueError or OSError when it is not a request."""
        if not self.started:
            self.started = True
            data, fds, flags, _addr = socket.recv_fds(self.conn, 1 << 16, 3)
            self.fds = list(fds)
            if len(self.fds) != 3 or flags & socket.MSG_CTRUNC:
                raise ValueError("a request comes with the launcher's three standard streams")
        else:
            data = self.conn.recv(1 << 16)
        if not data:
            raise ConnectionError("the launcher went away")
        self.data += data
        if len(self.data) < 4:
            return None
        size = struct.unpack("!I", self.data[:4])[0]
        if size > MAX_REQUEST or len(self.data) > size + 4:
            raise ValueError("a request of the wrong size")
        return parse_request(bytes(self.data[4:])) if len(self.data) == size + 4 else None

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []
        self.conn.close()


#: the launcher's rlimits its step takes (those the sandbox sets: :meth:`Limits.prlimit`), by their names in
#: /proc/<pid>/limits (which anyone may read; prlimit(2) of a sandboxed process is refused even to root)
RLIMITS = {"Max cpu time": "RLIMIT_CPU", "Max data size": "RLIMIT_DATA", "Max open files": "RLIMIT_NOFILE",
           "Max processes": "RLIMIT_NPROC", "Max file size": "RLIMIT_FSIZE"}


def _limits_of(pid: int) -> dict[str, tuple[int, int]]:
    """The rlimits of process ``pid`` among :data:`RLIMITS` (resource name -> soft, hard)."""
    import resource

    found: dict[str, tuple[int, int]] = {}
    with open(f"/proc/{pid}/limits", encoding="ascii") as fh:
        for line in fh.read().splitlines()[1:]:
            name = RLIMITS.get(line[:26].strip())
            words = line[26:].split()
            if name is None or len(words) < 2:
                continue
            soft, hard = (resource.RLIM_INFINITY if w == "unlimited" else int(w) for w in words[:2])
            found[name] = (soft, hard)
    return found


def _enter_sandbox(conn: socket.socket) -> None:
    """Become the launcher's step: join its job's control group and take its rlimits (the step counts
    against the tool's and the job's limits, as the tool's own process would); and if the launcher runs as
    another user than this server (in a sandbox), take its mount namespace, its root and its user: the step
    can then reach only what the sandboxed tool can."""
    import ctypes
    import resource

    from ogcflow.cgroups import join_group_of

    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                         struct.calcsize("3i")))
    join_group_of(pid)
    for name, (soft, hard) in _limits_of(pid).items():
        which = getattr(resource, name)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):  # not root: a hard limit above this server's stays this server's
            ours = resource.getrlimit(which)[1]
            resource.setrlimit(which, (soft if ours == resource.RLIM_INFINITY or 0 <= soft <= ours else ours, ours))
    if uid == os.getuid():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    try:
        if libc.setns(fd, 0x00020000) != 0:  # CLONE_NEWNS
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _run_step(conn: socket.socket, fds: list[int], request: StepRequest, config: str | None = None) -> None:
    """In the forked step process: become the launcher's step, run it, send the exit status. Never returns."""
    code = 1
    try:
        _die_with_parent()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        try:
            _enter_sandbox(conn)
        except OSError as exc:
            print(f"ERROR step: could not become the launcher's step: {exc}", file=sys.stderr)
            raise
        os.chdir(request.cwd)
        os.environ.clear()
        os.environ.update(request.env)
        if config is not None:
            from ogcflow.eo.config import ENV as CONFIG_ENV

            os.environ[CONFIG_ENV] = config
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

        def watch() -> None:  # the launcher's end of the connection closes when it dies
            try:
                conn.recv(1)
            except OSError:
                pass
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, daemon=True).start()
        from ogcflow.eo.__main__ import main

        try:
            code = main(request.argv)
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:  # noqa: BLE001 - reported like an uncaught error of a fresh process
            import traceback

            traceback.print_exc()
            print(f"ERROR step: {exc.__class__.__name__}: {exc}", file=sys.stderr)
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            conn.sendall(struct.pack("!i", code))
        finally:
            os._exit(code)


def _die_with_parent() -> None:
    from ogcflow.children import die_with_parent

    die_with_parent()


def _reap(_signum: int, _frame: object) -> None:
    """Collect every step process that has ended."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(path: str, parent: int, config: str | None = None) -> None:
    """Accept launchers until the parent process is gone."""
    _die_with_parent()
    if os.getppid() != parent:
        return
    _preload()
    signal.signal(signal.SIGCHLD, _reap)  # reaped here (not by the kernel: SIG_IGN), so that the CPU time of
    # the steps counts in this server's children's times, as a fresh interpreter's would in its parent's
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = path + ".part"
    listener.bind(tmp)
    os.chmod(tmp, 0o666)  # the directory is private; sandboxed launchers (other users) get the socket bound
    listener.listen(64)
    os.replace(tmp, path)  # launchers see the socket only once it accepts
    pending: dict[socket.socket, _Incoming] = {}  # read side by side: a slow client holds no one up
    while os.getppid() == parent:
        now = time.monotonic()
        for late in [i for i in pending.values() if i.deadline <= now]:
            del pending[late.conn]
            late.close()
        wait = min([1.0, *(i.deadline - now for i in pending.values())])
        ready, _, _ = select.select([listener, *pending], [], [], max(wait, 0.0))
        for sock in ready:
            if sock is listener:
                if len(pending) < MAX_PENDING:
                    conn, _ = listener.accept()
                    conn.setblocking(False)
                    pending[conn] = _Incoming(conn)
                continue
            incoming = pending[sock]
            try:
                request = incoming.read()
            except (OSError, ValueError):
                del pending[sock]
                incoming.close()
                continue
            if request is None:
                continue
            del pending[sock]
            _start_step(listener, pending, incoming, request, config)


def _start_step(listener: socket.socket, pending: dict[socket.socket, _Incoming], incoming: _Incoming,
                request: StepRequest, config: str | None) -> None:
    """Fork the step process of a whole request; this server keeps none of its descriptors."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:
        listener.close()
        for other in pending.values():  # nothing of the other launchers stays open in this step
            other.close()
        incoming.conn.setblocking(True)
        _run_step(incoming.conn, incoming.fds, request, config)
    incoming.close()


class StepServer:
    """The worker's handle on its step server."""

    def __init__(self, config: str | None = None) -> None:
        self.config = config  # the steps' configuration (ogcflow.eo.config), whatever a launcher sends
        self.dir = tempfile.mkdtemp(prefix="ogcflow-steps-")  # private (0700)
        self.path = os.path.join(self.dir, "steps.sock")
        self.pid = 0

    def start(self) -> StepServer:
        """Fork the server (call before the worker starts threads) and point steps at it."""
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                serve(self.path, parent, self.config)
            except BaseException:  # noqa: BLE001 - steps fall back to fresh interpreters
                log.exception("the step server stopped")
                code = 1
            finally:
                os._exit(code)
        self.pid = pid
        os.environ[ENV] = self.path
        return self

    def stop(self) -> None:
        import shutil

        from ogcflow.children import stop_child

        os.environ.pop(ENV, None)
        if self.pid:
            stop_child(self.pid)
            self.pid = 0
        shutil.rmtree(self.dir, ignore_errors=True)
