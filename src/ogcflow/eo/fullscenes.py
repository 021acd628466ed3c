"""Full-size synthetic Landsat Collection 2 Level-2 scenes: the size users run water-bodies at.

``ogcflow demo-data DIR --size full`` writes two items arranged as in the EO notebook (Mono Lake, WRS-2
042/033, UTM zone 11N): ``F1`` covers the whole area of interest (a 2,404 x 1,822-pixel mask), ``F2``
(the next row south) only a strip of 482 rows along the AOI's southern edge. Each scene is a north-up
7,741 x 7,841 grid of 30 m pixels, as a Collection 2 product is, with the tilted image inside it and no-data
collars around (DN 0); bands ``green``, ``nir08`` and ``qa_pixel`` as COGs with 512 x 512 tiles, DEFLATE
with the horizontal predictor and internal overviews (what the USGS and Planetary Computer publish). The
texture is a world in EPSG:32611, the same for both items: a large lake with islands, a scatter of smaller
lakes, meandering rivers, land whose reflectance varies over kilometres and pixel noise.
Deterministic (fixed random seed).

``cut`` (pixels of margin around the AOI, for tests) writes the same items on a window of the full grid
(same grid, texture and tiling, other pixel noise; a few MB instead of about 200), ``aoi`` a smaller box
(tests: seconds to write).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ogcflow.eo.scenes import OFFSET, RES, SCALE, stac_item

#: the notebook's area of interest, EPSG:4326 (minx, miny, maxx, maxy)
FULL_AOI = (-118.89, 38.29, -118.277, 38.948)  # about 0.61 x 0.66 degrees: a 1821 x 2403-pixel box
FULL_EPSG = 32611
WIDTH, HEIGHT = 7741, 7841
TILT_DEGREES = 12.0  # the image inside its north-up grid, as a descending Landsat pass is
VALID_FRACTION = 0.84  # side of the tilted image / side of the grid


@dataclass(frozen=True)
class FullScene:
    key: str
    item_id: str
    date: str
    platform: str
    left: float  # upper-left corner of the full grid, EPSG:32611
    top: float


FULL_SCENES = (
    FullScene("F1", "LC09_L2SP_042033_20231015_02_T1", "2023-10-15T18:26:41Z", "landsat-9", 250785.0,
              4422615.0),
    # the next row south: its grid's top edge 482 rows above the AOI's bottom (the notebook's 482-row mask),
    # the top corner of its tilted image inside the AOI's columns
    FullScene("F2", "LC09_L2SP_042034_20231015_02_T1", "2023-10-15T18:27:05Z", "landsat-9", 320745.0,
              4254135.0),
)


def aoi_box_utm(aoi: tuple[float, float, float, float] = FULL_AOI) -> tuple[float, float, float, float]:
    """The AOI's two corners in EPSG:32611, as the crop step transforms them (left, bottom, right, top)."""
    from pyproj import Transformer

    to_utm = Transformer.from_crs(4326, FULL_EPSG, always_xy=True)
    x1, y1 = to_utm.transform(aoi[0], aoi[1])
    x2, y2 = to_utm.transform(aoi[2], aoi[3])
    return min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)


def _world(seed: int) -> list[Any]:
    """The water of the world (EPSG:32611 polygons): a large lake with two islands, small lakes, rivers."""
    import numpy as np
    from shapely import affinity
    from shapely.geometry import LineString, Point

    rng = np.random.default_rng(seed)
    left, bottom, right, top = aoi_box_utm()
    cx, cy = (left + right) / 2, (bottom + top) / 2
    lake = affinity.scale(Point(cx - 6000, cy + 2500).buffer(1.0, quad_segs=64), xfact=9000, yfact=7000)
    lake = lake.difference(Point(cx - 7500, cy + 3500).buffer(1200)).difference(Point(cx - 3500, cy + 800)
                                                                                 .buffer(500))
    reservoir = affinity.scale(Point(cx + 9000, bottom + 6500).buffer(1.0, quad_segs=48), xfact=6000,
                               yfact=2600)  # across the southern strip that F2 also covers
    shapes: list[Any] = [lake, reservoir]
    x0, y0, span = 100000.0, 4180000.0, 320000.0  # both grids
    for _ in range(160):
        centre = Point(x0 + rng.uniform(0, span), y0 + rng.uniform(0, 250000))
        a, b = rng.uniform(90, 1500), rng.uniform(90, 900)
        shapes.append(affinity.rotate(affinity.scale(centre.buffer(1.0, quad_segs=16), xfact=a, yfact=b),
                                      rng.uniform(0, 180)))
    for _ in range(6):
        x, y = x0 + rng.uniform(0, span), y0 + 250000.0
        heading, points = rng.uniform(-0.5, 0.5) - math.pi / 2, [(x, y)]
        for _ in range(400):
            heading += rng.normal(0, 0.25)
            heading = float(np.clip(heading, -math.pi + 0.3, -0.3))
            x, y = x + 700 * math.cos(heading), y + 700 * math.sin(heading)
            points.append((x, y))
        shapes.append(LineString(points).buffer(rng.uniform(45, 120), cap_style="flat"))
    return shapes


