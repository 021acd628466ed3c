"""Where job results are kept: local disk (the embedded default) or S3-compatible object storage."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ogcflow.storage.local import LocalStorage, ResultStorage, make_key

if TYPE_CHECKING:
    from ogcflow.settings import StoreSettings

__all__ = ["LocalStorage", "ResultStorage", "make_key", "make_storage"]


def make_storage(settings: StoreSettings) -> ResultStorage:
    """The results storage the settings name (``OGCFLOW_RESULTS_URL``: a path, ``file://`` or ``s3://``)."""
    if settings.results_url and settings.results_url.startswith("s3://"):
        from ogcflow.storage.s3 import S3Storage

        return S3Storage(settings.results_url, platform=settings.storage_platform)
    return LocalStorage(settings.results_dir)
