"""CDRs exactly once: each call's CDR carries the ``cdr_uuid`` it was given at its start
(also in its crash-recovery note), and inserting a CDR or one of its attempts a second
time changes nothing. A write whose commit outcome is unknown (the connection to
PostgreSQL lost during the commit) is then simply written again."""

from __future__ import annotations

from typing import Any

VERSION = 14

# Attempts written twice before this version would stop the unique index: one kept.
_DEDUPE_ATTEMPTS = ("DELETE FROM cdr_attempts WHERE id NOT IN "
                    "(SELECT MIN(id) FROM cdr_attempts GROUP BY cdr_id, seq)")


def up(db: Any) -> None:
    db["cdrs"].add_column("cdr_uuid", str)
    db["cdrs"].create_index(["cdr_uuid"], unique=True, index_name="idx_cdrs_cdr_uuid")
    db.execute(_DEDUPE_ATTEMPTS)
    db.execute("DROP INDEX idx_cdr_attempts_cdr_id_seq")
    db["cdr_attempts"].create_index(["cdr_id", "seq"], unique=True,
                                    index_name="idx_cdr_attempts_cdr_id_seq")


def up_postgresql(database: Any) -> None:
    database.execute("ALTER TABLE cdrs ADD COLUMN cdr_uuid text")
    database.execute("CREATE UNIQUE INDEX idx_cdrs_cdr_uuid ON cdrs (cdr_uuid)")
    database.execute(_DEDUPE_ATTEMPTS)
    database.execute("DROP INDEX idx_cdr_attempts_cdr_id_seq")
    database.execute("CREATE UNIQUE INDEX idx_cdr_attempts_cdr_id_seq "
                     "ON cdr_attempts (cdr_id, seq)")
