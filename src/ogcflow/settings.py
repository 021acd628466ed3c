"""Server settings: environment variables ``OGCFLOW_*`` and an optional YAML file, in groups.

Each group (server, store, network, engine, prefect, cwl; plugins add their own, e.g. ``eo``) reads its own
variables; the names are flat and stable (``OGCFLOW_JOB_TIMEOUT``, ``OGCFLOW_CWL_CONTAINER_RUNTIME``...).
The YAML file is named by ``OGCFLOW_CONFIG``; its keys are those names without ``OGCFLOW_``, in lower case.
Environment variables win over the file; values given to :class:`Settings` win over both.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PREFIX = "OGCFLOW_"


def _yaml_file() -> dict[str, Any]:
    path = os.environ.get("OGCFLOW_CONFIG")
    if not path:
        return {}
    with open(path, encoding="utf-8") as fh:
        loaded = yaml.safe_load(fh) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: the settings file must hold a mapping")
    return {str(k).lower(): v for k, v in loaded.items()}


class _YamlSource(PydanticBaseSettingsSource):
    """The keys of the YAML file named by OGCFLOW_CONFIG that belong to one group."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self._data = _yaml_file()

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        assert issubclass(self.settings_cls, SettingsGroup)
        names = self.settings_cls.flat_names()
        return {field: self._data[flat] for flat, field in names.items() if flat in self._data}


