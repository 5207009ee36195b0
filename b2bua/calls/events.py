"""What happens to a call: the events its core (``call.py``) takes, each with ``now``.

The asyncio adapter (``b2bua/aio/call_adapter.py``) turns what the network, the timers and the media
relay report into these; a unit test builds them by hand. Responses to requests the
call sent come back by the token the call gave the request (``actions.Transact``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from b2bua.routing.dns import Plan
from b2bua.routing.gateways import RoutingGateway
from b2bua.sip.message import Request, Response
from b2bua.sip.transaction import ServerTransaction


class Side(Enum):
    __hash__ = object.__hash__

    CALLER = "caller"
    CALLEE = "callee"


@dataclass(slots=True)
class Reply:
    """A response to a request the call sent (``token`` names which)."""

    token: int
    response: Response


@dataclass(slots=True)
class NoReply:
    """The request ``token`` had no final response in time (Timer B or F)."""

    token: int


@dataclass(slots=True)
class TimerFired:
    name: str


@dataclass(slots=True)
class NoAck:
    """The 2xx to the caller was never ACKed (Timer L)."""


@dataclass(slots=True)
class CallerCancel:
    """The caller's CANCEL of its INVITE (already answered 200 by the switchboard)."""


@dataclass(slots=True)
class AckReceived:
    side: Side
    request: Request


@dataclass(slots=True)
class InDialogRequest:
    """A request in either leg's dialog (not ACK, not CANCEL); ``server`` is its
    transaction, held by the call as a handle and answered through ``Respond``."""

    side: Side
    request: Request
    server: ServerTransaction


@dataclass(slots=True)
class MediaStarted:
    """The relay ports of ``StartMedia`` are bound (``ports``, per stream: the caller's
    leg, the destination's), or could not be (``error``)."""

    error: str | None = None
    ports: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class MediaGrown:
    """The extra streams of ``GrowMedia`` ``token`` are bound (or declined: ``error``)."""

    token: int
    error: str | None = None
    ports: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class RtpStarted:
    """The relay saw the first RTP from the destination side."""


@dataclass(slots=True)
class MediaReport:
    """The answer to ``CheckMedia``: per leg ("a" the caller's, "b" the destination's),
    seconds since any stream of the call last received on it (None: nothing yet)."""

    idle: dict[str, float | None]


@dataclass(slots=True)
class VendorResolved:
    gateway: RoutingGateway
    plan: Plan


@dataclass(slots=True)
class Reserved:
    """The answer to ``Reserve``: whether the leg may go (and the place under ``key``,
    when one was asked, is ours); refused, ``refused_by`` says why: "rate" or
    "capacity"."""

    key: tuple[str, int]
    granted: bool
    refused_by: str = ""


@dataclass(slots=True)
class StrayResponse:
    """A 2xx retransmitted by a destination after its transaction ended."""

    call_id: str
    response: Response


@dataclass(slots=True)
class HangUp:
    """End the call from our side (an operator, a graceful stop)."""

    why: str


CallEvent = (Reply | NoReply | TimerFired | NoAck | CallerCancel | AckReceived
             | InDialogRequest | MediaStarted | MediaGrown | RtpStarted | MediaReport
             | VendorResolved | Reserved | StrayResponse | HangUp)
