"""Water-bodies through the whole server path against the four steps run directly, in one run.

    bench/run.sh water_bodies [--runs 5] [--items ABC]
    bench/run.sh water_bodies --size full [--runs 5] [--skip-prefect] [--keep-http-cache]
                                                                     (bench/water_bodies_full.py)

Both sides run the same step commands (``python -m ogcflow.eo crop|norm_diff|otsu|stac``) on the same
synthetic Landsat scenes served over HTTP. "Direct" runs them as a script would: the items two at a time
(this machine has 2 cores; CWL's scatter does the same), then the STAC step; nothing uploaded. "Server" is
what a user sees: POST with Prefer: respond-async, poll /jobs/{id} every 0.1 s until successful: API +
local engine + cwltool + staging the catalog out to S3 (SeaweedFS, started by bench/run.sh).
Figures: median seconds per job, seconds per megapixel of AOI processed, and server / direct.
Target (issue 5): server / direct <= 1.2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, start_ogcflow  # noqa: E402
from ogcflow.eo.config import ENV, StepConfig  # noqa: E402
from ogcflow.eo.dataserver import DataServer  # noqa: E402
from ogcflow.eo.scenes import generate  # noqa: E402

STEP = [sys.executable, "-m", "ogcflow.eo"]


def direct(items: list[str], aoi: str, cfg: str) -> float:
    """The four steps as commands, items two at a time; seconds."""
    env = {**os.environ, ENV: cfg}

    def one(item: str) -> str:
        work = Path(tempfile.mkdtemp(prefix="wb-direct-"))
        for band in ("green", "nir08"):
            (work / band).mkdir()
            subprocess.run([*STEP, "crop", "--input-item", item, "--aoi", aoi, "--epsg", "EPSG:4326", "--band",
                            band], cwd=work / band, env=env, check=True, capture_output=True)
        subprocess.run([*STEP, "norm_diff", "green/crop_green.tif", "nir08/crop_nir08.tif"], cwd=work, env=env,
                       check=True, capture_output=True)
        subprocess.run([*STEP, "otsu", "norm_diff.tif"], cwd=work, env=env, check=True, capture_output=True)
        return str(work / "otsu.tif")

    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        masks = list(pool.map(one, items))
    out = Path(tempfile.mkdtemp(prefix="wb-direct-stac-"))
    args = [w for item, mask in zip(items, masks, strict=True) for w in ("--input-item", item, "--water-body", mask)]
    subprocess.run([*STEP, "stac", *args], cwd=out, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def in_process(items: list[str], aoi: str, cfg: StepConfig) -> float:
    """The four steps as functions of one warm Python process, items two at a time: the floor; seconds."""
    from ogcflow.eo import steps

    def one(item: str) -> Path:
        work = Path(tempfile.mkdtemp(prefix="wb-inproc-"))
        crops = []
        for band in ("green", "nir08"):
            (work / band).mkdir()
            crops.append(steps.crop(item, aoi, "EPSG:4326", band, work / band, cfg))
        return steps.otsu(steps.norm_diff(crops[0], crops[1], work), work)

    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        masks = list(pool.map(one, items))
    steps.stac(items, masks, Path(tempfile.mkdtemp(prefix="wb-inproc-stac-")), cfg)
    return time.perf_counter() - started


def through_server(client: httpx.Client, items: list[str], aoi: str, process: str = "water-bodies"
                   ) -> tuple[float, dict]:
    body = {"inputs": {"aoi": aoi, "epsg": "EPSG:4326", "bands": ["green", "nir08"], "stac_items": items}}
    started = time.perf_counter()
    resp = client.post(f"/processes/{process}/execution", json=body,
                       headers={"Prefer": "respond-async;return=representation"})
    assert resp.status_code == 201, resp.text
    url = resp.headers["Location"]
    while True:
        status = client.get(url).json()
        if status["status"] not in ("accepted", "running"):
            break
        time.sleep(0.1)
    took = time.perf_counter() - started
    assert status["status"] == "successful", status
    return took, client.get(f"{url}/results").json()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--items", default="ABC", help="demo scenes per job (A, B, C: see ogcflow.eo.scenes)")
    ap.add_argument("--size", choices=("small", "full"), default="small",
                    help="full: two full-size Landsat-like items and the notebook's AOI (bench/water_bodies_full.py)")
    ap.add_argument("--skip-prefect", action="store_true", help="--size full: no Prefect engine run")
    ap.add_argument("--keep-http-cache", action="store_true",
                    help="--size full: the floor and (a) keep GDAL's HTTP cache from one run to the next (the "
                         "same items every run; by default it is emptied before each, as a new job finds it)")
    args = ap.parse_args()
    if args.size == "full":
        from bench.water_bodies_full import main as full

        full(args.runs, args.skip_prefect, args.keep_http_cache)
        return
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("start an S3 server first (bench/run.sh water_bodies does)")
    work = WORK / f"water-bodies-{int(time.time())}"
    index = generate(work / "scenes")
    data = DataServer(work / "scenes").start()
    items = [f"{data.url}/{index['items'][k]['path']}" for k in args.items]
    aoi = index["aoi"]
    step_cfg = StepConfig(data_dir=work, allow_private_urls=True)
    cfg = step_cfg.to_env()
    svc = start_ogcflow(work, api_workers=1, workers=2, env={
        "OGCFLOW_RESULTS_URL": f"s3://bench-{uuid.uuid4().hex[:8]}", "OGCFLOW_ALLOW_PRIVATE_URLS": "true"})
    try:
        with httpx.Client(base_url=svc.url, timeout=120) as client:
            _, fc = through_server(client, items, aoi)  # warm-up (bucket, caches)
            direct(items, aoi, cfg)
            in_process(items, aoi, step_cfg)
            server_times, direct_times, floor_times = [], [], []
            for _ in range(args.runs):  # interleaved, so that all see the same machine
                server_times.append(through_server(client, items, aoi)[0])
                direct_times.append(direct(items, aoi, cfg))
                floor_times.append(in_process(items, aoi, step_cfg))
    finally:
        svc.stop()
        data.stop()
    fc = fc.get("stac_catalog", fc)  # the results document: the output qualified (value, mediaType), or raw
    fc = fc.get("value", fc)
    pixels = sum(f["properties"]["proj:shape"][0] * f["properties"]["proj:shape"][1] for f in fc["features"])
    mp = pixels / 1e6
    srv, dct = statistics.median(server_times), statistics.median(direct_times)
    floor = statistics.median(floor_times)
    print(f"water-bodies, {len(items)} items x 2 bands, {mp:.3f} megapixels of AOI per job, {args.runs} runs")
    print(f"{'path':52} {'s/job':>7} {'s/MP':>7}")
    print(f"{'the four steps run directly (2 at a time)':52} {dct:7.2f} {dct / mp:7.2f}")
    print(f"{'the four steps as functions in one warm process':52} {floor:7.2f} {floor / mp:7.2f}")
    print(f"{'ogcflow: API + engine + CWL + S3 upload, polled':52} {srv:7.2f} {srv / mp:7.2f}")
    print(f"\nserver / direct commands: {srv / dct:.2f}x   (target <= 1.2)")
    print(f"server / warm in-process floor: {srv / floor:.2f}x")


if __name__ == "__main__":
    main()
