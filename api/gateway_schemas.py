"""Schemas of mapping gateways (customer trunks) and routing gateways (vendor trunks)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load, validate

from api import context
from api.control_schemas import (
    CallRateFields,
    DurationFields,
    FailureCodeFields,
    RoutingControlFields,
    check_controls,
)
from api.errors import ApiError
from api.number_schemas import CalleePrefixes, DialPlans, NumberLists, PaiPlan
from b2bua.routing.dns import is_hostname, is_ip
from b2bua.storage import usernames

NAME = validate.Length(min=1, max=64)
PREFIX_RE = re.compile(r"[0-9A-Za-z#*+]{1,32}")


def _ip(value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValidationError(f"{value!r} is not an IP address") from None


def _host(value: str) -> None:
    if not (is_ip(value) or is_hostname(value)):
        raise ValidationError(f"{value!r} is neither an IP address nor a DNS host name")


def _prefix(value: str) -> None:
    if not PREFIX_RE.fullmatch(value):
        raise ValidationError(f"{value!r}: a prefix is 1-32 of 0-9 A-Z a-z # * +")


class MediaFields(Schema):
    media_relay = fields.String(
        load_default="auto", validate=validate.OneOf(["auto", "on", "off", "must_on"]),
        metadata={"description": "anchor this leg's media in the relay (SS_MEDIAPROXYMODE "
                                 "Auto decides with these; docs/media.md)"})
    rtp_encryption = fields.Boolean(
        load_default=False,
        metadata={"description": "encrypt RTP payloads toward this gateway and decrypt what "
                                 "comes from it (SS_RTPENCRYPTIONMODE, SS_RTPENCRYPTIONKEY)"})
    media_check = fields.String(
        load_default="none",
        validate=validate.OneOf(["none", "to_remote", "from_remote", "both"]),
        metadata={"description": "RTP interruption check (SS_MEDIA_CHECK_TIMEOUT)"})


def _timer(system: str, high: int) -> fields.Integer:
    return fields.Integer(strict=True, load_default=0, validate=validate.Range(0, high),
                          metadata={"description": f"seconds; 0 = {system}"})


def _override(system: str) -> fields.Boolean:
    return fields.Boolean(load_default=None, allow_none=True,
                          metadata={"description": f"null = {system}"})


class MappingGatewaySchema(DialPlans, NumberLists, CalleePrefixes, MediaFields,
                           CallRateFields, DurationFields, FailureCodeFields):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=NAME)
    auth_mode = fields.String(
        load_default="ip", validate=validate.OneOf(["ip", "ip_port", "password"]),
        metadata={"description": "ip: source IP; ip_port: source IP and port; password: digest"},
    )
    ips = fields.List(fields.String(validate=_ip), load_default=list,
                      validate=validate.Length(max=256))
    port = fields.Integer(strict=True, load_default=None, allow_none=True,
                          validate=validate.Range(1, 65535),
                          metadata={"description": "source port (ip_port mode)"})
    username = fields.String(load_default=None, allow_none=True,
                             validate=validate.Length(min=1, max=64))
    password = fields.String(load_default=None, allow_none=True, load_only=True,
                             validate=validate.Length(min=1, max=128),
                             metadata={"description": "write-only"})
    capacity = fields.Integer(strict=True, load_default=None, allow_none=True,
                              validate=validate.Range(0, 1_000_000),
                              metadata={"description": "concurrent calls; null = unlimited"})
    enabled = fields.Boolean(load_default=True)
    call_rate_code = fields.Integer(
        strict=True, load_default=503, validate=validate.Range(400, 699),
        metadata={"description": "the answer to a call over call_rate (with Retry-After)"})
    created_at = fields.Float(dump_only=True)
    updated_at = fields.Float(dump_only=True)


def check_mapping_gateway(data: dict[str, Any], current: dict[str, Any] | None) -> None:
    """Rules across fields; ``current`` is the stored row on update (passwords absent)."""
    mode = data.get("auth_mode", "ip")
    errors = check_controls(data)
    if mode in ("ip", "ip_port") and not data.get("ips"):
        errors["ips"] = [f"{mode} mode needs at least one IP"]
    if mode == "ip_port" and data.get("port") is None:
        errors["port"] = ["ip_port mode needs the source port"]
    if mode == "password":
        if not data.get("username"):
            errors["username"] = ["password mode needs a username"]
        # On update ``data`` holds a password only when the request sent one (the stored
        # one is never read back); on create the schema always fills the key in.
        if "password" in data:
            missing = not data["password"]
        else:
            missing = current is None or current.get("auth_mode") != mode
        if missing:
            errors["password"] = ["password mode needs a password"]
    if errors:
        raise ValidationError(errors)
    if mode == "password":
        refuse_taken_username(data["username"], mapping_gateway_id=(current or {}).get("id"))


def refuse_taken_username(username: str, *, phone_id: int | None = None,
                          mapping_gateway_id: int | None = None) -> None:
    """409 when a phone or another password-mode gateway holds the username: both
    register under it, and one registration must name one of them."""
    taken = usernames.holder(context.database(), username, phone_id=phone_id,
                             mapping_gateway_id=mapping_gateway_id)
    if taken is not None:
        raise ApiError(409, f"username {username!r} is taken by {taken}",
                       {"username": [f"taken by {taken}: phones and password-mode mapping "
                                     "gateways share one namespace"]})


class RoutingGatewaySchema(DialPlans, PaiPlan, NumberLists, MediaFields, RoutingControlFields):
    id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=NAME)
    host = fields.String(required=True, validate=_host,
                         metadata={"description": "the vendor's IP address, or its DNS name "
                                                  "(RFC 3263; docs/failover.md)"})
    port = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(1, 65535),
        metadata={"description": "null with a DNS name: found by NAPTR and SRV; an IP "
                                 "address without a port gets 5060"})
    transport = fields.String(load_default="udp", validate=validate.OneOf(["udp", "tcp"]))
    prefixes = fields.List(fields.String(validate=_prefix), load_default=list,
                           validate=validate.Length(max=10000),
                           metadata={"description": "callee prefixes; empty = any callee"})
    priority = fields.Integer(strict=True, load_default=0, validate=validate.Range(0, 1_000_000),
                              metadata={"description": "lower is tried first"})
    prefix_mode = fields.String(load_default="terminate",
                                validate=validate.OneOf(["terminate", "continue"]))
    capacity = fields.Integer(strict=True, load_default=None, allow_none=True,
                              validate=validate.Range(0, 1_000_000))
    enabled = fields.Boolean(load_default=True)
    invite_timeout = _timer("SS_SIP_TIMEOUT_INVITE", 300)
    trying_timeout = _timer("SS_SIP_TIMEOUT_TRYING", 600)
    session_progress_timeout = _timer("SS_SIP_TIMEOUT_SESSION_PROGRESS", 600)
    session_progress_sdp_timeout = _timer("SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP", 3600)
    ringing_timeout = _timer("SS_SIP_TIMEOUT_RINGING", 3600)
    stop_switch_after_invite_timeout = _override(
        "SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT")
    stop_switch_after_sdp = _override("SS_SIP_STOP_SWITCH_AFTER_SDP")
    stop_switch_after_rtp_start = _override("SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START")
    stop_switch_after_busy = _override("SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY")
    switch_after_ringing = fields.Boolean(
        load_default=True,
        metadata={"description": "false: the first 18x commits the call to this gateway"})
    stop_switch_codes = fields.List(
        fields.Integer(strict=True, validate=validate.Range(300, 699)), load_default=list,
        validate=validate.Length(max=100),
        metadata={"description": "final codes that end the call instead of switching"})
    created_at = fields.Float(dump_only=True)
    updated_at = fields.Float(dump_only=True)

    @post_load
    def _ip_port(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """An IP address without a port is at 5060, as before names were allowed (a name
        without one is left to DNS)."""
        if "host" in data and data.get("port") is None and is_ip(data["host"]) and \
                not kwargs.get("partial"):
            data["port"] = 5060
        return data


def check_routing_gateway(data: dict[str, Any], current: dict[str, Any] | None) -> None:
    """Rules across fields (the controls' bounds)."""
    errors = check_controls(data)
    if errors:
        raise ValidationError(errors)
