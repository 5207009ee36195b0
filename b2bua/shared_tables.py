"""Tables in shared memory that the signalling workers all map (b2bua/_tally.c): a memfd
made by worker 0 and inherited by the others, or private memory with one worker."""

from __future__ import annotations

import mmap
import os

from b2bua._tally import Tally


def table_size(workers: int, slots: int) -> int:
    return slots * 8 * (1 + workers)


def shared_memory(size: int) -> int:
    """A memfd for a table, to map in every worker (its descriptor is inherited)."""
    fd = os.memfd_create("softswitch-shared", 0)  # not CLOEXEC: passed to the workers
    os.ftruncate(fd, size)
    return fd


def map_table(fd: int | None, workers: int, worker: int, slots: int,
              evicting: bool = False) -> Tally:
    """A table over a memfd (``None``: private memory, one worker). Pages are touched
    only where keys land."""
    memory = mmap.mmap(-1 if fd is None else fd, table_size(workers, slots))
    return Tally(memory, workers, worker, evicting)  # holds the mapping
