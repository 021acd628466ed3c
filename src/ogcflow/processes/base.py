"""What a process is: a description (the OGC model) and an ``execute`` that turns inputs into outputs.

A process never knows which engine runs it: the local worker and the Prefect engine call the same
``execute`` with the same :class:`JobContext`.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ogcflow import models
from ogcflow.errors import NoSuchProcess
from ogcflow.storage import ResultStorage


@dataclass(slots=True)
class OutputValue:
    """An output with its media type. ``value`` is JSON-able data, ``bytes``, or a file ``path``."""

    value: Any = None
    media_type: str | None = None
    path: Path | None = None


@dataclass
class JobContext:
    """What a running process may use: where to write files, how to report progress."""

    job_id: str
    workdir: Path
    report: Callable[[int | None, str | None], None] = field(default=lambda p, m: None)
    cancel_event: threading.Event | None = None
    #: the job's log file, kept with its results whatever the outcome (GET /jobs/{id}/logs)
    log_path: Path | None = None
    #: the results storage, for processes that write files of their own there (e.g. a STAC catalog's assets)
    storage: ResultStorage | None = None
    #: where clients reach the job's API (``<base_url>/jobs/<job_id>``), when the job came from a request
    base_url: str = ""

    @property
    def cancelled(self) -> threading.Event:
        """Set when the job is being stopped (processes running in threads should check it)."""
        if self.cancel_event is None:
            self.cancel_event = threading.Event()
        return self.cancel_event

    def progress(self, percent: int | None = None, message: str | None = None) -> None:
        """Report progress (0-100) and/or a message; shown in the job's status."""
        self.report(percent, message)


class Process(abc.ABC):
    """A process offered by the server."""

    #: The OGC description (id, version, inputs, outputs, job control options...).
    description: models.Process
    #: True when a synchronous execution is cheap enough to run inside the API process.
    inline: bool = False

    @property
    def id(self) -> str:
        return self.description.id

    @property
    def lost_reruns(self) -> int:
        """How many times a job whose run was lost (its worker or its process died) is run again before it is
        failed: once for built-ins (they are idempotent); deployed packages say so themselves."""
        return 1

    def prepare(self) -> None:  # noqa: B027 - optional: most processes have nothing to prepare
        """Work worth doing once in a worker before it forks job processes (e.g. loading a CWL package)."""

    def dismissed(self, job_id: str) -> None:  # noqa: B027 - optional: most processes' work is the job process
        """The job was dismissed (in the API process): stop work the process started outside its job process
        (e.g. a flow run of a Prefect deployment); the job process itself is stopped by its worker."""

    @abc.abstractmethod
    def execute(self, inputs: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        """Run with validated inputs; return output id -> value (plain or :class:`OutputValue`)."""


class ProcessRegistry:
    """The processes of the server, by id."""

    def __init__(self) -> None:
        self._processes: dict[str, Process] = {}

    def add(self, process: Process) -> None:
        self._processes[process.id] = process

    def get(self, process_id: str) -> Process:
        try:
            return self._processes[process_id]
        except KeyError:
            raise NoSuchProcess(f"There is no process '{process_id}'. See /processes.") from None

    def __contains__(self, process_id: str) -> bool:
        return process_id in self._processes

    def __iter__(self) -> Iterator[Process]:
        return iter(sorted(self._processes.values(), key=lambda p: p.id))

    def __len__(self) -> int:
        return len(self._processes)
