"""Mapping and routing gateways as the engine sees them (b2bua/routing/gateways.py)."""

from __future__ import annotations

import json
from typing import Any

from b2bua.controls.duration import DurationLimit
from b2bua.controls.failure_codes import NO_MAP, FailureCodeError, FailureCodes
from b2bua.controls.rates import CallRate
from b2bua.routing.gateways import MappingGateway, RoutingGateway
from b2bua.routing.periods import Period, PeriodError, parse_period
from b2bua.storage.backend import Database, Row
from b2bua.storage.numbers import number_rules


def _media(row: Row) -> dict[str, Any]:
    return {"media_relay": str(row["media_relay"]), "rtp_encryption": bool(row["rtp_encryption"]),
            "media_check": str(row["media_check"])}


def _optional_bool(value: object) -> bool | None:
    return None if value is None else bool(value)


def _failure_codes(text: str | None) -> FailureCodes:
    try:
        return FailureCodes.parse(json.loads(text or "{}"))
    except (FailureCodeError, ValueError, AttributeError):
        return NO_MAP  # the API validates; a hand-edited row maps nothing


def _periods(text: str | None) -> tuple[Period, ...]:
    periods = []
    for raw in json.loads(text or "[]"):
        try:
            periods.append(parse_period(raw))
        except (PeriodError, TypeError, AttributeError):
            continue  # the API validates; a hand-edited period that is wrong is ignored
    return tuple(periods)


def mapping_gateways(database: Database) -> list[MappingGateway]:
    """Every mapping gateway, in id order."""
    return [
        MappingGateway(
            id=int(r["id"]),
            name=str(r["name"]),
            auth_mode=str(r["auth_mode"]),
            ips=frozenset(json.loads(r["ips"] or "[]")),
            port=r["port"],
            username=r["username"],
            password=r["password"],
            capacity=r["capacity"],
            enabled=bool(r["enabled"]),
            numbers=number_rules(r),
            **_media(r),
            call_rate=CallRate.of(r["call_rate"], r["call_rate_burst"]),
            call_rate_code=int(r["call_rate_code"]),
            max_duration=DurationLimit.of(r["max_duration"], r["max_duration_upper"]),
            failure_codes=_failure_codes(r["failure_codes"]),
        )
        for r in database.rows("SELECT * FROM mapping_gateways ORDER BY id")
    ]


def routing_gateways(database: Database) -> list[RoutingGateway]:
    """Every routing gateway, in id order."""
    return [
        RoutingGateway(
            id=int(r["id"]),
            name=str(r["name"]),
            host=str(r["host"]),
            port=None if r["port"] is None else int(r["port"]),
            transport=str(r["transport"]),
            prefixes=tuple(json.loads(r["prefixes"] or "[]")),
            priority=int(r["priority"]),
            prefix_mode=str(r["prefix_mode"]),
            capacity=r["capacity"],
            enabled=bool(r["enabled"]),
            invite_timeout=int(r["invite_timeout"]),
            trying_timeout=int(r["trying_timeout"]),
            session_progress_timeout=int(r["session_progress_timeout"]),
            session_progress_sdp_timeout=int(r["session_progress_sdp_timeout"]),
            ringing_timeout=int(r["ringing_timeout"]),
            stop_switch_after_invite_timeout=_optional_bool(
                r["stop_switch_after_invite_timeout"]),
            stop_switch_after_sdp=_optional_bool(r["stop_switch_after_sdp"]),
            stop_switch_after_rtp_start=_optional_bool(r["stop_switch_after_rtp_start"]),
            stop_switch_after_busy=_optional_bool(r["stop_switch_after_busy"]),
            switch_after_ringing=bool(r["switch_after_ringing"]),
            stop_switch_codes=tuple(json.loads(r["stop_switch_codes"] or "[]")),
            numbers=number_rules(r),
            **_media(r),
            call_rate=CallRate.of(r["call_rate"], r["call_rate_burst"]),
            weight=None if r["weight"] is None else int(r["weight"]),
            periods=_periods(r["periods"]),
        )
        for r in database.rows("SELECT * FROM routing_gateways ORDER BY id")
    ]
