"""Call ladders: the SIP messages of one call, both legs, as the engine keeps them
(docs/sip.md, "Call ladders"; ``b2bua/ladders.py``), for a console to draw: the
customer, the softswitch and each vendor tried, one message per arrow."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, request
from marshmallow import Schema, fields

from api import context
from api.cluster_merge import SCOPE, node_answer
from api.errors import ApiError
from api.openapi import operation
from api.routes.engine import engine_request
from b2bua.storage import cdrs as cdr_store

bp = Blueprint("ladders", __name__)


class LadderCallSchema(Schema):
    id = fields.Integer(required=True, metadata={"description": "the call's number, as "
                                                 "GET /calls lists it"})
    cdr_uuid = fields.String(required=True)
    call_id_in = fields.String(required=True)
    caller = fields.String(required=True)
    callee = fields.String(required=True)
    mapping_gateway = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    start_at = fields.Float(required=True)
    ringing_at = fields.Float(allow_none=True)
    answer_at = fields.Float(allow_none=True)
    end_at = fields.Float(allow_none=True)
    final_code = fields.Integer(allow_none=True)
    final_reason = fields.String(allow_none=True)
    hangup_by = fields.String(allow_none=True)
    termination_reason = fields.String(allow_none=True)
    state = fields.String(required=True, metadata={"description": "up or ended"})
    node = fields.String(allow_none=True, metadata={"description": "the node that carried "
                                                    "it (a cluster)"})


class LadderParticipantSchema(Schema):
    id = fields.String(required=True, metadata={
        "description": "caller, softswitch, or attempt-N: what messages' leg, from and "
                       "to name"})
    role = fields.String(required=True, metadata={
        "description": "customer, softswitch, vendor or phone"})
    name = fields.String(allow_none=True, metadata={
        "description": "the mapping gateway, phone, node or routing gateway"})
    address = fields.String(allow_none=True, metadata={
        "description": "where its messages went: transport:ip:port (the softswitch: its "
                       "SIP address)"})
    kind = fields.String(metadata={"description": "the caller: gateway, phone or vendor"})
    customer = fields.String(metadata={
        "description": "the caller: whose call it is (ip:port; behind an edge proxy, not "
                       "the address)"})
    attempt = fields.Integer(metadata={"description": "a vendor: the attempt's number"})
    target = fields.String(allow_none=True, metadata={
        "description": "a vendor: the address:port the INVITE was for"})
    outcome = fields.String(metadata={
        "description": "a vendor: as the CDR's attempt (answered, failed, ...)"})
    final_code = fields.Integer(allow_none=True)


class LadderMessageSchema(Schema):
    at = fields.Float(required=True, metadata={"description": "Unix time, sent or read"})
    direction = fields.String(required=True, metadata={"description": "in or out"})
    leg = fields.String(required=True, metadata={"description": "caller or attempt-N"})
    from_ = fields.String(required=True, data_key="from",
                          metadata={"description": "a participant's id"})
    to = fields.String(required=True, metadata={"description": "a participant's id"})
    local = fields.String(required=True, metadata={"description": "the softswitch's "
                                                   "address"})
    remote = fields.String(required=True, metadata={"description": "ip:port"})
    transport = fields.String(required=True, metadata={"description": "udp or tcp"})
    first_line = fields.String(required=True)
    size = fields.Integer(required=True, metadata={"description": "bytes kept (at most "
                                                   "65535)"})
    text = fields.String(required=True, metadata={"description": "the whole message"})


class SipLadderSchema(Schema):
    call = fields.Nested(LadderCallSchema, required=True)
    participants = fields.List(fields.Nested(LadderParticipantSchema), required=True,
                               metadata={"description": "in drawing order: the customer, "
                                         "the softswitch, each vendor tried"})
    messages = fields.List(fields.Nested(LadderMessageSchema), required=True,
                           metadata={"description": "in the order sent and read"})
    omitted = fields.Integer(required=True, metadata={
        "description": "messages left out: beyond a call's 200 (from the middle), or "
                       "while SS_SIP_LADDERS_SIZE was full of live calls"})


_NODE = {"in": "query", "name": "node", "required": False, "schema": {"type": "string"},
         "description": "on a cluster: the node carrying the call (GET /calls items' "
                        "node); this node when not given"}


@bp.get("/api/v1/calls/<int:call_no>/sip")
@operation("get", "The SIP messages of a call up now or ended recently (both legs, each "
                  "vendor tried), as a ladder", response=SipLadderSchema,
           errors=(404, 503), parameters=[_NODE, SCOPE])
def call_ladder(call_no: int) -> Any:
    node = request.args.get("node")
    if node:
        remote = node_answer(node, f"/api/v1/calls/{call_no}/sip")
        if remote is not None:
            return _relayed(remote)
    answer = engine_request("sip_ladder", call=call_no)
    if answer.get("found"):
        return answer["ladder"]
    raise ApiError(404, f"no SIP ladder for call {call_no}: " + _why_not(answer))


@bp.get("/api/v1/cdrs/<int:cdr_id>/sip")
@operation("get", "The SIP messages of the call of a CDR (both legs, each vendor tried), "
                  "while kept (SS_SIP_LADDERS)", response=SipLadderSchema,
           errors=(404, 503), parameters=[SCOPE])
def cdr_ladder(cdr_id: int) -> Any:
    row = cdr_store.get(context.database(), cdr_id)
    if row is None:
        raise ApiError(404, f"no CDR with id {cdr_id}")
    if not row.get("cdr_uuid"):
        raise ApiError(404, f"no SIP ladder for CDR {cdr_id}: written before calls had a "
                            "cdr_uuid")
    if row.get("node"):
        remote = node_answer(str(row["node"]), f"/api/v1/cdrs/{cdr_id}/sip")
        if remote is not None:
            return _relayed(remote)
    answer = engine_request("sip_ladder", cdr_uuid=str(row["cdr_uuid"]))
    if answer.get("found"):
        return answer["ladder"]
    raise ApiError(404, f"no SIP ladder for CDR {cdr_id}: " + _why_not(answer, row))


def _relayed(remote: tuple[int, Any]) -> Any:
    """Another node's answer as it gave it."""
    status, body = remote
    if status == 200:
        return body
    detail = body.get("detail") if isinstance(body, dict) else None
    raise ApiError(status if status in (404, 503) else 503,
                   str(detail or f"the node answered {status}"))


def _why_not(answer: dict[str, Any], cdr: dict[str, Any] | None = None) -> str:
    """Why the engine keeps no ladder for the call: its own word, else what the CDR and
    the parameters tell."""
    reason, policy = answer.get("reason"), answer.get("policy")
    age, size = answer.get("age"), answer.get("size")
    if reason == "unknown" and cdr is not None:
        if cdr.get("answer_at") and policy == "Failed":
            reason = "answered"
        elif time.time() - float(cdr.get("end_at") or 0) > float(age or 0):
            reason = "expired"
    if reason == "answered":
        return (f"not kept: the call was answered and SS_SIP_LADDERS is {policy} "
                "(Failed keeps the calls never answered, All every call)")
    if reason == "off":
        return "not kept: SS_SIP_LADDERS was Off when the call ended"
    if reason == "expired":
        return f"expired: a ladder is kept SS_SIP_LADDERS_AGE ({age} s) after its call ends"
    if reason == "evicted":
        return (f"evicted: the oldest ladders make room for new ones within "
                f"SS_SIP_LADDERS_SIZE ({size} MiB)")
    return ("none kept: no such call now, nor a recent one whose ladder was kept (the "
            "engine restarted since, or SS_SIP_LADDERS was Off)")
