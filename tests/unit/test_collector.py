"""The engine's full-collection pacing and C heap trim (b2bua/collector.py)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

import pytest

from b2bua import collector
from b2bua.collector import FullCollections, resident_bytes


@pytest.fixture
def restore_gc() -> object:
    threshold = gc.get_threshold()
    yield None
    gc.set_threshold(*threshold)
    gc.unfreeze()


def test_install_turns_automatic_full_collections_off(restore_gc: object) -> None:
    policy = FullCollections()
    policy.install()
    assert gc.get_threshold()[2] == collector.NEVER
    assert gc.get_freeze_count() > 0
    assert policy.baseline > 0


def test_collects_only_when_memory_doubled(monkeypatch: pytest.MonkeyPatch) -> None:
    resident = [100 << 20]
    monkeypatch.setattr(collector, "resident_bytes", lambda: resident[0])
    policy = FullCollections(growth=64 << 20)
    policy.baseline = 100 << 20
    resident[0] = 190 << 20
    assert not policy.check() and policy.count == 0
    resident[0] = 201 << 20
    monkeypatch.setattr(policy, "collect", lambda: 50_000)  # it found garbage
    assert policy.check() and policy.factor == 2
    assert policy.baseline == 100 << 20  # collect() is stubbed: baseline unchanged
    policy.baseline = 201 << 20  # the next one at twice this
    resident[0] = 390 << 20
    assert not policy.check()
    resident[0] = 410 << 20
    monkeypatch.setattr(policy, "collect", lambda: 3)  # nothing to free: back off
    assert policy.check() and policy.factor == 4
    resident[0] = 201 * 3 << 20
    assert not policy.check()  # now only at 4x
    resident[0] = 201 * 4 << 20
    assert policy.check() and policy.factor == 8
    small = FullCollections(growth=64 << 20)
    small.baseline = 10 << 20  # small processes: at least ``growth`` between two
    resident[0] = 60 << 20
    assert not small.check()


def test_growth_with_the_live_state_moves_the_anchor_instead(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A start-up or a rising load fills memory with live transactions: walking them
    frees nothing. Memory that grows while the live state does not is still collected."""
    resident = [100 << 20]
    live = [0]
    monkeypatch.setattr(collector, "resident_bytes", lambda: resident[0])
    policy = FullCollections(growth=64 << 20, live=lambda: live[0])
    policy.baseline = 100 << 20
    collected: list[int] = []
    monkeypatch.setattr(policy, "collect", lambda: collected.append(1) or 50_000)
    # Warm-up: memory x2.5 while the transactions went from 0 to 20,000.
    resident[0], live[0] = 250 << 20, 20_000
    assert not policy.check() and collected == [] and policy.skipped == 1
    assert policy.baseline == 250 << 20 and policy.baseline_live == 20_000
    # Steady load, then a leak: memory doubles from the new anchor, the live state flat.
    resident[0], live[0] = 520 << 20, 21_000
    assert policy.check() and collected == [1]
    # Live state grown by less than half of memory's growth: collected too.
    policy.baseline, policy.baseline_live = 100 << 20, 10_000
    resident[0], live[0] = 300 << 20, 15_000  # memory x3, live x1.5 (needs x2 to skip)
    assert policy.check() and collected == [1, 1]


def test_collect_counts_what_cycles_it_freed() -> None:
    from collections import Counter

    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    garbage: Counter[str] = Counter()
    freed = FullCollections().collect(garbage)
    assert freed >= 2
    assert garbage[f"{__name__}.test_collect_counts_what_cycles_it_freed.<locals>.Node"] == 2
    assert not gc.garbage and gc.get_debug() == 0


def test_trim_gives_freed_heap_pages_back() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "malloc_trim"):
        pytest.fail("glibc's malloc_trim is missing: the trim would do nothing here")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    # Many small blocks (below the mmap threshold, so they live in the heap), one in eight
    # kept: the runs freed between them are holes glibc keeps resident until trimmed.
    blocks = [libc.malloc(4000) for _ in range(20_000)]
    for b in blocks:
        ctypes.memset(b, 1, 4000)  # touch: make the pages resident
    kept = blocks[7::8]
    for i, b in enumerate(blocks):
        if i % 8 != 7:
            libc.free(b)
    try:
        before = resident_bytes()
        collections = FullCollections()
        released = collections.trim()
        assert collections.trims == 1
        assert released >= 20 * 2**20, f"only {released} bytes released"
        assert resident_bytes() <= before - 20 * 2**20
        assert collections.snapshot()["last_trim_released_bytes"] == released
    finally:
        for b in kept:
            libc.free(b)
