"""Landing page, conformance declaration and the API definition."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ogcflow import __version__, models
from ogcflow.api.deps import Ctx, get_ctx
from ogcflow.api.negotiation import JSONResp, render_html, respond, wants_html

router = APIRouter()

_CONF = "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/oas30",
    _CONF + "core",
    _CONF + "ogc-process-description",
    _CONF + "json",
    _CONF + "html",
    _CONF + "oas30",
    _CONF + "job-list",
    _CONF + "dismiss",
    _CONF + "callback",
    "http://www.opengis.net/spec/ogcapi-processes-2/1.0/conf/deploy-replace-undeploy",
    "http://www.opengis.net/spec/ogcapi-processes-2/1.0/conf/ogcapppkg",
    "http://www.opengis.net/spec/ogcapi-processes-2/1.0/conf/cwl",
]

OAS_MEDIA = "application/vnd.oai.openapi+json;version=3.0"


def security_schemes(ctx: Ctx) -> dict[str, Any]:
    """How clients authenticate, for /api: API keys (as a bearer token or X-API-Key), and OpenID Connect
    when an issuer is configured. Optional while the namespaces are open."""
    auth = ctx.settings.auth
    schemes: dict[str, Any] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key (ogk_...) or an access token"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key"},
    }
    if auth.oidc_issuer:
        schemes["oidc"] = {"type": "openIdConnect", "openIdConnectUrl": auth.oidc_issuer.rstrip("/")
                           + "/.well-known/openid-configuration"}
    return {"schemes": schemes, "optional": not ctx.auth_required}


@router.get("/", summary="Landing page", tags=["Capabilities"], operation_id="getLandingPage",
            response_model=models.LandingPage)
def landing(request: Request, ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    b = ctx.base_url
    settings = ctx.settings.server
    links = [
        models.Link(href=b + "/", rel="self", type="application/json", title="this document"),
        models.Link(href=b + "/?f=html", rel="alternate", type="text/html", title="this document as HTML"),
        models.Link(href=b + "/api", rel="service-desc", type=OAS_MEDIA, title="the API definition"),
        models.Link(href=b + "/api?f=html", rel="service-doc", type="text/html",
                    title="the API documentation"),
        models.Link(href=b + "/conformance", rel="http://www.opengis.net/def/rel/ogc/1.0/conformance",
                    type="application/json", title="conformance classes"),
        models.Link(href=b + "/processes", rel="http://www.opengis.net/def/rel/ogc/1.0/processes",
                    type="application/json", title="the processes"),
        models.Link(href=b + "/jobs", rel="http://www.opengis.net/def/rel/ogc/1.0/job-list",
                    type="application/json", title="the jobs"),
    ]
    page = models.LandingPage(title=settings.title, description=settings.description, version=__version__,
                              links=links)
    return respond(request, page.dump(), "landing.html", base=b, title=settings.title)


@router.get("/conformance", summary="Conformance classes", tags=["Capabilities"],
            operation_id="getConformanceClasses", response_model=models.ConfClasses)
def conformance(request: Request, ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    return respond(request, models.ConfClasses(conformsTo=CONFORMANCE).dump(), "conformance.html",
                   base=ctx.base_url, title="Conformance")


@router.get("/api", summary="The API definition (OpenAPI 3.0)", tags=["Capabilities"],
            operation_id="getAPI", responses={200: {"content": {OAS_MEDIA: {}, "text/html": {}}}})
def api_definition(request: Request, ctx: Annotated[Ctx, Depends(get_ctx)]) -> Response:
    if wants_html(request):
        return render_html("api.html", base=ctx.base_url, root=ctx.root_url, title="API documentation")
    from ogcflow.api.openapi import openapi_document

    doc = openapi_document(request.app, ctx.processes, ctx.caller, ctx.base_url, security_schemes(ctx))
    return JSONResp(doc, media_type=OAS_MEDIA if "openapi" in request.headers.get("accept", "") else
                    "application/json")
