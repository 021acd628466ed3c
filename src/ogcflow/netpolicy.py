"""Outbound HTTP to user-given URLs (inputs by reference, callbacks), policed.

A URL is refused unless it is http(s) and every address its host resolves to is public, or the host is
listed in ``allowed_hosts``, or ``allow_private_urls`` is set. Downloads are bounded in size and time.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from functools import lru_cache
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from ogcflow.errors import InputFetchError


class Policy(Protocol):
    """The settings the policy reads (:class:`ogcflow.settings.NetworkSettings` and the steps' configuration)."""

    @property
    def allow_private_urls(self) -> bool: ...
    @property
    def allowed_hosts(self) -> list[str]: ...
    @property
    def fetch_timeout(self) -> float: ...
    @property
    def fetch_max_bytes(self) -> int: ...


class URLRefused(InputFetchError):
    """The URL may not be fetched under the server's network policy."""


def check_url(url: str, settings: Policy) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise URLRefused(f"{url}: only http(s) URLs with a host are allowed")
    host = parts.hostname
    if host in settings.allowed_hosts or settings.allow_private_urls:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise URLRefused(f"{url}: the host '{host}' cannot be resolved ({exc.strerror})") from None
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if not addr.is_global or addr.is_multicast:
            raise URLRefused(
                f"{url}: '{host}' is a private, loopback or reserved address ({addr}); such targets are "
                "refused unless the server allows them (OGCFLOW_ALLOW_PRIVATE_URLS / OGCFLOW_ALLOWED_HOSTS)"
            )


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """The TLS context of outbound fetches, built once (loading the CA bundle costs ~25 ms)."""
    return httpx.create_ssl_context()


def fetch(url: str, settings: Policy) -> tuple[bytes, str | None]:
    """GET ``url`` under the policy: returns the body and its media type."""
    check_url(url, settings)
    limit = settings.fetch_max_bytes
    try:
        with httpx.Client(timeout=settings.fetch_timeout, follow_redirects=False, verify=ssl_context()) as client, \
                client.stream("GET", url) as resp:
            if resp.status_code in (301, 302, 303, 307, 308):
                target = resp.headers.get("location", "")
                raise InputFetchError(f"{url}: redirects are not followed (to {target})")
            if resp.status_code >= 400:
                raise InputFetchError(f"{url}: the server answered HTTP {resp.status_code}")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > limit:
                raise InputFetchError(f"{url}: {declared} bytes is more than the limit of {limit} bytes")
            chunks, size = [], 0
            for chunk in resp.iter_bytes():
                size += len(chunk)
                if size > limit:
                    raise InputFetchError(f"{url}: more than the limit of {limit} bytes")
                chunks.append(chunk)
            media = resp.headers.get("content-type")
            return b"".join(chunks), (media.split(";")[0].strip() if media else None)
    except httpx.TimeoutException:
        raise InputFetchError(f"{url}: no complete answer within {settings.fetch_timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise InputFetchError(f"{url}: {exc.__class__.__name__}: {exc}") from None