def _valid_footprint(scene: FullScene) -> Any:
    """The tilted image inside the scene's grid (EPSG:32611 polygon)."""
    from shapely import affinity
    from shapely.geometry import box

    w, h = WIDTH * RES, HEIGHT * RES
    cx, cy = scene.left + w / 2, scene.top - h / 2
    inner = box(cx - VALID_FRACTION * w / 2, cy - VALID_FRACTION * h / 2, cx + VALID_FRACTION * w / 2,
                cy + VALID_FRACTION * h / 2)
    return affinity.rotate(inner, -TILT_DEGREES, origin=(cx, cy)).intersection(
        box(scene.left, scene.top - h, scene.left + w, scene.top))


def _window(scene: FullScene, cut: int | None, aoi: tuple[float, float, float, float]
            ) -> tuple[int, int, int, int]:
    """(col_off, row_off, width, height) of what is written: the whole grid, or the AOI plus ``cut`` pixels."""
    if cut is None:
        return 0, 0, WIDTH, HEIGHT
    left, bottom, right, top = aoi_box_utm(aoi)
    c0 = max(0, math.floor((left - scene.left) / RES) - cut)
    c1 = min(WIDTH, math.ceil((right - scene.left) / RES) + cut)
    r0 = max(0, math.floor((scene.top - top) / RES) - cut)
    r1 = min(HEIGHT, math.ceil((scene.top - bottom) / RES) + cut)
    return c0, r0, c1 - c0, r1 - r0


