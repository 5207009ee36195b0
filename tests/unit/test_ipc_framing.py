"""The one framing between processes (b2bua/ipc.py): what goes in comes out, and a bad
frame is refused, counted and ends the stream, never an exception to the caller."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua import ipc

PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text() | st.binary(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text() | st.integers(0, 99), inner),
    max_leaves=20)


@given(PLAIN)
def test_round_trip(message: Any) -> None:
    assert ipc.decode(ipc.encode(message)) == message


def test_tuples_come_back_as_lists_and_unknown_types_as_text() -> None:
    assert ipc.decode(ipc.encode(("open", 7, (1, 2)))) == ["open", 7, [1, 2]]
    assert ipc.decode(ipc.encode({"path": Path("/x/y"), 3: b"\x00\xff"})) == \
        {"path": "/x/y", 3: b"\x00\xff"}


def test_the_length_comes_first_big_endian() -> None:
    frame = ipc.encode("abc")
    assert frame[:4] == (len(frame) - 4).to_bytes(4, "big")


@pytest.mark.parametrize("data", [
    b"",  # no length at all
    b"\x00\x00",  # half a length
    ipc.encode(["udp", "h", 1, b"x" * 100])[:-1],  # cut short
    ipc.encode([1, 2]) + b"\x00",  # more than the length says
    b"\x00\x00\x00\x01\xc1",  # 0xc1: never used by msgpack
    b"\x00\x00\x00\x03\x93\x01\x02",  # an array of 3 holding 2
    b"\x00\x00\x00\x02\x81\x90",  # a map keyed by a list
    b"\x00\x00\x00\x05\xc7\x00\x05",  # an ext type cut short
])
def test_garbage_is_a_frame_error(data: bytes) -> None:
    with pytest.raises(ipc.FrameError):
        ipc.decode(data)


def test_an_oversized_frame_is_refused_before_its_body_is_read() -> None:
    frame = ipc.encode(b"x" * 1000)
    with pytest.raises(ipc.FrameError, match="over 100"):
        ipc.decode(frame, max_size=100)
    assert ipc.decode(frame, max_size=2000) == b"x" * 1000


def _read_all(data: bytes, max_size: int = ipc.MAX_FRAME) -> list[Any]:
    async def run() -> list[Any]:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        out = []
        while (message := await ipc.read(reader, "test", max_size)) is not None:
            out.append(message)
        return out
    return asyncio.run(run())


def test_a_stream_reads_frame_by_frame_and_ends_cleanly() -> None:
    assert _read_all(ipc.encode("a") + ipc.encode([1, {"b": None}])) == ["a", [1, {"b": None}]]
    assert _read_all(ipc.encode("a") + ipc.encode("bc")[:-1]) == ["a"]  # cut: ended


def test_a_stream_stops_at_a_bad_frame_and_counts_it() -> None:
    before = ipc.malformed["test"]
    assert _read_all(ipc.encode("a") + b"\x00\x00\x00\x01\xc1" + ipc.encode("never")) == ["a"]
    # Oversized: refused from its length alone (the 4 GB body is never waited for).
    assert _read_all(b"\xff\xff\xff\xff" + b"x" * 10, max_size=1000) == []
    assert ipc.malformed["test"] == before + 2


def test_recv_on_a_blocking_socket() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.sendall(ipc.encode({"op": "status"}) + b"\x00\x00\x10\x00")
        assert ipc.recv(theirs) == {"op": "status"}
        with pytest.raises(ipc.FrameError, match="over"):
            ipc.recv(theirs, max_size=100)
        ours.sendall(b"\x00\x00\x00\x09abc")
        ours.shutdown(socket.SHUT_WR)
        with pytest.raises(ipc.FrameError, match="short"):
            ipc.recv(theirs)


def test_a_relay_channel_ends_at_a_message_that_is_not_one_of_ours() -> None:
    from b2bua.media.ipc import CHANNEL, frame, read_message

    async def run() -> list[Any]:
        reader = asyncio.StreamReader()
        reader.feed_data(frame(("opened", 1, (20000, 20002), 2)) + ipc.encode({"x": 1})
                         + frame(("rtp_start", 1)))
        reader.feed_eof()
        return [await read_message(reader), await read_message(reader)]

    before = ipc.malformed[CHANNEL]
    assert asyncio.run(run()) == [["opened", 1, [20000, 20002], 2], None]
    assert ipc.malformed[CHANNEL] == before + 1
