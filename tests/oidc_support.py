"""Tokens from the test OpenID provider (``scripts/oidc.sh start``: panva's oidc-provider on loopback).

Its clients (client_credentials, secret ``<client_id>-secret``) and the claims of their access tokens:
``acme-deployer`` (namespace acme, roles [deployer]), ``acme-executor`` (acme, [executor]), ``acme-reader``
(acme, [reader]), ``beta-executor`` (beta, [executor]), ``platform-admin`` (admin, [admin]), ``acme-es256``
(acme, [executor], ES256-signed), ``acme-short`` (acme, [executor], tokens live 5 s). The public client
``ogcflow-web`` (authorization code + PKCE S256, redirect URI ``REDIRECT_URI``) signs in the user ``alice``
(namespace acme, roles [executor], password ``alice-password``).

Access tokens are JWTs (header typ ``at+jwt``) with iss, sub, aud (``ogcflow`` by default), exp, iat, nbf, jti,
client_id, namespace and roles; RS256 unless the client says otherwise; lifetime 300 s by default
(``OGCFLOW_OIDC_TOKEN_TTL``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import secrets
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

ISSUER_ENV = "OGCFLOW_TEST_OIDC_ISSUER"
AUDIENCE = "ogcflow"
WEB_CLIENT = "ogcflow-web"
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never served: the flow stops at the redirect to it
TIMEOUT = 30


def issuer() -> str:
    """The test provider's issuer URL; skips the test when no provider was started."""
    url = os.environ.get(ISSUER_ENV)
    if not url:
        pytest.skip(f"OpenID Connect tests need {ISSUER_ENV} (eval \"$(scripts/oidc.sh start)\" starts a provider)")
    return url.rstrip("/")


def _client() -> httpx.Client:
    # loopback only: never through a proxy of the environment
    return httpx.Client(timeout=TIMEOUT, trust_env=False, follow_redirects=False)


@functools.cache
def _discovery(url: str) -> dict[str, Any]:
    with _client() as c:
        r = c.get(f"{url}/.well-known/openid-configuration")
        r.raise_for_status()
        return r.json()


def discovery() -> dict[str, Any]:
    """The provider's ``/.well-known/openid-configuration``."""
    return _discovery(issuer())


def jwks() -> dict[str, Any]:
    """The provider's JWKS, fetched anew (it changes with ``rotate_keys``)."""
    with _client() as c:
        r = c.get(discovery()["jwks_uri"])
        r.raise_for_status()
        return r.json()


def resource_indicator(resource: str) -> str:
    """The RFC 8707 resource indicator for the audience ``resource``.

    oidc-provider wants an absolute URI: a bare name ``NAME`` is sent as ``urn:NAME``, which the provider turns
    back into the audience ``NAME``; a value with a ``:`` is sent (and becomes the audience) as it is.
    """
    return resource if ":" in resource else f"urn:{resource}"


def _token_error(r: httpx.Response) -> AssertionError:
    return AssertionError(f"token request failed: {r.status_code} {r.text}")


def client_credentials_token(client_id: str, secret: str | None = None, resource: str | None = AUDIENCE,
                             scope: str | None = None) -> str:
    """An access token (a JWT) of ``client_id`` by the client_credentials grant.

    ``secret`` defaults to ``<client_id>-secret``; ``resource`` is the audience (``None``: the provider's default,
    ``ogcflow``).
    """
    data = {"grant_type": "client_credentials"}
    if resource is not None:
        data["resource"] = resource_indicator(resource)
    if scope:
        data["scope"] = scope
    with _client() as c:
        r = c.post(discovery()["token_endpoint"], data=data, auth=(client_id, secret or f"{client_id}-secret"))
    if r.status_code != 200:
        raise _token_error(r)
    return r.json()["access_token"]


