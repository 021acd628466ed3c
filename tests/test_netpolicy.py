"""Every outbound read policed: redirects checked hop by hop (httpx and GDAL's own), connections pinned to
the checked address, local paths only under the operator's roots, deploy-time $include/$import refused."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ogcflow import netpolicy
from ogcflow.eo import steps
from ogcflow.eo.config import StepConfig
from ogcflow.eo.dataserver import DataServer, RangeHandler
from ogcflow.eo.errors import StepError
from ogcflow.netpolicy import URLRefused, fetch
from ogcflow.settings import Settings
from tests.conftest import Site
from tests.eo_support import Scenes
from tests.ogc_schemas import validate_exception
from tests.server import Server

AOI = "-121.43,40.27,-121.33,40.34"


@pytest.fixture
def secret() -> Iterator[Site]:
    site = Site()
    site.routes["/secret"] = (200, {"Content-Type": "text/plain"}, b"internal secret")
    yield site
    site.stop()


@pytest.fixture
def front() -> Iterator[Site]:
    site = Site()
    yield site
    site.stop()


def test_redirects_are_followed_hop_by_hop_and_checked(front: Site, secret: Site) -> None:
    policy = Settings(allowed_hosts=["localhost"]).network
    base = f"http://localhost:{front.port}"
    front.routes["/data"] = (200, {"Content-Type": "text/plain"}, b"public data")
    front.routes["/moved"] = (302, {"Location": "/data"}, b"")
    front.routes["/evil"] = (302, {"Location": f"http://127.0.0.1:{secret.port}/secret"}, b"")
    front.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    assert fetch(base + "/moved", policy) == (b"public data", "text/plain")
    with pytest.raises(URLRefused, match="redirected to a URL the policy refuses.*loopback"):
        fetch(base + "/evil", policy)
    with pytest.raises(netpolicy.InputFetchError, match="more than 5 redirects"):
        fetch(base + "/loop", policy)
    assert secret.hits == []
    # the same redirect reaches the target when the operator allows it: the test can tell
    assert fetch(base + "/evil", Settings(allowed_hosts=["localhost", "127.0.0.1"]).network)[0] == b"internal secret"
    assert secret.hits == ["/secret"]


@pytest.fixture
def rebinding(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Site, Site]]:
    """'rebind.test' resolves to 127.0.0.2 (which plays a public address) the first time it is looked up and
    to 127.0.0.1 (the internal service, same port) every time after: a DNS-rebinding attacker's name."""
    public = Site("127.0.0.2")
    internal = Site("127.0.0.1", public.port)
    public.routes["/x"] = (200, {"Content-Type": "text/plain"}, b"public")
    internal.routes["/x"] = (200, {"Content-Type": "text/plain"}, b"internal")
    real = socket.getaddrinfo
    answers = ["127.0.0.2"]

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            address = answers.pop() if answers else "127.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(netpolicy, "_refused_address", lambda addr: str(addr) != "127.0.0.2")
    yield public, internal
    public.stop()
    internal.stop()


def test_connections_go_to_the_checked_address(rebinding: tuple[Site, Site]) -> None:
    public, internal = rebinding
    body, _ = fetch(f"http://rebind.test:{public.port}/x", Settings().network)
    assert body == b"public" and public.hits == ["/x"] and internal.hits == []
    with pytest.raises(URLRefused, match="loopback"):  # looked up again: now it is the internal address
        fetch(f"http://rebind.test:{public.port}/x", Settings().network)
    assert internal.hits == []


def test_the_policing_proxy_pins_too(rebinding: tuple[Site, Site]) -> None:
    public, internal = rebinding
    proxy = netpolicy.PolicingProxy(Settings().network)
    try:
        with httpx.Client(proxy=proxy.url, trust_env=False, timeout=10) as client:
            assert client.get(f"http://rebind.test:{public.port}/x").text == "public"
            refused = client.get(f"http://rebind.test:{public.port}/x")
            assert refused.status_code == 403 and "loopback" in refused.text
            assert client.get(f"http://127.0.0.1:{internal.port}/x").status_code == 403
    finally:
        proxy.close()
    assert public.hits == ["/x"] and internal.hits == []
    assert len(proxy.refused) == 2


