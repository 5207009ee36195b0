"""SDP parsing and rewriting toward the media relay (b2bua.media.sdp)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b2bua.media.sdp import parse_sdp, rewrite_sdp

RELAY = "203.0.113.7"


def crlf(text: str) -> bytes:
    return "".join(line + "\r\n" for line in text.strip("\n").split("\n")).encode()


PJSUA = crlf("""\
v=0
o=- 3916556788 3916556788 IN IP4 192.168.1.10
s=pjmedia
b=AS:84
t=0 0
a=X-nat:0
m=audio 4000 RTP/AVP 0 8 96 97 101
c=IN IP4 192.168.1.10
b=TIAS:64000
a=rtcp:4001 IN IP4 192.168.1.10
a=sendrecv
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:96 speex/8000
a=rtpmap:97 iLBC/8000
a=fmtp:97 mode=30
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ssrc:1507345046 cname:4b3c1b1a6d0b4e2c""")

SIPP = crlf("""\
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000""")

ASTERISK = crlf("""\
v=0
o=- 1817355389 1817355389 IN IP4 10.0.0.5
s=Asterisk
c=IN IP4 10.0.0.5
t=0 0
m=audio 10054 RTP/AVP 8 0 3 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:3 GSM/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=ptime:20
a=maxptime:150
a=sendrecv""")

HOLD = crlf("""\
v=0
o=- 3916556788 3916556789 IN IP4 192.168.1.10
s=pjmedia
t=0 0
m=audio 4000 RTP/AVP 0 101
c=IN IP4 0.0.0.0
a=rtcp:4001 IN IP4 0.0.0.0
a=sendonly
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000""")

MULTI = crlf("""\
v=0
o=alice 2890844526 2890844527 IN IP4 198.51.100.1
s=-
c=IN IP4 198.51.100.1
t=0 0
a=recvonly
m=audio 49170 RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
m=video 0 RTP/AVP 31
a=rtpmap:31 H261/90000
m=video 51372 RTP/AVP 99
c=IN IP4 198.51.100.2
a=rtcp:53020
a=rtpmap:99 h263-1998/90000
a=sendrecv""")


def lines(body: bytes) -> list[str]:
    return body.decode().split("\r\n")


def test_parse_pjsua() -> None:
    info = parse_sdp(PJSUA)
    assert info.ok and info.error is None
    (m,) = info.media
    assert (m.media, m.port, m.proto) == ("audio", 4000, "RTP/AVP")
    assert m.formats == ("0", "8", "96", "97", "101")
    assert (m.address, m.addrtype, m.rtcp_port, m.rtcp_address) == (
        "192.168.1.10", "IP4", 4001, "192.168.1.10")
    assert m.direction == "sendrecv" and not m.hold_address
    assert info.session_address is None


def test_parse_sipp_and_asterisk_session_level_c() -> None:
    for body, addr, port in ((SIPP, "127.0.0.1", 6000), (ASTERISK, "10.0.0.5", 10054)):
        info = parse_sdp(body)
        assert info.ok
        assert info.session_address == addr
        (m,) = info.media
        assert (m.address, m.port, m.rtcp_port, m.effective_rtcp_port) == (
            addr, port, None, port + 1)


def test_parse_multi_and_directions() -> None:
    info = parse_sdp(MULTI)
    assert info.ok
    a, v0, v1 = info.media
    assert (a.index, a.port, a.address, a.direction) == (0, 49170, "198.51.100.1", "recvonly")
    assert v0.disabled and v0.media == "video"
    assert (v1.port, v1.address, v1.rtcp_port, v1.rtcp_address, v1.direction) == (
        51372, "198.51.100.2", 53020, None, "sendrecv")


def test_rewrite_pjsua() -> None:
    out = rewrite_sdp(PJSUA, RELAY, [30000])
    assert out.ok and isinstance(out.body, bytes)
    old, new = lines(PJSUA), lines(out.body)
    assert len(old) == len(new)
    changed = {(o, n) for o, n in zip(old, new, strict=True) if o != n}
    assert changed == {
        ("m=audio 4000 RTP/AVP 0 8 96 97 101", "m=audio 30000 RTP/AVP 0 8 96 97 101"),
        ("c=IN IP4 192.168.1.10", f"c=IN IP4 {RELAY}"),
        ("a=rtcp:4001 IN IP4 192.168.1.10", f"a=rtcp:30001 IN IP4 {RELAY}"),
    }
    assert out.body.endswith(b"\r\n") and b"\n" not in out.body.replace(b"\r\n", b"")
    # The origin line is left alone; the parsed media describes the original.
    assert "o=- 3916556788 3916556788 IN IP4 192.168.1.10" in new
    assert out.media[0].address == "192.168.1.10"
    again = parse_sdp(out.body)
    assert again.ok
    assert (again.media[0].address, again.media[0].port, again.media[0].rtcp_port) == (
        RELAY, 30000, 30001)


def test_rewrite_sipp_and_asterisk() -> None:
    out = rewrite_sdp(SIPP, RELAY, 40002)
    assert out.ok
    assert lines(out.body)[3:6] == [f"c=IN IP4 {RELAY}", "t=0 0", "m=audio 40002 RTP/AVP 0"]
    out = rewrite_sdp(ASTERISK, RELAY, [40004])
    assert out.ok
    new = lines(out.body)
    assert f"c=IN IP4 {RELAY}" in new and "m=audio 40004 RTP/AVP 8 0 3 101" in new
    assert not any(line.startswith("a=rtcp:") for line in new)  # none added
    assert [x for x in new if x.startswith("a=")] == [
        x for x in lines(ASTERISK) if x.startswith("a=")]


def test_rewrite_hold_keeps_hold_address() -> None:
    out = rewrite_sdp(HOLD, RELAY, [30010])
    assert out.ok
    new = lines(out.body)
    assert "c=IN IP4 0.0.0.0" in new
    assert "m=audio 30010 RTP/AVP 0 101" in new
    assert "a=rtcp:30011 IN IP4 0.0.0.0" in new
    assert "a=sendonly" in new
    info = parse_sdp(HOLD)
    assert info.media[0].hold_address and info.media[0].direction == "sendonly"
    # Or point it at the relay anyway.
    out = rewrite_sdp(HOLD, RELAY, [30010], keep_hold_address=False)
    assert f"c=IN IP4 {RELAY}" in lines(out.body)


def test_rewrite_multi() -> None:
    out = rewrite_sdp(MULTI, RELAY, [30020, 30022, 30024])
    assert out.ok
    new = lines(out.body)
    assert new[3] == f"c=IN IP4 {RELAY}"
    assert "m=audio 30020 RTP/AVP 0 8" in new
    assert "m=video 0 RTP/AVP 31" in new  # a disabled stream stays disabled
    assert "m=video 30024 RTP/AVP 99" in new
    assert new.count(f"c=IN IP4 {RELAY}") == 2
    assert f"a=rtcp:30025 IN IP4 {RELAY}" in new
    assert "a=recvonly" in new and "a=rtpmap:99 h263-1998/90000" in new


def test_rewrite_port_zero_disables_a_stream() -> None:
    out = rewrite_sdp(MULTI, RELAY, [30020, 0, 0])  # relay only the first stream
    assert out.ok
    new = lines(out.body)
    assert "m=audio 30020 RTP/AVP 0 8" in new
    assert "m=video 0 RTP/AVP 31" in new and "m=video 0 RTP/AVP 99" in new
    assert "a=rtcp:53020" in new  # a disabled stream's a=rtcp is left alone
    info = parse_sdp(out.body)
    assert [m.port for m in info.media] == [30020, 0, 0]


def test_line_endings_preserved_lf_and_mixed_and_str() -> None:
    lf = SIPP.decode().replace("\r\n", "\n")
    out = rewrite_sdp(lf, RELAY, [31000])
    assert out.ok and isinstance(out.body, str)
    assert "\r" not in out.body and out.body.endswith("\n")
    mixed = "v=0\r\no=- 1 1 IN IP4 10.1.1.1\ns=-\r\nc=IN IP4 10.1.1.1\nt=0 0\r\nm=audio 5 RTP/AVP 0"
    out = rewrite_sdp(mixed, RELAY, [31002])
    assert out.ok
    assert out.body == (f"v=0\r\no=- 1 1 IN IP4 10.1.1.1\ns=-\r\nc=IN IP4 {RELAY}\nt=0 0\r\n"
                        "m=audio 31002 RTP/AVP 0")


def test_non_ascii_bytes_round_trip() -> None:
    body = SIPP.replace(b"s=-", b"s=Caf\xc3\xa9 \xff\xfe")
    out = rewrite_sdp(body, RELAY, [31004])
    assert out.ok
    assert b"s=Caf\xc3\xa9 \xff\xfe\r\n" in out.body


def test_ipv6_relay_and_multicast_ttl() -> None:
    out = rewrite_sdp(SIPP, "2001:db8::7", [31006])
    assert out.ok and b"c=IN IP6 2001:db8::7\r\n" in out.body
    body = SIPP.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 224.2.1.1/127")
    info = parse_sdp(body)
    assert info.media[0].address == "224.2.1.1"
    assert b"c=IN IP4 203.0.113.7\r\n" in rewrite_sdp(body, RELAY, [31008]).body


GARBAGE: dict[str, bytes] = {
    "empty": b"",
    "not sdp": b"hello world\r\n",
    "no v=": SIPP.replace(b"v=0\r\n", b""),
    "bad line": SIPP + b"this is not sdp\r\n",
    "bad m port": SIPP.replace(b"m=audio 6000", b"m=audio 6x00"),
    "port too big": SIPP.replace(b"m=audio 6000", b"m=audio 99999"),
    "short m": SIPP.replace(b"m=audio 6000 RTP/AVP 0", b"m=audio 6000"),
    "bad c": SIPP.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4"),
    "bad c nettype": SIPP.replace(b"c=IN IP4 127.0.0.1", b"c=XX IP4 127.0.0.1"),
    "no c anywhere": SIPP.replace(b"c=IN IP4 127.0.0.1\r\n", b""),
    "bad rtcp": PJSUA.replace(b"a=rtcp:4001", b"a=rtcp:abc"),
    "two session c": SIPP.replace(b"t=0 0", b"c=IN IP4 1.2.3.4\r\nt=0 0"),
    "huge": b"v=0\r\n" + b"a=x\r\n" * 20000,
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_unchanged_and_flagged(name: str) -> None:
    body = GARBAGE[name]
    out = rewrite_sdp(body, RELAY, [30000])
    assert not out.ok and out.error
    assert out.body is body
    assert not parse_sdp(body).ok


def test_bad_rewrite_arguments_flagged() -> None:
    for ports in ([], [30000, 30002], [-1], [65535], [70000]):
        out = rewrite_sdp(SIPP, RELAY, ports)
        assert not out.ok and out.body is SIPP
    out = rewrite_sdp(SIPP, "relay.example.com", [30000])
    assert not out.ok and "not an IP address" in (out.error or "")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_never_raises_on_random_bytes(data: bytes) -> None:
    out = rewrite_sdp(data, RELAY, [30000])
    assert out.ok or out.body is data
    parse_sdp(data)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(PJSUA)), st.binary(min_size=1, max_size=8))
def test_never_raises_on_mangled_sdp(pos: int, junk: bytes) -> None:
    data = PJSUA[:pos] + junk + PJSUA[pos:]
    out = rewrite_sdp(data, RELAY, [30000])
    assert out.ok or out.body is data
