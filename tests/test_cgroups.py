"""A control group per job: its limits hold for all its processes together, it ends whole (whatever they
forked or setsid'd), an out-of-memory kill stays in the job and is the job's stated failure, and groups a
dead worker left are removed by the next worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from ogcflow.cgroups import JobCgroups, MiB, detect, out_of_memory_message
from tests.conftest import wait_for
from tests.server import Server
from tests.test_sandbox import AUTH, deploy, marked, settle, submit, tool

HOST = detect()
pytestmark = pytest.mark.skipif(isinstance(HOST, str), reason=f"this host gives jobs no control group: {HOST}")


def in_group(pid: int, controller: str = "memory") -> str:
    """The group of a process in a hierarchy (its path there)."""
    with open(f"/proc/{pid}/cgroup", encoding="ascii") as fh:
        return next(line.split(":", 2)[2].strip() for line in fh if f":{controller}:" in line)


@pytest.fixture
def groups() -> Iterator[JobCgroups]:
    """The groups of a worker whose pid is this test's."""
    assert isinstance(HOST, JobCgroups)
    yield HOST.of_worker(os.getpid())
    HOST.sweep(lambda pid: True)  # the caller's own groups only


def wait_until(check, timeout: float = 10) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_job_group_holds_its_limits_and_ends_whole(groups: JobCgroups) -> None:
    group = groups.create(f"{uuid.uuid4()}.1", memory_mb=256, processes=64)
    assert (group.dirs["memory"] / "memory.limit_in_bytes").read_text().strip() == str(256 * MiB)
    assert (group.dirs["pids"] / "pids.max").read_text().strip() == "64"
    assert group.memory_limit_mb() == 256
    proc = subprocess.Popen(["sh", "-c", "setsid sleep 300 & (sleep 300 &); sleep 300"], preexec_fn=group.join)
    def names() -> list[str]:
        found = []
        for pid in group.pids():
            try:
                found.append(psutil.Process(pid).name())
            except psutil.NoSuchProcess:  # the subshell, which ends once its sleep started
                pass
        return sorted(found)

    # sh and three sleeps, one in a session of its own, one an orphan of a subshell
    assert wait_until(lambda: names() == ["sh", "sleep", "sleep", "sleep"]), names()
    tree = [psutil.Process(pid) for pid in group.pids()]
    assert {in_group(p.pid) for p in tree} == {"/" + str(group.dirs["memory"]).split("/memory/", 1)[1]}
    assert group.remove()
    assert proc.wait(timeout=5) == -signal.SIGKILL
    _, alive = psutil.wait_procs(tree, timeout=5)
    assert not alive, "a process outlived its group"
    assert not any(path.exists() for path in group.dirs.values())


def test_a_job_group_caps_its_processes_together(groups: JobCgroups) -> None:
    group = groups.create(f"{uuid.uuid4()}.1", memory_mb=None, processes=6)
    done = subprocess.run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 30 >/dev/null 2>&1 & done"],
                          preexec_fn=group.join, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "cannot fork" in done.stderr.lower(), done.stderr
    assert 0 < len(group.pids()) <= 6
    assert group.remove()


def test_running_out_of_memory_kills_inside_the_group_and_says_so(groups: JobCgroups) -> None:
    group = groups.create(f"{uuid.uuid4()}.1", memory_mb=64, processes=None)
    assert out_of_memory_message(group) == ""
    hog = subprocess.run([sys.executable, "-c", "b = b'x' * (256 << 20); print('survived')"],
                         preexec_fn=group.join, capture_output=True, text=True, timeout=60)
    assert hog.returncode == -signal.SIGKILL and "survived" not in hog.stdout
    assert group.oom_kills() >= 1
    message = out_of_memory_message(group)
    assert "ran out of memory" in message and "of 64 MB" in message and "OGCFLOW_JOB_MEMORY_MB" in message
    assert group.remove()


JOIN = "import sys; from ogcflow.cgroups import join_group_of, own_group; " \
       "ok = join_group_of(int(sys.argv[1])); g = own_group(); print(ok, g.job_id if g else None)"


def test_a_process_joins_another_ones_job_group_only(groups: JobCgroups) -> None:
    name = f"{uuid.uuid4()}.3"
    group = groups.create(name, memory_mb=None, processes=None)
    member = subprocess.Popen(["sleep", "60"], preexec_fn=group.join)
    try:
        joined = subprocess.run([sys.executable, "-c", JOIN, str(member.pid)], capture_output=True, text=True,
                                timeout=60, check=True)
        assert joined.stdout.split() == ["True", name]
        # this test's process is in no job group: nothing to join, and the caller stays where it is
        alone = subprocess.run([sys.executable, "-c", JOIN, str(os.getpid())], capture_output=True, text=True,
                               timeout=60, check=True)
        assert alone.stdout.split() == ["False", "None"]
    finally:
        group.remove()
        member.wait()


