"""The water-bodies steps, the synthetic scenes, Planetary Computer signing and the STAC stage-out."""

from __future__ import annotations

import json
import warnings
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import rasterio

from ogcflow.eo import steps
from ogcflow.eo.config import StepConfig
from ogcflow.eo.errors import StepError
from ogcflow.eo.scenes import generate
from ogcflow.eo.stageout import ALTERNATE_EXT, stage_out_catalog
from ogcflow.errors import ProcessError
from ogcflow.storage import LocalStorage
from tests.eo_support import PlanetaryComputer, Scenes, iou
from tests.stac_support import validate

AOI = "-121.43,40.27,-121.33,40.34"
PROJECTION_EXT = "https://stac-extensions.github.io/projection/v1.1.0/schema.json"


@pytest.fixture
def cfg(tmp_path: Path) -> StepConfig:
    return StepConfig(data_dir=tmp_path / "data", allow_private_urls=True)


def _mask(scenes: Scenes, key: str, where: Path, cfg: StepConfig, bands: tuple[str, str] = ("green", "nir08"),
          aoi: str = AOI) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    crops = []
    for band in bands:
        band_dir = where / band
        band_dir.mkdir(exist_ok=True)
        crops.append(steps.crop(scenes.item_url(key), aoi, "EPSG:4326", band, band_dir, cfg))
    ndwi = steps.norm_diff(crops[0], crops[1], where)
    return steps.otsu(ndwi, where)


def test_demo_scenes_are_landsat_shaped_and_deterministic(scenes: Scenes, tmp_path: Path) -> None:
    item = json.loads((scenes.root / scenes.index["items"]["A"]["path"]).read_text())
    assert item["collection"] == "landsat-c2-l2" and item["properties"]["proj:epsg"] == 32610
    assert item["assets"]["green"]["eo:bands"][0]["common_name"] == "green"
    assert item["assets"]["nir08"]["eo:bands"][0]["name"] == "SR_B5"
    assert "data" not in item["assets"]["qa_pixel"]["roles"]
    with rasterio.open(scenes.root / item["id"] / "green.tif") as src:
        assert (src.width, src.height, src.dtypes[0], src.nodata) == (512, 512, "uint16", 0)
        assert src.crs.to_epsg() == 32610 and src.block_shapes == [(512, 512)]
        assert src.transform.c == 630015 and src.transform.a == 30
    again = tmp_path / "again"
    generate(again)
    for name in ("green.tif", "nir08.tif"):
        assert (again / item["id"] / name).read_bytes() == (scenes.root / item["id"] / name).read_bytes()


def test_crop_keeps_the_source_grid(scenes: Scenes, tmp_path: Path, cfg: StepConfig) -> None:
    out = steps.crop(scenes.item_url("A"), AOI, "EPSG:4326", "green", tmp_path, cfg)
    assert out.name == "crop_green.tif"
    with rasterio.open(out) as crop, rasterio.open(scenes.root / scenes.item_id("A") / "green.tif") as src:
        # an intermediate raster (only norm_diff reads it): 512 tiles, no compression, no overviews
        assert "compress" not in crop.profile and crop.block_shapes == [(512, 512)] and not crop.overviews(1)
        assert (crop.dtypes[0], crop.nodata, crop.crs) == ("uint16", 0, src.crs)
        col, row = (crop.transform.c - src.transform.c) / 30, (src.transform.f - crop.transform.f) / 30
        assert col == int(col) and row == int(row)  # whole source pixels, no resampling
        # the AOI box spans columns 115.8-394.3 and rows 106.1-370.2 of the scene: rounded outwards
        assert (col, row, crop.width, crop.height) == (115, 106, 280, 265)
        window = src.read(1, window=((int(row), int(row) + crop.height), (int(col), int(col) + crop.width)))
        inside = crop.read(1) != 0
        assert inside.mean() > 0.95 and np.array_equal(crop.read(1)[inside], window[inside])


