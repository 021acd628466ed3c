"""Execution: sync and async, Prefer, inputs by value and by reference, outputs (OGC 18-062r2 §7.11)."""

from __future__ import annotations

import base64
import email
import time

import httpx
import pytest

from tests.conftest import Recorder, wait_for
from tests.ogc_schemas import validate, validate_exception

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

ECHO_INPUTS = {
    "stringInput": "Value2",
    "measureInput": 99.5,
    "integerInput": 7,
    "booleanInput": True,
    "dateInput": "2024-05-01T12:30:00Z",
    "boundingBoxInput": {"bbox": [51.9, 7.0, 52.0, 7.2], "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"},
    "geometryInput": {"type": "Point", "coordinates": [7.1, 51.95]},
    "arrayInput": [1, 2, 3],
    "complexObjectInput": {"property1": "x", "property2": 2.5},
    "imageInput": {"value": base64.b64encode(PNG).decode(), "mediaType": "image/png"},
}


def test_sync_raw_single_output(client: httpx.Client) -> None:
    resp = client.post("/processes/hello-world/execution", json={"inputs": {"name": "World",
                                                                             "message": "Nice day."}})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == "Hello World! Nice day."


def test_sync_document_keyed_by_output_id(client: httpx.Client) -> None:
    resp = client.post("/processes/hello-world/execution",
                       json={"inputs": {"name": "Ada"}, "response": "document"})
    assert resp.status_code == 200
    doc = resp.json()
    validate(doc, "results")
    assert doc == {"greeting": {"value": "Hello Ada!", "mediaType": "text/plain"}}


def test_echo_returns_every_kind_of_input(client: httpx.Client) -> None:
    resp = client.post("/processes/echo/execution", json={"inputs": ECHO_INPUTS, "response": "document"})
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    validate(doc, "results")
    # JSON numbers, booleans, arrays and bounding boxes are plain values
    for key in ("measureInput", "integerInput", "booleanInput", "arrayInput", "boundingBoxInput"):
        assert doc[key] == ECHO_INPUTS[key], key
    # text and objects are qualified values with their media type
    for key, media in (("stringInput", "text/plain"), ("dateInput", "text/plain"),
                       ("geometryInput", "application/geo+json"), ("complexObjectInput", "application/json")):
        assert doc[key] == {"value": ECHO_INPUTS[key], "mediaType": media}, key
    image = doc["imageInput"]
    assert image["mediaType"] == "image/png" and image["encoding"] == "base64"
    assert base64.b64decode(image["value"]) == PNG


def test_output_selection_and_reference_transmission(client: httpx.Client) -> None:
    body = {"inputs": ECHO_INPUTS, "response": "document",
            "outputs": {"imageInput": {"transmissionMode": "reference"}, "integerInput": {}}}
    doc = client.post("/processes/echo/execution", json=body).json()
    validate(doc, "results")
    assert set(doc) == {"imageInput", "integerInput"}
    assert doc["integerInput"] == 7
    ref = doc["imageInput"]
    assert ref["type"] == "image/png"
    fetched = client.get(ref["href"])
    assert fetched.status_code == 200 and fetched.content == PNG
    assert fetched.headers["content-type"] == "image/png"


def test_raw_reference_gives_204_with_link(client: httpx.Client) -> None:
    body = {"inputs": ECHO_INPUTS, "outputs": {"imageInput": {"transmissionMode": "reference"}}}
    resp = client.post("/processes/echo/execution", json=body)
    assert resp.status_code == 204
    links = {part.split(";")[1].strip(): part.split(";")[0].strip().strip("<>")
             for part in resp.headers["link"].split(",")}
    href = links['rel="related"']
    assert client.get(href).content == PNG


def test_raw_several_outputs_is_multipart(client: httpx.Client) -> None:
    body = {"inputs": {"stringInput": "Value1", "imageInput": ECHO_INPUTS["imageInput"]}}
    resp = client.post("/processes/echo/execution", json=body)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("multipart/related")
    msg = email.message_from_bytes(b"Content-Type: " + resp.headers["content-type"].encode() + b"\r\n\r\n"
                                   + resp.content)
    parts = {p["Content-ID"]: p for p in msg.get_payload()}
    assert parts["<stringInput>"].get_payload() == "Value1"
    assert parts["<imageInput>"].get_payload(decode=True) == PNG


