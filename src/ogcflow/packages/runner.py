"""Running a CWL package with cwltool's Python API, in a job's working directory.

No fresh interpreter and no command-line parsing per job (cwltool's command line costs 1.6 s a run here;
its Python API a few ms). Steps run as local processes (no container runtime); scatter branches run in
parallel within the cores and memory ResourceRequirement asks for. The cwltool log of the run is written to
``<workdir>/cwltool.log``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ogcflow.errors import ProcessError
from ogcflow.packages.sandbox import POLICY_REFUSED, HidePrefix, Sandbox, js_engine, make_tool

log = logging.getLogger("ogcflow.cwl")


class CWLRunFailed(ProcessError):
    """The CWL run failed; the message says which step and why, the log has the rest."""


@dataclass
class CWLRun:
    outputs: dict[str, Any]
    log_path: Path


_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")


def _server_paths(workdir: Path) -> list[tuple[str, str]]:
    """(prefix, placeholder) of the server's own paths that a run's log and messages may show, longest first:
    the job's directory, the Python installation, the temporary directory, the home and working directory."""
    import tempfile

    found = [(str(workdir.resolve().parent), "$JOB"), (str(workdir.parent), "$JOB")]
    found += [(p, "$PYTHON") for p in {sys.prefix, sys.base_prefix, sys.exec_prefix}]
    found += [(tempfile.gettempdir(), "$TMP"), (os.path.expanduser("~"), "$HOME"), (os.getcwd(), "$SERVER")]
    usable = {(p.rstrip("/"), name) for p, name in found if len(p.rstrip("/")) > 1}
    return sorted(usable, key=lambda pair: -len(pair[0]))


def redact_paths(text: str, workdir: Path) -> str:
    """``text`` with the server's own paths replaced by placeholders ($JOB, $PYTHON, $TMP, ...)."""
    for prefix, name in _server_paths(workdir):  # whole path components only: /tmp, not .../cwl/tmp
        text = re.sub(rf"(?:(?<=file://)|(?<![\w./$-])){re.escape(prefix)}(?![\w.-])", name.replace("\\", "\\\\"), text)
    return text


#: lines of a Python traceback (cwltool's or its libraries' own errors): never part of a failure message
_PYTHON_TRACE = re.compile(r"^(Traceback \(most recent call last\)|File \"|\w+(\.\w+)+(Error|Exception)\b)")


_JOB_LINE = re.compile(r"\[job ([^\]\s]+)\] (?:completed (\w+)$)?")


def step_event(line: str) -> tuple[str, str | None] | None:
    """What a line of a CWL run's log says of one of the run's jobs (a step of a workflow, a scatter job, the
    tool itself): (its name, None) for a line of a job that runs, (its name, how) for its end ('success',
    'permanentFail', ...); None for other lines."""
    match = _JOB_LINE.search(_STAMP.sub("", line, count=1))
    if match is None or match.start() != 0:
        return None
    return match.group(1), match.group(2)


def _failure_summary(log_path: Path) -> str:
    """Why a run failed, in a few lines of its log: the steps' own ``ERROR <step>: ...`` messages when there
    are some; otherwise which steps exited with which status, and the error lines they printed (no Python
    tracebacks, no server paths)."""
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    steps = [ln.strip()[len("ERROR "):] for ln in lines if ln.startswith("ERROR ")]
    if steps:
        return redact_paths("; ".join(dict.fromkeys(steps))[-1500:], log_path.parent)
    telling = [_STAMP.sub("", ln).strip() for ln in lines
               if any(k in ln for k in ("exited with status", "error:", "Error:", "not found", POLICY_REFUSED))
               or (ln and not _STAMP.match(ln) and ln.split(":", 1)[0].endswith(("Error", "Exception")))]
    telling = [ln for ln in telling if not _PYTHON_TRACE.match(ln)]
    return redact_paths("; ".join(list(dict.fromkeys(telling))[:8])[-1500:], log_path.parent)


