"""Exactly-once submissions: ``Idempotency-Key`` (draft-ietf-httpapi-idempotency-key-header) on execute."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.conftest import wait_for
from tests.server import Server

ASYNC = {"Prefer": "respond-async"}


def _jobs_named(server: Server, name: str) -> int:
    """How many jobs the store holds whose request names ``name`` (what the API cannot tell: duplicates)."""
    return server.query("SELECT count(*) FROM jobs WHERE CAST(request AS TEXT) LIKE :n", n=f"%{name}%")[0][0]


def test_a_retried_async_submission_returns_the_first_job(client: httpx.Client, server: Server) -> None:
    name, key = f"idem-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    body = {"inputs": {"name": name}}
    first = client.post("/processes/hello-world/execution", json=body,
                        headers={**ASYNC, "Idempotency-Key": f'"{key}"'})
    assert first.status_code == 201, first.text
    again = client.post("/processes/hello-world/execution", json=body, headers={**ASYNC, "Idempotency-Key": key})
    assert again.status_code == 201, again.text
    assert again.headers["Location"] == first.headers["Location"]
    assert again.json()["jobID"] == first.json()["jobID"]
    assert wait_for(client, first.headers["Location"])["status"] == "successful"
    later = client.post("/processes/hello-world/execution", json=body, headers={**ASYNC, "Idempotency-Key": key})
    assert later.status_code == 201 and later.json()["jobID"] == first.json()["jobID"]
    assert later.json()["status"] == "successful"
    assert _jobs_named(server, name) == 1
    # without a key, the same request is a new job
    other = client.post("/processes/hello-world/execution", json=body, headers=ASYNC)
    assert other.json()["jobID"] != first.json()["jobID"]


def test_the_same_key_with_another_request_is_422(client: httpx.Client) -> None:
    key = str(uuid.uuid4())
    first = client.post("/processes/hello-world/execution", json={"inputs": {"name": "a"}},
                        headers={**ASYNC, "Idempotency-Key": key})
    assert first.status_code == 201
    other = client.post("/processes/hello-world/execution", json={"inputs": {"name": "b"}},
                        headers={**ASYNC, "Idempotency-Key": key})
    assert other.status_code == 422, other.text
    doc = other.json()
    assert doc["status"] == 422 and key in doc["detail"]
    # the same body with its keys in another order is the same request
    same = client.post("/processes/hello-world/execution", content=b'{ "inputs" : {"name":"a"} }',
                       headers={**ASYNC, "Idempotency-Key": key, "Content-Type": "application/json"})
    assert same.status_code == 201 and same.json()["jobID"] == first.json()["jobID"]


def test_a_synchronous_job_with_a_key_is_recorded_before_its_response(client: httpx.Client, server: Server) -> None:
    name, key = f"sync-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())
    body = {"inputs": {"name": name}}
    first = client.post("/processes/hello-world/execution", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    assert _jobs_named(server, name) == 1  # at once: not left to the batched recorder
    again = client.post("/processes/hello-world/execution", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 200
    assert again.content == first.content
    assert _jobs_named(server, name) == 1


def test_concurrent_submissions_with_one_key_make_one_job(client: httpx.Client, server: Server) -> None:
    name, key = f"race-{uuid.uuid4().hex[:8]}", str(uuid.uuid4())

    def submit(_: int) -> str:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            resp = c.post("/processes/hello-world/execution", json={"inputs": {"name": name}},
                          headers={**ASYNC, "Idempotency-Key": key})
            assert resp.status_code == 201, resp.text
            return str(resp.json()["jobID"])

    with ThreadPoolExecutor(16) as pool:
        ids = set(pool.map(submit, range(16)))
    assert len(ids) == 1
    assert _jobs_named(server, name) == 1


def test_keys_are_kept_per_namespace(client: httpx.Client) -> None:
    key = str(uuid.uuid4())
    body = {"inputs": {"name": "ns"}}
    here = client.post("/processes/hello-world/execution", json=body, headers={**ASYNC, "Idempotency-Key": key})
    there = client.post("/acme/ogc-api/processes/hello-world/execution", json=body,
                        headers={**ASYNC, "Idempotency-Key": key})
    assert here.status_code == there.status_code == 201, there.text
    assert here.json()["jobID"] != there.json()["jobID"]


def test_a_malformed_key_is_400(client: httpx.Client) -> None:
    for bad in ("", "x" * 300, "a b", '"a"b"'):
        resp = client.post("/processes/hello-world/execution", json={"inputs": {"name": "x"}},
                           headers={"Idempotency-Key": bad})
        assert resp.status_code == 400, (bad, resp.text)
        assert "Idempotency-Key" in resp.json()["detail"]
