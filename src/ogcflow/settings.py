"""Server settings: environment variables ``OGCFLOW_*`` and an optional YAML file.

The YAML file is named by ``OGCFLOW_CONFIG``; its keys are the field names below (lower case).
Environment variables win over the file.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML file named by OGCFLOW_CONFIG, if any."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get("OGCFLOW_CONFIG")
        self._data: dict[str, Any] = {}
        if path:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: the settings file must hold a mapping")
            self._data = {str(k).lower(): v for k, v in loaded.items()}

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every setting of the server, with its default."""

    model_config = SettingsConfigDict(env_prefix="OGCFLOW_", extra="ignore")

    data_dir: Path = Field(Path(".ogcflow"), description="Where the SQLite store and local results live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the job store (default: SQLite in the data directory)."
    )
    results_url: str | None = Field(None, description="Where results are kept (default: <data_dir>/results).")
    engine: Literal["local", "prefect"] = Field("local", description="Where jobs run.")
    public_url: str | None = Field(
        None, description="Base URL clients see (default: taken from each request)."
    )
    title: str = Field("ogcflow", description="Title of the service (landing page).")
    description: str = Field(
        "OGC API - Processes server for Earth-observation processing.", description="Service description."
    )
    sync_timeout: float = Field(
        300.0, description="Seconds a synchronous execution may wait before it falls back to async (201)."
    )
    job_timeout: float = Field(86400.0, description="Seconds a job may run before it is stopped and failed.")
    max_body_bytes: int = Field(20 * 1024 * 1024, description="Largest accepted request body (413 above).")
    fetch_max_bytes: int = Field(100 * 1024 * 1024, description="Largest input fetched by reference.")
    fetch_timeout: float = Field(30.0, description="Seconds allowed to fetch one input by reference.")
    allow_private_urls: bool = Field(
        False,
        description="Allow inputs by reference and callbacks to loopback/private addresses (off: refused).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Hosts always allowed for outbound fetches and callbacks."
    )
    callback_retries: int = Field(5, description="Delivery attempts for each callback.")
    callback_backoff: float = Field(1.0, description="First retry delay of callbacks, doubled each time.")
    heartbeat_seconds: float = Field(2.0, description="How often a worker marks its running jobs alive.")
    stale_after_seconds: float = Field(
        30.0, description="A running job whose worker is silent this long is failed as lost."
    )
    poll_interval: float = Field(0.05, description="Seconds between queue polls of an idle local worker.")
    job_list_max: int = Field(10000, description="Largest `limit` of /jobs and /processes.")
    cwl_container_runtime: Literal["none", "docker", "podman", "singularity", "udocker"] = Field(
        "none", description="Container runtime for CWL steps with DockerRequirement (none: local commands)."
    )
    cwl_image_map: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Container images of CWL tools run as local commands: image name -> the words that "
                    "replace the tool's baseCommand (JSON in the environment).",
    )
    default_packages: list[str] = Field(
        default_factory=lambda: ["water-bodies"],
        description="Shipped application packages deployed at first start (an undeploy is not undone).",
    )
    cwl_step_images: bool = Field(
        True, description="Map the container images of the water-bodies steps (crop, norm_diff, otsu, stac) to "
                          "ogcflow's own implementations when no container runtime is used.",
    )
    eo_local_roots: list[Path] = Field(
        default_factory=list,
        description="Local directories whose STAC items and assets EO steps may read (other local paths are "
                    "refused; URLs follow the network policy).",
    )
    pc_sas_url: str = Field(
        "https://planetarycomputer.microsoft.com/api/sas/v1",
        description="Planetary Computer SAS API that signs asset reads (<url>/token/<collection>).",
    )
    pc_signed_hosts: list[str] = Field(
        default_factory=lambda: ["*.blob.core.windows.net"],
        description="Hosts (glob patterns, host or host:port) whose asset hrefs are signed with a Planetary "
                    "Computer token.",
    )
    storage_platform: str = Field("ogcflow", description="storage:platform of assets written to S3 results.")
    admin_token: str | None = Field(
        None, description="Bearer token that may deploy, replace and undeploy processes (unset: nobody may)."
    )
    prefect_api_url: str | None = Field(
        None, description="Prefect API of the prefect engine (default: the PREFECT_API_URL variable)."
    )
    prefect_ui_url: str | None = Field(None, description="Prefect UI that job statuses link to (default: "
                                                         "the API URL without /api).")
    prefect_work_pool: str = Field("ogcflow", description="Prefect work pool of ogcflow jobs.")
    prefect_poll_interval: float = Field(
        0.5, description="Seconds between polls of the work pool (a submission on the same host wakes the "
                         "worker at once)."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ogcflow.db').resolve()}"

    @property
    def results_dir(self) -> Path:
        if self.results_url and not self.results_url.startswith(("s3://", "file://")):
            return Path(self.results_url)
        if self.results_url and self.results_url.startswith("file://"):
            return Path(self.results_url[len("file://") :])
        return self.data_dir / "results"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
