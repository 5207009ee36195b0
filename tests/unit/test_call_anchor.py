"""A call's media anchoring (b2bua/calls/anchor.py) and its relay sessions
(b2bua/aio/call_media.py), wired as the call adapter wires them, against a fake media
plane (``tests/fakerelay.py``).

No sockets: the relay sessions are :class:`FakeSession`, which records what the call asks
of them (remote addresses, NAT flags, ciphers, RTP or not), has fixed ports, answers
``last_rx`` with times the test chooses and reports counters of the shape
``b2bua.media.plane.Counters``. ``tests/unit/test_media_plane.py`` covers the cap of 8
streams on the first offer, the first T.38 switch and the cipher being read once per
call; this file covers the rest of docs/media.md "In calls" as far as the call layer does
it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

import pytest
from fakerelay import AnchoredMedia, FakePlane, counters, leg_counters

from b2bua.calls.anchor import (
    MAX_STREAMS,
    MediaTotals,
    is_rtp,
    relay_wanted,
    stream_count,
)
from b2bua.config.live import Params
from b2bua.media.sdp import parse_sdp

ADVERTISED = "192.0.2.1"
LEG_SETTINGS = ("auto", "on", "off", "must_on")


def make_params(mode: int = 0, key: str = "", behind_nat: str = "On") -> Params:
    params = Params()
    params.values.update(SS_RTPENCRYPTIONMODE=mode, SS_RTPENCRYPTIONKEY=key,
                         SS_MEDIA_PROXY_BEHIND_NAT=behind_nat)
    return params


def make_media(plane: FakePlane, *, streams: int = 1, mode: int = 0, key: str = "",
               caller_nat: bool = False, caller_encrypted: bool = False,
               totals: MediaTotals | None = None, behind_nat: str = "On",
               on_rtp_start: Callable[[], None] | None = None,
               advertised: str = ADVERTISED) -> AnchoredMedia:
    return AnchoredMedia(make_params(mode, key, behind_nat), plane, advertised,
                         caller_nat=caller_nat, caller_encrypted=caller_encrypted,
                         on_rtp_start=on_rtp_start or (lambda: None), totals=totals,
                         streams=streams)


def started(plane: FakePlane, **kwargs: object) -> AnchoredMedia:
    media = make_media(plane, **kwargs)  # type: ignore[arg-type]
    asyncio.run(media.start())
    return media


def sdp(*m_sections: str, host: str = "10.0.0.1") -> bytes:
    """An SDP body; each section is one m= line, optionally followed by its own lines
    ('\\n'-separated)."""
    lines = ["v=0", f"o=- 1 1 IN IP4 {host}", "s=-", f"c=IN IP4 {host}", "t=0 0"]
    for section in m_sections:
        lines += section.split("\n")
    return ("\r\n".join(lines) + "\r\n").encode()


def m_ports(body: bytes) -> list[int]:
    return [m.port for m in parse_sdp(body).media]


def c_addresses(body: bytes) -> list[str]:
    return [line.split()[2] for line in body.decode().splitlines() if line.startswith("c=")]


# -- relay_wanted ---------------------------------------------------------------------------


def _auto_per_docs(legs: list[str], nat: bool, encrypted: bool) -> bool:
    """docs/media.md's Auto row, read in order."""
    if any(leg == "must_on" for leg in legs):
        return True
    if any(leg == "off" for leg in legs):
        return False
    if any(leg == "on" for leg in legs):
        return True
    return nat or encrypted


_EVERY_CASE = list(itertools.product(LEG_SETTINGS, LEG_SETTINGS, (False, True),
                                     (False, True)))


@pytest.mark.parametrize(("system", "expected"), [("Off", False), ("On", True),
                                                  ("MustOn", True)])
def test_system_off_on_and_must_on_decide_whatever_the_legs_say(system: str,
                                                               expected: bool) -> None:
    for caller, callee, nat, encrypted in _EVERY_CASE:
        assert relay_wanted(system, [caller, callee], nat, encrypted) is expected, (
            caller, callee, nat, encrypted)


def test_auto_follows_every_row_of_the_docs_table() -> None:
    for caller, callee, nat, encrypted in _EVERY_CASE:
        legs = [caller, callee]
        assert relay_wanted("Auto", legs, nat, encrypted) is _auto_per_docs(
            legs, nat, encrypted), (caller, callee, nat, encrypted)


