"""What the nodes of a cluster share beyond their calls (docs/cluster.md): the key
nonces are minted and checked with, so that a nonce one node issued is good on every
node (kept in the database, never on a command line); and each answered call's dialogs
in its crash-recovery note, so that the node taking over a dead one ends them with BYE."""

from __future__ import annotations

from typing import Any

VERSION = 16


def up(db: Any) -> None:
    db["cluster_secrets"].create({"name": str, "value": str}, pk="name", not_null={"value"})
    db["active_calls"].add_column("dialogs", str)


def up_postgresql(database: Any) -> None:
    database.execute("CREATE TABLE cluster_secrets (name text PRIMARY KEY, "
                     "value text NOT NULL)")
    database.execute("ALTER TABLE active_calls ADD COLUMN dialogs text")
