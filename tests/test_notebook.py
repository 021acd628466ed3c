"""The EO notebook's cells, verbatim, with the client its users run: EOEPCA's ``ogc_api_client`` (the wheel in
../shared/clients, see SOURCE.md) against ``{server}/acme/ogc-api`` on every backend, results in a real S3 server
(SeaweedFS), the masks opened with rasterio through the ``fs_s3fs`` opener as the notebook does.

What this client can and cannot read (recorded by the tests below): its ``InputValueNoObject`` is a oneOf whose
members overlap (any JSON string is both ``str`` and ``bytearray|str``, any integer both ``float|int`` and ``int``),
so ``get_result`` raises on a plain string or integer, bare or qualified, whatever the server sends. It reads
qualified objects (the water-bodies FeatureCollection), non-integer numbers, and links (outputs by reference).
Its ``Configuration`` ignores ``access_token`` and ``api_key`` (it was generated without security schemes): a
credential goes in the client's default headers (``header_name``/``header_value``) and, because
``execute_simple`` sends only the ``_headers`` it is given, in the notebook's ``headers`` too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ogc_api_client.api_client import Configuration
from ogc_api_client.api_client_wrapper import ApiClientWrapper
from ogc_api_client.exceptions import ApiException
from ogc_api_client.models.inline_or_ref_data import InlineOrRefData
from ogc_api_client.models.input_value_no_object import InputValueNoObject
from ogc_api_client.models.link import Link
from ogc_api_client.models.qualified_input_value import QualifiedInputValue
from ogc_api_client.models.status_info import StatusCode, StatusInfo

from tests.conftest import store_env
from tests.eo_support import Scenes
from tests.server import Server
from tests.test_water_bodies import _inputs

NAMESPACE = "acme"
#: the notebook's headers, verbatim
HEADERS = {"accept": "*/*", "Prefer": "respond-async;return=representation", "Content-Type": "application/json"}
#: the notebook polls every 10 s without end; here briefly, and within a bound
POLL, BOUND = 0.2, 200.0
#: why the client reads no plain string or integer: each of its oneOf members that accepts the value then
#: fails, as assigning it to ``actual_instance`` matches two members
AMBIGUOUS = "Multiple matches found when setting `actual_instance` in InputValueNoObject"


def _s3_server(directory: Any, backend: str) -> tuple[Server, str]:
    bucket = "nb-" + uuid.uuid4().hex[:10]
    env = {**store_env(backend), "OGCFLOW_RESULTS_URL": f"s3://{bucket}"}
    return Server(directory, env=env).start(), bucket


@pytest.fixture(scope="session")
def notebook_server(backend: str, tmp_path_factory: pytest.TempPathFactory, s3: dict[str, str],
                    scenes: Scenes) -> Iterator[tuple[Server, str]]:
    """A server on ``backend`` with its results in a bucket of its own on the S3 server."""
    srv, bucket = _s3_server(tmp_path_factory.mktemp("notebook"), backend)
    yield srv, bucket
    srv.stop()


@pytest.fixture(scope="module")
def secured_server(tmp_path_factory: pytest.TempPathFactory, s3: dict[str, str],
                   scenes: Scenes) -> Iterator[tuple[Server, str, str]]:
    """A server (local engine, SQLite) with an executor key for acme, created with the real CLI: once a key
    exists, credentials are required."""
    srv, bucket = _s3_server(tmp_path_factory.mktemp("notebook-auth"), "sqlite")
    try:
        done = subprocess.run([sys.executable, "-m", "ogcflow", "apikey", "create", "--namespace", NAMESPACE,
                               "--role", "executor"], env=srv.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        key = done.stdout.strip().splitlines()[-1]
        yield srv, bucket, key
    finally:
        srv.stop()


def _endpoint(srv: Server) -> str:
    return f"{srv.url}/{NAMESPACE}/ogc-api"


def _wait(client: ApiClientWrapper, job_id: str) -> StatusInfo:
    """The notebook's polling loop, with a short sleep and a bound."""
    deadline = time.monotonic() + BOUND
    while True:
        status = client.get_status(job_id=job_id)
        if status.status in [StatusCode.SUCCESSFUL, StatusCode.FAILED]:
            break
        assert time.monotonic() < deadline, f"job {job_id} still {status.status} after {BOUND} s"
        time.sleep(POLL)
    return status


