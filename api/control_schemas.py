"""Schemas of the carrier controls (docs/carrier-controls.md) shared by mapping gateways,
phones and routing gateways: call-rate limits, maximum call duration, failure-code maps,
weights and routing periods."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from b2bua.controls.duration import MAX_SECONDS
from b2bua.controls.failure_codes import FailureCodeError, FailureCodes
from b2bua.controls.rates import MAX_BURST, MAX_RATE
from b2bua.routing.periods import DAYS, PeriodError, parse_period

PREFIX_RE = r"^[0-9A-Za-z#*+]{1,32}\Z"


class CallRateFields(Schema):
    call_rate = fields.Float(
        load_default=None, allow_none=True, allow_nan=False,
        validate=validate.Range(0.01, MAX_RATE),
        metadata={"description": "calls per second let through (VOS3000 maxcallrate); "
                                 "null = no limit"})
    call_rate_burst = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(1, MAX_BURST),
        metadata={"description": "calls let through at once after a quiet spell; null = "
                                 "one second's worth (call_rate rounded down, at least 1)"})


class DurationFields(Schema):
    max_duration = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(0, MAX_SECONDS),
        metadata={"description": "longest talk time in seconds (the lower bound with "
                                 "max_duration_upper); 0 = no limit; null = "
                                 "SS_MAX_CALL_DURATION"})
    max_duration_upper = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(1, MAX_SECONDS),
        metadata={"description": "with max_duration: each call's limit is drawn between the "
                                 "two (VOS3000 maxCallDurationLower/Upper); null = fixed"})


def _failure_codes(value: dict[str, Any]) -> None:
    try:
        FailureCodes.parse(value)
    except FailureCodeError as exc:
        raise ValidationError(str(exc)) from None


class FailureCodeFields(Schema):
    failure_codes = fields.Dict(
        keys=fields.String(), values=fields.Integer(strict=True), load_default=dict,
        validate=[validate.Length(max=400), _failure_codes],
        metadata={"description": 'the code the caller is sent in place of the final code, '
                                 'by code or class, e.g. {"5xx": 503, "404": 480} (VOS3000 '
                                 'callFailedSipCode); the CDR keeps the vendor\'s code'})


class PeriodSchema(Schema):
    days = fields.List(fields.String(validate=validate.OneOf(DAYS)), required=True,
                       validate=validate.Length(min=1, max=7))
    begin = fields.String(required=True,
                          metadata={"description": "HH:MM or HH:MM:SS, inclusive"})
    end = fields.String(required=True, metadata={
        "description": "HH:MM or HH:MM:SS (24:00 = midnight), exclusive"})
    prefixes = fields.List(fields.String(validate=validate.Regexp(PREFIX_RE)),
                           validate=validate.Length(max=10000),
                           metadata={"description": "in this period, instead of the gateway's"})
    priority = fields.Integer(strict=True, validate=validate.Range(0, 1_000_000))
    capacity = fields.Integer(strict=True, allow_none=True, validate=validate.Range(0, 1_000_000),
                              metadata={"description": "null = unlimited in this period"})
    enabled = fields.Boolean()


def _period(value: dict[str, Any]) -> None:
    try:
        parse_period(value)
    except PeriodError as exc:
        raise ValidationError(str(exc)) from None


class RoutingControlFields(CallRateFields):
    weight = fields.Integer(
        strict=True, load_default=None, allow_none=True, validate=validate.Range(0, 10_000),
        metadata={"description": "share of calls among gateways of the same prefix and "
                                 "priority (smooth weighted round robin); 0 = only when the "
                                 "others fail; null = not weighted"})
    periods = fields.List(
        fields.Nested(PeriodSchema, validate=_period), load_default=list,
        validate=validate.Length(max=100),
        metadata={"description": "time ranges per weekday with their own prefixes, priority, "
                                 "capacity or enabled state (SS_ROUTING_TIME_ZONE); the first "
                                 "in force wins"})


def check_controls(data: dict[str, Any]) -> dict[str, list[str]]:
    """Rules across the controls' fields (``data`` is the whole row after the write)."""
    errors: dict[str, list[str]] = {}
    if data.get("call_rate_burst") is not None and data.get("call_rate") is None:
        errors["call_rate_burst"] = ["a burst needs a call_rate"]
    upper = data.get("max_duration_upper")
    if upper is not None:
        lower = data.get("max_duration")
        if not lower:
            errors["max_duration_upper"] = ["needs max_duration above 0 (the lower bound)"]
        elif upper < lower:
            errors["max_duration_upper"] = ["must not be below max_duration"]
    return errors


CONTROL_JSON_COLUMNS = frozenset({"failure_codes", "periods"})
