"""The one log format of every ogcflow process (API, uvicorn, workers), as text or as JSON lines.

``OGCFLOW_LOG_FORMAT=json`` writes one JSON object a line (``time``, ``level``, ``logger``, ``message``, the
exception if any, and the fields a record carries in ``extra``: the access log's ``method``, ``path``,
``status``...). :func:`config` is a ``logging.config.dictConfig`` document, so uvicorn applies the same one in
each of its worker processes.
"""

from __future__ import annotations

import atexit
import json
import logging
import logging.config
import logging.handlers
import os
import queue
import sys
from datetime import UTC, datetime
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: the attributes every LogRecord has; any other attribute came from ``extra``
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName",
                                                                                "color_message"}


class JSONFormatter(logging.Formatter):
    """A record as one JSON object."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The text format; the fields of ``extra`` are in the message already (the access log's line)."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)


class Background(logging.Handler):
    """Formats and writes records on a thread of its own (to stderr), so that a request's log line costs the
    event loop the making of its record only. The thread starts with the first record of a process (a
    process that never logs here, such as a worker that forks jobs, has no such thread); it is flushed when
    the process exits. Records are handed over as they are: the access log's hold strings and numbers."""

    def __init__(self, kind: str = "text") -> None:
        super().__init__()
        self.kind = kind
        self._queue: queue.SimpleQueue[logging.LogRecord] | None = None
        self._pid = 0

    def _start(self) -> queue.SimpleQueue[logging.LogRecord]:
        out = logging.StreamHandler(sys.stderr)
        out.setFormatter(JSONFormatter() if self.kind == "json" else TextFormatter())
        channel: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        listener = logging.handlers.QueueListener(channel, out)
        listener.start()
        atexit.register(listener.stop)
        self._queue, self._pid = channel, os.getpid()
        return channel

    def emit(self, record: logging.LogRecord) -> None:
        channel = self._queue if self._pid == os.getpid() else None
        (channel or self._start()).put(record)


def config(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """The logging configuration of a process: one handler on stderr, the format chosen, uvicorn's loggers
    sent to it (not their own formats)."""
    formatter = "ogcflow.logs.JSONFormatter" if fmt == "json" else "ogcflow.logs.TextFormatter"
    quiet = {name: {"level": "WARNING"} for name in ("alembic", "httpx", "httpcore", "cwltool")}
    uvicorn = {name: {"handlers": [], "propagate": True} for name in ("uvicorn", "uvicorn.error")}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default",
                                "stream": "ext://sys.stderr"},
                     "access": {"()": "ogcflow.logs.Background", "kind": fmt}},
        "root": {"handlers": ["stderr"], "level": level.upper()},
        # a job's cwltool log goes to its own file; uvicorn's access log is off (ogcflow.access is the one)
        "loggers": {**quiet, **uvicorn, "uvicorn.access": {"handlers": [], "propagate": False},
                    "ogcflow.access": {"handlers": ["access"], "propagate": False}},
    }


def setup(level: str = "info", fmt: str = "text") -> dict[str, Any]:
    """Configure this process's logging; the configuration, for uvicorn's worker processes."""
    cfg = config(level, fmt)
    logging.config.dictConfig(cfg)
    return cfg
