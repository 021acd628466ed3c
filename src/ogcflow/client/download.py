"""``results --download DIR``: the results document, and every file it leads to.

Outputs by reference (``{"href": ...}``) are fetched; a STAC document (an output value, or one fetched) is
followed: its ``item``/``child`` links and its assets (an HTTP ``alternate`` href is taken when the asset's
own href is not reachable from here). HTTP(S) URLs are fetched (with the credentials only on the server's own
origin), ``s3://`` with s3fs when it is installed (endpoint and keys from the ``AWS_*`` variables),
``file://`` when the file is on this machine.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from ogcflow.client.http import Client, ClientError

STAC_TYPES = {"Feature", "FeatureCollection", "Catalog", "Collection"}
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: how deep catalogs are followed (catalog -> collection -> item)
MAX_DEPTH = 6


def safe(name: str) -> str:
    cleaned = _SAFE.sub("_", name).strip("._") or "file"
    return cleaned[:200]


@dataclass
class Downloaded:
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "url: why"


def _is_stac(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("type") in STAC_TYPES


def _s3_get(url: str, dest: Path) -> None:
    try:
        import s3fs
    except ImportError:
        raise ClientError(f"{url}: downloading from S3 needs s3fs (pip install s3fs)") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, config_kwargs={"s3": {"addressing_style": "path"}},
                           client_kwargs={"region_name": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")})
    try:
        fs.get_file(url[len("s3://"):], str(dest))
    except Exception as exc:  # botocore and aiohttp errors: say which file and why
        raise ClientError(f"{url}: {exc.__class__.__name__}: {exc}") from None


class Downloader:
    def __init__(self, client: Client, directory: Path, say: Callable[[str], None]) -> None:
        self.client = client
        self.dir = directory
        self.say = say
        self.done = Downloaded()
        self._seen: set[str] = set()

    def _target(self, sub: str, url: str) -> Path:
        name = safe(unquote(Path(urlsplit(url).path).name) or "file")
        dest = self.dir / sub / name
        n = 1
        while dest.exists():
            dest = self.dir / sub / f"{dest.stem.rsplit('~', 1)[0]}~{n}{dest.suffix}"
            n += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest

    def get(self, url: str, sub: str) -> tuple[Path, bytes | None]:
        """Fetch one URL into ``DIR/sub/``; the path and, for JSON, its bytes (to follow)."""
        dest = self._target(sub, url)
        scheme = urlsplit(url).scheme
        if scheme in ("http", "https"):
            resp = self.client.fetch(url)
            dest.write_bytes(resp.content)
        elif scheme == "s3":
            _s3_get(url, dest)
        elif scheme == "file":
            source = Path(unquote(urlsplit(url).path))
            if not source.is_file():
                raise ClientError(f"{url}: not a file on this machine")
            shutil.copyfile(source, dest)
        else:
            raise ClientError(f"{url}: cannot download a {scheme or 'relative'} URL")
        self.done.files.append(dest)
        self.say(f"{url} -> {dest}")
        data = dest.read_bytes() if dest.suffix.lower() in (".json", ".geojson") else None
        return dest, data

    def _try(self, url: str, sub: str) -> bytes | None:
        if url in self._seen:
            return None
        self._seen.add(url)
        try:
            return self.get(url, sub)[1]
        except ClientError as exc:
            self.done.skipped.append(str(exc))
            self.say(f"skipped {exc}")
            return None

    def _asset_url(self, asset: dict[str, Any], base: str | None) -> str | None:
        href = asset.get("href")
        if not isinstance(href, str):
            return None
        url = urljoin(base, href) if base else href
        scheme = urlsplit(url).scheme
        local = scheme == "file" and Path(unquote(urlsplit(url).path)).is_file()
        if scheme in ("http", "https") or local:
            return url
        for alt in (asset.get("alternate") or {}).values():  # the alternate-assets extension
            alt_href = alt.get("href") if isinstance(alt, dict) else None
            if isinstance(alt_href, str) and urlsplit(alt_href).scheme in ("http", "https"):
                return alt_href
        return url

    def stac(self, doc: dict[str, Any], sub: str, base: str | None, depth: int = 0) -> None:
        """A STAC document's assets and, for catalogs and collections, their items and children."""
        features = doc.get("features") if doc.get("type") == "FeatureCollection" else None
        if isinstance(features, list):
            for feature in features:
                if isinstance(feature, dict):
                    self.stac(feature, sub, base, depth + 1)
            return
        item_sub = f"{sub}/{safe(str(doc.get('id', 'item')))}" if doc.get("type") == "Feature" else sub
        for asset in (doc.get("assets") or {}).values():
            if isinstance(asset, dict):
                url = self._asset_url(asset, base)
                if url:
                    self._try(url, item_sub)
        if depth >= MAX_DEPTH:
            return
        for link in doc.get("links") or []:
            if not isinstance(link, dict) or link.get("rel") not in ("item", "child"):
                continue
            href = link.get("href")
            if not isinstance(href, str):
                continue
            url = urljoin(base, href) if base else href
            data = self._try(url, item_sub)
            self._follow(data, item_sub, url, depth + 1)

    def _follow(self, data: bytes | None, sub: str, url: str, depth: int) -> None:
        if data is None:
            return
        try:
            doc = json.loads(data)
        except ValueError:
            return
        if _is_stac(doc):
            self.stac(doc, sub, url, depth)

    def output(self, name: str, value: Any) -> None:
        """One output of the results document."""
        sub = safe(name)
        if isinstance(value, list):
            for each in value:
                self.output(name, each)
            return
        if not isinstance(value, dict):
            return
        href = value.get("href")
        if isinstance(href, str):
            url = self.client.url(href) if "://" not in href else href
            data = self._try(url, sub)
            self._follow(data, sub, url, 0)
        elif _is_stac(value):
            self.stac(value, sub, None)
        elif _is_stac(value.get("value")):
            self.stac(value["value"], sub, None)
        elif "value" in value:  # an inline value with its media type: a file of its own too
            self.inline(name, value["value"], str(value.get("mediaType") or ""))

    def inline(self, name: str, data: Any, media: str) -> None:
        if isinstance(data, str) and "json" not in media:
            ext = mimetypes.guess_extension(media.split(";")[0].strip()) if media else None
            if media.startswith("text/") or not media:
                ext = ".txt" if media.split(";")[0].strip() in ("", "text/plain") else ext
            payload = data.encode("utf-8")
            if ext is None or not (media.startswith("text/") or media == ""):
                try:  # a binary output by value is base64
                    payload = base64.b64decode(data, validate=True)
                except ValueError:
                    pass
            ext = ext or ".bin"
        else:
            ext, payload = ".json", json.dumps(data, indent=2).encode("utf-8")
        dest = self.dir / safe(name) / f"{safe(name)}{ext}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(payload)
        self.done.files.append(dest)
        self.say(f"{name} -> {dest}")


def download(client: Client, job: str, results: Any, directory: Path, say: Callable[[str], None]) -> Downloaded:
    """Write ``results.json`` and every file the results lead to under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    doc_path = directory / "results.json"
    doc_path.write_text(json.dumps(results, indent=2), encoding="utf-8")
    loader = Downloader(client, directory, say)
    loader.done.files.append(doc_path)
    if isinstance(results, dict):
        if _is_stac(results):
            loader.stac(results, "results", client.job_url(job) + "/results")
        else:
            for name, value in results.items():
                if name != "links":
                    loader.output(name, value)
    return loader.done