class SettingsGroup(BaseSettings):
    """One group of settings. A field's variable is ``env_prefix`` + its name, or its alias."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", frozen=True, populate_by_name=True)
    #: the group's name in ``Settings`` and in ``--help``
    group: ClassVar[str] = ""

    @classmethod
    def flat_names(cls) -> dict[str, str]:
        """Flat name (the variable without ``OGCFLOW_``, lower case) -> field name."""
        prefix = str(cls.model_config.get("env_prefix", PREFIX))
        out = {}
        for name, info in cls.model_fields.items():
            alias = info.validation_alias if isinstance(info.validation_alias, str) else None
            variable = alias or (prefix + name)
            out[variable[len(PREFIX):].lower()] = name
        return out

    @classmethod
    def from_flat(cls: type[G], flat: dict[str, Any]) -> G:
        """The group from the environment and the file, overridden by the flat names given."""
        names = cls.flat_names()
        return cls(**{names[k]: v for k, v in flat.items() if k in names})

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

    @classmethod
    def describe(cls) -> Iterator[tuple[str, str, Any]]:
        """(variable, description, default) of every field, for ``--help``."""
        for flat, name in cls.flat_names().items():
            info = cls.model_fields[name]
            default = info.default if info.default_factory is None else info.default_factory()  # type: ignore[call-arg]
            yield PREFIX + flat.upper(), info.description or "", default


G = TypeVar("G", bound=SettingsGroup)


class ServerSettings(SettingsGroup):
    """The HTTP API."""

    group: ClassVar[str] = "server"
    public_url: str | None = Field(None, description="Base URL clients see in links and Location (default: the "
                                                     "request's Host if trusted, else the address it reached).")
    titiler_url: str | None = Field(
        None, description="A titiler server the HTML pages link each GeoTIFF asset to: its base URL (the link is "
        "<base>/cog/viewer?url=<asset>) or a template with {url} (the asset's URL, encoded).")
    trusted_hosts: list[str] = Field(
        default_factory=list, description="Host header values (host or host:port; '*' for any) that links and "
                                          "Location may be built from when OGCFLOW_PUBLIC_URL is unset.")
    title: str = Field("ogcflow", description="Title of the service (landing page).")
    description: str = Field("OGC API - Processes server for Earth-observation processing.",
                             description="Service description.")
    sync_timeout: float = Field(
        300.0, description="Seconds a synchronous execution may wait before it falls back to async (201).")
    max_body_bytes: int = Field(20 * 1024 * 1024, description="Largest accepted request body (413 above).")
    idempotency_ttl: float = Field(
        86400.0, gt=0, description="Seconds an execute request's Idempotency-Key is kept (its retries find its job).")
    sync_record: Literal["batched", "durable"] = Field(
        "batched", description="Records of cheap synchronous jobs run in the API: written in batches within "
        "~20 ms after the response (batched) or before it (durable; see docs/benchmarks.md for the cost). "
        "Requests with an Idempotency-Key are always recorded before the response.")
    job_list_max: int = Field(10000, description="Largest `limit` of /jobs and /processes.")
    admin_token: str | None = Field(
        None, description="A bearer token with the admin role (every namespace, deploying); unset: none.")
    cors_origins: list[str] = Field(
        ["*"], description="Origins whose browser pages may call the API (CORS): [\"*\"] any, [] none (a JSON list).")
    cors_methods: list[str] = Field(
        ["GET", "HEAD"], description="Methods those pages may use (add POST, PUT, DELETE for web clients that "
                                     "execute or deploy); OPTIONS is always answered.")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines of every ogcflow process: text, or json (one JSON object a line).")
    access_log: bool = Field(True, description="Log every HTTP request (logger ogcflow.access, level info).")
    metrics_token: str | None = Field(
        None, description="A bearer token that may read /metrics (besides admins; unset: admins only once "
                          "credentials are required, anybody on an open server).")


class StoreSettings(SettingsGroup):
    """Where jobs, processes and results are kept."""

    group: ClassVar[str] = "store"
    data_dir: Path = Field(Path(".ogcflow"), description="Where the SQLite store and local results live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the job store (default: SQLite in the data directory).")
    results_url: str | None = Field(None, description="Where results are kept (default: <data_dir>/results).")
    storage_platform: str = Field(
        "ogcflow", description="Key of the S3 results bucket in the storage:schemes of STAC items (storage v2.0.0).")
    results_namespace_prefix: bool = Field(
        False, description="Keep each namespace's results under a prefix of its own (s3://results/<namespace>/<job>/"
                           "...; <data_dir>/results/<namespace>/<job>/...) instead of s3://results/<job>/....")

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ogcflow.db').resolve()}"

    @property
    def results_dir(self) -> Path:
        if self.results_url and self.results_url.startswith("file://"):
            return Path(self.results_url[len("file://"):])
        if self.results_url and not self.results_url.startswith("s3://"):
            return Path(self.results_url)
        return self.data_dir / "results"


class NetworkSettings(SettingsGroup):
    """The policy of outbound fetches (inputs by reference, callbacks, packages by reference)."""

    group: ClassVar[str] = "network"
    fetch_max_bytes: int = Field(100 * 1024 * 1024, description="Largest input fetched by reference.")
    fetch_timeout: float = Field(30.0, description="Seconds allowed to fetch one input by reference.")
    allow_private_urls: bool = Field(
        False, description="Allow inputs by reference and callbacks to loopback/private addresses (off: refused).")
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Hosts always allowed for outbound fetches and callbacks.")
    local_roots: list[Path] = Field(
        default_factory=list, description="Directories under which File and Directory inputs given as local "
                                          "paths or file:// URLs may be read (none: such inputs are refused).")
    tool_download_max_bytes: int = Field(
        10 * 1024**3, gt=0,
        description="Bytes the NetworkAccess tools of one job may receive through the network policy, all "
                    "their commands and connections together (CONNECT tunnels included); at the limit their "
                    "connections are cut and later ones refused, and the job's log says why.")


class EngineSettings(SettingsGroup):
    """Where and how jobs run."""

    group: ClassVar[str] = "engine"
    kind: Literal["local", "prefect"] = Field("local", validation_alias="OGCFLOW_ENGINE",
                                              description="Where jobs run.")
    job_timeout: float = Field(86400.0, description="Seconds a job may run before it is stopped and failed.")
    heartbeat_seconds: float = Field(2.0, description="How often a worker marks its running jobs alive.")
    stale_after_seconds: float = Field(
        30.0, description="A running job whose worker is silent this long is failed as lost.")
    poll_interval: float = Field(0.05, description="Seconds between queue polls of an idle local worker.")
    callback_retries: int = Field(5, description="Delivery attempts for each callback.")
    callback_backoff: float = Field(1.0, description="First retry delay of callbacks, doubled each time.")


class ProcessRuns(BaseModel):
    """How the Prefect engine runs the jobs of one process (an execute request's ``prefect`` member wins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    retries: int = Field(default=0, ge=0, le=100)
    retry_delay_seconds: float = Field(default=0.0, ge=0, le=86400)
    work_queue: str | None = Field(default=None, min_length=1, max_length=100, pattern=r"^[^/%&<>]+$")


class PrefectSettings(SettingsGroup):
    """The Prefect engine."""

    model_config = SettingsConfigDict(env_prefix=PREFIX + "PREFECT_", extra="ignore", frozen=True,
                                      populate_by_name=True)
    group: ClassVar[str] = "prefect"
    api_url: str | None = Field(
        None, description="Prefect API of the prefect engine (default: the PREFECT_API_URL variable).")
    ui_url: str | None = Field(None, description="Prefect UI that job statuses link to (default: the API URL "
                                                 "without /api).")
    work_pool: str = Field("ogcflow", description="Prefect work pool of ogcflow jobs.")
    poll_interval: float = Field(
        0.5, description="Seconds between polls of the work pool (a submission on the same host wakes the "
                         "worker at once).")
    retry_seconds: float = Field(
        60.0, ge=0, description="How long a call to Prefect is retried while Prefect answers that it is busy "
                                "(HTTP 429, 503: a SQLite Prefect server under concurrent writes), with "
                                "exponential backoff and jitter (Retry-After honoured), before it fails (a 503 "
                                "for the API user); about what Prefect's own client allows. A worker's polling "
                                "loop retries for 1 s at most: it polls again anyway.")
    unreachable_seconds: float = Field(
        10.0, ge=0, description="How long a call to Prefect is retried while Prefect cannot be reached "
                                "(connection refused, reset or timed out; a gateway's 502) before it fails.")
    deployments: list[str] = Field(
        default_factory=list, description="Prefect deployments (<flow>/<deployment>, a JSON list) offered as OGC "
                                          "processes of every namespace: registered or updated when `ogcflow "
                                          "serve` starts, as `ogcflow prefect register` does.")
    processes: dict[str, ProcessRuns] = Field(
        default_factory=dict,
        description='Per process id: {"retries": N, "retry_delay_seconds": S, "work_queue": "name"} of its flow '
                    "runs (JSON in the environment); an execute request's \"prefect\" member overrides them.")
    task_runs: bool = Field(
        False, description="Show each job of a CWL run (a workflow's steps, scatter jobs) as a task run of the "
                           "job's flow run, with its own state and duration (from the run's log, to the second).")


class CWLSettings(SettingsGroup):
    """Application packages whose execution unit is CWL."""

    model_config = SettingsConfigDict(env_prefix=PREFIX + "CWL_", extra="ignore", frozen=True,
                                      populate_by_name=True)
    group: ClassVar[str] = "cwl"
    container_runtime: Literal["none", "docker", "podman", "singularity", "udocker"] = Field(
        "none", description="Container runtime for CWL steps with DockerRequirement (none: local commands).")
    image_map: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Container images of CWL tools run as local commands: image name -> the words that "
                    "replace the tool's baseCommand (JSON in the environment).")
    default_packages: list[str] = Field(
        default_factory=lambda: ["water-bodies"], validation_alias="OGCFLOW_DEFAULT_PACKAGES",
        description="Shipped application packages deployed at first start (an undeploy is not undone).")


