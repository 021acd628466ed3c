"""The test OpenID provider (scripts/oidc.sh) does what the OIDC authentication tests rely on."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests import oidc_support as oidc

jwt = pytest.importorskip("jwt", reason="the OIDC tests verify tokens with PyJWT: pyjwt[crypto] in the test extras")

CLIENTS = {
    "acme-deployer": ("acme", ["deployer"]),
    "acme-executor": ("acme", ["executor"]),
    "acme-reader": ("acme", ["reader"]),
    "beta-executor": ("beta", ["executor"]),
    "platform-admin": ("admin", ["admin"]),
    "acme-es256": ("acme", ["executor"]),
    "acme-short": ("acme", ["executor"]),
}


@pytest.fixture(scope="module", autouse=True)
def provider() -> str:
    return oidc.issuer()


def verify(token: str, audience: str = oidc.AUDIENCE, **options: Any) -> dict[str, Any]:
    """The claims of ``token``, checked against the provider's JWKS (fetched anew), issuer and ``audience``."""
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(oidc.jwks())[header["kid"]]
    return jwt.decode(token, key, algorithms=[header["alg"]], audience=audience, issuer=oidc.issuer(),
                      options={"require": ["iss", "sub", "aud", "exp", "iat", "nbf"], **options})


def test_discovery() -> None:
    meta = oidc.discovery()
    iss = oidc.issuer()
    assert iss.startswith("http://127.0.0.1:")
    assert meta["issuer"] == iss
    for endpoint in ("jwks_uri", "token_endpoint", "authorization_endpoint", "userinfo_endpoint",
                     "introspection_endpoint"):
        assert meta[endpoint].startswith(iss + "/"), endpoint
    assert {"client_credentials", "authorization_code"} <= set(meta["grant_types_supported"])
    assert "code" in meta["response_types_supported"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"RS256", "ES256"} <= set(meta["id_token_signing_alg_values_supported"])
    assert {"client_secret_basic", "none"} <= set(meta["token_endpoint_auth_methods_supported"])
    assert {"namespace", "roles"} <= set(meta["claims_supported"])


def test_jwks_has_public_rs256_and_es256_keys() -> None:
    keys = oidc.jwks()["keys"]
    by_alg = {k["alg"]: k for k in keys}
    assert by_alg["RS256"]["kty"] == "RSA"
    assert by_alg["ES256"]["kty"] == "EC" and by_alg["ES256"]["crv"] == "P-256"
    assert all(k["use"] == "sig" and k["kid"] for k in keys)
    assert not any(private in k for k in keys for private in ("d", "p", "q", "dp", "dq", "qi"))


@pytest.mark.parametrize("client_id", sorted(CLIENTS))
def test_client_credentials_tokens(client_id: str) -> None:
    token = oidc.client_credentials_token(client_id)
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == ("ES256" if client_id == "acme-es256" else "RS256")
    claims = verify(token)
    namespace, roles = CLIENTS[client_id]
    assert claims["iss"] == oidc.issuer()
    assert claims["aud"] == "ogcflow"
    assert claims["sub"] == claims["client_id"] == client_id
    assert claims["namespace"] == namespace
    assert claims["roles"] == roles
    now = time.time()
    assert claims["nbf"] == claims["iat"] <= now + 1
    ttl = oidc.state()["short_ttl" if client_id == "acme-short" else "token_ttl"]
    assert claims["exp"] - claims["iat"] == ttl
    # the default resource is the same audience
    assert verify(oidc.client_credentials_token(client_id, resource=None))["aud"] == "ogcflow"


def test_es256_token_is_signed_by_the_ec_key() -> None:
    token = oidc.client_credentials_token("acme-es256")
    header = jwt.get_unverified_header(token)
    key = {k["kid"]: k for k in oidc.jwks()["keys"]}[header["kid"]]
    assert (header["alg"], key["kty"], key["crv"]) == ("ES256", "EC", "P-256")
    assert verify(token)["namespace"] == "acme"


