"""Event-loop lag: how late the loop runs a timer, the measure of overload.

A coroutine asks to wake every :data:`INTERVAL`; how much later than asked it wakes is
the time every other callback (a SIP message, an RTP packet) waited too. ``mean`` is the
average lag over the last :data:`WINDOW`: a single garbage-collection pause of 600 ms
raises it by a fraction, a loop that cannot keep up raises it to its full lateness, so
admission control (``SS_OVERLOAD_LOOP_LAG``) refuses calls for sustained overload only.
``peak`` is the worst lag in the window, ``worst`` the worst since start; both window
figures are updated with each sample, so reading them costs nothing.
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
        self._sum = 0.0
        self.mean = 0.0  # seconds: the average lag over the last WINDOW
        self.peak = 0.0  # seconds: the worst lag in the last WINDOW
        self.worst = 0.0

    def note(self, at: float, lag: float) -> None:
        """One sample; ``mean`` and ``peak`` are kept up to date here, every
        :data:`INTERVAL`, so reading them (admission control, per INVITE) costs nothing."""
        recent = self._recent
        recent.append((at, lag))
        self._sum += lag
        while recent and recent[0][0] < at - WINDOW:
            self._sum -= recent.popleft()[1]
        self.mean = max(0.0, self._sum / len(recent))
        self.peak = max(sample for _, sample in recent)
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
