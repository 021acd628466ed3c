"""From a request's credentials to the :class:`Caller` that services act for.

- Credentials: ``Authorization: Bearer <token>`` (an OpenID Connect access token, an API key, or the admin
  token) or ``X-API-Key: <key>``.
- Whether they are required: ``OGCFLOW_AUTH`` (``required`` | ``open``), or else required as soon as an
  OpenID issuer is configured or an API key has been created (even if revoked since). Open: a caller
  without credentials may read and execute in every namespace; deploying still needs a deployer's credential.
- A caller acts in its own namespace (admins in every one); any other namespace answers 404, as if it did
  not exist.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ogcflow.auth import apikeys
from ogcflow.auth.oidc import InvalidToken, OIDCVerifier, ProviderUnavailable, role_names
from ogcflow.domain import DEFAULT_NAMESPACE, Caller, Role
from ogcflow.errors import Forbidden, NotFound, ServiceUnavailable
from ogcflow.errors import Unauthorized as _Unauthorized
from ogcflow.settings import AuthSettings
from ogcflow.store.apikeys import ApiKeyRecord, ApiKeyStore

NAMESPACE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
#: first path segments the API itself uses: never namespaces
RESERVED = frozenset({"api", "jobs", "processes", "conformance", "static", "swagger-ui", "ogc-api", "health",
                      "readyz", "metrics", "favicon.ico"})
REALM = 'Bearer realm="ogcflow"'
STAMP = "auth.stamp"
STAMP_INTERVAL = 0.05


class Unauthorized(_Unauthorized):
    """401 with the challenge of RFC 6750 (``error`` for credentials that were sent and failed)."""

    def __init__(self, detail: str, *, error: str | None = None) -> None:
        quoted = detail.replace('"', "'")
        challenge = REALM + (f', error="{error}", error_description="{quoted}"' if error else "")
        super().__init__(detail, headers={"WWW-Authenticate": challenge})


class NoSuchNamespace(NotFound):
    pass


def check_namespace(name: str) -> str:
    """A namespace name as it may appear in a path (lower-case letters, digits, inner hyphens; 1-64)."""
    if name in RESERVED or not NAMESPACE.match(name):
        raise NoSuchNamespace(f"'{name[:80]}' is not a namespace: names are 1 to 64 lower-case letters, digits "
                              "and inner hyphens")
    return name


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the credentials say the caller is."""

    subject: str
    #: the namespace the caller belongs to (admins act in every one)
    home: str
    role: Role
    via: str  # oidc | apikey | admin-token


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    os.utime(path)


