"""Water-bodies on full-size Landsat-like items (``ogcflow.eo.fullscenes``, cut down to a window around a
small AOI inside the notebook's one, so that it takes seconds): the job through the API (local engine,
cwltool, results in S3) gives masks pixel for pixel identical to the four steps run as plain functions in
one process (the bench's (a))."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import rasterio

from tests.conftest import store_env
from tests.server import Server

#: inside both items: the southern strip of the notebook's AOI that the second item also covers
SUB_AOI = (-118.56, 38.30, -118.42, 38.38)
ASYNC = {"Prefer": "respond-async;return=representation"}


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[str], str]]:
    from ogcflow.eo.dataserver import DataServer
    from ogcflow.eo.fullscenes import generate_full

    root = tmp_path_factory.mktemp("full-scenes")
    index = generate_full(root, cut=8, aoi=SUB_AOI)
    server = DataServer(root).start()
    yield [f"{server.url}/{entry['path']}" for entry in index["items"].values()], index["aoi"]
    server.stop()


def _in_process(items: list[str], aoi: str, work: Path) -> dict[str, Any]:
    """The masks of the step functions, called in this process, per item id."""
    import pystac

    from ogcflow.eo import steps
    from ogcflow.eo.config import StepConfig

    cfg = StepConfig(data_dir=work, allow_private_urls=True)
    masks = {}
    for n, item in enumerate(items):
        where = work / str(n)
        crops = []
        for band in ("green", "nir08"):
            (where / band).mkdir(parents=True)
            crops.append(steps.crop(item, aoi, "EPSG:4326", band, where / band, cfg))
        mask = steps.otsu(steps.norm_diff(crops[0], crops[1], where), where)
        with rasterio.open(mask) as src:
            masks[pystac.Item.from_file(item).id] = (src.read(1), src.transform, src.crs, src.profile["compress"])
    return masks


def test_the_job_gives_the_masks_of_the_step_functions(tmp_path: Path, s3: dict[str, str],
                                                        full: tuple[list[str], str]) -> None:
    items, aoi = full
    expected = _in_process(items, aoi, tmp_path / "a")
    assert len(expected) == 2
    for data, *_ in expected.values():  # a real mask: water and land, both items
        assert 0.01 < float((data == 1).mean()) < 0.9

    bucket = "wbf-" + uuid.uuid4().hex[:10]
    srv = Server(tmp_path / "srv", env={**store_env("sqlite"), "OGCFLOW_RESULTS_URL": f"s3://{bucket}"}).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            inputs = {"aoi": aoi, "epsg": "EPSG:4326", "bands": ["green", "nir08"], "stac_items": items}
            resp = client.post("/processes/water-bodies/execution", json={"inputs": inputs}, headers=ASYNC)
            assert resp.status_code == 201, resp.text
            deadline = time.monotonic() + 120
            while (status := client.get(resp.headers["Location"]).json())["status"] in ("accepted", "running"):
                assert time.monotonic() < deadline, status
                time.sleep(0.2)
            assert status["status"] == "successful", status
            features = client.get(f"/jobs/{status['jobID']}/results").json()["stac_catalog"]["value"]["features"]
    finally:
        srv.stop()
    assert [f["id"] for f in features] == list(expected)
    for feature in features:
        with rasterio.open(feature["assets"]["data"]["href"]) as src:  # from S3
            data, transform, crs, compress = expected[feature["id"]]
            assert (src.transform, src.crs, src.profile["compress"]) == (transform, crs, compress)
            assert src.read(1).shape == data.shape
            assert np.array_equal(src.read(1), data), feature["id"]


def test_demo_data_refuses_an_unknown_size(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "ogcflow", "demo-data", str(tmp_path / "d"), "--size", "huge"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "--size must be small or full" in proc.stdout + proc.stderr
    assert not (tmp_path / "d").exists()
