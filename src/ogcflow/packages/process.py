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
from ogcflow.eo.config import ENV as STEP_CONFIG_ENV
from ogcflow.eo.config import StepConfig
from ogcflow.eo.packages import STEP_IMAGES
from ogcflow.eo.stageout import is_stac_catalog, stage_out_catalog
from ogcflow.eo.stepserver import ENV as STEP_SOCKET_ENV
from ogcflow.errors import InputFetchError
from ogcflow.netpolicy import fetch
from ogcflow.packages.containers import map_images
from ogcflow.packages.runner import load_package, package_file, run_package
from ogcflow.processes.base import JobContext, OutputValue, Process
from ogcflow.settings import Settings

#: variables of the server's environment that steps see too (GDAL/PROJ tuning, proxies, CA bundles)
STEP_ENV_PREFIXES = ("GDAL_", "CPL_", "PROJ_", "VSI_", "CURL_CA_BUNDLE", "SSL_CERT_", "REQUESTS_CA_BUNDLE",
                     "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")


def step_environment(settings: Settings) -> dict[str, str]:
    """The environment of CWL steps besides the package's EnvVarRequirement."""
    import os

    env = {k: v for k, v in os.environ.items() if k.startswith(STEP_ENV_PREFIXES) or k == STEP_SOCKET_ENV}
    env[STEP_CONFIG_ENV] = StepConfig.from_settings(settings).to_env()
    return env


class CWLProcess(Process):
    """A process whose execution unit is a CWL document."""

    def __init__(self, description: models.Process, package: str, entry: str, inputs_kind: dict[str, str],
                 settings: Settings) -> None:
        self.description = description
        self.package = package
        self.entry = entry
        self.inputs_kind = inputs_kind
        self.settings = settings
        self._file: Path | None = None

    def _stage(self, url: str, kind: str, where: Path) -> dict[str, Any]:
        if kind.startswith("Directory"):
            return {"class": "Directory", "location": url}
        data, _media = fetch(url, self.settings)
        name = PurePosixPath(urlsplit(url).path).name or "input"
        where.mkdir(parents=True, exist_ok=True)
        target = where / name
        target.write_bytes(data)
        return {"class": "File", "location": target.as_uri()}

    def _runnable(self) -> Path:
        """The package as it runs here (images mapped to local commands when there is no container runtime),
        in a file named after its content."""
        if self._file is None:
            text = self.package
            if self.settings.cwl_container_runtime == "none" and "DockerRequirement" in self.package:
                images = {**STEP_IMAGES, **self.settings.cwl_image_map} if self.settings.cwl_step_images \
                    else self.settings.cwl_image_map
                text = yaml.safe_dump(map_images(yaml.safe_load(self.package), images), sort_keys=False)
            self._file = package_file(text)
        return self._file

    def prepare(self) -> None:
        """Load the package with cwltool in this process, so that job processes forked from it don't."""
        load_package(self._runnable(), self.entry, self.settings.cwl_container_runtime)

    def execute(self, inputs: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        package = self._runnable()
        runtime = self.settings.cwl_container_runtime
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
        ctx.progress(5, "running the CWL package")
        ctx.log_path = ctx.workdir / "cwl" / "cwltool.log"
        run = run_package(package, self.entry, order, ctx.workdir / "cwl", container_runtime=runtime,
                          env=step_environment(self.settings), on_step=lambda what: ctx.progress(None, what))
        outputs: dict[str, Any] = {}
        for name in self.description.outputs:
            if name in run.outputs:
                outputs[name] = self._output(name, run.outputs[name], ctx)
        return outputs

    @staticmethod
    def _output(name: str, value: Any, ctx: JobContext) -> Any:
        workdir = ctx.workdir
        if isinstance(value, dict) and value.get("class") == "Directory" and value.get("path") \
                and ctx.storage is not None and is_stac_catalog(Path(value["path"])):
            ctx.progress(95, "staging the STAC catalog out")
            return OutputValue(value=stage_out_catalog(Path(value["path"]), ctx.job_id, ctx.storage),
                               media_type="application/geo+json")
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
