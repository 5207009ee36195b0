"""The shared counters' rules (b2bua/cluster/shares.py) that need no Redis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from b2bua.cluster import shares


@given(st.integers(0, 10_000), st.integers(0, 64))
def test_the_shares_never_add_up_to_more_than_the_capacity(capacity: int, live: int) -> None:
    each = shares.share(capacity, live)
    assert each * max(live, 1) <= capacity
    assert each >= capacity // max(live, 1)


def test_names() -> None:
    assert shares.share(40, 2) == 20 and shares.share(40, 3) == 13
    assert shares.share(40, 0) == 40  # nobody else known alive: the whole capacity
    assert shares.counter_key("gateway", 7) == "ss:count:gateway:7"
    assert shares.field("n1", 0) == "n1/0"
    assert shares.liveness_key("n2") == "ss:node:n2"
