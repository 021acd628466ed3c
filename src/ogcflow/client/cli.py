"""``ogcflow client`` (and ``ogcflow-client``): a client of any OGC API - Processes server.

It imports httpx, typer, rich and pyyaml only (s3fs when downloading from S3), never the server's modules.
The server, namespace and credentials come from options or the environment: ``OGCFLOW_URL``,
``OGCFLOW_NAMESPACE``, ``OGCFLOW_API_KEY`` (sent as ``X-API-Key``), ``OGCFLOW_TOKEN`` (an API key or an
OpenID access token, sent as ``Authorization: Bearer``), ``OGCFLOW_OUTPUT`` (text or json).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ogcflow import __version__
from ogcflow.client.download import download
from ogcflow.client.http import Client, ClientError, Target, pace
from ogcflow.client.inputs import InputError, build_request, load_document, prefer_header

FINISHED = {"successful", "failed", "dismissed"}
#: fewest seconds between two requests of ``watch`` for one job
MIN_INTERVAL = 1.0

app = typer.Typer(help="A client of any OGC API - Processes server (ogcflow, pygeoapi, ZOO, Weaver...).",
                  no_args_is_help=True, rich_markup_mode=None)
out = Console(soft_wrap=True)
err = Console(stderr=True)


@dataclass
class State:
    target: Target
    json: bool

    def client(self) -> Client:
        return Client(self.target)


def _version(value: bool) -> None:
    if value:
        print(f"ogcflow-client {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", envvar="OGCFLOW_URL", help="The server's root URL.")]
    = "http://127.0.0.1:5000",
    namespace: Annotated[str | None, typer.Option("--namespace", "-n", envvar="OGCFLOW_NAMESPACE",
                                                  help="An ogcflow namespace (its API: <url>/<namespace>/ogc-api).")]
    = None,
    api_key: Annotated[str | None, typer.Option(envvar="OGCFLOW_API_KEY", help="Sent as X-API-Key.")] = None,
    token: Annotated[str | None, typer.Option(envvar="OGCFLOW_TOKEN",
                                              help="Sent as Authorization: Bearer (an API key or an access token).")]
    = None,
    output: Annotated[str, typer.Option("--output", "-o", envvar="OGCFLOW_OUTPUT",
                                        help="text (tables, for people) or json (the server's documents, for "
                                             "scripts).")] = "text",
    timeout: Annotated[float, typer.Option(help="Seconds allowed for each request.")] = 60.0,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Talk to an OGC API - Processes server: list and describe processes, execute, watch jobs, download
    results, deploy application packages."""
    if output not in ("text", "json"):
        err.print("--output is text or json")
        raise typer.Exit(2)
    ctx.obj = State(Target(url=url, namespace=namespace, api_key=api_key, token=token, timeout=timeout),
                    json=output == "json")


def _state(ctx: typer.Context) -> State:
    state = ctx.obj
    assert isinstance(state, State)
    return state


