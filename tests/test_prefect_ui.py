"""Prefect as a Prefect user sees it (against a real Prefect server): a deployment per OGC process whose
parameters are the process's inputs, runs made in Prefect (the Run button, a schedule, an automation) that
become OGC jobs, a Retry from the UI that is a new attempt of the same job, per-process and per-job retries
and work queues, the workers in the pool, live logs, progress and results artifacts."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import Recorder, store_env, wait_for
from tests.ogc_schemas import validate_exception
from tests.server import Server
from tests.test_prefect_orchestration import ended_run, flow_run, history, prefect, run_id_of, submit

pytestmark = pytest.mark.skipif(not os.environ.get("PREFECT_API_URL"),
                                reason="needs PREFECT_API_URL (scripts/test.sh starts a Prefect server)")

TOKEN = "ui-admin-token"
PROCESSES = {"hello-world": {"retries": 1, "retry_delay_seconds": 1}, "sleep": {"work_queue": "slow"}}

# a CWL tool whose log grows while it runs (its standard error is the job's log)
TALKER = """
cwlVersion: v1.2
class: CommandLineTool
id: talker
baseCommand: [sh, -c, 'echo "first line of the tool" >&2; sleep 8; echo "last line of the tool" >&2']
inputs: {}
outputs: {}
"""


@pytest.fixture(scope="module")
def userver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {**store_env("prefect"), "OGCFLOW_PREFECT_PROCESSES": json.dumps(PROCESSES),
           "OGCFLOW_ADMIN_TOKEN": TOKEN, "OGCFLOW_PREFECT_TASK_RUNS": "true"}
    srv = Server(tmp_path_factory.mktemp("prefect-ui"), env=env)
    srv.env["OGCFLOW_PUBLIC_URL"] = srv.url
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def uc(userver: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=userver.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def pool(userver: Server) -> str:
    return userver.env["OGCFLOW_PREFECT_WORK_POOL"]


def deployment(pool: str, process: str, timeout: float = 30) -> dict[str, Any]:
    """The deployment of a process (made by the worker as it starts, or at the process's first job)."""
    deadline = time.monotonic() + timeout
    with prefect() as p:
        while (resp := p.get(f"deployments/name/ogcflow:{process}/{pool}")).status_code == 404:
            assert time.monotonic() < deadline, f"no deployment of {process}"
            time.sleep(0.2)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


def run_button(pool: str, process: str, parameters: dict[str, Any]) -> str:
    """What the deployment's Run button does: a flow run of the deployment, made in Prefect."""
    dep = deployment(pool, process)
    with prefect() as p:
        resp = p.post(f"deployments/{dep['id']}/create_flow_run", json={"parameters": parameters, "state": {
            "type": "SCHEDULED", "name": "Scheduled", "message": "Run from the Prefect UI with defaults"}})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])


