"""Synthetic Landsat Collection 2 Level-2 scenes with known water, for tests, benchmarks and the demo.

``ogcflow demo-data DIR`` writes STAC items shaped like Planetary Computer's ``landsat-c2-l2`` (asset keys
``green``/``nir08``/``qa_pixel``..., eo:bands, raster:bands, projection fields) with uint16 COGs on a
512 x 512, 30 m grid in UTM zone 10N, and the ground truth: the water polygons of each item (in the scene's
CRS) as GeoJSON. Everything is deterministic (fixed random seed).

Items (``<DIR>/<item id>/<item id>.json``):

- ``A``: the whole area of interest, a lake, a river and a pond;
- ``B``: same grid a week later, the lake 20 % smaller, a 50-pixel no-data strip across the AOI's west edge;
- ``C``: shifted 256 pixels east: covers part of the AOI only;
- ``D``: far east of the AOI (an item that misses it);
- ``S``: Sentinel-2-like asset keys (``B03``/``B08``, common names ``green``/``nir``) on A's grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the area of interest of the demo, EPSG:4326 (minx, miny, maxx, maxy), fully inside items A and B
AOI = (-121.43, 40.27, -121.33, 40.34)
EPSG = 32610
SIZE = 512
RES = 30.0
ORIGIN = (630015.0, 4470015.0)  # upper-left corner of items A and B
SCALE, OFFSET = 2.75e-05, -0.2
REFLECTANCE = {"water": (0.05, 0.02), "land": (0.07, 0.31)}  # (green, nir)
NOISE = 0.006


@dataclass(frozen=True)
class Scene:
    key: str
    item_id: str
    date: str
    platform: str
    origin: tuple[float, float]
    lake_scale: float = 1.0
    nodata_cols: tuple[int, int] | None = None
    sentinel_like: bool = False


SCENES = (
    Scene("A", "LC08_L2SP_043032_20231007_02_T1", "2023-10-07T18:45:12Z", "landsat-8", ORIGIN),
    Scene("B", "LC09_L2SP_043032_20231015_02_T1", "2023-10-15T18:45:20Z", "landsat-9", ORIGIN, lake_scale=0.8,
          nodata_cols=(100, 150)),
    Scene("C", "LC08_L2SP_042032_20231023_02_T1", "2023-10-23T18:39:02Z", "landsat-8",
          (ORIGIN[0] + 256 * RES, ORIGIN[1])),
    Scene("D", "LC09_L2SP_041032_20231031_02_T1", "2023-10-31T18:33:40Z", "landsat-9",
          (ORIGIN[0] + 2 * SIZE * RES, ORIGIN[1])),
    Scene("S", "S2B_10TFK_20231007_0_L2A", "2023-10-07T19:02:31Z", "sentinel-2b", ORIGIN, sentinel_like=True),
)


def _pixel(col: float, row: float) -> tuple[float, float]:
    """Scene A's pixel coordinates -> UTM coordinates (the features live in the world, not in a scene)."""
    return ORIGIN[0] + col * RES, ORIGIN[1] - row * RES


def water_polygons(lake_scale: float = 1.0) -> list[Any]:
    """The water of the demo world in EPSG:32610: a lake (an ellipse), a river (a band), a pond (a disc)."""
    from shapely import affinity
    from shapely.geometry import LineString, Point

    lake_centre = Point(*_pixel(230, 230))
    lake = affinity.scale(lake_centre.buffer(1.0, quad_segs=64), xfact=90 * RES * lake_scale,
                          yfact=60 * RES * lake_scale, origin=lake_centre)
    river = LineString([_pixel(60, 380), _pixel(450, 320)]).buffer(3.5 * RES, cap_style="flat")
    pond = Point(*_pixel(340, 160)).buffer(15 * RES, quad_segs=32)
    return [lake, river, pond]


def _grid(scene: Scene) -> Any:
    from rasterio.transform import from_origin

    return from_origin(scene.origin[0], scene.origin[1], RES, RES)


