"""Requests the softswitch cannot take (RFC 3261 8.2.2, 21.4): a source it knows hears
what is wrong (400 naming the fault, 505, 416, 420); an unknown source hears nothing."""

from __future__ import annotations

import re
import socket

from rawsip import exchange, request
from sippctl import CUSTOMER_IP
from support import Softswitch, free_port, wait_until

STRANGER_IP = "127.0.0.9"


def probe(switch: Softswitch, src_ip: str, data_for: object) -> list[bytes]:
    port = free_port(src_ip, socket.SOCK_DGRAM)
    data = data_for(port)  # type: ignore[operator]
    replies, _ = exchange(data, src_ip, ("127.0.0.1", switch.sip_port), wait=0.7,
                          src_port=port)
    return replies


def first_line(replies: list[bytes]) -> str:
    assert len(replies) == 1, replies
    return replies[0].split(b"\r\n", 1)[0].decode()


def test_known_source_hears_the_fault_unknown_source_nothing(softswitch: Softswitch) -> None:
    api = softswitch.api
    api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    assert wait_until(lambda: api.get("/api/v1/engine")["mapping_gateways"] == 1, timeout=2)
    host, sip = "127.0.0.1", softswitch.sip_port

    def invite(src: str, **kw: str) -> object:
        return lambda port: request("INVITE", host, sip, src, port, **kw)

    def version7(src: str) -> object:
        return lambda port: request("OPTIONS", host, sip, src, port).replace(
            b" SIP/2.0\r\n", b" SIP/7.0\r\n", 1)

    def bad_length(src: str) -> object:
        return lambda port: request("OPTIONS", host, sip, src, port).replace(
            b"Content-Length: 0", b"Content-Length: zero")

    def mailto(src: str) -> object:
        return lambda port: request("INVITE", host, sip, src, port).replace(
            f"INVITE sip:200@{host}:{sip}".encode(), b"INVITE mailto:200@example.com", 1)

    assert first_line(probe(softswitch, CUSTOMER_IP, version7(CUSTOMER_IP))) == \
        "SIP/2.0 505 Version Not Supported"
    answer = first_line(probe(softswitch, CUSTOMER_IP, bad_length(CUSTOMER_IP)))
    assert re.fullmatch(r"SIP/2\.0 400 Bad Request \(bad Content-Length\)", answer), answer
    assert first_line(probe(softswitch, CUSTOMER_IP, mailto(CUSTOMER_IP))) == \
        "SIP/2.0 416 Unsupported URI Scheme"
    (required,) = probe(softswitch, CUSTOMER_IP, invite(CUSTOMER_IP, extra="Require: 100rel"))
    assert required.startswith(b"SIP/2.0 420 ") and b"\r\nUnsupported: 100rel\r\n" in required
    before = api.get("/api/v1/stats")["counters"]
    for junk in (version7(STRANGER_IP), bad_length(STRANGER_IP)):
        assert probe(softswitch, STRANGER_IP, junk) == []
    stats = api.get("/api/v1/stats")["counters"]
    assert stats["bad_requests_answered"] == 4
    assert stats["bad_requests_dropped"] - before["bad_requests_dropped"] == 2
    metrics = api.get("/api/v1/metrics")
    assert re.search(r'softswitch_bad_requests_total\{outcome="answered"\} 4\b', metrics)
