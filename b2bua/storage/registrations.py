"""Bindings (registered contacts) kept across restarts: written through the database
writer as the registrar changes them, read back on start and by the signalling workers
that follow worker 0's registrations."""

from __future__ import annotations

import json

from b2bua.registrar.bindings import Binding
from b2bua.sip.edge import parse_source
from b2bua.sip.peer import Peer
from b2bua.storage import coalesce
from b2bua.storage.backend import Database
from b2bua.storage.writer import DbWriter

# A binding saved, then removed (phases for the writer's multi-row batches).
_UPSERT = coalesce.insert(
    "INSERT INTO registrations (username, contact, transport, source_host, source_port, nat, "
    "expires_at, registered_at, user_agent, call_id, path, mapping_gateway_id, customer) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (username, contact) DO UPDATE SET transport = excluded.transport, "
    "source_host = excluded.source_host, source_port = excluded.source_port, "
    "nat = excluded.nat, expires_at = excluded.expires_at, "
    "registered_at = excluded.registered_at, user_agent = excluded.user_agent, "
    "call_id = excluded.call_id, path = excluded.path, "
    "mapping_gateway_id = excluded.mapping_gateway_id, customer = excluded.customer",
    space="registrations", key=(0, 1), phase=0)
_DELETE = coalesce.delete("registrations", ("username", "contact"),
                          space="registrations", phase=1)
_PURGE = "DELETE FROM registrations WHERE expires_at <= ?"
_LIVE = "SELECT * FROM registrations WHERE expires_at > ?"
_LIVE_OF = "SELECT * FROM registrations WHERE expires_at > ? AND username = ?"


class RegistrationLog:
    """The registrar's changes, queued to the database writer (one statement each: a
    REGISTER costs no more than its row)."""

    __slots__ = ("writer",)

    def __init__(self, writer: DbWriter) -> None:
        self.writer = writer

    def save(self, binding: Binding) -> None:
        s = binding.source
        self.writer.submit(_UPSERT, (
            binding.username, binding.contact, s.transport, s.host, s.port, int(binding.nat),
            binding.expires_at, binding.registered_at, binding.user_agent, binding.call_id,
            json.dumps(list(binding.path)) if binding.path else "",
            binding.mapping_gateway_id,
            str(binding.customer) if binding.customer is not None else None,
        ))

    def remove(self, username: str, contact: str) -> None:
        self.writer.submit(_DELETE, (username, contact))

    def expire(self, now: float) -> None:
        self.writer.submit(_PURGE, (now,))


def live_bindings(database: Database, now: float, username: str | None = None
                  ) -> list[Binding]:
    """The bindings not expired at ``now`` (of ``username`` only, if given)."""
    rows = (database.rows(_LIVE, (now,)) if username is None
            else database.rows(_LIVE_OF, (now, username)))
    return [
        Binding(
            username=str(r["username"]),
            contact=str(r["contact"]),
            source=Peer(str(r["transport"]), str(r["source_host"]), int(r["source_port"])),
            nat=bool(r["nat"]),
            expires_at=float(r["expires_at"]),
            registered_at=float(r["registered_at"] or 0),
            user_agent=str(r["user_agent"] or ""),
            call_id=str(r["call_id"] or ""),
            path=tuple(json.loads(r["path"])) if r["path"] else (),
            mapping_gateway_id=None if r["mapping_gateway_id"] is None
            else int(r["mapping_gateway_id"]),
            customer=parse_source(str(r["customer"])) if r["customer"] else None,
        )
        for r in rows
    ]
