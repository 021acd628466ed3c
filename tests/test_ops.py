"""Operations: /health, /readyz (failing when the results storage is down), Prometheus /metrics (parsed with
prometheus_client's parser, added up over two API processes), the JSON log format and the access log, the
version on the landing page."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server import Server

METRICS_TOKEN = "metrics-secret"


@pytest.fixture(scope="module")
def osrv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"OGCFLOW_LOG_FORMAT": "json", "OGCFLOW_METRICS_TOKEN": METRICS_TOKEN, "OGCFLOW_DEFAULT_PACKAGES": "[]"}
    srv = Server(tmp_path_factory.mktemp("ops"), env=env, workers=1,
                 args=["--api-workers", "2", "--log-level", "info"]).start()
    yield srv
    srv.stop()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> [(labels, value)], from the Prometheus text format."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for lab, v in found.get(name, []) if all(lab.get(k) == x for k, x in labels.items()))


def scrape(srv: Server) -> dict[str, list[tuple[dict[str, str], float]]]:
    resp = httpx.get(srv.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    return samples(resp.text)


def test_health_readyz_and_landing_version(osrv: Server) -> None:
    from ogcflow import __version__

    assert httpx.get(osrv.url + "/health").json() == {"status": "ok", "version": __version__}
    ready = httpx.get(osrv.url + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    doc = ready.json()
    assert doc["status"] == "ready" and set(doc["checks"]) == {"store", "engine (local)", "results storage"}
    assert all(c["ok"] for c in doc["checks"].values())
    assert httpx.get(osrv.url + "/").json()["version"] == __version__
    assert f'<span id="version">{__version__}</span>' in httpx.get(osrv.url + "/?f=html").text


def test_metrics_count_requests_of_every_api_process_and_jobs_from_the_store(osrv: Server) -> None:
    before = scrape(osrv)
    route = "/processes/{processId}/execution"
    ok_before = value(before, "ogcflow_http_requests_total", method="POST", route=route, status="200")
    with httpx.Client(base_url=osrv.url, timeout=30) as c:
        for i in range(20):  # over two API processes: the counts must add up in one scrape
            assert c.post("/processes/hello-world/execution", json={"inputs": {"name": f"n{i}"}}).status_code == 200
        assert c.get("/jobs/no-such-job").status_code == 404
        assert c.get("/no/such/path/at/all").status_code == 404
        job = c.post("/processes/sleep/execution", json={"inputs": {"seconds": 0.2}},
                     headers={"Prefer": "respond-async"}).json()["jobID"]
        deadline = time.monotonic() + 30
        while c.get(f"/jobs/{job}").json()["status"] != "successful":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert httpx.get(osrv.url + "/metrics").status_code == 401  # the token is required when set
    deadline = time.monotonic() + 10
    while True:  # inline jobs are recorded in batches, just after their responses
        found = scrape(osrv)
        done = value(found, "ogcflow_http_requests_total", method="POST", route=route, status="200") - ok_before
        if (value(found, "ogcflow_jobs", process="hello-world", status="successful") >= 20 and done >= 20) or \
                time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert value(found, "ogcflow_http_requests_total", method="POST", route=route, status="200") - ok_before == 20
    assert value(found, "ogcflow_http_requests_total", method="GET", route="/jobs/{jobId}", status="404") == 1
    assert value(found, "ogcflow_http_requests_total", route="<unmatched>", status="404") == 1
    assert not any("no-such-job" in str(lab) for lab, _ in found["ogcflow_http_requests_total"])  # templates only
    assert value(found, "ogcflow_http_request_duration_seconds_count", method="POST", route=route) >= 20
    inf = value(found, "ogcflow_http_request_duration_seconds_bucket", method="POST", route=route, le="+Inf")
    assert inf == value(found, "ogcflow_http_request_duration_seconds_count", method="POST", route=route)
    assert value(found, "ogcflow_jobs", namespace="default", process="hello-world", status="successful") == 20
    assert value(found, "ogcflow_jobs", process="sleep", status="successful") == 1
    assert value(found, "ogcflow_job_duration_seconds_count", process="sleep", status="successful") == 1
    assert 0.2 <= value(found, "ogcflow_job_duration_seconds_sum", process="sleep") < 10
    assert value(found, "ogcflow_job_duration_seconds_bucket", process="sleep", le="0.1") == 0
    assert value(found, "ogcflow_job_duration_seconds_bucket", process="sleep", le="+Inf") == 1
    assert found["ogcflow_queue_depth"] == [({}, 0.0)]
    assert "ogcflow_workers_busy" in found and "ogcflow_build_info" in found
    assert value(found, "ogcflow_workers", engine="local") == 1  # the worker of serve, idle now
    assert value(found, "ogcflow_worker_slots", engine="local") == 1
    deadline = time.monotonic() + 10  # what a worker runs is in its row from its next heartbeat (2 s)
    while value(found, "ogcflow_worker_jobs_running", engine="local") != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        found = scrape(osrv)
    assert value(found, "ogcflow_worker_jobs_running", engine="local") == 0


def test_log_lines_are_json_with_an_access_log(osrv: Server) -> None:
    httpx.get(osrv.url + "/conformance?f=json")
    time.sleep(0.3)
    lines = [x for x in Path(osrv.log).read_text().splitlines() if x.strip()]
    records, other = [], []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            other.append(line)
    assert other == []
    assert any("serving on" in r["message"] for r in records)
    assert {"time", "level", "logger", "message"} <= set(records[0])
    assert any(r["logger"].startswith("uvicorn") for r in records)  # uvicorn's own lines in the same format
    access = [r for r in records if r["logger"] == "ogcflow.access" and r["path"] == "/conformance"]
    assert access and access[-1]["status"] == 200 and access[-1]["method"] == "GET"
    assert access[-1]["route"] == "/conformance" and access[-1]["duration_ms"] >= 0


def test_readyz_names_the_results_storage_when_s3_is_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.eo_support import start_s3, stop_s3

    weed = Path(sys.executable).with_name("weed")
    if weed.exists():
        monkeypatch.setenv("WEED", str(weed))
    s3_dir = tmp_path / "s3"
    aws = start_s3(s3_dir)
    srv = None
    try:
        srv = Server(tmp_path / "data", env={**aws, "OGCFLOW_RESULTS_URL": "s3://ready-probe/",
                                             "OGCFLOW_DEFAULT_PACKAGES": "[]"}, workers=1).start()
        deadline = time.monotonic() + 30  # the first look imports s3fs and connects: probes are retried
        while (ready := httpx.get(srv.url + "/readyz", timeout=10)).status_code != 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.5)
        stop_s3(s3_dir)
        started = time.monotonic()
        down = httpx.get(srv.url + "/readyz", timeout=20)
        assert time.monotonic() - started < 8
        assert down.status_code == 503, down.text
        doc = down.json()
        assert doc["status"] == "not ready" and doc["failed"] == ["results storage"]
        assert doc["checks"]["store"]["ok"] and doc["checks"]["results storage"]["error"]
        assert httpx.get(srv.url + "/health").status_code == 200  # alive, not ready
    finally:
        if srv is not None:
            srv.stop()
        stop_s3(s3_dir)
