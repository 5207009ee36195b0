"""The nodes that share this database (docs/cluster.md): who ever ran, where they
listen, and the name of each one's life lock."""

from __future__ import annotations

from dataclasses import dataclass

from b2bua.storage.backend import Database


@dataclass(frozen=True, slots=True)
class NodeRow:
    name: str
    sip: str | None
    api: str | None
    started_at: float


def life_lock(node: str) -> str:
    """The lock a node holds while it lives (``Database.try_hold``)."""
    return f"node:{node}"


def job_lock(job: str) -> str:
    """The lock of work one node of the cluster does (``Database.try_hold``)."""
    return f"job:{job}"


def register_node(database: Database, name: str, sip: str, api: str, now: float) -> None:
    database.execute(
        "INSERT INTO cluster_nodes (name, sip, api, started_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET sip = excluded.sip, api = excluded.api, "
        "started_at = excluded.started_at", (name, sip, api, now))


def nodes(database: Database) -> list[NodeRow]:
    return [NodeRow(str(r["name"]), r["sip"], r["api"], float(r["started_at"]))
            for r in database.rows("SELECT name, sip, api, started_at FROM cluster_nodes "
                                   "ORDER BY name")]


def shared_secret(database: Database, name: str, fresh: bytes) -> bytes:
    """The cluster's secret ``name``: the one stored, or ``fresh`` stored now when there
    is none yet (the first node to start draws it; the others read the same)."""
    database.execute("INSERT INTO cluster_secrets (name, value) VALUES (?, ?) "
                     "ON CONFLICT (name) DO NOTHING", (name, fresh.hex()))
    return bytes.fromhex(str(database.value(
        "SELECT value FROM cluster_secrets WHERE name = ?", (name,))))


def forget_node(database: Database, name: str) -> bool:
    """Take a node off the list (an operator retiring it); its notes stay."""
    return database.execute("DELETE FROM cluster_nodes WHERE name = ?", (name,)) > 0
