"""Authentication failures and suspensions across the nodes of a cluster (docs/cluster.md).

A node's board (its workers' shared table, or nothing beyond the worker) decides as
before, at once, on what this node saw. Each failure is also counted in Redis, one field
per node and worker; when the live nodes' failures together pass the limit, the node
that counted the last one decides the suspension and tells every node on the
suspensions channel, so the terminal is refused everywhere from then on. A success
clears the terminal's failures everywhere; a lift through any node's API is told to all.

The request that passes the cluster's limit is judged by what this node alone knew (the
cluster's count comes back a round trip later); the terminal's next request is refused
on every node.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from b2bua.cluster import shares
from b2bua.cluster.shared_counts import SharedCounts
from b2bua.security.state import (
    SUSPENSION_LIMIT,
    BoundedMap,
    LocalBoard,
    Suspension,
    Terminal,
)

log = logging.getLogger("b2bua.cluster")


class ClusterBoard(LocalBoard):
    def __init__(self, inner: LocalBoard, shared: SharedCounts, lists: bool) -> None:
        """``lists``: this worker lists the cluster's suspensions in the API (one worker
        per node does, so that a node's list has each once)."""
        self.inner = inner
        self.shared = shared
        self.lists = lists
        self.told: BoundedMap[Terminal, Suspension] = BoundedMap(SUSPENSION_LIMIT)
        self.cluster_suspensions = 0  # decided here on the cluster's count
        shared.on_told = self.on_told

    # -- the node's own board, and the cluster's suspensions on top ------------------------

    def count(self, kind: str, terminal: Terminal, local: int) -> int:
        return self.inner.count(kind, terminal, local)

    def reset_failures(self, kind: str, terminal: Terminal) -> None:
        self.inner.reset_failures(kind, terminal)
        self.shared.forget_failures(shares.failures_key(kind, *terminal))

    def until(self, terminal: Terminal) -> float:
        told = self.told.get(terminal)
        return max(self.inner.until(terminal), told.until if told is not None else 0.0)

    def publish(self, terminal: Terminal, until: float) -> None:
        self.inner.publish(terminal, until)

    def lift(self, terminal: Terminal) -> None:
        self.inner.lift(terminal)
        self.told.pop(terminal)
        self.shared.tell({"op": "lift", "user": terminal[0], "ip": terminal[1]})

    def lift_held(self, terminal: Terminal, now: float) -> bool:
        held = self.inner.lift_held(terminal, now)
        told = self.told.pop(terminal)
        if held or (told is not None and told.until > now):
            self.shared.tell({"op": "lift", "user": terminal[0], "ip": terminal[1]})
            return True
        return False

    def first_telling(self, terminal: Terminal, until_ms: int,
                      told: BoundedMap[Terminal, int]) -> bool:
        return self.inner.first_telling(terminal, until_ms, told)

    def held_elsewhere(self, now: float) -> list[Suspension]:
        if not self.lists:
            return []
        return [s for _t, s in self.told.items() if s.until > now]

    # -- the cluster's count ---------------------------------------------------------------

    def failed(self, kind: str, terminal: Terminal, max_failures: int, suspend_for: float,
               now: float) -> None:
        done = self.shared.count_failure(shares.failures_key(kind, *terminal))
        done.add_done_callback(
            lambda result: self._judge(result, kind, terminal, max_failures, suspend_for,
                                       now))

    def _judge(self, result: asyncio.Future[Any], kind: str, terminal: Terminal,
               max_failures: int, suspend_for: float, now: float) -> None:
        if result.cancelled() or result.exception() is not None:
            return  # Redis cannot say: this node's own count decides, as before
        failures = int(result.result())
        if failures <= max_failures:
            return
        self.cluster_suspensions += 1
        log.warning("suspended %s from %s for %d s after %d failures across the cluster",
                    terminal[0], terminal[1], suspend_for, failures)
        self.shared.forget_failures(shares.failures_key(kind, *terminal))
        self.shared.tell({"op": "suspend", "user": terminal[0], "ip": terminal[1],
                          "kind": kind, "since": now, "until": now + suspend_for,
                          "failures": failures})

    def on_told(self, message: dict[str, Any]) -> None:
        """A suspension or a lift told on the channel (by any node, this one too)."""
        try:
            terminal = (str(message["user"]), str(message["ip"]))
            if message.get("op") == "lift":
                self.inner.lift(terminal)
                self.told.pop(terminal)
            elif message.get("op") == "suspend":
                self.told.put(terminal, Suspension(
                    terminal[0], terminal[1], str(message.get("kind", "authentication")),
                    float(message["since"]), float(message["until"]),
                    int(message.get("failures", 0))))
        except (KeyError, TypeError, ValueError):
            log.warning("suspensions channel: a message not understood: %.200r", message)
