"""Long protocol timers on one periodic sweep instead of one event-loop timer each.

Every finished transaction waits 64*T1 = 32 s before it is forgotten (RFC 3261 Timers
J and D, RFC 6026's Timer L), and every call has a few such waits running at once
(Timers B, F and H too). At 1000 calls/s that is tens of thousands of 32 s timers, each
an event-loop timer (uvloop: a ``TimerHandle``, a libuv timer and a ``Context``) created
and, most of the time, cancelled. Their deadlines only ever grow (the same delay added
to a monotonic clock), so a queue per delay keeps them in order: scheduling is an
append, cancelling drops the callback, and one sweep every :data:`SWEEP` seconds fires
what is due. A swept timer fires at most one sweep late: nothing in SIP needs a 32 s
wait to the millisecond. Only the delay of exactly 64*T1 is swept; every other delay
(the retransmissions, T4, an INVITE timeout an operator set) stays exact on the loop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from b2bua.sip.transaction import TIMER_64T1

SWEPT = (TIMER_64T1,)  # the delays swept (Timers B, D, F, H, J, L)
SWEEP = 0.25  # seconds between sweeps while any long timer is pending


class SweptTimer:
    """A pending long timer; ``cancel()`` as on the loop's handles."""

    __slots__ = ("callback", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self.callback = None


class SweptTimers:
    """``call_later`` for the transaction layer: the 64*T1 waits swept, the rest on the
    loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, swept: tuple[float, ...] = SWEPT,
                 sweep: float = SWEEP) -> None:
        self._loop = loop
        self._swept = frozenset(swept)
        self._sweep_every = sweep
        self._queues: dict[float, deque[SweptTimer]] = {}
        self._sweeping: asyncio.TimerHandle | None = None

    def call_later(self, delay: float, callback: Callable[[], None]
                   ) -> SweptTimer | asyncio.TimerHandle:
        if delay not in self._swept:
            return self._loop.call_later(delay, callback)
        timer = SweptTimer(self._loop.time() + delay, callback)
        queue = self._queues.get(delay)
        if queue is None:
            queue = self._queues[delay] = deque()
        queue.append(timer)
        if self._sweeping is None:
            self._sweeping = self._loop.call_later(self._sweep_every, self._sweep)
        return timer

    @property
    def pending(self) -> int:
        """Long timers queued, cancelled ones included until their deadline passes."""
        return sum(len(q) for q in self._queues.values())

    def _sweep(self) -> None:
        self._sweeping = None
        now = self._loop.time()
        for delay, queue in list(self._queues.items()):
            while queue and queue[0].deadline <= now:
                timer = queue.popleft()
                callback, timer.callback = timer.callback, None
                if callback is None:
                    continue
                try:
                    callback()
                except Exception as exc:  # as the loop does for its own callbacks
                    self._loop.call_exception_handler({
                        "message": "exception in a swept timer callback",
                        "exception": exc})
            if not queue:
                del self._queues[delay]
        if self._queues and self._sweeping is None:
            self._sweeping = self._loop.call_later(self._sweep_every, self._sweep)


class LoopTimers:
    """``call_later`` on whatever loop is running when a timer is set (a call's timers,
    a registration's refresh)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)