@pytest.mark.parametrize(("legs", "nat", "encrypted", "expected"), [
    (["off", "must_on"], False, False, True),  # must_on beats off, on either leg
    (["must_on", "off"], False, False, True),
    (["on", "off"], True, True, False),  # off beats on, NAT and encryption
    (["off", "auto"], True, False, False),
    (["auto", "off"], False, True, False),
    (["auto", "on"], False, False, True),  # on: relay without NAT or encryption
    (["auto", "auto"], True, False, True),  # NAT alone
    (["auto", "auto"], False, True, True),  # an encrypted leg alone
    (["auto", "auto"], False, False, False),
])
def test_auto_precedence(legs: list[str], nat: bool, encrypted: bool, expected: bool) -> None:
    assert relay_wanted("Auto", legs, nat, encrypted) is expected


# -- stream_count, is_rtp -------------------------------------------------------------------


@pytest.mark.parametrize(("body", "count"), [
    (b"", 1),  # no offer from the caller (it comes in the 200): one stream
    (b"not an sdp body", 1),
    (sdp(), 1),  # no m= line at all
    (sdp("m=audio 6000 RTP/AVP 0"), 1),
    (sdp("m=audio 6000 RTP/AVP 0", "m=video 0 RTP/AVP 96", "m=image 6004 udptl t38"), 3),
    (sdp(*[f"m=audio {6000 + 2 * i} RTP/AVP 0" for i in range(MAX_STREAMS)]), MAX_STREAMS),
    (sdp(*[f"m=audio {6000 + 2 * i} RTP/AVP 0" for i in range(MAX_STREAMS + 4)]),
     MAX_STREAMS),
])
def test_stream_count(body: bytes, count: int) -> None:
    assert stream_count(body) == count


@pytest.mark.parametrize(("proto", "rtp"), [
    ("RTP/AVP", True), ("RTP/SAVP", True), ("RTP/AVPF", True), ("UDP/TLS/RTP/SAVPF", True),
    ("rtp/avp", True), ("udptl", False), ("UDPTL", False), ("TCP/BFCP", False),
])
def test_is_rtp_by_protocol(proto: str, rtp: bool) -> None:
    media = parse_sdp(sdp(f"m=audio 6000 {proto} 0")).media[0]
    assert is_rtp(media) is rtp


# -- a new call's sessions ------------------------------------------------------------------


@pytest.mark.parametrize(("asked", "made"), [(0, 1), (-3, 1), (1, 1), (3, 3),
                                             (MAX_STREAMS + 5, MAX_STREAMS)])
def test_a_call_has_one_to_eight_sessions(asked: int, made: int) -> None:
    plane = FakePlane()
    media = make_media(plane, streams=asked)
    assert plane.sessions == [] and media.unstarted == made  # opened when bound
    asyncio.run(media.start())
    assert len(plane.sessions) == len(media.streams) == made
    assert media.relay.sessions == plane.sessions
    assert media.ports == plane.sessions[0].ports


def test_sessions_get_latching_caller_nat_and_caller_cipher() -> None:
    plane = FakePlane()

    seen: list[int] = []
    started(plane, streams=2, mode=2, key="secret", caller_nat=True,
            caller_encrypted=True, on_rtp_start=lambda: seen.append(1))
    started(plane, mode=2, key="secret", behind_nat="Off", caller_encrypted=False)
    started(plane, mode=0, key="ignored", caller_encrypted=True)
    first, second, plain, mode0 = plane.sessions
    for number, session in enumerate((first, second), 1):
        assert session.latching is True
        assert session.nat == {"a": True}
        assert session.ciphers == {"a": (2, "secret")}
        session.on_rtp_start()  # RTP start from any stream counts
        assert seen == [1] * number
    assert plain.latching is False and plain.nat == {"a": False}
    assert plain.ciphers == {"a": None}
    assert mode0.ciphers == {"a": None}  # mode 0: no cipher whatever the gateway says


# -- start ----------------------------------------------------------------------------------


def test_start_binds_every_stream_and_leaves_the_destination_to_set_destination() -> None:
    plane = FakePlane()
    media = make_media(plane, streams=3)
    offer = sdp("m=audio 6000 RTP/AVP 0", "m=video 6002 RTP/AVP 96", "m=text 6004 RTP/AVP 98")
    # Nothing bound yet: every line is past what the call has bound, so declined.
    assert m_ports(media.from_caller(offer)) == [0, 0, 0]
    assert all(not s.remotes for s in plane.sessions)
    asyncio.run(media.start())
    assert [s.started for s in plane.sessions] == [1, 1, 1]
    assert all(s.calls == [] for s in plane.sessions)  # no leg b settings before a destination
    assert m_ports(media.from_caller(offer)) == [40002, 40006, 40010]


