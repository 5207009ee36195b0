"""In-dialog relay: a request from one leg sent on the other leg's dialog, and its
answer brought back. Which requests cross, which headers go with a body, and the
re-INVITE that may be pending; the call's core (``call.py``) keeps the waits and the
SDP crossing."""

from __future__ import annotations

from dataclasses import dataclass

from b2bua.calls.events import Side
from b2bua.sip.dialog import Dialog
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.transaction import ServerTransaction

# In-dialog requests relayed to the other leg (besides INVITE, BYE and ACK); anything
# else gets 501.
RELAYED_METHODS = frozenset({"INFO", "UPDATE", "OPTIONS", "MESSAGE", "NOTIFY"})
# Headers carried across the B2BUA with a relayed request or response body.
CARRIED_HEADERS = ("Content-Disposition", "Info-Package", "Event", "Subscription-State")


@dataclass(slots=True)
class PendingReinvite:
    """A re-INVITE being relayed: another one meanwhile gets 491 (glare, RFC 3261 14.1);
    its ACK is relayed once the answer came."""

    origin: Side
    server: ServerTransaction
    request: Request
    answer: Response | None = None
    cseq: int = 0  # the relayed re-INVITE's CSeq number on the other leg, once sent


@dataclass(slots=True)
class RelayWait:
    """A request relayed from ``origin``'s leg: its answer goes back through ``server``."""

    request: Request
    server: ServerTransaction
    origin: Side


def relayed_request(request: Request, other: Dialog, body: bytes) -> Request:
    """``request`` as sent in the other leg's dialog, with ``body`` (crossed)."""
    extra = [(h, v) for h in CARRIED_HEADERS for v in request.get_all(h)]
    return other.create_request(request.method, body, request.get("Content-Type"),
                                extra=extra)


def relayed_response(request: Request, response: Response, dialog: Dialog | None,
                     body: bytes) -> Response:
    """The other leg's ``response`` as the answer to ``request`` in its own dialog."""
    out = make_response(request, response.status, response.reason)
    if dialog is not None and request.method in ("INVITE", "UPDATE") and \
            200 <= response.status < 300:
        out.add("Contact", dialog.contact)
    for header in ("Content-Type", *CARRIED_HEADERS):
        for value in response.get_all(header):
            out.add(header, value)
    out.body = body
    return out
