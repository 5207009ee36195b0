"""Nodes sharing one database (docs/cluster.md): each call's crash-recovery note and
CDR name the node that carried it, so a node recovers only its own calls and the node
that takes over a dead one recovers exactly that node's; ``cluster_nodes`` lists the
nodes that ever ran, with where their SIP and API listen. A binding registered through
a trusted edge keeps the customer's address the edge vouched for."""

from __future__ import annotations

from typing import Any

VERSION = 15


def up(db: Any) -> None:
    db["active_calls"].add_column("node", str, not_null_default="")
    db["cdrs"].add_column("node", str)
    db["registrations"].add_column("customer", str)
    db["cluster_nodes"].create(
        {"name": str, "sip": str, "api": str, "started_at": float},
        pk="name",
        not_null={"started_at"},
    )


def up_postgresql(database: Any) -> None:
    database.execute("ALTER TABLE active_calls ADD COLUMN node text NOT NULL DEFAULT ''")
    database.execute("ALTER TABLE cdrs ADD COLUMN node text")
    database.execute("ALTER TABLE registrations ADD COLUMN customer text")
    database.execute("CREATE TABLE cluster_nodes (name text PRIMARY KEY, sip text, "
                     "api text, started_at double precision NOT NULL)")