def test_every_mask_matches_the_ground_truth(scenes: Scenes, tmp_path: Path, cfg: StepConfig) -> None:
    shapes = {}
    for key in ("A", "B", "C"):
        mask = _mask(scenes, key, tmp_path / key, cfg)
        assert iou(mask, scenes.truth(key)) >= 0.95, key
        with rasterio.open(mask) as src:
            assert (src.dtypes[0], src.nodata, src.profile["compress"]) == ("uint8", 0, "lzw")
            assert src.tags().get("AREA_OR_POINT") == "Area"
            shapes[key] = (src.height, src.width)
    assert shapes["B"] == shapes["A"]
    assert shapes["C"][1] < shapes["A"][1] * 0.6  # C covers part of the AOI: its output is clipped to the scene


def test_sentinel_like_assets_are_found_by_common_name(scenes: Scenes, tmp_path: Path, cfg: StepConfig) -> None:
    mask = _mask(scenes, "S", tmp_path, cfg, bands=("green", "nir"))
    assert iou(mask, scenes.truth("S")) >= 0.95
    with pytest.raises(StepError, match=r"no data asset for the band 'nir08' \(bands by common name: green, nir\)"):
        steps.crop(scenes.item_url("S"), AOI, "EPSG:4326", "nir08", tmp_path, cfg)


def test_a_bare_epsg_code_is_a_crs(scenes: Scenes, tmp_path: Path, cfg: StepConfig) -> None:
    with_prefix, bare = tmp_path / "prefix", tmp_path / "bare"
    with_prefix.mkdir()
    bare.mkdir()
    a = steps.crop(scenes.item_url("A"), AOI, "EPSG:4326", "green", with_prefix, cfg)
    b = steps.crop(scenes.item_url("A"), AOI, "4326", "green", bare, cfg)
    with rasterio.open(a) as first, rasterio.open(b) as second:
        assert first.transform == second.transform and (first.read() == second.read()).all()


@pytest.mark.parametrize(("key", "aoi", "epsg", "band", "message"), [
    ("D", AOI, "EPSG:4326", "green", "does not overlap item LC09_L2SP_041032_20231031_02_T1"),
    ("A", "-121.43,40.27,-121.33", "EPSG:4326", "green", "is not a bounding box"),
    ("A", "-121.33,40.27,-121.43,40.34", "EPSG:4326", "green", "min < max"),
    ("A", AOI, "EPSG:99999999", "green", "is not a coordinate reference system"),
    ("A", AOI, "EPSG:5773", "green", "cannot be expressed in the CRS of item"),  # a vertical CRS
    ("A", "-121.43,95,-121.33,96", "EPSG:4326", "green", "cannot be expressed in the CRS of item"),
    ("A", AOI, "EPSG:4326", "swir16", "no data asset for the band 'swir16'"),
    ("A", AOI, "EPSG:4326", "qa_pixel", "no data asset for the band 'qa_pixel'"),
])
def test_crop_failures_say_why(scenes: Scenes, tmp_path: Path, cfg: StepConfig, key: str, aoi: str, epsg: str,
                               band: str, message: str) -> None:
    with pytest.raises(StepError, match=message):
        steps.crop(scenes.item_url(key), aoi, epsg, band, tmp_path, cfg)


def test_item_references_are_policed(scenes: Scenes, tmp_path: Path) -> None:
    strict = StepConfig(data_dir=tmp_path)
    with pytest.raises(StepError, match="private, loopback or reserved"):
        steps.crop(scenes.item_url("A"), AOI, "EPSG:4326", "green", tmp_path, strict)
    local = scenes.root / scenes.index["items"]["A"]["path"]
    for ref in (str(local), local.as_uri()):
        with pytest.raises(StepError, match="only read under OGCFLOW_EO_LOCAL_ROOTS"):
            steps.crop(ref, AOI, "EPSG:4326", "green", tmp_path, strict)
    with pytest.raises(StepError, match="only http"):
        steps.crop("ftp://example.org/item.json", AOI, "EPSG:4326", "green", tmp_path, strict)
    rooted = StepConfig(data_dir=tmp_path, eo_local_roots=[scenes.root])
    assert steps.crop(str(local), AOI, "EPSG:4326", "green", tmp_path, rooted).is_file()
    with pytest.raises(StepError, match="HTTP 404"):
        steps.crop(scenes.url + "/missing.json", AOI, "EPSG:4326", "green", tmp_path,
                   StepConfig(data_dir=tmp_path, allow_private_urls=True))


