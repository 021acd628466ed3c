"""OpenID Connect access tokens end to end: a real ``ogcflow serve`` with ``OGCFLOW_OIDC_ISSUER`` set, tokens of
the real test provider (scripts/oidc.sh), every answer over HTTP.

What is checked: the 401 challenges (no token, garbage, forged, another audience, expired), namespaces and
roles from the claims (another tenant's namespace and the root are 404, a role too low is 403), both grants
(client credentials; authorization code with PKCE), ES256 keys, a key rotation seen by a running server,
tokens without the namespace or roles claim, OGCFLOW_OIDC_DEFAULT_ROLES, and the security scheme in /api.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import oidc_support as oidc
from tests.ogc_schemas import validate, validate_exception
from tests.server import Server

jwt = pytest.importorskip("jwt", reason="the OIDC tests read tokens with PyJWT: pyjwt[crypto] in the test extras")

ACME = "/acme/ogc-api"
BETA = "/beta/ogc-api"
LEEWAY = 1  # OGCFLOW_OIDC_LEEWAY of the servers here
REFETCH = 1  # the verifier re-reads the JWKS for an unknown kid at most this often (seconds)
NOT_PUBLISHED = "signed with a key the OpenID provider does not publish"

SAY = """
cwlVersion: v1.2
class: CommandLineTool
id: acme-say
label: Say
doc: Says the words.
baseCommand: [echo]
stdout: said.txt
inputs:
  words: {type: string, inputBinding: {position: 1}}
outputs:
  said: {type: stdout}
"""


def oidc_server(data_dir: Path, **env: str) -> Server:
    """A server that needs credentials (Server.start waits for /health, which needs none)."""
    return Server(data_dir, env={"OGCFLOW_OIDC_ISSUER": oidc.issuer(), "OGCFLOW_OIDC_LEEWAY": str(LEEWAY),
                                     **env}).start()


# -- tokens ------------------------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auth(client_id: str, secret: str | None = None) -> dict[str, str]:
    """The headers of a fresh client-credentials token of ``client_id``."""
    return bearer(oidc.client_credentials_token(client_id, secret=secret))


def claims_of(token: str) -> dict[str, Any]:
    """The claims of a token, unverified (the server verifies them)."""
    return dict(jwt.decode(token, options={"verify_signature": False}))


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    head, body, signature = token.split(".")
    pad = "=" * (-len(head) % 4), "=" * (-len(body) % 4)
    return (json.loads(base64.urlsafe_b64decode(head + pad[0])), json.loads(base64.urlsafe_b64decode(body + pad[1])),
            signature)


def assemble(header: dict[str, Any], claims: dict[str, Any], signature: str) -> str:
    return ".".join((b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), signature))


def self_signed(token: str, kid: str) -> str:
    """The claims of ``token`` signed with a fresh RSA key of ours, under the key id ``kid``."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims_of(token), key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt"})


# -- assertions --------------------------------------------------------------------------------------------


def assert_challenge(resp: httpx.Response, *, error: str | None, detail: str | None = None) -> dict[str, Any]:
    """A 401 OGC exception with the RFC 6750 challenge; ``error`` (and ``detail`` in both) when a credential
    was sent."""
    doc = validate_exception(resp, 401)
    challenge = resp.headers.get("www-authenticate", "")
    assert challenge.startswith('Bearer realm="ogcflow"'), challenge
    if error is None:
        assert "error=" not in challenge, challenge
    else:
        assert f'error="{error}"' in challenge, challenge
        assert "error_description=" in challenge, challenge
    if detail is not None:
        assert detail in doc["detail"], doc
        assert detail.replace('"', "'") in challenge, challenge
    return doc


