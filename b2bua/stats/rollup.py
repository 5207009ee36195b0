"""The roll-up: finished calls' CDRs added to the gateways' stored quality cells.

One roll-up runs for the whole installation: in the engine of a switch on its own, on
the node that holds the ``stats`` job's lock in a cluster (docs/cluster.md). It reads
the CDRs after its cursor in batches, each batch's cells and the cursor committed
together (``storage/gateway_stats.py``), so a restart or a crash counts no call twice
and misses none; then it deletes the periods past their keeping time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from b2bua.stats.quality import period_cells
from b2bua.storage import gateway_stats, open_database
from b2bua.storage.backend import Database, StorageError

log = logging.getLogger("b2bua.stats")

BATCH = 2000
MAX_BATCHES = 25  # per run: a backlog is worked off over the next runs
DAY = 86400.0


def keeping(params: Callable[[str], int]) -> dict[int, float]:
    """Each step's keeping time (s), from the SS_GATEWAY_STATS_*_DAYS parameters."""
    return {60: params("SS_GATEWAY_STATS_MINUTE_DAYS") * DAY,
            3600: params("SS_GATEWAY_STATS_HOUR_DAYS") * DAY,
            86400: params("SS_GATEWAY_STATS_DAY_DAYS") * DAY}


def roll_up(database: Database, now: float, keep: dict[int, float]) -> int:
    """Add the CDRs not yet counted to the cells; the number of calls added."""
    counted = 0
    for _ in range(MAX_BATCHES):
        batch = gateway_stats.calls_after(database, gateway_stats.cursor(database), BATCH)
        if not batch:
            break
        gateway_stats.add_cells(database, period_cells(batch), int(batch[-1][0]["id"]))
        counted += len(batch)
        if len(batch) < BATCH:
            break
    gateway_stats.prune(database, [(step, now - seconds) for step, seconds in keep.items()])
    return counted


@dataclass
class RollupState:
    runs: int = 0
    calls: int = 0
    errors: int = 0
    last_error: str | None = None
    last_run_at: float | None = None


class StatsRollup:
    """Runs :func:`roll_up` every ``SS_GATEWAY_STATS_INTERVAL`` seconds, in a thread with
    a connection of its own, while started (a job the engine starts and stops)."""

    def __init__(self, target: str | Path, params: Callable[[str], int]) -> None:
        self.target = target
        self.params = params
        self.state = RollupState()
        self._task: asyncio.Task[None] | None = None
        self._database: Database | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def close(self) -> None:
        """Stop. What is not counted yet is counted by the next start's first run (the
        cursor is in the database), so a stop spends none of its budget here."""
        self.stop()
        if self._database is not None:
            database, self._database = self._database, None
            await asyncio.to_thread(database.close)

    def snapshot(self) -> dict[str, Any]:
        return {"running": self._task is not None, **self.state.__dict__}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.params("SS_GATEWAY_STATS_INTERVAL"))
            await asyncio.to_thread(self._once)

    def _once(self) -> None:
        try:
            if self._database is None:
                self._database = open_database(self.target)
            self.state.calls += roll_up(self._database, time.time(), keeping(self.params))
            self.state.runs += 1
            self.state.last_run_at = time.time()
        except StorageError as exc:
            # The database is away or busy: the cursor did not move; the next run
            # starts again where this one stopped, on a fresh connection.
            self.state.errors += 1
            self.state.last_error = str(exc)
            log.warning("gateway statistics roll-up failed: %s", exc)
            if self._database is not None:
                try:
                    self._database.close()
                finally:
                    self._database = None
