"""Client input never makes a 500: out-of-range query parameters, bodies nested too deeply, packages whose
reference the network policy refuses (each a clear 400, and the connection stays usable)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.ogc_schemas import validate_exception
from tests.server import Server

TOKEN = "hardening-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def hc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    env = {"OGCFLOW_ADMIN_TOKEN": TOKEN, "OGCFLOW_ALLOW_PRIVATE_URLS": "false"}
    srv = Server(tmp_path_factory.mktemp("hardening"), env=env).start()
    with httpx.Client(base_url=srv.url, timeout=30) as c:
        yield c
    srv.stop()


@pytest.mark.parametrize("query", [
    {"offset": "7114794433130258235392"}, {"limit": "99999999999999999999"}, {"minDuration": "1125899906842623"},
    {"maxDuration": "-1"}, {"offset": "-3"}, {"limit": "0"}, {"minDuration": "ten"},
])
def test_out_of_range_query_parameters_are_400(hc: httpx.Client, query: dict[str, str]) -> None:
    doc = validate_exception(hc.get("/jobs", params=query), 400)
    assert next(iter(query)) in doc["detail"]
    assert hc.get("/jobs").status_code == 200  # the same keep-alive connection goes on


def test_large_but_valid_durations_are_no_filter_at_all(hc: httpx.Client) -> None:
    assert hc.get("/jobs", params={"minDuration": "0", "maxDuration": str(10 ** 12)}).status_code == 200
    assert hc.get("/processes", params={"offset": str(10 ** 15)}).json()["processes"] == []


def test_a_deeply_nested_request_body_is_400(hc: httpx.Client) -> None:
    deep: object = 1
    for _ in range(300):
        deep = {"a": deep}
    doc = validate_exception(hc.post("/processes/echo/execution", json={"inputs": {"complexObjectInput": deep}}),
                             400)
    assert "nested" in doc["detail"]
    assert hc.get("/jobs").json()["jobs"] == []  # no job for it


def test_a_deeply_nested_package_is_400(hc: httpx.Client) -> None:
    text = "cwlVersion: v1.2\nclass: CommandLineTool\nid: deep\nhints: " + "[" * 500 + "]" * 500 + "\n"
    resp = hc.post("/processes", content=text, headers={"Content-Type": "application/cwl+yaml", **AUTH})
    doc = validate_exception(resp, 400)
    assert "nested too deeply" in doc["detail"]


def test_a_package_by_reference_the_policy_refuses_is_400(hc: httpx.Client) -> None:
    apppkg = '{"executionUnit": {"href": "http://127.0.0.1:9/package.cwl", "type": "application/cwl+yaml"}}'
    resp = hc.post("/processes", content=apppkg, headers={"Content-Type": "application/ogcapppkg+json", **AUTH})
    doc = validate_exception(resp, 400)
    assert "cannot be read" in doc["detail"] and "private" in doc["detail"]