def ui_retry(run_id: str) -> None:
    """What the UI's Retry button of an ended run does."""
    with prefect() as p:
        resp = p.post(f"flow_runs/{run_id}/set_state", json={"force": True, "state": {
            "type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}})
        assert resp.status_code in (200, 201), resp.text


def wait_job(c: httpx.Client, job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while c.get(f"/jobs/{job_id}").status_code == 404:
        assert time.monotonic() < deadline, "the run never became a job"
        time.sleep(0.1)
    return wait_for(c, f"/jobs/{job_id}", timeout=timeout)


def logs_of(run_id: str) -> list[str]:
    with prefect() as p:
        logs = p.post("logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200}).json()
    return [entry["message"] for entry in logs]


def runs_of(deployment_id: str) -> list[dict[str, Any]]:
    with prefect() as p:
        resp = p.post("flow_runs/filter", json={"flow_runs": {"deployment_id": {"any_": [deployment_id]}}})
    assert resp.status_code == 200, resp.text
    return list(resp.json())


def artifacts_of(run_id: str) -> list[dict[str, Any]]:
    with prefect() as p:
        return list(p.post("artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [run_id]}}}).json())


def test_each_process_has_a_deployment_whose_parameters_are_its_inputs(pool: str) -> None:
    hello = deployment(pool, "hello-world")
    assert {"ogcflow", "process:hello-world", "namespace:default"} <= set(hello["tags"])
    assert hello["work_pool_name"] == pool
    schema = hello["parameter_openapi_schema"]
    assert schema["type"] == "object" and schema["required"] == ["name"]
    assert schema["properties"]["name"]["type"] == "string"
    assert schema["properties"]["name"]["title"] == "Name" and schema["properties"]["name"]["position"] == 0
    assert set(schema["properties"]) == {"name", "message"}
    echo = deployment(pool, "echo")["parameter_openapi_schema"]["properties"]
    assert echo["integerInput"]["type"] == "integer" and echo["integerInput"]["maximum"] == 1000
    # a document may be given by value or by reference
    assert {"type", "required", "properties"} <= set(echo["complexObjectInput"]["anyOf"][0])
    assert echo["complexObjectInput"]["anyOf"][1]["required"] == ["href"]
    assert deployment(pool, "sleep")["work_queue_name"] == "slow"  # the process's queue


def test_a_run_of_the_deployment_made_in_prefect_is_an_ogc_job(uc: httpx.Client, pool: str,
                                                                 userver: Server) -> None:
    run_id = run_button(pool, "hello-world", {"name": "button"})
    final = wait_job(uc, run_id)
    assert final["status"] == "successful", final
    assert final["processID"] == "hello-world"
    assert uc.get(f"/jobs/{run_id}/results").json()["greeting"]["value"] == "Hello button!"
    listed = uc.get("/jobs", params={"limit": 100}).json()["jobs"]
    assert run_id in {j["jobID"] for j in listed}
    assert run_id_of(final) == run_id  # the job links its run
    run = ended_run(run_id)
    assert run["state"]["type"] == "COMPLETED"
    assert run["empirical_policy"]["retries"] == 1  # the process's retries, given to a run made in Prefect
    # a run whose parameters do not fit the process: a failed job saying why, and a failed run
    bad = run_button(pool, "hello-world", {"name": "x", "colour": "blue"})
    failed = wait_job(uc, bad)
    assert failed["status"] == "failed" and "colour" in failed["message"], failed
    assert ended_run(bad)["state"]["type"] == "FAILED"


def test_runs_of_a_schedule_are_ogc_jobs(uc: httpx.Client, pool: str) -> None:
    """A schedule added to the process's deployment (as the UI's "Add schedule" does, with its own
    parameters): a run it makes is a job that succeeds with them; its runs not yet due are left alone."""
    dep = deployment(pool, "hello-world")
    anchor = datetime.now(UTC).isoformat()  # a run every 15 s from now
    with prefect() as p:
        resp = p.post(f"deployments/{dep['id']}/schedules", json=[{
            "schedule": {"interval": 15, "anchor_date": anchor}, "active": True,
            "parameters": {"name": "on schedule"}}])
        assert resp.status_code == 201, resp.text
        [schedule] = resp.json()
        # Prefect's scheduler makes the runs of a deployment changed in the last seconds at once (every 5 s),
        # of the others once a minute: touch it, as saving the deployment in the UI does
        assert p.patch(f"deployments/{dep['id']}", json={"description": dep["description"]}).status_code == 204
        try:
            deadline = time.monotonic() + 60
            while not (done := [r for r in runs_of(dep["id"]) if r["auto_scheduled"]
                                and r["state_type"] in ("COMPLETED", "FAILED", "CRASHED")]):
                assert time.monotonic() < deadline, "the schedule's first run did not end"
                time.sleep(0.5)
            run = done[0]
            final = wait_job(uc, run["id"])
            assert final["status"] == "successful", final
            assert final["processID"] == "hello-world"
            assert uc.get(f"/jobs/{run['id']}/results").json()["greeting"]["value"] == "Hello on schedule!"
            soon = (datetime.now(UTC) + timedelta(seconds=2)).timestamp()
            waiting = [r for r in runs_of(dep["id"]) if r["auto_scheduled"] and r["id"] != run["id"]
                       and datetime.fromisoformat(r["expected_start_time"].replace("Z", "+00:00")).timestamp() > soon]
            assert waiting and all(r["state_type"] == "SCHEDULED" for r in waiting)  # not due yet: not taken
            assert all(uc.get(f"/jobs/{r['id']}").status_code == 404 for r in waiting)
        finally:
            p.delete(f"deployments/{dep['id']}/schedules/{schedule['id']}")


def test_a_run_started_by_an_automation_is_an_ogc_job(uc: httpx.Client, pool: str) -> None:
    """An automation whose action runs the process's deployment (with parameters), triggered by an event: the
    run it makes is a job of the process, which succeeds."""
    dep = deployment(pool, "hello-world")
    mark = "ogcflow.test." + uuid.uuid4().hex[:10]
    with prefect() as p:
        resp = p.post("automations/", json={
            "name": f"run hello-world on {mark}",
            "trigger": {"type": "event", "posture": "Reactive", "expect": ["ogcflow.test.ping"],
                        "match": {"prefect.resource.id": mark}, "threshold": 1, "within": 0},
            "actions": [{"type": "run-deployment", "source": "selected", "deployment_id": dep["id"],
                         "parameters": {"name": "automation"}}]})
        assert resp.status_code == 201, resp.text
        automation = resp.json()["id"]
        try:
            deadline = time.monotonic() + 60
            runs: list[dict[str, Any]] = []
            while not runs:  # an automation made a moment ago may miss an event sent at once: send until it acts
                resp = p.post("events", json=[{"occurred": datetime.now(UTC).isoformat(),
                                               "event": "ogcflow.test.ping", "resource": {"prefect.resource.id": mark},
                                               "id": str(uuid.uuid4())}])
                assert resp.status_code == 204, resp.text
                for _ in range(10):
                    runs = [r for r in runs_of(dep["id"]) if (r.get("created_by") or {}).get("id") == automation]
                    if runs:
                        break
                    time.sleep(0.5)
                assert time.monotonic() < deadline, "the automation made no run"
            final = wait_job(uc, runs[0]["id"])
            assert final["status"] == "successful", final
            assert uc.get(f"/jobs/{runs[0]['id']}/results").json()["greeting"]["value"] == "Hello automation!"
            assert ended_run(runs[0]["id"])["state"]["type"] == "COMPLETED"
        finally:
            p.delete(f"automations/{automation}")


def test_a_retry_from_the_ui_is_a_new_attempt_of_the_same_job(uc: httpx.Client) -> None:
    files = Recorder()
    try:
        resp = uc.post("/processes/hello-world/execution", headers={"Prefer": "respond-async"},
                       json={"inputs": {"name": {"href": files.url + "/name.txt"}}, "prefect": {"retries": 0}})
        assert resp.status_code == 201, resp.text
        info = resp.json()
        first = wait_for(uc, f"/jobs/{info['jobID']}", timeout=60)
        assert first["status"] == "failed" and "404" in first["message"], first
        run_id = run_id_of(info)
        assert ended_run(run_id)["state"]["type"] == "FAILED"
        files.files["/name.txt"] = (b"again", "text/plain")
        ui_retry(run_id)
        final = wait_for(uc, f"/jobs/{info['jobID']}", statuses=("successful", "dismissed"), timeout=60)
        assert final["status"] == "successful", final
        assert uc.get(f"/jobs/{info['jobID']}/results").json()["greeting"]["value"] == "Hello again!"
        run = ended_run(run_id)
        assert run["state"]["type"] == "COMPLETED" and run["run_count"] == 2, run
        # a completed run retried from the UI runs again too
        ui_retry(run_id)
        deadline = time.monotonic() + 30
        while flow_run(run_id)["run_count"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert ended_run(run_id)["state"]["type"] == "COMPLETED"
        assert wait_for(uc, f"/jobs/{info['jobID']}")["status"] == "successful"
    finally:
        files.close()


def test_per_process_retries_and_the_job_level_override(uc: httpx.Client) -> None:
    missing = {"name": {"href": "http://127.0.0.1:9/missing.txt"}}
    info = submit(uc, "hello-world", missing)  # hello-world: 1 retry, 1 s apart
    final = wait_for(uc, f"/jobs/{info['jobID']}", timeout=60)
    assert final["status"] == "failed", final
    run = ended_run(run_id_of(info))
    assert run["state"]["type"] == "FAILED" and run["run_count"] == 2, run
    names = [st["name"] for st in history(run_id_of(info))]
    assert names.count("AwaitingRetry") == 1, names
    resp = uc.post("/processes/hello-world/execution", headers={"Prefer": "respond-async"},
                   json={"inputs": missing, "prefect": {"retries": 2, "retryDelaySeconds": 0}})
    assert resp.status_code == 201, resp.text
    assert wait_for(uc, f"/jobs/{resp.json()['jobID']}", timeout=60)["status"] == "failed"
    assert ended_run(run_id_of(resp.json()))["run_count"] == 3
    for bad in ({"retries": -1}, {"retries": "2"}, {"workQueue": "a/b"}, {"when": 1}, []):
        validate_exception(uc.post("/processes/hello-world/execution", json={"inputs": {"name": "x"},
                                                                             "prefect": bad}), 400)


def test_runs_go_to_the_work_queue_of_the_process_or_of_the_request(uc: httpx.Client) -> None:
    queued = submit(uc, "sleep", {"seconds": 0})
    assert flow_run(run_id_of(queued))["work_queue_name"] == "slow"
    resp = uc.post("/processes/sleep/execution", headers={"Prefer": "respond-async"},
                   json={"inputs": {"seconds": 0}, "prefect": {"workQueue": "urgent"}})
    assert resp.status_code == 201, resp.text
    assert flow_run(run_id_of(resp.json()))["work_queue_name"] == "urgent"
    assert flow_run(run_id_of(submit(uc, "echo", {"integerInput": 3})))["work_queue_name"] == "default"
    for info in (queued, resp.json()):
        assert wait_for(uc, f"/jobs/{info['jobID']}")["status"] == "successful"


def test_the_pool_is_ready_and_lists_its_worker(uc: httpx.Client, pool: str) -> None:
    with prefect() as p:
        assert p.get(f"work_pools/{pool}").json()["status"] == "READY"
        workers = p.post(f"work_pools/{pool}/workers/filter", json={}).json()
    assert len(workers) == 1 and workers[0]["status"] == "ONLINE", workers


def test_logs_and_progress_reach_the_run_while_it_runs(uc: httpx.Client) -> None:
    resp = uc.post("/processes", content=TALKER, headers={"Content-Type": "application/cwl+yaml",
                                                          "Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 201, resp.text
    info = submit(uc, "talker", {})
    run_id = run_id_of(info)
    deadline = time.monotonic() + 30
    while "first line of the tool" not in logs_of(run_id):
        assert time.monotonic() < deadline, logs_of(run_id)
        time.sleep(0.2)
    assert "last line of the tool" not in logs_of(run_id)
    deadline = time.monotonic() + 30
    while not (progress := [a for a in artifacts_of(run_id) if a["type"] == "progress"]):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert len(progress) == 1 and 0 <= progress[0]["data"] < 100, progress
    assert flow_run(run_id)["state"]["type"] == "RUNNING"  # the line and the progress came while it runs
    assert wait_for(uc, f"/jobs/{info['jobID']}")["status"] == "successful"
    assert ended_run(run_id)["state"]["type"] == "COMPLETED"
    lines = logs_of(run_id)
    assert lines.count("last line of the tool") == 1 and lines.count("first line of the tool") == 1, lines
    assert not [line for line in lines if "/tmp/ogcflow-" in line], lines  # the server's paths redacted
    [progress] = [a for a in artifacts_of(run_id) if a["type"] == "progress"]
    assert progress["data"] == 100
    with prefect() as p:  # OGCFLOW_PREFECT_TASK_RUNS: the CWL run's job as a task run
        [task] = p.post("task_runs/filter", json={"flow_runs": {"id": {"any_": [run_id]}}}).json()
    assert task["name"] == "talker" and task["state"]["type"] == "COMPLETED", task
    assert task["start_time"] and task["end_time"] and task["total_run_time"] >= 6, task


def test_a_successful_run_has_a_results_artifact(uc: httpx.Client, userver: Server) -> None:
    item = {"type": "Feature", "id": "scene-1", "geometry": None, "properties": {},
            "links": [{"rel": "root", "href": "s3://results/the-job/catalog.json"}],
            "assets": {"mask": {"href": "https://data.test/job/scene-1/mask.tif", "title": "water mask"},
                       "quicklook": {"href": "s3://results/the-job/scene-1/ql.png", "alternate": {
                           "https": {"href": "https://api.test/jobs/the-job/files/scene-1/ql.png"}}}}}
    collection = {"property1": "stac", "type": "FeatureCollection", "features": [item]}
    info = submit(uc, "echo", {"complexObjectInput": {"value": collection, "mediaType": "application/json"}})
    assert wait_for(uc, f"/jobs/{info['jobID']}")["status"] == "successful"
    run_id = run_id_of(info)
    assert ended_run(run_id)["state"]["type"] == "COMPLETED"
    [md] = [a for a in artifacts_of(run_id) if a["type"] == "markdown"]
    text = md["data"]
    results = f"{userver.url}/jobs/{info['jobID']}/results"
    assert f"[{results}]({results})" in text
    assert "s3://results/the-job/catalog.json" in text  # (the echo job is not 'the-job': no API link)
    assert "water mask: [https://data.test/job/scene-1/mask.tif]" in text
    assert "quicklook: [https://api.test/jobs/the-job/files/scene-1/ql.png]" in text
    assert httpx.get(results).status_code == 200