def truth_polygons(scene: Scene) -> list[Any]:
    """Where the scene shows water: the world's water inside the scene, minus its no-data strip."""
    from shapely.geometry import box

    transform = _grid(scene)
    left, top = transform.c, transform.f
    footprint = box(left, top - SIZE * RES, left + SIZE * RES, top)
    if scene.nodata_cols:
        a, b = scene.nodata_cols
        footprint = footprint.difference(box(left + a * RES, top - SIZE * RES, left + b * RES, top))
    parts = [p.intersection(footprint) for p in water_polygons(scene.lake_scale)]
    return [p for p in parts if not p.is_empty]


def _bands(scene: Scene, seed: int) -> dict[str, Any]:
    import numpy as np
    from rasterio.features import rasterize

    water = rasterize([(p, 1) for p in water_polygons(scene.lake_scale)], out_shape=(SIZE, SIZE),
                      transform=_grid(scene), fill=0, dtype="uint8").astype(bool)
    rng = np.random.default_rng(seed)
    out = {}
    for i, band in enumerate(("green", "nir08")):
        rho = np.where(water, REFLECTANCE["water"][i], REFLECTANCE["land"][i])
        rho = rho + rng.normal(0.0, NOISE, rho.shape)
        dn = np.clip(np.round((rho - OFFSET) / SCALE), 1, 65535).astype("uint16")
        if scene.nodata_cols:
            dn[:, scene.nodata_cols[0]:scene.nodata_cols[1]] = 0
        out[band] = dn
    out["qa_pixel"] = np.where(water, 21952, 21824).astype("uint16")
    if scene.nodata_cols:
        out["qa_pixel"][:, scene.nodata_cols[0]:scene.nodata_cols[1]] = 1
    return out


