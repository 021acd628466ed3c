"""What EO steps need of the server's settings, handed to step processes in one variable.

Steps are separate processes started for every step of every job: reading this JSON costs nothing, while
building the full :class:`ogcflow.settings.Settings` costs ~0.15 s of imports. Only what steps need goes
there (no store URL, no tokens: a package's steps are code the platform did not write).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ogcflow.eo.settings import EOSettings
    from ogcflow.settings import NetworkSettings, Settings

ENV = "OGCFLOW_STEP_CONFIG"


@dataclass(frozen=True)
class StepConfig:
    """The network policy, local roots and signing of EO steps (same meaning as the settings of that name)."""

    data_dir: Path = Path(".ogcflow")
    allow_private_urls: bool = False
    allowed_hosts: list[str] = field(default_factory=list)
    fetch_timeout: float = 30.0
    fetch_max_bytes: int = 100 * 1024 * 1024
    eo_local_roots: list[Path] = field(default_factory=list)
    pc_sas_url: str = "https://planetarycomputer.microsoft.com/api/sas/v1"
    pc_signed_hosts: list[str] = field(default_factory=lambda: ["*.blob.core.windows.net"])

    @classmethod
    def from_settings(cls, settings: Settings) -> StepConfig:
        from ogcflow.eo.settings import EOSettings

        return cls.of(settings.store.data_dir, settings.network, settings.group(EOSettings))

    @classmethod
    def of(cls, data_dir: Path, network: NetworkSettings, eo: EOSettings) -> StepConfig:
        return cls(data_dir=data_dir, allow_private_urls=network.allow_private_urls,
                   allowed_hosts=list(network.allowed_hosts), fetch_timeout=network.fetch_timeout,
                   fetch_max_bytes=network.fetch_max_bytes, eo_local_roots=list(eo.eo_local_roots),
                   pc_sas_url=eo.pc_sas_url, pc_signed_hosts=list(eo.pc_signed_hosts))

    @classmethod
    def current(cls) -> StepConfig:
        """The configuration a step was started with, or the server's settings when run by hand."""
        raw = os.environ.get(ENV)
        if raw:
            data: dict[str, Any] = json.loads(raw)
            return cls(**{**data, "data_dir": Path(data["data_dir"]),
                          "eo_local_roots": [Path(p) for p in data.get("eo_local_roots", [])]})
        from ogcflow.settings import Settings

        return cls.from_settings(Settings())

    def to_env(self) -> str:
        data = asdict(self)
        data["data_dir"] = str(Path(self.data_dir).resolve())
        data["eo_local_roots"] = [str(Path(p).resolve()) for p in self.eo_local_roots]
        return json.dumps(data)
