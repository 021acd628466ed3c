"""Reading user-given STAC items and their assets under the server's network policy.

Items come by http(s) URL (fetched with the policy's limits; private addresses refused unless allowed) or,
for CWL stage-in, as a local directory holding a ``catalog.json``; local paths are only read under the
directories listed in ``OGCFLOW_EO_LOCAL_ROOTS``. Assets are located by eo:bands common name, not by key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ogcflow.eo.config import StepConfig
from ogcflow.eo.errors import StepError
from ogcflow.errors import InputFetchError
from ogcflow.netpolicy import check_url, fetch, is_local, local_path


def _local(ref: str, settings: StepConfig) -> Path | None:
    """The local path of ``ref`` if it is one (``file://`` or a plain path), checked against the roots."""
    if not is_local(ref):
        return None
    try:
        return local_path(ref, settings.eo_local_roots, "OGCFLOW_EO_LOCAL_ROOTS")
    except InputFetchError as exc:
        raise StepError(str(exc)) from None


def read_item(ref: str, settings: StepConfig) -> Any:
    """The STAC item at ``ref`` (a URL, a local item file, or a staged directory: its catalog's first item)."""
    import pystac

    path = _local(ref, settings)
    if path is not None and path.is_dir():
        catalog = pystac.Catalog.from_file(str(path / "catalog.json"))
        item = next(iter(catalog.get_items(recursive=True)), None)
        if item is None:
            raise StepError(f"{ref}: the staged catalog holds no item")
        return item
    try:
        if path is not None:
            data = json.loads(path.read_text(encoding="utf-8"))
            href = str(path)
        else:
            body, _media = fetch(ref, settings)
            data, href = json.loads(body), ref
    except InputFetchError as exc:
        raise StepError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise StepError(f"{ref}: not a readable STAC item ({exc})") from None
    if not isinstance(data, dict) or data.get("type") != "Feature":
        raise StepError(f"{ref}: not a STAC item (a GeoJSON Feature is expected)")
    try:
        item = pystac.Item.from_dict(data, href=href, preserve_dict=False)
    except Exception as exc:  # pystac's own validation of the structure
        raise StepError(f"{ref}: not a valid STAC item ({exc})") from None
    item.set_self_href(href)
    return item


def _common_names(asset: Any, item: Any) -> list[str]:
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    names = []
    for band in bands:
        if isinstance(band, int):  # STAC 0.9: indices into the item's eo:bands
            item_bands = item.properties.get("eo:bands") or []
            band = item_bands[band] if 0 <= band < len(item_bands) else {}
        if isinstance(band, dict):
            names.append(band.get("common_name") or band.get("eo:common_name"))
    return [n for n in names if n]


def find_asset(item: Any, band: str) -> tuple[str, Any]:
    """The first data asset of ``item`` whose eo:bands has the common name ``band`` (or, for items without
    eo:bands, the data asset keyed ``band``)."""
    for key, asset in item.assets.items():
        if "data" in (asset.roles or []) and band in _common_names(asset, item):
            return key, asset
    asset = item.assets.get(band)
    if asset is not None and not asset.extra_fields.get("eo:bands") and "data" in (asset.roles or ["data"]):
        return band, asset
    known = sorted({n for a in item.assets.values() if "data" in (a.roles or []) for n in _common_names(a, item)})
    raise StepError(f"item {item.id} has no data asset for the band '{band}' "
                    f"(bands by common name: {', '.join(known) or 'none'})")


def open_href(href: str, item: Any, settings: StepConfig) -> str:
    """What rasterio should open for an asset href: policed, and signed for Planetary Computer storage.
    GDAL reads http(s) hrefs through the policing proxy (:func:`gdal_options`), so the redirects it follows
    are checked too."""
    path = _local(href, settings)
    if path is not None:
        return str(path)
    try:
        check_url(href, settings)
    except InputFetchError as exc:
        raise StepError(str(exc)) from None
    from ogcflow.eo.signing import Signer

    return Signer(settings).sign(href, item.collection_id or "")



def gdal_options(href: str, settings: StepConfig) -> dict[str, str]:
    """GDAL configuration for reading ``href``: an http(s) href goes through this process's policing proxy
    (every request GDAL makes, each redirect it follows included, checked and pinned to the checked address)."""
    if is_local(href):
        return {}
    import os

    from ogcflow.netpolicy import process_proxy

    for name in ("NO_PROXY", "no_proxy"):  # libcurl would bypass the proxy for these hosts
        os.environ.pop(name, None)
    proxy = process_proxy(settings).url
    return {"GDAL_HTTP_PROXY": proxy, "GDAL_HTTPS_PROXY": proxy}


def raster_env(href: str = "", **options: str) -> Any:
    """A rasterio environment (GDAL ``options``) for rasters that are not on S3 (``href``: what is read; none:
    local files): without the AWS session rasterio otherwise makes for every ``open`` when AWS credentials are
    in the environment (a boto3 session, ~10 ms of CPU each; the server's own S3 credentials are)."""
    import rasterio
    from rasterio.session import DummySession

    if href.startswith(("s3://", "/vsis3/")):
        return rasterio.Env(**options)
    return rasterio.Env(session=DummySession(), **options)


def refused_reads(settings: StepConfig) -> str:
    """Why the policing proxy of this process refused requests (for a read that failed), or ''."""
    from ogcflow.netpolicy import process_proxy

    refused = process_proxy(settings).refused
    return "; ".join(dict.fromkeys(refused))
