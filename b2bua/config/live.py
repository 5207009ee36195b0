"""Live configuration: the engine's typed view of the stored config, refreshed on change.

The API writes config in another process. The engine notices within a poll
interval without reading any config table on the hot path: the database's change
marker (SQLite's ``data_version``, changed by other connections' commits) is checked
every ``POLL_INTERVAL``; only when it moved are the per-table change counters read, and
only the tables whose counter moved are reloaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from b2bua.config.registry import REGISTRY, defaults
from b2bua.storage.backend import Database, StorageError
from b2bua.storage.config_versions import change_counters

POLL_INTERVAL = 0.2

log = logging.getLogger("b2bua.config")

Loader = Callable[[Database], None]


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


class ConfigWatcher:
    """Polls for committed config changes and calls the loader of each changed table."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._loaders: dict[str, Loader] = {}
        self._versions: dict[str, int] = {}
        self._marker: int | None = None
        self.reloads = 0

    def register(self, table: str, loader: Loader) -> None:
        self._loaders[table] = loader

    def load_all(self) -> None:
        self._marker = self._database.change_marker()
        self._versions = change_counters(self._database)
        for loader in self._loaders.values():
            loader(self._database)

    def poll(self) -> bool:
        """Reload what changed since the last poll; True when anything was reloaded."""
        marker = self._database.change_marker()
        if marker == self._marker:
            return False
        self._marker = marker
        versions = change_counters(self._database)
        changed = [t for t, v in versions.items() if self._versions.get(t) != v]
        self._versions = versions
        for table in changed:
            loader = self._loaders.get(table)
            if loader is not None:
                loader(self._database)
                self.reloads += 1
        return bool(changed)

    async def run(self, interval: float = POLL_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.poll()
            except StorageError as exc:
                # A locked or busy database delays the reload; the next poll retries.
                log.warning("config poll failed: %s", exc)
