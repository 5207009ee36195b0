"""What a call asks to be done: the actions its core returns, carried out by the asyncio
adapter (``b2bua/aio/call_adapter.py``) in order. None of them is done by the core itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from b2bua.calls.anchor import MediaAnchor, MediaSetup, StreamUpdate
from b2bua.calls.cdr import CdrRecord
from b2bua.calls.endpoints import Destination
from b2bua.controls.rates import CallRate
from b2bua.routing.gateways import RoutingGateway
from b2bua.sip.message import Request, Response
from b2bua.sip.peer import Peer
from b2bua.sip.transaction import ServerTransaction


@dataclass(slots=True)
class Respond:
    """Answer through a server transaction. ``await_ack``: a 2xx to an INVITE, which the
    transaction sends again until ``Confirm``; no ACK by Timer L feeds ``NoAck``."""

    server: ServerTransaction
    response: Response
    await_ack: bool = False


@dataclass(slots=True)
class Confirm:
    """The 2xx of ``server`` is ACKed (or no longer wanted): stop sending it."""

    server: ServerTransaction


@dataclass(slots=True)
class Send:
    """Bytes sent as they are, outside any transaction (an ACK of a 2xx)."""

    data: bytes
    peer: Peer


@dataclass(slots=True)
class Transact:
    """Send ``request`` in a client transaction. Its responses come back as ``Reply``
    and ``NoReply`` events with ``token``; token 0: the answer does not matter."""

    token: int
    request: Request
    peer: Peer
    timeout: float | None = None  # None: 64*T1
    resend: Sequence[float] | None = None


@dataclass(slots=True)
class CancelInvite:
    """CANCEL the INVITE sent as ``token`` (nothing once its final response came)."""

    token: int
    peer: Peer


@dataclass(slots=True)
class SetTimer:
    """Fire ``TimerFired(name)`` after ``delay`` seconds, replacing one of that name."""

    name: str
    delay: float


@dataclass(slots=True)
class CancelTimer:
    name: str


@dataclass(slots=True)
class StartMedia:
    """Open and bind ``count`` relay sessions with ``setup``; ``MediaStarted`` follows."""

    setup: MediaSetup
    count: int


@dataclass(slots=True)
class StopMedia:
    """Close the call's relay sessions (not started in time, or given up)."""


@dataclass(slots=True)
class GrowMedia:
    """Bind ``count`` more streams (an offer with more m= lines); ``MediaGrown`` follows."""

    token: int
    count: int


@dataclass(slots=True)
class UpdateMedia:
    """Apply ``updates`` to the streams' relay sessions, in order."""

    updates: list[StreamUpdate]


@dataclass(slots=True)
class CheckMedia:
    """Report how long each leg's media has been quiet; ``MediaReport`` follows."""


@dataclass(slots=True)
class Resolve:
    """Look up a routing gateway's name (a cold DNS cache); ``VendorResolved`` follows."""

    gateway: RoutingGateway


@dataclass(slots=True)
class Reserve:
    """Before a leg is dialled: let one call through the vendor's ``rate`` (its call-rate
    limit, docs/carrier-controls.md), then, with a ``capacity``, take a place under
    ``key`` (a vendor's or a phone's calls now) if the cluster's total stays within it
    (only on a cluster node, where the count is shared in Redis, docs/cluster.md);
    ``Reserved`` follows."""

    key: tuple[str, int]
    capacity: int | None
    rate: CallRate | None = None


@dataclass(slots=True)
class Unreserve:
    """Give back a place ``Reserve`` took that no leg used."""

    key: tuple[str, int]


@dataclass(slots=True)
class Occupy:
    """A leg to ``destination`` counts against its capacity from now; ``reserved``: its
    place was taken already (``Reserve``), only the totals move."""

    destination: Destination
    reserved: bool = False


@dataclass(slots=True)
class Release:
    destination: Destination


@dataclass(slots=True)
class WatchLeg:
    """Messages with ``call_id`` (an outbound leg's) belong to this call."""

    call_id: str


@dataclass(slots=True)
class ForgetLeg:
    call_id: str


@dataclass(slots=True)
class HoldGateway:
    """Out of routing until ``until`` (a vendor's 503 with Retry-After)."""

    gateway: RoutingGateway
    until: float


@dataclass(slots=True)
class NoteStarted:
    """The crash-recovery note of a new call."""

    record: CdrRecord


@dataclass(slots=True)
class NoteAnswered:
    call_id: str
    at: float
    # Both legs' dialogs (Dialog.to_note), for a node taking over ours to end them.
    dialogs: tuple[dict[str, Any], ...] = ()


@dataclass(slots=True)
class WriteCdr:
    """The call's CDR and attempts, once ``media``'s final counters are in; the
    crash-recovery note is cleared with it."""

    record: CdrRecord
    attempts: list[dict[str, Any]]
    media: MediaAnchor | None


@dataclass(slots=True)
class CallEnded:
    """The call is over: its legs, its origin's count and its place in the live calls
    are released."""


CallAction = (Respond | Confirm | Send | Transact | CancelInvite | SetTimer | CancelTimer
              | StartMedia | StopMedia | GrowMedia | UpdateMedia | CheckMedia | Resolve
              | Reserve | Unreserve | Occupy | Release | WatchLeg | ForgetLeg | HoldGateway
              | NoteStarted | NoteAnswered | WriteCdr | CallEnded)
