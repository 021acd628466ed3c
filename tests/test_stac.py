"""The staged-out STAC catalog as STAC tools see it: a real server with results in S3 runs water-bodies on two
scenes in a namespace; the catalog is then validated with pystac against the core and extension schemas
(vendored, offline), and loaded over HTTP the way STAC Browser loads it: from the root URL through the API,
following relative links, with an Origin header, reading the CORS headers. The API's HEAD and OPTIONS are
checked on every GET resource of its OpenAPI document."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import httpx
import pystac
import pytest
from pystac.errors import STACValidationError
from rasterio.io import MemoryFile

from tests.conftest import wait_for
from tests.eo_support import Scenes
from tests.server import Server
from tests.stac_support import OfflineValidator, validate

NS = "/acme/ogc-api"
ORIGIN = "https://radiantearth.github.io"  # where STAC Browser is deployed
STORAGE_EXT = "https://stac-extensions.github.io/storage/v2.0.0/schema.json"
ALTERNATE_EXT = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
AOI = "-121.43,40.27,-121.33,40.34"


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory, s3: dict[str, str],
        scenes: Scenes) -> Iterator[tuple[Server, str, str]]:
    bucket = "stac-" + uuid.uuid4().hex[:10]
    srv = Server(tmp_path_factory.mktemp("stac"), env={"OGCFLOW_RESULTS_URL": f"s3://{bucket}"}).start()
    try:
        with httpx.Client(base_url=srv.url + NS, timeout=60) as c:
            inputs = {"aoi": AOI, "epsg": "EPSG:4326", "bands": ["green", "nir08"],
                      "stac_items": [scenes.item_url("A"), scenes.item_url("B")]}
            resp = c.post("/processes/water-bodies/execution", json={"inputs": inputs},
                          headers={"Prefer": "respond-async"})
            assert resp.status_code == 201, resp.text
            status = wait_for(c, resp.headers["location"], timeout=120)
            assert status["status"] == "successful", status
        yield srv, bucket, status["jobID"]
    finally:
        srv.stop()


def _root(srv: Server, job_id: str) -> str:
    return f"{srv.url}{NS}/jobs/{job_id}/files/catalog.json"


def _crawl(root: str) -> dict[str, dict[str, Any]]:
    """Every document of the catalog, as STAC Browser reaches them: the root URL, then each child and item
    link resolved against the URL of the document holding it; every response checked for CORS."""
    docs: dict[str, dict[str, Any]] = {}
    todo = [root]
    with httpx.Client(timeout=30, headers={"Origin": ORIGIN, "Accept": "application/json"}) as c:
        while todo:
            url = todo.pop(0)
            resp = c.get(url)
            assert resp.status_code == 200, (url, resp.text)
            assert resp.headers["access-control-allow-origin"] == "*", url
            assert resp.headers["content-type"].startswith("application/json"), url
            doc = resp.json()
            docs[url] = doc
            for link in doc["links"]:
                assert link["rel"] != "self", (url, link)  # self-contained: no absolute self links
                if link["rel"] in ("child", "item", "root", "parent", "collection"):
                    assert "://" not in link["href"], (url, link)  # relative, so it resolves wherever it is read
                target = urljoin(url, link["href"])
                if link["rel"] in ("child", "item") and target not in docs and target not in todo:
                    todo.append(target)
                if link["rel"] in ("root", "parent", "collection"):
                    assert target.startswith(root.rsplit("/", 1)[0] + "/"), (url, link)
    return docs


def test_the_catalog_validates_against_the_stac_schemas(job: tuple[Server, str, str], scenes: Scenes) -> None:
    srv, bucket, job_id = job
    docs = _crawl(_root(srv, job_id))
    kinds = sorted(doc["type"] for doc in docs.values())
    assert kinds == ["Catalog", "Collection", "Feature", "Feature"]
    used: set[str] = set()
    for url, doc in docs.items():
        used |= set(validate(doc, href=url))
    assert {STORAGE_EXT, ALTERNATE_EXT} <= used  # the extensions' own schemas were applied, not skipped
    # the results document's FeatureCollection (absolute hrefs, as notebooks read it) validates too
    with httpx.Client(base_url=srv.url + NS, timeout=30) as c:
        fc = c.get(f"/jobs/{job_id}/results").json()["stac_catalog"]["value"]
    for feature in fc["features"]:
        assert STORAGE_EXT in validate(feature)
    # pystac opens the catalog from its URL, follows the relative links itself and validates every object
    validator = OfflineValidator()
    pystac.validation.set_validator(validator)
    try:
        catalog = pystac.Catalog.from_file(_root(srv, job_id))
        assert catalog.validate_all() == 2  # the catalog, the collection and the two items they count
        items = list(catalog.get_items(recursive=True))
        assert sorted(i.id for i in items) == sorted(scenes.item_id(k) for k in "AB")
        assert all(i.collection_id == job_id for i in items)
    finally:
        pystac.validation.set_validator(pystac.validation.JsonSchemaSTACValidator())
    # and the validation can fail: a storage scheme whose platform is no URL is refused by the v2.0.0 schema
    item = next(doc for doc in docs.values() if doc["type"] == "Feature")
    broken = json.loads(json.dumps(item))
    next(iter(broken["properties"]["storage:schemes"].values()))["platform"] = "seaweedfs"
    with pytest.raises(STACValidationError, match="storage"):
        validate(broken)


def test_stac_browser_loads_the_catalog_over_http(job: tuple[Server, str, str], scenes: Scenes) -> None:
    srv, bucket, job_id = job
    root = _root(srv, job_id)
    docs = _crawl(root)
    items = {doc["id"]: (url, doc) for url, doc in docs.items() if doc["type"] == "Feature"}
    assert set(items) == {scenes.item_id(k) for k in "AB"}
    with httpx.Client(timeout=30, headers={"Origin": ORIGIN}) as c:
        # STAC Browser's preflight for a request with headers of its own (e.g. Authorization) is allowed...
        pre = c.options(root, headers={"Access-Control-Request-Method": "GET",
                                       "Access-Control-Request-Headers": "authorization, accept"})
        assert pre.status_code == 204
        assert pre.headers["access-control-allow-origin"] == "*"
        assert "GET" in pre.headers["access-control-allow-methods"]
        assert pre.headers["access-control-allow-headers"] == "authorization, accept"
        # ...a page that would write (POST) is not, by default
        write = c.options(f"{srv.url}{NS}/processes/water-bodies/execution",
                          headers={"Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in write.headers
        for key, (url, item) in zip("AB", (items[scenes.item_id("A")], items[scenes.item_id("B")]), strict=True):
            derived = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
            assert derived == [scenes.item_url(key)]  # back to the input scene
            assert item["properties"]["storage:schemes"]["ogcflow"] == {
                "type": "custom-s3", "platform": os.environ["AWS_ENDPOINT_URL"].rstrip("/"), "bucket": bucket,
                "region": os.environ["AWS_DEFAULT_REGION"], "requester_pays": False}
            assert set(item["assets"]) == {"data", "thumbnail"}
            for asset in item["assets"].values():
                href = urljoin(url, asset["href"])  # what STAC Browser downloads
                assert href.startswith(f"{srv.url}{NS}/jobs/{job_id}/files/{job_id}/{item['id']}/")
                assert asset["alternate"]["http"]["href"] == href  # the same URL for clients reading the bucket
                assert asset["alternate"]["s3"]["href"] == f"s3://{bucket}/{job_id}/{href.split('/files/', 1)[1]}"
                assert asset["alternate"]["s3"]["storage:refs"] == ["ogcflow"]
                head = c.head(href)
                assert head.status_code == 200 and head.content == b"", href
                assert head.headers["access-control-allow-origin"] == "*"
                assert int(head.headers["content-length"]) > 0
            thumbnail = item["assets"]["thumbnail"]
            assert thumbnail["roles"] == ["thumbnail"] and thumbnail["type"] == "image/png"
            png = c.get(urljoin(url, thumbnail["href"]))
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert png.headers["access-control-allow-origin"] == "*"
            _check_quicklook(png.content)
            mask = c.get(urljoin(url, item["assets"]["data"]["href"]))
            assert mask.status_code == 200 and mask.content[:4] in (b"II*\x00", b"MM\x00*")  # the GeoTIFF


def _check_quicklook(data: bytes) -> None:
    """A small RGBA PNG: water (the mask's 1s) in blue, the rest transparent."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    assert data.startswith(b"\x89PNG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(data) as mem, mem.open() as png:
            assert png.count == 4 and max(png.width, png.height) <= 256
            rgba = png.read()
    opaque = rgba[3] == 255
    assert 0.05 < opaque.mean() < 0.5  # some water, mostly not
    assert (rgba[3][~opaque] == 0).all()
    assert (rgba[2][opaque] == 255).all() and (rgba[0][opaque] < 50).all()  # blue


def _concrete(path: str, job_id: str) -> str:
    values = {"processId": "water-bodies", "jobId": job_id, "outputId": "stac_catalog",
              "name": "catalog.json"}
    return re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], path)


