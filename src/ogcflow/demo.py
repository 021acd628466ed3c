"""``ogcflow demo``: the server with its embedded defaults, and a water-bodies job on synthetic scenes.

A user's day in one command: the synthetic Landsat scenes are generated (once) and served over HTTP, the
server starts (water-bodies is deployed by default), a job is submitted with
``Prefer: respond-async;return=representation`` and polled until it ends, and where its results are is
printed. The server keeps running for a look at the job's HTML page, until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

console = Console(soft_wrap=True)


def _wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server stopped (exit status {proc.returncode})")
        try:
            if httpx.get(url + "/conformance", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer on {url} within {timeout:g} s")


def submit(url: str, items: list[str], aoi: str, bands: list[str]) -> dict[str, Any]:
    """What a notebook does: submit, then poll the job until it ends; returns the last status."""
    body = {"inputs": {"aoi": aoi, "epsg": "EPSG:4326", "bands": bands, "stac_items": items}}
    resp = httpx.post(f"{url}/processes/water-bodies/execution", json=body, timeout=30,
                      headers={"Prefer": "respond-async;return=representation"})
    if resp.status_code != 201:
        raise SystemExit(f"the submission was refused: HTTP {resp.status_code} {resp.text}")
    job_url = resp.headers["Location"]
    console.print(f"job submitted: {job_url}")
    while True:
        status: dict[str, Any] = httpx.get(job_url, timeout=30).json()
        if status["status"] not in ("accepted", "running"):
            return status
        time.sleep(0.5)


def run(port: int, data_dir: Path, workers: int, stay: bool) -> int:
    from ogcflow.eo.dataserver import DataServer
    from ogcflow.eo.scenes import generate

    scenes = data_dir.resolve() / "demo-data"
    index_path = scenes / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else generate(scenes)
    data = DataServer(scenes).start()
    console.print(f"synthetic Landsat scenes in {scenes}, served on {data.url}/")
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OGCFLOW_DATA_DIR": str(data_dir.resolve()),
           "OGCFLOW_ALLOWED_HOSTS": json.dumps(["127.0.0.1"])}  # the scenes are served on this machine
    proc = subprocess.Popen([sys.executable, "-m", "ogcflow", "serve", "--port", str(port), "--workers",
                             str(workers), "--log-level", "warning"], env=env)
    try:
        _wait_up(url, proc)
        items = [f"{data.url}/{index['items'][k]['path']}" for k in ("A", "B", "C")]
        started = time.monotonic()
        status = submit(url, items, index["aoi"], ["green", "nir08"])
        took = time.monotonic() - started
        job_id = status["jobID"]
        if status["status"] != "successful":
            console.print(f"[red]job {job_id} {status['status']}[/red]: {status.get('message')}")
            return 1
        results = httpx.get(f"{url}/jobs/{job_id}/results", timeout=30).json()
        console.print(f"job {job_id} successful in {took:.1f} s")
        for feature in results["stac_catalog"]["value"]["features"]:
            band = feature["assets"]["data"]["raster:bands"][0]
            console.print(f"  {feature['id']}: water {band['statistics']['valid_percent']:.1f} % of the AOI, "
                          f"mask {feature['assets']['data']['href']}")
        console.print(f"results (stac_catalog: STAC items): {url}/jobs/{job_id}/results")
        console.print(f"the job in a browser:             {url}/jobs/{job_id}?f=html")
        if stay:
            console.print("the server keeps running: Ctrl-C stops it")
            proc.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        data.stop()
