"""The caller's leg, where the softswitch is the UAS: the responses it sends on the
caller's INVITE."""

from __future__ import annotations

from b2bua.calls.attempt import ALLOW
from b2bua.calls.liveness import answer_headers
from b2bua.config.live import Params
from b2bua.sip.dialog import Dialog, copy_record_route
from b2bua.sip.message import Request, Response, make_response


def caller_response(invite: Request, inbound: Dialog, status: int, reason: str | None,
                    params: Params) -> Response:
    """A response to the caller's INVITE (without a body): a dialog-creating one carries
    the Record-Route, our Contact and Allow; a 2xx the session timer the caller asked
    for."""
    response = make_response(invite, status, reason, to_tag=inbound.local_tag)
    if 100 < status < 300:
        copy_record_route(invite, response)
        response.add("Contact", inbound.contact)
        response.add("Allow", ALLOW)
    if 200 <= status < 300:
        for name, value in answer_headers(params, invite):
            response.add(name, value)
    return response