def _emit(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _fail(exc: Exception, state: State | None = None) -> typer.Exit:
    document = getattr(exc, "document", None)
    if state is not None and state.json and document is not None:
        _emit(document)
    err.print(f"error: {exc}", markup=False, highlight=False)
    return typer.Exit(1)


def _schema_type(schema: Any) -> str:
    if not isinstance(schema, dict):
        return ""
    if "oneOf" in schema or "anyOf" in schema:
        return " | ".join(_schema_type(s) for s in schema.get("oneOf") or schema.get("anyOf") or [])
    kind = schema.get("type", "")
    if kind == "array":
        return f"array of {_schema_type(schema.get('items')) or 'any'}"
    extra = schema.get("format") or schema.get("contentMediaType") or ""
    if "enum" in schema:
        extra = "one of " + ", ".join(map(str, schema["enum"]))
    return f"{kind} ({extra})" if extra else str(kind or "object")


# -- processes ----------------------------------------------------------------------------------------


@app.command()
def processes(ctx: typer.Context,
              limit: Annotated[int | None, typer.Option(help="At most this many.")] = None) -> None:
    """The processes the server offers."""
    state = _state(ctx)
    try:
        with state.client() as client:
            found = client.processes(limit)
    except ClientError as exc:
        raise _fail(exc, state) from None
    if state.json:
        _emit(found)
        return
    table = Table("id", "version", "title", "execution")
    for p in found:
        table.add_row(str(p.get("id", "")), str(p.get("version", "")), str(p.get("title", "") or ""),
                      ", ".join(p.get("jobControlOptions", [])))
    out.print(table)


@app.command()
def describe(ctx: typer.Context, process_id: Annotated[str, typer.Argument(help="The process id.")]) -> None:
    """A process's inputs and outputs."""
    state = _state(ctx)
    try:
        with state.client() as client:
            doc = client.describe(process_id)
    except ClientError as exc:
        raise _fail(exc, state) from None
    if state.json:
        _emit(doc)
        return
    out.print(f"[bold]{doc.get('id')}[/] {doc.get('version', '')}: {doc.get('title', '')}")
    if doc.get("description"):
        out.print(doc["description"], markup=False)
    out.print("execution: " + ", ".join(doc.get("jobControlOptions", [])))
    inputs = Table("input", "type", "occurs", "default", "title", title="inputs")
    for name, spec in (doc.get("inputs") or {}).items():
        schema = spec.get("schema", {})
        occurs = f"{spec.get('minOccurs', 1)}..{spec.get('maxOccurs', 1)}"
        default = schema.get("default") if isinstance(schema, dict) else None
        inputs.add_row(name, _schema_type(schema), occurs, "" if default is None else json.dumps(default),
                       str(spec.get("title", "") or ""))
    out.print(inputs)
    outputs = Table("output", "type", "title", title="outputs")
    for name, spec in (doc.get("outputs") or {}).items():
        outputs.add_row(name, _schema_type(spec.get("schema", {})), str(spec.get("title", "") or ""))
    out.print(outputs)


# -- execute, status, watch ---------------------------------------------------------------------------


def _print_status(doc: dict[str, Any]) -> None:
    progress = doc.get("progress")
    out.print(f"job {doc.get('jobID')} ({doc.get('processID', '')}): [bold]{doc.get('status')}[/]"
              + (f" {progress}%" if progress is not None else "")
              + (f" - {doc['message']}" if doc.get("message") else ""), highlight=False)
    for key in ("created", "started", "finished"):
        if doc.get(key):
            out.print(f"  {key}: {doc[key]}", highlight=False)


def _print_results(body: Any) -> None:
    if isinstance(body, dict) and not body.get("type"):
        table = Table("output", "value")
        for name, value in body.items():
            if name == "links":
                continue
            text = str(value["href"]) if isinstance(value, dict) and "href" in value else json.dumps(value)
            table.add_row(name, text if len(text) < 2000 else text[:2000] + "...")
        out.print(table)
    else:
        _emit(body)


@app.command()
def execute(
    ctx: typer.Context,
    process_id: Annotated[str, typer.Argument(help="The process id.")],
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="name=value (JSON, or text; "
                                                     "@file reads a JSON/YAML file); repeat for arrays.")] = None,
    refs: Annotated[list[str] | None, typer.Option("--ref", help="name=URL: an input by reference.")] = None,
    file: Annotated[Path | None, typer.Option("--inputs", "-f", help="A JSON/YAML file: an execute request or a "
                                              "mapping of inputs (flags override it).")] = None,
    output_ids: Annotated[list[str] | None, typer.Option("--output-id", help="An output to return, "
                                                          "name[=value|reference].")] = None,
    mode: Annotated[str, typer.Option("--mode", help="auto (the server chooses), sync or async (Prefer: "
                                      "respond-async).")] = "auto",
    is_async: Annotated[bool, typer.Option("--async", help="Same as --mode async.")] = False,
    wait: Annotated[float | None, typer.Option(help="Prefer: wait=N (seconds a sync execution may take).")]
    = None,
    prefer: Annotated[str | None, typer.Option(help="More of the Prefer header, as is.")] = None,
    response: Annotated[str | None, typer.Option(help="raw or document (OGC 1.0 servers).")] = None,
    subscriber: Annotated[str | None, typer.Option(help="A callback URL for the job's end.")] = None,
    then_watch: Annotated[bool, typer.Option("--watch", "-w", help="Watch the job created, then print its "
                                             "results.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between requests of --watch (at least 1).")] = 1.0,
    save: Annotated[Path | None, typer.Option(help="Write a raw (non-JSON) result to this file.")] = None,
) -> None:
    """Execute a process: print its results (synchronous) or its job (asynchronous; --watch follows it)."""
    state = _state(ctx)
    if is_async:
        mode = "async"
    if mode not in ("auto", "sync", "async"):
        err.print("--mode is auto, sync or async")
        raise typer.Exit(2)
    try:
        body = build_request(inputs or [], refs or [], file, output_ids or [], response, subscriber)
    except InputError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    header = prefer_header(mode, wait, prefer)
    try:
        with state.client() as client:
            resp = client.execute(process_id, body, header)
            media = resp.headers.get("content-type", "")
            doc: Any = resp.json() if "json" in media and resp.content else None
            is_job = resp.status_code == 201 or (isinstance(doc, dict) and "jobID" in doc and "status" in doc
                                                 and resp.headers.get("location"))
            if is_job:
                job = resp.headers.get("location") or str((doc or {}).get("jobID"))
                if not then_watch:
                    if state.json:
                        _emit(doc if doc is not None else {"location": job})
                    else:
                        if isinstance(doc, dict):
                            _print_status(doc)
                        out.print(f"  location: {job}", highlight=False)
                    return
                final = _watch(client, state, job, interval, lines=sys.stderr)  # stdout: the results alone
                if final.get("status") != "successful":
                    raise typer.Exit(1)
                results = client.results(job)
                _emit(results) if state.json else _print_results(results)
                return
            if doc is None:
                if save is not None:
                    save.write_bytes(resp.content)
                    err.print(f"{len(resp.content)} bytes ({media}) written to {save}")
                else:
                    sys.stdout.buffer.write(resp.content)
                return
            _emit(doc) if state.json else _print_results(doc)
    except ClientError as exc:
        raise _fail(exc, state) from None


