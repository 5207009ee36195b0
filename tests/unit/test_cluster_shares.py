"""The shared counters' rules (b2bua/cluster/shares.py) that need no Redis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.cluster import shares
from b2bua.options import with_redis_password


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


# -- the password kept out of the command line -----------------------------------------------


def test_a_redis_password_from_a_file_goes_into_the_url() -> None:
    assert with_redis_password("redis://10.0.0.5:6379/0", "s3cr3t") == \
        "redis://:s3cr3t@10.0.0.5:6379/0"
    assert with_redis_password("rediss://ops@r.example/1", "p@ss:w/rd") == \
        "rediss://ops:p%40ss%3Aw%2Frd@r.example/1"


@pytest.mark.parametrize("url", ["redis://:already@10.0.0.5/0", "http://10.0.0.5/",
                                 "redis:///0", ""])
def test_a_redis_password_file_with_a_wrong_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):
        with_redis_password(url, "x")
