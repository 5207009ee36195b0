"""The engine's local control channel: JSON lines over a Unix socket.

Live state (active calls, security counters, the engine's view of parameters) lives
in the engine process; the API, running under gunicorn in other processes, asks for
it here. One request line, one reply line; the socket file is mode 600.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("b2bua.control")

Handler = Callable[[dict[str, Any]], Awaitable[Any] | Any]
MAX_LINE = 1 << 20


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
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                       limit=MAX_LINE)
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self.path.exists():
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await self._dispatch(line)
                writer.write(json.dumps(reply, default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
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
    payload = json.dumps({"op": op, **args}).encode() + b"\n"
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=MAX_LINE * 16), timeout)
        try:
            writer.write(payload)
            line = await asyncio.wait_for(reader.readline(), timeout)
        finally:
            writer.close()
    except (OSError, TimeoutError, ValueError) as exc:
        raise ControlError(f"engine not reachable: {exc}") from exc
    return _result(line)


def request(path: Path | str, op: str, timeout: float = 2.0, **args: Any) -> Any:
    """Synchronous client for the API processes; raises ControlError when unreachable."""
    payload = json.dumps({"op": op, **args}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(payload)
            buf = b""
            while not buf.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > MAX_LINE * 16:
                    raise ControlError("engine reply too large")
    except OSError as exc:
        raise ControlError(f"engine not reachable: {exc}") from exc
    return _result(buf)


def _result(buf: bytes) -> Any:
    try:
        reply = json.loads(buf)
    except ValueError as exc:
        raise ControlError("malformed engine reply") from exc
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "engine error")))
    return reply.get("result")