def test_norm_diff_and_otsu_edge_cases(tmp_path: Path) -> None:
    from rasterio.transform import from_origin

    profile = {"driver": "GTiff", "width": 4, "height": 1, "count": 1, "dtype": "uint16", "nodata": 0,
               "crs": "EPSG:32610", "transform": from_origin(630015, 4470015, 30, 30)}
    for name, row in (("g.tif", [0, 0, 300, 100]), ("n.tif", [0, 50, 100, 300])):
        with rasterio.open(tmp_path / name, "w", **profile) as dst:
            dst.write(np.array([row], dtype="uint16"), 1)
    ndwi = steps.norm_diff(tmp_path / "g.tif", tmp_path / "n.tif", tmp_path)
    with rasterio.open(ndwi) as src:
        values = src.read(1)[0]
        assert src.dtypes[0] == "float32" and src.nodata == 0
    assert np.isnan(values[0]) and values[1] == -1.0 and values[2] == pytest.approx(0.5)
    assert values[3] == pytest.approx(-0.5)
    with rasterio.open(tmp_path / "nan.tif", "w", **{**profile, "dtype": "float32"}) as dst:
        dst.write(np.full((1, 4), np.nan, dtype="float32"), 1)
    with pytest.raises(StepError, match="no valid pixel"):
        steps.otsu(tmp_path / "nan.tif", tmp_path)


def test_stac_step_writes_a_self_contained_catalog(scenes: Scenes, tmp_path: Path, cfg: StepConfig) -> None:
    masks = [_mask(scenes, key, tmp_path / key, cfg) for key in ("A", "C")]
    out = tmp_path / "catalog"
    out.mkdir()
    steps.stac([scenes.item_url("A"), scenes.item_url("C")], masks, out, cfg)
    catalog = json.loads((out / "catalog.json").read_text())
    assert (catalog["id"], catalog["description"]) == ("catalog", "water-bodies")
    assert [ln["href"] for ln in catalog["links"] if ln["rel"] == "item"] == [
        f"./{scenes.item_id(k)}/{scenes.item_id(k)}.json" for k in ("A", "C")]
    item = json.loads((out / scenes.item_id("A") / f"{scenes.item_id('A')}.json").read_text())
    asset = item["assets"]["data"]
    assert asset["href"] == "otsu.tif" and asset["roles"] == ["data", "visual"]
    assert asset["type"] == "image/tiff; application=geotiff"
    band = asset["raster:bands"][0]
    assert (band["data_type"], band["nodata"], band["sampling"]) == ("uint8", 0, "area")
    assert band["statistics"]["minimum"] == band["statistics"]["maximum"] == 1
    assert 20 < band["statistics"]["valid_percent"] < 35  # the water fraction of the AOI
    assert item["properties"]["proj:epsg"] == 32610 and item["properties"]["datetime"] == "2023-10-07T18:45:12Z"
    with pytest.raises(StepError, match="pair by position"):
        steps.stac([scenes.item_url("A")], masks, tmp_path, cfg)


