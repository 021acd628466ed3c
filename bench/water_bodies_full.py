"""Water-bodies at the size users run it: two full-size Landsat-like items (``ogcflow.eo.fullscenes``), the
EO notebook's AOI, served over HTTP with byte ranges, in one run (``bench/run.sh water_bodies --size full``):

  floor  reading and decompressing just the AOI's tiles of both bands, NDWI, Otsu, writing the two masks
  (a)    the four steps as plain function calls in one warm process (items two at a time)
  (b)    the four step commands run directly (items two at a time)
  (c)    the job through the API: local engine, cwltool, results staged out to S3 (SeaweedFS)
  (d)    the same on the Prefect engine (when PREFECT_API_URL and OGCFLOW_TEST_POSTGRES_URL are set)

For each: median wall time, CPU time (the whole process tree), bytes read from the item server, bytes
written to S3, peak RSS of the job's processes (processes that were not there before the run: their RSS
summed, which counts pages a forked job shares with its worker), each with its ratio to (a).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import WORK, Service, start_ogcflow  # noqa: E402
from ogcflow.eo.config import StepConfig  # noqa: E402
from ogcflow.eo.dataserver import DataServer  # noqa: E402
from ogcflow.eo.fullscenes import generate_full  # noqa: E402


@dataclass
class Figures:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    read: list[int] = field(default_factory=list)
    written: list[int] = field(default_factory=list)
    rss: list[int] = field(default_factory=list)

    def median(self, name: str) -> float:
        values = getattr(self, name)
        return float(statistics.median(values)) if values else float("nan")


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


class Sampler:
    """Peak summed RSS of the processes of ``pid``'s tree that appear while it runs (every 20 ms)."""

    def __init__(self, pid: int, include_root: bool = False) -> None:
        self.pid, self.include_root = pid, include_root
        self.before = set() if include_root else {p.pid for p in _tree(pid)}
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0
            for p in _tree(self.pid):
                if p.pid in self.before:
                    continue
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def aoi_tile_bytes(items: list[str], aoi: str, bands: tuple[str, ...] = ("green", "nir08")) -> int:
    """Compressed bytes of the full-resolution tiles the AOI's box touches, over the items and bands."""
    import rasterio

    minx, miny, maxx, maxy = (float(v) for v in aoi.split(","))
    total = 0
    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        for ref in items:
            total += _item_tile_bytes(ref, band_names=bands, aoi=(minx, miny, maxx, maxy))
    return total


