"""The production layout of docs/deployment.md on one machine: two API processes and two workers (each with
its own data directory, as on separate machines) sharing one PostgreSQL store, one Prefect server and one
S3 results bucket."""

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
from tests.server import Server

pytestmark = pytest.mark.skipif(not os.environ.get("PREFECT_API_URL"),
                                reason="needs PREFECT_API_URL (scripts/test.sh starts a Prefect server)")


def test_two_apis_two_workers_one_prefect(tmp_path: Path, s3: dict[str, str], scenes: Scenes) -> None:
    env = store_env("prefect")
    env["OGCFLOW_RESULTS_URL"] = f"s3://deploy-{uuid.uuid4().hex[:10]}"
    apis = [Server(tmp_path / f"api{i}", env=env, args=["--no-worker"]).start() for i in range(2)]
    workers = []
    for i in range(2):
        data = tmp_path / f"worker{i}"
        data.mkdir()
        wenv = {**apis[0].env, "OGCFLOW_DATA_DIR": str(data)}
        workers.append(subprocess.Popen([sys.executable, "-m", "ogcflow", "worker", "--concurrency", "2",
                                         "--log-level", "warning"], env=wenv, start_new_session=True,
                                        stdout=open(data / "worker.log", "wb"), stderr=subprocess.STDOUT))
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
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(w.pid, signal.SIGKILL)
        for a in apis:
            a.stop()
