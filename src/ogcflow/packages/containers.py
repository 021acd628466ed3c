"""What to do with DockerRequirement when no container runtime runs the steps.

cwltool refuses a DockerRequirement under ``requirements`` when containers are off, and ignores one under
``hints``. Platforms without a runtime map images to local commands (``OGCFLOW_CWL_IMAGE_MAP``): image
name (the last path component, without tag or digest) -> the words that replace the tool's
``baseCommand``. Mapped tools lose their DockerRequirement; a required image without a mapping is a clear
error before anything runs.
"""

from __future__ import annotations

import re
from typing import Any

from ogcflow.errors import ProcessError

_TAG = re.compile(r"[@:][^/]*$")


def image_key(image: str) -> str:
    """``ghcr.io/eoap/app/crop@sha256:...`` -> ``crop``; ``localhost/norm-diff:latest`` -> ``norm-diff``."""
    return _TAG.sub("", image.rsplit("/", 1)[-1]) if "/" in image else _TAG.sub("", image)


def _docker(section: Any) -> tuple[dict[str, Any] | None, Any]:
    """The DockerRequirement of a requirements/hints section, and the section without it."""
    if isinstance(section, dict):
        found = section.get("DockerRequirement")
        rest = {k: v for k, v in section.items() if k != "DockerRequirement"}
        return (found if isinstance(found, dict) else ({} if found is not None else None)), rest
    if isinstance(section, list):
        found = next((r for r in section if isinstance(r, dict) and r.get("class") == "DockerRequirement"), None)
        return found, [r for r in section if r is not found]
    return None, section


def map_images(document: dict[str, Any], image_map: dict[str, list[str]]) -> dict[str, Any]:
    """The document with mapped images turned into local commands (the input is not modified)."""
    import copy

    doc = copy.deepcopy(document)
    graph = doc.get("$graph")
    objects: list[Any] = graph if isinstance(graph, list) else [doc]
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("class") != "CommandLineTool":
            continue
        required, rest_req = _docker(obj.get("requirements"))
        hinted, rest_hints = _docker(obj.get("hints"))
        spec = required if required is not None else hinted
        if spec is None:
            continue
        image = spec.get("dockerPull") or spec.get("dockerImageId") or ""
        command = image_map.get(image_key(image)) if image else None
        tool = str(obj.get("id", "tool")).lstrip("#")
        if command:
            obj["baseCommand"] = list(command)
            if required is not None:
                obj["requirements"] = rest_req
            if hinted is not None:
                obj["hints"] = rest_hints
        elif required is not None:
            raise ProcessError(
                f"the tool '{tool}' requires the container image '{image}', but no container runtime is "
                f"configured and OGCFLOW_CWL_IMAGE_MAP has no command for '{image_key(image)}'")
    return doc