def test_stage_out_rewrites_hrefs_into_results_storage(scenes: Scenes, tmp_path: Path, cfg: StepConfig) -> None:
    masks = [_mask(scenes, key, tmp_path / key, cfg) for key in ("B", "A")]
    out = tmp_path / "catalog"
    out.mkdir()
    steps.stac([scenes.item_url("B"), scenes.item_url("A")], masks, out, cfg)
    storage = LocalStorage(tmp_path / "results")
    fc = stage_out_catalog(out, "job-1", storage, "http://api.example/acme/ogc-api")
    assert fc["type"] == "FeatureCollection" and fc["id"] == "job-1"
    assert [f["id"] for f in fc["features"]] == [scenes.item_id("B"), scenes.item_id("A")]  # input order
    keys = storage.list_job("job-1")
    item_b = scenes.item_id("B")
    assert {"job-1/catalog.json", "job-1/job-1/collection.json", f"job-1/job-1/{item_b}/{item_b}.json",
            f"job-1/job-1/{item_b}/otsu.tif", f"job-1/job-1/{item_b}/quicklook.png"} <= set(keys)
    feature = fc["features"][0]
    assert feature["collection"] == "job-1"
    data = feature["assets"]["data"]
    assert data["href"] == storage.url(f"job-1/job-1/{item_b}/otsu.tif")
    assert data["alternate"] == {"http": {"href": f"http://api.example/acme/ogc-api/jobs/job-1/files/job-1/{item_b}/"
                                                  "otsu.tif", "alternate:name": "through the API"}}
    assert "storage:refs" not in data and "storage:schemes" not in feature["properties"]  # no object storage
    thumbnail = feature["assets"]["thumbnail"]
    assert thumbnail["roles"] == ["thumbnail"] and thumbnail["type"] == "image/png"
    assert storage.read(f"job-1/job-1/{item_b}/quicklook.png").startswith(b"\x89PNG")
    derived = [link["href"] for link in feature["links"] if link["rel"] == "derived_from"]
    assert derived == [scenes.item_url("B")]
    # the stored catalog is self-contained: relative links and asset hrefs, the storage URL as an alternate
    stored = json.loads(storage.read(f"job-1/job-1/{item_b}/{item_b}.json"))
    links = {link["rel"]: link["href"] for link in stored["links"]}
    assert links == {"root": "../../catalog.json", "parent": "../collection.json", "collection": "../collection.json",
                     "derived_from": scenes.item_url("B")}
    assert stored["assets"]["data"]["href"] == "./otsu.tif"
    assert stored["assets"]["data"]["alternate"]["file"]["href"] == data["href"]
    collection = json.loads(storage.read("job-1/job-1/collection.json"))
    assert collection["id"] == "job-1" and collection["extent"]["temporal"]["interval"][0] == [
        "2023-10-07T18:45:12Z", "2023-10-15T18:45:20Z"]
    assert sorted(link["href"] for link in collection["links"] if link["rel"] == "item") == sorted(
        f"./{f['id']}/{f['id']}.json" for f in fc["features"])
    catalog = json.loads(storage.read("job-1/catalog.json"))
    assert [link["href"] for link in catalog["links"] if link["rel"] == "child"] == ["./job-1/collection.json"]
    assert not any(link["rel"] == "self" for node in (catalog, collection, stored) for link in node["links"])
    # every document validates against the STAC core and extension schemas (vendored: offline)
    used = validate(stored)
    assert {ALTERNATE_EXT, PROJECTION_EXT} <= set(used)
    for doc in (catalog, collection, *fc["features"]):
        validate(doc)


def test_an_item_given_twice_is_staged_out_once(scenes: Scenes, tmp_path: Path, cfg: StepConfig) -> None:
    """The same input item twice: the catalog links it twice, and its files are one folder, written once
    (the items are staged out side by side: twice would be two writers of the same files)."""
    mask = _mask(scenes, "A", tmp_path / "A", cfg)
    out = tmp_path / "catalog"
    out.mkdir()
    steps.stac([scenes.item_url("A"), scenes.item_url("A")], [mask, mask], out, cfg)
    storage = LocalStorage(tmp_path / "results")
    for job in ("job-1", "job-2", "job-3"):
        fc = stage_out_catalog(out, job, storage)
        assert [f["id"] for f in fc["features"]] == [scenes.item_id("A")]
        assert not [k for k in storage.list_job(job) if k.rsplit("/", 1)[-1].startswith(".")]  # no temp file
    # two different items with one id would be two writers of one folder: refused, saying why
    item = out / scenes.item_id("A") / f"{scenes.item_id('A')}.json"
    twin = out / "twin" / "twin.json"
    twin.parent.mkdir()
    twin.write_text(item.read_text().replace("./otsu.tif", "../" + scenes.item_id("A") + "/otsu.tif"))
    catalog = json.loads((out / "catalog.json").read_text())
    catalog["links"].append({"rel": "item", "href": "./twin/twin.json", "type": "application/geo+json"})
    (out / "catalog.json").write_text(json.dumps(catalog))
    with pytest.raises(ProcessError, match=f"two items with the id '{scenes.item_id('A')}'"):
        stage_out_catalog(out, "job-4", storage)


