"""Landing page, conformance, API definition, process list and descriptions (OGC 18-062r2 §7.2-7.10)."""

from __future__ import annotations

import httpx
import pytest
from openapi_spec_validator import validate as validate_openapi

from tests.ogc_schemas import validate, validate_exception

P1 = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"


def test_landing_page_links(client: httpx.Client) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    doc = resp.json()
    validate(doc, "landingPage")
    rels = {link["rel"] for link in doc["links"]}
    for rel in ("self", "alternate", "service-desc", "service-doc",
                "http://www.opengis.net/def/rel/ogc/1.0/conformance",
                "http://www.opengis.net/def/rel/ogc/1.0/processes",
                "http://www.opengis.net/def/rel/ogc/1.0/job-list"):
        assert rel in rels, rel
    for link in doc["links"]:
        assert client.get(link["href"]).status_code == 200, link


def test_conformance_declares_every_part1_class(client: httpx.Client) -> None:
    doc = client.get("/conformance").json()
    validate(doc, "confClasses")
    for cls in ("core", "ogc-process-description", "json", "html", "oas30", "job-list", "dismiss", "callback"):
        assert P1 + cls in doc["conformsTo"], cls


def test_api_is_valid_openapi_30_with_each_process(client: httpx.Client) -> None:
    resp = client.get("/api", headers={"Accept": "application/vnd.oai.openapi+json;version=3.0"})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    doc = resp.json()
    assert doc["openapi"].startswith("3.0.")
    validate_openapi(doc)
    for pid in ("echo", "hello-world", "sleep"):
        post = doc["paths"][f"/processes/{pid}/execution"]["post"]
        ref = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/execute-{pid}"
    hello = doc["components"]["schemas"]["execute-hello-world"]
    assert hello["properties"]["inputs"]["required"] == ["name"]
    assert "greeting" in doc["components"]["schemas"]["results-hello-world"]["properties"]
    for path in ("/", "/conformance", "/api", "/processes", "/processes/{processId}", "/jobs",
                 "/jobs/{jobId}", "/jobs/{jobId}/results"):
        assert path in doc["paths"], path
    assert "delete" in doc["paths"]["/jobs/{jobId}"]


def test_api_html_serves_its_own_assets(client: httpx.Client) -> None:
    page = client.get("/api?f=html")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "cdn" not in page.text.lower()
    for asset in ("/swagger-ui/swagger-ui-bundle.js", "/swagger-ui/swagger-ui.css"):
        assert asset in page.text
        assert client.get(asset).status_code == 200


def test_process_list_and_paging(client: httpx.Client) -> None:
    doc = client.get("/processes").json()
    validate(doc, "processList")
    ids = [p["id"] for p in doc["processes"]]
    assert {"echo", "hello-world", "sleep"} <= set(ids)
    for summary in doc["processes"]:
        if summary["id"] in {"echo", "hello-world", "sleep", "water-bodies"}:  # built in, or server-wide
            assert summary["mutable"] is False
        assert "inputs" not in summary
    page1 = client.get("/processes", params={"limit": 1}).json()
    assert len(page1["processes"]) == 1
    nxt = [link["href"] for link in page1["links"] if link["rel"] == "next"]
    assert nxt, page1["links"]
    page2 = client.get(nxt[0]).json()
    assert page2["processes"][0]["id"] == ids[1]
    assert any(link["rel"] == "prev" for link in page2["links"])


@pytest.mark.parametrize("pid", ["echo", "hello-world", "sleep"])
def test_process_descriptions_fit_the_schema(client: httpx.Client, pid: str) -> None:
    doc = client.get(f"/processes/{pid}").json()
    validate(doc, "process")
    assert doc["id"] == pid
    assert set(doc["jobControlOptions"]) == {"sync-execute", "async-execute", "dismiss"}
    assert set(doc["outputTransmission"]) == {"value", "reference"}
    for inp in doc["inputs"].values():
        assert "schema" in inp and inp["schema"].get("type")
    rels = {link["rel"] for link in doc["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/execute" in rels


def test_echo_offers_every_kind_of_input(client: httpx.Client) -> None:
    inputs = client.get("/processes/echo").json()["inputs"]
    assert inputs["stringInput"]["schema"]["enum"]
    assert inputs["measureInput"]["schema"]["exclusiveMaximum"] is True
    assert inputs["dateInput"]["schema"]["format"] == "date-time"
    assert "bbox" in inputs["boundingBoxInput"]["schema"]["properties"]
    assert inputs["imageInput"]["schema"]["contentEncoding"] == "base64"
    assert inputs["arrayInput"]["schema"]["type"] == "array"


def test_unknown_process_and_path(client: httpx.Client) -> None:
    doc = validate_exception(client.get("/processes/nope"), 404)
    assert doc["type"] == "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/no-such-process"
    validate_exception(client.post("/processes/nope/execution", json={"inputs": {}}), 404)
    validate_exception(client.get("/no/such/path"), 404)
    validate_exception(client.put("/processes"), 405)


def test_format_negotiation(client: httpx.Client) -> None:
    assert "text/html" in client.get("/processes", headers={"Accept": "text/html"}).headers["content-type"]
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert "text/html" in client.get("/", headers={"Accept": browser}).headers["content-type"]
    assert client.get("/", headers={"Accept": "application/json"}).headers["content-type"] == "application/json"
    assert client.get("/?f=json", headers={"Accept": "text/html"}).headers["content-type"] == "application/json"
    validate_exception(client.get("/?f=xml"), 400)
