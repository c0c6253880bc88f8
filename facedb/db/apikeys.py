"""API keys: `fdb_<id>_<secret>`. Only sha256(secret) is stored; the key is shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import text

from ..errors import FaceDBError, NotFound
from ..results import ApiKeyListing

SCOPES = ("read", "write", "admin")  # each includes the ones before it


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    scope: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def allows(granted: str, needed: str) -> bool:
    return SCOPES.index(granted) >= SCOPES.index(needed)


class ApiKeys:
    def __init__(self, engine) -> None:
        self.engine = engine

    def create(self, name: str, scope: str) -> tuple[KeyInfo, str]:
        if scope not in SCOPES:
            raise FaceDBError(f"scope must be one of {', '.join(SCOPES)}")
        if not name.strip():
            raise FaceDBError("an API key needs a name")
        secret = secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            key_id = conn.execute(
                text("INSERT INTO api_keys (name, scope, secret_sha256) VALUES (:n, :s, :d) RETURNING id"),
                {"n": name.strip(), "s": scope, "d": _digest(secret)},
            ).scalar_one()
        return KeyInfo(key_id, name.strip(), scope), f"fdb_{key_id}_{secret}"

    def check(self, key: str) -> KeyInfo | None:
        """The key's identity if it is valid and not revoked; None otherwise (never says why)."""
        try:
            prefix, number, secret = key.split("_", 2)
            key_id = int(number)
        except ValueError:
            return None
        if prefix != "fdb" or not secret:
            return None
        with self.engine.begin() as conn:
            row = conn.execute(
                text(
                    "SELECT id, name, scope, secret_sha256, "
                    "last_used_at IS NULL OR last_used_at < now() - interval '1 minute' AS stale "
                    "FROM api_keys WHERE id = :id AND revoked_at IS NULL"
                ),
                {"id": key_id},
            ).first()
            if row is None or not hmac.compare_digest(row.secret_sha256, _digest(secret)):
                return None
            if row.stale:  # to the minute: a write (and its WAL flush) per request cost the service
                conn.execute(text("UPDATE api_keys SET last_used_at = now() WHERE id = :id"), {"id": key_id})
        return KeyInfo(row.id, row.name, row.scope)

    def list(self) -> list[ApiKeyListing]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT id, name, scope, created_at, last_used_at, revoked_at FROM api_keys ORDER BY id")
            ).all()
        return [ApiKeyListing(**r._mapping) for r in rows]

    def revoke(self, key_id: int) -> None:
        with self.engine.begin() as conn:
            done = conn.execute(
                text("UPDATE api_keys SET revoked_at = now() WHERE id = :id AND revoked_at IS NULL"), {"id": key_id}
            ).rowcount
        if not done:
            raise NotFound(f"no active API key {key_id}")