def test_planetary_computer_assets_are_signed(scenes: Scenes, tmp_path: Path) -> None:
    pc = PlanetaryComputer(scenes.root).start()
    try:
        item = f"{pc.url}/{scenes.index['items']['A']['path']}"
        unsigned = StepConfig(data_dir=tmp_path, allow_private_urls=True, pc_signed_hosts=[])
        with pytest.raises(StepError, match="cannot be read"):
            steps.crop(item, AOI, "EPSG:4326", "green", tmp_path, unsigned)
        assert pc.unsigned_reads  # the stand-in refused the unsigned read, as Azure does
        signed = StepConfig(data_dir=tmp_path, allow_private_urls=True, pc_sas_url=pc.url + "/api/sas/v1",
                            pc_signed_hosts=[pc.host])
        for band in ("green", "nir08"):
            assert steps.crop(item, AOI, "EPSG:4326", band, tmp_path, signed).is_file()
        assert pc.token_requests == ["landsat-c2-l2"]  # one token for the collection, cached for the next read
        cache = tmp_path / "cache" / "pc-tokens" / "landsat-c2-l2.json"
        cached = json.loads(cache.read_text())
        cache.write_text(json.dumps({**cached, "expires": cached["expires"] - 3600}))  # expired
        steps.crop(item, AOI, "EPSG:4326", "green", tmp_path, signed)
        assert pc.token_requests == ["landsat-c2-l2", "landsat-c2-l2"]
    finally:
        pc.stop()


def test_short_lived_tokens_are_not_reused(scenes: Scenes, tmp_path: Path) -> None:
    pc = PlanetaryComputer(scenes.root, lifetime=timedelta(seconds=30)).start()
    try:
        item = f"{pc.url}/{scenes.index['items']['A']['path']}"
        signed = StepConfig(data_dir=tmp_path, allow_private_urls=True, pc_sas_url=pc.url + "/api/sas/v1",
                            pc_signed_hosts=[pc.host])
        steps.crop(item, AOI, "EPSG:4326", "green", tmp_path, signed)
        steps.crop(item, AOI, "EPSG:4326", "nir08", tmp_path, signed)
        assert len(pc.token_requests) == 2  # within a minute of expiry: a fresh token each time
    finally:
        pc.stop()


def test_quicklooks_of_masks_and_of_other_rasters(tmp_path: Path) -> None:
    """A 0/1 mask is water in blue on transparent; another raster is grey, stretched, no-data transparent;
    read at most 256 pixels wide from the COG's overviews; a file GDAL cannot read has none."""
    from rasterio.errors import NotGeoreferencedWarning
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    from ogcflow.eo.quicklook import render

    def png_of(data: np.ndarray, nodata: float) -> np.ndarray:
        path = tmp_path / f"r{data.dtype}.tif"
        with rasterio.open(path, "w", driver="COG", width=data.shape[1], height=data.shape[0], count=1,
                           dtype=str(data.dtype), nodata=nodata, crs="EPSG:32610",
                           transform=from_origin(600000, 4500000, 30, 30), blocksize=512) as dst:
            dst.write(data, 1)
        with rasterio.open(path) as src:
            assert src.overviews(1)  # a COG this large has overviews: the quicklook is read from them
        png = render(path)
        assert png is not None and png.startswith(b"\x89PNG")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with MemoryFile(png) as mem, mem.open() as img:
                assert (img.width, img.height) == (256, 128) and img.count == 4
                return img.read()

    mask = np.zeros((1024, 2048), "uint8")
    mask[:, :1024] = 1
    rgba = png_of(mask, 0)
    assert (rgba[:, :, :120] == np.array([0, 102, 255, 255])[:, None, None]).all()  # water: blue, opaque
    assert (rgba[3, :, 136:] == 0).all()  # land: transparent
    ramp = np.tile(np.linspace(0, 1, 2048, dtype="float32"), (1024, 1))
    ramp[:512] = -9999  # no-data
    rgba = png_of(ramp, -9999)
    assert (rgba[3, :60] == 0).all() and (rgba[3, 68:] == 255).all()
    assert (rgba[0] == rgba[1]).all() and (rgba[1] == rgba[2]).all()  # grey
    assert rgba[0, 100, 2] == 0 and rgba[0, 100, -3] == 255 and 100 < rgba[0, 100, 128] < 155  # stretched
    (tmp_path / "notes.tif").write_text("not a raster")
    assert render(tmp_path / "notes.tif") is None
