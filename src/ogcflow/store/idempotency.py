"""Idempotency keys of execute requests (draft-ietf-httpapi-idempotency-key-header): a job and the key it was
submitted with are written in one transaction, so a retried submission finds the job of the first one, and
two submissions racing with one key create one job."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from ogcflow.domain import IdempotencyKey, Job, utcnow
from ogcflow.store.db import naive
from ogcflow.store.jobs import _row_of
from ogcflow.store.schema import idempotency_keys, jobs

_K = idempotency_keys.c


@dataclass(frozen=True, slots=True)
class KeyUse:
    """What a key was first sent with."""

    fingerprint: str
    job_id: str


class IdempotencyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def find(self, namespace: str, caller: str, key: str) -> KeyUse | None:
        """The key's first use, unless it has expired."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(_K.fingerprint, _K.job_id).where(_K.namespace == namespace, _K.caller == caller,
                                                        _K.key == key, _K.expires > naive(utcnow()))
            ).first()
        return KeyUse(fingerprint=row[0], job_id=row[1]) if row else None

    def create_job(self, job: Job, caller: str, key: IdempotencyKey, ttl: float) -> KeyUse | None:
        """Store ``job`` with the key it was submitted with (one transaction). When the key was used already
        (and has not expired) nothing is written and its first use is returned."""
        now = utcnow()
        row = {"namespace": job.namespace, "caller": caller, "key": key.key, "fingerprint": key.fingerprint,
               "job_id": job.id, "created": naive(now), "expires": naive(now + timedelta(seconds=ttl))}
        for _ in range(3):
            try:
                with self.engine.begin() as conn:
                    conn.execute(delete(idempotency_keys).where(
                        _K.namespace == job.namespace, _K.caller == caller, _K.key == key.key,
                        _K.expires <= naive(now)))
                    conn.execute(insert(idempotency_keys).values(**row))
                    conn.execute(insert(jobs).values(**_row_of(job)))
                return None
            except IntegrityError:  # the key is taken (by a submission that committed first)
                earlier = self.find(job.namespace, caller, key.key)
                if earlier is not None:
                    return earlier
        raise RuntimeError("an idempotency key could be neither stored nor found")

    def forget(self, namespace: str, caller: str, key: str) -> None:
        """Drop a key whose job was not accepted after all (it is removed too)."""
        with self.engine.begin() as conn:
            conn.execute(delete(idempotency_keys).where(_K.namespace == namespace, _K.caller == caller,
                                                        _K.key == key))

    def purge(self) -> int:
        """Remove expired keys; how many."""
        with self.engine.begin() as conn:
            return int(conn.execute(delete(idempotency_keys).where(_K.expires <= naive(utcnow()))).rowcount)