def test_head_and_options_on_every_get_resource(job: tuple[Server, str, str]) -> None:
    srv, _bucket, job_id = job
    with httpx.Client(base_url=srv.url + NS, timeout=30) as c:
        api = c.get("/api").json()
        paths = {p: ops for p, ops in api["paths"].items() if "get" in ops}
        assert {"/", "/processes", "/jobs/{jobId}", "/jobs/{jobId}/files/{name}"} <= set(paths)
        for template, ops in paths.items():
            path = _concrete(template, job_id)
            get = c.get(path)
            assert get.status_code == 200, (path, get.text)
            head = c.head(path)
            assert head.status_code == 200 and head.content == b"", path
            assert head.headers["content-type"] == get.headers["content-type"], path
            if "content-length" in get.headers:
                assert head.headers["content-length"] == get.headers["content-length"], path
            options = c.options(path)
            assert options.status_code == 204, path
            expected = [m.upper() for m in ("get", "head", "post", "put", "patch", "delete")
                        if m in ops or m == "head"] + ["OPTIONS"]
            assert options.headers["allow"] == ", ".join(expected), path
        # a method a resource does not have: 405 naming every method of the path, not those of one route
        wrong = c.patch(f"/jobs/{job_id}")
        assert wrong.status_code == 405 and wrong.json()["type"].endswith("method-not-allowed")
        assert wrong.headers["allow"] == "GET, HEAD, DELETE, OPTIONS"
        assert c.get("/processes/water-bodies/execution").headers["allow"] == "POST, OPTIONS"
        assert c.options("/no/such/resource").status_code == 404
    for path in ("/health", "/static/style.css"):  # outside the API document
        assert httpx.head(srv.url + path).status_code == 200
        assert httpx.options(srv.url + path).headers["allow"] == "GET, HEAD, OPTIONS"