def wait_job(http: httpx.Client, url: str, headers: dict[str, str], timeout: float = 60) -> dict[str, Any]:
    """The job's status once it has ended (every poll must be allowed); fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        resp = http.get(url, headers=headers)
        assert resp.status_code == 200, resp.text
        info: dict[str, Any] = resp.json()
        if info["status"] in ("successful", "failed", "dismissed"):
            return info
        assert time.monotonic() < deadline, f"job still {info['status']} after {timeout} s: {info}"
        time.sleep(0.05)


def submit(http: httpx.Client, base: str, headers: dict[str, str], seconds: float = 0.2) -> str:
    """An asynchronous sleep job in ``base``'s namespace, waited for; its URL."""
    resp = http.post(f"{base}/processes/sleep/execution", json={"inputs": {"seconds": seconds}},
                     headers={**headers, "Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    location = resp.headers["location"]
    assert location.startswith(f"{http.base_url}".rstrip("/") + f"{base}/jobs/"), location
    info = wait_job(http, location, headers)
    assert info["status"] == "successful", info
    return location


# -- the servers -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def provider() -> str:
    return oidc.issuer()  # skips the module when no provider runs


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, provider: str) -> Iterator[Server]:
    server = oidc_server(tmp_path_factory.mktemp("oidc"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http(srv: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=60, trust_env=False) as c:
        yield c


@pytest.fixture(scope="module")
def jobs(http: httpx.Client) -> dict[str, str]:
    """One finished job in each of acme (acme-executor's), beta (beta-executor's) and the default namespace
    (platform-admin's): their ids."""
    made = {}
    for name, base, client_id in (("acme", ACME, "acme-executor"), ("beta", BETA, "beta-executor"),
                                  ("default", "", "platform-admin")):
        made[name] = submit(http, base, auth(client_id)).rsplit("/", 1)[1]
    return made


@pytest.fixture(scope="module")
def beta_reader(provider: str) -> str:
    return oidc.register_client("auth-beta-reader", namespace="beta", roles=["reader"])


# -- no, bad and expired tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/conformance"), ("GET", "/"), ("GET", "/api"), ("GET", "/processes"), ("GET", "/jobs"),
    ("POST", "/processes/hello-world/execution"),
    ("GET", ACME + "/"), ("GET", ACME + "/conformance"), ("GET", ACME + "/api"), ("GET", ACME + "/processes"),
    ("GET", ACME + "/processes/hello-world"), ("GET", ACME + "/jobs"),
    ("POST", ACME + "/processes/hello-world/execution"), ("POST", ACME + "/processes"),
])
def test_no_token_is_401_with_a_bearer_challenge(http: httpx.Client, method: str, path: str) -> None:
    body = {"inputs": {"name": "nobody"}} if method == "POST" else None
    doc = assert_challenge(http.request(method, path, json=body), error=None)
    assert "needs credentials" in doc["detail"], doc


def test_no_token_runs_nothing(http: httpx.Client) -> None:
    before = http.get(ACME + "/jobs", headers=auth("acme-reader")).json()["jobs"]
    for _ in range(2):
        resp = http.post(ACME + "/processes/sleep/execution", json={"inputs": {"seconds": 0.1}},
                         headers={"Prefer": "respond-async"})
        assert_challenge(resp, error=None)
    after = http.get(ACME + "/jobs", headers=auth("acme-reader")).json()["jobs"]
    assert {j["jobID"] for j in after} == {j["jobID"] for j in before}


def test_other_authorization_schemes_are_401(http: httpx.Client) -> None:
    token = oidc.client_credentials_token("acme-executor")
    for value in (f"Basic {token}", f"Token {token}", "Bearer", f"Bearer{token}"):
        resp = http.get(ACME + "/processes", headers={"Authorization": value})
        assert_challenge(resp, error="invalid_request", detail="Authorization: Bearer <token>")


@pytest.mark.parametrize(("token", "detail"), [
    ("garbage", "the bearer token is not valid here"),
    ("ogk_nope", "the API key is malformed"),
    ("a.b.c", "the bearer token is not a JWT"),
    ("e30.e30.", "tokens signed with None are not accepted"),
])
def test_garbage_tokens_are_401_invalid_token(http: httpx.Client, token: str, detail: str) -> None:
    for path in (ACME + "/processes", "/processes"):
        assert_challenge(http.get(path, headers=bearer(token)), error="invalid_token", detail=detail)
    resp = http.post(ACME + "/processes/hello-world/execution", json={"inputs": {"name": "x"}},
                     headers=bearer(token))
    assert_challenge(resp, error="invalid_token", detail=detail)


def test_token_for_another_audience_is_401(http: httpx.Client) -> None:
    token = oidc.client_credentials_token("acme-executor", resource="other")
    assert claims_of(token)["aud"] == "other"
    for method, path in (("GET", ACME + "/processes"), ("POST", ACME + "/processes/hello-world/execution")):
        resp = http.request(method, path, headers=bearer(token),
                            json={"inputs": {"name": "x"}} if method == "POST" else None)
        assert_challenge(resp, error="invalid_token", detail="not meant for this server (audience 'ogcflow')")


def test_forged_tokens_are_401(http: httpx.Client) -> None:
    real = oidc.client_credentials_token("acme-executor")
    assert http.get(ACME + "/processes", headers=bearer(real)).status_code == 200
    header, claims, signature = unsigned_parts(real)
    # the claims changed under the provider's signature: another tenant, a higher role
    for changes in ({"namespace": "beta"}, {"roles": ["admin"]}):
        forged = assemble(header, {**claims, **changes}, signature)
        for path in (BETA + "/processes", ACME + "/processes"):
            assert_challenge(http.get(path, headers=bearer(forged)), error="invalid_token",
                             detail="Signature verification failed")
    # signed with a key of ours, under the provider's kid or under a kid it never published
    resp = http.get(ACME + "/processes", headers=bearer(self_signed(real, header["kid"])))
    assert_challenge(resp, error="invalid_token", detail="Signature verification failed")
    resp = http.get(ACME + "/processes", headers=bearer(self_signed(real, "not-a-provider-kid")))
    assert_challenge(resp, error="invalid_token", detail=NOT_PUBLISHED)
    # no signature, or a symmetric one (the provider's public key used as an HMAC secret)
    for alg in ("none", "HS256"):
        unsigned = assemble({**header, "alg": alg}, {**claims, "roles": ["admin"]}, "" if alg == "none"
                            else b64(bytes(32)))
        resp = http.get(ACME + "/processes", headers=bearer(unsigned))
        assert_challenge(resp, error="invalid_token", detail=f"tokens signed with '{alg}' are not accepted")


def test_expired_token_is_401(http: httpx.Client) -> None:
    token = oidc.client_credentials_token("acme-short")
    claims = claims_of(token)
    lifetime = claims["exp"] - claims["iat"]
    assert 0 < lifetime <= 10, claims  # acme-short's tokens live a few seconds: the wait below is bounded
    resp = http.post(ACME + "/processes/hello-world/execution", json={"inputs": {"name": "short"}},
                     headers=bearer(token))
    assert resp.status_code == 200, resp.text  # valid (and now cached by the server) until it expires
    time.sleep(max(0.0, claims["exp"] + LEEWAY - time.time()) + 1.0)
    for method, path in (("GET", ACME + "/processes"), ("POST", ACME + "/processes/hello-world/execution")):
        resp = http.request(method, path, headers=bearer(token),
                            json={"inputs": {"name": "short"}} if method == "POST" else None)
        assert_challenge(resp, error="invalid_token", detail="the token has expired")
    # a new token of the same client works again
    assert http.get(ACME + "/processes", headers=auth("acme-short")).status_code == 200


# -- namespaces and roles ----------------------------------------------------------------------------------


def test_executor_executes_in_its_namespace(http: httpx.Client, srv: Server) -> None:
    headers = auth("acme-executor")
    resp = http.post(ACME + "/processes/hello-world/execution", json={"inputs": {"name": "Acme"}}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.text == "Hello Acme!"
    resp = http.post(ACME + "/processes/hello-world/execution",
                     json={"inputs": {"name": "Doc"}, "response": "document"}, headers=headers)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"greeting": {"value": "Hello Doc!", "mediaType": "text/plain"}}

    resp = http.post(ACME + "/processes/sleep/execution", json={"inputs": {"seconds": 0.3}},
                     headers={**headers, "Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    location = resp.headers["location"]
    job_id = resp.json()["jobID"]
    assert location == f"{srv.url}{ACME}/jobs/{job_id}"
    info = wait_job(http, location, headers)
    validate(info, "statusInfo")
    assert info["status"] == "successful", info
    assert all(link["href"].startswith(f"{srv.url}{ACME}/") for link in info["links"]), info["links"]
    results = http.get(location + "/results", headers=headers)
    assert results.status_code == 200, results.text
    assert results.json()["slept"] >= 0.3
    listed = http.get(ACME + "/jobs", headers=headers)
    assert listed.status_code == 200
    assert job_id in {j["jobID"] for j in listed.json()["jobs"]}


def test_a_namespace_sees_only_its_own_jobs(http: httpx.Client, jobs: dict[str, str]) -> None:
    acme, beta = auth("acme-executor"), auth("beta-executor")
    acme_ids = {j["jobID"] for j in http.get(ACME + "/jobs", headers=acme).json()["jobs"]}
    beta_ids = {j["jobID"] for j in http.get(BETA + "/jobs", headers=beta).json()["jobs"]}
    assert jobs["acme"] in acme_ids and jobs["beta"] not in acme_ids and jobs["default"] not in acme_ids
    assert jobs["beta"] in beta_ids and jobs["acme"] not in beta_ids
    # a job id of another namespace, asked for in one's own: no such job
    for suffix in ("", "/results"):
        doc = validate_exception(http.get(f"{ACME}/jobs/{jobs['beta']}{suffix}", headers=acme), 404)
        assert "beta" not in doc["detail"], doc
        validate_exception(http.get(f"{BETA}/jobs/{jobs['acme']}{suffix}", headers=beta), 404)
    validate_exception(http.delete(f"{ACME}/jobs/{jobs['beta']}", headers=acme), 404)
    assert http.get(f"{BETA}/jobs/{jobs['beta']}", headers=beta).json()["status"] == "successful"


#: every resource of the beta namespace and of the root, with a caller who does reach it (not 404)
ELSEWHERE = [
    ("GET", BETA + "/", "beta-executor"),
    ("GET", BETA + "/?f=html", "beta-executor"),
    ("GET", BETA + "/conformance", "beta-executor"),
    ("GET", BETA + "/api", "beta-executor"),
    ("GET", BETA + "/processes", "beta-executor"),
    ("GET", BETA + "/processes/hello-world", "beta-executor"),
    ("POST", BETA + "/processes/hello-world/execution", "beta-executor"),
    ("POST", BETA + "/processes", "beta-executor"),
    ("PUT", BETA + "/processes/hello-world", "beta-executor"),
    ("DELETE", BETA + "/processes/hello-world", "beta-executor"),
    ("GET", BETA + "/jobs", "beta-executor"),
    ("GET", BETA + "/jobs/{beta}", "beta-executor"),
    ("GET", BETA + "/jobs/{beta}/results", "beta-executor"),
    ("DELETE", BETA + "/jobs/{beta}", "auth-beta-reader"),
    ("GET", "/", "platform-admin"),
    ("GET", "/conformance", "platform-admin"),
    ("GET", "/api", "platform-admin"),
    ("GET", "/processes", "platform-admin"),
    ("GET", "/processes/hello-world", "platform-admin"),
    ("POST", "/processes/hello-world/execution", "platform-admin"),
    ("GET", "/jobs", "platform-admin"),
    ("GET", "/jobs/{default}", "platform-admin"),
    ("GET", "/jobs/{default}/results", "platform-admin"),
]


def _send(http: httpx.Client, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    if path.endswith("/execution"):
        return http.post(path, json={"inputs": {"name": "x"}}, headers=headers)
    if method in ("POST", "PUT"):
        return http.request(method, path, content=SAY, headers={**headers, "Content-Type": "application/cwl+yaml"})
    return http.request(method, path, headers=headers)


@pytest.mark.parametrize(("method", "path", "control"), ELSEWHERE)
def test_another_namespace_and_the_root_are_404(http: httpx.Client, jobs: dict[str, str], beta_reader: str,
                                                 method: str, path: str, control: str) -> None:
    path = path.format(**jobs)
    for client_id in ("acme-executor", "acme-deployer", "acme-reader"):
        resp = _send(http, method, path, auth(client_id))
        if path.endswith("f=html"):
            assert resp.status_code == 404 and resp.headers["content-type"].startswith("text/html"), resp.text
            assert "There is no namespace" in resp.text, resp.text
        else:
            doc = validate_exception(resp, 404)
            assert "There is no namespace" in doc["detail"], doc
    # the resource is there: its own namespace's caller (or an admin) reaches it
    resp = _send(http, method, path, auth(control, secret=beta_reader if control == "auth-beta-reader" else None))
    assert resp.status_code in (200, 201, 403), (resp.status_code, resp.text)


def test_reader_reads_but_does_not_execute(http: httpx.Client, jobs: dict[str, str]) -> None:
    headers = auth("acme-reader")
    assert http.get(ACME + "/processes", headers=headers).status_code == 200
    assert http.get(ACME + "/processes/hello-world", headers=headers).json()["id"] == "hello-world"
    assert http.get(f"{ACME}/jobs/{jobs['acme']}", headers=headers).json()["status"] == "successful"
    assert http.get(f"{ACME}/jobs/{jobs['acme']}/results", headers=headers).status_code == 200
    for body, extra in (({"inputs": {"name": "r"}}, {}), ({"inputs": {"seconds": 0.1}}, {"Prefer": "respond-async"})):
        process = "sleep" if "seconds" in body["inputs"] else "hello-world"
        resp = http.post(f"{ACME}/processes/{process}/execution", json=body, headers={**headers, **extra})
        doc = validate_exception(resp, 403)
        assert "needs the executor role" in doc["detail"] and "reader" in doc["detail"], doc
    doc = validate_exception(http.delete(f"{ACME}/jobs/{jobs['acme']}", headers=headers), 403)
    assert "executor" in doc["detail"], doc
    assert http.get(f"{ACME}/jobs/{jobs['acme']}", headers=headers).json()["status"] == "successful"


def test_executor_does_not_deploy(http: httpx.Client) -> None:
    headers = {**auth("acme-executor"), "Content-Type": "application/cwl+yaml"}
    doc = validate_exception(http.post(ACME + "/processes", content=SAY, headers=headers), 403)
    assert "needs the deployer role" in doc["detail"] and "executor" in doc["detail"], doc
    validate_exception(http.get(ACME + "/processes/acme-say", headers=headers), 404)  # nothing was deployed


def test_deployer_deploys_in_its_namespace(http: httpx.Client, srv: Server) -> None:
    deployer = auth("acme-deployer")
    cwl = {**deployer, "Content-Type": "application/cwl+yaml"}
    resp = http.post(ACME + "/processes", content=SAY, headers=cwl)
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == f"{srv.url}{ACME}/processes/acme-say"
    try:
        executor, reader = auth("acme-executor"), auth("acme-reader")
        assert http.get(ACME + "/processes/acme-say", headers=reader).json()["title"] == "Say"
        resp = http.post(ACME + "/processes/acme-say/execution", json={"inputs": {"words": "hi acme"}},
                         headers=executor)
        assert resp.status_code == 200, resp.text
        assert resp.text.strip() == "hi acme"
        # only in acme: not in beta (for beta's caller), not at the root (for an admin)
        validate_exception(http.get(BETA + "/processes/acme-say", headers=auth("beta-executor")), 404)
        validate_exception(http.get("/processes/acme-say", headers=auth("platform-admin")), 404)
        assert "acme-say" not in {p["id"] for p in http.get(BETA + "/processes", headers=auth("beta-executor"))
                                  .json()["processes"]}
        # an executor neither replaces nor undeploys it
        changed = SAY.replace("label: Say", "label: Said")
        validate_exception(http.put(ACME + "/processes/acme-say", content=changed,
                                    headers={**executor, "Content-Type": "application/cwl+yaml"}), 403)
        validate_exception(http.delete(ACME + "/processes/acme-say", headers=executor), 403)
        assert http.put(ACME + "/processes/acme-say", content=changed, headers=cwl).status_code == 204
        assert http.get(ACME + "/processes/acme-say", headers=reader).json()["title"] == "Said"
    finally:
        resp = http.delete(ACME + "/processes/acme-say", headers=deployer)
    assert resp.status_code == 204, resp.text
    validate_exception(http.get(ACME + "/processes/acme-say", headers=auth("acme-reader")), 404)


def test_admin_works_in_every_namespace(http: httpx.Client, jobs: dict[str, str]) -> None:
    admin = auth("platform-admin")
    assert claims_of(admin["Authorization"].split()[1])["namespace"] == "admin"
    for base, name in ((ACME, "acme"), (BETA, "beta"), ("", "default")):
        resp = http.post(base + "/processes/hello-world/execution", json={"inputs": {"name": name}}, headers=admin)
        assert resp.status_code == 200, resp.text
        assert resp.text == f"Hello {name}!"
        resp = http.get(f"{base}/jobs/{jobs[name]}", headers=admin)
        assert resp.status_code == 200 and resp.json()["status"] == "successful", resp.text
        assert jobs[name] in {j["jobID"] for j in http.get(base + "/jobs", headers=admin).json()["jobs"]}
    # still one namespace at a time: acme's job is not beta's
    validate_exception(http.get(f"{BETA}/jobs/{jobs['acme']}", headers=admin), 404)
    # and deploys anywhere
    cwl = {**admin, "Content-Type": "application/cwl+yaml"}
    assert http.post(BETA + "/processes", content=SAY, headers=cwl).status_code == 201
    try:
        assert http.get(BETA + "/processes/acme-say", headers=auth("beta-executor")).status_code == 200
        validate_exception(http.get(ACME + "/processes/acme-say", headers=auth("acme-reader")), 404)
    finally:
        assert http.delete(BETA + "/processes/acme-say", headers=admin).status_code == 204


def test_alice_by_authorization_code_and_pkce_is_an_executor_in_acme(http: httpx.Client, srv: Server,
                                                                      jobs: dict[str, str]) -> None:
    token = oidc.authorization_code_token("alice")
    claims = claims_of(token)
    assert (claims["sub"], claims["client_id"]) == ("alice", "ogcflow-web")
    alice = bearer(token)
    resp = http.post(ACME + "/processes/hello-world/execution", json={"inputs": {"name": "Alice"}}, headers=alice)
    assert resp.status_code == 200 and resp.text == "Hello Alice!", resp.text
    location = submit(http, ACME, alice)
    assert location.startswith(f"{srv.url}{ACME}/jobs/")
    assert http.get(location + "/results", headers=alice).status_code == 200
    validate_exception(http.post(ACME + "/processes", content=SAY,
                                 headers={**alice, "Content-Type": "application/cwl+yaml"}), 403)
    for path in (BETA + "/processes", "/processes", f"{BETA}/jobs/{jobs['beta']}"):
        validate_exception(http.get(path, headers=alice), 404)
    # an executor dismisses its own jobs only: alice is not acme-executor
    executor_job = submit(http, ACME, auth("acme-executor"))
    doc = validate_exception(http.delete(executor_job, headers=alice), 403)
    assert "another caller" in doc["detail"], doc
    resp = http.delete(location, headers=alice)
    assert resp.status_code == 200 and resp.json()["status"] == "dismissed", resp.text
    resp = http.delete(executor_job, headers=auth("acme-executor"))
    assert resp.status_code == 200 and resp.json()["status"] == "dismissed", resp.text


def test_es256_tokens_are_accepted(http: httpx.Client) -> None:
    token = oidc.client_credentials_token("acme-es256")
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    resp = http.post(ACME + "/processes/hello-world/execution", json={"inputs": {"name": "EC"}},
                     headers=bearer(token))
    assert resp.status_code == 200 and resp.text == "Hello EC!", resp.text
    validate_exception(http.get(BETA + "/processes", headers=bearer(token)), 404)
    header, claims, signature = unsigned_parts(token)
    forged = assemble(header, {**claims, "roles": ["admin"]}, signature)
    assert_challenge(http.get(BETA + "/processes", headers=bearer(forged)), error="invalid_token",
                     detail="Signature verification failed")


# -- claims that are missing -------------------------------------------------------------------------------


def test_token_without_namespace_is_401(http: httpx.Client) -> None:
    secret = oidc.register_client("auth-no-namespace", namespace=None, roles=["executor"])
    token = oidc.client_credentials_token("auth-no-namespace", secret=secret)
    assert "namespace" not in claims_of(token) and claims_of(token)["roles"] == ["executor"]
    for method, path in (("GET", ACME + "/processes"), ("GET", "/processes"),
                         ("POST", ACME + "/processes/hello-world/execution")):
        resp = http.request(method, path, headers=bearer(token),
                            json={"inputs": {"name": "x"}} if method == "POST" else None)
        assert_challenge(resp, error="invalid_token", detail="the token has no 'namespace' claim")


@pytest.mark.parametrize(("client_id", "roles"), [("auth-no-roles", None), ("auth-empty-roles", []),
                                                  ("auth-unknown-roles", ["superuser", "root"])])
def test_token_without_a_known_role_is_403(http: httpx.Client, client_id: str, roles: list[str] | None) -> None:
    secret = oidc.register_client(client_id, namespace="acme", roles=roles)
    token = oidc.client_credentials_token(client_id, secret=secret)
    assert claims_of(token).get("roles") == roles
    for method, path in (("GET", ACME + "/processes"), ("GET", ACME + "/jobs"),
                         ("POST", ACME + "/processes/hello-world/execution")):
        resp = http.request(method, path, headers=bearer(token),
                            json={"inputs": {"name": "x"}} if method == "POST" else None)
        doc = validate_exception(resp, 403)
        assert "grants no role" in doc["detail"], doc


@pytest.fixture(scope="module")
def defaults_http(tmp_path_factory: pytest.TempPathFactory, provider: str) -> Iterator[httpx.Client]:
    """A second server: OGCFLOW_OIDC_DEFAULT_ROLES=["reader"]."""
    server = oidc_server(tmp_path_factory.mktemp("oidc-defaults"), OGCFLOW_OIDC_DEFAULT_ROLES='["reader"]')
    try:
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as c:
            yield c
    finally:
        server.stop()


@pytest.mark.parametrize(("client_id", "roles"), [("auth-no-roles", None), ("auth-empty-roles", [])])
def test_default_roles_for_tokens_without_roles(defaults_http: httpx.Client, client_id: str,
                                                roles: list[str] | None) -> None:
    http = defaults_http
    secret = oidc.register_client(client_id, namespace="acme", roles=roles)
    headers = auth(client_id, secret=secret)
    job = submit(http, ACME, auth("acme-executor"))  # the roles of a token's claim still count
    assert http.get(ACME + "/processes", headers=headers).status_code == 200
    assert http.get(ACME + "/processes/sleep", headers=headers).json()["id"] == "sleep"
    assert http.get(job, headers=headers).json()["status"] == "successful"
    assert http.get(job + "/results", headers=headers).status_code == 200
    assert job.rsplit("/", 1)[1] in {j["jobID"] for j in http.get(ACME + "/jobs", headers=headers).json()["jobs"]}
    doc = validate_exception(http.post(ACME + "/processes/hello-world/execution", json={"inputs": {"name": "x"}},
                                       headers=headers), 403)
    assert "needs the executor role" in doc["detail"] and "reader" in doc["detail"], doc
    validate_exception(http.delete(job, headers=headers), 403)
    validate_exception(http.get(BETA + "/processes", headers=headers), 404)  # still acme's only
    # unknown role names are roles, just none of this server's: no default for them
    secret = oidc.register_client("auth-unknown-roles", namespace="acme", roles=["superuser"])
    resp = http.get(ACME + "/processes", headers=auth("auth-unknown-roles", secret=secret))
    assert "grants no role" in validate_exception(resp, 403)["detail"]


# -- /api ----------------------------------------------------------------------------------------------------


def test_api_declares_the_openid_connect_scheme(http: httpx.Client, srv: Server) -> None:
    resp = http.get(ACME + "/api", headers=auth("acme-reader"))
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["servers"] == [{"url": f"{srv.url}{ACME}"}]
    discovery_url = oidc.issuer() + "/.well-known/openid-configuration"
    schemes = doc["components"]["securitySchemes"]
    assert schemes["oidc"] == {"type": "openIdConnect", "openIdConnectUrl": discovery_url}
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert {"oidc": []} in doc["security"]
    assert {} not in doc["security"]  # credentials are required: no anonymous alternative
    with httpx.Client(timeout=30, trust_env=False) as c:
        meta = c.get(discovery_url).json()
    assert meta["issuer"] == oidc.issuer()


# -- the JWKS: re-read for unknown keys, at most every REFETCH seconds ---------------------------------------


def provider_log() -> Path:
    path = Path(os.environ.get("OGCFLOW_OIDC_DIR", "/tmp/ogcflow-oidc")) / "oidc.log"
    if not path.is_file():
        pytest.skip(f"the provider's log is not at {path} (OGCFLOW_OIDC_DIR)")
    return path


def jwks_reads(log: Path) -> int:
    path = httpx.URL(oidc.discovery()["jwks_uri"]).path
    return sum(1 for line in log.read_text(errors="replace").splitlines() if line.startswith(f"GET {path} "))


def test_unknown_kids_do_not_flood_the_provider(http: httpx.Client) -> None:
    log = provider_log()
    real = oidc.client_credentials_token("acme-executor")
    assert http.get(ACME + "/processes", headers=bearer(real)).status_code == 200
    before, started = jwks_reads(log), time.monotonic()
    for n in range(20):
        resp = http.get(ACME + "/processes", headers=bearer(self_signed(real, f"made-up-{n}")))
        assert_challenge(resp, error="invalid_token", detail=NOT_PUBLISHED)
    elapsed = time.monotonic() - started
    time.sleep(0.5)  # the provider logs a request when its answer is sent
    reads = jwks_reads(log) - before
    assert reads <= 1 + int(elapsed // REFETCH), (reads, elapsed)


# -- key rotation (last: it changes the provider's keys for everything after it) -----------------------------


def accepted_after(http: httpx.Client, token: str, timeout: float) -> tuple[float, int]:
    """Present ``token`` until the server accepts it, at most ``timeout`` s: (seconds until then, refusals).
    Fails when it is never accepted, or refused for any other reason than an unpublished key."""
    started = time.monotonic()
    refusals = 0
    while True:
        resp = http.get(ACME + "/processes", headers=bearer(token))
        if resp.status_code == 200:
            return time.monotonic() - started, refusals
        assert_challenge(resp, error="invalid_token", detail=NOT_PUBLISHED)
        refusals += 1
        assert time.monotonic() - started < timeout, f"a token of the new key refused for {timeout} s"
        time.sleep(0.25)


def test_key_rotation_seen_by_a_running_server(tmp_path: Path, provider: str) -> None:
    """The provider signs with new keys at once. The server re-reads the JWKS when a token names a kid it does
    not know (at most every REFETCH s, against floods of made-up kids), so a new key's tokens are accepted
    within about a second. A withdrawn key's tokens stop working once the server has re-read the JWKS, even
    those it had verified (and cached) before."""
    server = oidc_server(tmp_path / "rotation")
    try:
        with httpx.Client(base_url=server.url, timeout=60, trust_env=False) as http:
            gen0 = oidc.client_credentials_token("acme-executor")  # presented before the rotations
            gen0_kept = oidc.client_credentials_token("acme-reader")  # first presented after the 1st rotation
            gen0_unseen = oidc.client_credentials_token("acme-deployer")  # first presented after the 2nd
            assert http.get(ACME + "/processes", headers=bearer(gen0)).status_code == 200  # reads the JWKS

            # 1. new keys, the old ones still published
            state = oidc.rotate_keys(keep_old=True)
            gen1 = oidc.client_credentials_token("acme-executor")
            assert kid_of(gen1) == state["signing_kids"]["RS256"] != kid_of(gen0)
            waited, _ = accepted_after(http, gen1, timeout=REFETCH + 5)
            assert waited <= REFETCH + 2
            gen1_unseen = oidc.client_credentials_token("acme-reader")
            assert http.get(ACME + "/processes", headers=bearer(gen0_kept)).status_code == 200
            assert http.get(ACME + "/processes", headers=bearer(gen0)).status_code == 200

            # 2. new keys, the old ones withdrawn
            state = oidc.rotate_keys(keep_old=False)
            assert state["retired_kids"] == []
            gen2 = oidc.client_credentials_token("acme-executor")
            gen2_es = oidc.client_credentials_token("acme-es256")
            assert kid_of(gen2) == state["signing_kids"]["RS256"] and kid_of(gen2_es) == state["signing_kids"]["ES256"]
            waited, _ = accepted_after(http, gen2, timeout=REFETCH + 5)
            assert waited <= REFETCH + 2
            resp = http.post(ACME + "/processes/hello-world/execution", json={"inputs": {"name": "new"}},
                             headers=bearer(gen2_es))
            assert resp.status_code == 200 and resp.text == "Hello new!", resp.text

            # tokens of withdrawn keys that the server had not verified yet: refused
            for token in (gen0_unseen, gen1_unseen):
                assert_challenge(http.get(ACME + "/processes", headers=bearer(token)), error="invalid_token",
                                 detail=NOT_PUBLISHED)
            # tokens it verified before are not trusted any longer either: their key is withdrawn
            for token in (gen0, gen0_kept, gen1):
                assert_challenge(http.get(ACME + "/processes", headers=bearer(token)), error="invalid_token",
                                 detail=NOT_PUBLISHED)
    finally:
        server.stop()
