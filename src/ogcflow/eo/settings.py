"""The settings of the EO plugin (same ``OGCFLOW_*`` names as ever)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from ogcflow.settings import SettingsGroup


class EOSettings(SettingsGroup):
    """Earth observation: the water-bodies steps, local STAC roots, Planetary Computer signing."""

    group: ClassVar[str] = "eo"
    cwl_step_images: bool = Field(
        True, description="Map the container images of the water-bodies steps (crop, norm_diff, otsu, stac) to "
                          "ogcflow's own implementations when no container runtime is used.")
    eo_local_roots: list[Path] = Field(
        default_factory=list,
        description="Local directories whose STAC items and assets EO steps may read (other local paths are "
                    "refused; URLs follow the network policy).")
    pc_sas_url: str = Field(
        "https://planetarycomputer.microsoft.com/api/sas/v1",
        description="Planetary Computer SAS API that signs asset reads (<url>/token/<collection>).")
    pc_signed_hosts: list[str] = Field(
        default_factory=lambda: ["*.blob.core.windows.net"],
        description="Hosts (glob patterns, host or host:port) whose asset hrefs are signed with a Planetary "
                    "Computer token.")
