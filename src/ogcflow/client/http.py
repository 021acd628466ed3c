"""The HTTP side of the client: one server (its URL, namespace and credentials), its documents, its errors.

It speaks OGC API - Processes only (Part 1 and the deploy operations of Part 2), so it works with any such
server; nothing here imports the server's modules.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from ogcflow import __version__

JSON_ACCEPT = "application/json, application/problem+json;q=0.9, */*;q=0.1"


class ClientError(Exception):
    """The server answered with an error (or could not be reached); ``detail`` says what it said."""

    def __init__(self, message: str, status: int | None = None, document: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.document = document


@dataclass
class Target:
    """Where the server is and who is asking."""

    url: str
    namespace: str | None = None
    api_key: str | None = None
    token: str | None = None
    timeout: float = 60.0
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        """The API of the namespace: ``<url>/<namespace>/ogc-api``, or the URL itself."""
        root = self.url.rstrip("/")
        return f"{root}/{self.namespace}/ogc-api" if self.namespace else root

    def credentials(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        return headers


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


def error_of(resp: httpx.Response) -> ClientError:
    """A readable error from an OGC exception document (or whatever the server sent)."""
    doc: Any = None
    try:
        doc = resp.json()
    except ValueError:
        pass
    if isinstance(doc, dict) and (doc.get("detail") or doc.get("title") or doc.get("description")):
        title = doc.get("title") or doc.get("type") or resp.reason_phrase
        detail = doc.get("detail") or doc.get("description") or ""
        text = f"{title}: {detail}" if detail else str(title)
    else:
        text = resp.text.strip()[:500] or resp.reason_phrase
    return ClientError(f"HTTP {resp.status_code} from {resp.request.method} {resp.request.url}: {text}",
                       resp.status_code, doc)


class Client:
    """One server, over one connection pool."""

    def __init__(self, target: Target) -> None:
        self.target = target
        headers = {"User-Agent": f"ogcflow-client/{__version__}", "Accept": JSON_ACCEPT,
                   **target.credentials(), **target.extra_headers}
        self.http = httpx.Client(headers=headers, timeout=target.timeout, follow_redirects=True)
        self.requests = 0  # how many requests this client made (watch keeps to one a second)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        """``path`` of the API (``/jobs/x``), or a URL as it is."""
        if "://" in path:
            return path
        return self.target.base + "/" + path.lstrip("/")

    def job_url(self, job: str) -> str:
        """A job's id, or its URL (the ``Location`` of an execution)."""
        return job.rstrip("/") if "://" in job else self.url(f"jobs/{job}")

    def request(self, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any) -> httpx.Response:
        url = self.url(path)
        self.requests += 1
        try:
            resp = self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"{method} {url}: {exc.__class__.__name__}: {exc}") from None
        if resp.status_code not in ok:
            raise error_of(resp)
        return resp

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.request(method, path, **kwargs)
        try:
            return resp.json()
        except ValueError:
            raise ClientError(f"{method} {resp.request.url}: not JSON ({resp.headers.get('content-type')})") \
                from None

    # -- the operations -----------------------------------------------------------------------------

    def processes(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Every process, following ``next`` links (at most ``limit``)."""
        found: list[dict[str, Any]] = []
        url: str | None = self.url("processes")
        while url and (limit is None or len(found) < limit):
            doc = self.json("GET", url)
            found.extend(doc.get("processes", []))
            url = next((link["href"] for link in doc.get("links", []) if link.get("rel") == "next"), None)
        return found[:limit] if limit is not None else found

    def describe(self, process_id: str) -> dict[str, Any]:
        doc = self.json("GET", f"processes/{process_id}")
        assert isinstance(doc, dict)
        return doc

    def execute(self, process_id: str, body: dict[str, Any], prefer: str | None) -> httpx.Response:
        """POST the execute request; the response (results: 200, a job: 201, an error: raised)."""
        headers = {"Content-Type": "application/json"}
        if prefer:
            headers["Prefer"] = prefer
        return self.request("POST", f"processes/{process_id}/execution", ok=(200, 201, 204),
                            content=json.dumps(body), headers=headers)

    def status(self, job: str) -> dict[str, Any]:
        doc = self.json("GET", self.job_url(job))
        if not isinstance(doc, dict) or "status" not in doc:
            raise ClientError(f"{self.job_url(job)} is not a job status document")
        return doc

    def jobs(self, limit: int) -> list[dict[str, Any]]:
        doc = self.json("GET", "jobs", params={"limit": limit})
        return list(doc.get("jobs", []))

    def results(self, job: str) -> Any:
        return self.json("GET", self.job_url(job) + "/results")

    def dismiss(self, job: str) -> dict[str, Any]:
        doc = self.json("DELETE", self.job_url(job))
        assert isinstance(doc, dict)
        return doc

    def deploy(self, body: bytes, media_type: str, replace: str | None = None) -> httpx.Response:
        headers = {"Content-Type": media_type}
        if replace:
            return self.request("PUT", f"processes/{replace}", ok=(200, 201, 204), content=body, headers=headers)
        return self.request("POST", "processes", ok=(200, 201), content=body, headers=headers)

    def undeploy(self, process_id: str) -> None:
        self.request("DELETE", f"processes/{process_id}", ok=(200, 204))

    def log_tail(self, href: str, seen: int) -> tuple[bytes, int] | None:
        """What a job's log has after its first ``seen`` bytes (a Range request; a server that sends the whole
        log is sliced); None while it is not available."""
        try:
            resp = self.request("GET", href, ok=(200, 206, 404, 409, 416, 425),
                                headers={"Range": f"bytes={seen}-", "Accept": "text/plain, */*"})
        except ClientError:  # the log is extra: a server that will not give it does not stop the watch
            return None
        if resp.status_code == 206:
            return resp.content, seen + len(resp.content)
        if resp.status_code == 200:
            return resp.content[seen:], len(resp.content)
        return None

    # -- files ------------------------------------------------------------------------------------

    def same_origin(self, url: str) -> bool:
        return _origin(url) == _origin(self.target.url)

    def fetch(self, url: str) -> httpx.Response:
        """GET a file: with the credentials on the server's own origin, without them elsewhere."""
        self.requests += 1
        try:
            if self.same_origin(url):
                resp = self.http.get(url, headers={"Accept": "*/*"})
            else:
                with httpx.Client(timeout=self.target.timeout, follow_redirects=True,
                                  headers={"User-Agent": f"ogcflow-client/{__version__}"}) as plain:
                    resp = plain.get(url)
        except httpx.HTTPError as exc:
            raise ClientError(f"GET {url}: {exc.__class__.__name__}: {exc}") from None
        if resp.status_code != 200:
            raise error_of(resp)
        return resp


def absolute(base: str, href: str) -> str:
    return urljoin(base, href)


def pace(last: float, interval: float) -> float:
    """Sleep until ``interval`` seconds after ``last`` (monotonic); the time now."""
    wait = last + interval - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    return time.monotonic()