class _Redirects(RangeHandler):
    """Serves the scene files, but answers every .tif request with a redirect to ``target``."""

    target = ""

    def _serve(self, head: bool) -> None:
        if self.path.endswith(".tif"):
            self.send_response(302)
            self.send_header("Location", self.target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super()._serve(head)


class _Counting(RangeHandler):
    hits: list[str] = []

    def _serve(self, head: bool) -> None:
        _Counting.hits.append(self.path)
        super()._serve(head)


def test_gdal_redirects_are_checked_hop_by_hop(scenes: Scenes, tmp_path: Path) -> None:
    """An allowed host whose asset answers 302 to a loopback service: GDAL (through the policing proxy)
    does not reach it; allowed, the same read works (so the test can tell)."""
    internal = DataServer(scenes.root, handler=_Counting).start()
    _Redirects.target = internal.url
    served = tmp_path / "served"
    served.mkdir()
    key_path = scenes.index["items"]["A"]["path"]
    item = json.loads((scenes.root / key_path).read_text())
    allowed = DataServer(served, handler=_Redirects).start()
    try:
        front = allowed.url.replace("127.0.0.1", "localhost")
        for asset in item["assets"].values():
            asset["href"] = f"{front}/{item['id']}/{Path(asset['href']).name}"
        (served / item["id"]).mkdir(parents=True)
        (served / "item.json").write_text(json.dumps(item))
        for asset in item["assets"].values():  # the same item by the other name of the host, for the read that
            asset["href"] = asset["href"].replace(front, allowed.url)  # works: GDAL keeps a refused URL's failure
        (served / "item-again.json").write_text(json.dumps(item))
        _Counting.hits = []
        strict = StepConfig(data_dir=tmp_path, allowed_hosts=["localhost"])
        with pytest.raises(StepError, match="network policy refused it.*loopback"):
            steps.crop(front + "/item.json", AOI, "EPSG:4326", "green", tmp_path, strict)
        assert _Counting.hits == []
        netpolicy._PROXIES.clear()  # a new policy: a new proxy (steps run one policy per process)
        trusting = StepConfig(data_dir=tmp_path, allowed_hosts=["localhost", "127.0.0.1"])
        assert steps.crop(allowed.url + "/item-again.json", AOI, "EPSG:4326", "green", tmp_path, trusting).is_file()
        assert _Counting.hits
    finally:
        netpolicy._PROXIES.clear()
        allowed.stop()
        internal.stop()


def test_local_paths_only_under_the_roots(tmp_path: Path) -> None:
    (tmp_path / "root" / "d").mkdir(parents=True)
    (tmp_path / "root" / "d" / "f.txt").write_text("x")
    (tmp_path / "root" / "escape").symlink_to("/etc")
    roots = [tmp_path / "root"]
    assert netpolicy.local_path((tmp_path / "root" / "d").as_uri(), roots, "X") == (tmp_path / "root" / "d")
    for ref in ("file:///etc", "/etc/passwd", str(tmp_path / "root" / "escape" / "passwd"),
                (tmp_path / "root" / ".." / "root2").as_uri(), "file://other-host/etc"):
        with pytest.raises(URLRefused):
            netpolicy.local_path(ref, roots, "X")
    with pytest.raises(URLRefused, match="none set"):
        netpolicy.local_path(str(tmp_path / "root" / "d"), [], "X")


# -- over HTTP: deploy-time reads and File/Directory inputs -------------------------------------------------

TOKEN = "policy-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CWL = {"Content-Type": "application/cwl+yaml", **AUTH}

LISTING = """
cwlVersion: v1.2
class: CommandLineTool
id: list-dir
baseCommand: [ls]
stdout: listing.txt
inputs:
  d: {type: Directory, inputBinding: {position: 1}}
outputs:
  listing: {type: stdout}
"""


@pytest.fixture(scope="module")
def pserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("policy")
    root = tmp / "shared-data"
    (root / "inside").mkdir(parents=True)
    (root / "inside" / "hello.txt").write_text("hi")
    srv = Server(tmp / "srv", env={"OGCFLOW_ADMIN_TOKEN": TOKEN, "OGCFLOW_ALLOW_PRIVATE_URLS": "false",
                                   "OGCFLOW_LOCAL_ROOTS": json.dumps([str(root)])}).start()
    yield srv, root
    srv.stop()


@pytest.fixture(scope="module")
def pc(pserver: tuple[Server, Path]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pserver[0].url, timeout=60) as c:
        yield c


@pytest.mark.parametrize("directive", [
    "$include: /etc/passwd", "$include: /proc/self/environ", "$import: /etc/hostname",
    "$include: http://127.0.0.1:9/secret", "$import: other.cwl", "$mixin: /etc/passwd",
])
def test_deploy_time_reads_of_other_documents_are_refused(pc: httpx.Client, directive: str) -> None:
    package = f"cwlVersion: v1.2\nclass: CommandLineTool\nid: sneaky\nbaseCommand: [echo]\ninputs: {{}}\n" \
              f"outputs: {{}}\ndoc:\n  {directive}\n"
    resp = pc.post("/processes", content=package, headers=CWL)
    doc = validate_exception(resp, 400)
    assert "self-contained" in doc["detail"]
    target = directive.split(" ", 1)[1]
    assert target not in resp.text and "root:" not in resp.text and TOKEN not in resp.text
    assert pc.get("/processes/sneaky").status_code == 404


def test_import_of_the_package_itself_is_allowed(pc: httpx.Client) -> None:
    package = ("cwlVersion: v1.2\n$graph:\n- class: CommandLineTool\n  id: self-ref\n  baseCommand: [echo]\n"
               "  inputs: {}\n  outputs: {}\n")
    assert pc.post("/processes", content=package, headers=CWL).status_code == 201
    assert pc.delete("/processes/self-ref", headers=AUTH).status_code == 204


def test_directory_and_file_inputs_only_under_the_local_roots(pc: httpx.Client,
                                                               pserver: tuple[Server, Path]) -> None:
    _srv, root = pserver
    assert pc.post("/processes", content=LISTING, headers=CWL).status_code == 201
    try:
        for ref in ("file:///etc", "/etc", (root / ".." / "srv").as_uri(), "file:///proc/self"):
            resp = pc.post("/processes/list-dir/execution", json={"inputs": {"d": ref}})
            doc = validate_exception(resp, 400)
            assert "OGCFLOW_LOCAL_ROOTS" in doc["detail"], ref
            assert "passwd" not in resp.text
        resp = pc.post("/processes/list-dir/execution", json={"inputs": {"d": (root / "inside").as_uri()}})
        assert resp.status_code == 200, resp.text
        assert resp.text.split() == ["hello.txt"]
        # a File input over http to loopback is refused at submission (OGCFLOW_ALLOW_PRIVATE_URLS=false)
        count = LISTING.replace("list-dir", "cat-file").replace("Directory", "File").replace("[ls]", "[cat]")
        assert pc.post("/processes", content=count, headers=CWL).status_code == 201
        doc = validate_exception(pc.post("/processes/cat-file/execution",
                                         json={"inputs": {"d": "http://127.0.0.1:9/x"}}), 400)
        assert "loopback" in doc["detail"]
        doc = validate_exception(pc.post("/processes/cat-file/execution",
                                         json={"inputs": {"d": "file:///etc/passwd"}}), 400)
        assert "OGCFLOW_LOCAL_ROOTS" in doc["detail"]
    finally:
        pc.delete("/processes/list-dir", headers=AUTH)
        pc.delete("/processes/cat-file", headers=AUTH)


def test_schemas_of_a_package_are_not_fetched_when_it_runs(pc: httpx.Client, secret: Site) -> None:
    """cwltool fetches a package's $schemas when it loads it: the package runs without them."""
    package = (f"cwlVersion: v1.2\nclass: CommandLineTool\nid: with-schemas\n"
               f"$namespaces: {{s: https://schema.org/}}\n$schemas: [http://127.0.0.1:{secret.port}/secret]\n"
               "baseCommand: [echo, hi]\nstdout: out.txt\ninputs: {}\noutputs:\n  out: {type: stdout}\n")
    assert pc.post("/processes", content=package, headers=CWL).status_code == 201
    try:
        resp = pc.post("/processes/with-schemas/execution", json={"inputs": {}})
        assert resp.status_code == 200 and resp.text.strip() == "hi", resp.text
        assert "$schemas" in pc.get("/processes/with-schemas/package").text  # kept as deployed
        assert secret.hits == []
    finally:
        pc.delete("/processes/with-schemas", headers=AUTH)


def _connect(proxy: netpolicy.PolicingProxy, target: str) -> tuple[bytes, socket.socket]:
    conn = socket.create_connection(("127.0.0.1", int(proxy.url.rsplit(":", 1)[1])), timeout=10)
    conn.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    return conn.recv(65536), conn


def test_the_proxy_checks_connect_tunnels(secret: Site) -> None:
    """https through the proxy is a CONNECT tunnel: its target is checked and pinned like any URL."""
    strict = netpolicy.PolicingProxy(Settings().network)
    trusting = netpolicy.PolicingProxy(Settings(allowed_hosts=["127.0.0.1"]).network)
    try:
        answer, conn = _connect(strict, f"127.0.0.1:{secret.port}")
        conn.close()
        assert answer.startswith(b"HTTP/1.1 403") and b"loopback" in answer
        assert secret.hits == []
        answer, conn = _connect(trusting, f"127.0.0.1:{secret.port}")
        assert answer.startswith(b"HTTP/1.1 200")
        with conn:
            conn.sendall(b"GET /secret HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            got = b""
            while chunk := conn.recv(65536):
                got += chunk
        assert got.endswith(b"internal secret") and secret.hits == ["/secret"]
    finally:
        strict.close()
        trusting.close()


def _read_all(conn: socket.socket) -> bytes:
    got = b""
    try:
        while chunk := conn.recv(65536):
            got += chunk
    except ConnectionResetError:  # a cut may be a reset; a timeout is not a cut
        pass
    return got


def test_a_download_budget_cuts_every_open_connection_and_refuses_later_ones(secret: Site) -> None:
    """Two proxies on one budget (a job's commands): the tunnel that goes over it is cut, so is the other
    one open at the time, and every later connection is refused with a 403 naming the cap."""
    limit = 100_000
    secret.routes["/big"] = (200, {"Content-Type": "application/octet-stream"}, b"b" * (2 * limit))
    budget = netpolicy.DownloadBudget(limit)
    policy = Settings(allowed_hosts=["127.0.0.1"]).network
    first, second = (netpolicy.PolicingProxy(policy, budget=budget) for _ in range(2))
    try:
        answer, idle = _connect(first, f"127.0.0.1:{secret.port}")  # open, nothing asked yet
        assert answer.startswith(b"HTTP/1.1 200")
        answer, busy = _connect(second, f"127.0.0.1:{secret.port}")
        assert answer.startswith(b"HTTP/1.1 200")
        with idle, busy:
            busy.sendall(b"GET /big HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            assert len(_read_all(busy)) <= limit  # cut before the chunk that would have gone over
            assert _read_all(idle) == b""  # cut too
        answer, conn = _connect(first, f"127.0.0.1:{secret.port}")
        conn.close()
        assert answer.startswith(b"HTTP/1.1 403") and f"more than {limit} bytes".encode() in answer
        assert secret.hits == ["/big"]
        assert budget.exhausted and budget.received > limit
        reason = budget.reason(f"https://127.0.0.1:{secret.port}/")
        assert first.refused == [reason, reason] and second.refused == [reason]  # the cut, then the 403
    finally:
        first.close()
        second.close()
