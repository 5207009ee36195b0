"""Time-of-day routing (VOS3000's period capacity and priority): a routing gateway may
list periods, each a time range on some weekdays with its own prefixes, priority,
capacity or enabled state. A call takes the first period in force when it starts, in the
time zone ``SS_ROUTING_TIME_ZONE``; outside every period the gateway's own values apply.
A range is [begin, end) in seconds of the day (given as HH:MM or HH:MM:SS, as VOS3000
keeps second-of-day); one past midnight is written as two."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from b2bua.routing.gateways import RoutingGateway

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNSET: Any = object()


class PeriodError(ValueError):
    """A period that cannot be understood (bad day, time or range)."""


@dataclass(frozen=True, slots=True)
class Period:
    days: frozenset[int]  # 0 = Monday
    begin: int  # second of the day, inclusive
    end: int  # second of the day, exclusive (86400: midnight)
    prefixes: tuple[str, ...] | None = None
    priority: int | None = None
    capacity: Any = _UNSET  # an int, None (unlimited), or _UNSET (the gateway's)
    enabled: bool | None = None

    def covers(self, weekday: int, second: int) -> bool:
        return weekday in self.days and self.begin <= second < self.end

    def apply(self, gw: RoutingGateway) -> RoutingGateway:
        changes: dict[str, Any] = {}
        if self.prefixes is not None:
            changes["prefixes"] = self.prefixes
        if self.priority is not None:
            changes["priority"] = self.priority
        if self.capacity is not _UNSET:
            changes["capacity"] = self.capacity
        if self.enabled is not None:
            changes["enabled"] = self.enabled
        return dataclasses.replace(gw, **changes)


def second_of(text: str) -> int:
    """"HH:MM" or "HH:MM:SS" (00:00 to 24:00) as seconds of the day."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts[1:]) \
            or not parts[0].isdigit() or len(parts[0]) > 2:
        raise PeriodError(f"{text!r}: a time is HH:MM or HH:MM:SS")
    hours, minutes, seconds = int(parts[0]), int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
    value = hours * 3600 + minutes * 60 + seconds
    if minutes >= 60 or seconds >= 60 or value > 86400:
        raise PeriodError(f"{text!r}: a time is 00:00 to 24:00")
    return value


def parse_period(raw: Mapping[str, Any]) -> Period:
    """A period as the API stores it: {"days": ["mon", ...], "begin": "08:00", "end":
    "18:00", and any of "prefixes", "priority", "capacity", "enabled"}."""
    days = raw.get("days") or []
    unknown = [d for d in days if d not in DAYS]
    if unknown or not days:
        raise PeriodError(f"days must be some of {', '.join(DAYS)}")
    begin, end = second_of(str(raw.get("begin", ""))), second_of(str(raw.get("end", "")))
    if begin >= end:
        raise PeriodError("begin must be before end (a range past midnight is two periods)")
    prefixes = raw.get("prefixes")
    return Period(frozenset(DAYS.index(d) for d in days), begin, end,
                  tuple(prefixes) if prefixes is not None else None,
                  raw.get("priority"), raw.get("capacity", _UNSET),
                  raw.get("enabled"))


@lru_cache(maxsize=16)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def local_second(now: float, zone_name: str) -> tuple[int, int]:
    """(weekday with 0 = Monday, second of the day) of ``now`` in the zone."""
    local = datetime.fromtimestamp(now, zone(zone_name))
    return local.weekday(), local.hour * 3600 + local.minute * 60 + local.second


def in_force(gw: RoutingGateway, weekday: int, second: int) -> RoutingGateway:
    """The gateway as its period in force at that time makes it (itself if none is)."""
    for period in gw.periods:
        if period.covers(weekday, second):
            return period.apply(gw)
    return gw


def all_in_force(gateways: Iterable[RoutingGateway], now: float, zone_name: str
                 ) -> list[RoutingGateway]:
    weekday, second = local_second(now, zone_name)
    return [in_force(gw, weekday, second) if gw.periods else gw for gw in gateways]
