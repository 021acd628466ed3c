"""Water-bodies end to end, as a user's notebook does it: a real server on each engine, results in a real S3
server (SeaweedFS), synthetic Landsat scenes served over HTTP, masks read back from S3 with rasterio."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import rasterio

from tests.conftest import store_env
from tests.eo_support import Scenes, iou
from tests.ogc_schemas import validate, validate_exception
from tests.server import Server, free_port

AOI = "-121.43,40.27,-121.33,40.34"
ASYNC = {"Prefer": "respond-async;return=representation"}


@pytest.fixture(scope="module", params=["sqlite", "prefect"])
def wb(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, s3: dict[str, str],
       scenes: Scenes) -> Iterator[tuple[Server, str]]:
    bucket = "wb-" + uuid.uuid4().hex[:10]
    env = {**store_env(request.param), "OGCFLOW_RESULTS_URL": f"s3://{bucket}"}
    srv = Server(tmp_path_factory.mktemp("wb"), env=env).start()
    yield srv, bucket
    srv.stop()


@pytest.fixture(scope="module")
def client(wb: tuple[Server, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=wb[0].url, timeout=60) as c:
        yield c


def _inputs(scenes: Scenes, keys: str, **extra: Any) -> dict[str, Any]:
    return {"aoi": AOI, "epsg": "EPSG:4326", "bands": ["green", "nir08"],
            "stac_items": [scenes.item_url(k) for k in keys], **extra}


def _run(client: httpx.Client, inputs: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
    resp = client.post("/processes/water-bodies/execution", json={"inputs": inputs}, headers=ASYNC)
    assert resp.status_code == 201, resp.text
    job_url = resp.headers["Location"]
    deadline = time.monotonic() + timeout
    while True:
        status = client.get(job_url).json()
        if status["status"] not in ("accepted", "running") or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def _s3_open(url: str) -> Any:
    return rasterio.open(url)  # GDAL's /vsis3/ with AWS_S3_ENDPOINT, AWS_HTTPS=NO, AWS_VIRTUAL_HOSTING=FALSE


def test_water_bodies_is_deployed_by_default(client: httpx.Client) -> None:
    desc = client.get("/processes/water-bodies").json()
    validate(desc, "process")
    assert set(desc["inputs"]) == {"aoi", "epsg", "stac_items", "bands"}
    assert desc["inputs"]["stac_items"]["schema"]["type"] == "array"
    assert desc["inputs"]["epsg"]["schema"]["default"] == "EPSG:4326"
    media = [alt["contentMediaType"] for alt in desc["outputs"]["stac_catalog"]["schema"]["oneOf"]]
    assert "application/geo+json" in media
    assert client.get("/processes/water-bodies/package").text.startswith("cwlVersion: v1.0")


def test_the_notebook_flow(client: httpx.Client, wb: tuple[Server, str], scenes: Scenes) -> None:
    srv, bucket = wb
    status = _run(client, _inputs(scenes, "ABC"))
    assert status["status"] == "successful", status
    job = status["jobID"]
    doc = client.get(f"/jobs/{job}/results").json()  # a results document: the notebook reads stac_catalog
    validate(doc, "results")
    assert doc["stac_catalog"]["mediaType"] == "application/geo+json"
    fc = doc["stac_catalog"]["value"]
    assert fc["type"] == "FeatureCollection" and fc["id"] == job
    assert [f["id"] for f in fc["features"]] == [scenes.item_id(k) for k in "ABC"]  # input order
    shapes = {}
    for key, feature in zip("ABC", fc["features"], strict=True):
        item = scenes.item_id(key)
        assert feature["collection"] == job
        asset = feature["assets"]["data"]
        assert asset["href"] == f"s3://{bucket}/{job}/{job}/{item}/otsu.tif"
        assert asset["roles"] == ["data", "visual"]
        # the storage extension v2.0.0: the bucket's scheme in the item, the asset refers to it
        assert "https://stac-extensions.github.io/storage/v2.0.0/schema.json" in feature["stac_extensions"]
        assert asset["storage:refs"] == ["ogcflow"]
        scheme = feature["properties"]["storage:schemes"]["ogcflow"]
        assert scheme == {"type": "custom-s3", "platform": os.environ["AWS_ENDPOINT_URL"].rstrip("/"),
                          "bucket": bucket, "region": os.environ["AWS_DEFAULT_REGION"], "requester_pays": False}
        # the mask and its quicklook through the API too
        api = asset["alternate"]["http"]["href"]
        assert api == f"{srv.url}/jobs/{job}/files/{job}/{item}/otsu.tif"
        assert feature["assets"]["thumbnail"]["href"] == f"s3://{bucket}/{job}/{job}/{item}/quicklook.png"
        assert client.get(feature["assets"]["thumbnail"]["alternate"]["http"]["href"]).content.startswith(b"\x89PNG")
        stats = asset["raster:bands"][0]["statistics"]
        assert stats["minimum"] == stats["maximum"] == 1 and 5 < stats["valid_percent"] < 40
        assert feature["properties"]["proj:epsg"] == 32610
        with _s3_open(asset["href"]) as src:
            assert (src.dtypes[0], src.nodata, src.profile["compress"]) == ("uint8", 0, "lzw")
            assert src.block_shapes == [(512, 512)] and src.crs.to_epsg() == 32610
            shapes[key] = src.shape
        assert iou(asset["href"], scenes.truth(key)) >= 0.95, key
    assert shapes["C"][1] < shapes["A"][1] * 0.6  # C covers the AOI in part
    import s3fs

    fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    assert fs.exists(f"{bucket}/{job}/catalog.json") and fs.exists(f"{bucket}/{job}/{job}/collection.json")
    item_a = scenes.item_id("A")
    assert fs.exists(f"{bucket}/{job}/{job}/{item_a}/{item_a}.json")

    # the same files over HTTP through the API, and on the job's HTML page
    files = client.get(f"/jobs/{job}/files").json()["files"]
    tif = next(f for f in files if f["url"] == fc["features"][0]["assets"]["data"]["href"])
    assert client.get(tif["href"]).content == fs.cat_file(tif["url"].removeprefix("s3://"))
    page = client.get(f"/jobs/{job}", params={"f": "html"}).text
    assert tif["href"] in page and tif["url"] in page
    log = client.get(f"/jobs/{job}/logs").text
    assert "node_otsu" in log
    # each step ran in a sandbox without a network of its own (its step process fetches, under the policy)
    ran = re.findall(r"INFO \[job [^\]]+\] \$JOB/\S+ \(([^)]*)\) ", log)
    assert len(ran) == 13 and set(ran) == {"sandboxed"}, ran  # 3 items: 4 steps each, then the catalog
    if srv.env.get("OGCFLOW_ENGINE") == "prefect":  # the CWL run's log is in the flow run's logs too
        link = next(ln["href"] for ln in status["links"] if "/runs/flow-run/" in ln["href"])
        with httpx.Client(base_url=os.environ["PREFECT_API_URL"].rstrip("/") + "/", timeout=10) as prefect:
            logs = prefect.post("logs/filter", json={"logs": {"flow_run_id": {"any_": [link.rsplit("/", 1)[1]]}},
                                                     "limit": 200}).json()
        assert any("node_otsu" in entry["message"] for entry in logs)


def test_results_document_holds_a_qualified_value(client: httpx.Client, scenes: Scenes) -> None:
    resp = client.post("/processes/water-bodies/execution",
                       json={"inputs": _inputs(scenes, "A"), "response": "document"})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    validate(doc, "results")
    value = doc["stac_catalog"]
    assert value["mediaType"] == "application/geo+json"
    assert value["value"]["type"] == "FeatureCollection" and len(value["value"]["features"]) == 1


@pytest.mark.parametrize(("inputs", "message"), [
    ({"stac_items": ["D"]}, "does not overlap item LC09_L2SP_041032_20231031_02_T1"),
    ({"aoi": "-121.43,40.27"}, "is not a bounding box"),
    ({"bands": ["green", "swir16"]}, "no data asset for the band 'swir16'"),
    ({"stac_items": ["missing"]}, "HTTP 404"),
])
def test_failures_say_why(client: httpx.Client, scenes: Scenes, inputs: dict[str, Any], message: str) -> None:
    inputs = dict(inputs)  # the parameters are shared by both engines' runs
    items = inputs.pop("stac_items", ["A"])
    urls = [scenes.item_url(k) if k in scenes.index["items"] else f"{scenes.url}/{k}.json" for k in items]
    status = _run(client, {**_inputs(scenes, "A"), **inputs, "stac_items": urls})
    assert status["status"] == "failed" and message in status["message"], status
    doc = validate_exception(client.get(f"/jobs/{status['jobID']}/results"), 500)
    assert message in doc["detail"]


def test_bad_requests_are_refused_at_once(client: httpx.Client, scenes: Scenes) -> None:
    missing = client.post("/processes/water-bodies/execution", json={"inputs": {"aoi": AOI}})
    assert "stac_items" in validate_exception(missing, 400)["detail"]
    wrong = client.post("/processes/water-bodies/execution",
                        json={"inputs": {"aoi": AOI, "stac_items": scenes.item_url("A")}})
    assert "stac_items" in validate_exception(wrong, 400)["detail"]


def test_the_demo_command(tmp_path: Path) -> None:
    """The README's main command, without the set-up and without staying up."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OGCFLOW_")}
    proc = subprocess.run([sys.executable, "-m", "ogcflow", "demo", "--port", str(port), "--data-dir",
                           str(tmp_path), "--no-stay"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "successful" in proc.stdout and "otsu.tif" in proc.stdout and "?f=html" in proc.stdout
    masks = sorted((tmp_path / "results").rglob("otsu.tif"))
    assert len(masks) == 3


def test_owslib_submits_and_the_job_page_shows_the_results(client: httpx.Client, wb: tuple[Server, str],
                                                           scenes: Scenes, browser: Any) -> None:
    from owslib.ogcapi.processes import Processes
    from selenium.webdriver.common.by import By

    srv, bucket = wb
    api = Processes(srv.url)
    assert "water-bodies" in {p["id"] for p in api.processes()}
    status = api.execute("water-bodies", inputs=_inputs(scenes, "B"), async_=True)
    assert status["status"] in ("accepted", "running")
    job_url = api.response_headers["Location"]
    deadline = time.monotonic() + 120
    while client.get(job_url).json()["status"] in ("accepted", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
    browser.get(job_url)
    assert browser.find_element(By.ID, "status").text == "successful"
    table = browser.find_element(By.ID, "files").text
    item = scenes.item_id("B")
    assert f"s3://{bucket}/{status['jobID']}/{status['jobID']}/{item}/otsu.tif" in table
    browser.find_element(By.PARTIAL_LINK_TEXT, f"{item}.json").click()
    assert f'"collection": "{status["jobID"]}"' in browser.page_source


GENERATOR = Path(__file__).resolve().parent.parent / ".venv-tools" / "bin" / "openapi-python-client"


def test_a_generated_openapi_client_runs_the_notebook_flow(wb: tuple[Server, str], scenes: Scenes,
                                                           tmp_path: Path) -> None:
    """The server's /api turned into a Python client by openapi-python-client, then the user's day with it."""
    import importlib

    if not GENERATOR.exists():
        pytest.fail("openapi-python-client is missing: scripts/tools.sh installs it (scripts/test.sh runs it)")
    srv, bucket = wb
    (tmp_path / "api.json").write_bytes(httpx.get(srv.url + "/api", timeout=30).content)
    done = subprocess.run([str(GENERATOR), "generate", "--path", str(tmp_path / "api.json"), "--output-path",
                           str(tmp_path / "client"), "--overwrite"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "water-bodies" not in done.stdout  # no warning about the flagship's operations or schemas
    for name in [m for m in sys.modules if m.startswith("ogcflow_client")]:
        del sys.modules[name]  # a client generated for another server of this module
    sys.path.insert(0, str(tmp_path / "client"))
    try:
        client_mod = importlib.import_module("ogcflow_client")
        processes = importlib.import_module("ogcflow_client.api.processes.get_processes")
        execute = importlib.import_module("ogcflow_client.api.processes.execute_water_bodies")
        get_status = importlib.import_module("ogcflow_client.api.jobs.get_status")
        get_result = importlib.import_module("ogcflow_client.api.jobs.get_result")
        models = importlib.import_module("ogcflow_client.models")
    finally:
        sys.path.remove(str(tmp_path / "client"))
    api = client_mod.Client(base_url=srv.url, raise_on_unexpected_status=True, timeout=httpx.Timeout(60))
    assert "water-bodies" in {p.id for p in processes.sync(client=api).processes}
    body = models.ExecuteWaterBodies.from_dict({"inputs": _inputs(scenes, "A")})
    status = execute.sync(client=api, body=body, prefer="respond-async;return=representation")
    assert isinstance(status, models.StatusInfo) and status.job_id
    deadline = time.monotonic() + 120
    while (state := get_status.sync(job_id=status.job_id, client=api).status.value) in ("accepted", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state == "successful"
    result = get_result.sync_detailed(job_id=status.job_id, client=api)
    assert result.status_code == 200
    fc = json.loads(result.content)["stac_catalog"]["value"]
    href = fc["features"][0]["assets"]["data"]["href"]
    assert href == f"s3://{bucket}/{status.job_id}/{status.job_id}/{scenes.item_id('A')}/otsu.tif"
