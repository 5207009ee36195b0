"""A signalling worker's channel (b2bua/aio/dispatched.py): frames of b2bua/ipc.py both
ways, from the C dispatcher and between workers; a bad datagram is dropped and counted,
and the ones after it still arrive."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from b2bua import ipc
from b2bua.aio.dispatched import (
    CHANNEL,
    ChannelReceiver,
    TcpForWorkers,
    TcpThroughWorker0,
    channel_pair,
)
from b2bua.aio.transport import TransportStats
from b2bua.options import EngineOptions, HostPort, PortRange
from b2bua.signalling import options_fd, read_options_fd
from b2bua.sip._dispatch import Dispatcher
from b2bua.sip.peer import Peer


class _Udp:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, Any]] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append((data, addr))


class _Tcp:
    def __init__(self) -> None:
        self.done: list[tuple[Any, ...]] = []
        self.stats = TransportStats()

    def send(self, data: bytes, host: str, port: int) -> None:
        self.done.append(("send", data, host, port))

    def trust(self, host: str, port: int) -> None:
        self.done.append(("trust", host, port))

    def close_untrusted(self, host: str, port: int) -> None:
        self.done.append(("close", host, port))


def _wait(sock: socket.socket) -> None:
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            sock.recv(1, socket.MSG_PEEK)
            return
        except BlockingIOError:
            time.sleep(0.005)


def test_a_worker_reads_the_dispatchers_frames_and_drops_bad_ones() -> None:
    sip = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sip.bind(("::1", 0))
    ours, theirs = channel_pair()
    dispatcher = Dispatcher(sip.fileno(), [ours.fileno()])
    dispatcher.start()
    sender = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sender.bind(("::1", 0))
    source = ("::1", sender.getsockname()[1])
    udp, tcp_got = _Udp(), []
    receiver = ChannelReceiver(theirs, udp, lambda data, peer: tcp_got.append((data, peer)))
    before = ipc.malformed[CHANNEL]
    try:
        big = b"OPTIONS " + b"x" * 60000
        sender.sendto(b"INVITE a", sip.getsockname())
        _wait(theirs)
        ours.send(b"INVITE a")  # not a frame
        ours.send(ipc.encode(["udp", "h", "5060", b"x"]))  # a port as text
        ours.send(ipc.encode(["what", "h", 1, b"x"]))  # an op nobody knows
        ours.send(ipc.encode(["tcp", "192.0.2.1", 5061, b"BYE b"]))
        sender.sendto(big, sip.getsockname())
        time.sleep(0.2)
        receiver.drain()
    finally:
        dispatcher.stop()
        for sock in (sip, ours, theirs, sender):
            sock.close()
    assert udp.got == [(b"INVITE a", source), (big, source)]
    assert tcp_got == [(b"BYE b", Peer("tcp", "192.0.2.1", 5061))]
    assert receiver.malformed == 3 and ipc.malformed[CHANNEL] == before + 3


def test_tcp_through_worker_0_and_back() -> None:
    ours, theirs = channel_pair()
    unused = socket.socket()  # channel 0: worker 0's own
    try:
        stats = TransportStats()
        worker = TcpThroughWorker0(theirs, stats)
        tcp = _Tcp()
        worker0 = TcpForWorkers([unused, ours], tcp)  # type: ignore[arg-type]
        worker.send(b"INVITE c", "2001:db8::1", 5060)
        worker.trust("192.0.2.7", 5062)
        worker.close_untrusted("192.0.2.8", 5063)
        theirs.send(ipc.encode(["send", "h", 1]))  # three, not four
        worker0.drain(1)
        assert tcp.done == [("send", b"INVITE c", "2001:db8::1", 5060),
                            ("trust", "192.0.2.7", 5062), ("close", "192.0.2.8", 5063)]
        assert worker0.malformed == 1 and stats.send_errors == 0
    finally:
        for sock in (ours, theirs, unused):
            sock.close()


def test_a_workers_options_travel_in_a_descriptor_it_closes() -> None:
    options = EngineOptions(database="postgresql://ss:secret@db.example/softswitch",
                            sip_listen=HostPort("127.0.0.1", 5060),
                            media_ports=PortRange(20000, 40000), public_address=None,
                            control_path=Path("/srv/ss/engine.sock"), var_dir=Path("/srv/ss"),
                            signalling_workers=2)
    fd = options_fd(options)
    assert read_options_fd(fd) == options
    with pytest.raises(OSError):
        os.fstat(fd)  # closed once read
    garbage = os.memfd_create("garbage", 0)
    os.write(garbage, b"\x00\x00\x00\x01\xc1")
    with pytest.raises(ipc.FrameError):
        read_options_fd(garbage)
