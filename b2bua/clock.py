"""The clocks the switch reads, as one injected object, so the switchboard and the call
adapters can be driven by a fake clock in tests (``tests/unit/test_switchboard.py``,
``tests/unit/test_policy_fuzz.py``) exactly as the engine drives them with the real one.
"""

from __future__ import annotations

from time import monotonic as _monotonic
from time import time as _time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch: CDRs, registrations, the policy's windows,
        routing periods, Retry-After holds (shared across processes as wall time)."""
        ...

    def monotonic(self) -> float:
        """Seconds that never go back: call-rate deadlines (one clock for every process
        of the switch, ``calls/counts.py``)."""
        ...


class SystemClock:
    """The machine's clocks. The methods are the C functions themselves, so reading the
    clock through this object costs one attribute look-up more than ``time.time()``."""

    time = staticmethod(_time)
    monotonic = staticmethod(_monotonic)


SYSTEM_CLOCK = SystemClock()
