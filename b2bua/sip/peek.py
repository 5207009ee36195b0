"""The Call-ID or the start line read from a SIP message's bytes without parsing it: for
what only keeps or forwards messages (call ladders, HEP export), where a parse would
cost more than the rest of the work."""

from __future__ import annotations

import re

# A header line's start, any case, the compact form too (RFC 3261 7.3.3).
_CALL_ID = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?\n", re.IGNORECASE)
MAX_FIRST_LINE = 300


def call_id_of(data: bytes) -> str | None:
    """The Call-ID in the header part of ``data``; None when it has none."""
    end = data.find(b"\r\n\r\n")
    match = _CALL_ID.search(data, 0, len(data) if end < 0 else end + 2)
    return match.group(1).decode("utf-8", "surrogateescape") if match else None


def first_line(data: bytes) -> str:
    """The request or status line, bounded, as text."""
    end = data.find(b"\r\n")
    line = data[:MAX_FIRST_LINE] if end < 0 else data[:min(end, MAX_FIRST_LINE)]
    return line.decode("utf-8", "replace")
