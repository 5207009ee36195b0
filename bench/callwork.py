"""The event loop's work per SIP call, counted in Python function calls, and where two
revisions differ.

``bench/cps.py --count-work RATE`` runs one load step per softswitch revision with the
main thread under ``cProfile`` (``bench/gc_probe.py``, ``BENCH_CALL_PROFILE``) and hands
the two statistics files to :func:`compare`. A function call count does not move with
the load of a shared machine, where CPU time per call moves by 10% from one run to the
next: a change that adds work shows here even when a calls/s search cannot resolve it.
``tottime`` under the profiler is printed too, as a rough weight: the profiler's own
overhead per call inflates small functions.

Standalone, on two files written by earlier runs::

    .venv/bin/python bench/callwork.py NEW.prof NEW_CALLS OLD.prof OLD_CALLS
"""

from __future__ import annotations

import pstats
import re
import sys
from dataclasses import dataclass

# Paths differ between exported revisions (/tmp/bench-cps-*/code-base/...): keep the
# part inside the package or the standard library.
_PREFIX = re.compile(r"^.*/(?=(b2bua|api)/)|^.*/(site-packages|python3\.\d+)/")
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")  # built-ins named with their object's address


@dataclass
class Work:
    calls: int  # SIP calls in the profiled step
    functions: dict[str, tuple[int, float]]  # name -> (function calls, tottime s)

    @property
    def per_call(self) -> float:
        return sum(n for n, _ in self.functions.values()) / max(self.calls, 1)

    @property
    def seconds_per_call(self) -> float:
        return sum(t for _, t in self.functions.values()) / max(self.calls, 1)

    def count(self, name: str) -> float:
        return self.functions.get(name, (0, 0.0))[0] / max(self.calls, 1)


def load(path: str, calls: int) -> Work:
    functions: dict[str, tuple[int, float]] = {}
    stats = pstats.Stats(path).stats  # type: ignore[attr-defined]
    for (filename, _line, func), (_cc, ncalls, tottime, _ct, _callers) in stats.items():
        name = _ADDRESS.sub("", f"{_PREFIX.sub('', filename)}:{func}")
        n, t = functions.get(name, (0, 0.0))
        functions[name] = (n + ncalls, t + tottime)
    return Work(calls, functions)


def compare(new: Work, old: Work, new_label: str = "new", old_label: str = "old",
            top: int = 15) -> str:
    lines = [
        f"Python function calls per SIP call: {new_label} {new.per_call:.1f}, "
        f"{old_label} {old.per_call:.1f} ({new.per_call / max(old.per_call, 1e-9):.3f}x)",
        f"profiled time per SIP call: {new_label} {1e6 * new.seconds_per_call:.0f} us, "
        f"{old_label} {1e6 * old.seconds_per_call:.0f} us (under cProfile, a rough weight)",
    ]
    names = set(new.functions) | set(old.functions)
    diffs = sorted(((new.count(n) - old.count(n), n) for n in names), reverse=True)
    more = [(d, n) for d, n in diffs if d >= 0.5][:top]
    fewer = [(d, n) for d, n in reversed(diffs) if d <= -0.5][:top]
    for title, rows in ((f"more calls per SIP call in {new_label}", more),
                        (f"fewer calls per SIP call in {new_label}", fewer)):
        lines.append(f"  {title}:")
        lines += [f"    {d:+7.1f}  {new.count(n):7.1f} / {old.count(n):7.1f}  {n}"
                  for d, n in rows] or ["    (none)"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__)
        return 2
    print(compare(load(argv[0], int(argv[1])), load(argv[2], int(argv[3]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
