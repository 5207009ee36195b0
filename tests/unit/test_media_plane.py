"""Pure parts of the media plane: splitting the port range between relay workers, and
the event-loop lag measure behind admission control."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from fakerelay import AnchoredMedia
from hypothesis import given
from hypothesis import strategies as st

from b2bua.calls.anchor import MAX_STREAMS, stream_count
from b2bua.config.live import Params
from b2bua.looplag import WINDOW, LoopLag
from b2bua.media.plane import CipherSpec
from b2bua.media.relay import PortAllocator
from b2bua.options import split_ports


@given(st.integers(1024, 60000), st.integers(1, 5000), st.integers(1, 8))
def test_split_ports_gives_disjoint_even_slices_covering_every_pair(
        low: int, span: int, parts: int) -> None:
    high = min(65535, low + span)
    try:
        pairs = PortAllocator(low, high).capacity
    except ValueError:
        pairs = 0
    if pairs < parts:
        with pytest.raises(ValueError):
            split_ports(low, high, parts)
        return
    slices = split_ports(low, high, parts)
    assert len(slices) == parts
    allocated: list[int] = []
    for lo, hi in slices:
        assert lo % 2 == 0 and low <= lo < hi <= high
        allocated += list(PortAllocator(lo, hi)._free)
    assert sorted(allocated) == sorted(PortAllocator(low, high)._free)
    assert len(set(allocated)) == pairs
    sizes = [PortAllocator(lo, hi).capacity for lo, hi in slices]
    assert max(sizes) - min(sizes) <= 1


def test_one_pause_barely_moves_the_mean_a_slow_loop_moves_it_fully() -> None:
    lag = LoopLag()
    now = time.monotonic()
    samples = int(WINDOW / 0.05)
    for i in range(samples):
        lag.note(now - WINDOW + i * 0.05, 0.6 if i == samples // 2 else 0.001)
    assert lag.peak == pytest.approx(0.6)
    assert lag.mean < 0.05
    assert lag.worst == pytest.approx(0.6)
    slow = LoopLag()  # a loop that cannot keep up: every wake-up 0.4 s late
    for i in range(4):
        slow.note(now - WINDOW + 0.45 * (i + 1), 0.4)
    assert slow.mean == pytest.approx(0.4)


def test_loop_lag_measures_a_blocked_loop() -> None:
    async def body() -> tuple[float, float]:
        lag = LoopLag()
        task = asyncio.ensure_future(lag.run())
        await asyncio.sleep(0.2)
        calm = lag.peak
        for _ in range(5):
            time.sleep(0.12)  # a callback hogging the loop
            await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        task.cancel()
        return calm, lag.peak

    calm, busy = asyncio.run(body())
    assert calm < 0.05
    assert busy >= 0.1


class _RecordingSession:
    """Records the ciphers a call asks its relay session for."""

    def __init__(self, a_cipher: CipherSpec | None) -> None:
        self.ciphers: dict[str, CipherSpec | None] = {"a": a_cipher}

    async def start(self) -> None:
        pass

    def set_nat(self, leg: str, nat: bool) -> None:
        pass

    def set_cipher(self, leg: str, spec: CipherSpec | None) -> None:
        self.ciphers[leg] = spec


    ports = (40000, 40002)
    rtp = True

    def set_rtp(self, rtp: bool) -> None:
        self.rtp = rtp

    def set_remote(self, leg: str, host: str, port: int, rtcp_port: int | None = None,
                   rtcp_host: str | None = None) -> None:
        pass


class _RecordingPlane:
    def __init__(self) -> None:
        self.sessions: list[_RecordingSession] = []

    def new_session(self, *, latching: bool, a_nat: bool, a_cipher: CipherSpec | None,
                    on_rtp_start: Callable[[], None]) -> _RecordingSession:
        self.session = _RecordingSession(a_cipher)
        self.session.ports = (40000 + 4 * len(self.sessions), 40002 + 4 * len(self.sessions))
        self.sessions.append(self.session)
        return self.session


def _offer(*m_lines: str) -> bytes:
    return ("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
            + "".join(f"{m}\r\n" for m in m_lines)).encode()


def test_each_m_line_has_its_own_relay_and_t38_gets_no_cipher() -> None:
    params = Params()
    params.values.update(SS_RTPENCRYPTIONMODE=1, SS_RTPENCRYPTIONKEY="k")
    plane = _RecordingPlane()
    offer = _offer("m=audio 6000 RTP/AVP 0", "m=video 6002 RTP/AVP 96",
                   *[f"m=text {7000 + 2 * i} RTP/AVP 98" for i in range(8)])
    media = AnchoredMedia(params, plane, "192.0.2.1", caller_nat=False,  # type: ignore[arg-type]
                          caller_encrypted=True, on_rtp_start=lambda: None,
                          streams=stream_count(offer))
    asyncio.run(media.start())
    assert len(plane.sessions) == MAX_STREAMS == 8
    media.set_destination(nat=False, encrypted=False)
    out = media.from_caller(offer).decode()
    ports = [line.split()[1] for line in out.splitlines() if line.startswith("m=")]
    assert ports == ["40002", "40006", *[str(40010 + 4 * i) for i in range(6)], "0", "0"]
    # The T.38 switch on the first m= line: relayed as it is, without the cipher.
    media.from_callee(_offer("m=image 6100 udptl t38", "m=video 0 RTP/AVP 96"))
    first, second = plane.sessions[:2]
    assert first.rtp is False and first.ciphers == {"a": None, "b": None}
    assert second.rtp is True and second.ciphers["a"] == (1, "k")
    answer = media.from_caller(_offer("m=image 6200 udptl t38", "m=video 0 RTP/AVP 96"))
    assert b"m=video 0 " in answer  # disabled by one side: stays disabled
    assert media.needs(_offer("m=audio 1 RTP/AVP 0")) == 0


def test_a_key_or_mode_change_applies_to_new_calls_only() -> None:
    """Both legs of a call, on every vendor attempt, keep the cipher in force when the
    call started: the far end of that call keeps its own until the call ends."""
    params = Params()
    params.values.update(SS_RTPENCRYPTIONMODE=3, SS_RTPENCRYPTIONKEY="0123456789abcdef")
    plane = _RecordingPlane()
    media = AnchoredMedia(params, plane, "127.0.0.1", caller_nat=False,  # type: ignore[arg-type]
                          caller_encrypted=True, on_rtp_start=lambda: None)
    asyncio.run(media.start())
    params.values.update(SS_RTPENCRYPTIONMODE=2, SS_RTPENCRYPTIONKEY="fedcba9876543210")
    media.set_destination(nat=False, encrypted=True)  # a failover attempt after the change
    assert plane.session.ciphers == {"a": (3, "0123456789abcdef"), "b": (3, "0123456789abcdef")}
    assert media.mode == 3  # what the CDR's media says
    later = AnchoredMedia(params, plane, "127.0.0.1", caller_nat=False,  # type: ignore[arg-type]
                          caller_encrypted=True, on_rtp_start=lambda: None)
    asyncio.run(later.start())
    assert plane.session.ciphers["a"] == (2, "fedcba9876543210") and later.mode == 2
