"""Errors of the EO steps."""

from __future__ import annotations

from ogcflow.errors import ProcessError


class StepError(ProcessError):
    """An EO step cannot go on; the message says why in the user's terms."""
