"""The step server: EO steps forked from a warm process, exit statuses, fall-back, and stopping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ogcflow.eo.dataserver import DataServer, RangeHandler
from ogcflow.eo.stepserver import ENV, launcher_command
from tests.eo_support import Scenes

AOI = "-121.43,40.27,-121.33,40.34"
SERVER = """
import sys, time
from ogcflow.eo.stepserver import StepServer
server = StepServer().start()
print(server.path, server.pid, flush=True)
sys.stdin.read()
server.stop()
"""


@pytest.fixture(scope="module")
def step_server() -> Iterator[tuple[str, int]]:
    """A step server forked by a process of its own, as a worker does."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    path, pid = proc.stdout.readline().split()
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:  # the socket appears once warm
        time.sleep(0.05)
    assert os.path.exists(path), "the step server did not start"
    yield path, int(pid)
    proc.stdin.close()
    proc.wait(timeout=30)
    assert not os.path.exists(path)


def _env(socket_path: str | None, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    env["OGCFLOW_STEP_CONFIG"] = f'{{"data_dir": "{tmp}", "allow_private_urls": true}}'
    if socket_path:
        env[ENV] = socket_path
    return env


def _step(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*launcher_command(args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("through_server", [True, False])
def test_steps_run_with_or_without_the_server(step_server: tuple[str, int], scenes: Scenes, tmp_path: Path,
                                              through_server: bool) -> None:
    env = _env(step_server[0] if through_server else None, tmp_path)
    for band in ("green", "nir08"):
        (tmp_path / band).mkdir()
        done = _step(["crop", "--input-item", scenes.item_url("A"), "--aoi", AOI, "--epsg", "EPSG:4326",
                      "--band", band], tmp_path / band, env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == str(tmp_path / band / f"crop_{band}.tif")
    done = _step(["norm_diff", "green/crop_green.tif", "nir08/crop_nir08.tif"], tmp_path, env)
    assert done.returncode == 0 and (tmp_path / "norm_diff.tif").is_file(), done.stderr
    done = _step(["otsu", "norm_diff.tif"], tmp_path, env)
    assert done.returncode == 0 and (tmp_path / "otsu.tif").is_file(), done.stderr
    failed = _step(["crop", "--input-item", scenes.item_url("D"), "--aoi", AOI, "--band", "green"], tmp_path, env)
    assert failed.returncode == 1
    assert "ERROR crop: the area of interest" in failed.stderr and "does not overlap" in failed.stderr
    usage = _step(["otsu"], tmp_path, env)
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_a_step_stops_when_its_launcher_is_killed(step_server: tuple[str, int], tmp_path: Path) -> None:
    class Hanging(RangeHandler):
        def _serve(self, head: bool) -> None:
            time.sleep(30)

    slow = DataServer(tmp_path, handler=Hanging).start()
    try:
        launcher = subprocess.Popen([*launcher_command("crop"), "--input-item", slow.url + "/item.json", "--aoi",
                                     AOI, "--band", "green"], cwd=tmp_path, env=_env(step_server[0], tmp_path),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = psutil.Process(step_server[1])

        def cwds() -> list[str]:  # a step just forked may not have taken on its launcher's directory yet
            try:
                return [step.cwd() for step in server.children()]
            except psutil.NoSuchProcess:
                return []

        deadline = time.monotonic() + 10
        while cwds() != [str(tmp_path)] and time.monotonic() < deadline:
            time.sleep(0.02)
        steps = server.children()
        assert cwds() == [str(tmp_path)]  # one step, in the launcher's directory
        launcher.send_signal(signal.SIGKILL)  # what a dismissal does to the job's process group
        launcher.wait()
        gone, alive = psutil.wait_procs(steps, timeout=2)
        assert not alive, "the step outlived its launcher"
    finally:
        slow.stop()


def test_a_launcher_request_reads_back_as_sent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ogcflow.eo.launch import request
    from ogcflow.eo.stepserver import parse_request

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OGCFLOW_TEST_VALUE", "a=b=c, é ✓")
    monkeypatch.setenv("OGCFLOW_TEST_EMPTY", "")
    argv = ["crop", "--aoi", "-121.4,39.8,-120.7,40.4", "", "with space", "naïve/ü.tif"]
    data = request(argv)
    assert int.from_bytes(data[:4], "big") == len(data) - 4
    got = parse_request(data[4:])
    assert got.argv == argv
    assert got.cwd == str(tmp_path)
    assert got.env == dict(os.environ)
    assert got.env["OGCFLOW_TEST_VALUE"] == "a=b=c, é ✓" and got.env["OGCFLOW_TEST_EMPTY"] == ""


@pytest.mark.parametrize("payload", [b"", b"{}", b'{"argv": ["otsu"], "cwd": "/", "env": {}}',
                                     b"ogcflow-step/2\x00x\x00otsu", b"ogcflow-step/2\x009\x00otsu\x00/",
                                     b"ogcflow-step/2\x001\x00otsu\x00/\x00NOEQUALS", b"other\x000\x00/"])
def test_a_malformed_launcher_request_is_refused(payload: bytes) -> None:
    from ogcflow.eo.stepserver import parse_request

    with pytest.raises(ValueError):
        parse_request(payload)


def _junk(path: str, payload: bytes, declared: int | None = None) -> None:
    """A request with three descriptors and ``payload`` after a length header (``declared``, or its own)."""
    import socket as sk
    import struct

    with sk.socket(sk.AF_UNIX, sk.SOCK_STREAM) as conn, open(os.devnull, "rb") as null:
        conn.connect(path)
        sk.send_fds(conn, [struct.pack("!I", len(payload) if declared is None else declared)], [null.fileno()] * 3)
        conn.sendall(payload)
        conn.shutdown(sk.SHUT_WR)
        conn.settimeout(10)
        assert conn.recv(4) == b""  # refused: closed without an exit status


def test_refused_requests_leave_no_descriptor_open(step_server: tuple[str, int], tmp_path: Path) -> None:
    """Any sandboxed tool can reach the step server: what it sends that is not a request is closed, the
    descriptors that came with it included (else a few thousand of them would exhaust the server's)."""
    server = psutil.Process(step_server[1])
    before = server.num_fds()
    for payload in (b"{}", b"ogcflow-step/2\x00x\x00otsu", b"not a request at all"):
        for _ in range(20):
            _junk(step_server[0], payload)
    _junk(step_server[0], b"", declared=1 << 30)  # larger than any request may be: refused at once
    assert server.num_fds() <= before
    usage = _step(["otsu"], tmp_path, _env(step_server[0], tmp_path))
    assert usage.returncode == 2 and "usage:" in usage.stderr  # and the server still runs steps


def test_a_slow_client_holds_no_launcher_up(step_server: tuple[str, int], tmp_path: Path) -> None:
    import socket as sk
    import struct

    with sk.socket(sk.AF_UNIX, sk.SOCK_STREAM) as slow, open(os.devnull, "rb") as null:
        slow.connect(step_server[0])
        sk.send_fds(slow, [struct.pack("!I", 100)], [null.fileno()] * 3)
        slow.sendall(b"o")  # then nothing: 99 bytes owed
        usage = _step(["otsu"], tmp_path, _env(step_server[0], tmp_path))
        assert usage.returncode == 2 and "usage:" in usage.stderr
        slow.setblocking(False)
        with pytest.raises(BlockingIOError):  # served while the slow request was still being waited for
            slow.recv(1)


def test_a_launcher_the_server_refuses_says_so_in_one_line(tmp_path: Path) -> None:
    """A server that closes at once (here: a socket that accepts and closes): an ERROR line, no traceback."""
    import socket as sk
    import threading

    path = str(tmp_path / "s.sock")
    listener = sk.socket(sk.AF_UNIX, sk.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)

    def refuse() -> None:
        conn, _ = listener.accept()
        conn.close()

    threading.Thread(target=refuse, daemon=True).start()
    env = {**os.environ, ENV: path}
    done = subprocess.run([*launcher_command("otsu"), "x.tif"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)
    listener.close()
    assert done.returncode == 1
    assert done.stderr.startswith("ERROR step: ") and "Traceback" not in done.stderr, done.stderr


def test_a_killed_server_is_not_taken_for_a_running_one(tmp_path: Path) -> None:
    """Its socket file stays behind: the steps' sandboxes must then get the policed network again (their
    launchers run the steps themselves), so whether a server answers is asked of the socket, not the file."""
    from ogcflow.eo.stepserver import answering

    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        path, pid = proc.stdout.readline().split()
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert answering(path)
        server = psutil.Process(int(pid))
        os.kill(server.pid, signal.SIGKILL)
        while time.monotonic() < deadline and server.is_running() and server.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.02)  # dead (its parent, blocked on stdin here, reaps it later)
        assert os.path.exists(path) and not answering(path)
        assert not answering(None) and not answering(str(tmp_path / "none.sock"))
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_step_joins_its_launchers_job_group_and_takes_its_rlimits(step_server: tuple[str, int],
                                                                    tmp_path: Path) -> None:
    """A forked step counts where the tool's own process would: in the job's control group (the job's memory
    and processes together) and under the tool's rlimits, not the step server's."""
    from ogcflow.cgroups import JobCgroups, detect

    host = detect()
    if isinstance(host, str):
        pytest.skip(f"this host gives jobs no control group: {host}")
    assert isinstance(host, JobCgroups)

    class Hanging(RangeHandler):
        def _serve(self, head: bool) -> None:
            time.sleep(30)

    groups = host.of_worker(os.getpid())
    group = groups.create("step-test.1", memory_mb=1024, processes=100)
    slow = DataServer(tmp_path, handler=Hanging).start()
    try:
        launcher = subprocess.Popen(["prlimit", "--nofile=200", "--data=900000000", "--cpu=77", "--",
                                     *launcher_command("crop"), "--input-item", slow.url + "/item.json",
                                     "--aoi", AOI, "--band", "green"], cwd=tmp_path,
                                    env=_env(step_server[0], tmp_path), preexec_fn=group.join,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = psutil.Process(step_server[1])
        deadline = time.monotonic() + 10
        while not server.children() and time.monotonic() < deadline:
            time.sleep(0.02)
        [step] = server.children()
        deadline = time.monotonic() + 5
        while step.pid not in group.pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert step.pid in group.pids() and launcher.pid in group.pids()
        assert step.rlimit(psutil.RLIMIT_NOFILE) == (200, 200)
        assert step.rlimit(psutil.RLIMIT_DATA) == (900000000, 900000000)
        assert step.rlimit(psutil.RLIMIT_CPU) == (77, 77)
        assert server.rlimit(psutil.RLIMIT_NOFILE) != (200, 200)  # the server's own are untouched
        assert group.remove()  # ending the job's group ends the step too, though the server forked it
        launcher.wait(timeout=5)
        _, alive = psutil.wait_procs([step], timeout=5)
        assert not alive
    finally:
        slow.stop()
        host.sweep(lambda pid: True)
