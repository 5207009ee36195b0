"""A bounded, seeded mutation fuzzer over real SIP requests through the engine's receive
path, in process: ``SipStack.on_bytes`` -> ``Switchboard.on_request`` -> ``Policy.admit``
/ ``Policy.unknown``, the stateless refusals, the registrar, and the calls that what passes
starts (dialled to the vendor, which never answers), on a fake clock
(``tests/unit/test_switchboard.py``'s switch, with the gateways of the capture).

The corpus is what sipp sent to a running softswitch (captured with ``SS_SIP_TRACE``):
an IP-trunk INVITE, a password gateway's INVITE before and after the challenge (with
``Authorization`` and with ``Proxy-Authorization``), a phone's REGISTER likewise, an
OPTIONS ping, in-dialog ACK/BYE and a vendor's 200. Credentials are re-signed against
the policy's own nonces before mutation, so digest checks pass, fail or go stale as
they would live. A run is reproducible from its seed; a failure names the case number
and its bytes.

Checked: only ``SipParseError`` escapes the parser and the headers read past it (the
stack drops or answers such a datagram), and nothing the stack would catch and log is
raised; every bounded table stays within its capacity, shrunk here so the fuzzer
actually reaches it; every call started ends with exactly one CDR and gives its
capacity back; memory stops growing once the tables are full.
"""

from __future__ import annotations

import gc
import logging
import random
import re
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_switchboard import FakeDatagrams, FakeWriter, Switch

from b2bua.aio.call_adapter import CallAdapter
from b2bua.calls import cdr
from b2bua.config.live import Params
from b2bua.policy import Outcome, Policy
from b2bua.registrar.phones import PhoneAccount
from b2bua.routing.gateways import GatewayDirectory
from b2bua.security.digest import response_digest
from b2bua.security.state import (
    FAILURE_LIMIT,
    LOG_LIMIT,
    SESSION_LIMIT,
    SUSPENSION_LIMIT,
    BoundedMap,
    LogThrottle,
)
from b2bua.sip import headers, parser
from b2bua.sip.errors import SipParseError
from b2bua.sip.message import Request, Response
from b2bua.sip.parser import MAX_MESSAGE_SIZE, parse_message
from b2bua.sip.peer import Peer
from b2bua.storage import migrate
from b2bua.storage.gateways import mapping_gateways, routing_gateways
from b2bua.storage.sqlite import SqliteDatabase

SEED = 20261122
CASES = 6000
WARMUP = 3000  # cases before the memory baseline: the bounded tables fill up first
# Bytes the switch may still gain over the last CASES - WARMUP cases with the policy's
# tables full and no call up at either end (dict resizing, longer keys in the bounded
# tables): 7-46 KB over seven seeds. A call or transaction kept after its end costs
# several KB each, over a hundred calls start in the window.
MEMORY_GROWTH_LIMIT = 96 * 1024
REALM = "127.0.0.1"  # what the captured credentials name

# Small capacities so a few thousand cases overflow every table.
SESSIONS, FAILURES, SUSPENSIONS, NONCES, LOG_SOURCES = 256, 64, 32, 128, 64
GUESSERS, STRANGERS = 24, 2000  # source addresses