def test_a_failed_start_closes_every_fresh_session_and_raises() -> None:
    plane = FakePlane()
    error = RuntimeError("no free port pair")
    plane.fail[1] = error
    media = make_media(plane, streams=3)
    with pytest.raises(RuntimeError) as caught:
        asyncio.run(media.start())
    assert caught.value is error
    assert [s.started for s in plane.sessions] == [1, 1, 1]
    assert [s.closed for s in plane.sessions] == [1, 1, 1]  # the bound ones too
    assert media.streams == []
    assert m_ports(media.from_caller(sdp("m=audio 6000 RTP/AVP 0"))) == [0]


def test_a_failed_grow_keeps_the_call_and_declines_the_extra_lines() -> None:
    plane = FakePlane()
    media = started(plane, mode=1, key="k", caller_encrypted=True)
    media.set_destination(nat=True, encrypted=True)
    plane.fail[1] = OSError("bind failed")
    reinvite = sdp("m=audio 6000 RTP/AVP 0", "m=video 6002 RTP/AVP 96",
                   "m=image 6004 udptl t38")
    assert media.needs(reinvite) == 2
    with pytest.raises(OSError, match="bind failed"):
        asyncio.run(media.grow(media.needs(reinvite)))
    first, *extra = plane.sessions
    assert len(extra) == 2
    assert first.closed == 0 and [s.closed for s in extra] == [1, 1]
    assert all(("nat", "b", True) not in s.calls for s in extra)  # never applied
    assert media.relay.sessions == [first] and len(media.streams) == 1
    assert m_ports(media.from_caller(reinvite)) == [40002, 0, 0]
    assert list(extra[0].remotes) == list(extra[1].remotes) == []
    assert media.needs(reinvite) == 2  # a later re-INVITE may try again


# -- needs and grow -------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "needed"), [
    (b"", 0),
    (b"garbage", 0),
    (sdp("m=audio 6000 RTP/AVP 0"), 0),
    (sdp("m=audio 6000 RTP/AVP 0", "m=video 6002 RTP/AVP 96"), 0),
    (sdp("m=audio 6000 RTP/AVP 0", "m=video 6002 RTP/AVP 96", "m=text 6004 RTP/AVP 98"), 1),
    (sdp(*[f"m=audio {6000 + 2 * i} RTP/AVP 0" for i in range(12)]), MAX_STREAMS - 2),
])
def test_needs_counts_the_lines_beyond_the_calls_streams(body: bytes, needed: int) -> None:
    media = make_media(FakePlane(), streams=2)
    assert media.needs(body) == needed


def test_grow_adds_streams_with_the_destinations_nat_and_ciphers() -> None:
    plane = FakePlane()
    media = started(plane, mode=2, key="secret", caller_encrypted=True)
    media.set_destination(nat=True, encrypted=True)
    asyncio.run(media.grow(2))
    assert len(media.streams) == len(plane.sessions) == 3
    for session in plane.sessions[1:]:
        assert session.started == 1
        assert session.nat == {"a": False, "b": True}
        assert session.ciphers == {"a": (2, "secret"), "b": (2, "secret")}
    reinvite = sdp("m=audio 6000 RTP/AVP 0", "m=video 6002 RTP/AVP 96", "m=text 6004 RTP/AVP 98")
    assert m_ports(media.from_caller(reinvite)) == [40002, 40006, 40010]
    assert m_ports(media.from_callee(reinvite)) == [40000, 40004, 40008]


def test_grow_applies_a_plain_destination_too() -> None:
    plane = FakePlane()
    media = started(plane, mode=1, key="k", caller_encrypted=False)
    media.set_destination(nat=False, encrypted=False)
    asyncio.run(media.grow(1))
    grown = plane.sessions[1]
    assert ("nat", "b", False) in grown.calls
    assert grown.ciphers == {"a": None, "b": None}


def test_grow_stops_at_max_streams() -> None:
    plane = FakePlane()
    media = started(plane, streams=MAX_STREAMS - 1)
    asyncio.run(media.grow(5))
    assert len(plane.sessions) == len(media.streams) == MAX_STREAMS
    asyncio.run(media.grow(1))
    assert len(plane.sessions) == MAX_STREAMS
    assert media.needs(sdp(*[f"m=audio {6000 + 2 * i} RTP/AVP 0" for i in range(10)])) == 0


# -- set_destination ------------------------------------------------------------------------


def test_set_destination_applies_to_every_stream_and_again_on_failover() -> None:
    plane = FakePlane()
    media = started(plane, streams=2, mode=3, key="0123456789abcdef", caller_encrypted=False)
    media.set_destination(nat=True, encrypted=True)
    spec = (3, "0123456789abcdef")
    for session in plane.sessions:
        assert session.nat["b"] is True
        assert session.ciphers == {"a": None, "b": spec}
    media.set_destination(nat=False, encrypted=False)  # the next vendor of the route
    for session in plane.sessions:
        assert session.nat["b"] is False
        assert session.ciphers == {"a": None, "b": None}
    assert (media.callee_nat, media.callee_encrypted) == (False, False)


