"""The engine's control socket (b2bua/control.py) on b2bua.ipc frames: requests and
replies, and a client that sends garbage loses its connection, not the engine."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from b2bua import control, ipc


async def _with_server(path: Path, body: Any) -> Any:
    server = control.ControlServer(path)
    server.register("echo", lambda request: {"args": request.get("args"), "path": path})
    server.register("fail", lambda request: 1 / 0)
    await server.start()
    try:
        return await body()
    finally:
        await server.close()


def test_requests_and_replies(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"

    async def body() -> None:
        assert await control.ask(path, "echo", args=[1, "x", b"\x00"]) == \
            {"args": [1, "x", b"\x00"], "path": str(path)}  # a Path travels as its text
        reply = await asyncio.to_thread(control.request, path, "echo", args={"k": None})
        assert reply == {"args": {"k": None}, "path": str(path)}
        with pytest.raises(control.ControlError, match="internal error"):
            await control.ask(path, "fail")
        with pytest.raises(control.ControlError, match="unknown or malformed"):
            await asyncio.to_thread(control.request, path, "nope")

    asyncio.run(_with_server(path, body))


@pytest.mark.parametrize("garbage", [
    b"\x00\x00\x00\x01\xc1",  # not msgpack
    b"\x7f\xff\xff\xff",  # a 2 GB request
    b'{"op": "status"}\n',  # the old JSON line: its first four bytes read as a length
])
def test_a_bad_frame_closes_that_connection_only(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "engine.sock"

    def send_garbage() -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(path))
            sock.sendall(garbage)
            return sock.recv(100)

    async def body() -> None:
        before = ipc.malformed[control.CHANNEL]
        assert await asyncio.to_thread(send_garbage) == b""  # closed, no reply
        assert ipc.malformed[control.CHANNEL] == before + 1
        assert (await control.ask(path, "echo"))["args"] is None  # still serving

    asyncio.run(_with_server(path, body))


def test_a_reply_that_is_not_a_frame_is_a_control_error(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen()

    async def body() -> None:
        task = asyncio.create_task(asyncio.to_thread(control.request, path, "status", 2.0))
        conn, _ = await asyncio.to_thread(listener.accept)
        assert ipc.recv(conn) == {"op": "status"}
        conn.sendall(b"\x00\x00\x00\x02\x92")  # an array cut short
        conn.close()
        with pytest.raises(control.ControlError, match="malformed"):
            await task

    try:
        asyncio.run(body())
    finally:
        listener.close()
