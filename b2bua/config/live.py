"""Live configuration: the engine's typed view of SQLite config, refreshed on change.

The API writes config in another process. The engine notices within a poll
interval without reading any config table on the hot path: ``PRAGMA data_version``
(a counter SQLite keeps per connection, changed by other connections' commits)
is checked every ``POLL_INTERVAL``; only when it moved are the per-table counters in
``config_versions`` read, and only the tables whose counter moved are reloaded.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Any

from b2bua.config.registry import REGISTRY, defaults
from b2bua.storage.params_store import load_values

POLL_INTERVAL = 0.2

log = logging.getLogger("b2bua.config")

Loader = Callable[[sqlite3.Connection], None]


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

    def load(self, conn: sqlite3.Connection) -> None:
        new = load_values(conn)
        changed = {k: v for k, v in new.items() if self.values.get(k) != v}
        self.values = new
        self.loaded_at = time.time()
        for name, value in changed.items():
            log.info("parameter %s=%s live=%s", name, value, REGISTRY[name].live)


class ConfigWatcher:
    """Polls for committed config changes and calls the loader of each changed table."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._loaders: dict[str, Loader] = {}
        self._versions: dict[str, int] = {}
        self._data_version: int | None = None
        self.reloads = 0

    def register(self, table: str, loader: Loader) -> None:
        self._loaders[table] = loader

    def load_all(self) -> None:
        self._data_version = self._read_data_version()
        self._versions = self._read_versions()
        for loader in self._loaders.values():
            loader(self._conn)

    def poll(self) -> bool:
        """Reload what changed since the last poll; True when anything was reloaded."""
        data_version = self._read_data_version()
        if data_version == self._data_version:
            return False
        self._data_version = data_version
        versions = self._read_versions()
        changed = [t for t, v in versions.items() if self._versions.get(t) != v]
        self._versions = versions
        for table in changed:
            loader = self._loaders.get(table)
            if loader is not None:
                loader(self._conn)
                self.reloads += 1
        return bool(changed)

    async def run(self, interval: float = POLL_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.poll()
            except sqlite3.Error as exc:
                # A locked or busy database delays the reload; the next poll retries.
                log.warning("config poll failed: %s", exc)

    def _read_data_version(self) -> int:
        return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    def _read_versions(self) -> dict[str, int]:
        return {
            str(row[0]): int(row[1])
            for row in self._conn.execute("SELECT table_name, version FROM config_versions")
        }
