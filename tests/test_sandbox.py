"""Deployed CWL tools run in a sandbox, and nothing a job starts outlives it (issue 12, items 1 and 3).

Each attack of the issue is deployed as a package and run through the API of a real server; the tool's
standard output comes back as its result, so what it could see is what the test reads. The process tests
count the processes carrying a marker (a unique ``sleep`` duration) before and after each scenario.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ogcflow.cgroups import detect as detect_cgroups
from tests.conftest import Recorder, Site, wait_for
from tests.server import Server, gone

TOKEN = "sandbox-admin-token-" + uuid.uuid4().hex[:8]
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CWL = {"Content-Type": "application/cwl+yaml", **AUTH}
ASYNC = {"Prefer": "respond-async"}
#: the bytes the NetworkAccess tools of one job may download through the network policy
CAP = 256 * 1024


def tool(name: str, script: str, inputs: str = "{}", requirements: str = "", check: bool = False) -> str:
    """A tool that runs ``script`` with sh and answers its standard output (and error) as the string ``out``
    (``check``: the tool fails when the script does)."""
    return f"""cwlVersion: v1.2
class: CommandLineTool
id: {name}
requirements:
  InlineJavascriptRequirement: {{}}
{requirements}
baseCommand: [sh, -c]
arguments: [{json.dumps("{ " + script + "; } 2>&1" + ("" if check else "; true"))}]
stdout: out.txt
inputs: {inputs}
outputs:
  out:
    type: string
    outputBinding: {{glob: out.txt, loadContents: true, outputEval: "$(self[0].contents)"}}
