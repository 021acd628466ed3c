"""schemathesis hooks of tests/test_fuzz.py (loaded by the schemathesis command through SCHEMATHESIS_HOOKS)."""

from __future__ import annotations

import json
from typing import Any

import schemathesis

JOB_FAILED = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/job-failed"


@schemathesis.check
def no_unexpected_server_error(ctx: Any, response: Any, case: Any) -> bool | None:
    """Like schemathesis's not_a_server_error, but the standard's answer for a job that ran and failed (the
    results of a failed job, or a synchronous execution of one: a job-failed exception, 500) is expected:
    the sleep process fails on request (``fail: true``)."""
    if response.status_code < 500:
        return None
    try:
        doc = json.loads(response.content)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("type") == JOB_FAILED and response.status_code == 500:
        return None
    raise AssertionError(f"unexpected server error {response.status_code}: {response.content[:500]!r}")
