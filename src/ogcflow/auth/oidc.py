"""Bearer tokens of an OpenID provider: discovery, JWKS (cached, re-read when a token names an unknown key:
the provider rotated its keys), signature (RS256/ES256 family), ``iss``, ``aud``, ``exp``, ``nbf``.

The provider is the operator's (``OGCFLOW_OIDC_ISSUER``), not a user's URL: it is fetched directly, never
through the network policy of user-given URLs. A verified token is cached until it expires, so a client that
sends the same token again costs a dictionary look-up, not a signature check.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from jwt import PyJWK

log = logging.getLogger("ogcflow.auth")

ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (shown to the client)."""


class ProviderUnavailable(Exception):
    """The OpenID provider's discovery document or keys cannot be read."""


@dataclass(frozen=True, slots=True)
class Claims:
    values: Mapping[str, Any]
    expires: float
    #: the key that signed the token: a cached token is trusted only while its key is published
    kid: str = ""

    def get(self, path: str) -> Any:
        """A claim by name or by dotted path (``realm_access.roles``)."""
        node: Any = self.values
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        return node


class OIDCVerifier:
    def __init__(self, issuer: str, audience: str | None, *, leeway: float = 30.0, timeout: float = 10.0,
                 refetch_after: float = 1.0, max_age: float = 300.0, cache_size: int = 10000) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.leeway = leeway
        self.timeout = timeout
        # an unknown kid re-reads the JWKS (the provider rotated its keys), at most this often: a rotated key
        # is accepted within a second, and tokens with made-up kids cannot flood the provider
        self.refetch_after = refetch_after
        self.max_age = max_age  # the JWKS is re-read this often anyway (withdrawn keys stop working)
        self.cache_size = cache_size
        self._lock = threading.Lock()
        self._keys: dict[str, PyJWK] = {}
        self._jwks_uri: str | None = None
        self._fetched = 0.0
        self._tokens: OrderedDict[str, Claims] = OrderedDict()

    @property
    def discovery_url(self) -> str:
        return self.issuer + "/.well-known/openid-configuration"

    # -- keys --------------------------------------------------------------------------------------

    def _get(self, url: str) -> Any:
        try:
            resp = httpx.get(url, timeout=self.timeout, follow_redirects=False)
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"the OpenID provider at {self.issuer} is unreachable: {exc}") from None
        if resp.status_code != 200:
            raise ProviderUnavailable(f"the OpenID provider answered {resp.status_code} for {url}")
        try:
            return resp.json()
        except ValueError:
            raise ProviderUnavailable(f"the OpenID provider's {url} is not JSON") from None

    def refresh_keys(self) -> None:
        """Read the discovery document (once) and the JWKS."""
        if self._jwks_uri is None:
            doc = self._get(self.discovery_url)
            if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
                raise ProviderUnavailable(f"the discovery document names issuer {doc.get('issuer')!r}, not "
                                          f"{self.issuer!r}")
            self._jwks_uri = str(doc["jwks_uri"])
        jwks = self._get(self._jwks_uri)
        keys: dict[str, PyJWK] = {}
        for data in jwks.get("keys", []):
            if data.get("use", "sig") != "sig":
                continue
            try:
                key = PyJWK.from_dict(data)
            except jwt.exceptions.PyJWKError:
                continue  # a key type or curve this server cannot use
            keys[str(data.get("kid", ""))] = key
        self._keys = keys
        self._fetched = time.monotonic()
        if any(kid not in keys for kid in {c.kid for c in self._tokens.values()}):
            self._tokens.clear()  # a key was withdrawn: the tokens it signed are trusted no more

    def _reread(self) -> None:
        with self._lock:
            if time.monotonic() - self._fetched <= self.max_age:
                return
            try:
                self.refresh_keys()
            except ProviderUnavailable as exc:  # keep the keys known: the provider may be back soon
                log.warning("could not re-read the OpenID provider's keys: %s", exc)
                self._fetched = time.monotonic()

    def _key(self, kid: str) -> PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._lock:
            key = self._keys.get(kid)
            if key is None and (not self._keys or time.monotonic() - self._fetched >= self.refetch_after):
                self.refresh_keys()  # the provider may have rotated its keys
                key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("the token is signed with a key the OpenID provider does not publish")
        return key

    # -- tokens ------------------------------------------------------------------------------------

    def verify(self, token: str) -> Claims:
        digest = hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()
        if self._keys and time.monotonic() - self._fetched > self.max_age:
            self._reread()
        hit = self._tokens.get(digest)
        now = time.time()
        if hit is not None:
            if hit.expires + self.leeway > now and hit.kid in self._keys:
                return hit
            self._tokens.pop(digest, None)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.exceptions.DecodeError:
            raise InvalidToken("the bearer token is not a JWT") from None
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise InvalidToken(f"tokens signed with {alg!r} are not accepted")
        kid = str(header.get("kid", ""))
        key = self._key(kid)
        options: dict[str, Any] = {"require": ["exp", "iss"], "verify_aud": self.audience is not None}
        try:
            values = jwt.decode(token, key=key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway, options=options)  # type: ignore[arg-type]
        except jwt.exceptions.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.exceptions.ImmatureSignatureError:
            raise InvalidToken("the token is not valid yet") from None
        except jwt.exceptions.InvalidAudienceError:
            raise InvalidToken(f"the token is not meant for this server (audience {self.audience!r})") from None
        except jwt.exceptions.InvalidIssuerError:
            raise InvalidToken("the token was issued by another provider") from None
        except jwt.exceptions.InvalidTokenError as exc:
            raise InvalidToken(f"the token is not valid: {exc}") from None
        claims = Claims(values=values, expires=float(values["exp"]), kid=kid)
        self._tokens[digest] = claims
        if len(self._tokens) > self.cache_size:
            self._tokens.popitem(last=False)
        return claims


def role_names(value: Any) -> Sequence[str]:
    """Role names from a claim: a list, or a space/comma separated string."""
    if isinstance(value, str):
        return [v for v in value.replace(",", " ").split() if v]
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return []
