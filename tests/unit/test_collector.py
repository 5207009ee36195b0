"""The engine's memory housekeeping: the C heap trim (b2bua/collector.py)."""

from __future__ import annotations

import ctypes
import ctypes.util

import pytest

from b2bua.collector import FullCollections, resident_bytes


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
