"""Outbound reads of user-given URLs and paths (inputs by reference, callbacks, packages by reference, the
assets GDAL reads), policed.

A URL is refused unless it is http(s) and every address its host resolves to is public, or the host is
listed in ``allowed_hosts``, or ``allow_private_urls`` is set. A host is resolved once: the connection goes
to the address that was checked (:func:`pin`), so a name that resolves differently a moment later (DNS
rebinding) cannot lead anywhere the check did not see. Redirects are followed hop by hop, each hop checked
and pinned like the first URL. Downloads are bounded in size and time.

Clients that do their own HTTP (GDAL, through libcurl) are given a policing proxy (:class:`PolicingProxy`):
every request they make, every redirect they follow included, goes through it, is checked, and is connected
to the checked address.

Local paths and ``file://`` URLs given by users are refused unless they lie under a root the operator
allowed (:func:`local_path`).
"""

from __future__ import annotations

import ipaddress
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx

from ogcflow.errors import InputFetchError

MAX_REDIRECTS = 5
REDIRECTS = (301, 302, 303, 307, 308)


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


@dataclass(frozen=True)
class Target:
    """Where a checked URL connects: its host (for Host and TLS) and the address that was checked."""

    scheme: str
    host: str
    port: int
    address: str

    @property
    def netloc(self) -> str:
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"{address}:{self.port}"


