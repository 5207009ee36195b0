"""Call counters shared by the signalling workers (b2bua/_tally.c, b2bua/calls/counts.py),
in one process and across real processes racing on the same memory."""

from __future__ import annotations

import mmap
import os
import subprocess
import sys

import pytest

from b2bua._tally import Tally
from b2bua.calls.counts import SLOTS, CallCounts
from b2bua.shared_tables import shared_memory, table_size


def test_capacity_is_admitted_up_to_the_limit_and_released() -> None:
    counts = CallCounts()
    key = ("gateway", 7)
    assert counts[key] == 0
    assert [counts.admit(key, 3) for _ in range(5)] == [True, True, True, False, False]
    assert counts[key] == 3
    counts.add(key, -1)
    assert counts.admit(key, 3) and counts[key] == 3
    assert counts.admit(("gateway", 8), None) and counts[("gateway", 8)] == 1
    assert counts[("phone", 7)] == 0  # kinds do not mix
    assert counts.usage()[0] == 2


def test_holds_keep_the_latest_deadline_of_any_worker() -> None:
    fd = shared_memory(table_size(2, SLOTS))
    try:
        first, second = CallCounts(fd, 2, 0), CallCounts(fd, 2, 1)
        assert first.held_until(("retry_ms", 1)) == 0
        first.hold(("retry_ms", 1), 1000.5)
        second.hold(("retry_ms", 1), 2000.25)
        assert first.held_until(("retry_ms", 1)) == second.held_until(("retry_ms", 1)) == 2000.25
    finally:
        os.close(fd)


def test_workers_see_one_total_and_a_dead_workers_share_is_cleared() -> None:
    fd = shared_memory(table_size(2, SLOTS))
    try:
        first, second = CallCounts(fd, 2, 0), CallCounts(fd, 2, 1)
        key = ("routing", 3)
        assert first.admit(key, 2) and second.admit(key, 2)
        assert not first.admit(key, 2) and not second.admit(key, 2)
        assert first[key] == second[key] == 2
        first.clear_worker(1)  # worker 1 died holding one call
        assert first[key] == 1 and second.admit(key, 2)
    finally:
        os.close(fd)


RACER = """
import sys
from b2bua.calls.counts import CallCounts
counts = CallCounts(int(sys.argv[1]), 2, int(sys.argv[2]))
admitted = sum(counts.admit(("gateway", 1), 1000) for _ in range(50000))
for _ in range(50000):  # balanced churn on another key
    counts.add(("routing", 1), 1)
    counts.add(("routing", 1), -1)
print(admitted)
"""


def test_racing_processes_never_admit_past_the_capacity() -> None:
    fd = shared_memory(table_size(2, SLOTS))
    try:
        procs = [subprocess.Popen([sys.executable, "-c", RACER, str(fd), str(worker)],
                                  pass_fds=(fd,), stdout=subprocess.PIPE, text=True)
                 for worker in (0, 1)]
        outputs = [p.communicate(timeout=60)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0]
        counts = CallCounts(fd, 2, 0)
        assert sum(int(out) for out in outputs) == 1000 == counts[("gateway", 1)]
        assert counts[("routing", 1)] == 0
    finally:
        os.close(fd)


def test_a_full_table_refuses_new_keys_and_bad_arguments_are_errors() -> None:
    memory = mmap.mmap(-1, 8 * 2 * 4)  # four slots, one worker
    tally = Tally(memory, 1, 0)
    for key in range(1, 5):
        tally.add(key, 1)
    assert tally.used() == (4, 4)
    with pytest.raises(OverflowError):
        tally.add(99, 1)
    assert tally.total(99) == 0 and tally.total(1) == 1
    with pytest.raises(ValueError):
        tally.add(0, 1)
    with pytest.raises(ValueError):
        Tally(mmap.mmap(-1, 8), 1, 0)
    with pytest.raises(ValueError):
        Tally(memory, 2, 2)
    with pytest.raises(ValueError):
        tally.clear_column(1)
    with pytest.raises(BufferError):
        Tally(b"read-only", 1, 0)
