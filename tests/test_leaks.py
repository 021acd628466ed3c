"""Nothing of the server leaks to clients: no server paths in job logs and file listings, no Python
tracebacks in failure messages, links and ``Location`` never built from an arbitrary ``Host`` header."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request

from ogcflow.api.deps import base_url
from tests.conftest import Recorder, wait_for
from tests.server import Server

TOKEN = "leak-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CWL = {"Content-Type": "application/cwl+yaml", **AUTH}

COUNT = """
cwlVersion: v1.2
class: CommandLineTool
id: count-lines
baseCommand: [wc, -l]
stdout: count.txt
inputs:
  text: {type: File, inputBinding: {position: 1}}
outputs:
  count: {type: stdout}
"""

BOOM = """
cwlVersion: v1.2
class: ExpressionTool
id: boom
requirements: {InlineJavascriptRequirement: {}}
inputs: {x: int}
outputs: {y: int}
expression: "${ throw new Error('kaboom ' + inputs.x); }"
"""


@pytest.fixture(scope="module")
def lserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("leaks"), env={"OGCFLOW_ADMIN_TOKEN": TOKEN}).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def lc(lserver: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lserver.url, timeout=60) as c:
        yield c


def _server_paths(srv: Server) -> list[str]:
    return [str(srv.data_dir.resolve()), "/tmp/", sys.prefix, sys.base_prefix, str(Path.home()), "file:/"]


def _shows(text: str, path: str) -> bool:
    """Whether ``text`` shows ``path`` as a path of its own (not as the tail of a placeholder's path)."""
    return re.search(rf"(?<![\w$/]){re.escape(path)}", text) is not None


def test_an_anonymous_job_log_shows_no_server_path(lc: httpx.Client, lserver: Server, recorder: Recorder) -> None:
    recorder.files["/lines.txt"] = (b"a\nb\nc\n", "text/plain")
    assert lc.post("/processes", content=COUNT, headers=CWL).status_code == 201
    resp = lc.post("/processes/count-lines/execution", json={"inputs": {"text": recorder.url + "/lines.txt"}},
                   headers={"Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    assert wait_for(lc, resp.headers["location"])["status"] == "successful"
    log = lc.get(resp.headers["location"] + "/logs")  # anonymous
    assert log.status_code == 200 and "wc" in log.text and "$JOB/cwl/tmp/" in log.text
    for path in _server_paths(lserver):
        assert not _shows(log.text, path), path


def test_file_listings_show_no_storage_path(lc: httpx.Client, lserver: Server) -> None:
    resp = lc.post("/processes/hello-world/execution", headers={"Prefer": "respond-async"},
                   json={"inputs": {"name": "files"}, "outputs": {"greeting": {"transmissionMode": "reference"}}})
    job = resp.json()["jobID"]
    assert wait_for(lc, resp.headers["location"])["status"] == "successful"
    listing = lc.get(f"/jobs/{job}/files")
    page = lc.get(f"/jobs/{job}/files", params={"f": "html"})
    assert [f["name"] for f in listing.json()["files"]] == ["greeting.txt"]
    assert lc.get(listing.json()["files"][0]["href"]).text == "Hello files!"
    for text in (listing.text, page.text, lc.get(f"/jobs/{job}", params={"f": "html"}).text):
        for path in _server_paths(lserver):
            assert not _shows(text, path), path


def test_an_expression_failure_says_why_without_a_traceback(lc: httpx.Client) -> None:
    assert lc.post("/processes", content=BOOM, headers=CWL).status_code == 201
    resp = lc.post("/processes/boom/execution", json={"inputs": {"x": 3}}, headers={"Prefer": "respond-async"})
    status = wait_for(lc, resp.headers["location"])
    assert status["status"] == "failed" and "kaboom 3" in status["message"]
    results = lc.get(resp.headers["location"] + "/results")
    for text in (status["message"], results.text):
        assert "Traceback" not in text and 'File "' not in text and "site-packages" not in text
        assert "JSONDecodeError" not in text and "/tmp/" not in text


def test_a_host_header_is_not_reflected(lc: httpx.Client, lserver: Server) -> None:
    evil = {"Host": "evil.example"}
    resp = lc.post("/processes/hello-world/execution", json={"inputs": {"name": "host"}},
                   headers={"Prefer": "respond-async", **evil})
    assert resp.status_code == 201
    assert resp.headers["location"].startswith(lserver.url + "/jobs/")
    assert "evil.example" not in resp.text
    for path in ("/", "/processes", "/jobs", "/processes/hello-world"):
        got = lc.get(path, headers=evil)
        assert got.status_code == 200 and "evil.example" not in got.text, path
    assert "evil.example" not in lc.get("/nowhere", headers={**evil, "Accept": "text/html"}).text


def _request(host: str, server: tuple[str, int] = ("10.0.0.5", 8080)) -> Request:
    return Request({"type": "http", "scheme": "http", "server": server, "path": "/", "root_path": "",
                    "query_string": b"", "headers": [(b"host", host.encode())]})


def test_links_come_from_the_public_url_or_a_trusted_host() -> None:
    assert base_url(_request("evil.example"), "https://ogc.example.org/api") == "https://ogc.example.org/api"
    assert base_url(_request("evil.example"), None) == "http://10.0.0.5:8080"
    trusted = frozenset({"ogc.example.org", "ogc2.example.org:8443"})
    assert base_url(_request("ogc.example.org:8080"), None, trusted) == "http://ogc.example.org:8080"
    assert base_url(_request("ogc2.example.org:8443"), None, trusted) == "http://ogc2.example.org:8443"
    assert base_url(_request("ogc2.example.org:9999"), None, trusted) == "http://10.0.0.5:8080"
    assert base_url(_request("anything.example"), None, frozenset({"*"})) == "http://anything.example"
    assert base_url(_request("evil.example", ("::1", 80)), None) == "http://[::1]"
