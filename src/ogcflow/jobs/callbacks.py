"""Callback delivery (the standard's ``subscriber``): queued in the store, POSTed with retries and
exponential backoff by one dispatcher per worker daemon. Targets go through the network policy."""

from __future__ import annotations

import logging
import signal
import time

import httpx
import orjson

from ogcflow.netpolicy import URLRefused, client, pin, pinned_request
from ogcflow.runtime import Runtime

log = logging.getLogger("ogcflow.callbacks")


def deliver_due(rt: Runtime, http: httpx.Client) -> int:
    """Attempt every due delivery once; return how many were attempted."""
    settings = rt.settings.engine
    store = rt.store.callbacks
    due = store.due()
    for cb in due:
        attempt = cb.attempts + 1
        try:
            target = pin(cb.url, rt.settings.network)  # connected to the address that was checked
            resp = http.send(pinned_request(http, "POST", cb.url, target, content=orjson.dumps(cb.payload),
                                              headers={"Content-Type": "application/json"}))
            if resp.status_code < 300:
                store.attempted(cb.id, delivered=True, error=None, retry_in=None)
                continue
            error = f"HTTP {resp.status_code}"
        except URLRefused as exc:
            store.attempted(cb.id, delivered=False, error=str(exc), retry_in=None)
            log.warning("callback %s refused: %s", cb.url, exc)
            continue
        except httpx.HTTPError as exc:
            error = f"{exc.__class__.__name__}: {exc}"
        retry = settings.callback_backoff * (2 ** (attempt - 1)) if attempt < settings.callback_retries else None
        store.attempted(cb.id, delivered=False, error=error, retry_in=retry)
        log.info("callback %s attempt %d failed (%s)%s", cb.url, attempt, error,
                 f"; retry in {retry:g} s" if retry else "; giving up")
    return len(due)


def dispatch_forever(rt: Runtime) -> None:
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    with client(10.0) as http:
        while not stop:
            try:
                if deliver_due(rt, http) == 0:
                    time.sleep(0.2)
            except Exception:  # keep delivering; the store may be briefly unavailable
                log.exception("callback dispatcher")
                time.sleep(1.0)
