"""When the engine runs CPython's full garbage collections.

A full (generation 2) collection stops the event loop for about 1 us per tracked object,
and at a few hundred calls per second the engine holds hundreds of thousands of them:
finished transactions are kept for 64*T1 (32 s) as RFC 3261 requires. Left to the
interpreter, full collections come every few seconds and pause the loop for hundreds of
milliseconds: callers retransmit, and above some rate calls fail
(``docs/performance.md``).

A call leaves no reference cycles behind (every object of a finished call is freed by
reference counting; ``tests/integration/test_memory.py`` checks it), so full
collections find nothing to free in normal operation. The policy:

* after start-up, everything that exists (modules, configuration) is frozen out of
  collections (``gc.freeze``);
* young collections (generations 0 and 1) stay as the interpreter runs them: they are
  short, since they look at new objects only;
* automatic full collections are off; instead :meth:`FullCollections.run` runs one when
  the process's resident memory has doubled since the last one (and grown by at least
  :data:`GROWTH_BYTES`), as Go's collector paces itself: if some path ever leaks cycles,
  memory stays within twice what is live at the cost of a rare pause, a rising load
  costs a logarithmic number of them, and a steady load without leaks costs none. A
  collection that frees next to nothing (memory grew with live transactions, not
  garbage) doubles the factor for the next one, up to 16;
* memory that grew *with the live SIP state* is not collected for: the engine reports
  its live units (transactions and calls), and when they grew by at least half as much
  as memory did since the last anchor, the growth is taken as live (a rising load, the
  32 s transaction window filling after a start) and the anchor moves up instead of
  walking the heap: every full collection over live objects frees nothing and pauses
  the loop about 1 us per object (1.7 s at 1168 calls/s). A leak, memory growing while
  the live state does not, is still collected once memory doubles from the anchor. Each
  one is logged with its pause and counted (``/api/v1/metrics``:
  ``softswitch_gc_full_collections_total``, ``softswitch_gc_last_full_pause_seconds``).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("b2bua.gc")

GROWTH_BYTES = 64 * 1024 * 1024
CHECK_INTERVAL = 5.0
MAX_FACTOR = 16
FRUITLESS = 10_000  # objects: a full collection freeing fewer was not worth its pause
LIVE_FLOOR = 1_000  # live units added to both sides of the ratio (an idle engine is not 0)
NEVER = 1_000_000_000  # a generation-2 threshold the generation-1 count never reaches
TRIM_EVERY = 12  # checks: the C heap is trimmed once a minute
_PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim  # glibc only
    except (OSError, AttributeError, TypeError):
        return None
    return trim


_trim = _malloc_trim()


class FullCollections:
    def __init__(self, growth: int = GROWTH_BYTES,
                 live: Callable[[], int] = lambda: 0) -> None:
        self.growth = growth
        self.live = live  # the live units (transactions, calls) memory grows with
        self.factor = 2
        self.baseline = 0
        self.baseline_live = 0
        self.count = 0
        self.skipped = 0
        self.last_pause = 0.0
        self.last_collected = 0
        self.trims = 0
        self.last_trim_pause = 0.0
        self.last_trim_released = 0

    def install(self) -> None:
        """Freeze what start-up made and stop the interpreter's own full collections."""
        gc.collect()
        gc.freeze()
        gen0, gen1, _ = gc.get_threshold()
        gc.set_threshold(gen0, gen1, NEVER)
        self.baseline = resident_bytes()
        self.baseline_live = self.live()

    def check(self) -> bool:
        """Collect if memory grew ``factor`` times (and by ``growth``) since the last
        collection. A collection that frees next to nothing doubles the factor (up to
        :data:`MAX_FACTOR`): memory grew with live objects (a rising load's
        transactions), not garbage, and the next pause would be as useless and longer."""
        resident = resident_bytes()
        grown = resident - self.baseline
        if grown < max(self.growth, self.baseline * (self.factor - 1)):
            return False
        live = self.live()
        if live + LIVE_FLOOR >= (self.baseline_live + LIVE_FLOOR) * (1 + grown / self.baseline / 2):
            # The live state grew along with memory: move the anchor, walk nothing.
            self.skipped += 1
            self.baseline, self.baseline_live = resident, live
            log.info("memory grew with the live state (%d units): no full collection, "
                     "resident %.0f MB", live, resident / 2**20)
            return False
        freed = self.collect()
        fruitless = freed < FRUITLESS
        self.factor = min(self.factor * 2, MAX_FACTOR) if fruitless else 2
        return True

    def collect(self, garbage: Counter[str] | None = None) -> int:
        """A full collection now; the objects freed. With ``garbage``, also counts them
        by type (the control channel's ``collect``: a diagnostic of what leaked)."""
        started = time.perf_counter()
        if garbage is None:
            collected = gc.collect()
        else:
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                collected = gc.collect()
                garbage.update(f"{type(o).__module__}.{type(o).__qualname__}"
                               for o in gc.garbage)
            finally:
                gc.garbage.clear()
                gc.set_debug(0)
        self.last_pause = time.perf_counter() - started
        self.last_collected = collected
        self.count += 1
        self.baseline = resident_bytes()
        self.baseline_live = self.live()
        log.info("full garbage collection: %d objects freed, loop paused %.0f ms, "
                 "resident %.0f MB", collected, self.last_pause * 1000, self.baseline / 2**20)
        return collected

    def trim(self) -> int:
        """Give the C heap's free pages back to the kernel (glibc ``malloc_trim``); the
        resident bytes released. Why: glibc returns free memory in the middle of its
        main heap only when asked, so a peak of the live set (a burst of transactions,
        the write queue) otherwise stays resident as a high-water mark."""
        if _trim is None:
            return 0
        before = resident_bytes()
        started = time.perf_counter()
        _trim(0)
        self.last_trim_pause = time.perf_counter() - started
        self.last_trim_released = max(0, before - resident_bytes())
        self.trims += 1
        return self.last_trim_released

    def snapshot(self) -> dict[str, float]:
        return {"full_collections": self.count, "skipped_live_growth": self.skipped,
                "next_at_factor": self.factor,
                "last_full_pause_seconds": round(self.last_pause, 4),
                "last_full_collected": self.last_collected,
                "resident_baseline_bytes": self.baseline,
                # Python's own blocks against the process's resident memory: the second
                # growing while the first does not is the allocator, not live objects.
                "python_allocated_blocks": sys.getallocatedblocks(),
                "resident_bytes": resident_bytes(),
                "heap_trims": self.trims,
                "last_trim_pause_seconds": round(self.last_trim_pause, 4),
                "last_trim_released_bytes": self.last_trim_released}

    async def run(self) -> None:
        checks = 0
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            self.check()
            checks += 1
            if checks % TRIM_EVERY == 0:
                self.trim()