def _item_tile_bytes(ref: str, band_names: tuple[str, ...], aoi: tuple[float, float, float, float]) -> int:
    import pystac
    import rasterio
    from pyproj import Transformer
    from rasterio.windows import from_bounds

    minx, miny, maxx, maxy = aoi
    total = 0
    for _ in (ref,):
        item = pystac.Item.from_file(ref)
        for band in band_names:
            with rasterio.open(item.assets[band].get_absolute_href()) as src:
                t = Transformer.from_crs(4326, src.crs, always_xy=True)
                x1, y1 = t.transform(minx, miny)
                x2, y2 = t.transform(maxx, maxy)
                win = from_bounds(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2), src.transform)
                win = win.intersection(rasterio.windows.Window(0, 0, src.width, src.height))
                bh, bw = src.block_shapes[0]
                for i in range(int(win.row_off) // bh, int(win.row_off + win.height - 1e-9) // bh + 1):
                    for j in range(int(win.col_off) // bw, int(win.col_off + win.width - 1e-9) // bw + 1):
                        total += src.block_size(1, i, j)
    return total


def forget_http_cache() -> bool:
    """Empty GDAL's cache of HTTP reads (/vsicurl/: file sizes, headers, the regions read) in this process, as
    a new job's items would find it (False when the GDAL library of rasterio cannot be found).

    Without it, a warm process that reads the same items run after run gets their COG headers and the
    regions around them from that cache: 0.02 instead of 0.09 s for the crop of the small item here, which
    no job of new items gets (and no step process, which starts with an empty cache)."""
    import ctypes
    import ctypes.util
    import glob

    import rasterio

    found = glob.glob(os.path.join(os.path.dirname(rasterio.__file__) + ".libs", "libgdal*.so*"))
    name = found[0] if found else ctypes.util.find_library("gdal")
    if not name:
        return False
    ctypes.CDLL(name).VSICurlClearCache()  # the library rasterio loaded: the same handle, the same cache
    return True


_A_CHILD = r"""
import json, sys, time, resource, tempfile
from pathlib import Path
sys.path.insert(0, {root!r})
from bench.bench_water_bodies import in_process
from bench.water_bodies_full import floor, forget_http_cache
from ogcflow.eo.config import StepConfig
cfg = StepConfig(data_dir=Path({data!r}), allow_private_urls=True)
items, aoi = {items!r}, {aoi!r}
for line in sys.stdin:
    run = floor if line.strip() == "floor" else in_process
    if not {keep_cache!r} and not forget_http_cache():
        print("GDAL's library not found: the warm runs keep their HTTP cache", file=sys.stderr)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    took = run(items, aoi, cfg)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    print(json.dumps({{"wall": took, "cpu": cpu}}), flush=True)
"""


def floor(items: list[str], aoi: str, cfg: StepConfig) -> float:
    """Just the AOI's window of both bands of each item read, NDWI, Otsu, the mask written; seconds."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import pystac
    import rasterio
    from pyproj import Transformer
    from rasterio.windows import from_bounds
    from skimage.filters import threshold_otsu

    minx, miny, maxx, maxy = (float(v) for v in aoi.split(","))
    out = Path(tempfile.mkdtemp(prefix="wb-floor-"))

    def one(ref: str) -> None:
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            _one(ref)

    def _one(ref: str) -> None:
        item = pystac.Item.from_file(ref)
        arrays, profile = [], {}
        for band in ("green", "nir08"):
            with rasterio.open(item.assets[band].get_absolute_href()) as src:
                t = Transformer.from_crs(4326, src.crs, always_xy=True)
                x1, y1 = t.transform(minx, miny)
                x2, y2 = t.transform(maxx, maxy)
                win = from_bounds(min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2), src.transform)
                win = win.round_offsets().round_lengths().intersection(
                    rasterio.windows.Window(0, 0, src.width, src.height))
                arrays.append(src.read(1, window=win).astype("float32"))
                profile = {"driver": "COG", "compress": "lzw", "blocksize": 512, "crs": src.crs, "count": 1,
                           "transform": src.window_transform(win), "width": int(win.width),
                           "height": int(win.height), "dtype": "uint8", "nodata": 0}
        with np.errstate(divide="ignore", invalid="ignore"):
            ndwi = (arrays[0] - arrays[1]) / (arrays[0] + arrays[1])
        finite = ndwi[np.isfinite(ndwi)]
        threshold = threshold_otsu(finite)
        with np.errstate(invalid="ignore"):
            mask = (ndwi > threshold).astype("uint8")
        with rasterio.open(out / f"{item.id}.tif", "w", **profile) as dst:
            dst.write(mask, 1)

    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(one, items))
    return time.perf_counter() - started


#: what each tool of the no-op package does instead of its step (the same outputs, no work)
_NOOP_COMMANDS = {
    "crop": ": > crop.tif", "norm_diff": ": > norm_diff.tif", "otsu": ": > otsu.tif",
    "stac": "printf '%s' '{\"type\": \"Catalog\", \"id\": \"noop\", \"stac_version\": \"1.0.0\", "
            "\"description\": \"no items\", \"links\": []}' > catalog.json",
}


def noop_package() -> str:
    """The shipped water-bodies package with tools that do nothing (each writes an empty output, the STAC step
    an empty catalog, all in their sandboxes): what the job's path costs (API, engine, cwltool's scheduling of
    the same 9 tools in the same scatter, a sandbox and a process per tool, the stage-out) without the work."""
    import re

    from ogcflow.eo.packages import __file__ as packages

    text = (Path(packages).parent / "water-bodies.cwl").read_text(encoding="utf-8")
    text = text.replace("    id: water-bodies\n", "    id: water-bodies-noop\n", 1)
    text = re.sub(r"    hints:\n      DockerRequirement:\n        dockerPull: [^\n]+\n", "", text)
    for tool, command in _NOOP_COMMANDS.items():
        text = re.sub(rf"(  - class: CommandLineTool\n    id: {tool}\n(?:.*\n)*?)    baseCommand: [^\n]+\n",
                      lambda m, c=command: m.group(1) + f"    baseCommand: [sh, -c, {json.dumps(c)}]\n", text, count=1)
    if text.count("baseCommand: [sh, -c,") != len(_NOOP_COMMANDS):
        raise SystemExit("the shipped package changed shape: update bench/water_bodies_full.noop_package")
    return text


def _s3_bytes(results_url: str, job_id: str) -> int:
    import s3fs

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": os.environ["AWS_ENDPOINT_URL"]})
    bucket = results_url.removeprefix("s3://").rstrip("/")
    return sum(int(info.get("size", 0)) for info in fs.find(f"{bucket}/{job_id}", detail=True).values())


def _server_run(svc: Service, client: httpx.Client, items: list[str], aoi: str, data: DataServer,
                results_url: str, fig: Figures, process: str = "water-bodies") -> dict[str, Any]:
    from bench.bench_water_bodies import through_server

    before = _tree(svc.proc.pid)
    cpu0, read0 = _cpu(before), data.traffic.bytes
    with Sampler(svc.proc.pid) as sampler:
        took, results = through_server(client, items, aoi, process)
    time.sleep(0.2)  # job processes reaped, their CPU in their parents' children times
    fig.wall.append(took)
    fig.cpu.append(_cpu(_tree(svc.proc.pid)) - cpu0)
    fig.read.append(data.traffic.bytes - read0)
    jobs = client.get("/jobs", params={"limit": 1}).json()["jobs"]
    fig.written.append(_s3_bytes(results_url, jobs[0]["jobID"]))
    fig.rss.append(sampler.peak)
    return results


def main(runs: int, skip_prefect: bool, keep_http_cache: bool = False) -> None:
    from bench.bench_water_bodies import direct

    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("start an S3 server first (bench/run.sh water_bodies does)")
    work = WORK / f"water-bodies-full-{int(time.time())}"
    scenes = WORK / "full-scenes"  # generated once per checkout (about 340 MB; never committed)
    if (scenes / "index.json").is_file():
        index = json.loads((scenes / "index.json").read_text())
    else:
        print(f"generating the full-size items in {scenes} ...", flush=True)
        started = time.perf_counter()
        index = generate_full(scenes)
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    data = DataServer(scenes).start()
    items = [f"{data.url}/{entry['path']}" for entry in index["items"].values()]
    aoi = index["aoi"]
    cfg = StepConfig(data_dir=work, allow_private_urls=True)
    tiles = aoi_tile_bytes(items, aoi)
    figs = {k: Figures() for k in ("floor", "a", "b", "c", "d", "e")}

    # the floor and (a) run without the S3 credentials, as the job's steps do (rasterio would make an AWS
    # session, ~10 ms of CPU, for every Env when they are in the environment)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    child = subprocess.Popen([sys.executable, "-c", _A_CHILD.format(
        root=str(Path(__file__).resolve().parent.parent), data=str(work), items=items, aoi=aoi,
        keep_cache=keep_http_cache)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=child_env)
    assert child.stdin is not None and child.stdout is not None

    def in_child(what: str, fig: Figures | None) -> None:
        assert child.stdin is not None and child.stdout is not None
        read0 = data.traffic.bytes
        with Sampler(child.pid, include_root=True) as sampler:
            child.stdin.write(what + "\n")
            child.stdin.flush()
            answer = json.loads(child.stdout.readline())
        if fig is not None:
            fig.wall.append(answer["wall"])
            fig.cpu.append(answer["cpu"])
            fig.read.append(data.traffic.bytes - read0)
            fig.rss.append(sampler.peak)

    def commands(fig: Figures) -> None:
        import resource

        r0, read0 = resource.getrusage(resource.RUSAGE_CHILDREN), data.traffic.bytes
        fig.wall.append(direct(items, aoi, cfg.to_env()))
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        fig.cpu.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        fig.read.append(data.traffic.bytes - read0)
        fig.rss.append(r1.ru_maxrss * 1024)  # the largest step command (not a sum)

    servers: list[tuple[str, Service, str]] = []
    try:
        results_url = f"s3://bench-{uuid.uuid4().hex[:8]}"
        admin = uuid.uuid4().hex  # to deploy the no-op package (jobs run anonymously, as for the others)
        local = start_ogcflow(work / "local", api_workers=1, workers=2, env={
            "OGCFLOW_RESULTS_URL": results_url, "OGCFLOW_ALLOW_PRIVATE_URLS": "true", "OGCFLOW_ADMIN_TOKEN": admin})
        servers.append(("c", local, results_url))
        if not skip_prefect and os.environ.get("PREFECT_API_URL") and os.environ.get("OGCFLOW_TEST_POSTGRES_URL"):
            from bench.bench_prefect import new_db

            url = f"s3://bench-{uuid.uuid4().hex[:8]}"
            prefect = start_ogcflow(work / "prefect", api_workers=1, workers=2, env={
                "OGCFLOW_RESULTS_URL": url, "OGCFLOW_ALLOW_PRIVATE_URLS": "true", "OGCFLOW_ENGINE": "prefect",
                "OGCFLOW_DATABASE_URL": new_db(), "OGCFLOW_PREFECT_WORK_POOL": "bench-" + uuid.uuid4().hex[:6]})
            servers.append(("d", prefect, url))
        clients = {key: httpx.Client(base_url=svc.url, timeout=600) for key, svc, _ in servers}
        from bench.bench_water_bodies import through_server

        deployed = clients["c"].post("/processes", content=noop_package(),
                                     headers={"Content-Type": "application/cwl+yaml",
                                              "Authorization": f"Bearer {admin}"})
        if deployed.status_code != 201:
            raise SystemExit(f"could not deploy the no-op package: {deployed.status_code} {deployed.text[:300]}")
        for key, _svc, _url in servers:  # warm-up: buckets, caches, the first job of each worker
            through_server(clients[key], items, aoi)
        through_server(clients["c"], items, aoi, "water-bodies-noop")
        in_child("a", None)
        in_child("floor", None)
        steps: list[tuple[str, Callable[[], object]]] = [
            ("floor", lambda: in_child("floor", figs["floor"])), ("a", lambda: in_child("a", figs["a"])),
            ("b", lambda: commands(figs["b"]))]
        for key, svc, url in servers:
            steps.append((key, lambda key=key, svc=svc, url=url: _server_run(  # type: ignore[misc]
                svc, clients[key], items, aoi, data, url, figs[key])))
        steps.append(("e", lambda: _server_run(local, clients["c"], items, aoi, data, results_url, figs["e"],
                                               "water-bodies-noop")))
        for n in range(runs):  # interleaved, so that all see the same machine
            for _key, step in steps:
                step()
            print(f"  run {n + 1}/{runs} done", flush=True)
    finally:
        child.kill()
        for _key, svc, _url in servers:
            svc.stop()
        data.stop()
    report(figs, tiles, runs)
    print("the floor and (a) " + ("kept GDAL's HTTP cache from run to run (--keep-http-cache)" if keep_http_cache
                                  else "started each run with GDAL's HTTP cache empty, as a new job's items find it"))


def report(figs: dict[str, Figures], tiles: int, runs: int) -> None:
    labels = {"floor": "floor: AOI tiles read, NDWI, Otsu, masks written", "a": "(a) steps as functions, warm",
              "b": "(b) step commands run directly", "c": "(c) API, local engine, S3",
              "d": "(d) API, Prefect engine, S3", "e": "(e) as (c), tools that do nothing"}
    a = figs["a"]
    print(f"\nwater-bodies, 2 full-size items (7741 x 7841), the notebook's AOI; medians of {runs} runs")
    print(f"compressed size of the AOI's tiles (both bands, both items): {tiles / 1e6:.1f} MB\n")
    print(f"{'':50} {'wall s':>7} {'x(a)':>5} {'cpu s':>6} {'x(a)':>5} {'read MB':>8} {'x tiles':>7} "
          f"{'S3 MB':>6} {'RSS MB':>7}")
    for key, label in labels.items():
        f = figs[key]
        if not f.wall:
            continue
        print(f"{label:50} {f.median('wall'):7.2f} {f.median('wall') / a.median('wall'):5.2f} "
              f"{f.median('cpu'):6.2f} {f.median('cpu') / a.median('cpu'):5.2f} {f.median('read') / 1e6:8.1f} "
              f"{f.median('read') / tiles:7.2f} {f.median('written') / 1e6 if f.written else 0:6.1f} "
              f"{f.median('rss') / 1e6:7.0f}")
    print("\ntargets: (c) <= 2.0 s, (d) <= 2.5 s, both <= 1.2x (a); (a) <= 2x floor; read <= 1.5x tiles; "
          "RSS <= 600 MB")
    print("RSS: (a)/floor the warm process; (b) the largest step command; (c)/(d) the job's processes summed")
    if figs["e"].wall and figs["c"].wall:
        fixed, work = figs["e"].median("wall"), figs["a"].median("wall")
        print(f"(e): the job's path without the work costs {fixed:.2f} s, {fixed / work:.2f}x (a) by itself "
              f"(with the work, (c) - (e) = {figs['c'].median('wall') - fixed:.2f} s)")