def _notebook(client: ApiClientWrapper, ogc_api_endpoint: str, headers: dict[str, str],
              data: dict[str, Any]) -> tuple[str, list[Any]]:
    """The notebook's cells, from the submission to the STAC items of the results."""
    from pystac import ItemCollection

    content = client.execute_simple(process_id="water-bodies", execute=data, _headers=headers)
    assert isinstance(content, StatusInfo)
    job_id = content.job_id
    status_location = next((l.href for l in content.links if l.rel == "monitor"), None)  # noqa: E741
    assert status_location == f"{ogc_api_endpoint}/jobs/{job_id}"  # the monitor link is inside /acme/ogc-api
    assert content.status in (StatusCode.ACCEPTED, StatusCode.RUNNING)
    status = _wait(client, job_id)
    assert status.status == StatusCode.SUCCESSFUL, status.message
    assert status.job_id == job_id

    result = client.get_result(job_id=job_id)
    assert set(result) == {"stac_catalog"}
    assert isinstance(result["stac_catalog"].actual_instance, QualifiedInputValue)
    assert result["stac_catalog"].actual_instance.media_type == "application/geo+json"
    stac_feature_collection = result.get("stac_catalog").actual_instance.value.oneof_schema_2_validator
    assert stac_feature_collection["type"] == "FeatureCollection" and stac_feature_collection["id"] == job_id
    # the items carry the storage extension v2.0.0, pystac's: it reads them without a warning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stac_items = ItemCollection.from_dict(stac_feature_collection).items
    assert not caught, [str(w.message) for w in caught]
    return job_id, stac_items


def _open_mask(href: str) -> Any:
    """``rasterio.open`` through the ``fs_s3fs`` opener, as the notebook does: rasterio 1.4 takes a callable
    ``opener(path, mode)`` returning a file-like object (or an fsspec filesystem); PyFilesystem2's ``S3FS`` is
    neither, its bound ``open`` is the callable (the notebook's and rasterio's documented usage)."""
    import rasterio
    from fs_s3fs import S3FS

    bucket, _, key = href.removeprefix("s3://").partition("/")
    dir_path, _, name = key.rpartition("/")
    fs = S3FS(bucket_name=bucket, dir_path=dir_path, endpoint_url=os.environ["AWS_ENDPOINT_URL"],
              aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
              aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"], region=os.environ["AWS_DEFAULT_REGION"])
    return fs, rasterio.open(name, opener=fs.open)


def _water_iou(src: Any, truth: list[Any]) -> float:
    """IoU of the mask's water pixels (value 1) and the truth polygons on the mask's grid (as eo_support.iou,
    on a dataset already open)."""
    from rasterio.features import rasterize

    water = src.read(1) == 1
    expected = rasterize([(p, 1) for p in truth], out_shape=water.shape, transform=src.transform, fill=0,
                         dtype="uint8").astype(bool)
    union = (water | expected).sum()
    return float((water & expected).sum() / union) if union else 1.0


def _check_results(job_id: str, stac_items: list[Any], bucket: str, scenes: Scenes, keys: str) -> None:
    """One item per input item in input order; each mask read from S3 through the opener matches its scene's
    ground truth; the job's prefix in the bucket lists the catalog, the collection, the items and the masks."""
    import json

    import boto3

    assert [item.id for item in stac_items] == [scenes.item_id(k) for k in keys]
    for key, item in zip(keys, stac_items, strict=True):
        href = item.get_assets()["data"].href
        assert href == f"s3://{bucket}/{job_id}/{job_id}/{item.id}/otsu.tif"
        scene = json.loads((scenes.root / scenes.index["items"][key]["path"]).read_text())
        fs, src = _open_mask(href)
        with fs, src:
            assert (src.count, src.dtypes[0], src.nodata) == (1, "uint8", 0)
            assert src.crs.to_epsg() == scene["properties"]["proj:epsg"]
            assert _water_iou(src, scenes.truth(key)) >= 0.95, key

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                      region_name=os.environ["AWS_DEFAULT_REGION"])
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{job_id}/")
        listed = {obj["Key"] for page in pages for obj in page.get("Contents", [])}
    finally:
        s3.close()
    expected = {f"{job_id}/catalog.json", f"{job_id}/{job_id}/collection.json"}
    for item in stac_items:
        expected |= {f"{job_id}/{job_id}/{item.id}/{item.id}.json", f"{job_id}/{job_id}/{item.id}/otsu.tif"}
    assert expected <= listed, sorted(expected - listed)