def test_set_destination_keeps_the_caller_cipher() -> None:
    plane = FakePlane()
    media = started(plane, mode=1, key="k", caller_encrypted=True)
    media.set_destination(nat=False, encrypted=False)
    assert plane.sessions[0].ciphers == {"a": (1, "k"), "b": None}


# -- ciphers on RTP streams only ------------------------------------------------------------


def test_t38_switch_drops_the_ciphers_and_switching_back_restores_them() -> None:
    plane = FakePlane()
    media = started(plane, mode=1, key="k", caller_encrypted=True)
    media.set_destination(nat=False, encrypted=True)
    session = plane.sessions[0]
    audio = media.from_caller(sdp("m=audio 6000 RTP/AVP 0"))
    assert session.ciphers == {"a": (1, "k"), "b": (1, "k")}
    assert not any(call[0] == "rtp" for call in session.calls)

    fax = media.from_callee(sdp("m=image 7000 udptl t38", host="10.0.0.2"))
    assert session.rtp is False
    assert session.ciphers == {"a": None, "b": None}
    assert m_ports(fax) == [40000]  # same stream, same ports
    media.set_destination(nat=False, encrypted=True)  # a failover keeps T.38 plain
    assert session.ciphers == {"a": None, "b": None}
    assert media.stats()["streams"][0]["media"] == "image"
    assert media.stats()["streams"][0]["encryption_mode"] == 0

    back = media.from_caller(sdp("m=audio 6000 RTP/AVP 0"))
    assert session.rtp is True
    assert session.ciphers == {"a": (1, "k"), "b": (1, "k")}
    assert m_ports(back) == m_ports(audio) == [40002]
    assert [c for c in session.calls if c[0] == "rtp"] == [("rtp", False), ("rtp", True)]
    assert media.stats()["streams"][0]["encryption_mode"] == 1


def test_a_grown_t38_stream_gets_no_cipher_while_audio_keeps_it() -> None:
    plane = FakePlane()
    media = started(plane, mode=2, key="secret", caller_encrypted=True)
    media.set_destination(nat=False, encrypted=True)
    offer = sdp("m=audio 6000 RTP/AVP 0", "m=image 6004 udptl t38")
    asyncio.run(media.grow(media.needs(offer)))
    media.from_caller(offer)
    audio, fax = plane.sessions
    assert audio.ciphers == {"a": (2, "secret"), "b": (2, "secret")}
    assert fax.rtp is False and fax.ciphers == {"a": None, "b": None}
    streams = media.stats()["streams"]
    assert [(s["media"], s["rtp"], s["encryption_mode"]) for s in streams] == [
        ("audio", True, 2), ("image", False, 0)]


def test_a_new_media_kind_on_rtp_is_noted_without_touching_the_ciphers() -> None:
    plane = FakePlane()
    media = started(plane, mode=1, key="k", caller_encrypted=True)
    media.set_destination(nat=False, encrypted=False)
    before = list(plane.sessions[0].calls)
    media.from_caller(sdp("m=video 6000 RTP/AVP 96"))
    new_calls = plane.sessions[0].calls[len(before):]
    assert [c[0] for c in new_calls] == ["remote"]  # no set_rtp, no set_cipher
    assert media.stats()["streams"][0]["media"] == "video"


# -- SDP crossing ---------------------------------------------------------------------------


def test_each_line_points_at_the_other_legs_port_and_the_sender_becomes_the_peer() -> None:
    plane = FakePlane()
    media = started(plane, streams=2)
    offer = sdp("m=audio 6000 RTP/AVP 0\na=rtcp:6011 IN IP4 10.0.0.9",
                "m=video 6002 RTP/AVP 96\nc=IN IP4 10.0.0.5")
    out = media.from_caller(offer)
    assert m_ports(out) == [40002, 40006]
    assert set(c_addresses(out)) == {ADVERTISED}
    assert b"10.0.0." not in out.split(b"\r\n", 2)[2]  # only o= keeps the caller's host
    assert b"a=rtcp:40003 IN IP4 192.0.2.1" in out
    first, second = plane.sessions
    assert first.remotes == {"a": ("10.0.0.1", 6000, 6011, "10.0.0.9")}
    assert second.remotes == {"a": ("10.0.0.5", 6002, None, None)}

    answer = sdp("m=audio 7000 RTP/AVP 0", "m=video 7002 RTP/AVP 96", host="10.0.0.2")
    back = media.from_callee(answer)
    assert m_ports(back) == [40000, 40004]
    assert set(c_addresses(back)) == {ADVERTISED}
    assert first.remotes["b"] == ("10.0.0.2", 7000, None, None)
    assert second.remotes["b"] == ("10.0.0.2", 7002, None, None)
    assert first.remotes["a"] == ("10.0.0.1", 6000, 6011, "10.0.0.9")  # a untouched


