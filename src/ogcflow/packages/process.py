"""A deployed CWL package as a process: inputs staged into the job's directory, the package run with
cwltool, File and Directory outputs handed to results storage."""

from __future__ import annotations

import mimetypes
import shutil
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import yaml

from ogcflow import models
from ogcflow.errors import InputFetchError
from ogcflow.netpolicy import fetch, is_local, local_path
from ogcflow.packages.containers import map_images
from ogcflow.packages.cwl import lost_reruns
from ogcflow.packages.hooks import CWLHooks, CWLValue
from ogcflow.packages.runner import load_package, package_file, run_package, warm_up
from ogcflow.packages.sandbox import Sandbox
from ogcflow.processes.base import JobContext, OutputValue, Process
from ogcflow.processes.catalog import ProcessFactory
from ogcflow.settings import CWLSettings, NetworkSettings, SandboxSettings
from ogcflow.store.processes import ProcessRecord

#: variables of the server's environment that steps see too (GDAL/PROJ tuning, proxies, CA bundles)
STEP_ENV_PREFIXES = ("GDAL_", "CPL_", "PROJ_", "VSI_", "CURL_CA_BUNDLE", "SSL_CERT_", "REQUESTS_CA_BUNDLE",
                     "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def step_environment(hooks: CWLHooks) -> dict[str, str]:
    """The environment of CWL steps besides the package's EnvVarRequirement."""
    import os

    env = {k: v for k, v in os.environ.items() if k.startswith(STEP_ENV_PREFIXES)}
    for more in hooks.step_env:
        env.update(more())
    return env


class CWLProcess(Process):
    """A process whose execution unit is a CWL document."""

    def __init__(self, description: models.Process, package: str, entry: str, inputs_kind: dict[str, str],
                 settings: CWLSettings, network: NetworkSettings, hooks: CWLHooks,
                 sandbox: SandboxSettings | None = None) -> None:
        self.description = description
        self.package = package
        self.entry = entry
        self.inputs_kind = inputs_kind
        self.settings = settings
        self.network = network
        self.hooks = hooks
        self.sandbox = sandbox if sandbox is not None else SandboxSettings.from_flat({})
        self._file: Path | None = None
        self._reruns: int | None = None

    @property
    def lost_reruns(self) -> int:
        """0 unless the package declares itself idempotent (the CWL hint ``ogcflow:Idempotent``)."""
        if self._reruns is None:
            self._reruns = lost_reruns(self.package, self.entry)
        return self._reruns

    def _stage(self, url: str, kind: str, where: Path) -> dict[str, Any]:
        """A File or Directory input for cwltool: an http(s) File fetched here under the network policy; a
        local path only under the operator's OGCFLOW_LOCAL_ROOTS (cwltool reads nothing else of the input)."""
        cls = "Directory" if kind.startswith("Directory") else "File"
        if is_local(url):
            path = local_path(url, self.network.local_roots, "OGCFLOW_LOCAL_ROOTS")
            if not (path.is_dir() if cls == "Directory" else path.is_file()):
                raise InputFetchError(f"{url}: not a {'directory' if cls == 'Directory' else 'file'}")
            return {"class": cls, "location": path.as_uri()}
        if cls == "Directory":
            raise InputFetchError(f"{url}: a Directory input is a local directory under OGCFLOW_LOCAL_ROOTS "
                                  "(a directory cannot be listed over HTTP)")
        data, _media = fetch(url, self.network)
        name = PurePosixPath(urlsplit(url).path).name or "input"
        where.mkdir(parents=True, exist_ok=True)
        target = where / name
        target.write_bytes(data)
        return {"class": "File", "location": target.as_uri()}

    def _runnable(self) -> Path:
        """The package as it runs here (images mapped to local commands when there is no container runtime,
        no ``$schemas``: cwltool would fetch those URLs itself), in a file named after its content."""
        if self._file is None:
            text = self.package
            if "$schemas" in text:  # cwltool would fetch them (any URL, unpoliced) when it loads the package
                doc = yaml.safe_load(text)
                if isinstance(doc, dict):
                    doc.pop("$schemas", None)
                    text = yaml.safe_dump(doc, sort_keys=False)
            if self.settings.container_runtime == "none" and "DockerRequirement" in text:
                images = {**self.hooks.images, **self.settings.image_map}
                text = yaml.safe_dump(map_images(yaml.safe_load(text), images), sort_keys=False)
            self._file = package_file(text)
        return self._file

    def prepare(self) -> None:
        """Load the package with cwltool in this process, so that job processes forked from it don't."""
        load_package(self._runnable(), self.entry, self.settings.container_runtime)

    def execute(self, inputs: dict[str, Any], ctx: JobContext) -> dict[str, OutputValue]:
        package = self._runnable()
        runtime = self.settings.container_runtime
        order: dict[str, Any] = {}
        for name, value in inputs.items():
            kind = self.inputs_kind.get(name)
            if kind is None:
                order[name] = value
            elif kind.endswith("[]"):
                if not isinstance(value, list):
                    raise InputFetchError(f"input '{name}' takes a list of references")
                order[name] = [self._stage(v, kind, ctx.workdir / "inputs" / name / str(i))
                               for i, v in enumerate(value)]
            else:
                order[name] = self._stage(value, kind, ctx.workdir / "inputs" / name)
        sandbox = self._sandbox(ctx.workdir) if runtime == "none" else None
        ctx.progress(5, "running the CWL package")
        ctx.log_path = ctx.workdir / "cwl" / "cwltool.log"
        try:
            run = run_package(package, self.entry, order, ctx.workdir / "cwl", container_runtime=runtime,
                              env=step_environment(self.hooks), on_step=lambda what, done: ctx.progress(
                                  None if done is None else 5 + int(90 * done), what),
                              sandbox=sandbox)
        finally:
            if sandbox is not None:
                sandbox.close()
        outputs: dict[str, OutputValue] = {}
        for name in self.description.outputs:
            if name in run.outputs:
                outputs[name] = self._output(name, run.outputs[name], ctx)
        return outputs

    def _sandbox(self, workdir: Path) -> Sandbox | None:
        """The sandbox of this job's commands (None: off, unsafe). The absolute paths of mapped image
        commands (a plugin's launcher and its interpreter) and what plugins ask for are readable there."""
        import os
        import sys

        if not self.sandbox.enabled:
            return None
        readable: set[str] = set()
        for words in [*self.hooks.images.values(), *self.settings.image_map.values()]:
            readable.update(w for w in words if w.startswith("/") and os.path.exists(w))
        if any(w == sys.executable for w in readable):
            readable.add(sys.base_prefix)  # the interpreter's standard library
        for more in self.hooks.sandbox_paths:
            readable.update(more())
        roots = [os.path.realpath(r) for r in self.network.local_roots if os.path.isdir(r)]
        return Sandbox(self.sandbox, workdir, readable=sorted(readable | set(roots)), input_roots=roots,
                       policy=self.network, download_max_bytes=self.network.tool_download_max_bytes,
                       offline_commands=[words for more in self.hooks.offline_commands for words in more()])

    def _output(self, name: str, value: CWLValue, ctx: JobContext) -> OutputValue:
        for handler in self.hooks.output_handlers:
            handled = handler(name, value, ctx)
            if handled is not None:
                return handled
        workdir = ctx.workdir
        if isinstance(value, dict) and value.get("class") == "File" and value.get("path"):
            path = Path(value["path"])
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return OutputValue(path=path, media_type=media)
        if isinstance(value, dict) and value.get("class") == "Directory" and value.get("path"):
            archive = shutil.make_archive(str(workdir / f"{name}-archive"), "zip", value["path"])
            return OutputValue(path=Path(archive), media_type="application/zip")
        if isinstance(value, list) and value and all(isinstance(v, dict) and v.get("path") for v in value):
            bundle = workdir / f"{name}-files"
            bundle.mkdir(exist_ok=True)
            for i, item in enumerate(value):
                shutil.copy(item["path"], bundle / f"{i:04d}-{Path(item['path']).name}")
            archive = shutil.make_archive(str(workdir / f"{name}-archive"), "zip", bundle)
            return OutputValue(path=Path(archive), media_type="application/zip")
        return OutputValue(value=value, media_type="application/json")


def cwl_factory(settings: CWLSettings, network: NetworkSettings, hooks: CWLHooks,
                sandbox: SandboxSettings | None = None) -> ProcessFactory:
    """Builds the process of a deployed CWL package (registered in the catalog for the ``cwl`` kind)."""

    def build(record: ProcessRecord) -> Process:
        return CWLProcess(models.Process.model_validate(record.description), record.package, record.entry,
                          record.inputs_kind, settings, network, hooks, sandbox)

    return build


class CWLWarmUp:
    """A worker plugin: import cwltool and build its CWL schema loaders once, before any fork (0.6 s cold,
    12 ms warm per run)."""

    order = 10

    def start(self) -> None:
        warm_up()

    def stop(self) -> None:
        return None
