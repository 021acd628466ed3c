"""The one place that wires the server: plugins loaded, the process catalog's factories registered, the
store, results storage and engine built from the settings.

Nothing below this module imports a plugin: plugins (``OGCFLOW_PLUGINS``, default ``ogcflow.eo.plugin``)
are modules with a ``register(ext: Extensions)`` function, imported by name here, that add CWL hooks,
worker plugins, shipped packages and settings groups.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from ogcflow.auth.authenticator import Authenticator
from ogcflow.cgroups import JobCgroups
from ogcflow.cgroups import detect as detect_cgroups
from ogcflow.engines import native
from ogcflow.engines.base import Engine
from ogcflow.engines.worker import StoreQueue, Worker, WorkerPlugin
from ogcflow.packages.hooks import CWLHooks
from ogcflow.packages.process import CWLWarmUp, cwl_factory
from ogcflow.processes.builtin import builtin_processes
from ogcflow.processes.catalog import ProcessCatalog
from ogcflow.runtime import Runtime
from ogcflow.services.processes import ProcessService
from ogcflow.settings import CORE_GROUPS, Settings, SettingsGroup
from ogcflow.storage import make_storage
from ogcflow.store import Store, worker_identity

log = logging.getLogger("ogcflow.wiring")


@dataclass
class Extensions:
    """What plugins add to a server."""

    settings: Settings
    cwl: CWLHooks = field(default_factory=CWLHooks)
    worker_plugins: list[WorkerPlugin] = field(default_factory=list)
    #: name -> the text of a package shipped with the server (OGCFLOW_DEFAULT_PACKAGES names them)
    shipped: dict[str, Callable[[], str]] = field(default_factory=dict)
    settings_groups: list[type[SettingsGroup]] = field(default_factory=list)


@dataclass
class Server:
    """A wired server: the runtime the API and workers share, and what plugins added."""

    rt: Runtime
    ext: Extensions

    def processes(self) -> ProcessService:
        return ProcessService(self.rt, self.ext.shipped)

    def authenticator(self) -> Authenticator:
        s = self.rt.settings
        return Authenticator(s.auth, self.rt.store.apikeys, admin_token=s.server.admin_token,
                             data_dir=s.store.data_dir)

    def close(self) -> None:
        self.rt.close()


def load_plugins(settings: Settings) -> Extensions:
    ext = Extensions(settings=settings)
    for name in settings.plugins:
        module = importlib.import_module(name)
        register = getattr(module, "register", None)
        if not callable(register):
            raise RuntimeError(f"plugin {name} has no register(ext) function")
        register(ext)
        group = getattr(module, "SETTINGS", None)
        if isinstance(group, type) and issubclass(group, SettingsGroup):
            ext.settings_groups.append(group)
    return ext


def build(settings: Settings) -> Server:
    """The runtime from the settings (the data directory made, the store opened, plugins registered)."""
    ext = load_plugins(settings)
    settings.store.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.store.db_url)
    catalog = ProcessCatalog(builtin_processes(), store.processes)
    catalog.register_factory("cwl", cwl_factory(settings.cwl, settings.network, ext.cwl, settings.sandbox))
    catalog.register_factory(native.KIND, native.factory(settings.prefect))  # Prefect deployments
    rt = Runtime(settings=settings, store=store, storage=make_storage(settings.store), catalog=catalog)
    return Server(rt=rt, ext=ext)


def make_engine(rt: Runtime) -> Engine:
    """The engine the settings name (``OGCFLOW_ENGINE``), API side."""
    if rt.settings.engine.kind == "prefect":
        from ogcflow.engines.prefect import PrefectEngine

        return PrefectEngine(rt)
    from ogcflow.engines.local import LocalEngine

    return LocalEngine(rt)


def make_worker(server: Server, *, concurrency: int, callbacks: bool = True,
                parent_pid: int | None = None) -> Worker:
    """A worker daemon of the engine the settings name, with the plugins' start-up work."""
    rt = server.rt
    identity = worker_identity()
    if rt.settings.engine.kind == "prefect":
        from ogcflow.engines.prefect import PrefectRuns

        source: StoreQueue | PrefectRuns = PrefectRuns(rt, identity, max(1, concurrency))
    else:
        source = StoreQueue(rt, identity)
    plugins: list[WorkerPlugin] = [CWLWarmUp(), *server.ext.worker_plugins]
    return Worker(rt, source, concurrency=concurrency, callbacks=callbacks, parent_pid=parent_pid,
                  plugins=plugins, identity=identity, cgroups=job_cgroups(rt.settings))


def job_cgroups(settings: Settings) -> JobCgroups | None:
    """Where the worker makes its jobs' control groups (None: off, or the host has none to give; said once)."""
    if settings.sandbox.cgroups == "off":
        return None
    found = detect_cgroups()
    if isinstance(found, str):
        log.info("jobs get no control group of their own (%s): their processes have rlimits only", found)
        return None
    return found


def settings_groups(settings: Settings) -> list[type[SettingsGroup]]:
    """Every settings group of this server (the core ones and those of its plugins), for ``--help``."""
    groups = list(CORE_GROUPS)
    for name in settings.plugins:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        group = getattr(module, "SETTINGS", None)
        if isinstance(group, type) and issubclass(group, SettingsGroup):
            groups.append(group)
    return groups
