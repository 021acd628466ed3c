"""The four steps of the water-bodies application package, as functions (their command lines are in
:mod:`ogcflow.eo.__main__`). Behaviour follows the reference package (see docs/water-bodies.md):

- crop: the item's band (found by eo:bands common name) cut to the AOI's box, on the source grid;
- norm_diff: (first - second) / (first + second) on raw DNs, float32;
- otsu: Otsu's threshold over the finite values, mask = value > threshold, uint8 (1 water, 0 else, nodata 0);
- stac: a self-contained STAC catalog, one item per input item with the mask as its ``data`` asset and a
  ``derived_from`` link to the input item.

Every raster is a COG with 512 x 512 tiles. The mask (the result) is LZW-compressed with overviews, as the
reference writes it; the intermediate rasters (the crops, the NDWI), which only the next step reads, are written
uncompressed and without overviews (at full Landsat size, LZW and overviews cost 5x the rest of those steps).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ogcflow.eo.errors import StepError

if TYPE_CHECKING:
    from ogcflow.eo.config import StepConfig

COG = {"driver": "COG", "compress": "lzw", "blocksize": 512}  # the result
# what only the next step reads: no compression, no overviews (LZW and overviews cost 5x the rest of the step)
INTERMEDIATE = {"driver": "COG", "compress": "none", "blocksize": 512, "overviews": "NONE"}


def parse_aoi(aoi: str) -> tuple[float, float, float, float]:
    """``minx,miny,maxx,maxy`` -> four floats (a clear error otherwise)."""
    try:
        values = tuple(float(v) for v in aoi.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not values[0] < values[2] or not values[1] < values[3]:
        raise StepError(f"the aoi '{aoi}' is not a bounding box 'minx,miny,maxx,maxy' with min < max")
    return values[0], values[1], values[2], values[3]


def _profile(src_profile: dict[str, Any], layout: dict[str, Any], **changes: Any) -> dict[str, Any]:
    names = ("crs", "transform", "width", "height", "nodata")
    keep: dict[str, Any] = {k: src_profile[k] for k in names if k in src_profile}
    return {**keep, "count": 1, **layout, **changes}


def _cut(src: Any, shape: Any) -> tuple[Any, Any]:
    """Band 1 of ``src`` inside ``shape``, as rasterio's ``mask(src, [shape], crop=True)`` gives it (the window
    the shape's bounds cover, rounded outwards and clipped to the raster; pixels whose centre is outside the
    shape set to nodata, or 0), but read once: ``mask`` also reads the band's mask, which for a nodata-masked
    band decodes every tile a second time. Bands with a mask of their own (alpha, mask band) go through ``mask``.
    ValueError when the shape does not overlap the raster."""
    from rasterio.enums import MaskFlags
    from rasterio.errors import WindowError
    from rasterio.features import geometry_mask, geometry_window
    from rasterio.mask import mask

    if not set(src.mask_flag_enums[0]) <= {MaskFlags.nodata, MaskFlags.all_valid}:
        data, transform = mask(src, [shape], crop=True, indexes=1)
        return data, transform
    try:
        window = geometry_window(src, [shape])
    except WindowError:
        raise ValueError("Input shapes do not overlap raster.") from None
    transform = src.window_transform(window)
    outside = geometry_mask([shape], transform=transform, out_shape=(int(window.height), int(window.width)))
    data = src.read(1, window=window)
    data[outside] = src.nodata if src.nodata is not None else 0
    return data, transform


def crop(item_ref: str, aoi: str, epsg: str, band: str, out_dir: Path, settings: StepConfig) -> Path:
    """Write ``crop_<band>.tif``: the band of the item inside the AOI box (pixels of the source grid whose
    centre is outside the box, or outside the scene, are nodata)."""
    import rasterio
    from rasterio._err import CPLE_BaseError  # what GDAL raises, when a transformation fails
    from rasterio.crs import CRS
    from rasterio.errors import CRSError
    from rasterio.warp import transform as reproject_points
    from shapely.geometry import box, mapping

    from ogcflow.eo.items import find_asset, gdal_options, open_href, raster_env, read_item, refused_reads

    minx, miny, maxx, maxy = parse_aoi(aoi)
    item = read_item(item_ref, settings)
    _key, asset = find_asset(item, band)
    href = open_href(asset.get_absolute_href() or asset.href, item, settings)
    try:
        source_crs = CRS.from_epsg(int(epsg)) if epsg.strip().isdigit() else CRS.from_user_input(epsg)
    except CRSError:
        raise StepError(f"'{epsg}' is not a coordinate reference system (e.g. EPSG:4326)") from None
    try:
        with raster_env(href, GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", GDAL_HTTP_MAX_RETRY="3",
                        GDAL_HTTP_RETRY_DELAY="1", **gdal_options(href, settings)), rasterio.open(href) as src:
            # GDAL's PROJ, which opening the raster has set up in this process (pyproj's would be set up
            # again in every step process: ~10 ms); x before y, as for rasterio's CRS objects always
            unfit = f"the area of interest {aoi} ({epsg}) cannot be expressed in the CRS of item {item.id}"
            try:
                (x1, x2), (y1, y2) = reproject_points(source_crs, src.crs, [minx, maxx], [miny, maxy])
            except CPLE_BaseError as exc:
                raise StepError(f"{unfit}: {exc}") from None
            if not all(math.isfinite(v) for v in (x1, x2, y1, y2)):
                raise StepError(unfit)
            shape = box(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
            try:
                data, transform = _cut(src, mapping(shape))
            except ValueError as exc:
                if "overlap" in str(exc):
                    raise StepError(f"the area of interest {aoi} does not overlap item {item.id}") from None
                raise
            profile = _profile(src.profile, INTERMEDIATE, dtype="uint16", height=data.shape[0],
                               width=data.shape[1], transform=transform)
    except rasterio.errors.RasterioIOError as exc:
        why = refused_reads(settings) if not href.startswith("/") else ""
        raise StepError(f"the {band} asset of item {item.id} cannot be read: "
                        + (f"the network policy refused it: {why}" if why else str(exc))) from None
    out = Path(out_dir) / f"crop_{band}.tif"
    with raster_env(), rasterio.open(out, "w", **profile) as dst:
        dst.write(data.astype("uint16", copy=False), 1)
    return out


def norm_diff(first: Path, second: Path, out_dir: Path) -> Path:
    """Write ``norm_diff.tif``: (first - second) / (first + second), float32 (NaN where both are 0)."""
    import numpy as np
    import rasterio

    from ogcflow.eo.items import raster_env

    with raster_env(), rasterio.open(first) as a, rasterio.open(second) as b:
        if (a.width, a.height, a.transform) != (b.width, b.height, b.transform):
            raise StepError(f"{Path(first).name} and {Path(second).name} are not on the same grid")
        x = a.read(1, out_dtype="float32")
        y = b.read(1, out_dtype="float32")
        profile = _profile(a.profile, INTERMEDIATE, dtype="float32")
    with np.errstate(divide="ignore", invalid="ignore"):  # (x - y) / (x + y) with one temporary array
        ndwi = np.subtract(x, y)
        np.add(x, y, out=x)
        np.divide(ndwi, x, out=ndwi)
    out = Path(out_dir) / "norm_diff.tif"
    with raster_env(), rasterio.open(out, "w", **profile) as dst:
        dst.write(ndwi, 1)
    return out


def otsu(raster: Path, out_dir: Path) -> Path:
    """Write ``otsu.tif``: 1 where the value is above Otsu's threshold of the finite values, else 0."""
    import numpy as np
    import rasterio
    from skimage.filters import threshold_otsu

    from ogcflow.eo.items import raster_env

    with raster_env(), rasterio.open(raster) as src:
        values = src.read(1)
        profile = _profile(src.profile, COG, dtype="uint8")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise StepError("the area of interest holds no valid pixel of the scene (only no-data)")
    threshold = threshold_otsu(finite)  # type: ignore[no-untyped-call]
    with np.errstate(invalid="ignore"):
        water = (values > threshold).astype("uint8")
    out = Path(out_dir) / "otsu.tif"
    with raster_env(), rasterio.open(out, "w", **profile) as dst:
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

    from ogcflow.eo.items import raster_env, read_item

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
        with warnings.catch_warnings(), raster_env():
            warnings.simplefilter("ignore")  # rio-stac's notes about decimated statistics and the like
            result = create_stac_item(str(target), input_datetime=item.datetime, id=item.id, asset_name="data",
                                      asset_href=target.name, asset_roles=["data", "visual"], with_proj=True,
                                      with_raster=True)
        result.add_link(pystac.Link("derived_from", _source(ref, item), media_type="application/geo+json",
                                    title=f"input item {item.id}"))
        catalog.add_item(result)
    catalog.normalize_and_save(root_href=str(out_dir), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return out_dir / "catalog.json"
