"""The production layout of docs/deployment.md on one machine: two API processes and two workers (each with
its own data directory, as on separate machines) sharing one PostgreSQL store, one Prefect server and one
S3 results bucket; and beside them a Prefect `process` worker running the flows of Prefect-native
processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import store_env, wait_for
from tests.eo_support import Scenes
from tests.prefect_native_support import register, runs_of_job, start_process_pool, wait_run
from tests.server import Server

pytestmark = pytest.mark.skipif(not os.environ.get("PREFECT_API_URL"),
                                reason="needs PREFECT_API_URL (scripts/test.sh starts a Prefect server)")


def start_workers(tmp_path: Path, env: dict[str, str], count: int = 2) -> list[subprocess.Popen[bytes]]:
    workers = []
    for i in range(count):
        data = tmp_path / f"worker{i}"
        data.mkdir()
        wenv = {**env, "OGCFLOW_DATA_DIR": str(data)}
        workers.append(subprocess.Popen([sys.executable, "-m", "ogcflow", "worker", "--concurrency", "2",
                                         "--log-level", "warning"], env=wenv, start_new_session=True,
                                        stdout=open(data / "worker.log", "wb"), stderr=subprocess.STDOUT))
    return workers


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        try:
            w.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(w.pid, signal.SIGKILL)


def test_two_apis_two_workers_one_prefect(tmp_path: Path, s3: dict[str, str], scenes: Scenes) -> None:
    env = store_env("prefect")
    env["OGCFLOW_RESULTS_URL"] = f"s3://deploy-{uuid.uuid4().hex[:10]}"
    apis = [Server(tmp_path / f"api{i}", env=env, args=["--no-worker"]).start() for i in range(2)]
    workers = start_workers(tmp_path, apis[0].env)
    try:
        clients = [httpx.Client(base_url=a.url, timeout=30) for a in apis]
        locations = []
        for i in range(12):
            c = clients[i % 2]
            process, inputs = ("hello-world", {"name": f"n{i}"}) if i % 3 else ("sleep", {"seconds": 0.5})
            resp = c.post(f"/processes/{process}/execution", json={"inputs": inputs},
                          headers={"Prefer": "respond-async"})
            assert resp.status_code == 201, resp.text
            locations.append((i, resp.headers["location"].rsplit("/", 1)[1]))
        water = clients[0].post("/processes/water-bodies/execution", headers={"Prefer": "respond-async"}, json={
            "inputs": {"aoi": "-121.43,40.27,-121.33,40.34", "bands": ["green", "nir08"],
                       "stac_items": [scenes.item_url("A")]}}).headers["location"].rsplit("/", 1)[1]
        for i, job_id in locations:
            other = clients[(i + 1) % 2]  # read through the API process that did not take the job
            info = wait_for(other, f"/jobs/{job_id}", timeout=60)
            assert info["status"] == "successful", info
            if i % 3:
                assert other.get(f"/jobs/{job_id}/results").json()["greeting"]["value"] == f"Hello n{i}!"
        assert wait_for(clients[1], f"/jobs/{water}", timeout=120)["status"] == "successful"
        doc = clients[1].get(f"/jobs/{water}/results").json()
        mask = doc["stac_catalog"]["value"]["features"][0]["assets"]["data"]["href"]
        assert mask.startswith(env["OGCFLOW_RESULTS_URL"] + "/")
        name = mask.removeprefix(env["OGCFLOW_RESULTS_URL"] + f"/{water}/")
        assert clients[0].get(f"/jobs/{water}/files/{name}").content[:4] == b"II*\x00"  # a TIFF, via the API
        ran_on = {apis[0].query("select worker from jobs where id = :id", id=j)[0][0].split("/")[0]
                  for _, j in locations}
        assert len(ran_on) == 2, f"both workers should have taken jobs: {ran_on}"
        listed = {j["jobID"] for j in clients[0].get("/jobs", params={"limit": 100}).json()["jobs"]}
        assert {j for _, j in locations} <= listed
    finally:
        stop_workers(workers)
        for a in apis:
            a.stop()


@pytest.mark.timeout(900)
def test_prefect_native_processes_beside_ogcflow_workers(tmp_path: Path, s3: dict[str, str]) -> None:
    """2 API processes, 2 ogcflow workers (Prefect engine) and a Prefect process worker, one PostgreSQL
    store, one Prefect server: jobs of both kinds through both APIs all succeed, each run exactly once."""
    pool = start_process_pool(tmp_path / "pool")
    env = {**store_env("prefect"), "OGCFLOW_RESULTS_URL": f"s3://native-{uuid.uuid4().hex[:10]}",
           "PYTHONPATH": pool.env["PYTHONPATH"]}
    apis = [Server(tmp_path / f"api{i}", env=env, args=["--no-worker"]).start() for i in range(2)]
    register(apis[0].env, pool.deployments["area"], "area", "area", "report=text/plain")
    workers = start_workers(tmp_path, apis[0].env)
    try:
        clients = [httpx.Client(base_url=a.url, timeout=30) for a in apis]
        jobs = []
        for i in range(8):
            c = clients[i % 2]
            process, inputs = ("area", {"width": i, "height": 2}) if i % 2 == 0 or i == 7 else \
                ("hello-world", {"name": f"n{i}"})
            resp = c.post(f"/processes/{process}/execution", json={"inputs": inputs},
                          headers={"Prefer": "respond-async"})
            assert resp.status_code == 201, resp.text
            jobs.append((i, process, resp.headers["location"].rsplit("/", 1)[1]))
        prefect = pool.api
        for i, process, job_id in jobs:
            other = clients[(i + 1) % 2]
            info = wait_for(other, f"/jobs/{job_id}", timeout=240)
            assert info["status"] == "successful", (process, info)
            results = other.get(f"/jobs/{job_id}/results").json()
            if process == "area":
                assert results["area"] == i * 2
                assert other.get(f"/jobs/{job_id}/results/report").text == f"rectangle: {float(i)} x 2.0 = {i * 2.0}"
                (run,) = runs_of_job(prefect, job_id)  # one flow run of the deployment per job
                assert run["state"]["type"] == "COMPLETED" and run["run_count"] == 1, run
            else:
                assert results["greeting"]["value"] == f"Hello n{i}!"
            # and one flow run of ogcflow's own deployment, Running once
            (own,) = prefect.post("flow_runs/filter", json={"flow_runs": {"name": {"any_": [job_id]}}}).json()
            # the job's success is recorded before its run is told: read the run when it is over
            own = wait_run(prefect, own["id"], ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"), timeout=30)
            assert own["state"]["type"] == "COMPLETED" and own["run_count"] == 1, own
        listed = {j["jobID"] for j in clients[1].get("/jobs", params={"limit": 100}).json()["jobs"]}
        assert {j for _, _, j in jobs} <= listed
    finally:
        stop_workers(workers)
        for a in apis:
            a.stop()
        pool.stop()
