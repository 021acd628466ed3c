"""Running CWL packages with cwltool's Python API: tools, scatter workflows, failures with their reason."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ogcflow.packages.cwl import parse_package
from ogcflow.packages.runner import CWLRunFailed, run_package

SCATTER = """
cwlVersion: v1.2
$graph:
- class: Workflow
  id: shout
  requirements: [{class: ScatterFeatureRequirement}, {class: SubworkflowFeatureRequirement}]
  inputs:
    words: string[]
  outputs:
    files: {type: "File[]", outputSource: node_upper/out}
    joined: {type: File, outputSource: node_join/out}
  steps:
    node_upper:
      run: "#upper"
      in: {word: words}
      scatter: word
      out: [out]
    node_join:
      run: "#join"
      in: {parts: node_upper/out}
      out: [out]
- class: CommandLineTool
  id: upper
  baseCommand: [sh, -c, 'printf "%s" "$0" | tr a-z A-Z > upper.txt']
  inputs: {word: {type: string, inputBinding: {position: 1}}}
  outputs: {out: {type: File, outputBinding: {glob: upper.txt}}}
- class: CommandLineTool
  id: join
  baseCommand: [cat]
  stdout: joined.txt
  inputs: {parts: {type: "File[]", inputBinding: {position: 1}}}
  outputs: {out: {type: stdout}}
"""

FAILING = """
cwlVersion: v1.2
class: CommandLineTool
id: fails
baseCommand: [sh, -c, 'echo "no such band: nir9" >&2; exit 3']
inputs: {}
outputs: {}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "package.cwl"
    path.write_text(text)
    return path


def test_scatter_workflow_runs_in_order(tmp_path: Path) -> None:
    pkg = parse_package(SCATTER)
    started = time.perf_counter()
    heard: list[tuple[str, float | None]] = []
    run = run_package(_write(tmp_path, SCATTER), pkg.entry, {"words": ["ab", "cd", "ef"]}, tmp_path / "job",
                      on_step=lambda what, done: heard.append((what, done)))
    elapsed = time.perf_counter() - started
    assert len(heard) == 4 and heard[0][0].startswith("1 of 4 steps done, last: ")
    assert heard[-1][0].startswith("4 of 4 steps done")
    assert [done for _what, done in heard] == [0.25, 0.5, 0.75, 1.0]  # progress follows the steps
    contents = [Path(f["path"]).read_text() for f in run.outputs["files"]]
    assert contents == ["AB", "CD", "EF"]
    assert Path(run.outputs["joined"]["path"]).read_text() == "ABCDEF"
    assert Path(run.outputs["joined"]["path"]).is_relative_to(tmp_path / "job" / "outputs")
    assert "[workflow" in run.log_path.read_text() or run.log_path.stat().st_size > 0
    assert elapsed < 10


def test_failed_tool_says_why(tmp_path: Path) -> None:
    with pytest.raises(CWLRunFailed, match="permanentFail") as info:
        run_package(_write(tmp_path, FAILING), "fails", {}, tmp_path / "job")
    assert "permanentFail" in str(info.value)
    log = (tmp_path / "job" / "cwltool.log").read_text()
    assert "exited with" in log or "permanentFail" in log


def test_missing_input_is_a_clear_failure(tmp_path: Path) -> None:
    with pytest.raises(CWLRunFailed, match="words"):
        run_package(_write(tmp_path, SCATTER), "shout", {}, tmp_path / "job")


@pytest.mark.parametrize(("image", "key"), [
    ("ghcr.io/eoap/mastering-app-package/crop@sha256:abc", "crop"),
    ("localhost/norm-diff:latest", "norm-diff"),
    ("ghcr.io/terradue/ogc-eo-application-package-hands-on/stac:1.5.0", "stac"),
    ("otsu", "otsu"),
])
def test_image_keys(image: str, key: str) -> None:
    from ogcflow.packages.containers import image_key

    assert image_key(image) == key


def test_hinted_images_without_mapping_run_as_written() -> None:
    from ogcflow.packages.containers import map_images

    doc = {"cwlVersion": "v1.0", "class": "CommandLineTool", "id": "t", "baseCommand": ["echo"],
           "hints": [{"class": "DockerRequirement", "dockerPull": "x/y:1"}], "inputs": {}, "outputs": {}}
    assert map_images(doc, {}) == doc
    mapped = map_images(doc, {"y": ["printf", "%s"]})
    assert mapped["baseCommand"] == ["printf", "%s"] and mapped["hints"] == []
    assert doc["baseCommand"] == ["echo"]  # the input is left alone


def test_warm_up_builds_the_loaders_of_every_cwl_version() -> None:
    from ogcflow.packages.runner import warm_up

    warm_up()  # workers call it before forking; a failure here would make every first job slow


SUBWORKFLOW = """
cwlVersion: v1.0
$graph:
- class: Workflow
  id: outer
  requirements: [{class: SubworkflowFeatureRequirement}, {class: ScatterFeatureRequirement}]
  inputs: {items: "string[]"}
  outputs: {result: {type: "File[]", outputSource: node_inner/marked}}
  steps:
    node_inner:
      run: "#inner"
      in: {item: items}
      scatter: item
      out: [marked]
- class: Workflow
  id: inner
  inputs: {item: string}
  outputs: {marked: {type: File, outputSource: node_mark/out}}
  steps:
    node_mark: {run: "#mark", in: {word: item}, out: [out]}
- class: CommandLineTool
  id: mark
  baseCommand: [sh, -c, 'printf "<%s>" "$0" > mark.txt']
  inputs: {word: {type: string, inputBinding: {position: 1}}}
  outputs: {out: {type: File, outputBinding: {glob: mark.txt}}}
"""


def test_scattered_sub_workflows(tmp_path: Path) -> None:
    assert parse_package(SUBWORKFLOW).entry == "outer"
    run = run_package(_write(tmp_path, SUBWORKFLOW), "outer", {"items": ["a", "b", "c"]}, tmp_path / "job")
    assert [Path(f["path"]).read_text() for f in run.outputs["result"]] == ["<a>", "<b>", "<c>"]


@pytest.mark.parametrize(("runtime", "expected"), [
    ("none", {"use_container": False}),
    ("docker", {"use_container": True}),
    ("podman", {"use_container": True, "podman": True}),
    ("singularity", {"use_container": True, "singularity": True}),
    ("udocker", {"use_container": True, "user_space_docker_cmd": "udocker"}),
])
def test_container_runtimes_reach_cwltool(runtime: str, expected: dict) -> None:
    from cwltool.context import RuntimeContext

    from ogcflow.packages.runner import container_options

    options = container_options(runtime)
    assert options == expected
    context = RuntimeContext(options)
    assert context.use_container is expected["use_container"]


def test_packages_are_loaded_once_per_process(tmp_path: Path) -> None:
    from ogcflow.packages.runner import load_package, package_file

    path = package_file(SCATTER)
    assert package_file(SCATTER) == path and path.read_text() == SCATTER
    assert package_file(SCATTER + "\n") != path
    tool = load_package(path, "shout")
    assert load_package(path, "shout") is tool  # what a worker loaded before forking, its job process reuses
    run = run_package(path, "shout", {"words": ["x"]}, tmp_path / "job")
    assert Path(run.outputs["joined"]["path"]).read_text() == "X"
