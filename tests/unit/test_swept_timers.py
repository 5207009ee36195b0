"""Long SIP timers on one sweep (b2bua/aio/timers.py), on a real event loop."""

from __future__ import annotations

import asyncio

import uvloop

from b2bua.aio.timers import SweptTimer, SweptTimers


def test_long_timers_fire_in_order_within_one_sweep_and_cancel() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        timers = SweptTimers(loop, swept=(0.3, 0.5), sweep=0.05)
        fired: list[tuple[str, float]] = []
        start = loop.time()

        def note(name: str) -> None:
            fired.append((name, loop.time() - start))

        first = timers.call_later(0.3, lambda: note("first"))
        cancelled = timers.call_later(0.3, lambda: note("cancelled"))
        timers.call_later(0.3, lambda: 1 / 0)  # raises: must not stop the others
        await asyncio.sleep(0.02)
        timers.call_later(0.3, lambda: note("second"))
        timers.call_later(0.5, lambda: note("longer"))
        short = timers.call_later(0.1, lambda: note("short"))
        exact = timers.call_later(0.31, lambda: note("exact"))
        assert isinstance(first, SweptTimer)
        assert not isinstance(short, SweptTimer) and not isinstance(exact, SweptTimer)
        cancelled.cancel()
        assert timers.pending == 5
        errors: list[object] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context["exception"]))
        await asyncio.sleep(0.75)
        names = [name for name, _ in fired]
        assert names == ["short", "first", "exact", "second", "longer"] or names == [
            "short", "exact", "first", "second", "longer"]
        due = {"short": 0.1, "exact": 0.33, "first": 0.3, "second": 0.32, "longer": 0.52}
        for name, at in fired:
            assert due[name] <= at + 0.005, (name, at)  # never early
            late = 0.03 if name in ("short", "exact") else 0.05 + 0.05  # loop / one sweep
            assert at <= due[name] + late, (name, at)
        assert len(errors) == 1 and isinstance(errors[0], ZeroDivisionError)
        assert timers.pending == 0 and timers._sweeping is None  # idle: no sweep left

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(body())
