"""Operator accounts of the web console: stored password hashes (hashing is the
caller's), sign-in failures and lock-outs, and the generation number that every console
session of an account carries (raised: those sessions end).

Failures are counted in the database, not in a process, so both API workers and every
node sharing the database see the same count and the same lock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from b2bua.storage.backend import Database, Row

ROLES = ("admin", "read")
MAX_FAILURES = 5  # failed sign-ins in a row that lock an account
LOCK_SECONDS = 15 * 60  # how long it stays locked, unless an admin unlocks it first

_COLUMNS = ("id, name, role, failures, locked_until, session_generation, last_sign_in_at, "
            "created_at, updated_at")


@dataclass(frozen=True, slots=True)
class Operator:
    id: int
    name: str
    role: str
    failures: int
    locked_until: float | None
    session_generation: int
    last_sign_in_at: float | None
    created_at: float
    updated_at: float

    def locked(self, now: float) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def public(self, now: float) -> dict[str, Any]:
        """What an admin may see of the account (never the hash)."""
        return {"id": self.id, "name": self.name, "role": self.role,
                "failures": self.failures,
                "locked_until": self.locked_until if self.locked(now) else None,
                "last_sign_in_at": self.last_sign_in_at, "created_at": self.created_at,
                "updated_at": self.updated_at}


def _operator(row: Row) -> Operator:
    return Operator(
        id=int(row["id"]), name=str(row["name"]), role=str(row["role"]),
        failures=int(row["failures"]),
        locked_until=None if row["locked_until"] is None else float(row["locked_until"]),
        session_generation=int(row["session_generation"]),
        last_sign_in_at=None if row["last_sign_in_at"] is None
        else float(row["last_sign_in_at"]),
        created_at=float(row["created_at"]), updated_at=float(row["updated_at"]))


def create(db: Database, name: str, role: str, password_hash: str, now: float) -> Operator:
    """A new account; ``ConflictError`` when the name is taken."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    db.insert(
        "INSERT INTO operators (name, role, password_hash, failures, session_generation, "
        "created_at, updated_at) VALUES (?, ?, ?, 0, 0, ?, ?) RETURNING id",
        (name, role, password_hash, now, now))
    found = get(db, name)
    assert found is not None
    return found


def get(db: Database, name: str) -> Operator | None:
    row = db.row(f"SELECT {_COLUMNS} FROM operators WHERE name = ?", (name,))
    return None if row is None else _operator(row)


def get_by_id(db: Database, operator_id: int) -> Operator | None:
    row = db.row(f"SELECT {_COLUMNS} FROM operators WHERE id = ?", (operator_id,))
    return None if row is None else _operator(row)


def all_operators(db: Database) -> list[Operator]:
    return [_operator(r) for r in db.rows(f"SELECT {_COLUMNS} FROM operators ORDER BY name")]


def with_hash(db: Database, name: str) -> tuple[Operator, str] | None:
    """The account and its stored password hash, to check a sign-in."""
    row = db.row(f"SELECT {_COLUMNS}, password_hash FROM operators WHERE name = ?", (name,))
    return None if row is None else (_operator(row), str(row["password_hash"]))


def record_failure(db: Database, operator_id: int, now: float) -> float | None:
    """Count one failed sign-in; at :data:`MAX_FAILURES` in a row the account is locked
    for :data:`LOCK_SECONDS` and the count starts again. Returns the lock's end when this
    failure locked it. Call inside a transaction (two workers' failures both count)."""
    db.execute("UPDATE operators SET failures = failures + 1 WHERE id = ?", (operator_id,))
    failures = int(db.value("SELECT failures FROM operators WHERE id = ?", (operator_id,)))
    if failures < MAX_FAILURES:
        return None
    until = now + LOCK_SECONDS
    db.execute("UPDATE operators SET failures = 0, locked_until = ? WHERE id = ?",
               (until, operator_id))
    return until


def record_sign_in(db: Database, operator_id: int, now: float) -> None:
    db.execute("UPDATE operators SET failures = 0, locked_until = NULL, last_sign_in_at = ? "
               "WHERE id = ?", (now, operator_id))


def unlock(db: Database, name: str, now: float) -> bool:
    """Lift a lock-out and forget the failures; False when there is no such account."""
    return db.execute("UPDATE operators SET failures = 0, locked_until = NULL, "
                      "updated_at = ? WHERE name = ?", (now, name)) > 0


def change(db: Database, name: str, now: float, *, role: str | None = None,
           password_hash: str | None = None) -> bool:
    """A new role and/or password; either ends the account's sessions (they were
    granted under the old ones). False when there is no such account."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return db.execute(
        "UPDATE operators SET role = COALESCE(?, role), "
        "password_hash = COALESCE(?, password_hash), "
        "session_generation = session_generation + 1, updated_at = ? WHERE name = ?",
        (role, password_hash, now, name)) > 0


def end_sessions(db: Database, operator_id: int) -> None:
    """Every console session of the account ends (sign-out)."""
    db.execute("UPDATE operators SET session_generation = session_generation + 1 "
               "WHERE id = ?", (operator_id,))


def remove(db: Database, name: str) -> bool:
    return db.execute("DELETE FROM operators WHERE name = ?", (name,)) > 0
