"""Call liveness: RFC 4028 session timers on both legs, and a liveness re-INVITE for
peers without them.

The softswitch is the refresher on both legs. A leg whose peer supports session timers
(its INVITE, or its 200, carried ``Session-Expires``) is refreshed every
``interval / SS_SIP_SESSION_UPDATE_SEGMENT``; a leg without them is probed once every
``SS_SIP_NO_TIMER_REINVITE_INTERVAL``. A refresh is an UPDATE when the peer allows it,
else a re-INVITE with the last SDP that leg received from us. A refresh answered 408 or
481, or not answered at all, ends the call (BYE to both legs, CDR reason
``session refresh failed``); any other answer keeps the call.
"""

from __future__ import annotations

from dataclasses import dataclass

from b2bua.calls.endpoints import Origin
from b2bua.calls.events import Side
from b2bua.config.live import Params
from b2bua.routing.gateways import RoutingGateway
from b2bua.sip.dialog import Dialog
from b2bua.sip.message import Request, Response

MIN_SE = 90


@dataclass(frozen=True, slots=True)
class LegTimer:
    supported: bool  # the peer uses RFC 4028
    interval: float  # seconds between our refreshes
    use_update: bool


def session_expires(message: Request | Response) -> int | None:
    value = message.get("Session-Expires") or message.get("x")
    if not value:
        return None
    head = value.split(";", 1)[0].strip()
    return int(head) if head.isdigit() else None


def allows_update(message: Request | Response) -> bool:
    return any(m.strip().upper() == "UPDATE" for m in message.get_all("Allow"))


def leg_timer(params: Params, peer_message: Request | Response) -> LegTimer:
    """How to keep a leg alive, from the peer's INVITE (caller) or 200 (destination)."""
    ttl = params.integer("SS_SIP_SESSION_TTL")
    offered = session_expires(peer_message)
    if offered is not None:
        expires = max(MIN_SE, min(offered, ttl))
        return LegTimer(True, expires / params.integer("SS_SIP_SESSION_UPDATE_SEGMENT"),
                        allows_update(peer_message))
    return LegTimer(False, float(params.integer("SS_SIP_NO_TIMER_REINVITE_INTERVAL")),
                    allows_update(peer_message))


def outbound_headers(params: Params) -> list[tuple[str, str]]:
    """Offered on every INVITE to a destination."""
    ttl = params.integer("SS_SIP_SESSION_TTL")
    return [("Supported", "timer"), ("Session-Expires", f"{ttl};refresher=uac"),
            ("Min-SE", str(MIN_SE))]


def answer_headers(params: Params, invite: Request) -> list[tuple[str, str]]:
    """Added to the caller's 200 when its INVITE asked for a session timer."""
    offered = session_expires(invite)
    if offered is None:
        return []
    expires = max(MIN_SE, min(offered, params.integer("SS_SIP_SESSION_TTL")))
    return [("Session-Expires", f"{expires};refresher=uas"), ("Require", "timer")]


@dataclass(slots=True)
class RefreshWait:
    """A refresh sent on ``side``'s leg, waiting for its answer."""

    side: Side
    timer: LegTimer
    request: Request


def refresh_request(dialog: Dialog, timer: LegTimer, last_sdp: bytes) -> Request:
    """The UPDATE (without a body) or re-INVITE (with the last SDP the leg got from us)
    that keeps a leg alive."""
    method = "UPDATE" if timer.use_update else "INVITE"
    body = b"" if timer.use_update else last_sdp
    extra = [("Session-Expires", f"{int(timer.interval * 2)};refresher=uac")] \
        if timer.supported else []
    return dialog.create_request(method, body, "application/sdp" if body else None,
                                 extra=extra)


def media_checks(origin: Origin, origin_check: str, gateway: RoutingGateway | None
                 ) -> dict[str, str]:
    """The RTP checks of a relayed call by relay leg ("a" the caller's, "b" the
    destination's): each side's gateway ``media_check`` (docs/media.md)."""
    checks = {}
    if origin.kind != "phone" and origin_check != "none":
        checks["a"] = origin_check
    if gateway is not None and gateway.media_check != "none":
        checks["b"] = gateway.media_check
    return checks