def test_the_groups_of_a_dead_worker_are_swept(groups: JobCgroups) -> None:
    assert isinstance(HOST, JobCgroups)
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = HOST.of_worker(gone.pid)  # a worker that is gone, and left a job running in its group
    group = dead.create(f"{uuid.uuid4()}.1", memory_mb=None, processes=None)
    left = subprocess.Popen(["setsid", "sleep", "300"], preexec_fn=group.join)
    worker = subprocess.Popen(["sleep", "60"])  # a worker that is alive, with a job group
    theirs = HOST.of_worker(worker.pid).create(f"{uuid.uuid4()}.1", memory_mb=None, processes=None)
    try:
        assert HOST.sweep(lambda pid: pid != gone.pid and psutil.pid_exists(pid)) >= 1
        assert left.wait(timeout=5) == -signal.SIGKILL
        assert not any(p.exists() for p in group.dirs.values()) and not any(p.exists() for p in dead.bases.values())
        assert theirs.dirs["memory"].is_dir()  # a live worker's groups are not the sweep's
    finally:
        theirs.remove()
        HOST.of_worker(worker.pid).sweep(lambda pid: True)
        worker.kill()
        worker.wait()


# -- through a server ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, httpx.Client]]:
    from tests.test_sandbox import TOKEN

    env = {"OGCFLOW_ADMIN_TOKEN": TOKEN, "OGCFLOW_JOB_MEMORY_MB": "400", "OGCFLOW_JOB_PROCESSES": "300"}
    srv = Server(tmp_path_factory.mktemp("cgroups"), env=env, workers=2).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=60, headers=AUTH) as c:
            yield srv, c
    finally:
        srv.stop()


def test_a_job_and_its_tools_run_in_its_group_which_goes_with_it(gc: tuple[Server, httpx.Client]) -> None:
    srv, c = gc
    mark = f"{600 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000}"
    deploy(c, tool("grouped", f"setsid sleep {mark} & sleep {mark}"))
    resp = submit(c, "grouped")
    job = resp.headers["location"].rsplit("/", 1)[1]
    assert wait_until(lambda: len(marked(mark, sleeps=True)) == 2, timeout=60)
    job_pid = srv.job_process(job)
    where = in_group(job_pid)
    parts = Path(where).parts
    assert parts[-3] == "ogcflow" and parts[-1].startswith(job + "."), where
    assert {in_group(pid) for pid in marked(mark, sleeps=True)} == {where}  # the sandboxed tool's too
    memory = Path("/sys/fs/cgroup/memory") / where.lstrip("/")
    assert (memory / "memory.limit_in_bytes").read_text().strip() == str(400 * MiB)
    pids = Path("/sys/fs/cgroup/pids") / in_group(job_pid, "pids").lstrip("/")
    assert (pids / "pids.max").read_text().strip() == "300"
    assert c.delete(resp.headers["location"]).status_code == 200
    assert settle(mark) == []
    assert wait_until(lambda: not memory.exists() and not pids.exists()), "the job's group outlived it"


def test_a_job_over_its_memory_fails_saying_so(gc: tuple[Server, httpx.Client]) -> None:
    _, c = gc
    # each process under its rlimit (4 GiB), the job over its 400 MB: the kernel kills inside the job only
    deploy(c, tool("hog", "python3 -c \"b = b'x' * (700 << 20); print('survived')\"", check=True))
    resp = submit(c, "hog")
    assert resp.status_code == 201, resp.text
    info = wait_for(c, resp.headers["location"], timeout=120)
    assert info["status"] == "failed", info
    assert "the job ran out of memory" in info["message"] and "of 400 MB" in info["message"], info["message"]
    deploy(c, tool("fits", "python3 -c \"b = b'x' * (100 << 20); print('fits')\"", check=True))
    ok = wait_for(c, submit(c, "fits").headers["location"], timeout=120)
    assert ok["status"] == "successful", ok  # the server and its next job are untouched


@pytest.mark.parametrize("threads", [0, 2])
def test_joining_moves_every_thread_of_the_caller(groups: JobCgroups, threads: int) -> None:
    """A just-forked job process moves its one thread (the cheap way); one with threads moves whole."""
    group = groups.create(f"{uuid.uuid4()}.1", memory_mb=None, processes=None)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            import threading
            stop = threading.Event()
            for _ in range(threads):
                threading.Thread(target=stop.wait, daemon=True).start()
            group.join()
            child = subprocess.Popen(["sleep", "30"])
            tids = os.listdir("/proc/self/task")
            os.write(write, " ".join([str(child.pid), *tids]).encode())
            time.sleep(30)
        finally:
            os._exit(0)
    os.close(write)
    child, *tids = os.read(read, 4096).decode().split()
    os.close(read)
    try:
        assert len(tids) == threads + 1
        for controller in group.dirs:
            for tid in tids:  # every thread of the process is in the group, in each hierarchy
                with open(f"/proc/{pid}/task/{tid}/cgroup", encoding="ascii") as fh:
                    line = next(line for line in fh if f":{controller}:" in line)
                assert line.rstrip().endswith(group.dirs[controller].name), line
            assert in_group(int(child), controller).endswith(group.dirs[controller].name)
        assert group.pids() == {pid, int(child)}
    finally:
        assert group.remove()
        os.waitpid(pid, 0)