@app.command()
def status(ctx: typer.Context, job: Annotated[str, typer.Argument(help="A job id or URL.")]) -> None:
    """A job's status."""
    state = _state(ctx)
    try:
        with state.client() as client:
            doc = client.status(job)
    except ClientError as exc:
        raise _fail(exc, state) from None
    _emit(doc) if state.json else _print_status(doc)


@app.command()
def jobs(ctx: typer.Context, limit: Annotated[int, typer.Option(help="At most this many.")] = 20) -> None:
    """The newest jobs."""
    state = _state(ctx)
    try:
        with state.client() as client:
            found = client.jobs(limit)
    except ClientError as exc:
        raise _fail(exc, state) from None
    if state.json:
        _emit(found)
        return
    table = Table("job", "process", "status", "progress", "created", "message")
    for j in found:
        table.add_row(str(j.get("jobID")), str(j.get("processID", "")), str(j.get("status")),
                      "" if j.get("progress") is None else f"{j['progress']}%", str(j.get("created", "")),
                      str(j.get("message") or "")[:80])
    out.print(table)


def _log_link(doc: dict[str, Any]) -> str | None:
    for link in doc.get("links", []):
        href = link.get("href")
        if isinstance(href, str) and (link.get("rel") in ("describedby", "logs") and
                                      str(link.get("type", "")).startswith("text/plain")):
            return href
    return None


def _watch(client: Client, state: State, job: str, interval: float, log_every: int = 5,
           lines: Any = None) -> dict[str, Any]:
    """Follow a job to its end: at most one request each ``interval`` seconds (status, or now and then the
    log while it grows); a progress bar and each new message (text), or each new status (JSON lines, on
    ``lines``: stdout by default)."""
    lines = lines or sys.stdout
    interval = max(MIN_INTERVAL, interval)
    seen_log = 0
    last_message: str | None = None
    doc: dict[str, Any] = {}
    tick = 0
    last = time.monotonic() - interval
    show = not state.json
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                        TimeElapsedColumn(), console=err, transient=False, disable=not show)
    with progress:
        task = progress.add_task("accepted", total=100)
        while True:
            last = pace(last, interval)
            tick += 1
            href = _log_link(doc) if doc else None
            if href and tick % log_every == 0 and doc.get("status") not in FINISHED:
                found = client.log_tail(href, seen_log)
                if found is not None:
                    chunk, seen_log = found
                    for line in chunk.decode("utf-8", "replace").splitlines() if show else []:
                        progress.console.print(f"  | {line}", markup=False, highlight=False)
                continue
            previous = doc
            doc = client.status(job)
            status_now = str(doc.get("status"))
            if state.json:
                if doc.get("status") != previous.get("status") or doc.get("progress") != previous.get("progress") \
                        or doc.get("message") != previous.get("message"):
                    lines.write(json.dumps(doc, ensure_ascii=False) + "\n")
                    lines.flush()
            else:
                message = doc.get("message")
                if message and message != last_message:
                    progress.console.print(f"{time.strftime('%H:%M:%S')} {message}", markup=False,
                                           highlight=False)
                last_message = message
                pct = doc.get("progress")
                progress.update(task, description=f"{doc.get('jobID', job)} {status_now}",
                                completed=100 if status_now == "successful" else (pct or 0))
            if status_now in FINISHED:
                break
    href = _log_link(doc)
    if href and show and status_now != "dismissed":
        found = client.log_tail(href, seen_log)
        if found is not None:
            lines = found[0].decode("utf-8", "replace").splitlines()
            for line in lines[-20:]:
                err.print(f"  | {line}", markup=False, highlight=False)
    if show:
        err.print(f"job {doc.get('jobID', job)} {status_now}", highlight=False)
    return doc


