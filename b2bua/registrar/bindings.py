"""Registered contacts (bindings): in memory for lookups, in the database so a restart
keeps them.

Every change is queued to the database writer as it happens (b2bua/storage/
registrations.py); on start the engine reloads the bindings that have not expired, so
phones stay reachable across a restart, ``kill -9`` included (what was queued in the
last few milliseconds aside).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from b2bua.sip.peer import Peer


@dataclass(slots=True)
class Binding:
    username: str
    contact: str  # the Contact URI as registered
    source: Peer  # where the REGISTER came from (the NAT mapping for NAT phones)
    nat: bool
    expires_at: float
    registered_at: float
    user_agent: str
    call_id: str
    # The Path (RFC 3327) it registered through, nearest proxy first: requests to the
    # phone carry it as their Route and go to its first hop.
    path: tuple[str, ...] = ()
    # Set when a password-mode mapping gateway registered (a PBX trunk), None for a phone.
    mapping_gateway_id: int | None = None
    # Registered through a trusted edge (docs/cluster.md): the address the edge received
    # it from, which the edge vouches for; it identifies the binding as ``source`` does.
    customer: Peer | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.username, self.contact)

    @property
    def identity(self) -> Peer:
        """The address that identifies it: the customer's behind an edge, else the source."""
        return self.customer if self.customer is not None else self.source

    def snapshot(self) -> dict[str, object]:
        return {
            "id": f"{self.username}/{self.contact}",
            "username": self.username,
            "contact": self.contact,
            "source": f"{self.source.host}:{self.source.port}",
            "transport": self.source.transport,
            "nat": self.nat,
            "expires_at": self.expires_at,
            "registered_at": self.registered_at,
            "user_agent": self.user_agent,
            "path": list(self.path),
            "kind": "phone" if self.mapping_gateway_id is None else "mapping_gateway",
            "mapping_gateway_id": self.mapping_gateway_id,
            "customer": str(self.customer) if self.customer is not None else None,
        }


class BindingLog(Protocol):
    """Where every change to the bindings is kept for the next start."""

    def save(self, binding: Binding) -> None: ...

    def remove(self, username: str, contact: str) -> None: ...

    def expire(self, now: float) -> None: ...


class BindingStore:
    def __init__(self, storage: BindingLog) -> None:
        self.storage = storage
        self.by_user: dict[str, dict[str, Binding]] = {}
        # The source address of each binding, so a request from a registered phone is
        # recognised with one lookup.
        self.by_source: dict[Peer, Binding] = {}
        self.on_miss: Callable[[str], object] | None = None
        # Told of each registration change (registered, unregistered, expired) with the
        # binding and when: the webhooks (b2bua/webhooks/), set while one wants them.
        self.on_change: Callable[[str, Binding, float], object] | None = None

    def restore(self, bindings: Iterable[Binding]) -> int:
        """Index bindings read back from the database; returns how many."""
        count = 0
        for binding in bindings:
            self._index(binding)
            count += 1
        return count

    def replace(self, bindings: Iterable[Binding]) -> int:
        """Hold exactly ``bindings`` (a signalling worker following worker 0's
        registrations)."""
        self.by_user.clear()
        self.by_source.clear()
        return self.restore(bindings)

    def follow(self, bindings: Iterable[Binding], now: float, recent: float = 2.0) -> int:
        """Hold ``bindings`` (the database's, written by every node of a cluster), and
        also those registered here within ``recent`` seconds that the database does not
        show yet (our writer commits them within milliseconds)."""
        fresh = [b for contacts in self.by_user.values() for b in contacts.values()
                 if b.registered_at > now - recent]
        count = self.replace(bindings)
        for binding in fresh:
            if binding.contact not in self.by_user.get(binding.username, {}):
                self._index(binding)
        return count

    def of(self, username: str, now: float) -> list[Binding]:
        """Live bindings of an account, most recent registration first."""
        live = [b for b in self.by_user.get(username, {}).values() if b.expires_at > now]
        if not live and self.on_miss is not None:
            # A worker following worker 0's registrations: one written since the last
            # reload (within 0.2 s) is read now rather than missed.
            self.on_miss(username)
            live = [b for b in self.by_user.get(username, {}).values() if b.expires_at > now]
        live.sort(key=lambda b: b.registered_at, reverse=True)
        return live

    def _index(self, binding: Binding) -> None:
        old = self.by_user.setdefault(binding.username, {}).get(binding.contact)
        if old is not None and self.by_source.get(old.identity) is old:
            del self.by_source[old.identity]
        self.by_user[binding.username][binding.contact] = binding
        if binding.customer is not None or not binding.path:
            # Through a proxy every phone behind it shares the proxy's address: the
            # address tells nothing about who sends, so such phones authenticate;
            # unless the proxy is our edge, which says whose address it is.
            self.by_source[binding.identity] = binding

    def _unindex(self, binding: Binding) -> None:
        contacts = self.by_user.get(binding.username, {})
        if contacts.get(binding.contact) is binding:
            del contacts[binding.contact]
        if not contacts:
            self.by_user.pop(binding.username, None)
        if self.by_source.get(binding.identity) is binding:
            del self.by_source[binding.identity]

    def put(self, binding: Binding) -> None:
        if self.on_change is not None:
            # A refresh of a live binding from the same address is no change.
            old = self.by_user.get(binding.username, {}).get(binding.contact)
            if old is None or old.expires_at <= binding.registered_at or \
                    old.identity != binding.identity:
                self.on_change("registered", binding, binding.registered_at)
        self._index(binding)
        self.storage.save(binding)

    def remove(self, username: str, contact: str) -> Binding | None:
        binding = self.by_user.get(username, {}).get(contact)
        if binding is None:
            return None
        self._unindex(binding)
        self.storage.remove(username, contact)
        if self.on_change is not None:
            self.on_change("unregistered", binding, time.time())
        return binding

    def expire(self, now: float) -> int:
        """Drop expired bindings from memory and from the database."""
        gone = [b for contacts in self.by_user.values() for b in contacts.values()
                if b.expires_at <= now]
        for binding in gone:
            self._unindex(binding)
            if self.on_change is not None:
                self.on_change("expired", binding, now)
        if gone:
            self.storage.expire(now)
        return len(gone)

    def prune(self, keep: Callable[[Binding], bool]) -> int:
        """Remove the bindings ``keep`` refuses (a gateway's after it was disabled,
        deleted or taken out of password mode), from memory and the database."""
        gone = [b for b in self.all() if not keep(b)]
        for binding in gone:
            self.remove(binding.username, binding.contact)
        return len(gone)

    def all(self) -> list[Binding]:
        return [b for contacts in self.by_user.values() for b in contacts.values()]

    def find_by_source(self, source: Peer, now: float) -> Binding | None:
        binding = self.by_source.get(source)
        return binding if binding is not None and binding.expires_at > now else None