def test_a_disabled_line_crosses_as_zero_and_a_line_past_the_streams_is_declined() -> None:
    plane = FakePlane()
    media = started(plane, streams=2)
    offer = sdp("m=audio 6000 RTP/AVP 0", "m=video 0 RTP/AVP 96", "m=text 6004 RTP/AVP 98")
    out = media.from_caller(offer)
    assert m_ports(out) == [40002, 0, 0]
    # a disabled stream's leg sends nothing (port 0), whatever it sent before
    assert plane.sessions[1].remotes["a"][1] == 0
    answer = media.from_callee(sdp("m=audio 7000 RTP/AVP 0", "m=video 7002 RTP/AVP 96",
                                   "m=text 7004 RTP/AVP 98", host="10.0.0.2"))
    assert m_ports(answer) == [40000, 40004, 0]
    assert len(plane.sessions) == 2  # nothing bound for the third line


def test_a_hold_address_reaches_the_leg_and_the_other_side() -> None:
    plane = FakePlane()
    media = started(plane)
    media.from_caller(sdp("m=audio 6000 RTP/AVP 0"))
    held = media.from_caller(sdp("m=audio 6000 RTP/AVP 0\na=sendonly", host="0.0.0.0"))
    assert plane.sessions[0].remotes["a"][:2] == ("0.0.0.0", 6000)  # send nothing
    assert m_ports(held) == [40002]
    assert b"c=IN IP4 0.0.0.0" in held and b"a=sendonly" in held


def test_an_unusable_address_leaves_its_stream_unrelayed_and_the_rest_relayed(
        caplog: pytest.LogCaptureFixture) -> None:
    plane = FakePlane()
    media = started(plane, streams=2)
    first, second = plane.sessions
    first.bad_hosts.add("2001:db8::1")
    offer = sdp("m=audio 6000 RTP/AVP 0\nc=IN IP6 2001:db8::1", "m=video 6002 RTP/AVP 96")
    with caplog.at_level(logging.INFO, logger="b2bua.media"):
        out = media.from_caller(offer)
    assert first.remotes == {}  # the relay does not send toward that party
    assert second.remotes == {"a": ("10.0.0.1", 6002, None, None)}
    assert m_ports(out) == [40002, 40006]
    assert "2001:db8::1 not usable; stream 0 not relayed" in caplog.text


@pytest.mark.parametrize("body", [b"", b"garbage\r\n", sdp()])
def test_a_body_without_streams_crosses_unchanged(body: bytes) -> None:
    plane = FakePlane()
    media = started(plane)
    assert media.from_caller(body) == body
    assert media.from_callee(body) == body
    assert plane.sessions[0].calls == []


def test_a_relay_host_that_is_not_an_ip_leaves_the_body_unchanged() -> None:
    plane = FakePlane()
    media = make_media(plane, advertised="relay.example.net")
    asyncio.run(media.start())
    offer = sdp("m=audio 6000 RTP/AVP 0")
    assert media.from_caller(offer) == offer
    assert plane.sessions[0].remotes == {"a": ("10.0.0.1", 6000, None, None)}


def test_disabling_a_relayed_stream_stops_the_relay_sending_to_it() -> None:
    """docs/media.md: "the sender's c=/m= (and a=rtcp) become its leg's peer address",
    and for set_remote "port 0 (hold, disabled stream) means *send nothing*". A re-INVITE
    answer that disables the video stream should therefore reach its leg as port 0, as a
    hold address does (test_a_hold_address_reaches_the_leg_and_the_other_side)."""
    plane = FakePlane()
    media = started(plane, streams=2)
    media.from_caller(sdp("m=audio 6000 RTP/AVP 0", "m=video 6002 RTP/AVP 96"))
    media.from_callee(sdp("m=audio 7000 RTP/AVP 0", "m=video 7002 RTP/AVP 96",
                          host="10.0.0.2"))
    video = plane.sessions[1]
    assert video.remotes["b"][1] == 7002
    out = media.from_callee(sdp("m=audio 7000 RTP/AVP 0", "m=video 0 RTP/AVP 96",
                                host="10.0.0.2"))
    assert m_ports(out) == [40000, 0]
    assert video.remotes["b"][1] == 0, (
        "the video leg still sends to the callee's old port 7002 after it disabled it")


