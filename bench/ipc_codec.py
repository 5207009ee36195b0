"""Encode + decode cost of one message between processes: the old formats against the
one framing of :mod:`b2bua.ipc` (4-byte length + msgpack).

    .venv/bin/python bench/ipc_codec.py [--number N]

Each line is the best of 5 runs of N round trips (encode on one side, decode on the
other, as each channel does it), in microseconds per message. The messages are the
hot ones: a relay worker's per-call updates and its half-second report, a SIP INVITE
through a signalling channel, and one control request with its reply.
"""

from __future__ import annotations

import argparse
import json
import pickle
import struct
import timeit
from collections.abc import Callable

from b2bua import ipc

LEN = struct.Struct("!I")

INVITE = (
    b"INVITE sip:15551234567@198.51.100.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f60718\r\n"
    b"Max-Forwards: 70\r\nContact: <sip:1001@203.0.113.5:5060>\r\n"
    b"To: <sip:15551234567@198.51.100.1>\r\nFrom: <sip:1001@203.0.113.5>;tag=9fxced76sl\r\n"
    b"Call-ID: 3848276298220188511@203.0.113.5\r\nCSeq: 1 INVITE\r\n"
    b"Content-Type: application/sdp\r\nContent-Length: 200\r\n\r\n" + b"v" * 200
)
REMOTE = ("remote", 123456, "a", "203.0.113.5", 40000, None, None)
OPENED = ("opened", 123456, (20000, 20002), 512)
COUNTERS = (1500, 240000, 0, 0, 0, 0, 0)
# Distinct values per session, as in a real report (pickle would share repeated objects).
REPORT = ("report", 0.0012, 512,
          [(sid, 12345.678 + sid, 12345.679 + sid, tuple(c + sid for c in COUNTERS),
            tuple(c + 2 * sid for c in COUNTERS)) for sid in range(256)])
REQUEST = {"op": "calls"}
REPLY = {"ok": True, "result": [{"call_id": f"c{i}@h", "state": "answered", "legs": 2,
                                 "started": 1700000000.5 + i} for i in range(20)]}


def pickle_round(message: object) -> Callable[[], object]:
    def run() -> object:
        body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        data = LEN.pack(len(body)) + body
        return pickle.loads(data[4:])
    return run


def text_head_round(payload: bytes) -> Callable[[], object]:
    host, port = "203.0.113.5", 5060

    def run() -> object:
        data = b"%s %d\n" % (host.encode(), port) + payload  # as the C dispatcher writes
        head, _, body = data.partition(b"\n")
        host_b, _, rest = head.partition(b" ")
        port_b, _, transport = rest.partition(b" ")
        return host_b.decode("ascii"), int(port_b), transport, body
    return run


def text_head_read(payload: bytes) -> Callable[[], object]:
    data = b"203.0.113.5 5060\n" + payload  # written by the C dispatcher, not timed

    def run() -> object:
        head, _, body = data.partition(b"\n")
        host_b, _, rest = head.partition(b" ")
        port_b, _, transport = rest.partition(b" ")
        return host_b.decode("ascii"), int(port_b), transport, body
    return run


def frame_read(message: list[object]) -> Callable[[], object]:
    data = ipc.encode(message)  # written by the C dispatcher, not timed

    def run() -> object:
        op, host, port, payload = ipc.decode(data, 70000)
        # the checks b2bua/aio/dispatched.py makes of each message
        assert (type(op) is str and type(host) is str and type(port) is int
                and type(payload) is bytes)
        return op, host, port, payload
    return run


def json_round(message: object) -> Callable[[], object]:
    def run() -> object:
        return json.loads(json.dumps(message, default=str).encode() + b"\n")
    return run


def msgpack_round(message: object) -> Callable[[], object]:
    def run() -> object:
        return ipc.decode(ipc.encode(message))
    return run


def best(run: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(run, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    n = parser.parse_args().number
    rows = [
        ("relay: remote (per call)", pickle_round(REMOTE), msgpack_round(REMOTE), n),
        ("relay: opened (per call)", pickle_round(OPENED), msgpack_round(OPENED), n),
        ("relay: report, 256 sessions", pickle_round(REPORT), msgpack_round(REPORT),
         max(1, n // 100)),
        ("signalling: INVITE, 1 datagram", text_head_round(INVITE),
         msgpack_round(["udp", "203.0.113.5", 5060, INVITE]), n),
        ("signalling: INVITE, worker's read", text_head_read(INVITE),
         frame_read(["udp", "203.0.113.5", 5060, INVITE]), n),
        ("control: calls request", json_round(REQUEST), msgpack_round(REQUEST), n),
        ("control: 20-call reply", json_round(REPLY), msgpack_round(REPLY), max(1, n // 10)),
    ]
    print(f"{'message':34} {'old µs':>8} {'msgpack µs':>11}")
    for name, old, new, number in rows:
        print(f"{name:34} {best(old, number):8.2f} {best(new, number):11.2f}")


if __name__ == "__main__":
    main()