@pytest.mark.parametrize("prefer", ["respond-async", "respond-async;return=representation",
                                    "respond-async, wait=10", "return=representation; respond-async",
                                    'Respond-Async; return="representation"'])
def test_async_with_prefer(client: httpx.Client, prefer: str) -> None:
    resp = client.post("/processes/hello-world/execution", json={"inputs": {"name": "async"}},
                       headers={"Prefer": prefer})
    assert resp.status_code == 201, resp.text
    assert "respond-async" in resp.headers["preference-applied"]
    info = resp.json()
    validate(info, "statusInfo")
    assert info["status"] in ("accepted", "running", "successful")
    assert resp.headers["location"].endswith(f"/jobs/{info['jobID']}")
    for key, value in info.items():
        assert value is not None, key
    final = wait_for(client, resp.headers["location"])
    validate(final, "statusInfo")
    assert final["status"] == "successful", final
    assert final["progress"] == 100
    for key in ("created", "started", "finished", "updated"):
        assert key in final
    # a results document unless the request asked raw
    assert client.get(resp.headers["location"] + "/results").json() == {
        "greeting": {"value": "Hello async!", "mediaType": "text/plain"}}


def test_results_are_raw_when_the_request_asked_raw(client: httpx.Client) -> None:
    resp = client.post("/processes/hello-world/execution", json={"inputs": {"name": "raw"}, "response": "raw"},
                       headers={"Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    assert wait_for(client, resp.headers["location"])["status"] == "successful"
    results = client.get(resp.headers["location"] + "/results")
    assert results.text == "Hello raw!" and results.headers["content-type"].startswith("text/plain")


def test_no_preference_means_sync(client: httpx.Client) -> None:
    resp = client.post("/processes/sleep/execution", json={"inputs": {"seconds": 0.1}, "response": "document"})
    assert resp.status_code == 200
    assert resp.json()["slept"] >= 0.1
    assert "preference-applied" not in resp.headers


def test_sync_failure_is_an_exception_document(client: httpx.Client) -> None:
    resp = client.post("/processes/sleep/execution", json={"inputs": {"seconds": 0, "fail": True}})
    doc = validate_exception(resp, 500)
    assert "fail=true" in doc["detail"]


def test_async_failure_says_why(client: httpx.Client) -> None:
    resp = client.post("/processes/sleep/execution", json={"inputs": {"seconds": 0.1, "fail": True}},
                       headers={"Prefer": "respond-async"})
    final = wait_for(client, resp.headers["location"])
    assert final["status"] == "failed"
    assert "fail=true" in final["message"]
    assert any(link["rel"].endswith("/exceptions") for link in final["links"])
    doc = validate_exception(client.get(resp.headers["location"] + "/results"), 500)
    assert "fail=true" in doc["detail"]


def test_results_not_ready(client: httpx.Client) -> None:
    resp = client.post("/processes/sleep/execution", json={"inputs": {"seconds": 5}},
                       headers={"Prefer": "respond-async"})
    loc = resp.headers["location"]
    doc = validate_exception(client.get(loc + "/results"), 404)
    assert doc["type"].endswith("/result-not-ready")
    client.delete(loc)


def test_progress_is_reported(client: httpx.Client) -> None:
    resp = client.post("/processes/sleep/execution", json={"inputs": {"seconds": 1.5}},
                       headers={"Prefer": "respond-async"})
    loc = resp.headers["location"]
    info = wait_for(client, loc, statuses=("running",))
    deadline = time.monotonic() + 10
    seen = set()
    while info["status"] == "running" and time.monotonic() < deadline:
        seen.add(info.get("progress"))
        time.sleep(0.1)
        info = client.get(loc).json()
    assert info["status"] == "successful"
    assert any(p and 0 < p < 100 for p in seen), seen


@pytest.mark.parametrize(("inputs", "needle"), [
    ({}, "'name' is required"),
    ({"name": 5}, "'name'"),
    ({"name": ""}, "'name'"),
    ({"name": "x", "colour": "red"}, "unknown input 'colour'"),
    ({"name": ["a", "b"]}, "'name' takes at most 1"),
])
def test_bad_inputs_hello(client: httpx.Client, inputs: dict, needle: str) -> None:
    doc = validate_exception(client.post("/processes/hello-world/execution", json={"inputs": inputs}), 400)
    assert needle in doc["detail"], doc


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("stringInput", "Value9", "is not one of"),
    ("measureInput", 100, "input 'measureInput'"),
    ("measureInput", -1, "input 'measureInput'"),
    ("integerInput", 1.5, "is not of type 'integer'"),
    ("booleanInput", "yes", "is not of type 'boolean'"),
    ("dateInput", "2024-13-01", "input 'dateInput'"),
    ("dateInput", "2024-05-01T12:00:00", "input 'dateInput'"),
    ("boundingBoxInput", {"bbox": [1, 2, 3]}, "input 'boundingBoxInput'"),
    ("geometryInput", {"type": "Circle", "coordinates": []}, "input 'geometryInput'"),
    ("arrayInput", [1], "input 'arrayInput'"),
    ("complexObjectInput", {"property2": 1}, "'property1' is a required property"),
    ("imageInput", {"value": "not base64!!", "mediaType": "image/png"}, "not valid base64"),
    ("imageInput", {"value": "aGVsbG8=", "mediaType": "image/jpeg"}, "media type 'image/jpeg'"),
    ("stringInput", {"href": "ftp://example.com/x"}, "http(s) URL"),
])
def test_bad_inputs_echo(client: httpx.Client, key: str, value: object, needle: str) -> None:
    doc = validate_exception(client.post("/processes/echo/execution", json={"inputs": {key: value}}), 400)
    assert needle in doc["detail"], doc
    assert key in doc["detail"]


