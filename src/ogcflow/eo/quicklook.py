"""A small PNG quicklook of a raster asset, for maps and STAC browsers (the ``thumbnail`` asset of an item).

It is read from the raster's overviews (a decimated read: GDAL takes the overview level closest to the
quicklook's size, so a large COG is not read at full resolution) and drawn as RGBA:

- a mask (one integer band whose valid values are 0 and 1, like the water-bodies' ``otsu.tif``): 1 in blue,
  everything else transparent;
- any other single band: grey, stretched between its 2nd and 98th percentiles; no-data transparent;
- three bands or more: the first three as red, green and blue, each stretched the same way.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

#: the longest side of a quicklook, in pixels
SIZE = 256
WATER = (0, 102, 255)
PNG = "image/png"


def _stretch(band: Any, valid: Any) -> Any:
    import numpy as np

    values = band[valid]
    if values.size == 0:
        return np.zeros(band.shape, "uint8")
    low, high = np.percentile(values, [2, 98])
    if high <= low:
        high = low + 1
    return (np.clip((band.astype("float64") - low) / (high - low), 0, 1) * 255).astype("uint8")


def render(raster: Path, size: int = SIZE) -> bytes | None:
    """The quicklook of ``raster`` as PNG bytes, or None when it is not a raster GDAL reads (an item without a
    quicklook, not a failed job)."""
    from ogcflow.eo.items import raster_env

    with raster_env():  # a local file: no AWS session (the job's environment has the results' S3 credentials)
        return _render(raster, size)


def _render(raster: Path, size: int) -> bytes | None:
    import numpy as np
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.errors import NotGeoreferencedWarning, RasterioError
    from rasterio.io import MemoryFile

    try:
        with rasterio.open(raster) as src:
            scale = max(src.width, src.height) / size
            width, height = (max(1, round(src.width / scale)), max(1, round(src.height / scale))) \
                if scale > 1 else (src.width, src.height)
            bands = [1, 2, 3] if src.count >= 3 else [1]
            data = src.read(bands, out_shape=(len(bands), height, width), resampling=Resampling.nearest,
                            masked=True)
            integer = np.issubdtype(src.dtypes[0], np.integer)
    except (RasterioError, ValueError, TypeError):  # not a raster GDAL reads, or a band type it cannot decimate
        return None
    valid = ~np.ma.getmaskarray(data).any(axis=0)
    values = np.ma.getdata(data)
    rgba = np.zeros((4, height, width), "uint8")
    if len(bands) == 1 and integer and set(np.unique(values[0][valid]).tolist()) <= {0, 1}:
        water = valid & (values[0] == 1)
        for i, level in enumerate(WATER):
            rgba[i][water] = level
        rgba[3][water] = 255
    else:
        for i in range(3):
            rgba[i] = _stretch(values[min(i, len(bands) - 1)], valid)
        rgba[3][valid] = 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a picture, not a map: no transform
        with MemoryFile() as mem:
            with mem.open(driver="PNG", width=width, height=height, count=4, dtype="uint8") as dst:
                dst.write(rgba)
            return bytes(mem.read())


def warm_up() -> None:
    """Import rasterio and numpy, register GDAL's drivers and render a tiny quicklook: in a worker before it
    forks job processes, so that the stage-out of each job does not import them (0.5 s; 1.5 s on a busy
    machine)."""
    import numpy as np
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    from ogcflow.eo.items import raster_env

    with raster_env(), MemoryFile() as mem:
        with mem.open(driver="GTiff", width=16, height=16, count=1, dtype="uint8", nodata=0, crs="EPSG:32610",
                      transform=from_origin(630015, 4470015, 30, 30)) as dst:
            dst.write(np.eye(16, dtype="uint8"), 1)
        render(Path(mem.name))