class _Forms(HTMLParser):
    """The forms of a page: (action, method, {name: value}) of each."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), a.get("method", "get").lower(), {}))
        elif tag in ("input", "button") and self.forms and a.get("name"):
            self.forms[-1][2].setdefault(a["name"], a.get("value", ""))


def authorization_code_response(username: str = "alice", password: str | None = None,
                                resource: str | None = AUDIENCE, scope: str = "openid profile ogcflow"
                                ) -> dict[str, Any]:
    """The token response (access_token, id_token, ...) of the authorization code flow with PKCE S256.

    Drives the provider's own sign-in and consent pages with httpx as a browser would (cookies, redirects,
    form posts); ``password`` defaults to ``<username>-password``. A wrong one fails with AssertionError.
    """
    meta = discovery()
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state = secrets.token_urlsafe(16)
    params = {"client_id": WEB_CLIENT, "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": scope,
              "state": state, "nonce": secrets.token_urlsafe(16), "code_challenge": challenge,
              "code_challenge_method": "S256"}
    if resource is not None:
        params["resource"] = resource_indicator(resource)
    code = None
    with _client() as c:
        r = c.get(meta["authorization_endpoint"], params=params)
        for _ in range(20):
            if r.is_redirect:
                location = urljoin(str(r.url), r.headers["location"])
                if location.startswith(REDIRECT_URI):
                    query = parse_qs(urlsplit(location).query)
                    if "error" in query:
                        raise AssertionError(f"authorization failed: {query}")
                    assert query.get("state") == [state], query
                    code = query["code"][0]
                    break
                r = c.get(location)
            elif r.status_code == 200 and "<form" in r.text:
                parser = _Forms()
                parser.feed(r.text)
                action, method, fields = parser.forms[0]
                if "username" in fields:
                    fields.update(username=username, password=password or f"{username}-password")
                r = c.request(method.upper(), urljoin(str(r.url), action), data=fields)
            else:
                raise AssertionError(f"unexpected answer in the authorization flow: {r.status_code} {r.text[:2000]}")
        assert code, f"the authorization flow did not reach {REDIRECT_URI}"
        r = c.post(meta["token_endpoint"], data={"grant_type": "authorization_code", "code": code,
                                                 "redirect_uri": REDIRECT_URI, "client_id": WEB_CLIENT,
                                                 "code_verifier": verifier})
    if r.status_code != 200:
        raise _token_error(r)
    return r.json()


def authorization_code_token(username: str = "alice", password: str | None = None,
                             resource: str | None = AUDIENCE) -> str:
    """The access token (a JWT) of ``username`` by the authorization code flow with PKCE S256."""
    return authorization_code_response(username, password, resource)["access_token"]


def rotate_keys(keep_old: bool = True) -> dict[str, Any]:
    """Make the provider sign with new keys (RS256 and ES256) from now on.

    The JWKS then lists the new keys first and, with ``keep_old``, the previous ones too (tokens issued before
    still verify); without, only the new ones. Returns the provider's state: ``signing_kids`` ({alg: kid}),
    ``retired_kids``, ``clients``.
    """
    with _client() as c:
        r = c.post(f"{issuer()}/_test/rotate", params={} if keep_old else {"keep": "0"})
        r.raise_for_status()
        return r.json()


def register_client(client_id: str, namespace: str | None = None, roles: list[str] | None = None,
                    ttl: int | None = None, alg: str | None = None, secret: str | None = None) -> str:
    """Add (or replace) a client_credentials client whose tokens carry these claims; returns its secret.

    A claim left ``None`` is left out of its tokens (e.g. a token without namespace); ``alg``: RS256 or ES256.
    """
    body = {"client_id": client_id, "namespace": namespace, "roles": roles, "ttl": ttl, "alg": alg,
            "client_secret": secret}
    with _client() as c:
        r = c.post(f"{issuer()}/_test/clients", json=body)
        r.raise_for_status()
        return r.json()["client_secret"]


def state() -> dict[str, Any]:
    """The provider's settings: ``token_ttl``, ``short_ttl`` (acme-short's), ``signing_kids`` ({alg: kid}),
    ``retired_kids`` and ``clients``."""
    with _client() as c:
        r = c.get(f"{issuer()}/_test/state")
        r.raise_for_status()
        return r.json()
