"""A named node's life in the shared database: it holds its life lock from start to
stop, and a thread of its own looks at the other nodes' locks every second and takes
over the jobs of a dead one (its interrupted calls' CDRs) when this node wins that
node's lock. Only nodes started with ``--node NAME`` do this; an unnamed switch is on its
own (docs/cluster.md)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b2bua.calls.recovery import recover
from b2bua.cluster.takeover import DeadNodes
from b2bua.storage import cluster, open_database
from b2bua.storage.backend import Database, HeldLock, StorageError

log = logging.getLogger("b2bua.cluster")

START_WAIT = 10.0  # a node restarting may wait this long for a peer recovering it
SWEEP = 1.0


class NodeNameTaken(RuntimeError):
    """Another live process holds this node's life lock: the name is in use."""


def take_life(database: Database, node: str, wait: float = START_WAIT,
              sleep: Callable[[float], None] = time.sleep) -> HeldLock:
    """Take ``node``'s life lock, waiting up to ``wait`` seconds (a peer taking the node
    over holds it meanwhile); NodeNameTaken when it stays held."""
    deadline = time.monotonic() + wait
    while True:
        lock = database.try_hold(cluster.life_lock(node))
        if lock is not None:
            return lock
        if time.monotonic() >= deadline:
            raise NodeNameTaken(f"node {node!r} is already running (its lock in the "
                                "database is held): give each node its own --node name")
        sleep(0.5)


@dataclass
class NodeStats:
    sweeps: int = 0
    takeovers: int = 0
    calls_recovered: int = 0
    errors: int = 0
    life_lost: int = 0  # our lock found gone (a database restart) and taken back
    last_sweep_at: float = 0.0  # when a sweep last went through (the database answered)
    last_error: str = ""
    suspected: dict[str, float] = field(default_factory=dict)
    # Each listed node at the last sweep: "alive" (its lock held), "suspected" (free, not
    # for 3 s yet), "dead" (taken over), "self".
    nodes: dict[str, str] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)  # the cluster's jobs this node runs
    jobs_handed_over: int = 0  # stopped here: the database lost our lock, another won it


@dataclass(frozen=True)
class Job:
    """Work one node of the cluster does; both called from the watch's thread."""

    start: Callable[[], object]
    stop: Callable[[], object]


class NodeWatch:
    """The sweeping thread of one node, with a database connection of its own."""

    def __init__(self, target: Path | str, node: str, life: HeldLock,
                 interval: float = SWEEP,
                 hang_up: Callable[[list[dict[str, Any]]], object] | None = None,
                 jobs: dict[str, Job] | None = None) -> None:
        """``hang_up``: given a dead node's answered calls' dialogs, from this thread.
        ``jobs``: work one node of the cluster does (NAT keep-alives, registrations to
        vendors), each started here, from this thread, once this node wins its lock."""
        self.target = target
        self.hang_up = hang_up
        self.jobs = dict(jobs or {})
        self.job_locks: dict[str, HeldLock] = {}
        self.node = node
        self.life: HeldLock | None = life
        self.interval = interval
        self.dead = DeadNodes(node)
        self.stats = NodeStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        for lock in self.job_locks.values():
            lock.release()
        self.job_locks.clear()
        if self.life is not None:
            self.life.release()
            self.life = None

    def _run(self) -> None:
        database: Database | None = None
        while not self._stop.wait(self.interval):
            try:
                if database is None:
                    database = open_database(self.target)
                self.sweep(database, time.time())
                self.stats.last_sweep_at = time.time()
            except StorageError as exc:
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                if self.stats.errors in (1, 10) or self.stats.errors % 100 == 0:
                    log.warning("node watch: %s", exc)
        if database is not None:
            database.close()

    def sweep(self, database: Database, now: float) -> None:
        self.stats.sweeps += 1
        self._keep_life(database)
        listed = cluster.nodes(database)
        seen = {self.node: "self"}
        for row in listed:
            if row.name == self.node:
                continue
            free = database.lock_free(cluster.life_lock(row.name))
            seen[row.name] = "alive" if not free else \
                "dead" if self.dead.is_taken(row.name) else "suspected"
            if not self.dead.observe(row.name, free, now):
                continue
            # Dead for the grace: its lock held while its calls are recovered, so only
            # one node does it (another quicker one holds it: nothing to do here).
            lock = database.try_hold(cluster.life_lock(row.name))
            if lock is None:
                continue
            try:
                seen[row.name] = "dead"
                count = recover(database, now, node=row.name, hang_up=self.hang_up)
                self.dead.taken_over(row.name)
                self.stats.takeovers += 1
                self.stats.calls_recovered += count
                log.warning("node %s is gone: took over (%d calls recovered)",
                            row.name, count)
            finally:
                lock.release()
        names = {row.name for row in listed}
        for name in list(self.dead.suspected):
            if name not in names:
                self.dead.forget(name)
        self.stats.suspected = self.dead.suspected
        self.stats.nodes = seen
        self._take_jobs(database)

    def _take_jobs(self, database: Database) -> None:
        """Each job not running here yet, when its lock is free: this node's from now on
        (until it stops; the lock goes with it, and the next node to look takes it).
        A job whose lock the database lost (a restart ends every session) is taken back
        at once, or, when another node was quicker, stopped here: never run twice for
        longer than a sweep."""
        for name, job in self.jobs.items():
            held = self.job_locks.get(name)
            if held is not None:
                if held.held():
                    continue
                held.release()
                del self.job_locks[name]
                again = database.try_hold(cluster.job_lock(name))
                if again is not None:
                    self.job_locks[name] = again
                    log.warning("node %s: the database dropped the %s lock; taken back",
                                self.node, name)
                    continue
                self.stats.jobs.remove(name)
                self.stats.jobs_handed_over += 1
                log.warning("node %s: another node took the cluster's %s after the "
                            "database dropped its lock; stopping it here", self.node, name)
                job.stop()
                continue
            lock = database.try_hold(cluster.job_lock(name))
            if lock is None:
                continue
            self.job_locks[name] = lock
            self.stats.jobs.append(name)
            log.info("node %s runs the cluster's %s", self.node, name)
            job.start()

    def _keep_life(self, database: Database) -> None:
        """Our own lock, taken back when the database lost it (a restart)."""
        if self.life is not None and self.life.held():
            return
        if self.life is not None:
            self.life.release()
            self.life = None
            self.stats.life_lost += 1
            log.warning("node %s: the database dropped its life lock; taking it back",
                        self.node)
        self.life = database.try_hold(cluster.life_lock(self.node))
        if self.life is None:
            log.error("node %s: its life lock is held by another process (a node "
                      "with the same --node name?)", self.node)
