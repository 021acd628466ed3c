"""Results in S3-compatible object storage: ``s3://<bucket>[/<prefix>]/<job_id>/<name>``.

Credentials, endpoint and region come from the standard variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``...), as boto-based tools read
them. Path-style addressing works with any S3 server (MinIO, SeaweedFS, Ceph, AWS). The bucket is created
when it does not exist. The connection is made per process (worker children are forked).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ogcflow.errors import ServiceUnavailable
from ogcflow.storage.local import CHUNK, check_part, make_key


class StorageUnavailable(ServiceUnavailable):
    """The object store cannot be reached or refused a request."""


@contextmanager
def _failures(what: str) -> Iterator[None]:
    """Object-store failures as a clear 503 (a missing object stays FileNotFoundError)."""
    try:
        yield
    except (FileNotFoundError, ValueError, StorageUnavailable):
        raise
    except Exception as exc:  # botocore/aiohttp/s3fs errors: the store is down or refuses us
        raise StorageUnavailable(f"the results storage could not {what} ({exc.__class__.__name__}: {exc})") \
            from None


def endpoint_url() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"


class S3Storage:
    """Results in a bucket (and an optional prefix)."""

    def __init__(self, url: str, platform: str = "ogcflow") -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an S3 URL: {url!r} (s3://bucket[/prefix])")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.platform = platform
        self._fs: Any = None
        self._pid = 0
        self._session: Any = None  # aiobotocore session of the worker, inherited by its job processes
        self._bucket_ready = False

    def _connect(self) -> Any:
        import s3fs

        with _failures("be reached"):
            fs = s3fs.S3FileSystem(endpoint_url=endpoint_url(), client_kwargs={"region_name": region()},
                                   config_kwargs={"s3": {"addressing_style": "path"}}, skip_instance_cache=True,
                                   **({"session": self._session} if self._session is not None else {}))
            if not self._bucket_ready:
                if not fs.exists(self.bucket):
                    try:
                        fs.mkdir(self.bucket)
                    except FileExistsError:
                        pass
                self._bucket_ready = True
        return fs

    @property
    def fs(self) -> Any:
        """This process's connection (a forked job process makes its own)."""
        if self._fs is None or self._pid != os.getpid():
            self._fs, self._pid = self._connect(), os.getpid()
        return self._fs

    def prepare(self) -> None:
        """In a worker, before it forks job processes: import s3fs (0.4 s), check the bucket once, and keep a
        session whose loaded service models job processes share (their first request: 0.12 s -> 0.05 s)."""
        fs = self.fs
        self._session = fs.session

    def check(self) -> None:
        """The bucket answers (a HEAD of the bucket, no listing)."""
        with _failures("be reached"):
            self.fs.call_s3("head_bucket", Bucket=self.bucket)

    def _path(self, key: str) -> str:
        job_id, _, name = key.partition("/")
        key = make_key(job_id, name)
        return f"{self.bucket}/{self.prefix}/{key}" if self.prefix else f"{self.bucket}/{key}"

    def put_bytes(self, job_id: str, name: str, data: bytes, media_type: str | None = None) -> str:
        key = make_key(job_id, name)
        with _failures("store a file"):
            self.fs.pipe_file(self._path(key), data, **({"ContentType": media_type} if media_type else {}))
        return key

    def put_file(self, job_id: str, name: str, source: Path, media_type: str | None = None) -> str:
        key = make_key(job_id, name)
        with _failures("store a file"):
            self.fs.put_file(str(source), self._path(key), **({"ContentType": media_type} if media_type else {}))
        return key

    def read(self, key: str) -> bytes:
        with _failures("read a file"):
            return bytes(self.fs.cat_file(self._path(key)))

    def iter_bytes(self, key: str) -> Iterator[bytes]:
        with _failures("read a file"), self.fs.open(self._path(key), "rb", block_size=CHUNK) as fh:
            while chunk := fh.read(CHUNK):
                yield chunk

    def exists(self, key: str) -> bool:
        try:
            path = self._path(key)
        except ValueError:
            return False
        with _failures("look a file up"):
            self.fs.invalidate_cache(path.rsplit("/", 1)[0])  # another process may have written or deleted it
            return bool(self.fs.isfile(path))

    def local_path(self, key: str) -> Path | None:
        return None

    def size(self, key: str) -> int:
        path = self._path(key)
        with _failures("size a file"):
            self.fs.invalidate_cache(path.rsplit("/", 1)[0])
            return int(self.fs.size(path))

    def url(self, key: str) -> str:
        return f"s3://{self._path(key)}"

    def _job_dir(self, job_id: str) -> str:
        return self._path(f"{check_part(job_id)}/x").rsplit("/", 1)[0]

    def list_job(self, job_id: str) -> list[str]:
        top = self._job_dir(job_id)
        with _failures("list a job's files"):
            self.fs.invalidate_cache(top)  # listings are cached per process; other processes write here
            try:
                found = self.fs.find(top)
            except FileNotFoundError:
                return []
        return sorted(f"{job_id}/{p[len(top) + 1:]}" for p in found if len(p) > len(top) + 1)

    def delete_job(self, job_id: str) -> None:
        top = self._job_dir(job_id)
        with _failures("delete a job's files"):
            try:
                self.fs.rm(top, recursive=True)
            except FileNotFoundError:
                pass
            self.fs.invalidate_cache(top)

    def storage_schemes(self) -> dict[str, dict[str, Any]]:
        """The STAC storage extension v2.0.0's scheme of this bucket, keyed by ``OGCFLOW_STORAGE_PLATFORM``: a
        ``custom-s3`` scheme whose platform is the endpoint (MinIO, SeaweedFS, Ceph...), or ``aws-s3``."""
        endpoint = endpoint_url()
        scheme: dict[str, Any] = (
            {"type": "custom-s3", "platform": endpoint.rstrip("/")} if endpoint else
            {"type": "aws-s3", "platform": "https://{bucket}.s3.{region}.amazonaws.com"})
        scheme.update(bucket=self.bucket, region=region(), requester_pays=False)
        return {self.platform: scheme}
