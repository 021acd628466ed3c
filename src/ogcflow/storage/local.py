"""Results on local disk: ``<root>/<job_id>/<name>`` (``name`` may have sub-directories)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
CHUNK = 1024 * 1024


class ResultStorage(Protocol):
    """Where the files of jobs are kept. Keys are ``<job_id>/<name>``; ``name`` may contain ``/``."""

    def put_bytes(self, job_id: str, name: str, data: bytes, media_type: str | None = None) -> str: ...
    def put_file(self, job_id: str, name: str, source: Path, media_type: str | None = None) -> str: ...
    def read(self, key: str) -> bytes: ...
    def iter_bytes(self, key: str) -> Iterator[bytes]: ...
    def exists(self, key: str) -> bool: ...
    def local_path(self, key: str) -> Path | None: ...
    def size(self, key: str) -> int: ...
    def url(self, key: str) -> str: ...
    def list_job(self, job_id: str) -> list[str]: ...
    def delete_job(self, job_id: str) -> None: ...
    def storage_schemes(self) -> dict[str, dict[str, Any]]: ...
    def prepare(self) -> None: ...
    def check(self) -> None:
        """Raise if the storage cannot be reached or written (readiness probes)."""
        ...


def check_part(part: str) -> str:
    if not _NAME.match(part):
        raise ValueError(f"not a valid storage name: {part!r}")
    return part


def make_key(job_id: str, name: str) -> str:
    """``<job_id>/<name>`` with every part checked (letters, digits, '.', '_', '-'; no '..')."""
    parts = [check_part(job_id), *(check_part(p) for p in name.split("/"))]
    if any(p in (".", "..") or set(p) == {"."} for p in parts):
        raise ValueError(f"not a valid storage name: {name!r}")
    return "/".join(parts)


class LocalStorage:
    """Results under one directory, one sub-directory per job."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        job_id, _, name = key.partition("/")
        return self.root / make_key(job_id, name)

    def put_bytes(self, job_id: str, name: str, data: bytes, media_type: str | None = None) -> str:
        key = make_key(job_id, name)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a name of its own for each writer (no valid name starts with '.': never a job's file), then renamed
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def put_file(self, job_id: str, name: str, source: Path, media_type: str | None = None) -> str:
        key = make_key(job_id, name)
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        return key

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        with self._path(key).open("rb") as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def exists(self, key: str) -> bool:
        try:
            return self._path(key).is_file()
        except ValueError:
            return False

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def url(self, key: str) -> str:
        return self._path(key).as_uri()

    def list_job(self, job_id: str) -> list[str]:
        top = self.root / check_part(job_id)
        if not top.is_dir():
            return []
        return sorted(f"{job_id}/{p.relative_to(top).as_posix()}" for p in top.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def delete_job(self, job_id: str) -> None:
        shutil.rmtree(self.root / check_part(job_id), ignore_errors=True)

    def storage_schemes(self) -> dict[str, dict[str, Any]]:
        """The STAC storage extension's schemes of these files: none (local disk is no object storage)."""
        return {}

    def prepare(self) -> None:
        """Nothing to do before a worker forks job processes."""

    def check(self) -> None:
        if not self.root.is_dir():
            raise OSError(f"the results directory {self.root} does not exist")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise OSError(f"the results directory {self.root} is not writable")