def _redact_log(log_path: Path, workdir: Path) -> None:
    """The run's log as users see it: the server's paths replaced by placeholders."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
        log_path.write_text(redact_paths(text, workdir), encoding="utf-8")
    except OSError:
        pass


_WARM_UP = """cwlVersion: {version}
class: CommandLineTool
id: warm-up
baseCommand: [echo]
inputs: {{}}
outputs: {{}}
"""


def warm_up() -> None:
    """Import cwltool and build its document loaders for each CWL version (done once per worker, before
    forking job processes, which then inherit them)."""
    import tempfile

    from cwltool.factory import Factory

    cwl_logger = logging.getLogger("cwltool")
    level = cwl_logger.level
    cwl_logger.setLevel(logging.WARNING)  # not the "Resolved ..." lines of the warm-up documents
    try:
        with tempfile.TemporaryDirectory(prefix="ogcflow-warm-") as tmp:
            for version in ("v1.0", "v1.1", "v1.2"):
                path = Path(tmp) / f"warm-{version}.cwl"
                path.write_text(_WARM_UP.format(version=version), encoding="utf-8")
                Factory().make(str(path))
    finally:
        cwl_logger.setLevel(level)


def _with_paths(value: Any) -> Any:
    """Give every File and Directory of the outputs its local ``path`` (cwltool gives ``file://`` locations)."""
    if isinstance(value, list):
        return [_with_paths(v) for v in value]
    if isinstance(value, dict):
        out = {k: _with_paths(v) for k, v in value.items()}
        location = out.get("location")
        if out.get("class") in ("File", "Directory") and isinstance(location, str) \
                and location.startswith("file://"):
            from urllib.parse import unquote, urlsplit

            out["path"] = unquote(urlsplit(location).path)
        return out
    return value


def container_options(runtime: str) -> dict[str, Any]:
    """cwltool's runtime options for a container runtime (``none``: steps run as local processes)."""
    if runtime == "none":
        return {"use_container": False}
    options: dict[str, Any] = {"use_container": True}
    if runtime == "podman":
        options["podman"] = True
    elif runtime == "singularity":
        options["singularity"] = True
    elif runtime == "udocker":
        options["user_space_docker_cmd"] = "udocker"
    return options


class _StepProgress(logging.Handler):
    """Tells ``report`` each time a step of the run ends (from cwltool's log): "3 of 9 steps done, last:
    node_otsu (ok)", with the fraction done when the number of steps is known (:func:`expected_steps`)."""

    _DONE = re.compile(r"^\[job (\S+)\] completed (\w+)")

    def __init__(self, report: Callable[[str, float | None], None], total: int | None) -> None:
        super().__init__(logging.INFO)
        self.report = report
        self.total = total
        self.done = 0

    def emit(self, record: logging.LogRecord) -> None:
        match = self._DONE.match(record.getMessage())
        if match:
            self.done += 1
            step, how = match.groups()
            total = self.total if self.total and self.total >= self.done else None
            count = f"{self.done} of {total}" if total else str(self.done)
            self.report(f"{count} step{'s' if (total or self.done) > 1 else ''} done, last: {step} "
                        f"({'ok' if how == 'success' else how})", self.done / total if total else None)


def _short_id(identifier: str) -> str:
    return identifier.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def _workflow_input(source: str, workflow: str) -> str:
    """The workflow input a step's ``source`` names ("" when it is another step's output)."""
    fragment = source.rsplit("#", 1)[-1].removeprefix(workflow + "/")
    return "" if "/" in fragment else fragment


def expected_steps(process: Any, job_order: Mapping[str, Any], depth: int = 0) -> int | None:
    """How many tool runs (command line and expression tools) a run of cwltool's ``process`` on
    ``job_order`` makes: scattered steps count once per element of their scattered inputs, which must be
    workflow inputs (or defaults) for the count to be known; None when it cannot be told before the run
    (scatter over another step's output, ``valueFrom`` on a scattered input, conditional steps)."""
    steps = getattr(process, "steps", None)
    if steps is None:
        return 1
    if depth > 16:
        return None
    values = dict(job_order)
    for param in process.tool.get("inputs", []):
        name = _short_id(str(param.get("id", "")))
        if name not in values and "default" in param:
            values[name] = param["default"]
    own = str(process.tool.get("id", "")).rsplit("#", 1)[-1]
    total = 0
    for step in steps:
        if step.tool.get("when") is not None:
            return None
        ins: dict[str, Any] = {}
        for param in step.tool.get("inputs", []):
            name = _short_id(str(param.get("id", "")))
            source = param.get("source")
            if param.get("valueFrom") is not None:
                continue
            if isinstance(source, str) and _workflow_input(source, own) in values:
                ins[name] = values[_workflow_input(source, own)]
            elif "default" in param:
                ins[name] = param["default"]
        scatter = step.tool.get("scatter")
        if not scatter:
            inner = expected_steps(step.embedded_tool, ins, depth + 1)
            if inner is None:
                return None
            total += inner
            continue
        names = [_short_id(s) for s in ([scatter] if isinstance(scatter, str) else scatter)]
        arrays = [ins.get(n) for n in names]
        if not all(isinstance(a, list) for a in arrays):
            return None
        lists: list[list[Any]] = [a for a in arrays if isinstance(a, list)]
        if step.tool.get("scatterMethod", "dotproduct") == "dotproduct":
            combos = [dict(zip(names, vals, strict=False)) for vals in zip(*lists, strict=False)]
        else:
            import itertools

            combos = [dict(zip(names, vals, strict=False)) for vals in itertools.product(*lists)]
        for combo in combos:
            inner = expected_steps(step.embedded_tool, {**ins, **combo}, depth + 1)
            if inner is None:
                return None
            total += inner
    return total


#: loaded packages: (file, entry, container runtime) -> cwltool's process object. Workers load a job's package
#: before forking its process (:func:`load_package`), so job processes find it here instead of loading and
#: validating the document again (~0.12 s for water-bodies).
_LOADED: dict[tuple[str, str, str], Any] = {}
_FILES: list[str] = []  # the private directory of package files of this process (made on first use)


def package_file(text: str) -> Path:
    """The CWL text in a file named after its content, in a private directory of this process (and of the
    job processes it forks), so that the same package text is the same file, loaded once."""
    import hashlib
    import tempfile

    if not _FILES:
        import atexit
        import shutil

        _FILES.append(tempfile.mkdtemp(prefix="ogcflow-packages-"))
        pid = os.getpid()  # job processes end with os._exit: only the process that made it removes it
        def remove() -> None:
            if os.getpid() == pid:
                shutil.rmtree(_FILES[0], ignore_errors=True)

        atexit.register(remove)
    path = Path(_FILES[0]) / f"{hashlib.sha256(text.encode()).hexdigest()}.cwl"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.part")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path


def _loading_context(container_runtime: str) -> Any:
    from cwltool.context import LoadingContext

    options = container_options(container_runtime)
    context = LoadingContext({"strict": False, "do_validate": True, "podman": bool(options.get("podman")),
                              "singularity": bool(options.get("singularity"))})
    context.construct_tool_object = make_tool  # type: ignore[assignment]  # commands run in the job's sandbox
    return context


def load_package(package: Path, entry: str, container_runtime: str = "none") -> Any:
    """cwltool's process object of ``entry`` in ``package`` (loaded and validated once per process)."""
    from cwltool.factory import Factory

    key = (str(package), entry, container_runtime)
    if key not in _LOADED:
        if len(_LOADED) > 64:
            _LOADED.clear()
        _LOADED[key] = Factory(loading_context=_loading_context(container_runtime)).make(
            f"{package.resolve().as_uri()}#{entry}").t
    return _LOADED[key]


def run_package(package: Path, entry: str, job_order: dict[str, Any], workdir: Path,
                parallel: bool = True, container_runtime: str = "none", env: dict[str, str] | None = None,
                on_step: Callable[[str, float | None], None] | None = None,
                sandbox: Sandbox | None = None) -> CWLRun:
    """Run workflow/tool ``entry`` of the CWL file ``package`` on ``job_order``; CWL outputs as cwltool
    returns them (Files and Directories with local ``path``s under ``workdir/outputs``).

    ``env`` is added to the steps' environment (cwltool otherwise gives them only HOME, TMPDIR and the
    package's EnvVarRequirement). The steps' standard error goes to the run's log. ``on_step`` hears of
    every step that ends (its message, and the fraction of the run's steps done when it is known). With a
    ``sandbox``, every local command of the run and every JavaScript expression runs in it
    (``ogcflow.packages.sandbox``)."""
    from cwl_utils import sandboxjs
    from cwltool.context import RuntimeContext
    from cwltool.executors import MultithreadedJobExecutor, SingleJobExecutor
    from cwltool.factory import Callable as CWLCallable
    from cwltool.factory import Factory, WorkflowStatus

    workdir.mkdir(parents=True, exist_ok=True)
    for sub in ("outputs", "tmp", "stage"):
        (workdir / sub).mkdir(exist_ok=True)
    log_path = workdir / "cwltool.log"
    handler = logging.FileHandler(log_path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.addFilter(HidePrefix())
    cwl_logger = logging.getLogger("cwltool")
    consoles = [h for h in cwl_logger.handlers if type(h) is logging.StreamHandler]
    for console in consoles:  # cwltool's own handler writes to standard error, which is the log file below
        cwl_logger.removeHandler(console)
    cwl_logger.addHandler(handler)
    progress = None
    if on_step:
        try:
            total = expected_steps(load_package(package, entry, container_runtime), job_order)
        except Exception:  # counting is a nicety: a package it does not understand still runs
            total = None
        progress = _StepProgress(on_step, total)
    if progress:
        cwl_logger.addHandler(progress)
    old_level, old_propagate = cwl_logger.level, cwl_logger.propagate
    cwl_logger.setLevel(logging.INFO)
    cwl_logger.propagate = False  # the run's log goes to its file, not to the worker's output
    runtime = RuntimeContext({
        "outdir": str(workdir / "outputs"),
        "tmpdir_prefix": str(workdir / "tmp") + "/",
        "tmp_outdir_prefix": str(workdir / "stage") + "/",
        "move_outputs": "move",
        "compute_checksum": False,  # a SHA-1 of every output file of every step (e.g. 35 MB of rasters), unused
        **container_options(container_runtime),
    })
    saved_js = sandboxjs.get_js_engine()
    if sandbox is not None:
        setattr(runtime, "ogcflow_sandbox", sandbox)  # noqa: B010 - read by the sandboxed job class
        sandboxjs.set_js_engine(js_engine(sandbox))
    saved_env = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    runtime.preserve_environment = sorted(env or {})
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    saved_stderr = os.dup(2)
    sys.stderr.flush()
    os.dup2(log_fd, 2)  # steps inherit standard error: their messages land in the run's log
    executor = MultithreadedJobExecutor() if parallel else SingleJobExecutor()
    try:
        factory = Factory(executor=executor, loading_context=_loading_context(container_runtime),
                          runtime_context=runtime)
        tool = CWLCallable(load_package(package, entry, container_runtime), factory)
        outputs = tool(**job_order)
    except WorkflowStatus as exc:
        summary = _failure_summary(log_path)
        raise CWLRunFailed(f"the CWL run ended {exc.status}" + (f": {summary}" if summary else "")) from None
    except Exception as exc:  # loading or runtime errors of cwltool: its message is the point
        raise CWLRunFailed(f"cwltool could not run the package: {redact_paths(str(exc), workdir)}") from None
    finally:
        sandboxjs.set_js_engine(saved_js)
        sys.stderr.flush()
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(log_fd)
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        cwl_logger.removeHandler(handler)
        if progress:
            cwl_logger.removeHandler(progress)
        for console in consoles:
            cwl_logger.addHandler(console)
        cwl_logger.setLevel(old_level)
        cwl_logger.propagate = old_propagate
        handler.close()
        _redact_log(log_path, workdir)
    found: dict[str, Any] = dict(outputs) if isinstance(outputs, Mapping) else {}
    return CWLRun(outputs=_with_paths(found), log_path=log_path)
