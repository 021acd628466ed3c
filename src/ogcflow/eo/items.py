"""Reading user-given STAC items and their assets under the server's network policy.

Items come by http(s) URL (fetched with the policy's limits; private addresses refused unless allowed) or,
for CWL stage-in, as a local directory holding a ``catalog.json``; local paths are only read under the
directories listed in ``OGCFLOW_EO_LOCAL_ROOTS``. Assets are located by eo:bands common name, not by key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ogcflow.eo.config import StepConfig
from ogcflow.eo.errors import StepError
from ogcflow.errors import InputFetchError
from ogcflow.netpolicy import check_url, fetch


def _local(ref: str, settings: StepConfig) -> Path | None:
    """The local path of ``ref`` if it is one (``file://`` or a plain path), checked against the roots."""
    parts = urlsplit(ref)
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme not in ("", "file"):
        raise StepError(f"{ref}: only http(s) URLs (or local files under OGCFLOW_EO_LOCAL_ROOTS) can be read")
    path = Path(unquote(parts.path) if parts.scheme == "file" else ref).resolve()
    roots = [Path(r).resolve() for r in settings.eo_local_roots]
    if not any(path == root or root in path.parents for root in roots):
        raise StepError(f"{ref}: local files are only read under OGCFLOW_EO_LOCAL_ROOTS")
    return path


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
    """What rasterio should open for an asset href: policed, and signed for Planetary Computer storage."""
    path = _local(href, settings)
    if path is not None:
        return str(path)
    try:
        check_url(href, settings)
    except InputFetchError as exc:
        raise StepError(str(exc)) from None
    from ogcflow.eo.signing import Signer

    return Signer(settings).sign(href, item.collection_id or "")

