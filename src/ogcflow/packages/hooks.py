"""How applications extend the CWL layer without it knowing them (EO registers its STAC stage-out, its step
environment and the images of its steps here; see ``ogcflow.eo.plugin``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ogcflow.processes.base import JobContext, OutputValue

#: a CWL output value as cwltool returns it (a File or Directory object, a list, or a plain value)
CWLValue = Any


class OutputHandler(Protocol):
    """Turns a CWL output into the job's output, or declines (None) to let the next handler try."""

    def __call__(self, name: str, value: CWLValue, ctx: JobContext) -> OutputValue | None: ...


@dataclass
class CWLHooks:
    #: tried in order before the generic handling (File -> file, Directory -> zip, other -> JSON)
    output_handlers: list[OutputHandler] = field(default_factory=list)
    #: each adds variables to the environment of every CWL step (called per job)
    step_env: list[Callable[[], dict[str, str]]] = field(default_factory=list)
    #: container image -> local command replacing the tool's baseCommand (when no container runtime runs);
    #: the operator's OGCFLOW_CWL_IMAGE_MAP wins over these
    images: dict[str, list[str]] = field(default_factory=dict)
    #: each gives host paths that the mapped commands of these images need in a tool's sandbox, read-only
    #: (existing UNIX sockets are bound as such)
    sandbox_paths: list[Callable[[], list[str]]] = field(default_factory=list)
    #: each gives commands (the first words of a command line) that need no network of their own in a
    #: sandbox, because they reach what they need otherwise (the EO steps, while their step server runs:
    #: through it, under the server's own policy); their tools get none, even with NetworkAccess (CWL v1.0
    #: tools have it by default). Called per job.
    offline_commands: list[Callable[[], list[list[str]]]] = field(default_factory=list)
