"""The engine process: owns the live state and runs every asyncio service of the switch."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from b2bua.config.live import ConfigWatcher, Params
from b2bua.control import ControlServer
from b2bua.options import EngineOptions
from b2bua.storage import db

log = logging.getLogger("b2bua.engine")

ShutdownHook = Callable[[], Awaitable[None]]

# Upper bound on all graceful-stop duties together (e.g. unregistering upstream).
SHUTDOWN_BUDGET = 8.0


class Engine:
    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.conn = db.connect(options.db_path)
        self.params = Params()
        self.watcher = ConfigWatcher(self.conn)
        self.watcher.register("parameters", self.params.load)
        self.control = ControlServer(options.control_path)
        self.control.register("status", self._status)
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._shutdown_hooks: list[ShutdownHook] = []

    def on_shutdown(self, hook: ShutdownHook) -> None:
        self._shutdown_hooks.append(hook)

    def spawn(self, coro: Awaitable[Any]) -> None:
        self._tasks.append(asyncio.ensure_future(coro))

    async def start(self) -> None:
        self.watcher.load_all()
        await self.control.start()
        self.spawn(self.watcher.run())
        log.info("engine started sip=%s control=%s", self.options.sip_listen,
                 self.options.control_path)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        await self.start()
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        log.info("engine stopping")
        for hook in self._shutdown_hooks:
            try:
                await asyncio.wait_for(hook(), SHUTDOWN_BUDGET)
            except TimeoutError:
                log.warning("shutdown duty %s timed out", getattr(hook, "__name__", hook))
            except Exception:
                log.exception("shutdown duty failed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.control.close()
        self.conn.close()
        log.info("engine stopped")

    def _status(self, _request: dict[str, Any]) -> dict[str, Any]:
        return {
            "uptime": round(time.time() - self.started_at, 3),
            "sip_listen": str(self.options.sip_listen),
            "params": self.params.values,
            "params_loaded_at": self.params.loaded_at,
            "config_reloads": self.watcher.reloads,
        }
