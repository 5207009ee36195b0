"""A call's media anchoring: whether to relay, and the SDP rewriting around the relay.

Each m= line of the call (audio, video, T.38 ``image``; up to :data:`MAX_STREAMS`) has
its own relay session; leg ``a`` of each faces the caller, leg ``b`` the destination.
Every SDP that crosses the B2BUA (offer or answer, in INVITE, 18x, 200, ACK, re-INVITE,
UPDATE) goes through ``from_caller`` or ``from_callee``: the sender's media address for
each m= line is given to its stream's leg, and the body the other side receives points
each m= line at the other leg's ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from b2bua.config.live import Params
from b2bua.media.plane import CipherSpec, Counters, MediaPlane, MediaSession
from b2bua.media.sdp import MediaInfo, parse_sdp, rewrite_sdp

log = logging.getLogger("b2bua.media")

MODES = ("auto", "on", "off", "must_on")


def relay_wanted(system: str, legs: list[str], nat: bool, encrypted: bool) -> bool:
    """SS_MEDIAPROXYMODE and the legs' ``media_relay`` settings (docs/media.md)."""
    if system == "Off":
        return False
    if system in ("On", "MustOn"):
        return True
    if "must_on" in legs:
        return True
    if "off" in legs:
        return False
    if "on" in legs:
        return True
    return nat or encrypted


MAX_STREAMS = 8  # relayed m= lines per call; further ones are declined (port 0)


def stream_count(body: bytes) -> int:
    """How many relay sessions an offer needs: one per m= line, at most MAX_STREAMS."""
    info = parse_sdp(body) if body else None
    if info is None or not info.ok or not info.media:
        return 1
    return min(len(info.media), MAX_STREAMS)


def is_rtp(media: MediaInfo) -> bool:
    """RTP streams get the RTP checks and the ciphers; T.38 (``m=image ... udptl``) and
    other non-RTP streams are relayed as they are."""
    return "RTP" in media.proto.upper()


@dataclass(slots=True)
class Stream:
    """One relayed m= line: its relay session, and what the SDP last said it carries."""

    session: MediaSession
    media: str = "audio"
    rtp: bool = True


