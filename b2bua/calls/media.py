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
from b2bua.media.cipher import PayloadCipher, make_cipher
from b2bua.media.relay import PortAllocator, RelayLeg, RelaySession
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
    def __init__(self, params: Params, allocator: PortAllocator, host: str,
                 advertised_host: str, *, caller_nat: bool, caller_encrypted: bool,
                 on_rtp_start: Callable[[], None]) -> None:
        self.params = params
        self.advertised_host = advertised_host
        self.session = RelaySession(
            allocator, host, advertised_host=advertised_host,
            latching=params.flag("SS_MEDIA_PROXY_BEHIND_NAT"), a_nat=caller_nat,
            a_cipher=self._cipher() if caller_encrypted else None,
            on_rtp_start=on_rtp_start, start_leg="b",
        )
        self.mode = int(params["SS_RTPENCRYPTIONMODE"])
        self.caller_encrypted = caller_encrypted
        self.callee_encrypted = False

    def _cipher(self) -> PayloadCipher | None:
        mode = int(self.params["SS_RTPENCRYPTIONMODE"])
        if mode == 0:
            return None
        return make_cipher(mode, str(self.params["SS_RTPENCRYPTIONKEY"]))

    async def start(self) -> None:
        await self.session.start()

    def set_destination(self, nat: bool, encrypted: bool) -> None:
        """A new attempt: its leg's NAT and encryption (the peer address comes with SDP)."""
        self.session.b.nat = nat
        self.callee_encrypted = encrypted
        self.session.b.set_cipher(self._cipher() if encrypted else None)

    def from_caller(self, body: bytes) -> bytes:
        return self._cross(body, self.session.a, self.session.b)

    def from_callee(self, body: bytes) -> bytes:
        return self._cross(body, self.session.b, self.session.a)

    def _cross(self, body: bytes, sender: RelayLeg, receiver: RelayLeg) -> bytes:
        if not body:
            return body
        info = parse_sdp(body)
        if not info.ok or not info.media:
            return body
        first = info.media[0]
        if first.address is not None:
            try:
                sender.set_remote(first.address, first.port, first.rtcp_port,
                                  first.rtcp_address)
            except ValueError:
                log.info("media address %s not usable; stream not relayed", first.address)
        # One relayed stream per call: further m= lines are disabled (port 0).
        ports = [receiver.rtp_port] + [0] * (len(info.media) - 1)
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
        legs = {"a": self.session.a, "b": self.session.b}
        for name, check in checks.items():
            leg = legs[name]
            watched = []
            if check in ("from_remote", "both"):
                watched.append(("from_remote", leg))
            if check in ("to_remote", "both"):
                watched.append(("to_remote", leg.other))
            for direction, source in watched:
                last = source.last_rx if source.last_rx is not None else since
                if now - max(last, since) >= timeout:
                    return f"{'caller' if name == 'a' else 'callee'} {direction}"
        return None

    def close(self) -> None:
        self.session.close()

    def stats(self) -> dict[str, Any]:
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
            "ports": list(self.session.ports),
        }
