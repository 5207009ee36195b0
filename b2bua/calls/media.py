"""A call's media anchoring: whether to relay, and the SDP rewriting around the relay.

Leg ``a`` of the relay session faces the caller, leg ``b`` the destination. Every SDP
that crosses the B2BUA (offer or answer, in INVITE, 18x, 200, ACK, re-INVITE, UPDATE)
goes through ``from_caller`` or ``from_callee``: the sender's media address is given to
its leg, and the body the other side receives points at the other leg's ports.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from b2bua.config.live import Params
from b2bua.media.plane import CipherSpec, Counters, MediaPlane
from b2bua.media.sdp import parse_sdp, rewrite_sdp

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


class CallMedia:
    """The relay session of one call (in this process or a relay worker: see
    :mod:`b2bua.media.plane`) and the SDP that crosses it."""

    def __init__(self, params: Params, plane: MediaPlane, advertised_host: str, *,
                 caller_nat: bool, caller_encrypted: bool,
                 on_rtp_start: Callable[[], None], totals: MediaTotals | None = None
                 ) -> None:
        self.params = params
        self.advertised_host = advertised_host
        self.totals = totals
        # Mode and key are read once: a change applies to new calls, never to the next
        # attempt of a call already up (both ends of that call must keep one cipher).
        self.mode = int(params["SS_RTPENCRYPTIONMODE"])
        self.cipher: CipherSpec | None = (
            None if self.mode == 0 else (self.mode, str(params["SS_RTPENCRYPTIONKEY"])))
        self.session = plane.new_session(
            latching=params.flag("SS_MEDIA_PROXY_BEHIND_NAT"), a_nat=caller_nat,
            a_cipher=self.cipher if caller_encrypted else None,
            on_rtp_start=on_rtp_start,
        )
        self.caller_encrypted = caller_encrypted
        self.callee_encrypted = False

    async def start(self) -> None:
        await self.session.start()

    def set_destination(self, nat: bool, encrypted: bool) -> None:
        """A new attempt: its leg's NAT and encryption (the peer address comes with SDP)."""
        self.session.set_nat("b", nat)
        self.callee_encrypted = encrypted
        self.session.set_cipher("b", self.cipher if encrypted else None)

    def from_caller(self, body: bytes) -> bytes:
        return self._cross(body, "a", self.session.ports[1])

    def from_callee(self, body: bytes) -> bytes:
        return self._cross(body, "b", self.session.ports[0])

    def _cross(self, body: bytes, sender: str, receiver_port: int) -> bytes:
        if not body:
            return body
        info = parse_sdp(body)
        if not info.ok or not info.media:
            return body
        first = info.media[0]
        if first.address is not None:
            try:
                self.session.set_remote(sender, first.address, first.port, first.rtcp_port,
                                        first.rtcp_address)
            except ValueError:
                log.info("media address %s not usable; stream not relayed", first.address)
        # One relayed stream per call: further m= lines are disabled (port 0).
        ports = [receiver_port] + [0] * (len(info.media) - 1)
        rewritten = rewrite_sdp(body, self.advertised_host, ports)
        return rewritten.body if rewritten.ok else body

    def silent_direction(self, checks: dict[str, str], since: float, timeout: float
                         ) -> str | None:
        """The first checked direction silent for ``timeout`` seconds, or None.

        ``checks`` maps a leg ("a" caller side, "b" destination side) to its gateway's
        ``media_check``: ``from_remote`` watches what the leg's peer sends us,
        ``to_remote`` what we relay toward it (what the other leg receives), ``both``
        both. ``since`` (monotonic) is when the check started: silence is counted from
        it while nothing has arrived yet.
        """
        now = time.monotonic()
        for name, check in checks.items():
            watched = []
            if check in ("from_remote", "both"):
                watched.append(("from_remote", name))
            if check in ("to_remote", "both"):
                watched.append(("to_remote", "b" if name == "a" else "a"))
            for direction, source in watched:
                last_rx = self.session.last_rx(source)
                last = last_rx if last_rx is not None else since
                if now - max(last, since) >= timeout:
                    return f"{'caller' if name == 'a' else 'callee'} {direction}"
        return None

    def close(self) -> None:
        self.session.close()

    def finish(self, on_final: Callable[[dict[str, Any]], None]) -> None:
        """Close, and hand ``on_final`` the call's media stats once the relay's final
        counters are in (at once in process; after the worker's last report otherwise)."""

        def final(counters: Counters) -> None:
            stats = self.stats(counters)
            if self.totals is not None:
                self.totals.add(stats)
            on_final(stats)

        self.session.close(final)

    def stats(self, counters: Counters | None = None) -> dict[str, Any]:
        if counters is None:
            counters = self.session.stats()
        return {
            "relayed": True,
            "encryption_mode": self.mode if (self.caller_encrypted or self.callee_encrypted)
            else 0,
            "caller_encrypted": self.caller_encrypted,
            "callee_encrypted": self.callee_encrypted,
            "caller_to_callee_packets": counters["a_to_b"]["rx_packets"],
            "caller_to_callee_bytes": counters["a_to_b"]["rx_bytes"],
            "callee_to_caller_packets": counters["b_to_a"]["rx_packets"],
            "callee_to_caller_bytes": counters["b_to_a"]["rx_bytes"],
            "malformed": counters["a_to_b"]["rx_malformed"] + counters["b_to_a"]["rx_malformed"],
            "foreign": counters["a_to_b"]["rx_foreign"] + counters["b_to_a"]["rx_foreign"],
            "dropped": counters["a_to_b"]["send_dropped"] + counters["b_to_a"]["send_dropped"],
            "ports": list(self.session.ports),
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