class CallMedia:
    """The relay sessions of one call, one per m= line (in this process or a relay
    worker: see :mod:`b2bua.media.plane`), and the SDP that crosses them."""

    def __init__(self, params: Params, plane: MediaPlane, advertised_host: str, *,
                 caller_nat: bool, caller_encrypted: bool,
                 on_rtp_start: Callable[[], None], totals: MediaTotals | None = None,
                 streams: int = 1) -> None:
        self.params = params
        self.plane = plane
        self.advertised_host = advertised_host
        self.totals = totals
        # Mode and key are read once: a change applies to new calls, never to the next
        # attempt of a call already up (both ends of that call must keep one cipher).
        self.mode = int(params["SS_RTPENCRYPTIONMODE"])
        self.cipher: CipherSpec | None = (
            None if self.mode == 0 else (self.mode, str(params["SS_RTPENCRYPTIONKEY"])))
        self.latching = params.flag("SS_MEDIA_PROXY_BEHIND_NAT")
        self.caller_nat = caller_nat
        self.caller_encrypted = caller_encrypted
        self.callee_nat = False
        self.callee_encrypted = False
        self.on_rtp_start = on_rtp_start
        self.streams: list[Stream] = []
        self._started = 0  # streams whose sessions have been started
        self._check_since = time.monotonic()
        for _ in range(max(1, min(streams, MAX_STREAMS))):
            self._add_stream()

    @property
    def session(self) -> MediaSession:
        """The first stream's session (the call's audio in nearly every call)."""
        return self.streams[0].session

    def _add_stream(self) -> None:
        session = self.plane.new_session(
            latching=self.latching, a_nat=self.caller_nat,
            a_cipher=self.cipher if self.caller_encrypted else None,
            on_rtp_start=self.on_rtp_start)
        self.streams.append(Stream(session))

    async def start(self) -> None:
        """Bind the streams not yet started; on failure every new one is closed."""
        fresh = self.streams[self._started:]
        grown = self._started > 0  # streams added to a call that has a destination
        self._started = len(self.streams)
        results = await asyncio.gather(*(s.session.start() for s in fresh),
                                       return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            for stream in fresh:
                stream.session.close()
            del self.streams[len(self.streams) - len(fresh):]
            self._started = len(self.streams)
            raise failure
        if grown:
            for stream in fresh:
                self._apply_destination(stream)

    def needs(self, body: bytes) -> int:
        """Streams an offer needs beyond those the call has (a re-INVITE adding video)."""
        return max(0, stream_count(body) - len(self.streams)) if body else 0

    async def grow(self, count: int) -> None:
        for _ in range(min(count, MAX_STREAMS - len(self.streams))):
            self._add_stream()
        await self.start()

    def set_destination(self, nat: bool, encrypted: bool) -> None:
        """A new attempt: its leg's NAT and encryption (the peer address comes with SDP)."""
        self.callee_nat = nat
        self.callee_encrypted = encrypted
        for stream in self.streams[:self._started]:
            self._apply_destination(stream)

    def _apply_destination(self, stream: Stream) -> None:
        stream.session.set_nat("b", self.callee_nat)
        self._apply_ciphers(stream)

    def _apply_ciphers(self, stream: Stream) -> None:
        """Ciphers on RTP streams only: a T.38 stream's packets are not RTP."""
        stream.session.set_cipher(
            "a", self.cipher if self.caller_encrypted and stream.rtp else None)
        stream.session.set_cipher(
            "b", self.cipher if self.callee_encrypted and stream.rtp else None)

    def from_caller(self, body: bytes) -> bytes:
        return self._cross(body, "a")

    def from_callee(self, body: bytes) -> bytes:
        return self._cross(body, "b")

    def _cross(self, body: bytes, sender: str) -> bytes:
        """The sender's address for each m= line to its stream's leg; the body the other
        side gets points each m= line at the other leg of its stream. An m= line without
        a stream (past MAX_STREAMS, or one the offer did not allocate) is declined, and
        one disabled by either side stays disabled (port 0 crosses as 0)."""
        if not body:
            return body
        info = parse_sdp(body)
        if not info.ok or not info.media:
            return body
        receiver = 1 if sender == "a" else 0
        ports: list[int] = []
        for media in info.media:
            if media.index >= self._started:
                ports.append(0)
                continue
            stream = self.streams[media.index]
            if media.disabled:
                # Port 0: the sender takes no more media on this stream; the relay stops
                # sending to it (a different address than before, nothing latched).
                if media.address is not None:
                    with contextlib.suppress(ValueError):  # not an address of ours: ignored
                        stream.session.set_remote(sender, media.address, 0)
                ports.append(0)
                continue
            rtp = is_rtp(media)
            if (stream.media, stream.rtp) != (media.media, rtp):
                stream.media = media.media
                if stream.rtp != rtp:  # the T.38 switch, or back to audio
                    stream.rtp = rtp
                    stream.session.set_rtp(rtp)
                    self._apply_ciphers(stream)
            if media.address is not None:
                try:
                    stream.session.set_remote(sender, media.address, media.port,
                                              media.rtcp_port, media.rtcp_address)
                except ValueError:
                    log.info("media address %s not usable; stream %d not relayed",
                             media.address, media.index)
            ports.append(stream.session.ports[receiver])
        rewritten = rewrite_sdp(body, self.advertised_host, ports)
        return rewritten.body if rewritten.ok else body

    def watch(self) -> None:
        """Start counting silence from now (the call is answered)."""
        self._check_since = time.monotonic()

    def silent_direction(self, checks: dict[str, str], timeout: float) -> str | None:
        """The first checked direction silent for ``timeout`` seconds, or None.

        ``checks`` maps a leg ("a" caller side, "b" destination side) to its gateway's
        ``media_check``: ``from_remote`` watches what the leg's peer sends us,
        ``to_remote`` what we relay toward it (what the other leg receives), ``both``
        both. Silence is counted from :meth:`watch` while nothing has arrived yet. A
        direction is silent when no stream of the
        call carried anything in it. The relay's clock is the monotonic one.
        """
        now = time.monotonic()
        since = self._check_since
        for name, check in checks.items():
            watched = []
            if check in ("from_remote", "both"):
                watched.append(("from_remote", name))
            if check in ("to_remote", "both"):
                watched.append(("to_remote", "b" if name == "a" else "a"))
            for direction, source in watched:
                heard = [t for s in self.streams[:self._started]
                         if (t := s.session.last_rx(source)) is not None]
                last = max(heard) if heard else since
                if now - max(last, since) >= timeout:
                    return f"{'caller' if name == 'a' else 'callee'} {direction}"
        return None

    def _release_call(self) -> None:
        """Drop the call's callback (a bound method of the call): call -> media -> call
        would otherwise be a cycle that only the cyclic collector frees."""
        self.on_rtp_start = _no_rtp_start

    def close(self) -> None:
        self._release_call()
        for stream in self.streams:
            stream.session.close()

    def finish(self, on_final: Callable[[dict[str, Any]], None]) -> None:
        """Close, and hand ``on_final`` the call's media stats once every stream's final
        counters are in (at once in process; after the worker's last report otherwise)."""
        self._release_call()
        finals: dict[int, Counters] = {}
        count = len(self.streams)

        def final(index: int, counters: Counters) -> None:
            finals[index] = counters
            if len(finals) < count:
                return
            stats = self.stats([finals[i] for i in range(count)])
            if self.totals is not None:
                self.totals.add(stats)
            on_final(stats)

        for index, stream in enumerate(self.streams):
            stream.session.close(functools.partial(final, index))

    def stats(self, counters: list[Counters] | None = None) -> dict[str, Any]:
        """Totals over the call's streams, and each stream on its own."""
        if counters is None:
            counters = [s.session.stats() for s in self.streams]
        streams = [_stream_stats(index, stream, c, self._stream_mode(stream))
                   for index, (stream, c) in enumerate(zip(self.streams, counters,
                                                           strict=True))]
        totals = {key: sum(s[key] for s in streams) for key in _STREAM_TOTALS}
        return {
            "relayed": True,
            "encryption_mode": self.mode if (self.caller_encrypted or self.callee_encrypted)
            else 0,
            "caller_encrypted": self.caller_encrypted,
            "callee_encrypted": self.callee_encrypted,
            **totals,
            "ports": list(self.session.ports),
            "streams": streams,
        }

    def _stream_mode(self, stream: Stream) -> int:
        encrypted = self.caller_encrypted or self.callee_encrypted
        return self.mode if encrypted and stream.rtp else 0


def _no_rtp_start() -> None:
    pass


_STREAM_TOTALS = ("caller_to_callee_packets", "caller_to_callee_bytes",
                  "callee_to_caller_packets", "callee_to_caller_bytes", "malformed",
                  "foreign", "dropped")


def _stream_stats(index: int, stream: Stream, counters: Counters, mode: int
                  ) -> dict[str, Any]:
    a_to_b, b_to_a = counters["a_to_b"], counters["b_to_a"]
    return {
        "index": index,
        "media": stream.media,
        "rtp": stream.rtp,
        "encryption_mode": mode,
        "caller_to_callee_packets": a_to_b["rx_packets"],
        "caller_to_callee_bytes": a_to_b["rx_bytes"],
        "callee_to_caller_packets": b_to_a["rx_packets"],
        "callee_to_caller_bytes": b_to_a["rx_bytes"],
        "malformed": a_to_b["rx_malformed"] + b_to_a["rx_malformed"],
        "foreign": a_to_b["rx_foreign"] + b_to_a["rx_foreign"],
        "dropped": a_to_b["send_dropped"] + b_to_a["send_dropped"],
        "ports": list(stream.session.ports),
    }


CIPHER_NAMES = {0: "none", 1: "xor", 2: "rc4", 3: "aes128"}
_TOTALS = ("calls", "packets", "bytes", "malformed", "foreign", "dropped")


class MediaTotals:
    """Relayed media of finished calls by cipher, for /api/v1/metrics: packets and bytes
    relayed, and what the relay refused or lost (malformed, foreign source, dropped on a
    full send buffer)."""

    def __init__(self) -> None:
        self.by_cipher: dict[str, dict[str, int]] = {}

    def add(self, stats: dict[str, Any]) -> None:
        name = CIPHER_NAMES.get(int(stats.get("encryption_mode", 0)), "other")
        row = self.by_cipher.setdefault(name, dict.fromkeys(_TOTALS, 0))
        row["calls"] += 1
        row["packets"] += stats["caller_to_callee_packets"] + stats["callee_to_caller_packets"]
        row["bytes"] += stats["caller_to_callee_bytes"] + stats["callee_to_caller_bytes"]
        for key in ("malformed", "foreign", "dropped"):
            row[key] += int(stats.get(key, 0))

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {name: dict(row) for name, row in self.by_cipher.items()}
