"""The ``ogcflow`` command: serve, worker, db."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ogcflow import __version__
from ogcflow.client.cli import app as client_app
from ogcflow.settings import Settings

console = Console(stderr=True)


def _settings_help() -> str:
    from ogcflow.wiring import settings_groups

    lines = ["Settings (environment variables; also keys of the YAML file named by OGCFLOW_CONFIG, in lower "
             "case without OGCFLOW_):", ""]
    for group in settings_groups(Settings()):
        lines.append(f"{group.group}: {(group.__doc__ or '').strip()}")
        for variable, description, default in group.describe():
            lines.append(f"  {variable}: {description} [default: {default}]")
    return "\n\n".join(lines)


app = typer.Typer(help="ogcflow: an OGC API - Processes server.", no_args_is_help=True,
                  rich_markup_mode=None)
db_app = typer.Typer(help="The job store.")
app.add_typer(db_app, name="db")
apikey_app = typer.Typer(help="API keys (stored hashed; a key is shown once, when it is created).",
                         no_args_is_help=True)
app.add_typer(apikey_app, name="apikey")
prefect_app = typer.Typer(help="Prefect deployments as OGC processes.", no_args_is_help=True)
app.add_typer(prefect_app, name="prefect")
app.add_typer(client_app, name="client")


def _logging(level: str, settings: Settings) -> dict[str, object]:
    """One log format for the process (OGCFLOW_LOG_FORMAT); the configuration, for uvicorn's workers."""
    from ogcflow import logs

    return logs.setup(level, settings.server.log_format)


def _metrics_dir(settings: Settings) -> None:
    """Where every API process of ``serve`` publishes its request metrics, for /metrics to add them up
    (emptied at start: counters restart with the server)."""
    directory = settings.store.data_dir / "metrics"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ["OGCFLOW_METRICS_DIR"] = str(directory.resolve())


