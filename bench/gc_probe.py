"""Run ``softswitch`` (``b2bua.cli``) for ``bench/cps.py``: from a code snapshot, and with
Python's cyclic GC observed or switched off. A bench tool only, never for production::

    BENCH_GC_MODE=log BENCH_GC_LOG=/tmp/gc.jsonl python bench/gc_probe.py run --db ...

``BENCH_CODE_ROOT``: a folder holding ``b2bua``, ``api`` and ``migrations`` (e.g. exported
with ``git archive HEAD``) imported instead of the working tree, by this process and by the
API server it starts.

``BENCH_GC_MODE``:

* ``none`` (default): the interpreter's defaults;
* ``log``: every collection of the oldest generation, and any collection that
  takes 5 ms or more, is appended to ``BENCH_GC_LOG`` as a JSON line
  ``{"t": epoch, "gen": 2, "ms": 123.4, "collected": 0, "tracked": 515746}``;
* ``off``: ``gc.disable()`` before the softswitch starts (memory then only grows: run it
  for one short step at a time).

``BENCH_CALL_PROFILE``: a file; between SIGUSR1 and SIGUSR2 the main thread runs under
``cProfile``, and at SIGUSR2 its statistics are written there. Function-call counts per SIP call
do not depend on the machine's load, which CPU time on a shared machine does: two
revisions compared this way show where one does more work than the other.

The ``log`` callback also counts the tracked objects after each full collection
(``gc.get_objects(2)``), which adds a few ms to those collections.
"""

from __future__ import annotations

import gc
import json
import os
import runpy
import sys
import time
from typing import Any

SLOW_MS = 5.0


def _install_logger(path: str) -> None:
    started: list[float] = [0.0]
    out = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1000
        gen = int(info["generation"])
        if gen == 2 or ms >= SLOW_MS:
            record = {"t": round(time.time(), 3), "gen": gen, "ms": round(ms, 2),
                      "collected": info["collected"],
                      "tracked": len(gc.get_objects(2)) if gen == 2 else None}
            out.write(json.dumps(record) + "\n")

    gc.callbacks.append(callback)


def main() -> None:
    code_root = os.environ.get("BENCH_CODE_ROOT")
    if code_root:
        sys.path.insert(0, code_root)
        os.environ["PYTHONPATH"] = code_root  # the gunicorn API process imports it too
    mode = os.environ.get("BENCH_GC_MODE", "none")
    log_path = os.environ.get("BENCH_GC_LOG")
    if mode == "off":
        gc.disable()
    elif mode == "log" and log_path:
        _install_logger(log_path)
    sys.argv = ["b2bua.cli", *sys.argv[1:]]
    call_profile = os.environ.get("BENCH_CALL_PROFILE")
    if call_profile:
        _profile_on_signals(call_profile)
    runpy.run_module("b2bua.cli", run_name="__main__", alter_sys=True)


def _profile_on_signals(path: str) -> None:
    """SIGUSR1 starts ``cProfile`` on the main thread (the event loop's), SIGUSR2 stops it
    and writes the statistics to ``path``: the bench brackets one load step with them."""
    import cProfile
    import signal

    profiler = cProfile.Profile()

    def start(_signo: int, _frame: object) -> None:
        profiler.enable()

    def stop(_signo: int, _frame: object) -> None:
        profiler.disable()
        profiler.dump_stats(path)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


if __name__ == "__main__":
    main()
