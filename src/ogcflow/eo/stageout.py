"""A CWL output Directory holding a STAC catalog, staged out to results storage as a job's result.

Layout under the job (``s3://<bucket>/<job>/...`` or the local results directory), collection id = job id:

    <job>/catalog.json                      the catalog, one child: the collection
    <job>/<job>/collection.json             the collection of the job's items
    <job>/<job>/<item>/<item>.json          each item, ``collection`` = the job id
    <job>/<job>/<item>/<asset file>         each asset, its href rewritten to its storage URL

The job's output value is a FeatureCollection of the items (``id`` = the job id, items in the catalog's
order, which is the input order), with the storage extension's fields on every asset when the storage is
object storage.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path
from typing import Any

from ogcflow.errors import ProcessError
from ogcflow.processes.base import JobContext, OutputValue
from ogcflow.storage import ResultStorage, make_key

STORAGE_EXT = "https://stac-extensions.github.io/storage/v1.0.0/schema.json"
GEOJSON = "application/geo+json"


def is_stac_catalog(directory: Path) -> bool:
    return (Path(directory) / "catalog.json").is_file()


def _media(path: Path, declared: str | None) -> str:
    return declared or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProcessError(f"the output STAC catalog is unreadable: {what} ({exc})") from None
    if not isinstance(data, dict):
        raise ProcessError(f"the output STAC catalog is unreadable: {what} is not a JSON object")
    return data


def _items(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The catalog's items in link order (sub-catalogs followed), as written: no STAC version migration."""
    found: list[tuple[Path, dict[str, Any]]] = []

    def walk(path: Path, depth: int) -> None:
        node = _read(path, path.name)
        for link in node.get("links", []):
            href = link.get("href") if isinstance(link, dict) else None
            if not isinstance(href, str) or "://" in href or link.get("rel") not in ("item", "child"):
                continue
            target = (path.parent / href).resolve()
            if directory not in target.parents:
                raise ProcessError(f"the output STAC catalog links outside itself: {href}")
            if link["rel"] == "item":
                found.append((target, _read(target, href)))
            elif depth < 8:
                walk(target, depth + 1)

    walk(directory / "catalog.json", 0)
    return found


def stage_out_catalog(directory: Path, job_id: str, storage: ResultStorage) -> dict[str, Any]:
    """Upload the catalog's items and assets under the job; return the FeatureCollection of the items."""
    directory = Path(directory).resolve()
    fields = storage.asset_fields()
    collection_key = f"{job_id}/{job_id}/collection.json"
    catalog_url, collection_url = storage.url(f"{job_id}/catalog.json"), storage.url(collection_key)
    features: list[dict[str, Any]] = []
    for item_path, data in _items(directory):
        item_id = str(data.get("id", ""))
        base = f"{job_id}/{item_id}"
        try:
            make_key(job_id, base)
        except ValueError:
            raise ProcessError(f"the STAC item id '{item_id}' cannot name a storage folder "
                               "(letters, digits, '.', '_', '-')") from None
        for key, asset in (data.get("assets") or {}).items():
            href = asset.get("href", "")
            source = (item_path.parent / href).resolve() if "://" not in href else None
            if source is None or not source.is_file() or directory not in source.parents:
                raise ProcessError(f"asset '{key}' of item '{item_id}' is not a file of the catalog")
            stored = storage.put_file(job_id, f"{base}/{source.name}", source, _media(source, asset.get("type")))
            asset["href"] = storage.url(stored)
            asset.update(fields)
        if fields and STORAGE_EXT not in data.setdefault("stac_extensions", []):
            data["stac_extensions"].append(STORAGE_EXT)
        data["collection"] = job_id
        item_key = f"{job_id}/{base}/{item_id}.json"
        data["links"] = [
            {"rel": "self", "href": storage.url(item_key), "type": GEOJSON},
            {"rel": "root", "href": catalog_url, "type": "application/json"},
            {"rel": "parent", "href": collection_url, "type": "application/json"},
            {"rel": "collection", "href": collection_url, "type": "application/json"},
        ]
        storage.put_bytes(job_id, item_key.split("/", 1)[1], json.dumps(data, indent=1).encode(), GEOJSON)
        features.append(data)
    stac_version = features[0].get("stac_version", "1.1.0") if features else "1.1.0"
    collection = _collection(job_id, features, catalog_url, collection_url, stac_version)
    storage.put_bytes(job_id, collection_key.split("/", 1)[1], json.dumps(collection, indent=1).encode(),
                      "application/json")
    root = {"type": "Catalog", "stac_version": stac_version, "id": job_id,
            "description": f"results of job {job_id}",
            "links": [{"rel": "self", "href": catalog_url, "type": "application/json"},
                      {"rel": "root", "href": catalog_url, "type": "application/json"},
                      {"rel": "child", "href": collection_url, "type": "application/json"}]}
    storage.put_bytes(job_id, "catalog.json", json.dumps(root, indent=1).encode(), "application/json")
    return {"type": "FeatureCollection", "id": job_id, "features": features}


def _collection(job_id: str, features: list[dict[str, Any]], catalog_url: str, collection_url: str,
                stac_version: str) -> dict[str, Any]:
    bboxes = [f["bbox"] for f in features if f.get("bbox")]
    bbox = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes),
            max(b[3] for b in bboxes)] if bboxes else [-180.0, -90.0, 180.0, 90.0]
    times = sorted(str(f["properties"]["datetime"]) for f in features
                   if (f.get("properties") or {}).get("datetime"))
    return {
        "type": "Collection", "stac_version": stac_version, "id": job_id,
        "title": "Processing results", "description": f"the items produced by job {job_id}",
        "license": "proprietary",
        "extent": {"spatial": {"bbox": [bbox]},
                   "temporal": {"interval": [[times[0], times[-1]] if times else [None, None]]}},
        "links": [{"rel": "self", "href": collection_url, "type": "application/json"},
                  {"rel": "root", "href": catalog_url, "type": "application/json"},
                  {"rel": "parent", "href": catalog_url, "type": "application/json"},
                  *({"rel": "item", "href": f["links"][0]["href"], "type": GEOJSON} for f in features)],
    }


def stac_output(name: str, value: Any, ctx: JobContext) -> OutputValue | None:
    """CWL output handler: a Directory holding a STAC catalog becomes the job's FeatureCollection, its files
    staged out to results storage."""
    if not (isinstance(value, dict) and value.get("class") == "Directory" and value.get("path")
            and ctx.storage is not None and is_stac_catalog(Path(value["path"]))):
        return None
    ctx.progress(95, "staging the STAC catalog out")
    return OutputValue(value=stage_out_catalog(Path(value["path"]), ctx.job_id, ctx.storage), media_type=GEOJSON)
