"""Call-rate limits: calls per second with a burst, per mapping gateway, phone and
routing gateway. The rule is GCRA (a token bucket kept as one time per limited thing),
counted by ``CallCounts.pace`` exactly across signalling workers and cluster nodes."""

from __future__ import annotations

import math
from dataclasses import dataclass

MAX_RATE = 100_000.0
MAX_BURST = 10_000  # as the counters keep it (b2bua/calls/counts.py)


@dataclass(frozen=True, slots=True)
class CallRate:
    rate: float  # calls per second
    burst: int  # calls let through at once after a quiet spell

    @classmethod
    def of(cls, rate: float | None, burst: int | None) -> CallRate | None:
        """The limit a row's ``call_rate``/``call_rate_burst`` ask for; None: no limit.
        Without a burst, one second's worth of calls (at least one)."""
        if rate is None:
            return None
        return cls(float(rate), int(burst) if burst else default_burst(float(rate)))


def default_burst(rate: float) -> int:
    return min(MAX_BURST, max(1, math.floor(rate)))


def retry_after(wait: float) -> int:
    """The Retry-After (whole seconds, at least 1) of a refusal ``wait`` s from a place."""
    return max(1, math.ceil(wait))