def _version(value: bool) -> None:
    if value:
        print(f"ogcflow {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """ogcflow: an OGC API - Processes server, and a client of any such server (ogcflow client)."""


def _load_settings(**overrides: object) -> Settings:
    for key, value in overrides.items():
        if value is not None:
            os.environ[f"OGCFLOW_{key.upper()}"] = str(value)
    from ogcflow.settings import get_settings

    get_settings.cache_clear()
    return get_settings()


class _WorkerSupervisor:
    """Keeps the local worker daemon of ``serve`` running; restarts it if it dies."""

    def __init__(self, concurrency: int, log_level: str) -> None:
        self.cmd = [sys.executable, "-m", "ogcflow", "worker", "--concurrency", str(concurrency),
                    "--log-level", log_level, "--parent-pid", str(os.getpid())]
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, start_new_session=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(1.0):
            if self.proc is not None and self.proc.poll() is not None and not self.stopping.is_set():
                console.print(f"[yellow]worker exited ({self.proc.returncode}); starting it again[/]")
                self.proc = subprocess.Popen(self.cmd, start_new_session=True)

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _seed(settings: Settings) -> None:
    """Deploy the shipped packages of OGCFLOW_DEFAULT_PACKAGES that were never deployed by default."""
    if not settings.cwl.default_packages:
        return
    from ogcflow.wiring import build

    server = build(settings)
    try:
        for process_id in server.processes().seed(settings.cwl.default_packages):
            console.print(f"deployed the shipped package '{process_id}'")
    except KeyError as exc:  # a package of OGCFLOW_DEFAULT_PACKAGES that no plugin ships
        console.print(f"[yellow]OGCFLOW_DEFAULT_PACKAGES: {exc.args[0]}[/]")
    finally:
        server.close()


def _register_deployments(settings: Settings) -> None:
    """The Prefect deployments of OGCFLOW_PREFECT_DEPLOYMENTS as processes (a failure is told, not fatal)."""
    if not settings.prefect.deployments:
        return
    from ogcflow.engines.native import register
    from ogcflow.errors import ServiceUnavailable
    from ogcflow.store import Store

    store = Store(settings.store.db_url)
    try:
        for name in settings.prefect.deployments:
            try:
                record = register(settings.prefect, store.processes, name)
            except (LookupError, ValueError, ServiceUnavailable) as exc:
                console.print(f"[yellow]OGCFLOW_PREFECT_DEPLOYMENTS: {name}: {exc}[/]")
            else:
                console.print(f"process {record.id}: the Prefect deployment {record.entry}")
    finally:
        store.dispose()


@app.command(epilog=_settings_help())
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    workers: Annotated[int, typer.Option(help="Job slots of the local engine (concurrent jobs).")] = 2,
    api_workers: Annotated[int, typer.Option(help="API processes (uvicorn workers).")] = 1,
    data_dir: Annotated[Path | None, typer.Option(help="Data directory (OGCFLOW_DATA_DIR).")] = None,
    engine: Annotated[str | None, typer.Option(help="local or prefect (OGCFLOW_ENGINE).")] = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Start no worker (workers run elsewhere).")] = False,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
) -> None:
    """Start the API with its embedded defaults: SQLite store, results on disk, local worker processes."""
    settings = _load_settings(data_dir=data_dir, engine=engine)
    log_config = _logging(log_level, settings)
    settings.store.data_dir.mkdir(parents=True, exist_ok=True)
    _metrics_dir(settings)
    from ogcflow.store import migrate

    migrate(settings.store.db_url)
    _seed(settings)
    _register_deployments(settings)
    import uvicorn

    supervisor = None
    if not no_worker and workers > 0:
        supervisor = _WorkerSupervisor(workers, log_level)
        supervisor.start()
    banner = (f"ogcflow {__version__} serving on http://{host}:{port}/ (engine: {settings.engine.kind}, "
              f"data: {settings.store.data_dir.resolve()})")
    if settings.server.log_format == "json":  # every line of the output is JSON
        logging.getLogger("ogcflow").warning(banner)
    else:
        console.print(banner)
    try:
        uvicorn.run("ogcflow.api.app:app_factory", factory=True, host=host, port=port, workers=api_workers,
                    loop="uvloop", http="httptools", access_log=False, log_level=log_level, log_config=log_config,
                    timeout_graceful_shutdown=5)
    finally:
        if supervisor:
            supervisor.stop()


@app.command(epilog=_settings_help())
def worker(
    concurrency: Annotated[int, typer.Option(help="Jobs run at once.")] = 2,
    log_level: Annotated[str, typer.Option(help="Logging level.")] = "info",
    callbacks: Annotated[bool, typer.Option(help="Also deliver callbacks.")] = True,
    parent_pid: Annotated[int | None, typer.Option(help="Stop when this process is gone.")] = None,
) -> None:
    """Run jobs of the local engine from the shared store (on this or any other machine)."""
    settings = _load_settings()
    _logging(log_level, settings)
    from ogcflow.store import migrate
    from ogcflow.wiring import build, make_worker

    migrate(settings.store.db_url)
    make_worker(build(settings), concurrency=concurrency, callbacks=callbacks, parent_pid=parent_pid).run()


@app.command("demo-data")
def demo_data(
    directory: Annotated[Path, typer.Argument(help="Where to write the scenes, items and ground truth.")],
    seed: Annotated[int | None, typer.Option(help="Random seed of the noise (default: one per size).")] = None,
    size: Annotated[str, typer.Option(help="small: the demo's scenes with ground truth; full: two full-size "
                                           "7,741 x 7,841 Landsat-like items (about 340 MB) and the EO "
                                           "notebook's AOI.")] = "small",
) -> None:
    """Write synthetic Landsat C2 L2 scenes with known water (STAC items, COGs, ground truth)."""
    if size not in ("small", "full"):
        console.print("[red]--size must be small or full[/]")
        raise typer.Exit(2)
    if size == "full":
        from ogcflow.eo.fullscenes import generate_full

        index = generate_full(directory) if seed is None else generate_full(directory, seed=seed)
    else:
        from ogcflow.eo.scenes import generate

        index = generate(directory) if seed is None else generate(directory, seed=seed)
    for key, item in index["items"].items():
        console.print(f"{key}: {directory / item['path']}")
    truth = f"; ground truth in {directory / 'truth'}" if size == "small" else ""
    console.print(f"AOI {index['aoi']} ({index['epsg']}){truth}")


@app.command(epilog=_settings_help())
def demo(
    port: Annotated[int, typer.Option(help="Port of the server.")] = 5000,
    data_dir: Annotated[Path, typer.Option(help="Data directory (OGCFLOW_DATA_DIR).")] = Path(".ogcflow"),
    workers: Annotated[int, typer.Option(help="Job slots of the local engine.")] = 2,
    stay: Annotated[bool, typer.Option(help="Keep serving after the demo job.")] = True,
) -> None:
    """The server with its embedded defaults and a water-bodies job on synthetic Landsat scenes."""
    from ogcflow.demo import run

    raise typer.Exit(run(port, data_dir, workers, stay))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the store's tables (Alembic)."""
    settings = _load_settings()
    from ogcflow.store import migrate

    started = time.monotonic()
    migrate(settings.store.db_url)
    _seed(settings)
    console.print(f"store at newest revision ({time.monotonic() - started:.2f} s)")


def _store() -> tuple[Settings, object]:
    settings = _load_settings()
    from ogcflow.store import Store, migrate

    migrate(settings.store.db_url)
    return settings, Store(settings.store.db_url)


@apikey_app.command("create")
def apikey_create(
    namespace: Annotated[str, typer.Option(help="The namespace the key acts in.")],
    role: Annotated[str, typer.Option(help="reader, executor, deployer or admin (every namespace).")] = "executor",
    name: Annotated[str | None, typer.Option(help="A label (who or what holds it).")] = None,
) -> None:
    """Create an API key; it is printed once, alone on the last line."""
    from ogcflow.auth import apikeys
    from ogcflow.auth.authenticator import Authenticator, check_namespace
    from ogcflow.domain import Role
    from ogcflow.errors import OGCError
    from ogcflow.store import Store

    if role not in Role.__members__:
        console.print(f"[red]--role must be one of {', '.join(Role.__members__)}[/]")
        raise typer.Exit(2)
    try:
        check_namespace(namespace)
    except OGCError as exc:
        console.print(f"[red]--namespace: {exc.detail}[/]")
        raise typer.Exit(2) from None
    settings, store = _store()
    assert isinstance(store, Store)
    key = apikeys.generate()
    store.apikeys.create(key.key_id, key.secret_hash, namespace, Role(role), name)
    store.dispose()
    Authenticator.keys_changed(settings.store.data_dir)
    console.print(f"API key {key.key_id} for namespace {namespace} ({role}); send it as 'Authorization: Bearer "
                  "<key>' or 'X-API-Key: <key>'. It is not shown again:")
    print(key.key)


@apikey_app.command("list")
def apikey_list(namespace: Annotated[str | None, typer.Option(help="Only this namespace's keys.")] = None) -> None:
    """The keys (never their secrets)."""
    from rich.table import Table

    from ogcflow.store import Store

    _settings, store = _store()
    assert isinstance(store, Store)
    table = Table("id", "namespace", "role", "name", "created", "revoked")
    for rec in store.apikeys.all(namespace):
        table.add_row(rec.id, rec.namespace, rec.role.value, rec.name or "", rec.created.isoformat(timespec="seconds"),
                      rec.revoked.isoformat(timespec="seconds") if rec.revoked else "")
    store.dispose()
    Console(width=None if sys.stdout.isatty() else 200).print(table)  # piped: whole lines, nothing cut


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(help="The key's id (ogcflow apikey list).")]) -> None:
    """Revoke a key: it stops working at once on this host (within OGCFLOW_APIKEY_CACHE_SECONDS elsewhere)."""
    from ogcflow.auth.authenticator import Authenticator
    from ogcflow.store import Store

    settings, store = _store()
    assert isinstance(store, Store)
    done = store.apikeys.revoke(key_id)
    store.dispose()
    Authenticator.keys_changed(settings.store.data_dir)
    if not done:
        console.print(f"[red]no active key {key_id}[/]")
        raise typer.Exit(1)
    console.print(f"key {key_id} revoked")


