"""Messages between the engine and its relay workers: length-prefixed pickles over a
socketpair both ends of which belong to this program (never a network peer), so pickle's
trust model holds and tuples cost nothing to encode."""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

_LEN = struct.Struct("!I")
REPORT_INTERVAL = 0.5  # seconds between a worker's reports (counters, last packets, lag)
MAX_FRAME = 64 * 1024 * 1024  # a report of every session of a full worker stays far below


def frame(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> tuple[Any, ...] | None:
    """The next message, or None at end of stream (the other process is gone)."""
    try:
        head = await reader.readexactly(_LEN.size)
        (size,) = _LEN.unpack(head)
        if size > MAX_FRAME:
            raise ValueError(f"relay worker message of {size} bytes")
        message: tuple[Any, ...] = pickle.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    return message
