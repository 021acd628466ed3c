"""Application packages shipped with ogcflow (deployed by default, see ``OGCFLOW_DEFAULT_PACKAGES``)."""

from __future__ import annotations

from importlib import resources

from ogcflow.eo.stepserver import launcher_command

SHIPPED = {"water-bodies": "water-bodies.cwl"}

#: the container images of the water-bodies steps (by image name) -> the step, run by the worker's step
#: server (or by a fresh interpreter where there is none)
STEP_IMAGES = {name: launcher_command(step)
               for name, step in (("crop", "crop"), ("norm_diff", "norm_diff"), ("norm-diff", "norm_diff"),
                                  ("otsu", "otsu"), ("stac", "stac"))}


def shipped_package(name: str) -> str:
    """The CWL text of a shipped package."""
    try:
        filename = SHIPPED[name]
    except KeyError:
        raise KeyError(f"no shipped package '{name}' (there are: {', '.join(sorted(SHIPPED))})") from None
    return resources.files(__package__).joinpath(filename).read_text(encoding="utf-8")
