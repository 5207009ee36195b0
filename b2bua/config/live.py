"""Live configuration: the engine's typed view of the stored config, refreshed on change.

The API writes config in another process. The engine notices within a poll
interval without reading any config table on the hot path: the database's change
marker (SQLite's ``data_version``, changed by other connections' commits; PostgreSQL's
count of the config triggers' notifications) is checked every ``POLL_INTERVAL``; only
when it moved are the per-table change counters read, and only the tables whose counter
moved are reloaded.

Those reads run in a thread, never on the event loop: a database server that stops
answering (hung, or cut off by the network with no reset) would otherwise stall
signalling until it answers again. What was read is then applied on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from b2bua.config.registry import REGISTRY, defaults
from b2bua.storage.backend import Database, StorageError
from b2bua.storage.config_versions import change_counters

POLL_INTERVAL = 0.2

log = logging.getLogger("b2bua.config")

T = TypeVar("T")
Read = Callable[[Database], Any]
Apply = Callable[[Any], object]


class Params:
    """Current parameter values, replaced as a whole on reload (readers never lock)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = defaults()
        self.loaded_at = 0.0

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def flag(self, name: str) -> bool:
        return bool(self.values[name] == "On")

    def integer(self, name: str) -> int:
        return int(self.values[name])

    def replace(self, new: dict[str, Any]) -> None:
        """Take every parameter's value at once (b2bua/storage/params_store.py reads them)."""
        changed = {k: v for k, v in new.items() if self.values.get(k) != v}
        self.values = new
        self.loaded_at = time.time()
        for name, value in changed.items():
            log.info("parameter %s=%s live=%s", name, value, REGISTRY[name].live)


@dataclass
class _Changes:
    """What a poll read: the marker and counters it saw, and the new contents of the
    tables whose counter moved, each with what applies it."""

    marker: int
    versions: dict[str, int]
    contents: list[tuple[Apply, Any]] = field(default_factory=list)


class ConfigWatcher:
    """Polls for committed config changes; reads what changed off the event loop and
    applies it on the loop, table by table.

    ``database`` is the watcher's own: :meth:`run` reads it from another thread (one
    read at a time, never while the loop asks for the change marker).
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._tables: dict[str, tuple[Read, Apply]] = {}
        self._versions: dict[str, int] = {}
        self._marker: int | None = None
        self._reading = False
        self.reloads = 0

    def register(self, table: str, read: Callable[[Database], T],
                 apply: Callable[[T], object]) -> None:
        """On a change of ``table``: ``read`` it (in a thread), then ``apply`` what was
        read (on the loop)."""
        self._tables[table] = (read, apply)

    def load_all(self) -> None:
        """Read and apply every table, here and now (at start-up, before serving)."""
        self._marker = self._database.change_marker()
        self._versions = change_counters(self._database)
        for read, apply in self._tables.values():
            apply(read(self._database))

    def poll(self) -> bool:
        """Reload what changed since the last poll, in this thread; True when anything
        was reloaded."""
        marker = self._database.change_marker()
        if marker == self._marker:
            return False
        return self._apply(self._read(marker))

    def _read(self, marker: int) -> _Changes:
        versions = change_counters(self._database)
        changes = _Changes(marker, versions)
        for table, version in versions.items():
            if self._versions.get(table) != version and table in self._tables:
                read, apply = self._tables[table]
                changes.contents.append((apply, read(self._database)))
        return changes

    def _apply(self, changes: _Changes) -> bool:
        """Take in what was read: only now are the marker and counters taken as seen,
        so a read that failed is tried again at the next poll."""
        moved = [t for t, v in changes.versions.items() if self._versions.get(t) != v]
        self._marker, self._versions = changes.marker, changes.versions
        for apply, content in changes.contents:
            apply(content)
            self.reloads += 1
        return bool(moved)

    async def run(self, interval: float = POLL_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                marker = self._database.change_marker()  # never waits on the server
                if marker == self._marker:
                    continue
                self._reading = True
                try:
                    changes = await _in_thread(functools.partial(self._read, marker))
                finally:
                    self._reading = False
            except StorageError as exc:
                # A locked, busy or unreachable database delays the reload; the next
                # poll retries.
                log.warning("config poll failed: %s", exc)
                continue
            self._apply(changes)

    def close(self) -> None:
        """Close the watcher's database, unless a read still uses it (a server that does
        not answer): that thread ends with the process."""
        if not self._reading:
            self._database.close()


async def _in_thread(work: Callable[[], T]) -> T:
    """``work()`` in a daemon thread of its own (a read the server never answers must not
    keep the process from exiting, as an executor's thread would)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.cancelled():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = work(), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody awaits it
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="config-read", daemon=True).start()
    return await done
