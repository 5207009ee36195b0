"""Maximum call duration (VOS3000's ``maxCallDurationLower``/``Upper``): a mapping
gateway's or phone's limit, else the system's ``SS_MAX_CALL_DURATION``; a range gives
each call its own limit drawn between the bounds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAX_SECONDS = 7 * 86400


@dataclass(frozen=True, slots=True)
class DurationLimit:
    lower: int  # seconds; 0: no limit
    upper: int  # >= lower; equal: a fixed limit

    @classmethod
    def of(cls, lower: int | None, upper: int | None) -> DurationLimit | None:
        """A row's ``max_duration``/``max_duration_upper``; None: the system's."""
        if lower is None:
            return None
        return cls(int(lower), int(upper) if upper is not None else int(lower))


def call_limit(own: DurationLimit | None, system: int,
               draw: Callable[[int, int], int]) -> int:
    """A call's maximum talk time in seconds (0: none). ``draw(a, b)`` picks an integer
    in [a, b] (``random.randint`` in the engine, a fixed choice in tests)."""
    if own is None:
        return max(0, system)
    if own.lower <= 0:
        return 0
    return own.lower if own.upper <= own.lower else draw(own.lower, own.upper)