class SandboxSettings(SettingsGroup):
    """The sandbox of CWL tools' commands (bubblewrap; docs/security.md)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX + "SANDBOX_", extra="ignore", frozen=True,
                                      populate_by_name=True)
    group: ClassVar[str] = "sandbox"
    enabled: bool = Field(
        True, validation_alias="OGCFLOW_SANDBOX",
        description="Run every command of a CWL tool in a bubblewrap sandbox (false is UNSAFE: deployed tools "
                    "then run with the server's user, environment, files and network).")
    bwrap: str = Field("bwrap", description="The bubblewrap command (Debian package bubblewrap).")
    uid_base: int = Field(
        100000, description="Sandboxed commands run as uid/gid uid_base + (job process id mod 50000), a user "
                            "of their own per job process with no files on the host.")
    network: Literal["policy", "deny", "host"] = Field(
        "policy", description="What a tool that declares NetworkAccess gets: policy (HTTP and HTTPS through a "
                              "proxy that applies the network policy, nothing else; docs/security.md), deny (no "
                              "network, as every other tool) or host (the host's network; UNSAFE: the network "
                              "policy is NOT applied to it).")
    max_cpu_seconds: int = Field(3600, description="CPU seconds per command (RLIMIT_CPU).")
    max_memory_mb: int = Field(
        4096, description="Memory per process of a command (RLIMIT_DATA), or the tool's ramMax if lower.")
    max_open_files: int = Field(1024, description="Open files per process of a command (RLIMIT_NOFILE).")
    max_processes: int = Field(256, description="Processes of one job process's sandbox user (RLIMIT_NPROC).")
    max_file_size_mb: int = Field(
        10240, description="Largest file a command writes (RLIMIT_FSIZE), or the tool's outdirMax/tmpdirMax "
                           "if lower.")
    read_only_paths: list[Path] = Field(
        default_factory=list, description="More host paths commands may read (besides /usr, the job's inputs "
                                          "and a minimal /etc).")
    cgroups: Literal["auto", "off"] = Field(
        "auto", validation_alias="OGCFLOW_JOB_CGROUPS",
        description="auto: every job runs in a control group of its own (cgroup v1 memory and pids hierarchies, "
                    "where writable), with the limits below for all its processes together, and is ended "
                    "whole; off: rlimits per process only.")
    job_memory_mb: int | None = Field(
        None, gt=0, validation_alias="OGCFLOW_JOB_MEMORY_MB",
        description="Memory of one job, all its processes together (its control group's limit; swap "
                    "included where accounted). Default: three quarters of the host's memory.")
    job_processes: int = Field(
        2048, gt=0, validation_alias="OGCFLOW_JOB_PROCESSES",
        description="Processes (and threads) of one job at once, all together (its control group's pids.max).")


class AuthSettings(SettingsGroup):
    """Who may do what (docs/security.md)."""

    group: ClassVar[str] = "auth"
    auth: Literal["auto", "required", "open"] = Field(
        "auto", description="required: every request needs credentials; open: namespaces are open to anyone "
                            "(deploying still needs a deployer); auto: required as soon as an OpenID issuer is "
                            "configured or an API key exists.")
    oidc_issuer: str | None = Field(
        None, description="OpenID Connect issuer whose access tokens (JWT) are accepted (discovery and JWKS are "
                          "read from it).")
    oidc_audience: str | None = Field("ogcflow", description="The audience (aud) tokens must be meant for.")
    oidc_namespace_claim: str = Field("namespace", description="The claim naming the caller's namespace "
                                                               "(a dotted path reads nested claims).")
    oidc_roles_claim: str = Field("roles", description="The claim listing the caller's roles (reader, executor, "
                                                       "deployer, admin; a dotted path such as "
                                                       "realm_access.roles reads nested claims).")
    oidc_default_roles: list[str] = Field(
        default_factory=list, description="Roles of a token whose roles claim is missing or empty (none: such "
                                          "tokens are refused).")
    oidc_leeway: float = Field(30.0, description="Seconds of clock skew allowed on exp and nbf.")
    apikey_cache_seconds: float = Field(
        2.0, description="How long an API process trusts what it read of a key (a key created or revoked on "
                         "the same host is seen at once).")


class PluginSettings(SettingsGroup):
    group: ClassVar[str] = "plugins"
    plugins: list[str] = Field(
        default_factory=lambda: ["ogcflow.eo.plugin"],
        description="Modules that extend the server (each has a register function): the default adds "
                    "Earth observation (STAC stage-out, the water-bodies steps and package).")


CORE_GROUPS: tuple[type[SettingsGroup], ...] = (ServerSettings, StoreSettings, NetworkSettings, AuthSettings,
                                                EngineSettings, PrefectSettings, CWLSettings, SandboxSettings,
                                                PluginSettings)


class Settings:
    """Every setting of the server, by group: ``settings.server.title``, ``settings.engine.kind``...

    ``Settings(data_dir=..., engine="prefect")`` takes overrides by flat name (as in the YAML file).
    Plugins read their own group with :meth:`group`.
    """

    def __init__(self, **flat: Any) -> None:
        self.overrides = {k.lower(): v for k, v in flat.items()}
        self.server = ServerSettings.from_flat(self.overrides)
        self.store = StoreSettings.from_flat(self.overrides)
        self.network = NetworkSettings.from_flat(self.overrides)
        self.auth = AuthSettings.from_flat(self.overrides)
        self.engine = EngineSettings.from_flat(self.overrides)
        self.prefect = PrefectSettings.from_flat(self.overrides)
        self.cwl = CWLSettings.from_flat(self.overrides)
        self.sandbox = SandboxSettings.from_flat(self.overrides)
        self.plugins = PluginSettings.from_flat(self.overrides).plugins
        self._groups: dict[type[SettingsGroup], SettingsGroup] = {}

    def group(self, cls: type[G]) -> G:
        """A plugin's group of settings (read once)."""
        found = self._groups.get(cls)
        if found is None:
            found = self._groups[cls] = cls.from_flat(self.overrides)
        assert isinstance(found, cls)
        return found


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
