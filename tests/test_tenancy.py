"""Namespaces and credentials against real servers.

Every resource is also under ``/{namespace}/ogc-api`` (the root is the ``default`` namespace). A server without
credentials is open to anyone (deploying still needs a deployer); once an API key exists every request needs
one, a caller acts in its own namespace only (admins in every one), and another tenant's resources answer 404
on every route, as if they did not exist. Outbound URLs the network policy refuses are a 400 at submission.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate as validate_openapi

from tests.conftest import store_env, wait_for
from tests.ogc_schemas import validate, validate_exception
from tests.server import Server

ADMIN_TOKEN = "tenancy-admin-token"
CWL = "application/cwl+yaml"
OAS = "application/vnd.oai.openapi+json;version=3.0"
#: built in, or server-wide (the shipped water-bodies package): visible in every namespace
EVERYWHERE = ("echo", "hello-world", "sleep", "water-bodies")
#: what acme's processes and jobs hold; no answer to another tenant may contain any of it
TITLE = "Acme Secret Tool"
DOC = "Writes the acme-confidential report."
WHO = "wile-e-coyote"
SECRETS = (TITLE, DOC, "acme-confidential", "acme secret for", WHO)
KEY = re.compile(r"ogk_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


def tool(process_id: str, title: str = TITLE) -> str:
    """A one-step CWL tool: its job writes a file (an output), and keeps a log (as every package's job)."""
    return f"""
cwlVersion: v1.2
class: CommandLineTool
id: {process_id}
label: {title}
doc: {DOC}
baseCommand: [sh, -c, 'echo "acme secret for $0" > report.txt']
inputs:
  who: {{type: string, inputBinding: {{position: 1}}}}
outputs:
  report: {{type: File, outputBinding: {{glob: report.txt}}}}
"""


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def deploy_headers(key: str) -> dict[str, str]:
    return {"Content-Type": CWL, **bearer(key)}


def ids_of(doc: dict[str, Any], kind: str) -> set[str]:
    if kind == "processes":
        return {p["id"] for p in doc["processes"]}
    return {j["jobID"] for j in doc["jobs"]}


def assert_hrefs_inside(doc: Any, prefix: str) -> int:
    """Every ``href`` of a document starts with ``prefix``; returns how many there are."""
    found = 0
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key == "href":
                assert isinstance(value, str) and value.startswith(prefix), (value, prefix)
                found += 1
            else:
                found += assert_hrefs_inside(value, prefix)
    elif isinstance(doc, list):
        for value in doc:
            found += assert_hrefs_inside(value, prefix)
    return found


def job_rows(srv: Server, namespace: str) -> int:
    """The jobs of a namespace as the store has them (not as the API shows them)."""
    return int(srv.query("select count(*) from jobs where namespace = :ns", ns=namespace)[0][0])


def cli(srv: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``ogcflow`` command with the server's settings (same host, same data directory and store)."""
    return subprocess.run([sys.executable, "-m", "ogcflow", *args], env={**srv.env, "COLUMNS": "250"},
                          capture_output=True, text=True, timeout=120, check=False)


def create_key(srv: Server, namespace: str, role: str, name: str) -> str:
    done = cli(srv, "apikey", "create", "--namespace", namespace, "--role", role, "--name", name)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert KEY.fullmatch(key), done.stdout
    return key


def key_id(key: str) -> str:
    return key.split("_", 2)[1]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tenancy_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- 1. open by default ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_srv(tmp_path_factory: pytest.TempPathFactory, tenancy_backend: str) -> Iterator[Server]:
    """No credential exists: namespaces are open. Private outbound URLs are refused (the default policy)."""
    env = {**store_env(tenancy_backend), "OGCFLOW_ADMIN_TOKEN": ADMIN_TOKEN, "OGCFLOW_ALLOW_PRIVATE_URLS": "false"}
    srv = Server(tmp_path_factory.mktemp("open"), env=env).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def oc(open_srv: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=open_srv.url, timeout=60) as c:
        yield c


@pytest.mark.parametrize("base", ["", "/acme/ogc-api", "/beta/ogc-api"])
def test_open_namespaces_serve_anonymously_with_links_inside(oc: httpx.Client, open_srv: Server, base: str) -> None:
    inside = f"{open_srv.url}{base}/"
    resp = oc.get(base + "/")
    assert resp.status_code == 200, resp.text
    landing = resp.json()
    validate(landing, "landingPage")
    assert assert_hrefs_inside(landing, inside) >= 7
    if not base:  # the root stays the root: none of its links goes into a namespace
        assert "/ogc-api" not in resp.text
    validate(oc.get(base + "/conformance").json(), "confClasses")
    listed = oc.get(base + "/processes")
    assert listed.status_code == 200
    validate(listed.json(), "processList")
    assert set(EVERYWHERE) <= ids_of(listed.json(), "processes")
    assert assert_hrefs_inside(listed.json(), inside) > len(EVERYWHERE)
    for pid in EVERYWHERE:
        desc = oc.get(f"{base}/processes/{pid}")
        assert desc.status_code == 200, (pid, desc.text)
        assert assert_hrefs_inside(desc.json(), inside) >= 3
    page = oc.get(base + "/processes", params={"f": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f'href="{inside}processes/echo?f=html"' in page.text
    jobs = oc.get(base + "/jobs")
    assert jobs.status_code == 200
    assert assert_hrefs_inside(jobs.json(), inside) >= 2


def test_a_job_stays_in_its_namespace(oc: httpx.Client, open_srv: Server) -> None:
    acme = f"{open_srv.url}/acme/ogc-api/"
    resp = oc.post("/acme/ogc-api/processes/hello-world/execution", json={"inputs": {"name": WHO}},
                   headers={"Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    location = resp.headers["location"]
    assert location.startswith(acme + "jobs/"), location
    status = resp.json()
    validate(status, "statusInfo")
    assert assert_hrefs_inside(status, acme) >= 3
    monitor = [link["href"] for link in status["links"] if link["rel"] == "monitor"]
    assert monitor == [location]
    done = wait_for(oc, location)
    assert done["status"] == "successful", done
    assert assert_hrefs_inside(done, acme) >= 4
    assert oc.get(location + "/results").json() == {"greeting": {"value": f"Hello {WHO}!", "mediaType": "text/plain"}}
    async_id = status["jobID"]

    # synchronous through the engine (not inline): the monitor link of the results is in acme too
    resp = oc.post("/acme/ogc-api/processes/sleep/execution", json={"inputs": {"seconds": 0}})
    assert resp.status_code == 200, resp.text
    found = re.search(r'<([^>]+)>; rel="monitor"', resp.headers.get("link", ""))
    assert found, resp.headers
    assert found.group(1).startswith(acme + "jobs/"), found.group(1)
    sync_id = found.group(1).rsplit("/", 1)[1]
    assert oc.get(found.group(1)).json()["status"] == "successful"

    for job_id in (async_id, sync_id):
        for elsewhere in ("/beta/ogc-api", ""):
            for tail in ("", "/results", "/logs", "/files"):
                doc = validate_exception(oc.get(f"{elsewhere}/jobs/{job_id}{tail}"), 404)
                assert WHO not in str(doc)
            validate_exception(oc.delete(f"{elsewhere}/jobs/{job_id}"), 404)
            assert job_id not in ids_of(oc.get(f"{elsewhere}/jobs", params={"limit": 1000}).json(), "jobs")
        assert job_id in ids_of(oc.get("/acme/ogc-api/jobs", params={"limit": 1000}).json(), "jobs")
        # the dismissals tried from elsewhere did nothing
        assert oc.get(f"/acme/ogc-api/jobs/{job_id}").json()["status"] == "successful"
    assert oc.get(f"/acme/ogc-api/jobs/{async_id}/results").status_code == 200


def test_a_deployed_process_is_visible_only_in_its_namespace(oc: httpx.Client, open_srv: Server) -> None:
    pid = "acme-only-tool"
    acme = f"{open_srv.url}/acme/ogc-api/"
    anonymous = oc.post("/acme/ogc-api/processes", content=tool(pid), headers={"Content-Type": CWL})
    validate_exception(anonymous, 401)  # open namespaces: anybody executes, only deployers deploy
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    resp = oc.post("/acme/ogc-api/processes", content=tool(pid), headers=deploy_headers(ADMIN_TOKEN))
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == f"{acme}processes/{pid}"
    validate(resp.json(), "processSummary")
    assert assert_hrefs_inside(resp.json(), acme) >= 3
    desc = oc.get(f"/acme/ogc-api/processes/{pid}")
    assert desc.status_code == 200
    validate(desc.json(), "process")
    assert desc.json()["title"] == TITLE and desc.json()["mutable"] is True
    assert pid in ids_of(oc.get("/acme/ogc-api/processes").json(), "processes")
    assert f"/processes/{pid}/execution" in oc.get("/acme/ogc-api/api").json()["paths"]

    for elsewhere in ("/beta/ogc-api", ""):
        for tail in ("", "/package"):
            doc = validate_exception(oc.get(f"{elsewhere}/processes/{pid}{tail}"), 404)
            assert TITLE not in str(doc)
        validate_exception(oc.post(f"{elsewhere}/processes/{pid}/execution", json={"inputs": {"who": WHO}}), 404)
        validate_exception(oc.delete(f"{elsewhere}/processes/{pid}", headers=bearer(ADMIN_TOKEN)), 404)
        listed = oc.get(f"{elsewhere}/processes", params={"limit": 1000})
        assert pid not in ids_of(listed.json(), "processes") and TITLE not in listed.text
        assert set(EVERYWHERE) <= ids_of(listed.json(), "processes")
        api = oc.get(f"{elsewhere}/api")
        assert api.status_code == 200
        assert f"/processes/{pid}/execution" not in api.json()["paths"]
        assert f"execute-{pid}" not in api.json()["components"]["schemas"]
        assert TITLE not in api.text and DOC not in api.text
        for builtin in EVERYWHERE:
            assert f"/processes/{builtin}/execution" in api.json()["paths"]

    # the same id in another namespace is another process; removing it there leaves acme's alone
    other = oc.post("/beta/ogc-api/processes", content=tool(pid, "Beta Own Tool"), headers=deploy_headers(ADMIN_TOKEN))
    assert other.status_code == 201, other.text
    assert oc.get(f"/beta/ogc-api/processes/{pid}").json()["title"] == "Beta Own Tool"
    assert oc.get(f"/acme/ogc-api/processes/{pid}").json()["title"] == TITLE
    assert oc.delete(f"/beta/ogc-api/processes/{pid}", headers=bearer(ADMIN_TOKEN)).status_code == 204
    validate_exception(oc.get(f"/beta/ogc-api/processes/{pid}"), 404)

    # it runs in acme (its worker finds it there), with its log
    resp = oc.post(f"/acme/ogc-api/processes/{pid}/execution", json={"inputs": {"who": WHO}},
                   headers={"Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    done = wait_for(oc, resp.headers["location"], timeout=60)
    assert done["status"] == "successful", done
    assert oc.get(resp.headers["location"] + "/results/report").text.strip() == f"acme secret for {WHO}"
    assert oc.delete(f"/acme/ogc-api/processes/{pid}", headers=bearer(ADMIN_TOKEN)).status_code == 204
    validate_exception(oc.get(f"/acme/ogc-api/processes/{pid}"), 404)


@pytest.mark.parametrize("path", [
    "/Bad_Name/ogc-api/processes",
    "/ACME/ogc-api/processes",
    "/api/ogc-api/",
    "/jobs/ogc-api/jobs",
    "/processes/ogc-api/processes",
    "/static/ogc-api/processes",
    "/-acme/ogc-api/processes",
    "/acme-/ogc-api/",
    "/a.b/ogc-api/processes",
    "/a%20b/ogc-api/processes",
    "/" + "a" * 65 + "/ogc-api/processes",
    "/~shared/ogc-api/processes",  # where the server-wide packages are kept: not a namespace
    "/%7Eshared/ogc-api/processes/water-bodies",
    "/~shared/ogc-api/jobs",
])
def test_namespace_names_are_validated(oc: httpx.Client, path: str) -> None:
    validate_exception(oc.get(path), 404)
    page = oc.get(path, params={"f": "html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html"), page.text
    # the fast synchronous path checks the namespace as the router does
    target = path.rstrip("/").rsplit("/ogc-api", 1)[0] + "/ogc-api/processes/echo/execution"
    validate_exception(oc.post(target, json={"inputs": {}}), 404)


def test_a_namespace_landing_page_and_api_definition(oc: httpx.Client, open_srv: Server) -> None:
    validate(oc.get("/acme/ogc-api/").json(), "landingPage")
    resp = oc.get("/acme/ogc-api/api", headers={"Accept": OAS})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    doc = resp.json()
    validate_openapi(doc)
    assert doc["servers"] == [{"url": f"{open_srv.url}/acme/ogc-api"}]
    listed = ids_of(oc.get("/acme/ogc-api/processes", params={"limit": 1000}).json(), "processes")
    operations = {op["operationId"] for path in doc["paths"].values() for op in path.values()}
    executes = {op[len("execute-"):] for op in operations if op.startswith("execute-")}
    assert executes == listed and set(EVERYWHERE) <= executes
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"]["in"] == "header" and schemes["apiKey"]["name"] == "X-API-Key"
    assert {} in doc["security"]  # optional while the namespaces are open
    page = oc.get("/acme/ogc-api/api", params={"f": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


# -- 5. outbound URLs at submission -------------------------------------------------------------------------


@pytest.mark.parametrize("prefer", [None, "respond-async"])
def test_private_outbound_urls_are_refused_at_submission(oc: httpx.Client, open_srv: Server,
                                                         prefer: str | None) -> None:
    ns = f"outbound-{prefer or 'sync'}"
    headers = {"Prefer": prefer} if prefer else {}
    listed = oc.get(f"/{ns}/ogc-api/jobs", params={"limit": 1000}).json()["jobs"]
    rows = job_rows(open_srv, ns)
    resp = oc.post(f"/{ns}/ogc-api/processes/echo/execution", headers=headers,
                   json={"inputs": {"imageInput": {"href": "http://127.0.0.1:9/x"}}})
    doc = validate_exception(resp, 400)
    assert "imageInput" in doc["detail"] and "127.0.0.1" in doc["detail"], doc
    assert "private, loopback or reserved" in doc["detail"], doc
    resp = oc.post(f"/{ns}/ogc-api/processes/hello-world/execution", headers=headers,
                   json={"inputs": {"name": WHO}, "subscriber": {"successUri": "http://127.0.0.1:9/done"}})
    doc = validate_exception(resp, 400)
    assert "successUri" in doc["detail"] and "private, loopback or reserved" in doc["detail"], doc
    resp = oc.post("/processes/hello-world/execution", headers=headers,  # the default namespace alike
                   json={"inputs": {"name": WHO}, "subscriber": {"failedUri": "http://localhost:9/failed"}})
    assert "failedUri" in validate_exception(resp, 400)["detail"]
    assert oc.get(f"/{ns}/ogc-api/jobs", params={"limit": 1000}).json()["jobs"] == listed
    assert job_rows(open_srv, ns) == rows
    assert int(open_srv.query("select count(*) from jobs where cast(request as text) like '%127.0.0.1:9%' "
                              "or cast(request as text) like '%localhost:9%'")[0][0]) == 0
    # the same request without the private URL is accepted (so the 400 above is the policy's)
    resp = oc.post("/allowed/ogc-api/processes/hello-world/execution", headers=headers,
                   json={"inputs": {"name": WHO}})
    assert resp.status_code in (200, 201), resp.text


# -- 2. with API keys ---------------------------------------------------------------------------------------

#: label -> (namespace, role)
KEYS = {
    "acme-reader": ("acme", "reader"),
    "acme-executor": ("acme", "executor"),
    "acme-executor-2": ("acme", "executor"),
    "acme-deployer": ("acme", "deployer"),
    "beta-executor": ("beta", "executor"),
    "beta-deployer": ("beta", "deployer"),
    "admin": ("ops", "admin"),
}
TOOL_ID = "acme-secret-tool"


@dataclass
class Tenants:
    srv: Server
    keys: dict[str, str]
    #: a successful job of acme's tool, submitted by acme-executor (it has an output file and a log)
    job: str
    #: a successful job submitted by acme-executor-2
    other_job: str

    def h(self, label: str) -> dict[str, str]:
        return bearer(self.keys[label])


@pytest.fixture(scope="module")
def tenants(tmp_path_factory: pytest.TempPathFactory, tenancy_backend: str) -> Iterator[Tenants]:
    # what an API process read of a key is trusted long: only the change of keys on this host makes it read again
    env = {**store_env(tenancy_backend), "OGCFLOW_ADMIN_TOKEN": ADMIN_TOKEN, "OGCFLOW_APIKEY_CACHE_SECONDS": "600"}
    srv = Server(tmp_path_factory.mktemp("keyed"), env=env).start()
    try:
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            assert c.get("/acme/ogc-api/jobs").status_code == 200  # open until a key exists
            for path in ("/api", "/gamma/ogc-api/api"):  # documents made while open: optional security
                assert {} in c.get(path).json()["security"]
            keys = {label: create_key(srv, ns, role, label) for label, (ns, role) in KEYS.items()}
            assert c.get("/acme/ogc-api/jobs").status_code == 401  # ... and closed at once after
            resp = c.post("/acme/ogc-api/processes", content=tool(TOOL_ID),
                          headers=deploy_headers(keys["acme-deployer"]))
            assert resp.status_code == 201, resp.text
            jobs = []
            for label, process, inputs in (("acme-executor", TOOL_ID, {"who": WHO}),
                                           ("acme-executor-2", "hello-world", {"name": WHO})):
                resp = c.post(f"/acme/ogc-api/processes/{process}/execution", json={"inputs": inputs},
                              headers={"Prefer": "respond-async", **bearer(keys[label])})
                assert resp.status_code == 201, resp.text
                jobs.append(resp.headers["location"])
            for location in jobs:
                with httpx.Client(timeout=60, headers=bearer(keys["acme-reader"])) as reader:
                    assert wait_for(reader, location, timeout=60)["status"] == "successful"
        yield Tenants(srv=srv, keys=keys, job=jobs[0].rsplit("/", 1)[1], other_job=jobs[1].rsplit("/", 1)[1])
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def kc(tenants: Tenants) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tenants.srv.url, timeout=60) as c:
        yield c


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/"),
    ("GET", "/conformance"),
    ("GET", "/processes"),
    ("GET", "/acme/ogc-api/"),
    ("GET", "/acme/ogc-api/api"),
    ("GET", "/acme/ogc-api/processes"),
    ("GET", "/acme/ogc-api/processes/hello-world"),
    ("GET", "/acme/ogc-api/jobs"),
    ("GET", "/acme/ogc-api/processes?f=html"),
    ("GET", "/acme/ogc-api/jobs?f=html"),
    ("GET", "/acme/ogc-api/?f=html"),
    ("POST", "/acme/ogc-api/processes/hello-world/execution"),
    ("POST", "/processes/hello-world/execution"),
    ("POST", "/acme/ogc-api/processes"),
])
def test_missing_credentials_are_401_with_a_challenge(kc: httpx.Client, method: str, path: str) -> None:
    kwargs: dict[str, Any] = {"json": {"inputs": {"name": WHO}}} if method == "POST" else {}
    resp = kc.request(method, path, **kwargs)
    assert resp.status_code == 401, resp.text
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="ogcflow"'), challenge
    assert "error=" not in challenge  # no credentials were sent: no error code (RFC 6750, 3.1)
    if "f=html" in path:
        assert resp.headers["content-type"].startswith("text/html"), resp.headers
    else:
        validate_exception(resp, 401)


def test_bad_credentials_are_401_invalid_token(kc: httpx.Client, tenants: Tenants) -> None:
    reader = tenants.keys["acme-reader"]
    wrong_secret = reader[:-4] + ("AAAA" if not reader.endswith("AAAA") else "BBBB")
    unknown = "ogk_" + "0" * 16 + "_" + "A" * 43
    cases = [
        bearer("ogk_nothex_short"),  # malformed
        bearer("ogk_" + reader[4:] + "x"),  # one character too many
        bearer(unknown),  # well formed, unknown
        bearer(wrong_secret),  # a real key id with the wrong secret
        bearer("some-random-token"),
        {"X-API-Key": "not-a-key"},
        {"X-API-Key": unknown},
        {"X-API-Key": wrong_secret},
    ]
    for headers in cases:
        for path in ("/acme/ogc-api/processes", "/acme/ogc-api/processes?f=html", "/processes"):
            resp = kc.get(path, headers=headers)
            assert resp.status_code == 401, (headers, path, resp.text)
            challenge = resp.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="ogcflow"') and 'error="invalid_token"' in challenge, challenge
            if "f=html" not in path:
                validate_exception(resp, 401)
        resp = kc.post("/acme/ogc-api/processes/hello-world/execution", json={"inputs": {"name": WHO}}, headers=headers)
        assert resp.status_code == 401 and 'error="invalid_token"' in resp.headers["www-authenticate"]
    resp = kc.get("/acme/ogc-api/processes", headers={"Authorization": f"Basic {reader}"})
    validate_exception(resp, 401)
    assert 'error="invalid_request"' in resp.headers["www-authenticate"]
    for headers in cases:  # the secret of a key never shows in an answer
        assert reader not in kc.get("/acme/ogc-api/processes", headers=headers).text


@pytest.mark.parametrize("label", sorted(KEYS))
def test_keys_work_as_bearer_and_as_x_api_key(kc: httpx.Client, tenants: Tenants, label: str) -> None:
    home = KEYS[label][0]
    key = tenants.keys[label]
    for headers in (bearer(key), {"Authorization": f"bearer  {key}"}, {"X-API-Key": key}):
        resp = kc.get(f"/{home}/ogc-api/jobs", headers=headers)
        assert resp.status_code == 200, (headers, resp.text)
        resp = kc.get(f"/{home}/ogc-api/processes", params={"f": "html"}, headers=headers)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    if label != "admin":  # another namespace, the default one included, does not exist for the caller
        for other in ("/zeta/ogc-api", "/beta/ogc-api" if home == "acme" else "/acme/ogc-api", ""):
            doc = validate_exception(kc.get(f"{other}/jobs", headers=bearer(key)), 404)
            assert doc["type"].endswith("/not-found"), doc


def test_a_reader_reads_but_may_not_execute_dismiss_or_deploy(kc: httpx.Client, tenants: Tenants) -> None:
    h = tenants.h("acme-reader")
    base = "/acme/ogc-api"
    listed = kc.get(f"{base}/processes", headers=h)
    assert listed.status_code == 200 and TOOL_ID in ids_of(listed.json(), "processes")
    described = kc.get(f"{base}/processes/{TOOL_ID}", headers=h)
    assert described.status_code == 200
    validate(described.json(), "process")
    assert kc.get(f"{base}/processes/{TOOL_ID}/package", headers=h).text == tool(TOOL_ID)
    jobs = kc.get(f"{base}/jobs", params={"limit": 1000}, headers=h).json()
    assert {tenants.job, tenants.other_job} <= ids_of(jobs, "jobs")
    status = kc.get(f"{base}/jobs/{tenants.job}", headers=h)
    assert status.status_code == 200 and status.json()["status"] == "successful"
    validate(status.json(), "statusInfo")
    assert kc.get(f"{base}/jobs/{tenants.job}/results/report", headers=h).text.strip() == f"acme secret for {WHO}"
    assert kc.get(f"{base}/jobs/{tenants.job}/logs", headers=h).status_code == 200

    rows = job_rows(tenants.srv, "acme")
    for process, inputs in (("hello-world", {"name": WHO}), (TOOL_ID, {"who": WHO})):
        for prefer in ({}, {"Prefer": "respond-async"}):
            resp = kc.post(f"{base}/processes/{process}/execution", json={"inputs": inputs}, headers={**h, **prefer})
            doc = validate_exception(resp, 403)
            assert "executor" in doc["detail"], doc
    assert "executor" in validate_exception(kc.delete(f"{base}/jobs/{tenants.job}", headers=h), 403)["detail"]
    assert "deployer" in validate_exception(
        kc.post(f"{base}/processes", content=tool("reader-tool"), headers={**h, "Content-Type": CWL}), 403)["detail"]
    validate_exception(kc.put(f"{base}/processes/{TOOL_ID}", content=tool(TOOL_ID, "Changed"),
                              headers={**h, "Content-Type": CWL}), 403)
    validate_exception(kc.delete(f"{base}/processes/{TOOL_ID}", headers=h), 403)
    assert job_rows(tenants.srv, "acme") == rows
    assert kc.get(f"{base}/jobs/{tenants.job}", headers=h).json()["status"] == "successful"
    assert kc.get(f"{base}/processes/{TOOL_ID}", headers=h).json()["title"] == TITLE
    validate_exception(kc.get(f"{base}/processes/reader-tool", headers=h), 404)


def test_an_executor_executes_but_may_not_deploy_nor_dismiss_others_jobs(kc: httpx.Client, tenants: Tenants) -> None:
    acme = f"{tenants.srv.url}/acme/ogc-api/"
    h = tenants.h("acme-executor")
    for headers in (h, {"X-API-Key": tenants.keys["acme-executor"]}):
        resp = kc.post("/acme/ogc-api/processes/hello-world/execution", json={"inputs": {"name": "Ada"}},
                       headers=headers)
        assert resp.status_code == 200 and resp.text == "Hello Ada!", resp.text
    resp = kc.post("/acme/ogc-api/processes/sleep/execution", json={"inputs": {"seconds": 0}}, headers=h)
    assert resp.status_code == 200, resp.text
    assert f'<{acme}jobs/' in resp.headers["link"] and 'rel="monitor"' in resp.headers["link"]
    resp = kc.post("/acme/ogc-api/processes/hello-world/execution", json={"inputs": {"name": "Ada"}},
                   headers={**h, "Prefer": "respond-async"})
    assert resp.status_code == 201 and resp.headers["location"].startswith(acme + "jobs/"), resp.text
    with httpx.Client(timeout=60, headers=h) as mine:
        assert wait_for(mine, resp.headers["location"])["status"] == "successful"
    own = resp.json()["jobID"]

    doc = validate_exception(kc.post("/acme/ogc-api/processes", content=tool("executor-tool"),
                                     headers=deploy_headers(tenants.keys["acme-executor"])), 403)
    assert "deployer" in doc["detail"]
    validate_exception(kc.put(f"/acme/ogc-api/processes/{TOOL_ID}", content=tool(TOOL_ID, "Changed"),
                              headers=deploy_headers(tenants.keys["acme-executor"])), 403)
    validate_exception(kc.delete(f"/acme/ogc-api/processes/{TOOL_ID}", headers=h), 403)
    assert kc.get(f"/acme/ogc-api/processes/{TOOL_ID}", headers=h).json()["title"] == TITLE
    validate_exception(kc.get("/acme/ogc-api/processes/executor-tool", headers=h), 404)

    doc = validate_exception(kc.delete(f"/acme/ogc-api/jobs/{tenants.other_job}", headers=h), 403)
    assert "another caller" in doc["detail"]
    assert kc.get(f"/acme/ogc-api/jobs/{tenants.other_job}", headers=h).json()["status"] == "successful"
    dismissed = kc.delete(f"/acme/ogc-api/jobs/{own}", headers=h)
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed", dismissed.text
    # acting in another namespace: it does not exist for this caller
    validate_exception(kc.post("/beta/ogc-api/processes/hello-world/execution", json={"inputs": {"name": "Ada"}},
                               headers=h), 404)
    validate_exception(kc.post("/processes/hello-world/execution", json={"inputs": {"name": "Ada"}}, headers=h), 404)


def test_a_deployer_deploys_replaces_and_undeploys_in_its_namespace(kc: httpx.Client, tenants: Tenants) -> None:
    pid = "deployer-tool"
    key = tenants.keys["acme-deployer"]
    resp = kc.post("/acme/ogc-api/processes", content=tool(pid, "Deployed By Acme"), headers=deploy_headers(key))
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == f"{tenants.srv.url}/acme/ogc-api/processes/{pid}"
    described = kc.get(f"/acme/ogc-api/processes/{pid}", headers=tenants.h("acme-reader")).json()
    assert described["title"] == "Deployed By Acme"
    validate_exception(kc.get(f"/beta/ogc-api/processes/{pid}", headers=tenants.h("beta-executor")), 404)
    assert kc.put(f"/acme/ogc-api/processes/{pid}", content=tool(pid, "Replaced By Acme"),
                  headers=deploy_headers(key)).status_code == 204
    assert kc.get(f"/acme/ogc-api/processes/{pid}", headers=bearer(key)).json()["title"] == "Replaced By Acme"
    validate_exception(kc.post("/beta/ogc-api/processes", content=tool(pid), headers=deploy_headers(key)), 404)
    # a deployer dismisses any job of its namespace
    resp = kc.post("/acme/ogc-api/processes/sleep/execution", json={"inputs": {"seconds": 30}},
                   headers={**tenants.h("acme-executor"), "Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    dismissed = kc.delete(f"/acme/ogc-api/jobs/{resp.json()['jobID']}", headers=bearer(key))
    assert dismissed.status_code == 200 and dismissed.json()["status"] == "dismissed", dismissed.text
    assert kc.delete(f"/acme/ogc-api/processes/{pid}", headers=bearer(key)).status_code == 204
    validate_exception(kc.get(f"/acme/ogc-api/processes/{pid}", headers=bearer(key)), 404)


@pytest.mark.parametrize("credential", ["admin-key", "admin-token"])
def test_an_admin_acts_in_every_namespace(kc: httpx.Client, tenants: Tenants, credential: str) -> None:
    h = tenants.h("admin") if credential == "admin-key" else bearer(ADMIN_TOKEN)
    for base in ("", "/acme/ogc-api", "/beta/ogc-api", "/ops/ogc-api", "/zeta/ogc-api"):
        assert kc.get(f"{base}/", headers=h).status_code == 200
        assert set(EVERYWHERE) <= ids_of(kc.get(f"{base}/processes", headers=h).json(), "processes")
    assert tenants.job in ids_of(kc.get("/acme/ogc-api/jobs", params={"limit": 1000}, headers=h).json(), "jobs")
    assert kc.get(f"/acme/ogc-api/jobs/{tenants.job}", headers=h).json()["status"] == "successful"
    # an admin may go everywhere, but a job is still found in its own namespace only
    validate_exception(kc.get(f"/beta/ogc-api/jobs/{tenants.job}", headers=h), 404)
    validate_exception(kc.get(f"/jobs/{tenants.job}", headers=h), 404)
    pid = f"admin-tool-{credential}"
    resp = kc.post("/beta/ogc-api/processes", content=tool(pid, "Admin Tool"), headers={**h, "Content-Type": CWL})
    assert resp.status_code == 201, resp.text
    resp = kc.post("/beta/ogc-api/processes/hello-world/execution", json={"inputs": {"name": "Root"}}, headers=h)
    assert resp.status_code == 200 and resp.text == "Hello Root!"
    assert pid in ids_of(kc.get("/beta/ogc-api/processes", headers=tenants.h("beta-executor")).json(), "processes")
    assert kc.delete(f"/beta/ogc-api/processes/{pid}", headers=h).status_code == 204


def test_the_api_definition_declares_the_security_schemes(kc: httpx.Client, tenants: Tenants) -> None:
    h = tenants.h("acme-reader")
    resp = kc.get("/acme/ogc-api/api", headers={**h, "Accept": OAS})
    assert resp.status_code == 200
    doc = resp.json()
    validate_openapi(doc)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert {"bearer": []} in doc["security"] and {"apiKey": []} in doc["security"]
    assert {} not in doc["security"]  # credentials are required now
    listed = ids_of(kc.get("/acme/ogc-api/processes", params={"limit": 1000}, headers=h).json(), "processes")
    executes = {op["operationId"][len("execute-"):] for path in doc["paths"].values() for op in path.values()
                if op["operationId"].startswith("execute-")}
    assert executes == listed and TOOL_ID in executes
    beta = kc.get("/beta/ogc-api/api", headers=tenants.h("beta-executor")).json()
    assert f"/processes/{TOOL_ID}/execution" not in beta["paths"]
    assert beta["components"]["securitySchemes"] == schemes


def test_api_documents_made_while_open_require_credentials_once_a_key_exists(kc: httpx.Client,
                                                                            tenants: Tenants) -> None:
    # the tenants fixture read these two documents before it created the first key
    for path in ("/api", "/gamma/ogc-api/api"):
        assert {} not in kc.get(path, headers=tenants.h("admin")).json()["security"], path


# -- 3. the route walk ---------------------------------------------------------------------------------------


#: routes at the root only that read nothing of any namespace (liveness): the same answer for everybody
SERVER_ROUTES = {("GET", "/health"), ("GET", "/readyz"), ("GET", "/metrics")}
#: server routes that tell of every namespace: for admins only (once credentials are required)
ADMIN_ROUTES = {("GET", "/metrics")}


def _template(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)  # {name:path} -> {name}


def app_routes(tmp: Path) -> tuple[list[tuple[str, str]], set[tuple[str, str]]]:
    """(method, path) of every route of every namespace's API, from the application itself (paths without
    the ``/{namespace}/ogc-api`` prefix), and the server's own routes at the root only. Fails on another route
    served at the root only or in namespaces only, and on a mount that is not the static files."""
    from starlette.routing import Mount, Route

    from ogcflow.api.app import create_app
    from ogcflow.api.fastpath import NAMESPACE_PREFIX
    from ogcflow.settings import Settings
    from ogcflow.wiring import build

    try:  # FastAPI keeps included routers as such: their routes with the prefixes they were included with
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes holds every route, prefixed
        def iter_route_contexts(routes: Any) -> Any:
            return iter(routes)

    settings = Settings(data_dir=tmp, default_packages=[])
    server = build(settings)
    try:
        app = create_app(settings, server)
        root: set[tuple[str, str]] = set()
        namespaced: set[tuple[str, str]] = set()
        for context in iter_route_contexts(app.routes):
            route = getattr(context, "original_route", context)
            if isinstance(route, Mount):
                assert context.path in ("/static", "/swagger-ui"), f"a new mount {context.path}: walk it too"
                continue
            assert isinstance(route, Route), route
            path = _template(str(context.path))
            methods = set(context.methods or ()) - {"HEAD"}
            assert methods, path
            if path.startswith(NAMESPACE_PREFIX + "/"):
                namespaced |= {(m, path[len(NAMESPACE_PREFIX):]) for m in methods}
            else:
                root |= {(m, path) for m in methods}
    finally:
        server.close()
    assert namespaced <= root, namespaced - root
    assert root - namespaced <= SERVER_ROUTES, (
        f"routes at the root only: {root - namespaced - SERVER_ROUTES}: mount them in every namespace (and "
        "walk them), or, if they read nothing of any namespace, add them to SERVER_ROUTES")
    order = ["GET", "POST", "PUT", "DELETE"]
    return (sorted(namespaced, key=lambda r: (order.index(r[0]) if r[0] in order else 9, r[1])),
            root - namespaced)


@dataclass(frozen=True)
class Walked:
    status: int
    body: str
    doc: Any


def walk_request(c: httpx.Client, method: str, path: str, prefix: str, values: dict[str, str],
                 headers: dict[str, str], html: bool = False) -> Walked:
    params = set(re.findall(r"\{(\w+)\}", path))
    unknown = params - set(values)
    assert not unknown, f"{method} {path}: a new path parameter {unknown}: give the walk a resource for it"
    url = prefix + re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)
    kwargs: dict[str, Any] = {}
    if method in ("POST", "PUT"):
        if path.endswith("/execution"):
            kwargs["json"] = {"inputs": {"who": "walker"}}
            headers = {**headers, "Prefer": "respond-async"}
        elif path.startswith("/processes"):
            kwargs["content"] = tool(values["processId"], "Walked Tool")
            headers = {**headers, "Content-Type": CWL}
        else:
            kwargs["json"] = {}
    resp = c.request(method, url, headers=headers, params={"f": "html"} if html else None, **kwargs)
    doc = None
    if resp.headers.get("content-type", "").startswith("application/json"):
        doc = resp.json()
    return Walked(resp.status_code, resp.text, doc)


def _same(doc: Any, real: dict[str, str], fake: dict[str, str]) -> Any:
    """The document with the ids of the request replaced by placeholders."""
    text = str(doc)
    for name in ("jobId", "processId"):
        text = text.replace(real[name], f"<{name}>").replace(fake[name], f"<{name}>")
    return text


def test_no_route_reaches_another_namespace(kc: httpx.Client, tenants: Tenants,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    routes, server_routes = app_routes(tmp_path_factory.mktemp("routes"))
    # what the walk covers: every route of the app (its paths at least those of /api), every method
    assert len(routes) >= 15, routes
    assert {m for m, _ in routes} >= {"GET", "POST", "PUT", "DELETE"}
    paths = {p for _, p in routes}
    api = kc.get("/acme/ogc-api/api", headers=tenants.h("acme-reader")).json()
    for path, ops in api["paths"].items():
        generic = re.sub(r"^/processes/[^/{}]+/execution$", "/processes/{processId}/execution", path)
        for method in ops:
            assert (method.upper(), generic) in routes, (method, path)
    for needed in [("GET", "/processes/{processId}/package"), ("GET", "/jobs/{jobId}/files"),
                   ("GET", "/jobs/{jobId}/files/{name}"), ("GET", "/jobs/{jobId}/logs"),
                   ("GET", "/jobs/{jobId}/results/{outputId}"), ("POST", "/processes"),
                   ("PUT", "/processes/{processId}"), ("DELETE", "/processes/{processId}"),
                   ("DELETE", "/jobs/{jobId}"), ("POST", "/processes/{processId}/execution")]:
        assert needed in routes, needed
    assert "/" in paths and "/api" in paths

    # acme's resources, made for the walk: a deployed process, and its finished job with a file and a log
    pid = "acme-walk-tool"
    deployer = tenants.h("acme-deployer")
    resp = kc.post("/acme/ogc-api/processes", content=tool(pid), headers={**deployer, "Content-Type": CWL})
    assert resp.status_code == 201, resp.text
    resp = kc.post(f"/acme/ogc-api/processes/{pid}/execution", json={"inputs": {"who": WHO}},
                   headers={**tenants.h("acme-executor"), "Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    with httpx.Client(timeout=60, headers=tenants.h("acme-executor")) as mine:
        assert wait_for(mine, resp.headers["location"], timeout=60)["status"] == "successful"
    job = resp.json()["jobID"]
    files = kc.get(f"/acme/ogc-api/jobs/{job}/files", headers=deployer).json()["files"]
    names = [f["name"] for f in files if not f["name"].endswith(".log")]
    assert names, files
    real = {"processId": pid, "jobId": job, "outputId": "report", "name": names[0]}
    fake = {"processId": "no-such-walk-tool", "jobId": str(uuid.uuid4()), "outputId": "report", "name": names[0]}
    assert kc.get(f"/acme/ogc-api/jobs/{job}/logs", headers=deployer).status_code == 200

    walked = 0
    for label in ("beta-executor", "beta-deployer"):
        h = tenants.h(label)
        for method, path in routes:
            has_params = "{" in path
            for html in (False, True) if method == "GET" else (False,):
                # in acme: no route exists for beta, whatever the ids (as for a namespace nobody has)
                for prefix in ("/acme/ogc-api", "/zeta/ogc-api"):
                    got = walk_request(kc, method, path, prefix, real, h, html)
                    assert got.status == 404, (label, method, prefix + path, got.status, got.body[:300])
                    for secret in SECRETS:
                        assert secret not in got.body, (label, method, path, secret)
                    if not html:
                        validate(got.doc, "exception")
                        assert got.doc["detail"] == f"There is no namespace '{prefix.split('/')[1]}'.", got.doc
                walked += 1
                # in beta, with acme's ids: what a made-up id gets (404, or a refusal for the role alone)
                if not has_params:
                    if method == "GET":
                        got = walk_request(kc, method, path, "/beta/ogc-api", real, h, html)
                        assert got.status == 200, (label, path, got.status, got.body[:300])
                        for secret in (*SECRETS, pid, job):
                            assert secret not in got.body, (label, path, secret)
                    continue
                got = walk_request(kc, method, path, "/beta/ogc-api", real, h, html)
                made_up = walk_request(kc, method, path, "/beta/ogc-api", fake, h, html)
                for secret in SECRETS:
                    assert secret not in got.body, (label, method, path, secret)
                assert got.status == made_up.status, (label, method, path, got.status, made_up.status)
                if not html:
                    assert _same(got.doc, real, fake) == _same(made_up.doc, real, fake), (got.doc, made_up.doc)
                if label == "beta-deployer" or got.status != 403:
                    assert got.status == 404, (label, method, path, got.status, got.body[:300])
                else:  # an executor may not replace or undeploy anything, whether it exists or not
                    assert method in ("PUT", "DELETE") and path == "/processes/{processId}", (method, path)
                    assert "deployer role" in got.doc["detail"], got.doc
    assert walked >= 2 * len(routes)
    for method, path in server_routes & ADMIN_ROUTES:  # every namespace's figures: admins only
        for label in (None, "beta-executor", "acme-deployer"):
            got = walk_request(kc, method, path, "", real, tenants.h(label) if label else {})
            assert got.status == (401 if label is None else 403), (path, label, got.status)
        assert walk_request(kc, method, path, "", real, tenants.h("admin")).status == 200
    for method, path in server_routes - ADMIN_ROUTES:  # the same for everybody, credentials or not, nothing of acme's
        answers = {walk_request(kc, method, path, "", real, h).body
                   for h in ({}, tenants.h("beta-executor"), tenants.h("acme-deployer"))}
        assert len(answers) == 1, (path, answers)
        got = walk_request(kc, method, path, "", real, {})
        assert got.status == 200 and not any(s in got.body for s in (*SECRETS, pid, job)), (path, got.body)

    # the walk changed nothing of acme's
    reader = tenants.h("acme-reader")
    assert kc.get(f"/acme/ogc-api/jobs/{job}", headers=reader).json()["status"] == "successful"
    assert kc.get(f"/acme/ogc-api/processes/{pid}", headers=reader).json()["title"] == TITLE
    assert kc.get(f"/acme/ogc-api/jobs/{job}/files/{names[0]}", headers=reader).text.strip() == f"acme secret for {WHO}"

    # acme's own key reaches every one of them (GETs first; dismiss and undeploy last)
    for method, path in routes:
        got = walk_request(kc, method, path, "/acme/ogc-api", real, deployer)
        assert got.status != 404 and got.status < 500, (method, path, got.status, got.body[:300])
        if method == "GET":
            assert got.status == 200, (method, path, got.status, got.body[:300])
        elif (method, path) == ("POST", "/processes"):
            assert got.status == 409, got.body  # it exists already: acme's own process
        else:
            assert got.status in (200, 201, 204), (method, path, got.status, got.body[:300])
    validate_exception(kc.get(f"/acme/ogc-api/processes/{pid}", headers=reader), 404)
    assert kc.get(f"/acme/ogc-api/jobs/{job}", headers=reader).json()["status"] == "dismissed"


# -- 4. revoking a key ------------------------------------------------------------------------------------


def _listed(srv: Server) -> tuple[dict[str, list[str]], str]:
    done = cli(srv, "apikey", "list")
    assert done.returncode == 0, done.stderr
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 6 and re.fullmatch(r"[0-9a-f]{16}", cells[0]):
            rows[cells[0]] = cells
    return rows, done.stdout + done.stderr


def test_a_revoked_key_is_refused_at_once(kc: httpx.Client, tenants: Tenants) -> None:
    srv = tenants.srv
    key = create_key(srv, "acme", "executor", "short-lived")
    kid = key_id(key)
    assert kc.get("/acme/ogc-api/jobs", headers=bearer(key)).status_code == 200
    assert kc.get("/acme/ogc-api/jobs", headers={"X-API-Key": key}).status_code == 200
    rows, text = _listed(srv)
    assert rows[kid][1:4] == ["acme", "executor", "short-lived"] and rows[kid][5] == "", rows[kid]
    assert {key_id(k) for k in tenants.keys.values()} <= set(rows)

    assert kc.get("/acme/ogc-api/jobs", headers=bearer(key)).status_code == 200  # known to the server (cached)
    done = cli(srv, "apikey", "revoke", kid)
    assert done.returncode == 0, done.stderr
    resp = kc.get("/acme/ogc-api/jobs", headers=bearer(key))  # the very next request
    validate_exception(resp, 401)
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    resp = kc.post("/acme/ogc-api/processes/hello-world/execution", json={"inputs": {"name": WHO}},
                   headers={"X-API-Key": key})
    validate_exception(resp, 401)

    rows, text = _listed(srv)
    assert rows[kid][5], rows[kid]  # when it was revoked
    for label, other in tenants.keys.items():
        assert rows[key_id(other)][5] == "", label
        assert kc.get(f"/{KEYS[label][0]}/ogc-api/jobs", headers=bearer(other)).status_code == 200, label
    for secret in (key, *tenants.keys.values()):  # never a secret, nor a part of one
        assert secret.split("_", 2)[2][:12] not in text
    again = cli(srv, "apikey", "revoke", kid)
    assert again.returncode == 1 and "no active key" in again.stderr, again
