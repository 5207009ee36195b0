"""CDR assembly: what a call says about itself, as its CDR (also its crash-recovery
note), as a live call in ``/api/v1/calls`` and in its SIP ladder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from b2bua.calls.cdr import CdrRecord

if TYPE_CHECKING:
    from b2bua.calls.attempt import Attempt
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
        caller_name=caller_name(call),
        user_agent=user_agent(call),
        caller_code=call.caller_code or None,
    )


NAME_MAX = 128
USER_AGENT_MAX = 256


def caller_name(call: Call) -> str | None:
    """The caller's From display name, as received (cut to NAME_MAX)."""
    display = call.invite.from_.display
    return display[:NAME_MAX] if display else None


def user_agent(call: Call) -> str | None:
    """The caller's User-Agent header (cut to USER_AGENT_MAX)."""
    agent = call.invite.get("User-Agent")
    return agent[:USER_AGENT_MAX] if agent else None


def call_snapshot(call: Call) -> dict[str, object]:
    """A live call as the API lists it."""
    origin, source, gw, outbound = call.origin, call.customer, call.gateway, call.outbound
    return {
        "id": call.no,
        "state": call.state.value,
        "caller": call.caller,
        "callee": call.callee,
        "caller_name": caller_name(call),
        "user_agent": user_agent(call),
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


def ladder_call(call: Call) -> dict[str, object]:
    """What a call's SIP ladder says of the call when it starts (b2bua/ladders.py)."""
    origin = call.origin
    return {
        "id": call.no,
        "cdr_uuid": call.cdr_uuid,
        "call_id_in": call.invite.call_id,
        "caller": call.caller,
        "callee": call.callee,
        "start_at": call.start_at,
        "ringing_at": None,
        "answer_at": None,
        "end_at": None,
        "final_code": None,
        "final_reason": None,
        "hangup_by": None,
        "termination_reason": None,
        "mapping_gateway": origin.name if origin.kind == "gateway" else None,
        "phone": origin.name if origin.kind == "phone" else None,
    }


def ladder_caller(call: Call) -> dict[str, object]:
    """The caller as the ladder's first participant: where the INVITE came from (a proxy
    in front, or the customer itself) and whose call it is."""
    origin, source, customer = call.origin, call.source, call.customer
    return {"role": "customer", "name": origin.name, "kind": origin.kind,
            "address": f"{source.transport}:{source.host}:{source.port}",
            "customer": f"{customer.host}:{customer.port}"}


def ladder_leg(attempt: Attempt) -> dict[str, object]:
    """An attempt as a participant of the ladder: the vendor (or phone) it went to."""
    dest = attempt.destination
    peer = dest.peer
    return {"id": f"attempt-{attempt.seq}", "attempt": attempt.seq,
            "role": "vendor" if dest.gateway is not None else "phone",
            "name": dest.gateway.name if dest.gateway is not None
            else dest.binding.username if dest.binding is not None else None,
            "address": f"{peer.transport}:{peer.host}:{peer.port}",
            "target": attempt.target, "outcome": attempt.outcome,
            "final_code": attempt.final_code}


def ladder_end(call: Call) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """The call's last word for its ladder, and each attempt's outcome by leg id."""
    return ({"ringing_at": call.ringing_at, "answer_at": call.answer_at,
             "end_at": call.end_at,
             "final_code": call.final_code, "final_reason": call.final_reason,
             "hangup_by": call.hangup_by, "termination_reason": call.termination},
            {f"attempt-{a.seq}": {"outcome": a.outcome, "final_code": a.final_code}
             for a in call.attempts})
