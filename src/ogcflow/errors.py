"""Errors as OGC exception documents (RFC 7807 with the standard's type URIs)."""

from __future__ import annotations

from typing import Any

_P1 = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
_P2 = "http://www.opengis.net/def/exceptions/ogcapi-processes-2/1.0/"


class ExceptionType:
    """The exception type URIs this server emits."""

    NO_SUCH_PROCESS = _P1 + "no-such-process"
    NO_SUCH_JOB = _P1 + "no-such-job"
    RESULT_NOT_READY = _P1 + "result-not-ready"
    NO_SUCH_OUTPUT = _P1 + "no-such-output"
    INVALID_PARAMETER = "http://www.opengis.net/def/exceptions/ogcapi-common-1/1.0/invalid-parameter-value"
    INVALID_INPUT = _P1 + "invalid-input"
    NOT_FOUND = "http://www.opengis.net/def/exceptions/ogcapi-common-1/1.0/not-found"
    NOT_ACCEPTABLE = "http://www.opengis.net/def/exceptions/ogcapi-common-1/1.0/not-acceptable"
    UNSUPPORTED_MEDIA_TYPE = "http://www.opengis.net/def/exceptions/ogcapi-common-1/1.0/unsupported-media-type"
    PAYLOAD_TOO_LARGE = "http://www.opengis.net/def/exceptions/ogcapi-common-1/1.0/payload-too-large"
    METHOD_NOT_ALLOWED = "http://www.opengis.net/def/exceptions/ogcapi-common-1/1.0/method-not-allowed"
    JOB_FAILED = _P1 + "job-failed"
    JOB_DISMISSED = _P1 + "job-dismissed"
    CONFLICT = _P1 + "conflict"
    SERVICE_UNAVAILABLE = _P1 + "service-unavailable"
    SERVER_ERROR = _P1 + "server-error"
    DUPLICATED_PROCESS = _P2 + "duplicated-process"
    IMMUTABLE_PROCESS = _P2 + "immutable-process"
    WORKFLOW_NOT_FOUND = _P2 + "workflow-not-found"
    UNSUPPORTED_PACKAGE_TYPE = _P2 + "unsupported-media-type"
    UNAUTHORIZED = "http://www.opengis.net/def/exceptions/ogcapi-common-1/1.0/unauthorized"
    FORBIDDEN = "http://www.opengis.net/def/exceptions/ogcapi-common-1/1.0/forbidden"
    #: the Idempotency-Key draft (draft-ietf-httpapi-idempotency-key-header) names no type: ogcflow's own
    IDEMPOTENCY_KEY_REUSED = _P1 + "idempotency-key-reused"


class OGCError(Exception):
    """An error the API reports as an exception document with an HTTP status."""

    status = 500
    type = ExceptionType.SERVER_ERROR
    title = "Server error"

    def __init__(self, detail: str, *, status: int | None = None, type: str | None = None,
                 title: str | None = None, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        if title is not None:
            self.title = title
        self.headers = headers or {}
        self.extra = extra

    def document(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status,
                               "detail": self.detail}
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc


class NoSuchProcess(OGCError):
    status, type, title = 404, ExceptionType.NO_SUCH_PROCESS, "No such process"


class NoSuchJob(OGCError):
    status, type, title = 404, ExceptionType.NO_SUCH_JOB, "No such job"


class ResultNotReady(OGCError):
    status, type, title = 404, ExceptionType.RESULT_NOT_READY, "Result not ready"


class NoSuchOutput(OGCError):
    status, type, title = 404, ExceptionType.NO_SUCH_OUTPUT, "No such output"


class InvalidParameter(OGCError):
    status, type, title = 400, ExceptionType.INVALID_PARAMETER, "Invalid parameter value"


class InvalidInput(OGCError):
    """An execute request whose inputs or outputs do not fit the process description."""

    status, type, title = 400, ExceptionType.INVALID_INPUT, "Invalid input"


class NotFound(OGCError):
    status, type, title = 404, ExceptionType.NOT_FOUND, "Not found"


class NotAcceptable(OGCError):
    status, type, title = 406, ExceptionType.NOT_ACCEPTABLE, "Not acceptable"


class UnsupportedMediaType(OGCError):
    status, type, title = 415, ExceptionType.UNSUPPORTED_MEDIA_TYPE, "Unsupported media type"


class PayloadTooLarge(OGCError):
    status, type, title = 413, ExceptionType.PAYLOAD_TOO_LARGE, "Payload too large"


class Conflict(OGCError):
    status, type, title = 409, ExceptionType.CONFLICT, "Conflict"


class IdempotencyKeyReused(OGCError):
    """An ``Idempotency-Key`` sent again with another request than the first (422, as the draft says)."""

    status, type, title = 422, ExceptionType.IDEMPOTENCY_KEY_REUSED, "Idempotency key reused"


class ServiceUnavailable(OGCError):
    status, type, title = 503, ExceptionType.SERVICE_UNAVAILABLE, "Service unavailable"


class JobFailed(OGCError):
    """The job ran and failed; the detail says why."""

    status, type, title = 500, ExceptionType.JOB_FAILED, "Job failed"


class Unauthorized(OGCError):
    """Credentials are missing, malformed, unknown, revoked or expired (401 with ``WWW-Authenticate``)."""

    status, type, title = 401, ExceptionType.UNAUTHORIZED, "Unauthorized"


class Forbidden(OGCError):
    """The caller is known but its role does not allow this operation."""

    status, type, title = 403, ExceptionType.FORBIDDEN, "Forbidden"


class ProcessError(Exception):
    """Raised by a process to fail its job with a clear message (no traceback shown to users)."""


class ProcessCancelled(ProcessError):
    """The process's work was cancelled outside ogcflow (e.g. its Prefect flow run, from Prefect's UI): the
    job ends dismissed."""


class InputFetchError(ProcessError):
    """An input given by reference could not be fetched."""
