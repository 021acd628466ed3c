from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import Server


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("CI") and not (os.environ.get("OGCFLOW_TEST_POSTGRES_URL")
                                     and os.environ.get("PREFECT_API_URL")
                                     and os.environ.get("OGCFLOW_TEST_OIDC_ISSUER")):
        raise pytest.UsageError("CI runs the PostgreSQL, Prefect and OpenID Connect tests: start them with "
                                "scripts/test.sh")


#: the files that take longest, run first: ``scripts/test.sh`` runs the suite with ``pytest -n 2 --dist loadfile``,
#: which hands whole files to the workers in collection order, so a long file collected last would run alone
#: at the end (measured with ``--durations``; an approximate order is enough)
LONG_FILES = ["test_client_cli.py", "test_prefect_orchestration.py", "test_restart.py", "test_tenancy.py",
              "test_reliability.py", "test_deployment.py", "test_prefect_native.py", "test_prefect.py",
              "test_water_bodies.py"]


@pytest.hookimpl(trylast=True)  # after pytest's own ordering by parameter, which it keeps within each file
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def new_postgres_db() -> str:
    """A fresh database on the test PostgreSQL server (started by scripts/test.sh)."""
    import uuid

    import psycopg

    base = os.environ.get("OGCFLOW_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("PostgreSQL tests need OGCFLOW_TEST_POSTGRES_URL (scripts/test.sh starts a server)")
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return base.rsplit("/", 1)[0] + "/" + name


#: local engine on SQLite, local engine on PostgreSQL, Prefect engine (PostgreSQL store, Prefect server)
BACKENDS = ["sqlite", "postgresql", "prefect"]


def store_env(backend: str) -> dict[str, str]:
    """The settings of a server with a fresh store on ``backend`` (and its own Prefect work pool)."""
    if backend == "sqlite":
        return {}
    env = {"OGCFLOW_DATABASE_URL": new_postgres_db()}
    if backend == "prefect":
        import uuid

        if not os.environ.get("PREFECT_API_URL"):
            pytest.skip("Prefect engine tests need PREFECT_API_URL (scripts/test.sh starts a Prefect server)")
        env.update({"OGCFLOW_ENGINE": "prefect", "OGCFLOW_PREFECT_WORK_POOL": "test-" + uuid.uuid4().hex[:10]})
    return env


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def _servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """One server per backend for the whole session, started when first asked for. Under ``pytest -n`` a
    worker runs whole files, each file through every backend, so the parametrized fixture below changes
    backend at every file: the servers live here, not in it, and each starts once per worker."""
    servers: dict[str, Server] = {}
    yield servers
    for srv in servers.values():
        srv.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, backend: str, _servers: dict[str, Server]) -> Server:
    if backend not in _servers:
        _servers[backend] = Server(tmp_path_factory.mktemp("server"), env=store_env(backend)).start()
    return _servers[backend]


@pytest.fixture(scope="session")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def wait_for(client: httpx.Client, job_url: str, statuses: tuple[str, ...] = ("successful", "failed",
             "dismissed"), timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        info = client.get(job_url).json()
        if info["status"] in statuses or time.monotonic() > deadline:
            return info
        time.sleep(0.05)


class Site:
    """A real local HTTP server: ``routes`` path -> (status, headers, body); counts the requests it gets."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.hits: list[str] = []
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:  # noqa: N802
                site.hits.append(self.path)
                status, headers, body = site.routes.get(self.path, (404, {}, b"no"))
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Recorder:
    """A local HTTP server: serves files from a dict, records POSTs (callbacks)."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[bytes, str]] = {}
        self.posts: list[tuple[str, Any]] = []
        self.fail_first: dict[str, int] = {}
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                item = recorder.files.get(self.path)
                if item is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                body, media = item
                self.send_response(200)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                data = self.rfile.read(length)
                left = recorder.fail_first.get(self.path, 0)
                if left:
                    recorder.fail_first[self.path] = left - 1
                    recorder.posts.append((self.path + "#failed", None))
                    self.send_response(503)
                    self.end_headers()
                    return
                recorder.posts.append((self.path, json.loads(data)))
                self.send_response(204)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def received(self, path: str) -> list[Any]:
        return [body for p, body in self.posts if p == path]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="session")
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The synthetic Landsat scenes (items A, B, C, D, S), served over HTTP with byte ranges."""
    from ogcflow.eo.dataserver import DataServer
    from ogcflow.eo.scenes import generate
    from tests.eo_support import Scenes

    root = tmp_path_factory.mktemp("scenes")
    index = generate(root)
    server = DataServer(root).start()
    yield Scenes(root=root, index=index, url=server.url)
    server.stop()


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real S3 server: the one scripts/test.sh started (AWS_ENDPOINT_URL), or a SeaweedFS of our own."""
    from tests.eo_support import start_s3, stop_s3

    if os.environ.get("AWS_ENDPOINT_URL"):
        yield {}
        return
    directory = tmp_path_factory.mktemp("s3")
    values = start_s3(directory)
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)  # servers started later, rasterio and s3fs in this process all see it
    try:
        yield values
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        stop_s3(directory)


CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed (scripts/test.sh installs Debian's packages)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
