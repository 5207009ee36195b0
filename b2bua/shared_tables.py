"""Tables in shared memory that the signalling workers all map (b2bua/_tally.c): a memfd
made by worker 0 and inherited by the others, or private memory with one worker."""

from __future__ import annotations

import hashlib
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


def text_key(*parts: str) -> int:
    """A table key for what a source sends (a terminal, a nonce): 64 bits of a hash,
    never 0 (the table's free mark)."""
    text = "\0".join(parts).encode("utf-8", "surrogateescape")
    digest = hashlib.blake2b(text, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True) or 1
