"""The pieces of Prefect-native processes that need no Prefect server: a deployment's parameter schema as
OGC inputs, and what a flow publishes with ogcflow.flows read back as the job's outputs."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from ogcflow import flows
from ogcflow.engines.native import DeploymentProcess, DeploymentRef, OutputSpec, describe
from ogcflow.errors import ProcessError
from ogcflow.processes.base import OutputValue
from ogcflow.settings import PrefectSettings
from ogcflow.storage import LocalStorage

DEPLOYMENT = {
    "id": "d-1", "name": "prod", "version": "7", "work_pool_name": "k8s", "description": "Water statistics\nmore",
    "parameter_openapi_schema": {
        "title": "Parameters", "type": "object", "required": ["aoi"],
        "properties": {
            "aoi": {"title": "aoi", "position": 0, "type": "string", "description": "the area"},
            "year": {"title": "year", "position": 1, "type": "integer", "default": 2024},
            "band": {"position": 2, "allOf": [{"$ref": "#/definitions/Band"}], "default": "nir"},
        },
        "definitions": {"Band": {"title": "Band", "enum": ["green", "nir"], "type": "string"}},
    },
}


def test_parameters_become_inputs() -> None:
    desc = describe(DEPLOYMENT, "water-stats", "water-stats", (OutputSpec("area"), OutputSpec("map", "image/tiff")))
    assert desc.id == "water-stats" and desc.version == "7" and desc.title == "Water statistics"
    aoi, year, band = desc.inputs["aoi"], desc.inputs["year"], desc.inputs["band"]
    assert aoi.minOccurs == 1 and aoi.description == "the area" and aoi.schema_ == {"type": "string"}
    assert year.minOccurs == 0 and year.schema_ == {"type": "integer", "default": 2024}
    assert "$ref" not in str(band.schema_)  # definitions inlined: the schema stands alone (also in /api)
    jsonschema.validate("green", band.schema_)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate("red", band.schema_)
    assert desc.outputs["map"].schema_ == {"type": "string", "contentMediaType": "image/tiff"}
    assert "deployment:water-stats/prod" in (desc.keywords or [])


def test_output_spec() -> None:
    assert OutputSpec.parse("map=image/tiff") == OutputSpec("map", "image/tiff")
    assert OutputSpec.parse("area") == OutputSpec("area", None)
    with pytest.raises(ValueError):
        OutputSpec.parse("no spaces")


def _process(*outputs: OutputSpec) -> DeploymentProcess:
    desc = describe(DEPLOYMENT, "water-stats", "water-stats", outputs)
    return DeploymentProcess(desc, DeploymentRef("d-1", "water-stats/prod", outputs), PrefectSettings())


def test_published_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path / "results")
    monkeypatch.setenv(flows.JOB_ENV, "job-1")
    monkeypatch.setenv(flows.RESULTS_ENV, str(storage.root))
    ref = flows.write_file("maps/water.tif", b"II*\x00data", media_type="image/tiff")
    assert flows.publish({"area": 4.5, "map": ref}) == {"area": 4.5, "map": ref}
    outs = _process(OutputSpec("area"), OutputSpec("map", "image/tiff"))._outputs("job-1", storage)
    assert outs["area"] == 4.5
    assert isinstance(outs["map"], OutputValue)
    assert outs["map"].value == b"II*\x00data" and outs["map"].media_type == "image/tiff"
    # one output: the whole published value
    monkeypatch.setenv(flows.JOB_ENV, "job-2")
    flows.publish([1, 2, 3])
    assert _process(OutputSpec("result"))._outputs("job-2", storage) == {"result": [1, 2, 3]}
    # nothing published: no outputs; a file named but never written: the job fails, saying which
    assert _process(OutputSpec("result"))._outputs("job-3", storage) == {}
    monkeypatch.setenv(flows.JOB_ENV, "job-4")
    flows.publish({flows.FILE_KEY: "missing.txt"})
    with pytest.raises(ProcessError, match="missing.txt"):
        _process(OutputSpec("result"))._outputs("job-4", storage)
    with pytest.raises(ValueError):
        flows.write_file("../escape", b"x")


def test_flows_outside_ogcflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(flows.JOB_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert flows.job_id() is None
    assert flows.publish(3) == 3
    flows.write_file("a.txt", "text")
    assert (tmp_path / "ogcflow-results" / "flow" / "a.txt").read_text() == "text"


def test_flows_needs_only_the_standard_library() -> None:
    import subprocess
    import sys

    code = ("import sys, ogcflow.flows; heavy = {'fastapi', 'sqlalchemy', 'httpx', 'pydantic', 'cwltool', 'prefect'};"
            "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
