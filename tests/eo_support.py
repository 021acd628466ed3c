"""Synthetic scenes served over HTTP, a private S3 server, a Planetary Computer stand-in, and IoU."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ogcflow.eo.dataserver import DataServer, RangeHandler

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Scenes:
    """The demo scenes (``ogcflow.eo.scenes``) and the URL they are served at."""

    root: Path
    index: dict[str, Any]
    url: str

    def item_url(self, key: str) -> str:
        return f"{self.url}/{self.index['items'][key]['path']}"

    def item_id(self, key: str) -> str:
        return self.index["items"][key]["id"]

    def truth(self, key: str) -> list[Any]:
        from shapely.geometry import shape

        data = json.loads((self.root / self.index["items"][key]["truth"]).read_text())
        return [shape(f["geometry"]) for f in data["features"]]


def iou(mask_path: str | Path, truth: list[Any]) -> float:
    """IoU of the water pixels of a mask (value 1) and the truth polygons rasterized on the mask's grid."""
    import rasterio
    from rasterio.features import rasterize

    with rasterio.open(mask_path) as src:
        water = src.read(1) == 1
        expected = rasterize([(p, 1) for p in truth], out_shape=water.shape, transform=src.transform, fill=0,
                             dtype="uint8").astype(bool)
    union = (water | expected).sum()
    return float((water & expected).sum() / union) if union else 1.0


def start_s3(directory: Path) -> dict[str, str]:
    """Start SeaweedFS with the project's script; returns the AWS_* variables it printed."""
    # SeaweedFS takes AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY of its environment as its admin identity: another
    # server's keys there would win over the ones the script makes
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AWS_")}, "OGCFLOW_S3_DIR": str(directory)}
    out = subprocess.run([str(ROOT / "scripts" / "s3.sh"), "start"], env=env, check=True, capture_output=True,
                         text=True, timeout=120).stdout
    values: dict[str, str] = {}
    for line in out.splitlines():
        for word in line.removeprefix("export ").split():
            key, _, value = word.partition("=")
            values[key] = value
    return values


def stop_s3(directory: Path) -> None:
    subprocess.run([str(ROOT / "scripts" / "s3.sh"), "stop"], env={**os.environ, "OGCFLOW_S3_DIR": str(directory)},
                   check=False, timeout=60)


@dataclass
class PlanetaryComputer:
    """Stand-in of Planetary Computer: blob reads need a ``sig=`` (409 otherwise, like Azure), tokens come from
    ``/api/sas/v1/token/<collection>``."""

    root: Path
    lifetime: timedelta = timedelta(minutes=45)
    token_requests: list[str] = field(default_factory=list)
    unsigned_reads: list[str] = field(default_factory=list)
    server: DataServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> PlanetaryComputer:
        pc = self

        class Handler(RangeHandler):
            def _serve(self, head: bool) -> None:
                path, _, query = self.path.partition("?")
                if path.startswith("/api/sas/v1/token/"):
                    with pc.lock:
                        pc.token_requests.append(path.rsplit("/", 1)[1])
                    expiry = (datetime.now(UTC) + pc.lifetime).strftime("%Y-%m-%dT%H:%M:%SZ")
                    body = json.dumps({"token": "st=2023&se=2099&sp=rl&sv=2021&sr=c&sig=c2lnbmVk",
                                       "msft:expiry": expiry}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if path.endswith(".tif") and "sig=" not in query:
                    with pc.lock:
                        pc.unsigned_reads.append(path)
                    body = b"<Error><Code>PublicAccessNotPermitted</Code></Error>"
                    self.send_response(409)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.path = path
                super()._serve(head)

        self.server = DataServer(self.root, handler=Handler).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")

    def stop(self) -> None:
        if self.server:
            self.server.stop()
