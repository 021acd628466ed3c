"""A CWL output Directory holding a STAC catalog, staged out to results storage as a job's result.

Layout under the job (``s3://<bucket>/<job>/...`` or the local results directory), collection id = job id:

    <job>/catalog.json                      the catalog, one child: the collection
    <job>/<job>/collection.json             the collection of the job's items
    <job>/<job>/<item>/<item>.json          each item, ``collection`` = the job id
    <job>/<job>/<item>/<asset file>         each asset
    <job>/<job>/<item>/quicklook.png        each item's ``thumbnail`` (a PNG of its first raster asset)

The stored catalog is self-contained (pystac's ``SELF_CONTAINED``): no ``self`` links, every link and asset
href relative, so it opens wherever it is read from: the bucket, a copy on disk, or the API
(``/jobs/<job>/files/catalog.json``, which STAC Browser can be pointed at). Each asset also lists, with the
alternate-assets extension, its storage URL (key ``s3`` or ``file``, with ``storage:refs`` to the bucket's
scheme of the storage extension v2.0.0) and its URL through the API (key ``http`` or ``https``, the scheme
of the API's URL). Links the package's items carry to elsewhere (e.g. ``derived_from`` their input item) are
kept.

The job's output value is a FeatureCollection of the items (``id`` = the job id, items in the catalog's
order, which is the input order) with absolute hrefs: each asset's ``href`` is its storage URL, its
alternates its URL through the API, links are storage URLs.
"""

from __future__ import annotations

import json
import mimetypes
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ogcflow.eo.quicklook import PNG, render
from ogcflow.errors import ProcessError
from ogcflow.jobs.results import file_href
from ogcflow.processes.base import JobContext, OutputValue
from ogcflow.storage import ResultStorage, make_key

STORAGE_EXT = "https://stac-extensions.github.io/storage/v2.0.0/schema.json"
STORAGE_V1_EXT = "https://stac-extensions.github.io/storage/v1.0.0/schema.json"
#: uploads (and quicklooks) of a stage-out at once: they mostly wait on the storage
STAGE_THREADS = 4
ALTERNATE_EXT = "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json"
GEOJSON = "application/geo+json"
QUICKLOOK = "quicklook.png"
#: the links of an item inside its catalog, made again by the stage-out
STRUCTURAL = ("self", "root", "parent", "collection", "child", "item")


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
    seen: set[Path] = set()

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
                if target not in seen:  # an item linked twice (an input item given twice) is one item
                    seen.add(target)
                    found.append((target, _read(target, href)))
            elif depth < 8:
                walk(target, depth + 1)

    walk(directory / "catalog.json", 0)
    return found


def _assets(data: dict[str, Any], item_path: Path, directory: Path) -> dict[str, Path]:
    """The asset files of one item of the catalog (each must be a file inside it)."""
    found: dict[str, Path] = {}
    for key, asset in (data.get("assets") or {}).items():
        href = asset.get("href", "") if isinstance(asset, dict) else ""
        source = (item_path.parent / href).resolve() if isinstance(href, str) and "://" not in href else None
        if source is None or not source.is_file() or directory not in source.parents:
            raise ProcessError(f"asset '{key}' of item '{data.get('id', '')}' is not a file of the catalog")
        found[key] = source
    return found


def _item(data: dict[str, Any]) -> Any:
    """The package's item as a pystac Item (as written: no STAC version migration), without its links inside
    the catalog (they are made again) or relative links to elsewhere (they would not resolve any more)."""
    import pystac

    data = {**data, "links": [link for link in data.get("links", [])
                              if isinstance(link, dict) and link.get("rel") not in STRUCTURAL
                              and "://" in str(link.get("href", ""))]}
    try:
        return pystac.Item.from_dict(data, migrate=False, preserve_dict=False)
    except (KeyError, TypeError, ValueError, pystac.STACError) as exc:
        raise ProcessError(f"the output STAC item '{data.get('id', '')}' is not a STAC item ({exc})") from None


def _quicklook(item: Any, files: dict[str, Path], workdir: Path) -> Path | None:
    """A PNG of the item's first raster asset (data role first), unless the item has a thumbnail already."""
    if any("thumbnail" in (asset.roles or []) for asset in item.assets.values()):
        return None
    rasters = [key for key, asset in item.assets.items()
               if "tiff" in (asset.media_type or "") or files[key].suffix.lower() in (".tif", ".tiff")]
    rasters.sort(key=lambda key: "data" not in (item.assets[key].roles or []))
    for key in rasters:
        png = render(files[key])
        if png is not None:
            target = workdir / f"{item.id}-{QUICKLOOK}"
            target.write_bytes(png)
            return target
    return None


