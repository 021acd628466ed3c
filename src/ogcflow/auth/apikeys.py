"""API keys: ``ogk_<id>_<secret>``. The id finds the row; only a SHA-256 of the secret is stored (the
secret is 256 random bits: no slow hash is needed to resist guessing). Shown once, when created."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "ogk_"
_KEY = re.compile(r"^ogk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True, slots=True)
class NewKey:
    key_id: str
    secret_hash: str
    #: the whole key, to give to its holder once
    key: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def generate() -> NewKey:
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return NewKey(key_id=key_id, secret_hash=digest(secret), key=f"{PREFIX}{key_id}_{secret}")


def split(key: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key; None for anything else."""
    found = _KEY.match(key.strip())
    return (found.group(1), found.group(2)) if found else None


def matches(secret: str, secret_hash: str) -> bool:
    return hmac.compare_digest(digest(secret), secret_hash)