@app.command()
def watch(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="A job id or URL.")],
    interval: Annotated[float, typer.Option(help="Seconds between requests (at least 1).")] = 1.0,
) -> None:
    """Follow a job to its end (a progress bar and its messages); exit 0 when it succeeded, 1 otherwise."""
    state = _state(ctx)
    try:
        with state.client() as client:
            final = _watch(client, state, job, interval)
    except ClientError as exc:
        raise _fail(exc, state) from None
    if final.get("status") != "successful":
        raise typer.Exit(1)


@app.command()
def results(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="A job id or URL.")],
    directory: Annotated[Path | None, typer.Option("--download", "-d", help="Download the results and every file "
                                                   "they refer to (STAC assets included) into this directory.")]
    = None,
) -> None:
    """A job's results; with --download, the files too (HTTP, S3 with s3fs, local files)."""
    state = _state(ctx)
    try:
        with state.client() as client:
            doc = client.results(job)
            if directory is None:
                _emit(doc) if state.json else _print_results(doc)
                return
            done = download(client, job, doc, directory,
                            (lambda m: None) if state.json else (lambda m: err.print(m, markup=False)))
    except ClientError as exc:
        raise _fail(exc, state) from None
    if state.json:
        _emit({"files": [str(p) for p in done.files], "skipped": done.skipped})
    else:
        out.print(f"{len(done.files)} file(s) in {directory}" + (f", {len(done.skipped)} skipped"
                                                                 if done.skipped else ""))
    if done.skipped:
        raise typer.Exit(1)


@app.command()
def dismiss(ctx: typer.Context, job: Annotated[str, typer.Argument(help="A job id or URL.")]) -> None:
    """Dismiss a job (stop it, or remove its results)."""
    state = _state(ctx)
    try:
        with state.client() as client:
            doc = client.dismiss(job)
    except ClientError as exc:
        raise _fail(exc, state) from None
    _emit(doc) if state.json else _print_status(doc)


def package_media_type(path: Path, data: bytes) -> str:
    """The deploy request's media type: CWL (YAML or JSON) or an OGC application package (JSON)."""
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(data)
        except ValueError:
            raise InputError(f"{path}: not JSON") from None
        if isinstance(doc, dict) and ("executionUnit" in doc or "processDescription" in doc):
            return "application/ogcapppkg+json"
        return "application/cwl+json"
    return "application/cwl+yaml"


@app.command()
def deploy(
    ctx: typer.Context,
    package: Annotated[Path, typer.Argument(help="A CWL file (.cwl, .yaml, .json) or an OGC application package "
                                            "(.json with executionUnit).")],
    replace: Annotated[str | None, typer.Option(help="Replace this deployed process instead (PUT).")] = None,
    media_type: Annotated[str | None, typer.Option(help="The Content-Type (default: from the file).")] = None,
) -> None:
    """Deploy an application package (OGC API - Processes - Part 2)."""
    state = _state(ctx)
    try:
        data = package.read_bytes()
        media = media_type or package_media_type(package, data)
        if media.endswith("yaml"):
            load_document(package)  # a clear error before the upload
    except (OSError, InputError) as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    try:
        with state.client() as client:
            resp = client.deploy(data, media, replace)
    except ClientError as exc:
        raise _fail(exc, state) from None
    doc: Any = resp.json() if resp.content and "json" in resp.headers.get("content-type", "") else {}
    if replace:
        doc = doc or {"id": replace, "replaced": True}
    if state.json:
        _emit(doc)
        return
    where = resp.headers.get("location", "")
    out.print(f"{'replaced' if replace else 'deployed'} {doc.get('id', replace or '')}"
              + (f" at {where}" if where else ""), highlight=False)


@app.command()
def undeploy(ctx: typer.Context, process_id: Annotated[str, typer.Argument(help="The process id.")]) -> None:
    """Undeploy a deployed process."""
    state = _state(ctx)
    try:
        with state.client() as client:
            client.undeploy(process_id)
    except ClientError as exc:
        raise _fail(exc, state) from None
    _emit({"id": process_id, "undeployed": True}) if state.json else out.print(f"undeployed {process_id}")


def run() -> None:
    """The ``ogcflow-client`` entry point."""
    app(prog_name="ogcflow-client")