def test_the_notebook_runs_verbatim(notebook_server: tuple[Server, str], scenes: Scenes) -> None:
    srv, bucket = notebook_server
    ogc_api_endpoint = _endpoint(srv)
    client = ApiClientWrapper(configuration=Configuration(host=ogc_api_endpoint))
    assert "water-bodies" in {p.id for p in client.get_processes().processes}
    data = {"inputs": _inputs(scenes, "ABC")}
    job_id, stac_items = _notebook(client, ogc_api_endpoint, HEADERS, data)
    _check_results(job_id, stac_items, bucket, scenes, "ABC")


def test_the_notebook_with_an_api_key(secured_server: tuple[Server, str, str], scenes: Scenes) -> None:
    srv, bucket, key = secured_server
    ogc_api_endpoint = _endpoint(srv)
    data = {"inputs": _inputs(scenes, "A")}

    # no credentials: the notebook's first cell is refused with 401
    anonymous = ApiClientWrapper(configuration=Configuration(host=ogc_api_endpoint))
    with pytest.raises(ApiException) as refused:
        anonymous.execute_simple(process_id="water-bodies", execute=data, _headers=HEADERS)
    assert refused.value.status == 401
    assert refused.value.headers["WWW-Authenticate"].startswith("Bearer")
    # the Configuration's access_token and api_key are not sent: the client declares no security schemes
    for configuration in (Configuration(host=ogc_api_endpoint, access_token=key),
                          Configuration(host=ogc_api_endpoint, api_key={"ApiKey": key, "X-API-Key": key},
                                        api_key_prefix={"ApiKey": "Bearer"})):
        with pytest.raises(ApiException) as ignored:
            ApiClientWrapper(configuration=configuration).get_processes()
        assert ignored.value.status == 401

    # the key as the client's default header (get_status, get_result) and in the notebook's headers
    # (execute_simple sends only the headers it is given)
    client = ApiClientWrapper(configuration=Configuration(host=ogc_api_endpoint), header_name="Authorization",
                              header_value=f"Bearer {key}")
    with pytest.raises(ApiException) as not_sent:
        client.execute_simple(process_id="water-bodies", execute=data, _headers=HEADERS)
    assert not_sent.value.status == 401
    headers = {**HEADERS, "Authorization": f"Bearer {key}"}
    job_id, stac_items = _notebook(client, ogc_api_endpoint, headers, data)
    _check_results(job_id, stac_items, bucket, scenes, "A")

    # the job exists, yet without the key its status and results are 401 too
    for call in (anonymous.get_status, anonymous.get_result):
        with pytest.raises(ApiException) as hidden:
            call(job_id=job_id)
        assert hidden.value.status == 401


def _submit(client: ApiClientWrapper, process_id: str, data: dict[str, Any]) -> str:
    content = client.execute_simple(process_id=process_id, execute=data, _headers=HEADERS)
    assert isinstance(content, StatusInfo)
    status = _wait(client, content.job_id)
    assert status.status == StatusCode.SUCCESSFUL, status.message
    return content.job_id


