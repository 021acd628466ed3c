"""Command lines of the water-bodies steps, as the application package calls them:

    python -m ogcflow.eo crop --input-item URL --aoi minx,miny,maxx,maxy --epsg EPSG:4326 --band green
    python -m ogcflow.eo norm_diff crop_green.tif crop_nir08.tif
    python -m ogcflow.eo otsu norm_diff.tif
    python -m ogcflow.eo stac --input-item URL1 --water-body otsu1.tif [--input-item URL2 --water-body ...]

Files are written in the current directory. A step that cannot go on prints ``ERROR <step>: <why>`` on
standard error and exits with status 1.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from ogcflow.errors import ProcessError


@functools.cache  # built once in the step server, before it forks the steps
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ogcflow.eo", description="water-bodies steps")
    steps = parser.add_subparsers(dest="step", required=True)
    crop = steps.add_parser("crop", help="cut one band of a STAC item to the area of interest")
    crop.add_argument("--input-item", required=True)
    crop.add_argument("--aoi", required=True)
    crop.add_argument("--epsg", default="EPSG:4326")
    crop.add_argument("--band", required=True)
    nd = steps.add_parser("norm_diff", aliases=["norm-diff"], help="normalized difference of two rasters")
    nd.add_argument("rasters", nargs=2, type=Path)
    otsu = steps.add_parser("otsu", help="Otsu threshold of a raster: the water mask")
    otsu.add_argument("raster", type=Path)
    stac = steps.add_parser("stac", help="a STAC catalog of the water masks")
    stac.add_argument("--input-item", action="append", required=True)
    stac.add_argument("--water-body", action="append", type=Path, required=True)
    return parser


def _joined(argv: list[str]) -> list[str]:
    """``--aoi -121.4,40.2,...`` -> ``--aoi=-121.4,40.2,...`` (argparse takes a value starting with '-' for
    an option; CWL writes prefix and value as two words)."""
    out: list[str] = []
    it = iter(argv)
    for word in it:
        if word in _VALUED:
            value = next(it, None)
            out.append(word if value is None else f"{word}={value}")
        else:
            out.append(word)
    return out


_VALUED = ("--input-item", "--aoi", "--epsg", "--band", "--water-body")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_joined(sys.argv[1:] if argv is None else argv))
    from ogcflow.eo import steps
    from ogcflow.eo.config import StepConfig

    here = Path.cwd()
    step = "norm_diff" if args.step == "norm-diff" else args.step
    try:
        if step == "crop":
            out = steps.crop(args.input_item, args.aoi, args.epsg, args.band, here, StepConfig.current())
        elif step == "norm_diff":
            out = steps.norm_diff(args.rasters[0], args.rasters[1], here)
        elif step == "otsu":
            out = steps.otsu(args.raster, here)
        else:
            out = steps.stac(args.input_item, args.water_body, here, StepConfig.current())
    except ProcessError as exc:
        print(f"ERROR {step}: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