def _smooth_field(rng: Any, shape: tuple[int, int], cell: int, window: tuple[int, int, int, int]) -> Any:
    """Noise varying over ``cell`` pixels, in [-1, 1] roughly (float32), over the grid ``shape``, computed
    on ``window`` only (col_off, row_off, width, height): a coarse random grid interpolated bilinearly, as
    ``scipy.ndimage.zoom(coarse, cell, order=1, grid_mode=False)`` would over the whole grid."""
    import numpy as np

    coarse = rng.standard_normal((shape[0] // cell + 3, shape[1] // cell + 3)).astype("float32")
    c0, r0, w, h = window

    def axis(n: int, start: int, length: int) -> tuple[Any, Any]:
        pos = np.arange(start, start + length, dtype=np.float64) * (n - 1) / (n * cell - 1)
        i0 = np.minimum(np.floor(pos).astype(np.intp), n - 2)
        return i0, pos - i0

    yi, fy = axis(coarse.shape[0], r0, h)
    xi, fx = axis(coarse.shape[1], c0, w)
    grid = coarse.astype(np.float64)
    fy, fx = fy[:, None], fx[None, :]
    top = (1 - fx) * grid[np.ix_(yi, xi)] + fx * grid[np.ix_(yi, xi + 1)]
    bottom = (1 - fx) * grid[np.ix_(yi + 1, xi)] + fx * grid[np.ix_(yi + 1, xi + 1)]
    return np.ascontiguousarray(((1 - fy) * top + fy * bottom).astype("float32"))


def _bands(scene: FullScene, window: tuple[int, int, int, int], water_shapes: list[Any], seed: int
           ) -> dict[str, Any]:
    import numpy as np
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    c0, r0, w, h = window
    rng = np.random.default_rng(seed)
    full = (HEIGHT, WIDTH)
    relief = _smooth_field(rng, full, 256, window)
    fields = _smooth_field(rng, full, 24, window)
    transform = from_origin(scene.left + c0 * RES, scene.top - r0 * RES, RES, RES)
    water = rasterize([(p, 1) for p in water_shapes], out_shape=(h, w), transform=transform, fill=0,
                      dtype="uint8").astype(bool)
    valid = rasterize([(_valid_footprint(scene), 1)], out_shape=(h, w), transform=transform, fill=0,
                      dtype="uint8").astype(bool)
    out: dict[str, Any] = {}
    for i, band in enumerate(("green", "nir08")):
        if band == "green":
            land = 0.085 + 0.025 * relief + 0.012 * fields
            wet = 0.055 + 0.008 * relief
        else:
            land = 0.28 + 0.06 * relief + 0.05 * fields
            wet = 0.02 + 0.004 * relief
        noise = np.random.default_rng((seed, i)).standard_normal((h, w), dtype=np.float32)
        rho = np.where(water, wet, land) + 0.006 * noise
        dn = np.clip(np.rint((rho - OFFSET) / SCALE), 1, 65535).astype("uint16")
        dn[~valid] = 0
        out[band] = dn
    qa = np.where(water, 21952, 21824).astype("uint16")
    qa[~valid] = 1
    out["qa_pixel"] = qa
    out["transform"] = transform
    return out


def _write_cog(path: Path, data: Any, transform: Any, nodata: int) -> None:
    import rasterio

    profile = {"driver": "COG", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": "uint16",
               "crs": f"EPSG:{FULL_EPSG}", "transform": transform, "nodata": nodata, "compress": "deflate",
               "predictor": 2, "blocksize": 512, "overviews": "auto", "resampling": "average",
               "num_threads": "all_cpus"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _footprint_wgs84(scene: FullScene) -> tuple[list[float], dict[str, Any]]:
    from pyproj import Transformer
    from shapely.geometry import mapping
    from shapely.ops import transform as reproject

    to_wgs84 = Transformer.from_crs(FULL_EPSG, 4326, always_xy=True)
    shape = reproject(to_wgs84.transform, _valid_footprint(scene))
    geometry = mapping(shape.simplify(0.0001))
    minx, miny, maxx, maxy = shape.bounds
    return [round(minx, 6), round(miny, 6), round(maxx, 6), round(maxy, 6)], json.loads(json.dumps(geometry))


def bands_transform_scaled(transform: Any, step: int) -> Any:
    return transform * transform.scale(step)


def generate_full(directory: Path, seed: int = 20231015, cut: int | None = None,
                  aoi: tuple[float, float, float, float] = FULL_AOI) -> dict[str, Any]:
    """Write the full-size items (or, ``cut``, their windows around ``aoi`` plus ``cut`` pixels) under
    ``directory``; return the index (also ``<directory>/index.json``): the AOI and, per key, the item's
    path. The world (lakes, rivers, texture) does not depend on ``aoi``, which must lie inside both grids
    (the AOI's southern strip)."""
    import numpy as np
    import rasterio

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"aoi": ",".join(str(v) for v in aoi), "epsg": "EPSG:4326", "items": {},
                             "size": "full" if cut is None else f"cut {cut}"}
    water = _world(seed)
    for n, scene in enumerate(FULL_SCENES):
        where = directory / scene.item_id
        where.mkdir(parents=True, exist_ok=True)
        window = _window(scene, cut, aoi)
        bands = _bands(scene, window, water, seed + n)
        transform = bands.pop("transform")
        for band, data in bands.items():
            _write_cog(where / f"{band}.tif", data, transform, nodata=1 if band == "qa_pixel" else 0)
        step = 32
        preview = (bands["nir08"][::step, ::step] // 256).astype("uint8")
        with rasterio.open(where / "preview.png", "w", driver="PNG", width=preview.shape[1],
                           height=preview.shape[0], count=1, dtype="uint8", crs=f"EPSG:{FULL_EPSG}",
                           transform=bands_transform_scaled(transform, step)) as dst:
            dst.write(np.ascontiguousarray(preview), 1)
        bbox, geometry = _footprint_wgs84(scene)
        c0, r0, w, h = window
        item = stac_item(scene.item_id, scene.date, scene.platform, FULL_EPSG, (h, w),
                         (RES, 0.0, scene.left + c0 * RES, 0.0, -RES, scene.top - r0 * RES), bbox, geometry)
        item["properties"]["description"] = "synthetic full-size Landsat-like scene generated by ogcflow demo-data"
        (where / f"{scene.item_id}.json").write_text(json.dumps(item, indent=1), encoding="utf-8")
        index["items"][scene.key] = {"id": scene.item_id, "path": f"{scene.item_id}/{scene.item_id}.json"}
    (directory / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return index
