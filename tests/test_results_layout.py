"""Where results are kept: s3://results/{job}/... by default, or under a prefix per namespace when the operator
asks for it (OGCFLOW_RESULTS_NAMESPACE_PREFIX)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_for
from tests.server import Server

BY_REFERENCE = {"inputs": {"name": "layout"}, "outputs": {"greeting": {"transmissionMode": "reference"}}}


@pytest.fixture(scope="module", params=[False, True], ids=["flat", "per-namespace"])
def layout(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, bool]]:
    per_namespace = bool(request.param)
    env = {"OGCFLOW_RESULTS_NAMESPACE_PREFIX": "true"} if per_namespace else {}
    srv = Server(tmp_path_factory.mktemp("layout"), env=env).start()
    yield srv, per_namespace
    srv.stop()


def test_results_of_a_namespace_live_under_its_prefix_when_asked(layout: tuple[Server, bool]) -> None:
    srv, per_namespace = layout
    results = srv.data_dir / "results"
    with httpx.Client(base_url=srv.url + "/acme/ogc-api", timeout=30) as c:
        resp = c.post("/processes/hello-world/execution", json=BY_REFERENCE, headers={"Prefer": "respond-async"})
        assert resp.status_code == 201, resp.text
        job = resp.json()["jobID"]
        assert wait_for(c, resp.headers["location"])["status"] == "successful"
        files = c.get(f"/jobs/{job}/files").json()["files"]
        expected = (results / "acme" / job if per_namespace else results / job).resolve()
        assert {f["name"] for f in files} >= {"greeting.txt"}
        assert all("url" not in f for f in files)  # local storage: no server path is shown
        assert (expected / "greeting.txt").read_text() == "Hello layout!"
        assert c.get(f"/jobs/{job}/results/greeting").text == "Hello layout!"
        link = c.get(f"/jobs/{job}/results").json()["greeting"]
        assert c.get(link["href"]).text == "Hello layout!"
        assert not (results / job).exists() if per_namespace else not (results / "acme").exists()
        assert c.delete(f"/jobs/{job}").json()["status"] == "dismissed"
        assert not expected.exists() and not Path(expected / "greeting.txt").exists()
