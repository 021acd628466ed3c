"""A job's status document (statusInfo) with its links."""

from __future__ import annotations

from ogcflow import models
from ogcflow.domain import Job
from ogcflow.models import StatusCode


def job_url(base_url: str, job_id: str) -> str:
    return f"{base_url}/jobs/{job_id}"


def status_info(job: Job, base_url: str, run_url: str | None = None) -> models.StatusInfo:
    url = job_url(base_url, job.id)
    links = [
        models.Link(href=url, rel="self", type="application/json", title="this status"),
        models.Link(href=url, rel="monitor", type="application/json", title="monitor this job"),
        models.Link(href=url + "?f=html", rel="alternate", type="text/html", title="this status as HTML"),
    ]
    if job.status is StatusCode.successful:
        links.append(models.Link(href=url + "/results", rel="http://www.opengis.net/def/rel/ogc/1.0/results",
                                 type="application/json", title="results of this job"))
    elif job.status is StatusCode.failed:
        links.append(models.Link(href=url + "/results", rel="http://www.opengis.net/def/rel/ogc/1.0/exceptions",
                                 type="application/json", title="why this job failed"))
    if run_url:
        links.append(models.Link(href=run_url, rel="related", type="text/html",
                                 title=f"this job's run in {job.engine.capitalize()}"))
    if job.log and job.status is not StatusCode.dismissed:
        links.append(models.Link(href=url + "/logs", rel="describedby", type="text/plain",
                                 title="the job's log"))
    return models.StatusInfo(processID=job.process_id, jobID=job.id, status=job.status,
                             message=job.message, created=job.created, started=job.started,
                             finished=job.finished, updated=job.updated, progress=job.progress, links=links)