# -- the RTP interruption check -------------------------------------------------------------


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(0.0)
    monkeypatch.setattr("time.monotonic", fake)  # the relay's clock
    return fake


def watched(clock: Clock, streams: int = 1, at: float = 100.0
            ) -> tuple[AnchoredMedia, FakePlane]:
    plane = FakePlane()
    media = started(plane, streams=streams)
    clock.now = at
    media.watch()
    return media, plane


@pytest.mark.parametrize(("check", "leg", "silent_rx_leg", "expected"), [
    # from_remote: what the leg's own peer sends us
    ("from_remote", "a", "a", "caller from_remote"),
    ("from_remote", "a", "b", None),
    ("from_remote", "b", "b", "callee from_remote"),
    ("from_remote", "b", "a", None),
    # to_remote: what we relay toward the leg's peer, i.e. what the other leg receives
    ("to_remote", "a", "b", "caller to_remote"),
    ("to_remote", "a", "a", None),
    ("to_remote", "b", "a", "callee to_remote"),
    ("to_remote", "b", "b", None),
    ("both", "a", "a", "caller from_remote"),
    ("both", "a", "b", "caller to_remote"),
    ("both", "b", "b", "callee from_remote"),
    ("both", "b", "a", "callee to_remote"),
    ("none", "a", "a", None),
    ("none", "b", "b", None),
])
def test_silent_direction_per_check_and_leg(clock: Clock, check: str, leg: str,
                                            silent_rx_leg: str, expected: str | None
                                            ) -> None:
    media, plane = watched(clock)
    talking = "b" if silent_rx_leg == "a" else "a"
    plane.sessions[0].rx[talking] = 119.0
    clock.now = 120.0
    assert media.silent_direction({leg: check}, 10.0) == expected


def test_both_checks_from_remote_first(clock: Clock) -> None:
    media, _ = watched(clock)
    clock.now = 200.0
    assert media.silent_direction({"b": "both"}, 10.0) == "callee from_remote"
    assert media.silent_direction({"a": "both", "b": "both"}, 10.0) == "caller from_remote"
    assert media.silent_direction({"b": "to_remote", "a": "both"}, 10.0) == "callee to_remote"


def test_silence_is_counted_from_watch_while_nothing_arrived(clock: Clock) -> None:
    clock.now = 0.0
    plane = FakePlane()
    media = started(plane)
    clock.now = 100.0
    media.watch()  # answered at 100: the ringing time does not count
    clock.now = 109.9
    assert media.silent_direction({"a": "from_remote"}, 10.0) is None
    clock.now = 110.0
    assert media.silent_direction({"a": "from_remote"}, 10.0) == "caller from_remote"


def test_a_packet_before_the_answer_does_not_shorten_the_timeout(clock: Clock) -> None:
    media, plane = watched(clock, at=100.0)
    plane.sessions[0].rx["a"] = 50.0  # early media
    clock.now = 105.0
    assert media.silent_direction({"a": "from_remote"}, 10.0) is None
    clock.now = 110.0
    assert media.silent_direction({"a": "from_remote"}, 10.0) == "caller from_remote"


def test_silence_is_counted_from_the_last_packet(clock: Clock) -> None:
    media, plane = watched(clock, at=100.0)
    plane.sessions[0].rx["b"] = 130.0
    clock.now = 139.0
    assert media.silent_direction({"b": "from_remote"}, 10.0) is None
    clock.now = 140.0
    assert media.silent_direction({"b": "from_remote"}, 10.0) == "callee from_remote"
    plane.sessions[0].rx["b"] = 139.5  # it comes back
    assert media.silent_direction({"b": "from_remote"}, 10.0) is None


def test_a_direction_is_heard_when_any_stream_carried_it(clock: Clock) -> None:
    media, plane = watched(clock, streams=3, at=100.0)
    plane.sessions[2].rx["a"] = 125.0  # only the third stream (say video) carries a -> b
    plane.sessions[0].rx["a"] = 101.0
    clock.now = 130.0
    assert media.silent_direction({"a": "from_remote", "b": "to_remote"}, 10.0) is None
    clock.now = 135.0
    assert media.silent_direction({"b": "to_remote"}, 10.0) == "callee to_remote"


def test_no_checks_never_silent(clock: Clock) -> None:
    media, _ = watched(clock)
    clock.now = 10_000.0
    assert media.silent_direction({}, 1.0) is None


# -- close and finish -----------------------------------------------------------------------


def test_close_closes_every_session_and_drops_the_call_callback() -> None:
    plane = FakePlane()
    seen: list[str] = []
    media = started(plane, streams=3, on_rtp_start=lambda: seen.append("rtp"))
    media.close()
    assert [s.closed for s in plane.sessions] == [1, 1, 1]
    assert all(s.pending is None for s in plane.sessions)
    media.on_rtp_start()
    assert seen == []  # the call is no longer reachable from its media


