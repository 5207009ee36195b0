"""The engine's local control channel: frames of :mod:`b2bua.ipc` over a Unix socket.

Live state (active calls, security counters, the engine's view of parameters) lives
in the engine process; the API, running under gunicorn in other processes, asks for
it here. A request is a map ``{"op": ..., **args}``, its reply ``{"ok": true, "result":
...}`` or ``{"ok": false, "error": ...}``; several may follow on one connection. The
socket file is mode 600.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from b2bua import ipc

log = logging.getLogger("b2bua.control")

Handler = Callable[[dict[str, Any]], Awaitable[Any] | Any]
MAX_REQUEST = 1 << 20
MAX_REPLY = 16 << 20  # every call of a full engine
CHANNEL = "control socket"


class ControlError(RuntimeError):
    """The engine could not be reached or refused the request."""


class ControlServer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handlers: dict[str, Handler] = {}
        self._server: asyncio.AbstractServer | None = None

    def register(self, op: str, handler: Handler) -> None:
        self._handlers[op] = handler

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.path.exists():
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while (request := await ipc.read(reader, CHANNEL, MAX_REQUEST)) is not None:
                writer.write(ipc.encode(await self._dispatch(request)))
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _dispatch(self, request: Any) -> dict[str, Any]:
        try:
            op = request["op"]
            handler = self._handlers[op]
        except (ValueError, KeyError, TypeError):
            return {"ok": False, "error": "unknown or malformed request"}
        try:
            result = handler(request)
            if asyncio.iscoroutine(result):
                result = await result
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception:
            log.exception("control op %s failed", op)
            return {"ok": False, "error": "internal error"}
        return {"ok": True, "result": result}


async def ask(path: Path | str, op: str, timeout: float = 2.0, **args: Any) -> Any:
    """Asynchronous client, for one engine asking another (signalling workers)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)),
                                                timeout)
        try:
            writer.write(ipc.encode({"op": op, **args}))
            reply = await asyncio.wait_for(ipc.read(reader, CHANNEL, MAX_REPLY), timeout)
        finally:
            writer.close()
    except (OSError, TimeoutError) as exc:
        raise ControlError(f"engine not reachable: {exc}") from exc
    return _result(reply)


def request(path: Path | str, op: str, timeout: float = 2.0, **args: Any) -> Any:
    """Synchronous client for the API processes; raises ControlError when unreachable."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(ipc.encode({"op": op, **args}))
            reply = ipc.recv(sock, MAX_REPLY)
    except ipc.FrameError as exc:
        ipc.malformed[CHANNEL] += 1
        raise ControlError(f"malformed engine reply: {exc}") from exc
    except OSError as exc:
        raise ControlError(f"engine not reachable: {exc}") from exc
    return _result(reply)


def _result(reply: Any) -> Any:
    if not isinstance(reply, dict):
        raise ControlError("malformed engine reply")
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "engine error")))
    return reply.get("result")
