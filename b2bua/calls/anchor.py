"""A call's media anchoring: whether to relay, and the SDP rewriting around the relay.

Each m= line of the call (audio, video, T.38 ``image``; up to :data:`MAX_STREAMS`) has
its own relay session; leg ``a`` of each faces the caller, leg ``b`` the destination.
Every SDP that crosses the B2BUA (offer or answer, in INVITE, 18x, 200, ACK, re-INVITE,
UPDATE) goes through ``from_caller`` or ``from_callee``: the sender's media address for
each m= line goes to its stream's leg, and the body the other side receives points each
m= line at the other leg's ports.

Pure, as the call core is: the sessions themselves are opened, set and read by the
call's adapter (``b2bua/aio/call_media.py``), which applies the :data:`StreamUpdate`
values returned here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from b2bua.config.live import Params
from b2bua.media.plane import CipherSpec, Counters
from b2bua.media.sdp import MediaInfo, parse_sdp, rewrite_sdp

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


@dataclass(frozen=True, slots=True)
class MediaSetup:
    """What the relay sessions of a call are opened with (``actions.StartMedia``)."""

    latching: bool
    caller_nat: bool
    caller_cipher: CipherSpec | None


@dataclass(frozen=True, slots=True)
class SetRemote:
    """Where ``leg`` of stream ``stream`` sends (port 0: nowhere, the stream is off)."""

    stream: int
    leg: str
    host: str
    port: int
    rtcp_port: int | None = None
    rtcp_host: str | None = None


@dataclass(frozen=True, slots=True)
class SetNat:
    stream: int
    leg: str
    nat: bool


@dataclass(frozen=True, slots=True)
class SetCipher:
    stream: int
    leg: str
    cipher: CipherSpec | None


@dataclass(frozen=True, slots=True)
class SetRtp:
    """Whether the stream carries RTP (checks and ciphers) or not (T.38)."""

    stream: int
    rtp: bool


StreamUpdate = SetRemote | SetNat | SetCipher | SetRtp


@dataclass(slots=True)
class Stream:
    """One relayed m= line: what the SDP last said it carries, and its relay ports
    (leg ``a`` faces the caller, ``b`` the destination) once bound."""

    media: str = "audio"
    rtp: bool = True
    ports: tuple[int, int] = (0, 0)


class MediaAnchor:
    """The anchored media of one call as the call core sees it: its streams, the SDP
    that crosses them, and the settings each relay session needs, returned as
    :data:`StreamUpdate` values for the adapter to apply to the sessions it holds
    (``b2bua/aio/call_media.py``). No sockets and no clock: ports come in when bound,
    the time with each question."""

    def __init__(self, params: Params, advertised_host: str, *, caller_nat: bool,
                 caller_encrypted: bool, streams: int = 1) -> None:
        self.advertised_host = advertised_host
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
        self.streams = [Stream() for _ in range(max(1, min(streams, MAX_STREAMS)))]
        self._started = 0  # streams whose relay ports are bound
        self.watch_at: float | None = None

    @property
    def setup(self) -> MediaSetup:
        return MediaSetup(self.latching, self.caller_nat,
                          self.cipher if self.caller_encrypted else None)

    @property
    def ports(self) -> tuple[int, int]:
        """The first stream's ports (the call's audio in nearly every call)."""
        return self.streams[0].ports

    @property
    def unstarted(self) -> int:
        return len(self.streams) - self._started

    def started(self, ports: Sequence[tuple[int, int]]) -> list[StreamUpdate]:
        """The next ``len(ports)`` streams are bound; streams added to a call that
        already has a destination get its settings."""
        grown = self._started > 0
        while len(self.streams) < self._started + len(ports):
            self.streams.append(Stream())
        fresh = range(self._started, self._started + len(ports))
        for index, pair in zip(fresh, ports, strict=True):
            self.streams[index].ports = pair
        self._started += len(ports)
        updates: list[StreamUpdate] = []
        if grown:
            for index in fresh:
                updates += self._destination(index)
        return updates

    def not_started(self, count: int) -> None:
        """``count`` streams could not be bound: they are dropped (from the end)."""
        del self.streams[max(self._started, len(self.streams) - count):]

    def needs(self, body: bytes) -> int:
        """Streams an offer needs beyond those the call has (a re-INVITE adding video)."""
        return max(0, stream_count(body) - len(self.streams)) if body else 0

    def grow(self, count: int) -> int:
        """Add up to ``count`` streams (within MAX_STREAMS); how many were added."""
        added = max(0, min(count, MAX_STREAMS - len(self.streams)))
        self.streams += [Stream() for _ in range(added)]
        return added

    def set_destination(self, nat: bool, encrypted: bool) -> list[StreamUpdate]:
        """A new attempt: its leg's NAT and encryption (the peer address comes with SDP)."""
        self.callee_nat = nat
        self.callee_encrypted = encrypted
        updates: list[StreamUpdate] = []
        for index in range(self._started):
            updates += self._destination(index)
        return updates

    def _destination(self, index: int) -> list[StreamUpdate]:
        return [SetNat(index, "b", self.callee_nat), *self._ciphers(index)]

    def _ciphers(self, index: int) -> list[StreamUpdate]:
        """Ciphers on RTP streams only: a T.38 stream's packets are not RTP."""
        rtp = self.streams[index].rtp
        return [SetCipher(index, "a", self.cipher if self.caller_encrypted and rtp else None),
                SetCipher(index, "b", self.cipher if self.callee_encrypted and rtp else None)]

    def from_caller(self, body: bytes) -> tuple[bytes, list[StreamUpdate]]:
        return self._cross(body, "a")

    def from_callee(self, body: bytes) -> tuple[bytes, list[StreamUpdate]]:
        return self._cross(body, "b")

    def _cross(self, body: bytes, sender: str) -> tuple[bytes, list[StreamUpdate]]:
        """The sender's address for each m= line to its stream's leg; the body the other
        side gets points each m= line at the other leg of its stream. An m= line without
        a stream (past MAX_STREAMS, or one the offer did not allocate) is declined, and
        one disabled by either side stays disabled (port 0 crosses as 0)."""
        updates: list[StreamUpdate] = []
        if not body:
            return body, updates
        info = parse_sdp(body)
        if not info.ok or not info.media:
            return body, updates
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
                    updates.append(SetRemote(media.index, sender, media.address, 0))
                ports.append(0)
                continue
            rtp = is_rtp(media)
            if (stream.media, stream.rtp) != (media.media, rtp):
                stream.media = media.media
                if stream.rtp != rtp:  # the T.38 switch, or back to audio
                    stream.rtp = rtp
                    updates.append(SetRtp(media.index, rtp))
                    updates += self._ciphers(media.index)
            if media.address is not None:
                updates.append(SetRemote(media.index, sender, media.address, media.port,
                                         media.rtcp_port, media.rtcp_address))
            ports.append(stream.ports[receiver])
        rewritten = rewrite_sdp(body, self.advertised_host, ports)
        return (rewritten.body if rewritten.ok else body), updates

    def watch(self, now: float) -> None:
        """Start counting silence from ``now`` (the call is answered)."""
        self.watch_at = now

    def silent_direction(self, checks: dict[str, str], timeout: float, now: float,
                         idle: Mapping[str, float | None]) -> str | None:
        """The first checked direction silent for ``timeout`` seconds, or None.

        ``checks`` maps a leg ("a" caller side, "b" destination side) to its gateway's
        ``media_check``: ``from_remote`` watches what the leg's peer sends us,
        ``to_remote`` what we relay toward it (what the other leg receives), ``both``
        both. ``idle`` is, per leg, the seconds since any stream of the call last
        received on it (None: nothing yet), as the relay reported it; silence is counted
        from :meth:`watch` at the longest.
        """
        watched_for = now - self.watch_at if self.watch_at is not None else 0.0
        for name, check in checks.items():
            watched = []
            if check in ("from_remote", "both"):
                watched.append(("from_remote", name))
            if check in ("to_remote", "both"):
                watched.append(("to_remote", "b" if name == "a" else "a"))
            for direction, source in watched:
                quiet = idle.get(source)
                if min(watched_for, watched_for if quiet is None else quiet) >= timeout:
                    return f"{'caller' if name == 'a' else 'callee'} {direction}"
        return None

    def stats(self, counters: Sequence[Counters]) -> dict[str, Any]:
        """Totals over the call's streams, and each stream on its own, from the relay
        sessions' ``counters`` (one per stream, in order)."""
        streams = [_stream_stats(index, stream, c, self._stream_mode(stream))
                   for index, (stream, c) in enumerate(zip(self.streams, counters,
                                                           strict=False))]
        totals = {key: sum(s[key] for s in streams) for key in _STREAM_TOTALS}
        return {
            "relayed": True,
            # The mode the call used: none when no stream was encrypted (a fax call's
            # T.38 is relayed as it is), so the totals by cipher count what was.
            "encryption_mode": self.mode if any(s["encryption_mode"] for s in streams)
            else 0,
            "caller_encrypted": self.caller_encrypted,
            "callee_encrypted": self.callee_encrypted,
            **totals,
            "ports": list(self.ports),
            "streams": streams,
        }

    def _stream_mode(self, stream: Stream) -> int:
        encrypted = self.caller_encrypted or self.callee_encrypted
        return self.mode if encrypted and stream.rtp else 0


_STREAM_TOTALS = ("caller_to_callee_packets", "caller_to_callee_bytes",
                  "callee_to_caller_packets", "callee_to_caller_bytes", "malformed",
                  "foreign", "dropped", "packets_in_c", "cipher_errors")


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
        # Relayed by the C receive loop (the rest by Python: first packets, or ciphers
        # kept in Python); dropped because a cipher failed there.
        "packets_in_c": a_to_b["rx_in_c"] + b_to_a["rx_in_c"],
        "cipher_errors": a_to_b["cipher_errors"] + b_to_a["cipher_errors"],
        "ports": list(stream.ports),
    }


CIPHER_NAMES = {0: "none", 1: "xor", 2: "rc4", 3: "aes128"}
_TOTALS = ("calls", "packets", "bytes", "malformed", "foreign", "dropped", "packets_in_c",
           "cipher_errors")


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
        for key in ("malformed", "foreign", "dropped", "packets_in_c", "cipher_errors"):
            row[key] += int(stats.get(key, 0))

    def snapshot(self) -> dict[str, dict[str, int]]:
        return {name: dict(row) for name, row in self.by_cipher.items()}
