"""Prefect deployments as OGC processes, run by Prefect's own `process` worker: the deployment's parameters
are the process's inputs, the flow's published values and files its outputs; a job is a flow run of the
deployment (Prefect's retries, tasks), dismissing the job cancels the run, callbacks as for any job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate as validate_openapi

from tests.conftest import Recorder, wait_for
from tests.prefect_native_support import ProcessPool, register, runs_of_job, start_process_pool, task_states, wait_run
from tests.server import Server

pytestmark = [pytest.mark.skipif(not os.environ.get("PREFECT_API_URL"),
                                 reason="needs PREFECT_API_URL (scripts/test.sh starts a Prefect server)"),
              pytest.mark.timeout(600)]  # each flow run is a fresh interpreter: ~5 s, far more on a busy machine


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessPool]:
    p = start_process_pool(tmp_path_factory.mktemp("native-pool"))
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def server(pool: ProcessPool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("native-api"), workers=4)
    srv.env["PYTHONPATH"] = pool.env["PYTHONPATH"]
    srv.data_dir.mkdir(parents=True, exist_ok=True)
    register(srv.env, pool.deployments["area"], "area", "area", "report=text/plain")
    for fn in ("flaky", "broken"):
        register(srv.env, pool.deployments[fn], f"native-{fn}")
    # and one named by the setting, registered when the server starts (its id: <flow>-<deployment>)
    srv.env["OGCFLOW_PREFECT_DEPLOYMENTS"] = json.dumps([pool.deployments["sleepy"]])
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def submit(c: httpx.Client, process: str, inputs: dict, **extra: object) -> str:
    resp = c.post(f"/processes/{process}/execution", json={"inputs": inputs, **extra},
                  headers={"Prefer": "respond-async"})
    assert resp.status_code == 201, resp.text
    return resp.headers["location"].rsplit("/", 1)[1]


def test_deployment_parameters_are_the_inputs(server: Server) -> None:
    c = httpx.Client(base_url=server.url, timeout=30)
    desc = c.get("/processes/area").json()
    assert desc["inputs"]["width"]["schema"]["type"] == "number"
    assert desc["inputs"]["width"]["minOccurs"] == 1
    assert desc["inputs"]["height"]["minOccurs"] == 0 and desc["inputs"]["height"]["schema"]["default"] == 1.0
    assert set(desc["outputs"]) == {"area", "report"}
    assert "area" in {p["id"] for p in c.get("/processes").json()["processes"]}
    bad = c.post("/processes/area/execution", json={"inputs": {"width": "wide"}})
    assert bad.status_code == 400, bad.text
    assert "width" in bad.json()["detail"]
    missing = c.post("/processes/area/execution", json={"inputs": {"height": 2}})
    assert missing.status_code == 400 and "width" in missing.json()["detail"]
    doc = c.get("/api").json()  # the OpenAPI document with the deployments' processes in it stays valid
    validate_openapi(doc)
    assert any("/processes/area/execution" in path for path in doc["paths"])


def test_jobs_are_flow_runs_of_the_deployment(server: Server, pool: ProcessPool, recorder: Recorder,
                                              tmp_path: Path) -> None:
    c = httpx.Client(base_url=server.url, timeout=30)
    api = pool.api
    ok = submit(c, "area", {"width": 3, "height": 2.5, "label": "plot"},
                subscriber={"successUri": recorder.url + "/done", "inProgressUri": recorder.url + "/started"})
    retried = submit(c, "native-flaky", {"marker": str(tmp_path / "attempts")})
    failed = submit(c, "native-broken", {"reason": "no water here"})
    info = wait_for(c, f"/jobs/{ok}", timeout=120)
    assert info["status"] == "successful", info
    results = c.get(f"/jobs/{ok}/results").json()
    assert results["area"] == 7.5
    assert c.get(f"/jobs/{ok}/results/report").text == "plot: 3.0 x 2.5 = 7.5"
    runs = runs_of_job(api, ok)
    assert len(runs) == 1 and runs[0]["state"]["type"] == "COMPLETED"
    assert runs[0]["parameters"] == {"width": 3, "height": 2.5, "label": "plot"}
    assert runs[0]["deployment_id"] and runs[0]["work_queue_name"]
    # the flow's task ran in Prefect's engine
    assert task_states(api, runs[0]["id"], ["COMPLETED"]) == ["COMPLETED"]
    deadline = time.monotonic() + 20
    while not recorder.received("/done") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert recorder.received("/done")[0]["area"] == 7.5
    assert recorder.received("/started")

    info = wait_for(c, f"/jobs/{retried}", timeout=120)
    assert info["status"] == "successful", info
    assert c.get(f"/jobs/{retried}/results").json()["result"] == 2  # Prefect retried the flow once
    (run,) = runs_of_job(api, retried)
    assert run["run_count"] == 2

    info = wait_for(c, f"/jobs/{failed}", timeout=120)
    assert info["status"] == "failed", info
    assert "no water here" in info["message"] and "Failed" in info["message"]
    assert c.get(f"/jobs/{failed}/results").status_code >= 400

    listed = {j["jobID"]: j for j in c.get("/jobs", params={"processID": "area"}).json()["jobs"]}
    assert listed[ok]["status"] == "successful"


def test_dismiss_cancels_the_flow_run(server: Server, pool: ProcessPool) -> None:
    c = httpx.Client(base_url=server.url, timeout=30)
    api = pool.api
    job = submit(c, f"native-sleep-{pool.pool}", {"seconds": 120})
    deadline = time.monotonic() + 90
    while "Running" not in (c.get(f"/jobs/{job}").json().get("message") or ""):
        assert time.monotonic() < deadline, c.get(f"/jobs/{job}").json()
        time.sleep(0.2)
    resp = c.delete(f"/jobs/{job}")
    assert resp.status_code == 200 and resp.json()["status"] == "dismissed"
    (run,) = runs_of_job(api, job)
    assert wait_run(api, run["id"], ("CANCELLED",), timeout=60)["state"]["type"] == "CANCELLED"
    assert c.get(f"/jobs/{job}").json()["status"] == "dismissed"


def test_register_names_an_existing_deployment(server: Server) -> None:
    done = subprocess.run([sys.executable, "-m", "ogcflow", "prefect", "register", "native-area/no-such-pool"],
                          env=server.env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "no deployment 'native-area/no-such-pool'" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "ogcflow", "prefect", "register", "native-area/x", "--output",
                          "not an id"], env=server.env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "not an output id" in bad.stderr


def test_cancel_in_prefect_dismisses_the_job(server: Server, pool: ProcessPool, recorder: Recorder) -> None:
    c = httpx.Client(base_url=server.url, timeout=30)
    api = pool.api
    job = submit(c, f"native-sleep-{pool.pool}", {"seconds": 120}, subscriber={"failedUri": recorder.url + "/f"})
    deadline = time.monotonic() + 90
    while "Running" not in (c.get(f"/jobs/{job}").json().get("message") or ""):
        assert time.monotonic() < deadline, c.get(f"/jobs/{job}").json()
        time.sleep(0.2)
    (run,) = runs_of_job(api, job)
    api.post(f"flow_runs/{run['id']}/set_state", json={"state": {"type": "CANCELLING", "name": "Cancelling"},
                                                       "force": True}).raise_for_status()
    info = wait_for(c, f"/jobs/{job}", timeout=60)
    assert info["status"] == "dismissed", info
    assert "cancelled in Prefect" in info["message"]
    assert not recorder.received("/f")  # a dismissal is no failure