def test_wrong_secret_and_unknown_client_get_no_token() -> None:
    with pytest.raises(AssertionError, match="invalid_client"):
        oidc.client_credentials_token("acme-executor", secret="wrong")
    with pytest.raises(AssertionError, match="invalid_client"):
        oidc.client_credentials_token("nobody")


def test_another_audience() -> None:
    token = oidc.client_credentials_token("acme-executor", resource="other-service")
    assert verify(token, audience="other-service")["aud"] == "other-service"
    with pytest.raises(jwt.InvalidAudienceError):
        verify(token)


def test_short_lived_token_expires() -> None:
    token = oidc.client_credentials_token("acme-short")
    claims = verify(token)
    assert claims["exp"] - claims["iat"] == oidc.state()["short_ttl"] <= 10
    time.sleep(max(0.0, claims["exp"] - time.time()) + 1.5)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(token)


def test_authorization_code_flow_with_pkce() -> None:
    response = oidc.authorization_code_response("alice")
    claims = verify(response["access_token"])
    assert claims["sub"] == "alice"
    assert claims["client_id"] == "ogcflow-web"
    assert claims["aud"] == "ogcflow"
    assert claims["namespace"] == "acme"
    assert claims["roles"] == ["executor"]
    id_token = verify(response["id_token"], audience="ogcflow-web", require=["iss", "sub", "aud", "exp", "iat"])
    assert id_token["sub"] == "alice"
    assert oidc.authorization_code_token() != response["access_token"]


def test_authorization_code_flow_wrong_password() -> None:
    with pytest.raises(AssertionError, match="401"):
        oidc.authorization_code_token("alice", password="wrong")
    with pytest.raises(AssertionError, match="401"):
        oidc.authorization_code_token("mallory")


def test_registered_client_claims() -> None:
    secret = oidc.register_client("acme-nobody", namespace="acme")
    claims = verify(oidc.client_credentials_token("acme-nobody", secret=secret))
    assert claims["namespace"] == "acme" and "roles" not in claims
    oidc.register_client("no-claims", ttl=60)
    claims = verify(oidc.client_credentials_token("no-claims"))
    assert "namespace" not in claims and "roles" not in claims
    assert claims["exp"] - claims["iat"] == 60


def test_key_rotation() -> None:
    before = {alg: oidc.client_credentials_token(c) for alg, c in (("RS256", "acme-executor"), ("ES256", "acme-es256"))}
    old_kids = {alg: jwt.get_unverified_header(t)["kid"] for alg, t in before.items()}
    state = oidc.rotate_keys()
    assert set(state["signing_kids"].values()).isdisjoint(old_kids.values())
    assert set(old_kids.values()) <= set(state["retired_kids"])
    jwks_kids = [k["kid"] for k in oidc.jwks()["keys"]]
    for alg, client_id in (("RS256", "acme-executor"), ("ES256", "acme-es256")):
        token = oidc.client_credentials_token(client_id)
        kid = jwt.get_unverified_header(token)["kid"]
        assert kid == state["signing_kids"][alg] != old_kids[alg]
        assert kid in jwks_kids and old_kids[alg] in jwks_kids
        assert verify(token)["sub"] == client_id
        assert verify(before[alg])["sub"] == client_id  # the old key still verifies the old tokens
    assert jwt.get_unverified_header(oidc.authorization_code_token())["kid"] == state["signing_kids"]["RS256"]
    # without keep_old the JWKS lists only the new keys: the old tokens no longer verify
    state = oidc.rotate_keys(keep_old=False)
    assert state["retired_kids"] == []
    assert sorted(k["kid"] for k in oidc.jwks()["keys"]) == sorted(state["signing_kids"].values())
    for token in before.values():
        with pytest.raises(KeyError):
            verify(token)
    assert verify(oidc.client_credentials_token("acme-reader"))["roles"] == ["reader"]
