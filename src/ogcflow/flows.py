"""For authors of Prefect flows that ogcflow offers as OGC processes (``ogcflow prefect register``).

A flow run that ogcflow creates for an OGC job gets the job's id and where ogcflow keeps results in its
environment (``OGCFLOW_JOB_ID``, ``OGCFLOW_RESULTS_URL``: job variables of the run, so any work pool's
worker passes them on). The flow's outputs are what it hands to :func:`publish` (usually what it returns);
files are written with :func:`write_file`, which gives the value that stands for the file in the outputs::

    from prefect import flow
    from ogcflow import flows

    @flow
    def area(width: float, height: float) -> dict:
        report = flows.write_file("report.txt", f"{width} x {height}", media_type="text/plain")
        return flows.publish({"area": width * height, "report": report})

This module needs nothing but the standard library (``fsspec`` with ``s3fs`` for ``s3://`` results): it is
imported by flows, in their own environment, not by the server. Outside an ogcflow job (a run started from
Prefect's UI) :func:`publish` does nothing and :func:`write_file` writes under ``./ogcflow-results``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

#: the environment of a flow run made for an OGC job
JOB_ENV = "OGCFLOW_JOB_ID"
RESULTS_ENV = "OGCFLOW_RESULTS_URL"
#: where a job's flow writes, inside the job's part of results storage
STAGING = "flow"
#: the published outputs of a job's flow run: ``{"value": <what publish got>}``
OUTPUTS_NAME = f"{STAGING}/outputs.json"
#: the key of a file reference among the outputs: ``{"ogcflow:file": "<name>", "type": "<media type>"}``
FILE_KEY = "ogcflow:file"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


def job_id() -> str | None:
    """The OGC job this flow run belongs to (None outside ogcflow)."""
    return os.environ.get(JOB_ENV) or None


def _check(name: str) -> str:
    parts = name.split("/")
    if not all(_NAME.match(p) and set(p) != {"."} for p in parts):
        raise ValueError(f"not a valid file name for results: {name!r} (letters, digits, '.', '_', '-', '/')")
    return name


def _write(name: str, data: bytes) -> None:
    job, root = job_id(), os.environ.get(RESULTS_ENV) or ""
    if job is None:
        path = Path("ogcflow-results") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return
    key = f"{job}/{name}"
    if root.startswith("s3://"):
        import fsspec  # type: ignore[import-not-found,unused-ignore]

        with fsspec.open(f"{root.rstrip('/')}/{key}", "wb") as fh:
            fh.write(data)
        return
    path = Path(root.removeprefix("file://")) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def write_file(name: str, data: bytes | str | Path, media_type: str | None = None) -> dict[str, Any]:
    """Write a file of the job's results (``data``: its bytes, text, or a local file to copy); the value that
    stands for it among the outputs handed to :func:`publish`."""
    _check(name)
    if isinstance(data, Path):
        body = data.read_bytes()
    elif isinstance(data, str):
        body = data.encode("utf-8")
    else:
        body = bytes(data)
    _write(f"{STAGING}/{name}", body)
    ref: dict[str, Any] = {FILE_KEY: name}
    if media_type:
        ref["type"] = media_type
    return ref


def publish(value: Any) -> Any:
    """Hand the flow's outputs to ogcflow (JSON data; file references from :func:`write_file` at the top level
    or as the values of a mapping of outputs); ``value`` is returned, so a flow may ``return publish(...)``."""
    if job_id() is not None:
        _write(OUTPUTS_NAME, json.dumps({"value": value}).encode("utf-8"))
    return value
