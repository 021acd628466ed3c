"""Content negotiation (``?f=`` then ``Accept``), JSON and HTML responses."""

from __future__ import annotations

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


def respond(request: Request, data: dict[str, Any], template: str, *, status_code: int = 200,
            headers: dict[str, str] | None = None, **context: Any) -> Response:
    """The resource as JSON, or as the HTML page ``template`` when the client asks for HTML."""
    if wants_html(request):
        context.setdefault("root", getattr(request.state, "root_url", None) or context.get("base", ""))
        resp: Response = render_html(template, status_code, data=data, request=request, **context)
    else:
        resp = JSONResp(data, status_code=status_code)
    if headers:
        resp.headers.update(headers)
    return resp
