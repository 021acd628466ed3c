"""HTTP responses for the results of a job: the results document, raw values, multipart."""

from __future__ import annotations

import uuid

from fastapi.responses import Response

from ogcflow.api.negotiation import JSONResp
from ogcflow.domain import Job
from ogcflow.jobs.results import output_href
from ogcflow.models import ResponseMode, StatusCode, TransmissionMode
from ogcflow.services.jobs import JobService, job_failure


def results_response(job: Job, base_url: str, jobs: JobService, default: ResponseMode, *,
                     status_code: int = 200) -> Response:
    """The results of a successful job as its execute request asked (``response`` raw or document), or as
    ``default`` when it did not say: raw for a synchronous execution (the standard's default), a results
    document for ``GET /jobs/{id}/results`` (what clients parse: a document keyed by output id)."""
    if job.status is StatusCode.failed:
        raise job_failure(job)
    manifest = job.results or {}
    modes = job.request.outputs
    if job.request.response_or(default) is ResponseMode.document:
        return JSONResp(jobs.document(job, base_url), status_code=status_code)
    if not manifest:
        return Response(status_code=204)
    if len(manifest) == 1:
        output_id, entry = next(iter(manifest.items()))
        if modes.get(output_id) is TransmissionMode.reference:
            href = output_href(base_url, job.id, output_id)
            return Response(status_code=204, headers={"Link": f'<{href}>; rel="related"; type="{entry.media_type}"'})
        body, media = jobs.raw(job, entry)
        return Response(body, status_code=status_code, media_type=media)
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for output_id, entry in manifest.items():
        head = f"--{boundary}\r\nContent-ID: <{output_id}>\r\n"
        if modes.get(output_id) is TransmissionMode.reference:
            href = output_href(base_url, job.id, output_id)
            parts.append((head + f"Content-Type: message/external-body; access-type=URL; URL=\"{href}\"\r\n"
                          "\r\n\r\n").encode())
            continue
        body, media = jobs.raw(job, entry)
        parts.append((head + f"Content-Type: {media}\r\n\r\n").encode() + body + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return Response(b"".join(parts), status_code=status_code, media_type=f'multipart/related; boundary="{boundary}"')