def test_cors_origins_can_be_listed(tmp_path_factory: pytest.TempPathFactory) -> None:
    """With OGCFLOW_CORS_ORIGINS listing origins, only they are allowed, named in the answer (Vary: Origin);
    OGCFLOW_CORS_METHODS may let them write."""
    srv = Server(tmp_path_factory.mktemp("cors"), env={"OGCFLOW_CORS_ORIGINS": '["https://browser.example"]',
                                                       "OGCFLOW_CORS_METHODS": '["GET", "POST"]',
                                                       "OGCFLOW_DEFAULT_PACKAGES": "[]"}).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as c:
            mine = c.get("/processes", headers={"Origin": "https://browser.example"})
            assert mine.headers["access-control-allow-origin"] == "https://browser.example"
            assert mine.headers["vary"] == "Origin"
            other = c.get("/processes", headers={"Origin": "https://elsewhere.example"})
            assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
            pre = c.options("/processes/hello-world/execution", headers={"Origin": "https://browser.example",
                                                                  "Access-Control-Request-Method": "POST"})
            assert pre.status_code == 204 and "POST" in pre.headers["access-control-allow-methods"]
            run = c.post("/processes/hello-world/execution", json={"inputs": {"name": "CORS"}},
                         headers={"Origin": "https://browser.example"})
            assert run.status_code == 200 and run.headers["access-control-allow-origin"] == "https://browser.example"
            assert "Location" in run.headers["access-control-expose-headers"]
    finally:
        srv.stop()
