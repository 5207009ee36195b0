"""The SIP dispatcher (b2bua/sip/_dispatch.c): its routing rule, and its thread on real
sockets; the Call-IDs a worker chooses; what worker 0 merges."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua import ipc
from b2bua.aio.dispatched import channel_pair
from b2bua.options import EngineOptions, HostPort, PortRange, split_ports
from b2bua.reports import sum_counters
from b2bua.signalling import decode_options, encode_options
from b2bua.sip._dispatch import Dispatcher, call_id_hash, route
from b2bua.sip.dialog import CallIds
from b2bua.sip.parser import parse_message


def invite(call_id_line: str, body: str = "") -> bytes:
    return (
        "INVITE sip:200@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\n"
        "From: <sip:1001@127.0.0.2>;tag=a\r\n"
        "To: <sip:200@127.0.0.1>\r\n"
        f"{call_id_line}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


TOKEN = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~@:", min_size=1,
                max_size=60).filter(lambda t: t[0] not in ":" and t[-1] != ":")


@given(TOKEN, st.sampled_from(["Call-ID", "call-id", "CALL-ID", "i", "I"]),
       st.sampled_from(["", " ", "\t"]), st.sampled_from([" ", "  ", ""]),
       st.integers(1, 16))
def test_route_is_the_hash_of_the_call_id_the_parser_reads(
        value: str, name: str, before_colon: str, after_colon: str, workers: int) -> None:
    message = invite(f"{name}{before_colon}:{after_colon}{value}  ")
    assert parse_message(message).call_id == value
    assert route(message, workers) == call_id_hash(value.encode()) % workers


def test_register_and_messages_without_a_call_id_go_to_worker_0() -> None:
    value = next(f"c{i}@h" for i in range(100) if call_id_hash(f"c{i}@h".encode()) % 4 == 3)
    assert route(invite(f"Call-ID: {value}"), 4) == 3
    register = invite(f"Call-ID: {value}").replace(b"INVITE sip:200@", b"REGISTER sip:", 1)
    assert route(register, 4) == 0
    assert route(invite("X-Call-ID: other"), 4) == 0  # another header's name
    assert route(invite("Subject: x", body=f"Call-ID: {value}\r\n"), 4) == 0  # the body
    assert route(b"\r\n\r\n", 4) == 0  # a keep-alive
    assert route(b"garbage", 4) == 0
    assert route(invite("Call-ID:   "), 4) == 0  # empty value
    with pytest.raises(ValueError):
        route(b"x", 0)


@pytest.mark.parametrize(("index", "count"), [(0, 1), (0, 2), (1, 2), (2, 3), (5, 8)])
def test_a_worker_chooses_call_ids_that_come_back_to_it(index: int, count: int) -> None:
    ids = CallIds(index, count)
    made = {ids.new("198.18.0.1") for _ in range(200)}
    assert len(made) == 200
    for call_id in made:
        assert call_id.endswith("@198.18.0.1")
        assert route(invite(f"Call-ID: {call_id}"), count) == index


@pytest.fixture
def sip_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def _receive(channel: socket.socket, timeout: float = 2.0) -> list[bytes]:
    out: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            out.append(channel.recv(70000))
            deadline = time.monotonic() + 0.2  # more may follow
        except BlockingIOError:
            time.sleep(0.01)
    return out


def test_the_thread_passes_each_datagram_to_its_worker_with_its_source(
        sip_socket: socket.socket) -> None:
    channels = [channel_pair() for _ in range(3)]
    dispatcher = Dispatcher(sip_socket.fileno(), [ours.fileno() for ours, _ in channels])
    dispatcher.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.2", 0))
    try:
        messages = [invite(f"Call-ID: call-{i}@198.18.0.9") for i in range(60)]
        messages.append(b"\r\n\r\n")
        for message in messages:
            sender.sendto(message, sip_socket.getsockname())
        got = [_receive(theirs) for _, theirs in channels]
        source = ["127.0.0.2", sender.getsockname()[1]]
        for index, received in enumerate(got):
            expected = [["udp", *source, m] for m in messages if route(m, 3) == index]
            # in order, whole, with the source, each one frame of b2bua/ipc.py
            assert [ipc.decode(r) for r in received] == expected
        assert all(got)
        stats = dispatcher.stats()
        assert stats["received"] == 61 and stats["no_call_id"] == 1
        assert stats["dispatched"] == [len(g) for g in got] and stats["dropped"] == [0, 0, 0]
        assert stats["running"] is True
        names = [p.read_text().strip() for p in Path("/proc/self/task").glob("*/comm")]
        assert "sip-dispatch" in names  # visible to operators (top -H) and bench/cps.py
    finally:
        dispatcher.stop()
        sender.close()
        for ours, theirs in channels:
            ours.close()
            theirs.close()
    assert dispatcher.stats()["running"] is False
    dispatcher.stop()  # a second stop is harmless


def test_a_full_channel_drops_and_counts_without_stalling_the_others(
        sip_socket: socket.socket) -> None:
    slow = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    slow[0].setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    slow[0].setblocking(False)
    fast = channel_pair()
    dispatcher = Dispatcher(sip_socket.fileno(), [slow[0].fileno(), fast[0].fileno()])
    dispatcher.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        messages = [invite(f"Call-ID: x{i}") for i in range(400)]
        for message in messages:
            sender.sendto(message, sip_socket.getsockname())
            time.sleep(0.0005)
        to_fast = sum(1 for m in messages if route(m, 2) == 1)
        assert len(_receive(fast[1])) == to_fast
        stats = dispatcher.stats()
        assert stats["dropped"][0] > 0 and stats["dropped"][1] == 0
        assert stats["dispatched"][0] + stats["dropped"][0] == len(messages) - to_fast
    finally:
        dispatcher.stop()
        sender.close()
        for sock in (*slow, *fast):
            sock.close()


def test_dispatcher_arguments_are_checked(sip_socket: socket.socket) -> None:
    with pytest.raises(ValueError):
        Dispatcher(sip_socket.fileno(), [])
    with pytest.raises(ValueError):
        Dispatcher(sip_socket.fileno(), list(range(3, 100)))
    with pytest.raises(TypeError):
        Dispatcher(sip_socket.fileno(), ["x"])


def test_sum_counters_adds_numbers_at_every_depth() -> None:
    first = {"attempts": 3, "sip": {"requests": 10, "errors": 1}, "name": "a", "flag": True,
             "workers": [{"index": 0}]}
    merged = sum_counters([
        first,
        {"attempts": 4, "sip": {"requests": 5}, "name": "b", "flag": False, "extra": 2.5,
         "workers": [{"index": 0}, {"index": 1}]},
    ])
    assert merged == {"attempts": 7, "sip": {"requests": 15, "errors": 1}, "name": "a",
                      "flag": True, "extra": 2.5, "workers": [{"index": 0}] * 2 + [{"index": 1}]}
    assert first["workers"] == [{"index": 0}]  # the reports are left as they were


def test_each_worker_gets_its_own_ports_relays_and_control_socket() -> None:
    options = EngineOptions(database=Path("/x/var/softswitch.db"),
                            sip_listen=HostPort("127.0.0.1", 5060),
                            media_ports=PortRange(20000, 40000), public_address=None,
                            control_path=Path("/x/var/engine.sock"), var_dir=Path("/x/var"),
                            media_workers=3,
                            signalling_workers=2)
    assert decode_options(encode_options(options)) == options
    first, second = options.for_worker(0), options.for_worker(1)
    assert (first.worker_index, second.worker_index) == (0, 1)
    assert (first.media_workers, second.media_workers) == (2, 1)
    assert first.control_path == Path("/x/var/engine.sock")
    assert second.control_path == Path("/x/var/engine-1.sock")
    assert [(w.media_ports.low, w.media_ports.high) for w in (first, second)] == \
        split_ports(20000, 40000, 2)
    single = EngineOptions(database=Path("d"), sip_listen=HostPort("127.0.0.1", 5060),
                           media_ports=PortRange(20000, 40000), public_address=None,
                           control_path=Path("c"), var_dir=Path("."))
    assert single.for_worker(0) is single


def test_signalling_workers_get_the_dns_server() -> None:
    options = EngineOptions(database=Path("/x/var/softswitch.db"),
                            sip_listen=HostPort("127.0.0.1", 5060),
                            media_ports=PortRange(20000, 40000), public_address=None,
                            control_path=Path("/x/var/engine.sock"), var_dir=Path("/x/var"),
                            signalling_workers=2, dns_server=HostPort("127.0.0.53", 5353))
    decoded = decode_options(encode_options(options))
    assert decoded == options and decoded.for_worker(1).dns_server == options.dns_server


def test_signalling_workers_get_a_database_url_as_given() -> None:
    options = EngineOptions(database="postgresql://ss@db.example/softswitch",
                            sip_listen=HostPort("127.0.0.1", 5060),
                            media_ports=PortRange(20000, 40000), public_address=None,
                            control_path=Path("/srv/ss/engine.sock"), var_dir=Path("/srv/ss"),
                            signalling_workers=2)
    assert decode_options(encode_options(options)) == options