def _split(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise URLRefused(f"{url}: only http(s) URLs with a host are allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise URLRefused(f"{url}: the port is not a number") from None
    return parts.scheme, parts.hostname, port


def _trusted(host: str, settings: Policy) -> bool:
    return host in settings.allowed_hosts or settings.allow_private_urls


def _refused_address(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not addr.is_global or addr.is_multicast


def resolve(host: str, port: int, settings: Policy, what: str) -> str:
    """The address to connect to for ``host`` (IPv4 first), checked: every address the name resolves to must
    be public unless the host is trusted. Resolved once, here."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else "not a valid host name"
        raise URLRefused(f"{what}: the host '{host}' cannot be resolved ({reason})") from None
    addresses = [str(info[4][0]) for info in infos]
    if not _trusted(host, settings):
        for found in addresses:
            addr = ipaddress.ip_address(found.split("%", 1)[0])
            if _refused_address(addr):
                raise URLRefused(
                    f"{what}: '{host}' is a private, loopback or reserved address ({addr}); such targets are "
                    "refused unless the server allows them (OGCFLOW_ALLOW_PRIVATE_URLS / OGCFLOW_ALLOWED_HOSTS)")
    if not addresses:
        raise URLRefused(f"{what}: the host '{host}' has no address")
    return sorted(addresses, key=lambda a: ":" in a)[0]


def check_url(url: str, settings: Policy) -> None:
    """Refuse ``url`` if the policy would (cheap for trusted hosts: no resolution)."""
    scheme, host, port = _split(url)
    if not _trusted(host, settings):
        resolve(host, port, settings, url)


def pin(url: str, settings: Policy) -> Target:
    """Check ``url`` and resolve its host once: the connection must go to ``Target.address``."""
    scheme, host, port = _split(url)
    return Target(scheme, host, port, resolve(host, port, settings, url))


def pinned_request(client: httpx.Client, method: str, url: str, target: Target, *,
                   headers: dict[str, str] | None = None, content: bytes | None = None) -> httpx.Request:
    """A request for ``url`` that connects to the checked address of ``target`` (Host header and TLS server
    name stay the URL's host, so certificates are verified against it)."""
    parts = urlsplit(url)
    direct = urlunsplit((parts.scheme, target.netloc, parts.path or "/", parts.query, ""))
    host = target.host if target.port == (443 if target.scheme == "https" else 80) else f"{target.host}:{target.port}"
    return client.build_request(method, direct, headers={**(headers or {}), "Host": host}, content=content,
                                extensions={"sni_hostname": target.host})


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """The TLS context of outbound fetches, built once (loading the CA bundle costs ~25 ms)."""
    return httpx.create_ssl_context()


def client(timeout: float) -> httpx.Client:
    """An httpx client for pinned requests: no redirects of its own, no proxy from the environment."""
    return httpx.Client(timeout=timeout, follow_redirects=False, verify=ssl_context(), trust_env=False)


def fetch(url: str, settings: Policy) -> tuple[bytes, str | None]:
    """GET ``url`` under the policy (redirects followed hop by hop, each checked): the body and its type."""
    limit = settings.fetch_max_bytes
    current = url
    try:
        with client(settings.fetch_timeout) as http:
            for _hop in range(MAX_REDIRECTS + 1):
                try:
                    target = pin(current, settings)
                except URLRefused as exc:
                    if current == url:
                        raise
                    raise URLRefused(f"{url}: redirected to a URL the policy refuses ({exc})") from None
                resp = http.send(pinned_request(http, "GET", current, target), stream=True)
                try:
                    if resp.status_code in REDIRECTS and resp.headers.get("location"):
                        current = urljoin(current, resp.headers["location"])
                        continue
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
                finally:
                    resp.close()
            raise InputFetchError(f"{url}: more than {MAX_REDIRECTS} redirects")
    except httpx.TimeoutException:
        raise InputFetchError(f"{url}: no complete answer within {settings.fetch_timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise InputFetchError(f"{url}: {exc.__class__.__name__}: {exc}") from None


# -- local paths ------------------------------------------------------------------------------------------

def is_local(ref: str) -> bool:
    """Whether ``ref`` names a local file (``file://`` or a path) rather than an http(s) URL."""
    return urlsplit(ref).scheme in ("", "file")


def local_path(ref: str, roots: Sequence[Path | str], setting: str) -> Path:
    """The local path named by ``ref`` (``file://`` URL or plain path), links resolved, if it lies under one
    of ``roots`` (the operator's ``setting``); refused otherwise, and always when there are no roots."""
    parts = urlsplit(ref)
    if parts.scheme not in ("", "file") or (parts.scheme == "file" and parts.netloc not in ("", "localhost")):
        raise URLRefused(f"{ref}: only http(s) URLs (or local files under {setting}) can be read")
    path = Path(unquote(parts.path) if parts.scheme == "file" else ref).resolve()
    allowed = [Path(r).resolve() for r in roots]
    if not any(path == root or root in path.parents for root in allowed):
        raise URLRefused(f"{ref}: local files are only read under {setting}" + ("" if allowed else " (none set)"))
    return path


# -- a policing proxy for clients that do their own HTTP --------------------------------------------------

class DownloadBudget:
    """The bytes one job's tools may receive through their policing proxies, every connection together
    (CONNECT tunnels included): counted per chunk relayed from upstream to a tool. The chunk that would go
    over ``limit`` is not relayed: every connection open on the budget is then cut (and its proxy records
    why), and every later one is refused."""

    setting = "OGCFLOW_TOOL_DOWNLOAD_MAX_BYTES"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.received = 0
        self.exhausted = False
        self._lock = threading.Lock()
        self._open: dict[socket.socket, tuple[PolicingProxy, str]] = {}

    def reason(self, url: str) -> str:
        return (f"{url}: the job's tools downloaded more than {self.limit} bytes through the network policy "
                f"(the limit of {self.setting})")

    def enter(self, conn: socket.socket, proxy: PolicingProxy, url: str) -> bool:
        """Count ``conn`` (a tool's connection, relaying ``url``) among those to cut; False once exhausted."""
        with self._lock:
            if self.exhausted:
                return False
            self._open[conn] = (proxy, url)
            return True

    def leave(self, conn: socket.socket) -> None:
        with self._lock:
            self._open.pop(conn, None)

    def take(self, size: int) -> bool:
        """Whether ``size`` more bytes may be relayed to a tool; if not, every open connection is cut."""
        with self._lock:
            self.received += size
            if self.received <= self.limit or self.exhausted:
                return not self.exhausted
            self.exhausted = True
            cut, self._open = self._open, {}
        for conn, (proxy, url) in cut.items():
            proxy.refused.append(self.reason(url))
            try:
                conn.shutdown(socket.SHUT_RDWR)  # its relay ends: the tool's side is closed
            except OSError:
                pass
        return False


class PolicingProxy:
    """An HTTP proxy on loopback for one process's own HTTP clients (GDAL/libcurl: ``GDAL_HTTP_PROXY``):
    ``CONNECT host:port`` (https) and absolute-URI requests (http) are checked with the policy and connected
    to the checked address; anything refused is answered 403 with the reason, which :attr:`refused` keeps.
    Each redirect a client follows is a new request through the proxy, so it is checked too.

    With ``listen=False`` it has no port of its own: :meth:`serve` answers connections accepted elsewhere
    (the sandboxed tools' network, ``ogcflow.packages.toolnet``). With a ``budget``, what it relays back
    to its clients is counted against it (:class:`DownloadBudget`)."""

    def __init__(self, settings: Policy, listen: bool = True, budget: DownloadBudget | None = None) -> None:
        self.settings = settings
        self.budget = budget
        self.refused: list[str] = []
        self.url = ""
        self._server: socketserver.ThreadingTCPServer | None = None
        if not listen:
            return
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="ogcflow-proxy", daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def serve(self, conn: socket.socket, on_end: Callable[[], None] | None = None) -> None:
        """Answer one client connection, in a thread of its own; the connection is closed at the end, then
        ``on_end`` is called."""

        def run() -> None:
            try:
                with conn:
                    self._handle(conn)
            except OSError:
                pass
            finally:
                if on_end is not None:
                    on_end()

        threading.Thread(target=run, name="ogcflow-proxy-conn", daemon=True).start()

    def _refuse(self, conn: socket.socket, reason: str) -> None:
        self.refused.append(reason)
        body = reason.encode("utf-8", errors="replace")
        conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(self.settings.fetch_timeout)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk or len(head) > 65536:
                return
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        try:
            method, target_uri, version = request_line.split(" ", 2)
        except ValueError:
            return
        try:
            if method == "CONNECT":
                host, _, port_text = target_uri.rpartition(":")  # host:port, [v6]:port
                url = f"https://{host}:{port_text}/"
                target = pin(url, self.settings)
            else:
                url = target_uri
                target = pin(url, self.settings)
        except URLRefused as exc:
            self._refuse(conn, str(exc))
            return
        budget = self.budget
        if budget is not None and not budget.enter(conn, self, url):
            self._refuse(conn, budget.reason(url))
            return
        try:
            self._relay(conn, method, url, target, version, header_lines, rest)
        finally:
            if budget is not None:
                budget.leave(conn)

    def _relay(self, conn: socket.socket, method: str, url: str, target: Target, version: str,
               header_lines: list[str], rest: bytes) -> None:
        try:
            upstream = socket.create_connection((target.address, target.port), timeout=self.settings.fetch_timeout)
        except OSError:
            conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            return
        with upstream:
            if method == "CONNECT":
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                if rest:
                    upstream.sendall(rest)
            else:
                parts = urlsplit(url)
                path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
                kept = [h for h in header_lines
                        if h.split(":", 1)[0].strip().lower() not in ("proxy-connection", "proxy-authorization",
                                                                      "connection", "keep-alive")]
                upstream.sendall(f"{method} {path} {version}\r\n".encode("latin-1")
                                 + "".join(f"{h}\r\n" for h in kept).encode("latin-1")
                                 + b"Connection: close\r\n\r\n" + rest)
            _pipe(conn, upstream, self.budget)


def _pipe(a: socket.socket, b: socket.socket, budget: DownloadBudget | None = None) -> None:
    """Copy bytes both ways until either side closes (or what ``b`` sends ``a`` exhausts ``budget``)."""

    def copy(src: socket.socket, dst: socket.socket, budget: DownloadBudget | None = None) -> None:
        try:
            while chunk := src.recv(65536):
                if budget is not None and not budget.take(len(chunk)):
                    break
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    back = threading.Thread(target=copy, args=(b, a, budget), daemon=True)
    back.start()
    copy(a, b)
    back.join()


_PROXIES: dict[tuple[int, bool, tuple[str, ...]], PolicingProxy] = {}


def process_proxy(settings: Policy) -> PolicingProxy:
    """The policing proxy of this process for this policy (started on first use; a forked child starts its
    own; another policy in the same process gets another proxy, never the first one's)."""
    import os

    key = (os.getpid(), bool(settings.allow_private_urls), tuple(settings.allowed_hosts))
    if key not in _PROXIES:
        for other in [k for k in _PROXIES if k[0] != key[0]]:
            del _PROXIES[other]  # a parent's: its threads are not in this process
        _PROXIES[key] = PolicingProxy(settings)
    return _PROXIES[key]
