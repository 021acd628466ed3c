"""Where job results are kept: local disk (the embedded default) or S3-compatible object storage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ogcflow.storage.local import LocalStorage, ResultStorage, check_part, make_key

if TYPE_CHECKING:
    from ogcflow.settings import StoreSettings

__all__ = ["LocalStorage", "ResultStorage", "make_key", "make_storage"]


def make_storage(settings: StoreSettings, namespace: str | None = None) -> ResultStorage:
    """The results storage the settings name (``OGCFLOW_RESULTS_URL``: a path, ``file://`` or ``s3://``), or the
    part of it kept for ``namespace`` (a prefix of its own)."""
    if settings.results_url and settings.results_url.startswith("s3://"):
        from ogcflow.storage.s3 import S3Storage

        url = settings.results_url.rstrip("/") + (f"/{check_part(namespace)}" if namespace else "")
        return S3Storage(url, platform=settings.storage_platform)
    return LocalStorage(settings.results_dir / check_part(namespace) if namespace else settings.results_dir)