def wire(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


IP_TRUNK_INVITE = wire(
    'INVITE sip:200@127.0.0.1:33265 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.2:35159;branch=z9hG4bK-8296-1-0;rport\n'
    'From: "Alice" <sip:1001@127.0.0.2:35159>;tag=8296SIPpTag001\n'
    'To: <sip:200@127.0.0.1:33265>\n'
    'Call-ID: 1-8296@127.0.0.2\n'
    'CSeq: 1 INVITE\n'
    'Contact: <sip:1001@127.0.0.2:35159;transport=UDP>\n'
    'Max-Forwards: 70\n'
    'Content-Type: application/sdp\n'
    'Content-Length:   133\n'
    '\n'
    'v=0\n'
    'o=- 1 1 IN IP4 127.0.0.2\n'
    's=-\n'
    'c=IN IP4 127.0.0.2\n'
    't=0 0\n'
    'm=audio 6000 RTP/AVP 0 8\n'
    'a=rtpmap:0 PCMU/8000\n'
    'a=rtpmap:8 PCMA/8000\n'
)

GATEWAY_INVITE = wire(
    'INVITE sip:200@127.0.0.1:33265 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.5:42729;branch=z9hG4bK-8298-1-0;rport\n'
    'From: <sip:gw1@127.0.0.5:42729>;tag=8298SIPpTag001\n'
    'To: <sip:200@127.0.0.1:33265>\n'
    'Call-ID: 1-8298@127.0.0.5\n'
    'CSeq: 1 INVITE\n'
    'Contact: <sip:gw1@127.0.0.5:42729;transport=UDP>\n'
    'Max-Forwards: 70\n'
    'Content-Type: application/sdp\n'
    'Content-Length:    87\n'
    '\n'
    'v=0\n'
    'o=- 1 1 IN IP4 127.0.0.5\n'
    's=-\n'
    'c=IN IP4 127.0.0.5\n'
    't=0 0\n'
    'm=audio 6000 RTP/AVP 0\n'
)

GATEWAY_INVITE_AUTH = wire(
    'INVITE sip:200@127.0.0.1:33265 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.5:42729;branch=z9hG4bK-8298-1-5;rport\n'
    'From: <sip:gw1@127.0.0.5:42729>;tag=8298SIPpTag001\n'
    'To: <sip:200@127.0.0.1:33265>\n'
    'Call-ID: 1-8298@127.0.0.5\n'
    'CSeq: 2 INVITE\n'
    'Contact: <sip:gw1@127.0.0.5:42729;transport=UDP>\n'
    'Authorization: Digest username="gw1",realm="127.0.0.1",cnonce="6b8b4567",'
    'nc=00000001,qop=auth,uri="sip:127.0.0.1:33265",'
    'nonce="QdrAluv2H0DKFoMjZ7kndOmduN3P8WtppTi8vejVhCA",'
    'response="c91c75fc0975c633ae524af68fb89985",algorithm=MD5\n'
    'Max-Forwards: 70\n'
    'Content-Type: application/sdp\n'
    'Content-Length:    87\n'
    '\n'
    'v=0\n'
    'o=- 1 1 IN IP4 127.0.0.5\n'
    's=-\n'
    'c=IN IP4 127.0.0.5\n'
    't=0 0\n'
    'm=audio 6000 RTP/AVP 0\n'
)

GATEWAY_INVITE_PROXY_AUTH = wire(
    'INVITE sip:200@127.0.0.1:37711 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.5:48047;branch=z9hG4bK-8584-1-5;rport\n'
    'From: <sip:gw1@127.0.0.5:48047>;tag=8584SIPpTag001\n'
    'To: <sip:200@127.0.0.1:37711>\n'
    'Call-ID: 1-8584@127.0.0.5\n'
    'CSeq: 2 INVITE\n'
    'Contact: <sip:gw1@127.0.0.5:48047;transport=UDP>\n'
    'Proxy-Authorization: Digest username="gw1",realm="127.0.0.1",cnonce="6b8b4567",'
    'nc=00000001,qop=auth,uri="sip:127.0.0.1:37711",'
    'nonce="QdrAlveBrawtM6uI9p8FwUl3Ex2_5taL-d4kK5inHQ4",'
    'response="21b105dba51330d16b55c5b0b03bca8a",algorithm=MD5\n'
    'Max-Forwards: 70\n'
    'Content-Type: application/sdp\n'
    'Content-Length:    87\n'
    '\n'
    'v=0\n'
    'o=- 1 1 IN IP4 127.0.0.5\n'
    's=-\n'
    'c=IN IP4 127.0.0.5\n'
    't=0 0\n'
    'm=audio 6000 RTP/AVP 0\n'
)

ACK_OF_CHALLENGE = wire(
    'ACK sip:200@127.0.0.1:33265 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.5:42729;branch=z9hG4bK-8298-1-0;rport=42729;received=127.0.0.5\n'
    'From: <sip:gw1@127.0.0.5:42729>;tag=8298SIPpTag001\n'
    'To: <sip:200@127.0.0.1:33265>\n'
    'Call-ID: 1-8298@127.0.0.5\n'
    'CSeq: 1 ACK\n'
    'Max-Forwards: 70\n'
    'Content-Length: 0\n'
    '\n'
)

IN_DIALOG_ACK = wire(
    'ACK sip:softswitch@127.0.0.1:33265 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.2:35159;branch=z9hG4bK-8296-1-5;rport\n'
    'From: "Alice" <sip:1001@127.0.0.2:35159>;tag=8296SIPpTag001\n'
    'To: <sip:200@127.0.0.1:33265>;tag=6d25f00b0063\n'
    'Call-ID: 1-8296@127.0.0.2\n'
    'CSeq: 1 ACK\n'
    'Contact: <sip:1001@127.0.0.2:35159;transport=UDP>\n'
    'Max-Forwards: 70\n'
    'Content-Length: 0\n'
    '\n'
)

IN_DIALOG_BYE = wire(
    'BYE sip:softswitch@127.0.0.1:33265 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.2:35159;branch=z9hG4bK-8296-1-7;rport\n'
    'From: "Alice" <sip:1001@127.0.0.2:35159>;tag=8296SIPpTag001\n'
    'To: <sip:200@127.0.0.1:33265>;tag=6d25f00b0063\n'
    'Call-ID: 1-8296@127.0.0.2\n'
    'CSeq: 2 BYE\n'
    'Max-Forwards: 70\n'
    'Content-Length: 0\n'
    '\n'
)

PHONE_REGISTER = wire(
    'REGISTER sip:127.0.0.1:33265 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.7:41159;branch=z9hG4bK-8301-1-0;rport\n'
    'From: <sip:1001@127.0.0.1>;tag=8301SIPpTag001\n'
    'To: <sip:1001@127.0.0.1>\n'
    'Call-ID: 1-8301@127.0.0.7\n'
    'CSeq: 1 REGISTER\n'
    'Contact: <sip:1001@127.0.0.7:41159;transport=UDP>\n'
    'Expires: 300\n'
    'Max-Forwards: 70\n'
    'User-Agent: sipp-phone\n'
    'Content-Length: 0\n'
    '\n'
)

PHONE_REGISTER_AUTH = wire(
    'REGISTER sip:127.0.0.1:33265 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.7:41159;branch=z9hG4bK-8301-1-3;rport\n'
    'From: <sip:1001@127.0.0.1>;tag=8301SIPpTag001\n'
    'To: <sip:1001@127.0.0.1>\n'
    'Call-ID: 1-8301@127.0.0.7\n'
    'CSeq: 2 REGISTER\n'
    'Contact: <sip:1001@127.0.0.7:41159;transport=UDP>\n'
    'Expires: 300\n'
    'Authorization: Digest username="1001",realm="127.0.0.1",cnonce="6b8b4567",'
    'nc=00000001,qop=auth,uri="sip:127.0.0.1:33265",'
    'nonce="QdrAluz27Z5Q_BWLNMvN34f-fJAod46HFTerx-poO6Q",'
    'response="c87f725ddfee46d2e12bd7b7cbaebc58",algorithm=MD5\n'
    'Max-Forwards: 70\n'
    'User-Agent: sipp-phone\n'
    'Content-Length: 0\n'
    '\n'
)

PHONE_REGISTER_PROXY_AUTH = wire(
    'REGISTER sip:127.0.0.1:37711 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.7:50345;branch=z9hG4bK-8585-1-3;rport\n'
    'From: <sip:1001@127.0.0.1>;tag=8585SIPpTag001\n'
    'To: <sip:1001@127.0.0.1>\n'
    'Call-ID: 1-8585@127.0.0.7\n'
    'CSeq: 2 REGISTER\n'
    'Contact: <sip:1001@127.0.0.7:50345;transport=UDP>\n'
    'Expires: 300\n'
    'Proxy-Authorization: Digest username="1001",realm="127.0.0.1",cnonce="6b8b4567",'
    'nc=00000001,qop=auth,uri="sip:127.0.0.1:37711",'
    'nonce="QdrAlvfQPeUvuB05dccAvIFuF1D8SZlwWBwkB_aML4s",'
    'response="01889194e2075c93b9a5eaf793a55127",algorithm=MD5\n'
    'Max-Forwards: 70\n'
    'User-Agent: sipp-phone\n'
    'Content-Length: 0\n'
    '\n'
)

OPTIONS_PING = wire(
    'OPTIONS sip:127.0.0.1:33265 SIP/2.0\n'
    'Via: SIP/2.0/UDP 127.0.0.2:41351;branch=z9hG4bK-8302-1-0;rport\n'
    'From: <sip:ping@127.0.0.2:41351>;tag=8302SIPpTag001\n'
    'To: <sip:127.0.0.1:33265>\n'
    'Call-ID: 1-8302@127.0.0.2\n'
    'CSeq: 1 OPTIONS\n'
    'Contact: <sip:ping@127.0.0.2:41351;transport=UDP>\n'
    'Max-Forwards: 70\n'
    'Accept: application/sdp\n'
    'User-Agent: sipp-options\n'
    'Content-Length: 0\n'
    '\n'
)

VENDOR_200 = wire(
    'SIP/2.0 200 OK\n'
    'Via: SIP/2.0/UDP 127.0.0.1:33265;branch=z9hG4bKf64a0d791425e6df;rport\n'
    'From: "Alice" <sip:1001@127.0.0.1>;tag=d72c8bfe1865\n'
    'To: <sip:200@127.0.0.3:43001>;tag=8295SIPpTag011\n'
    'Call-ID: b6a7af38e5e3dc90a4e18b0e@127.0.0.1\n'
    'CSeq: 1 INVITE\n'
    'Contact: <sip:vendor@127.0.0.3:43001;transport=UDP>\n'
    'Content-Type: application/sdp\n'
    'Content-Length:   109\n'
    '\n'
    'v=0\n'
    'o=- 2 2 IN IP4 127.0.0.3\n'
    's=-\n'
    'c=IN IP4 127.0.0.3\n'
    't=0 0\n'
    'm=audio 6000 RTP/AVP 0\n'
    'a=rtpmap:0 PCMU/8000\n'
)

# (message, the address it came from)
CORPUS: list[tuple[bytes, Peer]] = [
    (IP_TRUNK_INVITE, Peer("udp", "127.0.0.2", 35159)),
    (GATEWAY_INVITE, Peer("udp", "127.0.0.5", 42729)),
    (GATEWAY_INVITE_AUTH, Peer("udp", "127.0.0.5", 42729)),
    (GATEWAY_INVITE_PROXY_AUTH, Peer("udp", "127.0.0.5", 48047)),
    (ACK_OF_CHALLENGE, Peer("udp", "127.0.0.5", 42729)),
    (IN_DIALOG_ACK, Peer("udp", "127.0.0.2", 35159)),
    (IN_DIALOG_BYE, Peer("udp", "127.0.0.2", 35159)),
    (PHONE_REGISTER, Peer("udp", "127.0.0.7", 41159)),
    (PHONE_REGISTER_AUTH, Peer("udp", "127.0.0.7", 41159)),
    (PHONE_REGISTER_PROXY_AUTH, Peer("udp", "127.0.0.7", 41159)),
    (OPTIONS_PING, Peer("udp", "127.0.0.2", 41351)),
    (VENDOR_200, Peer("udp", "127.0.0.3", 43001)),
]
SIGNED = [(data, source) for data, source in CORPUS if b"Authorization: Digest" in data]
PASSWORDS = {"gw1": "s3cret", "1001": "pw-1001"}

TOKENS = [
    b";", b",", b"<", b">", b'"', b"\\", b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b"@",
    b"=", b"%00", b"\x00", b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"sip:", b"sips:", b"tel:",
    b"[::1]", b"[", b"Digest ", b"Basic ", b"username=", b'username=""', b"nonce=",
    b'response="', b"qop=auth", b"qop=auth-int", b"nc=", b"nc=ffffffff", b"nc=zz",
    b"algorithm=SHA-256", b"algorithm=MD5-sess", b"algorithm=", b"tag=", b";tag=",
    b"branch=z9hG4bK", b"rport", b"-1", b"0", b"4294967296", b"99999999999999999999",
    b"A" * 300, b"%" * 40, b"Authorization: Digest ", b"Proxy-Authorization: ",
    b"Via: SIP/2.0/UDP ", b"Content-Length: 99999", b"l: 0", b"CSeq: 1 REGISTER",
    b"From: <sip:gw1@x>", b"To: <sip:1001@127.0.0.1>",
]
HEADER_LINE = re.compile(rb"^[A-Za-z-]+:", re.MULTILINE)


# ---------------------------------------------------------------------------- cases


def sign(data: bytes, policy: Policy, now: float, password: str | None = None,
         age: float = 0.0, cnonce: str = "6b8b4567") -> bytes:
    """Credentials in ``data`` answered on a nonce of ``policy`` minted ``age`` s ago, with
    the account's password unless ``password`` is given."""
    match = re.search(rb'username="([^"]*)".*?uri="([^"]*)"', data)
    if match is None:
        return data
    user, uri = match.group(1).decode(), match.group(2).decode()
    method = data.split(b" ", 1)[0].decode()
    nonce = policy.verifier.minter.mint(REALM, now - age)
    secret = PASSWORDS.get(user, "") if password is None else password
    response = response_digest("MD5", user, REALM, secret, method, uri, nonce, "00000001",
                               cnonce, "auth")
    data = re.sub(rb'nonce="[^"]*"', b'nonce="%s"' % nonce.encode(), data)
    data = re.sub(rb'cnonce="[^"]*"', b'cnonce="%s"' % cnonce.encode(), data)
    return re.sub(rb'response="[^"]*"', b'response="%s"' % response.encode(), data)


def resign(data: bytes, rng: random.Random, policy: Policy, now: float) -> bytes:
    """A new Call-ID (a new challenge session), and credentials right or wrong, fresh or
    stale (past the 30 s nonce lifetime), or left as captured (a foreign nonce)."""
    if rng.random() < 0.7:
        data = re.sub(rb"Call-ID: [^\r\n]*", b"Call-ID: fz-%d" % rng.getrandbits(40), data)
    if rng.random() < 0.15:
        return data
    return sign(data, policy, now, password=None if rng.random() < 0.5 else "guess",
                age=rng.choice([0.0, 0.0, 0.0, 60.0]), cnonce=f"{rng.getrandbits(32):08x}")


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1-6 random edits (mostly few): bytes, SIP tokens, header lines, splices; the
    result is at most a little over the largest datagram the stack accepts."""
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4, 6])):
        op = rng.randrange(11)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 3:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 4:
            buf[pos:pos + rng.randint(1, 8)] = rng.choice(TOKENS)
        elif op in (5, 6, 7):
            lines = bytes(buf).split(b"\r\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if op == 5:
                lines.insert(j, lines[i])  # a duplicated header (From, Call-ID, ...)
            elif op == 6:
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            buf = bytearray(b"\r\n".join(lines))
        elif op == 8:
            # A header value replaced: empty, a token, or very long.
            starts = [m.end() for m in HEADER_LINE.finditer(buf)]
            if starts:
                start = rng.choice(starts)
                end = buf.find(b"\r\n", start)
                end = len(buf) if end == -1 else end
                value = rng.choice([b"", b" ", rng.choice(TOKENS), b" x" * rng.randint(1, 5000)])
                buf[start:end] = value
        elif op == 9:
            other = rng.choice(CORPUS)[0]
            a = rng.randrange(len(other))
            buf[pos:pos] = other[a:a + rng.randint(1, 200)]
        else:
            line = rng.choice(bytes(buf).split(b"\r\n") or [b"X: y"])
            buf[pos:pos] = (line + b"\r\n") * rng.randint(2, 300)  # many headers
    return bytes(buf[:MAX_MESSAGE_SIZE + 100])


def pick_source(rng: random.Random, natural: Peer) -> Peer:
    roll = rng.random()
    if roll < 0.4:
        return natural
    if roll < 0.5:
        return Peer("udp", rng.choice(["127.0.0.2", "127.0.0.3", "127.0.0.4"]),
                    rng.choice([5060, 5070, natural.port]))
    if roll < 0.8:
        # Guessers: few enough addresses to be suspended, more than the tables hold.
        return Peer("udp", f"127.9.0.{rng.randint(1, GUESSERS)}", natural.port)
    n = rng.randrange(STRANGERS)
    return Peer(rng.choice(["udp", "udp", "tcp"]), f"127.10.{n // 250}.{n % 250 + 1}",
                rng.randrange(1024, 65536))


def vary_params(params: Params, rng: random.Random) -> None:
    """The live parameters the policy reads per request."""
    params.values["SS_REPLY_UNAUTHORIZED"] = "On" if rng.random() < 0.7 else "Off"
    params.values["SS_SIP_AUTHENTICATION_CODE"] = rng.choice([401, 407])
    params.values["SS_SIP_AUTHENTICATION_ALGORITHM"] = rng.choice(
        ["MD5", "SHA-256", "MD5+SHA-256"])


# ---------------------------------------------------------------------------- the switch


class Sink(FakeDatagrams):
    """The wire, counting what is sent instead of keeping it (memory is measured)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.count += 1


class TcpSink:
    """The TCP transport, counting what is sent (no connection is made in process)."""

    def __init__(self) -> None:
        self.count = 0

    def send(self, data: bytes, host: str, port: int) -> None:
        self.count += 1

    def trust(self, host: str, port: int) -> None:
        pass

    def close_untrusted(self, host: str, port: int) -> None:
        pass


CDR_UUID = list(cdr.CdrRecord.__dataclass_fields__).index("cdr_uuid")


class Ledger:
    """Calls ended and CDRs written, matched by the CDR's id as they come, so its memory
    stays flat (it is measured with the switch): ``unmatched`` is +1 for a call that
    ended without its CDR yet, -1 for a CDR of no ended call."""

    def __init__(self) -> None:
        self.ended = self.cdrs = 0
        self.unmatched: dict[str, int] = {}

    def _move(self, cdr_uuid: str, by: int) -> None:
        left = self.unmatched.pop(cdr_uuid, 0) + by
        if left:
            self.unmatched[cdr_uuid] = left

    def call_ended(self, cdr_uuid: str) -> None:
        self.ended += 1
        self._move(cdr_uuid, 1)

    def cdr_written(self, cdr_uuid: str) -> None:
        self.cdrs += 1
        self._move(cdr_uuid, -1)


class CountingWriter(FakeWriter):
    """The database writer, telling the ledger of each CDR and keeping nothing."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__()
        self.ledger = ledger

    def submit(self, sql: str, params: tuple[Any, ...]) -> None:
        if sql == cdr.INSERT:
            self.ledger.cdr_written(params[CDR_UUID])


@dataclass
class Tally:
    parse_errors: int = 0  # the parser refused the datagram
    stage_errors: int = 0  # SipParseError from a lazily parsed header, past the parser
    responses: int = 0
    no_verdict: int = 0  # requests the policy was not asked about (ACKs, known dialogs)
    outcomes: Counter[str] = field(default_factory=Counter)
    # Anything else that escaped: "Type at file:line" -> (first case, its bytes, message).
    escaped: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)


def gateways() -> GatewayDirectory:
    """The gateways of the capture, loaded through the real schema and loader."""
    with SqliteDatabase(":memory:") as database:
        migrate.migrate(database)
        database.execute_many(
            "INSERT INTO mapping_gateways (id, name, auth_mode, ips, port, username, password, "
            "capacity, enabled) VALUES (?,?,?,?,?,?,?,?,?)",
            [(1, "customer", "ip", '["127.0.0.2"]', None, None, None, None, 1),
             (2, "pbx", "ip_port", '["127.0.0.4"]', 5070, None, None, None, 1),
             (3, "natted", "password", "[]", None, "gw1", "s3cret", None, 1)])
        database.execute("INSERT INTO routing_gateways (id, name, host, port, transport, "
                         "prefixes, priority, prefix_mode, capacity, enabled) VALUES "
                         "(1, 'vendor', '127.0.0.3', 5060, 'udp', '[]', 0, 'terminate', NULL, 1)")
        directory = GatewayDirectory()
        directory.set_mapping(mapping_gateways(database))
        directory.set_routing(routing_gateways(database))
    return directory


class FuzzSwitch:
    """The engine's receive path in process: ``SipStack.on_bytes`` -> ``Switchboard`` ->
    ``Policy``, the registrar and the calls, on a fake clock; nothing is re-implemented
    here. The policy's verdicts are observed as they are returned."""

    def __init__(self, small: bool) -> None:
        self.wire = Sink()
        self.ledger = Ledger()
        self.writer = CountingWriter(self.ledger)
        self.switch = Switch(
            gateways=gateways(), phones=[PhoneAccount(1, "1001", PASSWORDS["1001"], None,
                                                      None, True)],
            values={"SS_AUTHENTICATION_MAX_RETRY": 2, "SS_ENDPOINT_REGISTER_RETRY": 2},
            wire=self.wire, writer=self.writer)
        self.clock = self.switch.clock
        self.stack = self.switch.stack
        self.stack.tcp = TcpSink()  # type: ignore[assignment]
        self.board = self.switch.board
        self.policy = policy = self.switch.policy
        self.params = self.switch.params
        if small:
            policy.sessions = BoundedMap(SESSIONS)
            policy.suspensions.failures.capacity = FAILURES
            policy.suspensions.suspended.capacity = SUSPENSIONS
            policy.verifier.counts.capacity = NONCES
            policy.throttle = LogThrottle()
            policy.throttle._last.capacity = LOG_SOURCES
        self.verdicts: list[str] = []
        admit, unknown = policy.admit, policy.unknown

        def seen_admit(request: Request, source: Peer, now: float) -> Outcome:
            outcome = admit(request, source, now)
            self.verdicts.append(outcome.action.value)
            return outcome

        def seen_unknown(request: Request, source: Peer, now: float) -> Outcome:
            outcome = unknown(request, source, now)
            self.verdicts.append(outcome.action.value)
            return outcome

        policy.admit = seen_admit  # type: ignore[method-assign]
        policy.unknown = seen_unknown  # type: ignore[method-assign]
        # Each call's adapter reports its end (once the call is the switchboard's).
        call_ended = self.board.call_ended

        def seen_end(adapter: CallAdapter) -> None:
            if adapter.call.no in self.board.calls:
                self.ledger.call_ended(adapter.call.cdr_uuid)
            call_ended(adapter)

        self.board.call_ended = seen_end  # type: ignore[method-assign]

    @property
    def now(self) -> float:
        return self.clock.time()

    def feed(self, data: bytes, source: Peer) -> str:
        """One datagram in; the policy's verdict on it ("-": none asked, "response")."""
        self.verdicts.clear()
        self.stack.on_bytes(data, source)
        if self.stack.stats.handler_errors:
            raise AssertionError("the switch raised (logged above)")
        if self.verdicts:
            return self.verdicts[-1]
        return "-"

    def settle(self) -> None:
        """Long enough for every call and transaction to end (Timer B, H, the 64*T1
        waits): nothing the fuzz started is left."""
        self.clock.advance(300)


def run_case(switch: FuzzSwitch, data: bytes, source: Peer, tally: Tally) -> None:
    stack = switch.stack.stats
    parse_errors, responses = stack.parse_errors, stack.responses
    switch.verdicts.clear()
    switch.stack.on_bytes(data, source)
    if stack.responses > responses:
        tally.responses += 1
    elif stack.parse_errors > parse_errors:
        try:
            parse_message(data)
        except SipParseError:
            tally.parse_errors += 1
        else:
            tally.stage_errors += 1
    elif switch.verdicts:
        tally.outcomes[switch.verdicts[-1]] += 1
    else:
        tally.no_verdict += 1


def bounded_sizes(policy: Policy) -> dict[str, tuple[int, int]]:
    """Every table the policy keeps: (entries now, capacity)."""
    return {
        "sessions": (len(policy.sessions), policy.sessions.capacity),
        "failures": (len(policy.suspensions.failures), policy.suspensions.failures.capacity),
        "suspended": (len(policy.suspensions.suspended),
                      policy.suspensions.suspended.capacity),
        "nonce_counts": (len(policy.verifier.counts), policy.verifier.counts.capacity),
        "log_throttle": (len(policy.throttle._last), policy.throttle._last.capacity),
        "parser_names": (len(parser._NAMES), parser._NAMES_LIMIT),
        "header_names": (len(headers._NAME_CACHE), headers._NAME_CACHE_LIMIT),
    }


def _where(exc: BaseException) -> str:
    """The exception and the innermost frame in the softswitch's code that raised it."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/b2bua/" in f.filename]
    at = f"{frames[-1].filename.rsplit('/b2bua/', 1)[1]}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at b2bua/{at}"


class Escapes(logging.Handler):
    """The stack catches what a handler raises, counts it and logs it with its traceback:
    each such record is an escape."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.found.append(record.exc_info[1])


def fuzz(switch: FuzzSwitch, cases: int, seed: int,
         on_case: Callable[[int], None] | None = None) -> Tally:
    """Every case runs, so one run lists every distinct escape (reproduce: seed, case)."""
    rng = random.Random(seed)
    policy = switch.policy
    tally = Tally()
    storm: list[tuple[bytes, Peer]] = []
    storms = 0
    escapes = Escapes()
    sip_log = logging.getLogger("b2bua.sip")
    sip_log.addHandler(escapes)
    try:
        for i in range(cases):
            # A busy switch; now and then past the nonce lifetime (30 s) or a suspension.
            roll = rng.random()
            switch.clock.advance(200.0 if roll < 0.002 else 45.0 if roll < 0.03 else
                                 rng.choice([0.01, 0.02, 0.05, 0.1, 0.2, 0.5]))
            now = switch.now
            vary_params(switch.params, rng)
            if not storm and rng.random() < 0.04:
                # A guessing storm: wrong answers in a row from one new address, enough to
                # be suspended (SS_AUTHENTICATION_MAX_RETRY = 2 here).
                storms += 1
                template = rng.choice(SIGNED)[0]
                guesser = Peer("udp", f"127.11.{storms // 250}.{storms % 250 + 1}", 5060)
                storm = [(template, guesser)] * rng.randint(3, 5)
            if storm:
                data, source = storm.pop()
                data = sign(data, policy, now, password="guess", cnonce=f"{i:08x}")
                if rng.random() < 0.2:
                    data = mutate(data, rng)
            else:
                # Half the cases start from a request with credentials: the digest path.
                data, natural = rng.choice(SIGNED if rng.random() < 0.5 else CORPUS)
                data = resign(data, rng, policy, now)
                if rng.random() < 0.75:
                    data = mutate(data, rng)
                source = pick_source(rng, natural)
            try:
                run_case(switch, data, source, tally)
            except Exception as exc:
                tally.escaped.setdefault(_where(exc), (i, data, str(exc)[:200]))
            for logged in escapes.found:
                tally.escaped.setdefault(_where(logged), (i, data, str(logged)[:200]))
            escapes.found.clear()
            for name, (size, capacity) in bounded_sizes(policy).items():
                assert size <= capacity, (i, name, size, capacity)
            if on_case is not None:
                on_case(i)
    finally:
        sip_log.removeHandler(escapes)
    return tally


def escapes(tally: Tally) -> str:
    return "\n".join(f"{where}: {message}\n    first at case {i}: {data[:600]!r}"
                     for where, (i, data, message) in tally.escaped.items())


# ---------------------------------------------------------------------------- tests


def test_engine_uses_the_documented_bounds() -> None:
    policy = FuzzSwitch(small=False).policy
    sizes = bounded_sizes(policy)
    assert sizes["sessions"][1] == SESSION_LIMIT == 50_000
    assert sizes["failures"][1] == FAILURE_LIMIT
    assert sizes["suspended"][1] == SUSPENSION_LIMIT
    assert sizes["log_throttle"][1] == LOG_LIMIT
    assert sizes["nonce_counts"][1] == 100_000


def test_corpus_unmutated_gets_the_live_verdicts() -> None:
    """The captured messages as sent, credentials answered right: what the fuzzer starts
    from is accepted, challenged or refused as in the capture, by the switch itself."""
    switch = FuzzSwitch(small=False)
    stranger = Peer("udp", "127.0.0.9", 5060)
    verdicts = []
    for data, source in CORPUS:
        signed = sign(data, switch.policy, switch.now)
        verdicts.append("response" if isinstance(parse_message(signed), Response)
                        else switch.feed(signed, source))
    switch.settle()  # the calls started end (no vendor answers): their Call-IDs are free
    verdicts.append(switch.feed(IN_DIALOG_BYE, stranger))
    assert verdicts == [
        "pass", "challenge", "pass", "pass",  # IP trunk; password gateway, both headers
        "-", "-", "-",  # ACK of the 401, in-dialog ACK and BYE from a known source
        "challenge", "pass", "pass",  # phone REGISTER, both headers
        "pass", "response",  # OPTIONS from the IP trunk; the vendor's 200
        "reject",  # a stray BYE from an unknown source (403)
    ]
    assert switch.policy.counters.authenticated == {"gateway": 2, "phone": 2}
    # What passed was carried out: three calls dialled the vendor and ended with a CDR.
    ledger = switch.ledger
    assert (ledger.ended, ledger.cdrs, ledger.unmatched) == (3, 3, {})
    assert not switch.board.calls and not switch.board.legs


def test_mutation_fuzz_only_parse_errors_and_bounded_state(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # pytest keeps every captured log record: the switch's log would count as growth
    # (escapes are still seen: their handler is on "b2bua.sip", below this one).
    quiet = logging.getLogger("b2bua")
    monkeypatch.setattr(quiet, "propagate", False)
    monkeypatch.setattr(quiet, "handlers", [logging.NullHandler()])
    switch = FuzzSwitch(small=True)
    policy = switch.policy
    gc.collect()
    tracemalloc.start()
    baseline: list[int] = []

    def on_case(i: int) -> None:
        if i == WARMUP - 1:
            # The two header-name caches are bounded (checked per case) but fill slowly:
            # freeze them here so what is measured next is the switch alone.
            monkeypatch.setattr(parser, "_NAMES_LIMIT", len(parser._NAMES))
            monkeypatch.setattr(headers, "_NAME_CACHE_LIMIT", len(headers._NAME_CACHE))
            switch.settle()
            gc.collect()
            baseline.append(tracemalloc.get_traced_memory()[0])

    try:
        tally = fuzz(switch, CASES, SEED, on_case)
        switch.settle()
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - baseline[0]
    finally:
        tracemalloc.stop()
    # Only SipParseError may leave the parser or a header read past it: the stack catches
    # that one and drops or answers the datagram; anything else is a bug on the receive
    # path (the stack logs and counts it).
    assert not tally.escaped, escapes(tally)
    # Not vacuous: every kind of input and verdict was reached ...
    assert tally.parse_errors > CASES // 10 and tally.stage_errors > 0, tally
    assert tally.responses > 0 and tally.no_verdict > 0, tally
    for action in ("pass", "challenge", "reject", "drop"):
        assert tally.outcomes[action] > 0, tally
    counters = policy.counters
    assert counters.authenticated["gateway"] > 0 and counters.authenticated["phone"] > 0
    assert sum(counters.suspended.values()) > SUSPENSIONS
    # ... calls were started from what passed, and every one ended with its CDR ...
    board = switch.board
    ledger = switch.ledger
    assert ledger.ended > 50 and ledger.cdrs == ledger.ended, (ledger.ended, ledger.cdrs)
    assert ledger.unmatched == {}
    assert not board.calls and not board.legs
    in_use = {key: board.counts[key] for key in (
        ("gateway", 1), ("gateway", 2), ("gateway", 3), ("phone", 1), ("routing", 1))}
    assert set(in_use.values()) == {0}, in_use
    # ... and every table was driven past its capacity, which held (checked per case).
    assert policy.sessions.evictions > 0
    assert policy.suspensions.failures.evictions > 0
    assert policy.suspensions.suspended.evictions > 0
    assert policy.throttle._last.evictions > 0
    assert len(policy.verifier.counts) == NONCES
    # Once the tables are full, memory stops growing.
    assert growth < MEMORY_GROWTH_LIMIT, (growth, tally)


def test_fuzz_is_reproducible() -> None:
    first = fuzz(FuzzSwitch(small=True), 300, SEED + 1)
    second = fuzz(FuzzSwitch(small=True), 300, SEED + 1)
    assert first == second


def test_an_exception_on_the_receive_path_is_reported_as_an_escape(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack catches and logs what the switch raises; the fuzzer must still see it."""
    switch = FuzzSwitch(small=True)

    def broken(request: Request, source: Peer) -> None:
        raise KeyError("planted")

    monkeypatch.setattr(switch.board, "on_request", broken)
    tally = fuzz(switch, 50, SEED)
    # Named by the innermost frame of the softswitch: the stack, which called the switch.
    where, = tally.escaped
    assert where.startswith("KeyError at b2bua/sip/stack.py:"), tally.escaped
