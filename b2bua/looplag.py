"""Event-loop lag: how late the loop runs a timer, the measure of overload.

A coroutine asks to wake every :data:`INTERVAL`; how much later than asked it wakes is
the time every other callback (a SIP message, an RTP packet) waited too. ``mean`` is the
average lag over the last :data:`WINDOW`: a single garbage-collection pause of 600 ms
raises it by a fraction, a loop that cannot keep up raises it to its full lateness, so
admission control (``SS_OVERLOAD_LOOP_LAG``) refuses calls for sustained overload only.
``peak`` is the worst lag in the window, ``worst`` the worst since start.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

INTERVAL = 0.05
WINDOW = 2.0


class LoopLag:
    def __init__(self) -> None:
        self._recent: deque[tuple[float, float]] = deque()
        self.worst = 0.0

    def _window(self) -> list[float]:
        cutoff = time.monotonic() - WINDOW
        return [lag for at, lag in self._recent if at >= cutoff]

    @property
    def mean(self) -> float:
        """Seconds: the average lag over the last :data:`WINDOW`."""
        lags = self._window()
        return sum(lags) / len(lags) if lags else 0.0

    @property
    def peak(self) -> float:
        return max(self._window(), default=0.0)

    def note(self, at: float, lag: float) -> None:
        recent = self._recent
        recent.append((at, lag))
        while recent and recent[0][0] < at - WINDOW:
            recent.popleft()
        self.worst = max(self.worst, lag)

    def snapshot(self) -> dict[str, float]:
        return {"mean_ms": round(self.mean * 1000, 1), "peak_ms": round(self.peak * 1000, 1),
                "worst_ms": round(self.worst * 1000, 1)}

    async def run(self) -> None:
        while True:
            due = time.monotonic() + INTERVAL
            await asyncio.sleep(INTERVAL)
            now = time.monotonic()
            self.note(now, max(0.0, now - due))
