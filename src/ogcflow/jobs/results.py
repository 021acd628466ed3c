"""Outputs of a job: how they are stored (a manifest in the job row, bulky values in storage) and how they
are shown (the standard's results document, raw values)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import orjson

from ogcflow.domain import JSONObject, JSONValue, Manifest, OutputEntry
from ogcflow.models import TransmissionMode
from ogcflow.processes.base import OutputValue
from ogcflow.storage import ResultStorage

INLINE_LIMIT = 256 * 1024  # larger JSON values are kept in storage, not in the job row
JSON = "application/json"

_EXT = {"application/json": ".json", "text/plain": ".txt", "image/png": ".png", "image/tiff": ".tif",
        "application/geo+json": ".geojson", "application/octet-stream": ".bin", "application/zip": ".zip"}


def store_outputs(job_id: str, outputs: Mapping[str, Any], requested: Mapping[str, TransmissionMode],
                  storage: ResultStorage) -> Manifest:
    """Keep the requested outputs (plain values or :class:`OutputValue`); return the manifest saved with the
    job."""
    manifest: Manifest = {}
    for output_id, mode in requested.items():
        if output_id not in outputs:
            continue
        out = outputs[output_id]
        if not isinstance(out, OutputValue):
            out = OutputValue(value=out)
        media = out.media_type
        name = output_id + _EXT.get((media or JSON).split(";")[0], ".bin")
        if out.path is not None:
            key = storage.put_file(job_id, name, out.path)
            manifest[output_id] = OutputEntry(media_type=media or "application/octet-stream", key=key,
                                              size=storage.size(key), binary=True)
        elif isinstance(out.value, bytes | bytearray):
            key = storage.put_bytes(job_id, name, bytes(out.value))
            manifest[output_id] = OutputEntry(media_type=media or "application/octet-stream", key=key,
                                              size=len(out.value), binary=True)
        elif isinstance(out.value, str) and media and not media.split(";")[0].strip().endswith("json"):
            text = out.value.encode("utf-8")  # a text output: its file holds the text, not a JSON string
            if len(text) > INLINE_LIMIT or mode is TransmissionMode.reference:
                key = storage.put_bytes(job_id, name, text)
                manifest[output_id] = OutputEntry(media_type=media, key=key, size=len(text), binary=True)
            else:
                manifest[output_id] = OutputEntry(media_type=media, value=out.value)
        else:
            encoded = orjson.dumps(out.value)
            if len(encoded) > INLINE_LIMIT or mode is TransmissionMode.reference:
                key = storage.put_bytes(job_id, name, encoded)
                manifest[output_id] = OutputEntry(media_type=media or JSON, key=key, size=len(encoded))
            else:
                manifest[output_id] = OutputEntry(media_type=media or JSON, value=out.value)
    return manifest


def load_value(entry: OutputEntry, storage: ResultStorage) -> JSONValue | bytes:
    """The output's value: JSON data, or bytes for a binary output."""
    if entry.key is None:
        return entry.value
    data = storage.read(entry.key)
    return data if entry.binary else orjson.loads(data)


def raw_body(entry: OutputEntry, storage: ResultStorage) -> tuple[bytes, str]:
    """The output as a response body of its own media type."""
    value = load_value(entry, storage)
    media = entry.media_type or JSON
    if isinstance(value, bytes):
        return value, media
    if isinstance(value, str) and not media.endswith("json"):
        return value.encode(), media + ("; charset=utf-8" if media.startswith("text/") else "")
    return orjson.dumps(value), media if media.endswith("json") else JSON


def output_href(base_url: str, job_id: str, output_id: str) -> str:
    return f"{base_url}/jobs/{job_id}/results/{output_id}"


def file_href(base_url: str, job_id: str, name: str) -> str:
    """Where the API serves a file the job wrote to results storage (``name``: its key without the job id)."""
    return f"{base_url}/jobs/{job_id}/files/{name}"


def _is_bbox(value: JSONObject) -> bool:
    return set(value) <= {"bbox", "crs"} and isinstance(value.get("bbox"), list)


def document_entry(output_id: str, entry: OutputEntry, mode: TransmissionMode, base_url: str,
                   job_id: str, storage: ResultStorage) -> JSONValue:
    """One output in the results document (inlineOrRefData): a link for outputs by reference; a plain value
    for JSON numbers, booleans, arrays and bounding boxes; otherwise a qualified value with its media type
    (objects, text, binaries in base64)."""
    media = entry.media_type or JSON
    if mode is TransmissionMode.reference:
        return {"href": output_href(base_url, job_id, output_id), "type": media, "rel": "related",
                "title": output_id}
    value = load_value(entry, storage)
    if isinstance(value, bytes) and media.startswith("text/"):
        try:
            value = value.decode("utf-8")  # text files are text values
        except UnicodeDecodeError:
            pass
    if isinstance(value, bytes):
        return {"value": base64.b64encode(value).decode(), "mediaType": media, "encoding": "base64"}
    json_media = media.split(";")[0].strip().endswith("json")
    if isinstance(value, dict):
        return value if _is_bbox(value) else {"value": value, "mediaType": media}
    if isinstance(value, str) and not json_media:
        return {"value": value, "mediaType": media}
    return value


def results_document(job_id: str, manifest: Manifest, modes: Mapping[str, TransmissionMode],
                     base_url: str, storage: ResultStorage) -> JSONObject:
    return {
        output_id: document_entry(output_id, entry, modes.get(output_id, TransmissionMode.value),
                                  base_url, job_id, storage)
        for output_id, entry in manifest.items()
    }
