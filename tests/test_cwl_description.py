"""CWL documents described as OGC processes (the foundation of Part 2 deployment)."""

from __future__ import annotations

import pytest

from ogcflow.errors import OGCError
from ogcflow.packages.cwl import InvalidPackage, parse_package
from tests.ogc_schemas import validate

GRAPH = """
cwlVersion: v1.0
$namespaces: {s: https://schema.org/}
s:softwareVersion: 1.4.1
$graph:
- class: Workflow
  id: water-bodies
  label: Water bodies detection
  doc: NDWI and Otsu threshold
  requirements: [{class: ScatterFeatureRequirement}, {class: SubworkflowFeatureRequirement}]
  inputs:
    aoi: {label: area of interest, type: string}
    epsg: {type: string, default: "EPSG:4326"}
    stac_items: {type: "string[]"}
    bands: {type: "string[]", default: [green, nir]}
  outputs:
  - {id: stac_catalog, outputSource: [node_stac/stac_catalog], type: Directory}
  steps:
    node_detect:
      run: "#detect"
      in: {item: stac_items, aoi: aoi}
      scatter: item
      scatterMethod: dotproduct
      out: [mask]
    node_stac:
      run: "#stac"
      in: {item: stac_items, rasters: node_detect/mask}
      out: [stac_catalog]
- class: Workflow
  id: detect
  inputs: {item: string, aoi: string}
  outputs: [{id: mask, outputSource: [node_crop/out], type: File}]
  steps:
    node_crop: {run: "#crop", in: {item: item, aoi: aoi}, out: [out]}
- class: CommandLineTool
  id: crop
  baseCommand: [echo]
  inputs: {item: string, aoi: string}
  outputs: {out: {type: File, outputBinding: {glob: "*.tif"}}}
- class: CommandLineTool
  id: stac
  baseCommand: [echo]
  inputs:
    item: {type: {type: array, items: string, inputBinding: {prefix: --input-item}}}
    rasters: {type: "File[]"}
  outputs: {stac_catalog: {type: Directory, outputBinding: {glob: .}}}
"""

TYPES = """
cwlVersion: v1.2
class: CommandLineTool
id: types
baseCommand: [echo]
inputs:
  i: int
  l: long
  f: float
  d: double
  b: boolean
  maybe: string?
  colour: {type: {type: enum, symbols: [red, green]}}
  rec:
    type:
      type: record
      fields:
        name: string
        size: int?
  image: {type: File, format: "http://www.iana.org/assignments/media-types/image/tiff"}
  images: File[]
  folder: Directory
  count: {type: int, default: 3}
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""


def test_entry_workflow_is_described() -> None:
    pkg = parse_package(GRAPH)
    d = pkg.description
    assert (d.id, d.version, d.title, d.description) == ("water-bodies", "1.4.1", "Water bodies detection",
                                                         "NDWI and Otsu threshold")
    validate(d.dump(), "process")
    assert d.inputs["aoi"].minOccurs == 1 and d.inputs["aoi"].title == "area of interest"
    assert d.inputs["epsg"].minOccurs == 0 and d.inputs["epsg"].schema_["default"] == "EPSG:4326"
    assert d.inputs["stac_items"].schema_ == {"type": "array", "items": {"type": "string"}}
    media = [alt["contentMediaType"] for alt in d.outputs["stac_catalog"].schema_["oneOf"]]
    assert media == ["application/geo+json", "application/zip"]  # a STAC catalog, or any directory zipped


def test_w_picks_another_workflow() -> None:
    assert parse_package(GRAPH, w="detect").description.id == "detect"
    assert parse_package(GRAPH, w="#crop").description.id == "crop"
    with pytest.raises(OGCError, match="no workflow or tool 'nope'") as err:
        parse_package(GRAPH, w="nope")
    assert err.value.status == 400 and err.value.type.endswith("/ogcapi-processes-2/1.0/workflow-not-found")


def test_cwl_types_map_to_json_schema() -> None:
    d = parse_package(TYPES).description
    validate(d.dump(), "process")
    s = {k: v.schema_ for k, v in d.inputs.items()}
    assert s["i"] == {"type": "integer"} and s["l"] == {"type": "integer"}
    assert s["f"] == {"type": "number"} and s["d"] == {"type": "number"} and s["b"] == {"type": "boolean"}
    assert s["maybe"] == {"type": "string"} and d.inputs["maybe"].minOccurs == 0
    assert s["colour"] == {"type": "string", "enum": ["red", "green"]}
    assert s["rec"]["type"] == "object" and s["rec"]["required"] == ["name"]
    assert s["rec"]["properties"] == {"name": {"type": "string"}, "size": {"type": "integer"}}
    assert s["image"]["format"] == "uri" and s["image"]["contentMediaType"].endswith("image/tiff")
    assert s["images"]["type"] == "array" and s["images"]["items"]["format"] == "uri"
    assert s["folder"]["format"] == "uri"
    assert s["count"]["default"] == 3 and d.inputs["count"].minOccurs == 0
    assert d.outputs["out"].schema_["format"] == "uri"


@pytest.mark.parametrize(("text", "needle"), [
    ("cwlVersion: v1.0\nclass: [unclosed", "not valid YAML"),
    ("just: a mapping", "not a CWL document"),
    ("cwlVersion: v1.0\nclass: CommandLineTool\nid: t\ninputs: {x: matrix}\noutputs: {}\nbaseCommand: echo",
     "type .matrix. is not supported"),
    ("cwlVersion: v1.0\nclass: CommandLineTool\ninputs: {}\noutputs: {}\nbaseCommand: echo", "has no 'id'"),
    (GRAPH.replace('run: "#stac"', 'run: "#missing"'), "runs '#missing', which is not in the package"),
    (GRAPH.replace('run: "#stac"', "run: stac.cwl"), "must be self-contained"),
    (GRAPH.replace('run: "#detect"', 'run: "#crop"'), "several entry points"),
])
def test_bad_packages_are_refused_with_the_reason(text: str, needle: str) -> None:
    with pytest.raises(InvalidPackage, match=needle) as info:
        parse_package(text)
    assert info.value.status == 400
