"""Which other nodes are dead, from what their life locks show: a decision with the time
passed in, so it is tested with a fake clock (tests/unit/test_cluster_takeover.py).

A node holds its life lock while it lives (``Database.try_hold``); the database frees it
when the node's process or machine is gone. A lock found free is not yet a death: a
database restart frees every lock at once, and each live node takes its own back within
a second or two. So a node counts as dead once its lock was found free for ``GRACE``
seconds in a row; it is taken over once, and again only after it was seen alive.
"""

from __future__ import annotations

GRACE = 3.0


class DeadNodes:
    def __init__(self, me: str, grace: float = GRACE) -> None:
        self.me = me
        self.grace = grace
        self._free_since: dict[str, float] = {}
        self._taken: set[str] = set()

    def observe(self, node: str, lock_free: bool, now: float) -> bool:
        """One look at ``node``'s life lock; True when its jobs are to be taken over now."""
        if node == self.me:
            return False
        if not lock_free:
            self._free_since.pop(node, None)
            self._taken.discard(node)  # alive (again): a later death is taken over too
            return False
        if node in self._taken:
            return False
        since = self._free_since.setdefault(node, now)
        return now - since >= self.grace

    def is_taken(self, node: str) -> bool:
        return node in self._taken

    def taken_over(self, node: str) -> None:
        self._taken.add(node)
        self._free_since.pop(node, None)

    def forget(self, node: str) -> None:
        """A node no longer listed."""
        self._free_since.pop(node, None)
        self._taken.discard(node)

    @property
    def suspected(self) -> dict[str, float]:
        """Nodes whose lock is free, and since when (for /cluster)."""
        return dict(self._free_since)
