"""The roll-up: finished calls' CDRs added to the gateways' stored quality cells.

One roll-up runs for the whole installation: in the engine of a switch on its own, on
the node that holds the ``stats`` job's lock in a cluster (docs/cluster.md). It reads
the CDRs after its cursor in batches, each batch's cells and the cursor committed
together (``storage/gateway_stats.py``), so a restart or a crash counts no call twice
and misses none; then it deletes the periods past their keeping time.

It runs in a process of its own, started with the job: a run every 10 s at 1000
calls/s reads and sums 10,000 CDRs, a quarter of a second of Python that in the engine
would hold its event loop (and the GIL) back from signalling.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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


_opened: dict[str, Database] = {}  # in the roll-up's process: its connection


def roll_up_at(target: str, now: float, keep: dict[int, float]) -> int:
    """:func:`roll_up` in the roll-up's process, on a connection it keeps between runs
    (opened again after a failure)."""
    database = _opened.get(target)
    if database is None:
        database = _opened[target] = open_database(target)
    try:
        return roll_up(database, now, keep)
    except StorageError:
        _opened.pop(target, None)
        database.close()
        raise


class StatsRollup:
    """Runs :func:`roll_up` every ``SS_GATEWAY_STATS_INTERVAL`` seconds in a process of
    its own, while started (a job the engine starts and stops)."""

    def __init__(self, target: str | Path, params: Callable[[str], int]) -> None:
        self.target = str(target)
        self.params = params
        self.state = RollupState()
        self._task: asyncio.Task[None] | None = None
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._end_pool()

    async def close(self) -> None:
        """Stop. What is not counted yet is counted by the next start's first run (the
        cursor is in the database), so a stop spends none of its budget here."""
        self.stop()

    def snapshot(self) -> dict[str, Any]:
        return {"running": self._task is not None, **self.state.__dict__}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.params("SS_GATEWAY_STATS_INTERVAL"))
            await self._once()

    async def _once(self) -> None:
        if self._pool is None:
            # spawn: a fresh interpreter, nothing of the engine's loop or threads in it.
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        try:
            self.state.calls += await loop.run_in_executor(
                self._pool, roll_up_at, self.target, time.time(), keeping(self.params))
            self.state.runs += 1
            self.state.last_run_at = time.time()
        except (StorageError, BrokenProcessPool) as exc:
            # The database is away or busy, or the process died: the cursor did not
            # move; the next run starts again where this one stopped.
            self.state.errors += 1
            self.state.last_error = str(exc) or type(exc).__name__
            log.warning("gateway statistics roll-up failed: %s", self.state.last_error)
            if isinstance(exc, BrokenProcessPool):
                self._end_pool()

    def _end_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
