"""Content negotiation (``?f=`` then ``Accept``), JSON and HTML responses."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from ogcflow.errors import InvalidParameter

FORMATS = {"json": "application/json", "html": "text/html"}

_templates = Environment(
    loader=FileSystemLoader(str(Path(__file__).resolve().parent.parent / "web" / "templates")),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
_templates.policies["json.dumps_function"] = lambda v, **kw: orjson.dumps(v).decode()
_templates.filters["tojson_pretty"] = lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2).decode()


class JSONResp(Response):
    """JSON encoded with orjson."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _q(params: str) -> float:
    for p in params.split(";"):
        name, _, value = p.strip().partition("=")
        if name == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def wants_html(request: Request) -> bool:
    """True when the client asks for HTML: ``f=html``, or an Accept preferring text/html to JSON."""
    f = request.query_params.get("f")
    if f is not None:
        if f not in FORMATS:
            raise InvalidParameter(f"f={f!r} is not offered; use one of: {', '.join(FORMATS)}")
        return f == "html"
    accept = request.headers.get("accept")
    if not accept or "html" not in accept:
        return False
    html_q = json_q = 0.0
    for item in accept.split(","):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        q = _q(params)
        if media in ("text/html", "application/xhtml+xml"):
            html_q = max(html_q, q)
        elif media in ("application/json", "application/geo+json") or media.endswith("+json"):
            json_q = max(json_q, q)
    return html_q > 0 and html_q >= json_q


def render_html(name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(_templates.get_template(name).render(**context), status_code=status_code)


def etag_of(body: bytes) -> str:
    """A strong ETag of a representation's bytes."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def not_modified(request: Request, etag: str) -> bool:
    """Whether the client's ``If-None-Match`` already names ``etag`` (pollers then get a 304, no body)."""
    sent = request.headers.get("if-none-match")
    if not sent:
        return False
    return sent.strip() == "*" or etag in (t.strip().removeprefix("W/") for t in sent.split(","))


def conditional(request: Request, body: bytes, media_type: str, headers: dict[str, str] | None = None) -> Response:
    """``body`` with its ETag, or 304 Not Modified when the client has it already."""
    etag = etag_of(body)
    all_headers = {"ETag": etag, "Cache-Control": "no-cache", **(headers or {})}
    if not_modified(request, etag):
        return Response(status_code=304, headers=all_headers)
    return Response(body, media_type=media_type, headers=all_headers)


def respond(request: Request, data: dict[str, Any], template: str, *, status_code: int = 200,
            headers: dict[str, str] | None = None, etag: bool = False, **context: Any) -> Response:
    """The resource as JSON, or as the HTML page ``template`` when the client asks for HTML. ``etag``: the
    JSON has an ETag and a request naming it in ``If-None-Match`` is answered 304 (for pollers)."""
    if wants_html(request):
        context.setdefault("root", getattr(request.state, "root_url", None) or context.get("base", ""))
        context.setdefault("titiler", request.app.state.services.settings.server.titiler_url or "")
        resp: Response = render_html(template, status_code, data=data, request=request, **context)
    elif etag and status_code == 200:
        resp = conditional(request, orjson.dumps(data), "application/json")
    else:
        resp = JSONResp(data, status_code=status_code)
    if headers:
        resp.headers.update(headers)
    return resp