class Authenticator:
    """One per API process: verifies credentials (with caches) and decides what a caller may reach."""

    def __init__(self, settings: AuthSettings, keys: ApiKeyStore, *, admin_token: str | None,
                 data_dir: Path) -> None:
        self.settings = settings
        self.keys = keys
        self.admin_token = admin_token
        self.stamp = data_dir / STAMP
        self.oidc = OIDCVerifier(settings.oidc_issuer, settings.oidc_audience, leeway=settings.oidc_leeway) \
            if settings.oidc_issuer else None
        self._stamp_seen = -1.0
        self._stamp_checked = -1.0
        self._keys: dict[str, tuple[ApiKeyRecord | None, float]] = {}
        self._required: tuple[bool, float] | None = None

    # -- what changed elsewhere ------------------------------------------------------------------------

    @staticmethod
    def keys_changed(data_dir: Path) -> None:
        """Tell the API processes of this host that keys were created or revoked (they re-read at once)."""
        _touch(data_dir / STAMP)

    def _fresh(self) -> None:
        """Forget what was read of keys when the stamp changed (looked at every 50 ms at most)."""
        now = time.monotonic()
        if now - self._stamp_checked < STAMP_INTERVAL:
            return
        self._stamp_checked = now
        try:
            mtime = os.stat(self.stamp).st_mtime
        except FileNotFoundError:
            mtime = 0.0
        if mtime != self._stamp_seen:
            self._stamp_seen = mtime
            self._keys.clear()
            self._required = None

    # -- is authentication required ----------------------------------------------------------------

    @property
    def required(self) -> bool:
        mode = self.settings.auth
        if mode != "auto":
            return mode == "required"
        if self.oidc is not None:
            return True
        self._fresh()
        now = time.monotonic()
        if self._required is None or now - self._required[1] > self.settings.apikey_cache_seconds:
            # keys ever created, revoked ones included: revoking the last key (a leaked one, say) must not open
            # the server to anonymous callers again
            self._required = (self.keys.count() > 0, now)
        return self._required[0]

    # -- credentials ---------------------------------------------------------------------------------

    def identify(self, authorization: str | None, api_key: str | None) -> Identity | None:
        """The identity of the credentials sent, None when there are none; 401 for credentials that fail."""
        if api_key:
            return self._api_key(api_key.strip())
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("credentials are sent as 'Authorization: Bearer <token>' or 'X-API-Key: <key>'",
                               error="invalid_request")
        if self.admin_token and hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Identity(subject="admin", home=DEFAULT_NAMESPACE, role=Role.admin, via="admin-token")
        if token.startswith(apikeys.PREFIX):
            return self._api_key(token)
        if self.oidc is not None and token.count(".") == 2:
            return self._token(token)
        raise Unauthorized("the bearer token is not valid here", error="invalid_token")

    def _api_key(self, key: str) -> Identity:
        parts = apikeys.split(key)
        if parts is None:
            raise Unauthorized("the API key is malformed", error="invalid_token")
        key_id, secret = parts
        self._fresh()
        now = time.monotonic()
        hit = self._keys.get(key_id)
        if hit is None or now - hit[1] > self.settings.apikey_cache_seconds:
            hit = (self.keys.get(key_id), now)
            self._keys[key_id] = hit
            if len(self._keys) > 10000:
                self._keys.clear()
        record = hit[0]
        if record is None or not record.active or not apikeys.matches(secret, record.secret_hash):
            raise Unauthorized("the API key is unknown or revoked", error="invalid_token")
        return Identity(subject=f"apikey:{record.id}", home=record.namespace, role=record.role, via="apikey")

    def _token(self, token: str) -> Identity:
        assert self.oidc is not None
        try:
            claims = self.oidc.verify(token)
        except InvalidToken as exc:
            raise Unauthorized(str(exc), error="invalid_token") from None
        except ProviderUnavailable as exc:
            raise ServiceUnavailable(f"tokens cannot be checked now: {exc}") from None
        s = self.settings
        home = claims.get(s.oidc_namespace_claim)
        if not isinstance(home, str) or not home:
            raise Unauthorized(f"the token has no '{s.oidc_namespace_claim}' claim naming the caller's namespace",
                               error="invalid_token")
        names = role_names(claims.get(s.oidc_roles_claim)) or s.oidc_default_roles
        roles = [Role(n) for n in names if n in Role.__members__]
        if not roles:
            raise Forbidden(f"the token grants no role of this server ({', '.join(Role.__members__)})")
        subject = str(claims.get("sub") or claims.get("client_id") or "unknown")
        return Identity(subject=f"oidc:{subject}", home=home, role=max(roles, key=lambda r: r.rank), via="oidc")

    # -- the caller -----------------------------------------------------------------------------------

    def caller(self, identity: Identity | None, namespace: str, required: bool | None = None) -> Caller:
        """The caller acting in ``namespace``: 401 when credentials are required and missing, 404 for a
        namespace that is not the caller's (``required``: :attr:`required`, when the caller knows it)."""
        if required is None:
            required = self.required
        if identity is None:
            if required:
                raise Unauthorized("this server needs credentials: 'Authorization: Bearer <token>' or "
                                   "'X-API-Key: <key>'")
            return Caller(namespace=namespace, subject=None, role=Role.executor)
        if identity.role is not Role.admin and identity.home != namespace:
            if not required:  # open namespaces: what anybody may do there, no less
                return Caller(namespace=namespace, subject=None, role=Role.executor)
            raise NoSuchNamespace(f"There is no namespace '{namespace}'.")
        return Caller(namespace=namespace, subject=identity.subject, role=identity.role)
