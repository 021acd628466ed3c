"""HTTP responses for the results of a job: the results document, raw values, multipart."""

from __future__ import annotations

import uuid

from fastapi.responses import Response

from ogcflow.api.negotiation import JSONResp
from ogcflow.errors import OGCError
from ogcflow.jobs.results import output_href, raw_body, results_document
from ogcflow.jobs.store import Job
from ogcflow.models import StatusCode
from ogcflow.storage import ResultStorage


def failure(job: Job) -> OGCError:
    err = job.error or {}
    return OGCError(err.get("detail") or job.message or "the job failed", status=err.get("status", 500),
                    type=err.get("type"), title=err.get("title", "Job failed"), jobID=job.id)


def results_response(job: Job, base_url: str, storage: ResultStorage, *, status_code: int = 200) -> Response:
    """The results of a successful job as its execute request asked (``response`` raw or document)."""
    if job.status == StatusCode.failed.value:
        raise failure(job)
    manifest = job.results or {}
    modes: dict[str, str] = job.request.get("outputs", {})
    if job.request.get("response") == "document":
        return JSONResp(results_document(job.id, manifest, modes, base_url, storage), status_code=status_code)
    if not manifest:
        return Response(status_code=204)
    if len(manifest) == 1:
        output_id, entry = next(iter(manifest.items()))
        if modes.get(output_id) == "reference":
            href = output_href(base_url, job.id, output_id)
            return Response(status_code=204, headers={"Link": f'<{href}>; rel="related"; '
                                                              f'type="{entry.get("mediaType")}"'})
        body, media = raw_body(entry, storage)
        return Response(body, status_code=status_code, media_type=media)
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for output_id, entry in manifest.items():
        head = f"--{boundary}\r\nContent-ID: <{output_id}>\r\n"
        if modes.get(output_id) == "reference":
            href = output_href(base_url, job.id, output_id)
            parts.append((head + f"Content-Type: message/external-body; access-type=URL; URL=\"{href}\"\r\n"
                          "\r\n\r\n").encode())
            continue
        body, media = raw_body(entry, storage)
        parts.append((head + f"Content-Type: {media}\r\n\r\n").encode() + body + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return Response(b"".join(parts), status_code=status_code,
                    media_type=f'multipart/related; boundary="{boundary}"')