def test_finish_waits_for_every_streams_final_counters() -> None:
    plane = FakePlane()
    totals = MediaTotals()
    seen: list[str] = []
    media = started(plane, streams=2, mode=1, key="k", caller_encrypted=True, totals=totals,
                    on_rtp_start=lambda: seen.append("rtp"))
    media.from_caller(sdp("m=audio 6000 RTP/AVP 0", "m=image 6004 udptl t38"))
    first, second = plane.sessions
    for session in plane.sessions:
        session.defer_final = True
        session.live = counters(leg_counters(999, 999))  # not what the CDR must carry
    first.final = counters(leg_counters(10, 1600, malformed=1, in_c=9),
                           leg_counters(8, 1280, foreign=2, dropped=1, in_c=7,
                                        cipher_errors=3))
    second.final = counters(leg_counters(3, 300), leg_counters(4, 400, malformed=5))
    results: list[dict[str, object]] = []
    media.finish(results.append)
    assert [s.closed for s in plane.sessions] == [1, 1]
    media.on_rtp_start()
    assert seen == []
    second.deliver_final()  # out of order
    assert results == [] and totals.snapshot() == {}
    first.deliver_final()
    assert len(results) == 1
    stats = results[0]
    assert stats["caller_to_callee_packets"] == 13
    assert stats["caller_to_callee_bytes"] == 1900
    assert stats["callee_to_caller_packets"] == 12
    assert stats["callee_to_caller_bytes"] == 1680
    assert (stats["malformed"], stats["foreign"], stats["dropped"]) == (6, 2, 1)
    assert (stats["packets_in_c"], stats["cipher_errors"]) == (16, 3)
    assert stats["encryption_mode"] == 1
    streams = stats["streams"]
    assert isinstance(streams, list)
    assert [s["index"] for s in streams] == [0, 1]
    assert [s["caller_to_callee_packets"] for s in streams] == [10, 3]
    assert [s["encryption_mode"] for s in streams] == [1, 0]  # T.38 never encrypted
    assert totals.snapshot() == {"xor": {"calls": 1, "packets": 25, "bytes": 3580,
                                         "malformed": 6, "foreign": 2, "dropped": 1,
                                         "packets_in_c": 16, "cipher_errors": 3}}


def test_finish_in_process_hands_the_stats_at_once_without_totals() -> None:
    plane = FakePlane()
    media = started(plane)
    plane.sessions[0].final = counters(leg_counters(5, 500), leg_counters(6, 600))
    results: list[dict[str, object]] = []
    media.finish(results.append)
    assert len(results) == 1
    assert results[0]["caller_to_callee_packets"] == 5
    assert results[0]["callee_to_caller_bytes"] == 600
    assert results[0]["encryption_mode"] == 0


@pytest.mark.parametrize(("mode", "caller", "callee", "name"), [
    (0, True, True, "none"),
    (1, False, False, "none"),  # a mode but no encrypted leg
    (1, True, False, "xor"),
    (2, False, True, "rc4"),
    (3, True, True, "aes128"),
])
def test_finish_adds_the_call_to_its_ciphers_totals(mode: int, caller: bool, callee: bool,
                                                    name: str) -> None:
    plane = FakePlane()
    totals = MediaTotals()
    key = "0123456789abcdef"
    media = started(plane, mode=mode, key=key, caller_encrypted=caller, totals=totals)
    media.set_destination(nat=False, encrypted=callee)
    plane.sessions[0].final = counters(leg_counters(2, 20), leg_counters(3, 30))
    media.finish(lambda stats: None)
    assert totals.snapshot() == {name: {"calls": 1, "packets": 5, "bytes": 50,
                                        "malformed": 0, "foreign": 0, "dropped": 0,
                                        "packets_in_c": 0, "cipher_errors": 0}}


# -- stats and MediaTotals ------------------------------------------------------------------