def test_a_text_output_is_the_standards_qualified_value_the_client_cannot_parse(
        notebook_server: tuple[Server, str]) -> None:
    srv, _bucket = notebook_server
    ogc_api_endpoint = _endpoint(srv)
    client = ApiClientWrapper(configuration=Configuration(host=ogc_api_endpoint))
    job_id = _submit(client, "hello-world", {"inputs": {"name": "Ada"}})
    sent = httpx.get(f"{ogc_api_endpoint}/jobs/{job_id}/results", timeout=30)
    assert sent.status_code == 200 and sent.headers["content-type"].startswith("application/json")
    assert sent.json() == {"greeting": {"value": "Hello Ada!", "mediaType": "text/plain"}}
    with pytest.raises(ValueError) as failed:
        client.get_result(job_id=job_id)
    assert "into InlineOrRefData" in str(failed.value)
    assert AMBIGUOUS in str(failed.value)


def test_a_number_output_parses(notebook_server: tuple[Server, str]) -> None:
    srv, _bucket = notebook_server
    ogc_api_endpoint = _endpoint(srv)
    client = ApiClientWrapper(configuration=Configuration(host=ogc_api_endpoint))
    job_id = _submit(client, "sleep", {"inputs": {"seconds": 0.2}})
    sent = httpx.get(f"{ogc_api_endpoint}/jobs/{job_id}/results", timeout=30).json()
    assert set(sent) == {"slept"} and isinstance(sent["slept"], float)
    result = client.get_result(job_id=job_id)
    value = result["slept"].actual_instance
    assert isinstance(value, InputValueNoObject) and value.actual_instance == sent["slept"]
    assert 0.2 <= value.actual_instance < 30


def test_a_text_output_by_reference_is_a_link_the_client_parses(notebook_server: tuple[Server, str]) -> None:
    srv, _bucket = notebook_server
    ogc_api_endpoint = _endpoint(srv)
    client = ApiClientWrapper(configuration=Configuration(host=ogc_api_endpoint))
    job_id = _submit(client, "hello-world", {"inputs": {"name": "Ada"},
                                             "outputs": {"greeting": {"transmissionMode": "reference"}}})
    result = client.get_result(job_id=job_id)
    link = result["greeting"].actual_instance
    assert isinstance(link, Link) and link.type == "text/plain"
    assert link.href.startswith(f"{ogc_api_endpoint}/jobs/{job_id}/")
    text = httpx.get(link.href, timeout=30)
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert text.text == "Hello Ada!"


@pytest.mark.parametrize("body", ["Hello Ada!", {"value": "Hello Ada!", "mediaType": "text/plain"}, 3,
                                  {"value": 3, "mediaType": "application/json"}])
def test_the_client_cannot_parse_plain_strings_or_integers(body: Any) -> None:
    """Whatever the server sends for a string or an integer, bare or qualified, the client's oneOf finds two
    matches (str and bytearray|str; float|int and int) and get_result raises."""
    with pytest.raises(ValueError) as ambiguous:
        InputValueNoObject.from_dict(body["value"] if isinstance(body, dict) else body)
    assert AMBIGUOUS in str(ambiguous.value)
    with pytest.raises(ValueError, match="No match found when deserializing the JSON string into InlineOrRefData"):
        InlineOrRefData.from_dict(body)


@pytest.mark.parametrize(("body", "kind"), [
    (0.25, InputValueNoObject),
    ({"value": 0.25, "mediaType": "application/json"}, QualifiedInputValue),
    ({"value": {"type": "FeatureCollection", "features": []}, "mediaType": "application/geo+json"},
     QualifiedInputValue),
    ({"href": "http://example.org/greeting", "type": "text/plain"}, Link),
])
def test_the_client_parses_floats_objects_and_links(body: Any, kind: type) -> None:
    assert isinstance(InlineOrRefData.from_dict(body).actual_instance, kind)
