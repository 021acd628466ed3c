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
from ogcflow.netpolicy import fetch
from ogcflow.packages.containers import map_images
from ogcflow.packages.runner import run_package
from ogcflow.processes.base import JobContext, OutputValue, Process
from ogcflow.settings import Settings


class CWLProcess(Process):
    """A process whose execution unit is a CWL document."""

    def __init__(self, description: models.Process, package: str, entry: str, inputs_kind: dict[str, str],
                 settings: Settings) -> None:
        self.description = description
        self.package = package
        self.entry = entry
        self.inputs_kind = inputs_kind
        self.settings = settings

    def _stage(self, url: str, kind: str, where: Path) -> dict[str, Any]:
        if kind.startswith("Directory"):
            return {"class": "Directory", "location": url}
        data, _media = fetch(url, self.settings)
        name = PurePosixPath(urlsplit(url).path).name or "input"
        where.mkdir(parents=True, exist_ok=True)
        target = where / name
        target.write_bytes(data)
        return {"class": "File", "location": target.as_uri()}

    def execute(self, inputs: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        package = ctx.workdir / "package.cwl"
        runtime = self.settings.cwl_container_runtime
        if runtime == "none" and "DockerRequirement" in self.package:
            document = map_images(yaml.safe_load(self.package), self.settings.cwl_image_map)
            package.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        else:
            package.write_text(self.package, encoding="utf-8")
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
        run = run_package(package, self.entry, order, ctx.workdir / "cwl", container_runtime=runtime)
        outputs: dict[str, Any] = {}
        for name in self.description.outputs:
            if name in run.outputs:
                outputs[name] = self._output(name, run.outputs[name], ctx.workdir)
        return outputs

    @staticmethod
    def _output(name: str, value: Any, workdir: Path) -> Any:
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
