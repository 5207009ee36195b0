"""Messages between the engine and its relay workers: frames of :mod:`b2bua.ipc` over a
socketpair. Arrays arrive as lists, so a tuple sent comes out a list."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from b2bua import ipc

log = logging.getLogger("b2bua.media.ipc")
CHANNEL = "relay worker channel"

REPORT_INTERVAL = 0.5  # seconds between a worker's reports (counters, last packets, lag)
MAX_FRAME = 64 * 1024 * 1024  # a report of every session of a full worker stays far below


def frame(message: tuple[Any, ...]) -> bytes:
    return ipc.encode(message)


async def read_message(reader: asyncio.StreamReader) -> list[Any] | None:
    """The next message, or None at end of stream (the other process is gone) or at a
    bad frame (logged and counted; the caller then closes the channel)."""
    message = await ipc.read(reader, CHANNEL, MAX_FRAME)
    if message is None:
        return None
    if not isinstance(message, list) or len(message) < 2:
        refused(message)
        return None
    return message


def refused(message: object) -> None:
    """A message that decoded but is not one of ours: a bug, counted and logged."""
    ipc.malformed[CHANNEL] += 1
    log.error("%s: unexpected message %.200r; closing it", CHANNEL, message)