def stage_out_catalog(directory: Path, job_id: str, storage: ResultStorage, base_url: str = "") -> dict[str, Any]:
    """Upload the catalog's items and assets under the job, each item with a quicklook; return the
    FeatureCollection of the items (``base_url``: the API's, for the assets' alternate hrefs)."""
    import tempfile

    import pystac
    from pystac.utils import make_relative_href

    directory = Path(directory).resolve()
    schemes = storage.storage_schemes()
    job_url = storage.url(f"{job_id}/catalog.json").rsplit("/", 1)[0]
    api_scheme = urlsplit(base_url).scheme if base_url else ""
    alternates: dict[str, dict[str, str]] = {}  # storage URL of an asset -> its href through the API

    def stage(entry: tuple[Path, dict[str, Any]], tmp: Path) -> Any:
        """One item: its quicklook made, its assets uploaded, its hrefs and extensions set."""
        item_path, data = entry
        item = _item(data)
        folder = f"{job_id}/{item.id}"
        try:
            make_key(job_id, folder)
        except ValueError:
            raise ProcessError(f"the STAC item id '{item.id}' cannot name a storage folder "
                               "(letters, digits, '.', '_', '-')") from None
        files = _assets(data, item_path, directory)
        quicklook = _quicklook(item, files, tmp)
        if quicklook is not None:
            key = "thumbnail" if "thumbnail" not in item.assets else "quicklook"
            item.add_asset(key, pystac.Asset(href=QUICKLOOK, media_type=PNG, roles=["thumbnail"],
                                             title="Quicklook"))
            files[key] = quicklook
        for key, asset in item.assets.items():
            source = files[key]
            name = QUICKLOOK if source == quicklook else source.name
            media = _media(source, asset.media_type)
            stored = storage.put_file(job_id, f"{folder}/{name}", source, media)
            asset.href, asset.media_type = storage.url(stored), media
            if base_url:
                alternates[asset.href] = {"href": file_href(base_url, job_id, stored.split("/", 1)[1]),
                                          "alternate:name": "through the API"}
        item.collection_id = job_id
        if schemes:
            item.properties["storage:schemes"] = schemes
        extensions = [STORAGE_EXT] if schemes else []
        if item.assets:
            extensions.append(ALTERNATE_EXT)
        item.stac_extensions = [e for e in item.stac_extensions if e != STORAGE_V1_EXT] + \
            [e for e in extensions if e not in item.stac_extensions]
        return item

    # the items side by side (quicklooks are numpy and GDAL, uploads wait on the storage), in their order
    entries = _items(directory)
    ids: set[Any] = set()
    for _path, data in entries:
        if data.get("id") in ids:  # their files would land in one folder
            raise ProcessError(f"the output STAC catalog has two items with the id '{data.get('id')}'")
        ids.add(data.get("id"))
    with tempfile.TemporaryDirectory(prefix="ogcflow-quicklooks-") as tmp, \
            ThreadPoolExecutor(max(1, min(STAGE_THREADS, len(entries))), thread_name_prefix="stage-out") as pool:
        items: list[Any] = list(pool.map(lambda entry: stage(entry, Path(tmp)), entries))

    catalog = pystac.Catalog(id=job_id, description=f"results of job {job_id}", title="Processing results",
                             catalog_type=pystac.CatalogType.SELF_CONTAINED)
    collection = _collection(job_id, items)
    collection.add_items(items)
    catalog.add_child(collection)
    catalog.normalize_hrefs(job_url)

    def asset_dicts(item: Any, absolute: bool) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, asset in item.assets.items():
            entry = asset.to_dict()
            alternate: dict[str, Any] = {}
            api = alternates.get(asset.href)
            if absolute:
                if schemes:
                    entry["storage:refs"] = list(schemes)
            else:
                entry["href"] = make_relative_href(asset.href, item.get_self_href())
                alternate[urlsplit(asset.href).scheme] = {
                    "href": asset.href, "alternate:name": "in the results storage",
                    **({"storage:refs": list(schemes)} if schemes else {})}
            if api is not None:
                alternate[api_scheme] = api
            if alternate:
                entry["alternate"] = alternate
            out[key] = entry
        return out

    features: list[dict[str, Any]] = []
    documents: list[tuple[Any, dict[str, Any], str]] = []
    for item in items:
        stored = item.to_dict(include_self_link=False, transform_hrefs=True)
        stored["assets"] = asset_dicts(item, absolute=False)
        documents.append((item, stored, GEOJSON))
        feature = item.to_dict(include_self_link=True, transform_hrefs=False)
        feature["assets"] = asset_dicts(item, absolute=True)
        features.append(feature)
    for node in (collection, catalog):
        documents.append((node, node.to_dict(include_self_link=False, transform_hrefs=True), "application/json"))
    with ThreadPoolExecutor(min(STAGE_THREADS, len(documents)), thread_name_prefix="stage-out") as pool:
        list(pool.map(lambda doc: _put_json(storage, job_id, doc[0], job_url, doc[1], doc[2]), documents))
    return {"type": "FeatureCollection", "id": job_id, "features": features}


def _put_json(storage: ResultStorage, job_id: str, node: Any, job_url: str, data: dict[str, Any],
              media: str) -> None:
    """Store the JSON of a catalog, collection or item where its (normalized) href says, under the job."""
    name = str(node.get_self_href())[len(job_url) + 1:]
    storage.put_bytes(job_id, name, json.dumps(data, indent=1).encode(), media)


def _collection(job_id: str, items: list[Any]) -> Any:
    import pystac

    bboxes = [i.bbox for i in items if i.bbox]
    bbox = [min(b[0] for b in bboxes), min(b[1] for b in bboxes), max(b[2] for b in bboxes),
            max(b[3] for b in bboxes)] if bboxes else [-180.0, -90.0, 180.0, 90.0]
    times = sorted(t for i in items for t in (i.datetime, i.common_metadata.start_datetime,
                                               i.common_metadata.end_datetime) if t is not None)
    interval = [[times[0], times[-1]] if times else [None, None]]
    return pystac.Collection(id=job_id, title="Processing results", description=f"the items produced by job {job_id}",
                             license="proprietary", catalog_type=pystac.CatalogType.SELF_CONTAINED,
                             extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent(interval)))


def stac_output(name: str, value: Any, ctx: JobContext) -> OutputValue | None:
    """CWL output handler: a Directory holding a STAC catalog becomes the job's FeatureCollection, its files
    staged out to results storage."""
    if not (isinstance(value, dict) and value.get("class") == "Directory" and value.get("path")
            and ctx.storage is not None and is_stac_catalog(Path(value["path"]))):
        return None
    ctx.progress(95, "staging the STAC catalog out")
    return OutputValue(value=stage_out_catalog(Path(value["path"]), ctx.job_id, ctx.storage, ctx.base_url),
                       media_type=GEOJSON)