def test_stats_totals_over_the_streams_and_each_stream_on_its_own() -> None:
    plane = FakePlane()
    media = started(plane, streams=3, mode=3, key="0123456789abcdef", caller_encrypted=False)
    media.from_caller(sdp("m=audio 6000 RTP/AVP 0", "m=video 6002 RTP/AVP 96",
                          "m=image 6004 udptl t38"))
    for n, session in enumerate(plane.sessions, start=1):
        session.live = counters(leg_counters(n, 100 * n, malformed=n, in_c=n - 1),
                                leg_counters(10 * n, 1000 * n, foreign=n, dropped=2 * n,
                                             in_c=9 * n, cipher_errors=n))
    stats = media.stats()
    assert stats["relayed"] is True
    assert stats["encryption_mode"] == 0  # mode 3 configured, no leg encrypted
    assert (stats["caller_encrypted"], stats["callee_encrypted"]) == (False, False)
    assert stats["caller_to_callee_packets"] == 6
    assert stats["caller_to_callee_bytes"] == 600
    assert stats["callee_to_caller_packets"] == 60
    assert stats["callee_to_caller_bytes"] == 6000
    assert (stats["malformed"], stats["foreign"], stats["dropped"]) == (6, 6, 12)
    assert stats["ports"] == [40000, 40002]  # the first stream's
    assert stats["streams"] == [
        {"index": i, "media": kind, "rtp": rtp, "encryption_mode": 0,
         "caller_to_callee_packets": n, "caller_to_callee_bytes": 100 * n,
         "callee_to_caller_packets": 10 * n, "callee_to_caller_bytes": 1000 * n,
         "malformed": n, "foreign": n, "dropped": 2 * n, "packets_in_c": 10 * n - 1,
         "cipher_errors": n, "ports": [40000 + 4 * i, 40002 + 4 * i]}
        for i, (n, kind, rtp) in enumerate([(1, "audio", True), (2, "video", True),
                                            (3, "image", False)])]

    media.set_destination(nat=False, encrypted=True)
    stats = media.stats()
    assert stats["encryption_mode"] == 3
    assert (stats["caller_encrypted"], stats["callee_encrypted"]) == (False, True)
    assert [s["encryption_mode"] for s in stats["streams"]] == [3, 3, 0]


def test_a_fax_only_call_used_no_cipher() -> None:
    plane = FakePlane()
    totals = MediaTotals()
    media = started(plane, mode=1, key="k", caller_encrypted=True, totals=totals)
    media.set_destination(nat=False, encrypted=True)
    media.from_caller(sdp("m=image 6000 udptl t38"))  # the call switched to T.38 only
    plane.sessions[0].final = counters(leg_counters(7, 700), leg_counters(7, 700))
    results: list[dict[str, object]] = []
    media.finish(results.append)
    stats = results[0]
    assert stats["encryption_mode"] == 0
    assert (stats["caller_encrypted"], stats["callee_encrypted"]) == (True, True)
    assert list(totals.snapshot()) == ["none"]


def test_stats_with_counters_uses_them_instead_of_the_live_ones() -> None:
    plane = FakePlane()
    media = started(plane, streams=2)
    plane.sessions[0].live = plane.sessions[1].live = counters(leg_counters(50, 50))
    stats = media.stats([counters(leg_counters(1, 2)), counters(leg_counters(3, 4))])
    assert stats["caller_to_callee_packets"] == 4
    assert stats["caller_to_callee_bytes"] == 6
    # One counters dict per bound stream, in order: a stream without one (bound after
    # the call ended) is left out, not guessed.
    assert [s["index"] for s in media.stats([counters()])["streams"]] == [0]


def test_media_totals_accumulate_by_cipher_name() -> None:
    totals = MediaTotals()

    def call(mode: object, up: int, down: int, **drops: int) -> dict[str, object]:
        return {"encryption_mode": mode, "caller_to_callee_packets": up,
                "caller_to_callee_bytes": 10 * up, "callee_to_caller_packets": down,
                "callee_to_caller_bytes": 10 * down, **drops}

    totals.add(call(0, 1, 2, malformed=1))
    totals.add(call(0, 3, 4, foreign=2, dropped=3, packets_in_c=6, cipher_errors=1))
    totals.add(call("2", 5, 0))  # the mode as text
    totals.add(call(7, 1, 1))
    totals.add({"caller_to_callee_packets": 1, "caller_to_callee_bytes": 1,
                "callee_to_caller_packets": 1, "callee_to_caller_bytes": 1})
    snapshot = totals.snapshot()
    assert snapshot == {
        "none": {"calls": 3, "packets": 12, "bytes": 102, "malformed": 1, "foreign": 2,
                 "dropped": 3, "packets_in_c": 6, "cipher_errors": 1},
        "rc4": {"calls": 1, "packets": 5, "bytes": 50, "malformed": 0, "foreign": 0,
                "dropped": 0, "packets_in_c": 0, "cipher_errors": 0},
        "other": {"calls": 1, "packets": 2, "bytes": 20, "malformed": 0, "foreign": 0,
                  "dropped": 0, "packets_in_c": 0, "cipher_errors": 0},
    }
    snapshot["none"]["calls"] = 99
    assert totals.snapshot()["none"]["calls"] == 3  # a copy
