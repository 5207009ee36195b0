"""The one framing between the softswitch's processes: a 4-byte big-endian length, then
a msgpack body.

Used on the engine's control socket, the relay workers' socketpairs and the signalling
workers' channels (``docs/architecture.md``, "Between processes"). msgpack, not pickle:
a frame from a peer that went wrong can only ever decode to plain data (lists, dicts,
str, bytes, numbers), never run code; not JSON: SIP messages travel as bytes, unescaped.
Arrays decode as lists. A frame longer than its channel's maximum, cut short or not
msgpack is :class:`FrameError`: the stream readers log and count it, and the caller
closes the connection; nothing here raises anything else on bad input.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections import Counter
from typing import Any

import msgpack

log = logging.getLogger("b2bua.ipc")

HEADER = struct.Struct("!I")  # its size, 4, is written as a literal in decode()
MAX_FRAME = 16 << 20  # the default bound; a channel may set its own
# Frames refused, by channel name: a bug or a stray writer, never normal traffic.
malformed: Counter[str] = Counter()


class FrameError(ValueError):
    """A frame that is too long, cut short or not msgpack."""


def _fallback(value: object) -> str:
    # What msgpack has no type for (a Path, a datetime) travels as its text, as the
    # control socket's JSON did with default=str.
    return str(value)


_packer = msgpack.Packer(use_bin_type=True, default=_fallback)
_unpackb = msgpack.unpackb  # str as str, bin as bytes (msgpack 1.0's defaults)
_unpack_length = HEADER.unpack_from


def encode(message: Any) -> bytes:
    """One whole frame: the length, then the body."""
    body: bytes = _packer.pack(message)
    return HEADER.pack(len(body)) + body


def decode_body(body: bytes, max_size: int = MAX_FRAME) -> Any:
    if len(body) > max_size:
        raise FrameError(f"frame of {len(body)} bytes, over {max_size}")
    try:
        return _unpackb(body, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        # ExtraData and FormatError are ValueErrors; a stack overflow of nested arrays
        # is an UnpackValueError; a map key that cannot be hashed a TypeError.
        raise FrameError(f"malformed frame: {exc}") from None


def decode(data: bytes, max_size: int = MAX_FRAME) -> Any:
    """A frame that arrived whole (a datagram): its length must match what follows.
    Written flat: a signalling worker decodes every SIP datagram with it."""
    size = len(data) - 4
    if size < 0 or size > max_size or _unpack_length(data)[0] != size:
        raise FrameError(_why(data, max_size))
    try:
        return _unpackb(data[4:], strict_map_key=False)  # a copy: cheaper than a view
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise FrameError(f"malformed frame: {exc}") from None


def _why(data: bytes, max_size: int) -> str:
    if len(data) < HEADER.size:
        return f"frame of {len(data)} bytes has no length"
    size = len(data) - HEADER.size
    if size > max_size:
        return f"frame of {size} bytes, over {max_size}"
    return f"frame says {_unpack_length(data)[0]} bytes, holds {size}"


def _check_size(size: int, max_size: int) -> None:
    if size > max_size:
        raise FrameError(f"frame of {size} bytes, over {max_size}")


def _refused(channel: str, exc: FrameError) -> None:
    malformed[channel] += 1
    log.warning("%s: %s; closing the connection", channel, exc)


async def read(reader: asyncio.StreamReader, channel: str, max_size: int = MAX_FRAME
               ) -> Any | None:
    """The next message from a stream, or None when the stream ended (the other process
    is gone) or sent a bad frame (logged and counted: the caller then closes it)."""
    try:
        (size,) = HEADER.unpack(await reader.readexactly(HEADER.size))
        _check_size(size, max_size)
        return decode_body(await reader.readexactly(size), max_size)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    except FrameError as exc:
        _refused(channel, exc)
        return None


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(min(size - len(buf), 1 << 20))
        if not chunk:
            raise FrameError(f"stream ended {size - len(buf)} bytes short")
        buf += chunk
    return bytes(buf)


def recv(sock: socket.socket, max_size: int = MAX_FRAME) -> Any:
    """The next message from a blocking socket; FrameError when it ends or sends a bad
    frame, OSError (a timeout too) as the socket raises it."""
    (size,) = HEADER.unpack(_recv_exactly(sock, HEADER.size))
    _check_size(size, max_size)
    return decode_body(_recv_exactly(sock, size), max_size)
