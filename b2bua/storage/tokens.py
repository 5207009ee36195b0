"""API tokens: only a SHA-256 of each token is stored, so a database copy leaks none."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from b2bua.storage.backend import Database

ROLES = ("admin", "read")
TOKEN_PREFIX = "sst_"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    role: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(db: Database, name: str, role: str = "admin") -> str:
    """Store a new token's hash and return the token itself (shown once)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not name or len(name) > 64:
        raise ValueError("name must be 1-64 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.execute(
        "INSERT INTO api_tokens (name, role, token_hash, created_at, revoked) "
        "VALUES (?, ?, ?, ?, 0)",
        (name, role, hash_token(token), time.time()),
    )
    return token


def verify_token(db: Database, token: str) -> TokenInfo | None:
    row = db.row(
        "SELECT id, name, role FROM api_tokens WHERE token_hash = ? AND revoked = 0",
        (hash_token(token),),
    )
    if row is None:
        return None
    return TokenInfo(int(row["id"]), str(row["name"]), str(row["role"]))