"""


def _server(tmp: Path, sandbox: bool) -> Server:
    env = {"OGCFLOW_ADMIN_TOKEN": TOKEN, "OGCFLOW_SANDBOX": "true" if sandbox else "false",
           "AWS_SECRET_ACCESS_KEY": "aws-secret-" + TOKEN,
           # the network policy of tools that declare NetworkAccess: loopback refused, but for 'localhost'
           "OGCFLOW_ALLOW_PRIVATE_URLS": "false", "OGCFLOW_ALLOWED_HOSTS": '["localhost"]',
           # and what they may download, per job
           "OGCFLOW_TOOL_DOWNLOAD_MAX_BYTES": str(CAP)}
    return Server(tmp, env=env, workers=2).start()


@pytest.fixture(scope="module")
def sserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = _server(tmp_path_factory.mktemp("sandbox"), sandbox=True)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def sc(sserver: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sserver.url, timeout=60) as c:
        yield c


def deploy(c: httpx.Client, cwl: str) -> None:
    resp = c.post("/processes", content=cwl, headers=CWL)
    assert resp.status_code == 201, resp.text


def submit(c: httpx.Client, process: str, inputs: dict[str, Any] | None = None) -> httpx.Response:
    return c.post(f"/processes/{process}/execution", json={"inputs": inputs or {}}, headers=ASYNC)


def run(c: httpx.Client, process: str, inputs: dict[str, Any] | None = None, timeout: float = 60) -> str:
    """Run a deployed tool; its output (what the tool saw)."""
    resp = submit(c, process, inputs)
    assert resp.status_code == 201, resp.text
    info = wait_for(c, resp.headers["location"], timeout=timeout)
    assert info["status"] == "successful", info.get("message")
    out = c.get(resp.headers["location"] + "/results").json()["out"]
    return str(out["value"] if isinstance(out, dict) else out)


def test_a_tool_runs_as_an_unprivileged_user_with_a_scrubbed_environment(sc: httpx.Client) -> None:
    deploy(sc, tool("environ", "id -u; cat /proc/$PPID/environ; for f in /proc/[0-9]*/environ; do cat $f; done; "
                               "echo; env; ls /proc"))
    out = run(sc, "environ")
    uid = int(out.split()[0])
    assert uid >= 100000
    assert TOKEN not in out and "aws-secret" not in out and "OGCFLOW_DATA_DIR" not in out
    assert "HOME=" in out  # cwltool's own variables are there
    pids = [w for w in out.split() if w.isdigit() and int(w) != uid]
    assert len(pids) < 10  # only the sandbox's own processes in /proc, not the server's


def test_a_tool_sees_neither_the_data_dir_nor_the_store_nor_other_jobs(sserver: Server, sc: httpx.Client) -> None:
    marker = "secret-of-another-job-" + uuid.uuid4().hex[:6]
    deploy(sc, tool("keeper", "echo $(inputs.s)", inputs="{s: string}"))
    first = submit(sc, "keeper", {"s": marker})
    assert wait_for(sc, first.headers["location"])["status"] == "successful"
    data = sserver.data_dir.resolve()
    db = data / "ogcflow.db"
    deploy(sc, tool("snoop", f"ls -la {data}; cat {data}/results/*/* {data}/results/*/*/*; ls -la /tmp; "
                             "grep -rs 'secret-of-another-job-[0-9a-f]\\{6\\}' /tmp /home /root /var /work | head; "
                             f"echo x >> {db} && echo WROTE; "
                             f"sqlite3 {db} \"update jobs set message='owned'\" && echo UPDATED"))
    out = run(sc, "snoop")
    assert "No such file or directory" in out, out
    assert "ogcflow.db" not in out.replace(str(db), "")  # the path of the command itself is all
    assert "WROTE" not in out and "UPDATED" not in out
    assert marker not in out
    # the store is untouched: no job's message is 'owned', and the file did not grow by the 'x' line
    assert all(message != "owned" for (message,) in sserver.query("select message from jobs"))
    assert not db.read_bytes().endswith(b"x\n")


def test_a_tool_cannot_reach_a_loopback_service(sc: httpx.Client, recorder: Recorder) -> None:
    path = f"/loopback-{uuid.uuid4().hex[:6]}"
    post = f"curl -sS -m 5 -X POST -H 'Content-Type: application/json' -d '{{}}' {recorder.url}{path}"
    deploy(sc, tool("reach", post))
    deploy(sc, tool("reach-declared", post, requirements="  NetworkAccess: {networkAccess: true}"))
    out = run(sc, "reach")
    assert "curl: (7)" in out, out  # could not connect
    out = run(sc, "reach-declared")  # through its proxy: the network policy refuses loopback
    assert "loopback" in out and "OGCFLOW_ALLOWED_HOSTS" in out, out
    httpx.post(recorder.url + path + "-control", json={})  # the service answers whoever may reach it
    assert recorder.received(path + "-control") == [{}]
    assert recorder.received(path) == []


# -- the network of tools that declare NetworkAccess: HTTP(S) through the network policy ------------------

NET = "  NetworkAccess: {networkAccess: true}"


@pytest.fixture
def site() -> Iterator[Site]:
    """A local HTTP server (on every address of the host): 'localhost' is allowed, 127.0.0.1 is not."""
    web = Site("0.0.0.0")  # noqa: S104 - also the host's own address, for a direct connection to try
    web.routes["/data"] = (200, {"Content-Type": "text/plain"}, b"allowed data")
    web.routes["/secret"] = (200, {"Content-Type": "text/plain"}, b"internal secret")
    web.routes["/evil"] = (302, {"Location": f"http://127.0.0.1:{web.port}/secret"}, b"")
    web.routes["/part"] = (200, {"Content-Type": "application/octet-stream"}, b"p" * (CAP * 5 // 8))  # 2 > CAP
    web.routes["/small"] = (200, {"Content-Type": "application/octet-stream"}, b"s" * (CAP // 4))
    yield web
    web.stop()


def host_address() -> str:
    """An address of this host that is not loopback (where the route to the outside leaves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent
        return str(probe.getsockname()[0])


def fails(c: httpx.Client, process: str) -> str:
    """Run a deployed tool that must fail: the job's failure message."""
    resp = submit(c, process)
    assert resp.status_code == 201, resp.text
    info = wait_for(c, resp.headers["location"], timeout=60)
    assert info["status"] == "failed", info
    return str(info.get("message"))


def test_a_tool_with_network_access_reads_an_allowed_host_through_the_policy(sc: httpx.Client, site: Site) -> None:
    base = f"http://localhost:{site.port}"
    py = f"import urllib.request as u; print(u.urlopen('{base}/data').read().decode())"
    deploy(sc, tool("net-read", f"curl -sSf {base}/data; echo; curl -sSf --proxytunnel {base}/data; echo; "
                                f"python3 -c \"{py}\"; env | grep -i proxy= | sort", requirements=NET))
    out = run(sc, "net-read")
    assert out.count("allowed data") == 3, out  # curl (http, and a CONNECT tunnel as https uses), Python
    assert site.hits == ["/data"] * 3
    assert "HTTPS_PROXY=http://127.0.0.1:3128" in out and "http_proxy=http://127.0.0.1:3128" in out


def test_a_tool_asking_for_a_refused_address_fails_saying_why(sc: httpx.Client, site: Site) -> None:
    deploy(sc, tool("net-refused", f"curl -sSf http://127.0.0.1:{site.port}/secret", requirements=NET, check=True))
    message = fails(sc, "net-refused")
    assert "the network policy refused" in message and "loopback" in message, message
    deploy(sc, tool("net-refused-tls", f"curl -sSf https://127.0.0.1:{site.port}/secret", requirements=NET,
                    check=True))
    message = fails(sc, "net-refused-tls")  # a CONNECT tunnel: checked before anything is connected
    assert "the network policy refused" in message and "loopback" in message, message
    assert site.hits == []


def test_a_redirect_to_a_refused_address_is_refused(sc: httpx.Client, site: Site) -> None:
    deploy(sc, tool("net-redirect", f"curl -sSfL http://localhost:{site.port}/evil", requirements=NET, check=True))
    message = fails(sc, "net-redirect")
    assert f"refused http://127.0.0.1:{site.port}/secret" in message and "loopback" in message, message
    assert site.hits == ["/evil"]  # the first hop, allowed; never the second
    # the test can tell: the same redirect, followed without the policy, reaches the secret
    assert httpx.get(f"http://localhost:{site.port}/evil", follow_redirects=True).text == "internal secret"


def test_a_direct_connection_ignoring_the_proxy_fails(sc: httpx.Client, site: Site) -> None:
    address = host_address()
    connect = f"import socket; socket.create_connection(('{address}', {site.port}), 5)"
    deploy(sc, tool("net-direct", f"curl -sS -m 5 --noproxy '*' http://localhost:{site.port}/data; "
                                  f"curl -sS -m 5 --noproxy '*' http://{address}:{site.port}/data; "
                                  f"python3 -c \"{connect}\"", requirements=NET))
    out = run(sc, "net-direct")
    assert out.count("curl: (7)") == 2 and "Network is unreachable" in out, out  # only its own loopback
    assert site.hits == []
    assert httpx.get(f"http://{address}:{site.port}/data").text == "allowed data"  # reachable from the host


def test_a_tool_without_network_access_gets_no_proxy_and_no_network(sc: httpx.Client, site: Site) -> None:
    deploy(sc, tool("net-none", f"env | grep -ci proxy; curl -sS -m 5 http://localhost:{site.port}/data; "
                                "ls /run/ogcflow"))
    out = run(sc, "net-none")
    assert out.split()[0] == "0" and "curl: (7)" in out and "No such file" in out, out
    assert site.hits == []


CAPPED = f"downloaded more than {CAP} bytes through the network policy"


def test_a_job_under_its_download_cap_gets_everything(sc: httpx.Client, site: Site) -> None:
    base = f"http://localhost:{site.port}"
    size = "curl -sSf -o /dev/null -w '%{size_download}\\n'"
    deploy(sc, tool("net-under-cap", f"{size} {base}/small; {size} --proxytunnel {base}/small; "
                                     f"{size} {base}/small", requirements=NET, check=True))
    assert run(sc, "net-under-cap").split() == [str(CAP // 4)] * 3  # 3/4 of the cap, http and CONNECT
    assert site.hits == ["/small"] * 3


@pytest.mark.parametrize("how", ["http", "connect"])
def test_a_job_that_downloads_more_than_its_cap_fails_saying_why(sc: httpx.Client, site: Site, how: str) -> None:
    # each download is under the cap, the two together are not: the second is cut
    curl = "curl -sSf -o /dev/null" + (" --proxytunnel" if how == "connect" else "")
    deploy(sc, tool(f"net-over-cap-{how}", f"{curl} http://localhost:{site.port}/part && "
                                           f"{curl} http://localhost:{site.port}/part", requirements=NET, check=True))
    message = fails(sc, f"net-over-cap-{how}")
    assert "the network policy refused" in message and CAPPED in message, message
    assert "OGCFLOW_TOOL_DOWNLOAD_MAX_BYTES" in message, message
    assert site.hits == ["/part"] * 2


def test_the_download_cap_is_the_jobs_all_its_steps_together(sc: httpx.Client, site: Site) -> None:
    fetch = json.dumps(f"curl -sSf -o /dev/null http://localhost:{site.port}/part && echo fetched")
    deploy(sc, f"""cwlVersion: v1.2
$graph:
- class: Workflow
  id: net-two-steps
  inputs: {{}}
  outputs: {{a: {{type: string, outputSource: first/out}}, b: {{type: string, outputSource: second/out}}}}
  steps:
    first: {{run: "#fetch", in: {{}}, out: [out]}}
    second: {{run: "#fetch", in: {{}}, out: [out]}}
- class: CommandLineTool
  id: fetch
  requirements: {{NetworkAccess: {{networkAccess: true}}, InlineJavascriptRequirement: {{}}}}
  baseCommand: [sh, -c]
  arguments: [{fetch}]
  stdout: out.txt
  inputs: {{}}
  outputs: {{out: {{type: string, outputBinding: {{glob: out.txt, loadContents: true,
                                                outputEval: "$(self[0].contents)"}}}}}}
""")
    message = fails(sc, "net-two-steps")  # each step's download is under the cap, the job's two are not
    assert CAPPED in message, message
    assert site.hits == ["/part"] * 2


def test_connections_after_the_download_cap_are_refused(sc: httpx.Client, site: Site) -> None:
    base = f"http://localhost:{site.port}"
    size = "curl -sS -o /dev/null -w '%{size_download}\\n'"
    deploy(sc, tool("net-after-cap", f"{size} {base}/part; {size} --proxytunnel {base}/part; echo; "
                                     f"curl -sS {base}/data; echo; curl -sS --proxytunnel {base}/data",
                    requirements=NET))
    out = run(sc, "net-after-cap")  # the tool itself succeeds (it ignores its curls' failures)
    sizes = [int(line) for line in out.splitlines() if line.isdigit()]
    # the first whole, the second cut: no byte over the cap reached the tool
    assert len(sizes) == 2 and sizes[0] == CAP * 5 // 8 and sizes[1] < CAP * 3 // 8, out
    assert "allowed data" not in out and out.count(CAPPED) == 1, out  # a 403 naming the cap (the body)
    assert "403" in out, out  # curl's own word for the refused CONNECT
    assert site.hits == ["/part"] * 2  # nothing was asked of the site once the cap was reached


def test_a_directory_input_of_a_host_path_is_refused(sc: httpx.Client) -> None:
    deploy(sc, tool("listdir", "ls $(inputs.d.path); cat $(inputs.d.path)/passwd",
                    inputs="{d: Directory}"))
    resp = submit(sc, "listdir", {"d": "file:///etc"})
    if resp.status_code == 201:  # refused at run time (the input policy may refuse it at submission: 400)
        info = wait_for(sc, resp.headers["location"])
        assert info["status"] == "failed", info
        assert "root:x:0:0" not in json.dumps(sc.get(resp.headers["location"] + "/results").json())
    else:
        assert resp.status_code == 400, resp.text
    assert "root:x:0:0" not in resp.text


def test_resource_limits_apply(sc: httpx.Client) -> None:
    requirements = "  ResourceRequirement: {ramMax: 300, outdirMax: 64}\n  ToolTimeLimit: {timelimit: 20}"
    deploy(sc, tool("limits", "cat /proc/self/limits", requirements=requirements))
    limits = {line[:26].strip(): line[26:].split()[0] for line in run(sc, "limits").splitlines()[1:] if line}
    assert limits["Max cpu time"] == "21"
    assert limits["Max data size"] == str(300 * 1024 * 1024)
    assert limits["Max file size"] == str(64 * 1024 * 1024)
    assert limits["Max open files"] == "1024"
    assert limits["Max processes"] == "256"


# -- nothing outlives its job ---------------------------------------------------------------------


def marked(marker: str, sleeps: bool = False) -> list[int]:
    """Processes whose command line carries ``marker`` (``sleeps``: the ``sleep <marker>`` processes only)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/stat") as fh:
                state = fh.read().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if (cmd.startswith(f"sleep {marker}") if sleeps else marker in cmd) and state != "Z" \
                and "pytest" not in cmd:
            found.append(int(name))
    return found


def settle(marker: str, timeout: float = 10, sleeps: bool = False) -> list[int]:
    deadline = time.monotonic() + timeout
    while marked(marker, sleeps) and time.monotonic() < deadline:
        time.sleep(0.1)
    return marked(marker, sleeps)


def descendants(pid: int) -> set[int]:
    out: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open(f"/proc/{name}/stat") as fh:
                        if int(fh.read().rsplit(")", 1)[-1].split()[1]) == p:
                            out.add(int(name))
                            todo.append(int(name))
                except (OSError, ValueError):
                    continue
    return out


@pytest.fixture(scope="module", params=[True, False], ids=["sandboxed", "unsandboxed"])
def pserver(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = _server(tmp_path_factory.mktemp("procs"), sandbox=request.param)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pc(pserver: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pserver.url, timeout=60) as c:
        yield c


def test_background_processes_end_with_their_job(pc: httpx.Client) -> None:
    mark = f"{600 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000}"
    assert marked(mark) == []
    deploy(pc, tool("bg", f"for i in `seq 100`; do sleep {mark} & done; echo started"))
    assert run(pc, "bg").strip() == "started"
    assert settle(mark) == []


def test_a_setsid_child_dies_when_its_job_is_dismissed(pserver: Server, pc: httpx.Client) -> None:
    mark = f"{600 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000}"
    deploy(pc, tool("escape", f"setsid sleep {mark} & (sleep {mark} &); sleep {mark}"))
    resp = submit(pc, "escape")
    deadline = time.monotonic() + 30
    while len(marked(mark, sleeps=True)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(marked(mark, sleeps=True)) == 3
    assert pc.delete(resp.headers["location"]).status_code == 200
    assert settle(mark) == []
    assert pc.get(resp.headers["location"]).status_code in (404, 410) \
        or pc.get(resp.headers["location"]).json()["status"] == "dismissed"


def test_a_killed_worker_takes_its_jobs_and_children_with_it(pserver: Server, pc: httpx.Client) -> None:
    mark = f"{600 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 1000}"
    deploy(pc, tool("long", f"setsid sleep {mark} & sleep {mark} & sleep {mark}"))
    resp = submit(pc, "long")
    job = resp.headers["location"].rsplit("/", 1)[1]
    job_pid = pserver.job_process(job, timeout=60)
    deadline = time.monotonic() + 30
    while len(marked(mark, sleeps=True)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    with open(f"/proc/{job_pid}/stat") as fh:
        worker = int(fh.read().rsplit(")", 1)[-1].split()[1])
    tree = descendants(worker)  # the job's process and its tools, the callback dispatcher, the step server
    assert job_pid in tree and len(tree) >= 3 and len(marked(mark, sleeps=True)) == 3
    sandboxed = pserver.env["OGCFLOW_SANDBOX"] == "true"
    # without the sandbox and without job control groups, a setsid child (a session of its own) outlives a
    # killed worker: the known limit; with a job group, the next worker ends it as it sweeps the dead one's
    grouped = not isinstance(detect_cgroups(), str)
    escaped = set() if sandboxed or grouped else {p for p in marked(mark, sleeps=True) if os.getpgid(p) == p}
    os.kill(worker, signal.SIGKILL)
    try:
        assert gone(worker, *(tree - escaped), timeout=30), [p for p in tree - escaped if os.path.exists(f"/proc/{p}")]
        info = wait_for(pc, resp.headers["location"], timeout=60)  # serve's new worker fails it as lost
        assert info["status"] == "failed", info
        assert set(settle(mark, sleeps=True)) == escaped
    finally:
        for pid in marked(mark):
            os.kill(pid, signal.SIGKILL)


def test_command_lines_built_at_once_each_make_their_directories(tmp_path: Path) -> None:
    """cwltool builds the command lines of parallel steps (a scatter) from several threads: each must make the
    directories leading to its binds traversable itself (bwrap would make them 0700, and the tool's user could
    not reach its interpreter: 'Permission denied', seen with a checkout under /tmp)."""
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from ogcflow.packages.sandbox import Limits, Sandbox
    from ogcflow.settings import Settings

    code = tmp_path / "checkout" / "src" / "pkg"
    code.mkdir(parents=True)
    (code / "launch.py").write_text("print('launched')\n")
    job = tmp_path / "job"
    job.mkdir()
    box = Sandbox(settings=Settings().sandbox, root=job, readable=[str(code), sys.prefix, sys.base_prefix])
    outs = []
    for i in range(16):
        (job / f"out{i}").mkdir()
        outs.append(str(job / f"out{i}"))

    def line(out: str) -> list[str]:
        return box.command_prefix([out], out, "deny", Limits(60, 1000, 100, 100, 100))

    with ThreadPoolExecutor(8) as pool:
        lines = list(pool.map(line, outs))
    src = str(tmp_path / "checkout" / "src")
    for words in lines:
        assert src in words and words[words.index(src) - 1] == "--dir", words
    run = subprocess.run([*lines[-1], sys.executable, "-S", "-E", str(code / "launch.py")], capture_output=True,
                         text=True, timeout=60)
    assert run.stdout.strip() == "launched", run.stderr


def test_offline_commands_get_no_network_whatever_their_tool_declares(tmp_path: Path) -> None:
    """A plugin's commands that fetch elsewhere (the EO steps, through their step server) get no network in
    their sandbox; any other command of a tool with NetworkAccess gets the policed one."""
    from ogcflow.packages.sandbox import Sandbox
    from ogcflow.settings import Settings

    settings = Settings()
    launcher = ["/usr/bin/python3", "-S", "-E", "/opt/steps/launch.py", "crop"]
    box = Sandbox(settings=settings.sandbox, root=tmp_path, policy=settings.network, offline_commands=[launcher])
    assert box.network_mode(True, [*launcher, "--band", "green"]) == "deny"
    assert box.network_mode(True, launcher[:-1] + ["otsu"]) == "policy"  # another step: not this command
    assert box.network_mode(True, ["curl", "https://example.com/"]) == "policy"
    assert box.network_mode(True, launcher[:2]) == "policy"  # a prefix of it is not the command
    assert box.network_mode(False, ["curl"]) == "deny"


def test_the_commands_of_a_job_started_at_once_share_its_download_budget(tmp_path: Path) -> None:
    """cwltool starts the commands of a scatter from several threads: they all count against one budget."""
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from ogcflow.packages.sandbox import Sandbox
    from ogcflow.settings import Settings

    settings = Settings()
    box = Sandbox(settings=settings.sandbox, root=tmp_path, policy=settings.network, download_max_bytes=1000)
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave as much as they can
    try:
        with ThreadPoolExecutor(8) as pool:
            nets = list(pool.map(lambda _: box.tool_network(), range(8)))
    finally:
        sys.setswitchinterval(switch)
        box.close()
    assert len({id(net.proxy.budget) for net in nets}) == 1 and nets[0].proxy.budget is not None