def test_bad_requests(client: httpx.Client, server) -> None:
    url = "/processes/hello-world/execution"
    validate_exception(client.post(url, content=b"{not json", headers={"Content-Type": "application/json"}),
                       400)
    validate_exception(client.post(url, content=b"", headers={"Content-Type": "application/json"}), 400)
    validate_exception(client.post(url, json=[1, 2]), 400)
    validate_exception(client.post(url, content=b"name=x",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"}), 415)
    validate_exception(client.post(url, json={"inputs": {"name": "x"}, "response": "everything"}), 400)
    doc = validate_exception(client.post(url, json={"inputs": {"name": "x"}, "outputs": {"nope": {}}}), 400)
    assert "unknown output 'nope'" in doc["detail"]
    doc = validate_exception(client.post(url, json={"inputs": {"name": "x"},
                                                    "subscriber": {"successUri": "file:///etc/passwd"}}), 400)
    big = b'{"inputs": {"name": "' + b"x" * (21 * 1024 * 1024) + b'"}}'
    validate_exception(client.post(url, content=big, headers={"Content-Type": "application/json"}), 413)


def test_inputs_by_reference(client: httpx.Client, recorder: Recorder) -> None:
    recorder.files["/image.png"] = (PNG, "image/png")
    recorder.files["/geom.json"] = (b'{"type": "Point", "coordinates": [1, 2]}', "application/geo+json")
    recorder.files["/name.txt"] = (b"Referenced", "text/plain")
    body = {"inputs": {"imageInput": {"href": recorder.url + "/image.png"},
                       "geometryInput": {"href": recorder.url + "/geom.json", "type": "application/geo+json"}},
            "response": "document"}
    doc = client.post("/processes/echo/execution", json=body).json()
    assert base64.b64decode(doc["imageInput"]["value"]) == PNG
    assert doc["geometryInput"]["value"] == {"type": "Point", "coordinates": [1, 2]}
    resp = client.post("/processes/hello-world/execution",
                       json={"inputs": {"name": {"href": recorder.url + "/name.txt"}}})
    assert resp.text == "Hello Referenced!"


def test_input_reference_that_fails(client: httpx.Client, recorder: Recorder) -> None:
    resp = client.post("/processes/echo/execution", json={"inputs": {"imageInput": {"href": recorder.url + "/gone"}},
                                                          "response": "document"},
                       headers={"Prefer": "respond-async"})
    final = wait_for(client, resp.headers["location"])
    assert final["status"] == "failed"
    assert "HTTP 404" in final["message"] and "/gone" in final["message"]