def _write_cog(path: Path, data: Any, scene: Scene) -> None:
    import rasterio

    profile = {"driver": "COG", "width": SIZE, "height": SIZE, "count": 1, "dtype": "uint16",
               "crs": f"EPSG:{EPSG}", "transform": _grid(scene), "nodata": 0, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _footprint_wgs84(scene: Scene) -> tuple[list[float], dict[str, Any]]:
    from pyproj import Transformer

    to_wgs84 = Transformer.from_crs(EPSG, 4326, always_xy=True)
    left, top = scene.origin
    right, bottom = left + SIZE * RES, top - SIZE * RES
    corners = [to_wgs84.transform(x, y) for x, y in ((left, top), (left, bottom), (right, bottom), (right, top))]
    ring = [[round(x, 6), round(y, 6)] for x, y in corners]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    return [min(xs), min(ys), max(xs), max(ys)], {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


_LANDSAT_BANDS = {
    "green": ("SR_B3", "green", 0.56, 0.06, "Green Band"),
    "nir08": ("SR_B5", "nir08", 0.86, 0.03, "Near Infrared Band 0.8"),
}
_SENTINEL_KEYS = {"green": "B03", "nir08": "B08"}
_SENTINEL_BANDS = {"green": ("B03", "green", 0.56, 0.045, "Band 3 - Green"),
                   "nir08": ("B08", "nir", 0.842, 0.145, "Band 8 - NIR")}


def _item(scene: Scene) -> dict[str, Any]:
    bbox, geometry = _footprint_wgs84(scene)
    left, top = scene.origin
    return stac_item(scene.item_id, scene.date, scene.platform, EPSG, (SIZE, SIZE),
                     (RES, 0.0, left, 0.0, -RES, top), bbox, geometry, sentinel_like=scene.sentinel_like)


def stac_item(item_id: str, date: str, platform: str, epsg: int, shape: tuple[int, int],
              transform: tuple[float, ...], bbox: list[float], geometry: dict[str, Any],
              sentinel_like: bool = False) -> dict[str, Any]:
    """A STAC item shaped like Planetary Computer's ``landsat-c2-l2`` (or, ``sentinel_like``, Sentinel-2 asset
    keys), its assets ``./green.tif``, ``./nir08.tif``, ``./qa_pixel.tif`` and ``./preview.png``."""
    cog = "image/tiff; application=geotiff; profile=cloud-optimized"
    assets: dict[str, Any] = {}
    table = _SENTINEL_BANDS if sentinel_like else _LANDSAT_BANDS
    for band, (name, common, centre, fwhm, title) in table.items():
        key = _SENTINEL_KEYS[band] if sentinel_like else band
        assets[key] = {
            "href": f"./{band}.tif", "type": cog, "title": title, "roles": ["data", "reflectance"],
            "eo:bands": [{"name": name, "common_name": common, "center_wavelength": centre,
                          "full_width_half_max": fwhm}],
            "raster:bands": [{"nodata": 0, "data_type": "uint16", "spatial_resolution": RES, "scale": SCALE,
                              "offset": OFFSET, "unit": "none"}],
        }
    assets["qa_pixel"] = {"href": "./qa_pixel.tif", "type": cog, "title": "Pixel Quality Assessment Band",
                          "roles": ["cloud", "cloud-shadow", "snow-ice", "water-mask"],
                          "raster:bands": [{"nodata": 1, "data_type": "uint16", "spatial_resolution": RES}]}
    assets["rendered_preview"] = {"href": "./preview.png", "type": "image/png", "title": "Rendered preview",
                                  "roles": ["overview"]}
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                            "https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "collection": "sentinel-2-l2a" if sentinel_like else "landsat-c2-l2",
        "geometry": geometry, "bbox": bbox,
        "properties": {
            "datetime": date, "platform": platform,
            "instruments": ["msi"] if sentinel_like else ["oli", "tirs"],
            "eo:cloud_cover": 0.0, "proj:epsg": epsg, "proj:shape": list(shape),
            "proj:transform": list(transform),
            "description": "synthetic scene generated by ogcflow demo-data (known water, see truth/)",
        },
        "links": [], "assets": assets,
    }


def generate(directory: Path, seed: int = 20231007) -> dict[str, Any]:
    """Write every scene, its item and its ground truth under ``directory``; return the index
    (also written to ``<directory>/index.json``)."""
    import numpy as np
    import rasterio
    from shapely.geometry import mapping

    directory = Path(directory)
    (directory / "truth").mkdir(parents=True, exist_ok=True)
    index: dict[str, Any] = {"aoi": ",".join(str(v) for v in AOI), "epsg": "EPSG:4326", "items": {}}
    for n, scene in enumerate(SCENES):
        where = directory / scene.item_id
        where.mkdir(parents=True, exist_ok=True)
        bands = _bands(scene, seed + n)
        for band in ("green", "nir08", "qa_pixel"):
            _write_cog(where / f"{band}.tif", bands[band], scene)
        preview = (bands["nir08"][::8, ::8] // 256).astype("uint8")
        with rasterio.open(where / "preview.png", "w", driver="PNG", width=preview.shape[1],
                           height=preview.shape[0], count=1, dtype="uint8", crs=f"EPSG:{EPSG}",
                           transform=_grid(scene) * _grid(scene).scale(8)) as dst:
            dst.write(np.ascontiguousarray(preview), 1)
        (where / f"{scene.item_id}.json").write_text(json.dumps(_item(scene), indent=1), encoding="utf-8")
        truth = {"type": "FeatureCollection", "crs": f"EPSG:{EPSG}",
                 "features": [{"type": "Feature", "properties": {}, "geometry": mapping(p)}
                              for p in truth_polygons(scene)]}
        (directory / "truth" / f"{scene.item_id}.geojson").write_text(json.dumps(truth), encoding="utf-8")
        index["items"][scene.key] = {"id": scene.item_id, "path": f"{scene.item_id}/{scene.item_id}.json",
                                     "truth": f"truth/{scene.item_id}.geojson"}
    (directory / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    return index
