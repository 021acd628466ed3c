"""Results on local disk: ``<root>/<job_id>/<name>``."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Protocol

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


class ResultStorage(Protocol):
    def put_bytes(self, job_id: str, name: str, data: bytes) -> str: ...
    def put_file(self, job_id: str, name: str, source: Path) -> str: ...
    def read(self, key: str) -> bytes: ...
    def local_path(self, key: str) -> Path | None: ...
    def size(self, key: str) -> int: ...
    def delete_job(self, job_id: str) -> None: ...


def _check(part: str) -> str:
    if not _NAME.match(part):
        raise ValueError(f"not a valid storage name: {part!r}")
    return part


class LocalStorage:
    """Results under one directory, one sub-directory per job."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        job_id, _, name = key.partition("/")
        return self.root / _check(job_id) / _check(name)

    def put_bytes(self, job_id: str, name: str, data: bytes) -> str:
        key = f"{_check(job_id)}/{_check(name)}"
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        return key

    def put_file(self, job_id: str, name: str, source: Path) -> str:
        key = f"{_check(job_id)}/{_check(name)}"
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)
        return key

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete_job(self, job_id: str) -> None:
        shutil.rmtree(self.root / _check(job_id), ignore_errors=True)