if __name__ == "__main__":
    app()


@prefect_app.command("register")
def prefect_register(
    deployment: Annotated[str, typer.Argument(help="The deployment: <flow name>/<deployment name> (or its id).")],
    process_id: Annotated[str | None, typer.Option("--id", help="The process id (default: <flow>-<deployment>).")]
    = None,
    namespace: Annotated[str | None, typer.Option(help="Offer it in this namespace only (default: every "
                                                       "namespace).")] = None,
    output: Annotated[list[str] | None, typer.Option(help="An output the flow publishes: id (JSON data) or "
                                                          "id=media/type (a file); repeatable (default: one "
                                                          "output, 'result').")] = None,
) -> None:
    """Offer an existing Prefect deployment as an OGC process (inputs: its parameters; outputs: what the
    flow publishes with ogcflow.flows). Registering it again updates the process (a new parameter schema)."""
    settings, store = _store()
    from ogcflow.domain import SHARED_NAMESPACE
    from ogcflow.engines.native import OutputSpec, register
    from ogcflow.errors import ServiceUnavailable
    from ogcflow.store import Store

    assert isinstance(store, Store)
    try:
        outputs = tuple(OutputSpec.parse(o) for o in output or [])
        record = register(settings.prefect, store.processes, deployment, process_id=process_id,
                          namespace=namespace or SHARED_NAMESPACE, outputs=outputs)
    except (LookupError, ValueError, ServiceUnavailable) as exc:
        console.print(f"error: {exc}")
        raise typer.Exit(1) from None
    finally:
        store.dispose()
    scope = "every namespace" if record.namespace == SHARED_NAMESPACE else f"namespace {record.namespace}"
    console.print(f"process {record.id}: the Prefect deployment {record.entry} ({scope})")
    print(record.id)
