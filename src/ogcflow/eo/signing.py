"""Planetary Computer signing: assets on its blob storage are read with a collection SAS token.

Tokens come from ``<OGCFLOW_PC_SAS_URL>/token/<collection>`` (JSON ``token`` and ``msft:expiry``) and are
cached in ``<data_dir>/cache/pc-tokens/`` until a minute before they expire, shared by every step process of
the machine. Only hrefs whose host matches ``OGCFLOW_PC_SIGNED_HOSTS`` are signed.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from ogcflow.eo.config import StepConfig
from ogcflow.errors import ProcessError
from ogcflow.netpolicy import ssl_context

_SAFE = re.compile(r"[^A-Za-z0-9._-]")
MARGIN = 60.0  # seconds before expiry when a cached token is no longer used


class SigningFailed(ProcessError):
    """No token could be obtained for a Planetary Computer asset."""


class Signer:
    def __init__(self, settings: StepConfig) -> None:
        self.url = settings.pc_sas_url.rstrip("/")
        self.hosts = settings.pc_signed_hosts
        self.cache = Path(settings.data_dir).resolve() / "cache" / "pc-tokens"
        self.timeout = settings.fetch_timeout

    def needs(self, href: str) -> bool:
        parts = urlsplit(href)
        host = (parts.netloc or "").lower()
        return any(fnmatch.fnmatch(host, p.lower()) or fnmatch.fnmatch(parts.hostname or "", p.lower())
                   for p in self.hosts)

    def sign(self, href: str, collection: str) -> str:
        if not self.needs(href) or "sig=" in (urlsplit(href).query or ""):
            return href
        token = self.token(collection or "default")
        return href + ("&" if "?" in href else "?") + token.lstrip("?")

    def token(self, collection: str) -> str:
        path = self.cache / f"{_SAFE.sub('_', collection)}.json"
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached["expires"] - MARGIN > time.time():
                return str(cached["token"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        url = f"{self.url}/token/{collection}"
        try:
            resp = httpx.get(url, timeout=self.timeout, verify=ssl_context())
        except httpx.HTTPError as exc:
            raise SigningFailed(f"no signing token for '{collection}' from {url}: {exc}") from None
        if resp.status_code != 200:
            raise SigningFailed(f"no signing token for '{collection}': {url} answered HTTP {resp.status_code}")
        try:
            body = resp.json()
            token = str(body["token"])
            expiry = body.get("msft:expiry")
            expires = datetime.fromisoformat(expiry.replace("Z", "+00:00")).timestamp() if expiry \
                else time.time() + 600
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SigningFailed(f"{url} did not answer a token (JSON with 'token' and 'msft:expiry')") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.part")
        tmp.write_text(json.dumps({"token": token, "expires": expires}), encoding="utf-8")
        tmp.replace(path)
        return token
