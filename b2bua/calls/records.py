"""CDR assembly: what a call says about itself, as its CDR (also its crash-recovery
note) and as a live call in ``/api/v1/calls``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from b2bua.calls.cdr import CdrRecord

if TYPE_CHECKING:
    from b2bua.calls.call import Call


def call_record(call: Call, end: float, hangup_by: str, why: str) -> CdrRecord:
    """The call's CDR as it stands at ``end``."""
    gw = call.gateway
    origin = call.origin
    outbound = call.outbound
    attempt = call.attempt
    return CdrRecord(
        call_id_in=call.invite.call_id,
        call_id_out=outbound.call_id if outbound else None,
        caller=call.caller,
        callee=call.callee,
        source=f"{call.customer.host}:{call.customer.port}",
        mapping_gateway_id=origin.id if origin.kind == "gateway" else None,
        mapping_gateway=origin.name if origin.kind == "gateway" else None,
        routing_gateway_id=gw.id if gw else None,
        routing_gateway=gw.name if gw else None,
        start_at=call.start_at,
        ringing_at=call.ringing_at,
        answer_at=call.answer_at,
        end_at=end,
        duration=round(end - call.answer_at, 3) if call.answer_at else 0.0,
        final_code=call.final_code,
        final_reason=call.final_reason,
        hangup_by=hangup_by,
        termination_reason=why,
        phone=origin.name if origin.kind == "phone" else None,
        callee_phone=call.callee_phone,
        caller_routed=call.caller_routed,
        callee_routed=call.callee_routed,
        caller_sent=attempt.caller_sent if attempt else None,
        callee_sent=attempt.callee_sent if attempt else None,
        origin_vendor=origin.name if origin.kind == "vendor" else None,
        cdr_uuid=call.cdr_uuid,
        node=call.ctx.node or None,
    )


def call_snapshot(call: Call) -> dict[str, object]:
    """A live call as the API lists it."""
    origin, source, gw, outbound = call.origin, call.customer, call.gateway, call.outbound
    return {
        "id": call.no,
        "state": call.state.value,
        "caller": call.caller,
        "callee": call.callee,
        "source": f"{source.transport}:{source.host}:{source.port}",
        "mapping_gateway": origin.name if origin.kind == "gateway" else None,
        "phone": origin.name if origin.kind == "phone" else None,
        "callee_phone": call.callee_phone,
        "routing_gateway": gw.name if gw else None,
        "attempts": len(call.attempts),
        "call_id_in": call.invite.call_id,
        "call_id_out": outbound.call_id if outbound else None,
        "start_at": call.start_at,
        "ringing_at": call.ringing_at,
        "answer_at": call.answer_at,
        # The relay's counters are the adapter's to add (``CallAdapter.snapshot``).
        "media": {"relayed": call.media is not None},
    }
