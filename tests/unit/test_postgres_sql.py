"""The PostgreSQL backend's pure parts: placeholders adapted, errors mapped, lock keys."""

from __future__ import annotations

import pytest
from psycopg import OperationalError, errors

from b2bua.storage.backend import BusyError, ConflictError, StorageError, UnavailableError
from b2bua.storage.postgres import adapt, lock_key, translate


@pytest.mark.parametrize("written, sent", [
    ("SELECT * FROM t WHERE a = ? AND b > ?", "SELECT * FROM t WHERE a = %s AND b > %s"),
    ("SELECT name FROM t WHERE name LIKE 'a%' AND memo = ?",
     "SELECT name FROM t WHERE name LIKE 'a%%' AND memo = %s"),
    ("SELECT '?' AS q, 'it''s ?' AS r, ? AS s", "SELECT '?' AS q, 'it''s ?' AS r, %s AS s"),
    ('SELECT "odd?name" FROM t WHERE x = ?', 'SELECT "odd?name" FROM t WHERE x = %s'),
    ("SELECT 1 -- why? because\nWHERE a = ?", "SELECT 1 -- why? because\nWHERE a = %s"),
    ("SELECT 5 % 2, ? /* a ? here */", "SELECT 5 %% 2, %s /* a ? here */"),
    ("SELECT 'a%' -- 100%\n", "SELECT 'a%%' -- 100%%\n"),
])
def test_placeholders_become_psycopg_ones(written: str, sent: str) -> None:
    assert adapt(written) == sent
    assert adapt(written) is adapt(written)  # adapted once, then cached


@pytest.mark.parametrize("error, kind", [
    (errors.UniqueViolation, ConflictError),
    (errors.ForeignKeyViolation, ConflictError),
    (errors.CheckViolation, ConflictError),
    (errors.NotNullViolation, ConflictError),
    (errors.SerializationFailure, BusyError),
    (errors.DeadlockDetected, BusyError),
    (errors.LockNotAvailable, BusyError),
    (errors.AdminShutdown, UnavailableError),
    (errors.CannotConnectNow, UnavailableError),
    (OperationalError, UnavailableError),
    (errors.UndefinedTable, StorageError),
    (errors.SyntaxError, StorageError),
])
def test_errors_map_onto_the_interface(error: type[Exception], kind: type[StorageError]
                                       ) -> None:
    mapped = translate(error("what the server said"))  # type: ignore[arg-type]
    assert type(mapped) is kind and "what the server said" in str(mapped)


def test_lock_keys_are_fixed_signed_64_bit_values() -> None:
    # Nodes of different releases must agree on the key, so it never changes.
    assert lock_key("migrate") == 4307694844222389748
    assert lock_key("migrate") != lock_key("cleanup")
    keys = [lock_key(f"job-{i}") for i in range(200)]
    assert all(-(1 << 63) <= k < (1 << 63) for k in keys) and min(keys) < 0 < max(keys)
