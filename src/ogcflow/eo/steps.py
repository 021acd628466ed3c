"""The four steps of the water-bodies application package, as functions (their command lines are in
:mod:`ogcflow.eo.__main__`). Behaviour follows the reference package (see docs/water-bodies.md):

- crop: the item's band (found by eo:bands common name) cut to the AOI's box, on the source grid;
- norm_diff: (first - second) / (first + second) on raw DNs, float32;
- otsu: Otsu's threshold over the finite values, mask = value > threshold, uint8 (1 water, 0 else, nodata 0);
- stac: a self-contained STAC catalog, one item per input item with the mask as its ``data`` asset and a
  ``derived_from`` link to the input item.

Every raster is a COG, LZW, 512 x 512 tiles.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ogcflow.eo.errors import StepError

if TYPE_CHECKING:
    from ogcflow.eo.config import StepConfig

COG = {"driver": "COG", "compress": "lzw", "blocksize": 512}


def parse_aoi(aoi: str) -> tuple[float, float, float, float]:
    """``minx,miny,maxx,maxy`` -> four floats (a clear error otherwise)."""
    try:
        values = tuple(float(v) for v in aoi.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not values[0] < values[2] or not values[1] < values[3]:
        raise StepError(f"the aoi '{aoi}' is not a bounding box 'minx,miny,maxx,maxy' with min < max")
    return values[0], values[1], values[2], values[3]


def _profile(src_profile: dict[str, Any], **changes: Any) -> dict[str, Any]:
    names = ("crs", "transform", "width", "height", "nodata")
    keep: dict[str, Any] = {k: src_profile[k] for k in names if k in src_profile}
    return {**keep, "count": 1, **COG, **changes}


def crop(item_ref: str, aoi: str, epsg: str, band: str, out_dir: Path, settings: StepConfig) -> Path:
    """Write ``crop_<band>.tif``: the band of the item inside the AOI box (pixels of the source grid whose
    centre is outside the box, or outside the scene, are nodata)."""
    import rasterio
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError
    from rasterio.mask import mask
    from shapely.geometry import box, mapping

    from ogcflow.eo.items import find_asset, open_href, read_item

    minx, miny, maxx, maxy = parse_aoi(aoi)
    item = read_item(item_ref, settings)
    _key, asset = find_asset(item, band)
    href = open_href(asset.get_absolute_href() or asset.href, item, settings)
    try:
        source_crs = CRS.from_user_input(epsg)
    except CRSError:
        raise StepError(f"'{epsg}' is not a coordinate reference system (e.g. EPSG:4326)") from None
    try:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_MAX_RETRY="3",
                          GDAL_HTTP_RETRY_DELAY="1"), rasterio.open(href) as src:
            to_raster = Transformer.from_crs(source_crs, src.crs, always_xy=True)
            x1, y1 = to_raster.transform(minx, miny)
            x2, y2 = to_raster.transform(maxx, maxy)
            shape = box(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
            try:
                data, transform = mask(src, [mapping(shape)], crop=True)
            except ValueError as exc:
                if "overlap" in str(exc):
                    raise StepError(f"the area of interest {aoi} does not overlap item {item.id}") from None
                raise
            profile = _profile(src.profile, dtype="uint16", height=data.shape[1], width=data.shape[2],
                               transform=transform)
    except rasterio.errors.RasterioIOError as exc:
        raise StepError(f"the {band} asset of item {item.id} cannot be read: {exc}") from None
    out = Path(out_dir) / f"crop_{band}.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data[0].astype("uint16"), 1)
    return out


def norm_diff(first: Path, second: Path, out_dir: Path) -> Path:
    """Write ``norm_diff.tif``: (first - second) / (first + second), float32 (NaN where both are 0)."""
    import numpy as np
    import rasterio

    with rasterio.open(first) as a, rasterio.open(second) as b:
        if (a.width, a.height, a.transform) != (b.width, b.height, b.transform):
            raise StepError(f"{Path(first).name} and {Path(second).name} are not on the same grid")
        x = a.read(1).astype("float32")
        y = b.read(1).astype("float32")
        profile = _profile(a.profile, dtype="float32")
    with np.errstate(divide="ignore", invalid="ignore"):
        ndwi = (x - y) / (x + y)
    out = Path(out_dir) / "norm_diff.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(ndwi.astype("float32"), 1)
    return out


def otsu(raster: Path, out_dir: Path) -> Path:
    """Write ``otsu.tif``: 1 where the value is above Otsu's threshold of the finite values, else 0."""
    import numpy as np
    import rasterio
    from skimage.filters import threshold_otsu

    with rasterio.open(raster) as src:
        values = src.read(1)
        profile = _profile(src.profile, dtype="uint8")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise StepError("the area of interest holds no valid pixel of the scene (only no-data)")
    threshold = threshold_otsu(finite)  # type: ignore[no-untyped-call]
    with np.errstate(invalid="ignore"):
        water = (values > threshold).astype("uint8")
    out = Path(out_dir) / "otsu.tif"
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(water, 1)
    return out


def _source(ref: str, item: Any) -> str:
    """Where the input item is, as an absolute URL: the URL the user gave, else its file (a staged item)."""
    if urlsplit(ref).scheme in ("http", "https"):
        return ref
    href = item.get_self_href() or ref
    return href if "://" in href else Path(href).resolve().as_uri()


def stac(item_refs: Sequence[str], rasters: Sequence[Path], out_dir: Path, settings: StepConfig) -> Path:
    """Write a self-contained STAC catalog (``catalog.json``, ``<item>/<item>.json``, ``<item>/otsu.tif``)
    pairing the i-th item with the i-th mask."""
    import shutil

    import pystac
    from rio_stac import create_stac_item

    from ogcflow.eo.items import read_item

    if len(item_refs) != len(rasters):
        raise StepError(f"{len(item_refs)} items but {len(rasters)} water masks: they pair by position")
    out_dir = Path(out_dir)
    catalog = pystac.Catalog(id="catalog", description="water-bodies")
    for ref, raster in zip(item_refs, rasters, strict=True):
        item = read_item(ref, settings)
        where = out_dir / item.id
        where.mkdir(parents=True, exist_ok=True)
        target = where / Path(raster).name
        shutil.copyfile(raster, target)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rio-stac's notes about decimated statistics and the like
            result = create_stac_item(str(target), input_datetime=item.datetime, id=item.id, asset_name="data",
                                      asset_href=target.name, asset_roles=["data", "visual"], with_proj=True,
                                      with_raster=True)
        result.add_link(pystac.Link("derived_from", _source(ref, item), media_type="application/geo+json",
                                    title=f"input item {item.id}"))
        catalog.add_item(result)
    catalog.normalize_and_save(root_href=str(out_dir), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"
