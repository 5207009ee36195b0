"""Bounded security state: LRU map, suspensions per terminal, log throttle, flood bounds."""

from __future__ import annotations

import os
import time

import pytest

from b2bua.security.state import (
    FAILURE_LIMIT,
    LOG_LIMIT,
    SESSION_LIMIT,
    SUSPENSION_LIMIT,
    AuthSession,
    BoundedMap,
    LogThrottle,
    SecurityCounters,
    SharedBoard,
    Suspension,
    SuspensionTable,
)
from b2bua.shared_tables import map_table, shared_memory, table_size

T0 = 1_700_000_000.0
AUTH = "authentication"
REG = "registration"

# -- BoundedMap ----------------------------------------------------------------------------


def test_bounded_map_evicts_least_recent_first() -> None:
    m: BoundedMap[str, int] = BoundedMap(3)
    m.put("a", 1)
    m.put("b", 2)
    m.put("c", 3)
    assert len(m) == 3 and m.evictions == 0
    m.put("d", 4)
    assert "a" not in m
    assert [k for k, _v in m.items()] == ["b", "c", "d"]
    assert m.evictions == 1
    m.put("e", 5)
    m.put("f", 6)
    assert [k for k, _v in m.items()] == ["d", "e", "f"]
    assert m.evictions == 3
    assert len(m) == 3


def test_bounded_map_get_refreshes_recency() -> None:
    m: BoundedMap[str, int] = BoundedMap(3)
    for i, key in enumerate("abc"):
        m.put(key, i)
    assert m.get("a") == 0
    m.put("d", 3)  # "b" is now the least recent
    assert "a" in m and "b" not in m
    assert [k for k, _v in m.items()] == ["c", "a", "d"]


def test_bounded_map_put_existing_refreshes_without_eviction() -> None:
    m: BoundedMap[str, int] = BoundedMap(3)
    for i, key in enumerate("abc"):
        m.put(key, i)
    m.put("a", 10)
    assert m.evictions == 0
    assert [k for k, _v in m.items()] == ["b", "c", "a"]
    assert m.get("a") == 10
    m.put("d", 4)
    assert "b" not in m


def test_bounded_map_missing_and_pop() -> None:
    m: BoundedMap[str, int] = BoundedMap(2)
    assert m.get("x") is None
    assert m.pop("x") is None
    m.put("x", 0)
    assert m.get("x") == 0  # a falsy value is still a value
    assert m.pop("x") == 0
    assert "x" not in m and len(m) == 0
    assert m.evictions == 0


def test_bounded_map_contains_does_not_refresh() -> None:
    m: BoundedMap[str, int] = BoundedMap(2)
    m.put("a", 1)
    m.put("b", 2)
    assert "a" in m
    m.put("c", 3)
    assert "a" not in m


# -- SuspensionTable -----------------------------------------------------------------------

TERM = ("acme", "198.51.100.7")


def test_failures_up_to_max_do_not_suspend_next_does() -> None:
    table = SuspensionTable()
    for _ in range(3):
        assert table.fail(AUTH, TERM, 3, 180, T0) is None
        assert table.check(TERM, T0) is None
    suspension = table.fail(AUTH, TERM, 3, 180, T0 + 1)
    assert suspension == Suspension("acme", "198.51.100.7", AUTH, T0 + 1, T0 + 181, 4)
    assert table.created == 1
    # The failure count is consumed by the suspension.
    assert len(table.failures) == 0


def test_max_zero_suspends_on_first_failure() -> None:
    table = SuspensionTable()
    suspension = table.fail(AUTH, TERM, 0, 60, T0)
    assert suspension is not None and suspension.failures == 1


def test_check_before_and_after_until() -> None:
    table = SuspensionTable()
    for _ in range(2):
        table.fail(AUTH, TERM, 1, 180, T0)
    suspension = table.check(TERM, T0 + 1)
    assert suspension is not None and suspension.until == T0 + 180
    assert table.check(TERM, T0 + 179.9) == suspension
    assert table.check(TERM, T0 + 180) is None  # until is exclusive
    assert len(table.suspended) == 0  # expired entry removed
    assert table.check(TERM, T0 + 1) is None


def test_counting_restarts_after_expiry() -> None:
    table = SuspensionTable()
    table.fail(AUTH, TERM, 0, 60, T0)
    assert table.check(TERM, T0 + 61) is None
    # max 1: one more failure is tolerated, the second suspends again.
    assert table.fail(AUTH, TERM, 1, 60, T0 + 62) is None
    assert table.fail(AUTH, TERM, 1, 60, T0 + 63) is not None


def test_succeed_resets_count() -> None:
    table = SuspensionTable()
    for _ in range(3):
        table.fail(AUTH, TERM, 3, 180, T0)
    table.succeed(AUTH, TERM)
    for _ in range(3):
        assert table.fail(AUTH, TERM, 3, 180, T0) is None
    assert table.fail(AUTH, TERM, 3, 180, T0) is not None
    table.succeed(AUTH, ("nobody", "192.0.2.1"))  # unknown terminal: no error


def test_suspend_for_zero_never_suspends() -> None:
    table = SuspensionTable()
    for _ in range(50):
        assert table.fail(REG, TERM, 3, 0, T0) is None
    assert table.check(TERM, T0) is None
    assert table.created == 0
    assert table.active(T0) == []


def test_lift_by_username_all_sources() -> None:
    table = SuspensionTable()
    table.fail(AUTH, ("acme", "192.0.2.1"), 0, 180, T0)
    table.fail(AUTH, ("acme", "192.0.2.2"), 0, 180, T0)
    table.fail(AUTH, ("other", "192.0.2.1"), 0, 180, T0)
    assert table.lift("acme") == 2
    assert table.check(("acme", "192.0.2.1"), T0) is None
    assert table.check(("acme", "192.0.2.2"), T0) is None
    assert table.check(("other", "192.0.2.1"), T0) is not None
    assert table.lift("acme") == 0


def test_lift_by_username_and_ip() -> None:
    table = SuspensionTable()
    table.fail(AUTH, ("acme", "192.0.2.1"), 0, 180, T0)
    table.fail(AUTH, ("acme", "192.0.2.2"), 0, 180, T0)
    assert table.lift("acme", "192.0.2.1") == 1
    assert table.check(("acme", "192.0.2.1"), T0) is None
    assert table.check(("acme", "192.0.2.2"), T0) is not None
    assert table.lift("acme", "192.0.2.9") == 0


def test_active_lists_unexpired_only() -> None:
    table = SuspensionTable()
    table.fail(AUTH, ("a", "192.0.2.1"), 0, 60, T0)
    table.fail(AUTH, ("b", "192.0.2.1"), 0, 300, T0)
    assert {s.terminal for s in table.active(T0 + 1)} == {"a", "b"}
    assert [s.terminal for s in table.active(T0 + 100)] == ["b"]
    assert table.active(T0 + 300) == []


def test_keyed_per_source_ip() -> None:
    table = SuspensionTable()
    guesser = ("acme", "203.0.113.66")
    device = ("acme", "198.51.100.7")
    for _ in range(3):
        table.fail(AUTH, guesser, 2, 180, T0)
    assert table.check(guesser, T0) is not None
    assert table.check(device, T0) is None
    # The device's own count is untouched by the guesser's failures.
    assert table.fail(AUTH, device, 2, 180, T0) is None
    assert table.fail(AUTH, device, 2, 180, T0) is None


def test_kinds_counted_separately() -> None:
    table = SuspensionTable()
    for _ in range(2):
        assert table.fail(AUTH, TERM, 2, 180, T0) is None
        assert table.fail(REG, TERM, 2, 180, T0) is None
    assert len(table.failures) == 2
    suspension = table.fail(REG, TERM, 2, 60, T0)
    assert suspension is not None and suspension.kind == REG and suspension.until == T0 + 60
    # Success of one kind does not reset the other.
    table2 = SuspensionTable()
    table2.fail(AUTH, TERM, 2, 180, T0)
    table2.fail(AUTH, TERM, 2, 180, T0)
    table2.succeed(REG, TERM)
    assert table2.fail(AUTH, TERM, 2, 180, T0) is not None


def test_a_suspension_is_told_once() -> None:
    table = SuspensionTable()
    entry = table.fail(AUTH, TERM, 0, 60, T0)
    assert entry is not None
    assert table.tell_once(entry) is True
    assert [table.tell_once(entry) for _ in range(5)] == [False] * 5
    assert table.tell_once(Suspension("acme", "192.0.2.99", AUTH, T0, T0 + 60, 1)) is True
    # The next suspension of the same terminal is told again, once.
    later = table.fail(AUTH, TERM, 0, 60, T0 + 61)
    assert later is not None
    assert [table.tell_once(later) for _ in range(3)] == [True, False, False]


def test_a_suspension_is_told_once_across_workers() -> None:
    first, second = _shared_pair()
    entry = first.fail(AUTH, TERM, 0, 60, T0)
    assert entry is not None
    seen = second.check(TERM, T0 + 1)  # its end read back in whole milliseconds
    assert seen is not None
    assert first.tell_once(entry) is True
    assert second.tell_once(seen) is False and first.tell_once(entry) is False


# -- LogThrottle ---------------------------------------------------------------------------


def test_log_throttle_once_per_source_per_interval() -> None:
    throttle = LogThrottle()
    assert throttle.allow("192.0.2.1", 60, T0)
    assert not throttle.allow("192.0.2.1", 60, T0 + 1)
    assert not throttle.allow("192.0.2.1", 60, T0 + 59.9)
    assert throttle.allow("192.0.2.2", 60, T0 + 2)  # another source
    assert throttle.allow("192.0.2.1", 60, T0 + 60)
    assert not throttle.allow("192.0.2.1", 60, T0 + 61)
    assert throttle.suppressed == 3


def test_log_throttle_suppressed_not_extending_window() -> None:
    throttle = LogThrottle()
    assert throttle.allow("s", 10, T0)
    for i in range(1, 10):
        assert not throttle.allow("s", 10, T0 + i)
    # Suppressed calls do not push the window: at T0 + 10 a line is allowed again.
    assert throttle.allow("s", 10, T0 + 10)
    assert throttle.suppressed == 9


# -- counters and sessions -----------------------------------------------------------------


def test_counters_snapshot() -> None:
    counters = SecurityCounters.new()
    counters.dropped["unknown_source"] += 2
    counters.challenged["gateway"] += 1
    assert counters.snapshot() == {
        "dropped": {"unknown_source": 2},
        "rejected": {},
        "challenged": {"gateway": 1},
        "authenticated": {},
        "suspended": {},
    }


def test_auth_session_defaults() -> None:
    session = AuthSession(started=T0)
    assert session.challenges == 0


# -- flood ---------------------------------------------------------------------------------

FLOOD = 200_000


def _ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def test_limits_are_positive_and_sane() -> None:
    for limit in (SESSION_LIMIT, FAILURE_LIMIT, SUSPENSION_LIMIT, LOG_LIMIT):
        assert 1_000 <= limit <= 1_000_000


def test_flood_of_distinct_terminals_stays_bounded() -> None:
    table = SuspensionTable()
    throttle = LogThrottle()
    for i in range(FLOOD):
        terminal = (f"user{i}", _ip(i))
        # Half of them fail once (kept counts), half are suspended at once.
        table.fail(AUTH, terminal, 1 if i % 2 else 0, 180, T0)
        throttle.allow(terminal[1], 60, T0)
        assert len(table.failures) <= FAILURE_LIMIT
    assert len(table.failures) == FAILURE_LIMIT
    assert len(table.suspended) == SUSPENSION_LIMIT
    assert table.failures.evictions == FLOOD // 2 - FAILURE_LIMIT
    assert table.suspended.evictions == FLOOD // 2 - SUSPENSION_LIMIT
    assert len(throttle._last) == LOG_LIMIT
    assert len(table.active(T0)) == SUSPENSION_LIMIT
    # The most recent ones survive, the oldest were forgotten.
    assert table.check((f"user{FLOOD - 2}", _ip(FLOOD - 2)), T0) is not None
    assert table.check(("user0", _ip(0)), T0) is None
    assert table.created == FLOOD // 2


@pytest.mark.parametrize("kind", [AUTH, REG])
def test_flood_against_one_account_from_many_sources(kind: str) -> None:
    table = SuspensionTable()
    for i in range(FLOOD):
        table.fail(kind, ("acme", _ip(i)), 6, 180, T0)
    assert len(table.failures) == FAILURE_LIMIT
    assert len(table.suspended) == 0
    # Lifting walks a bounded table.
    assert table.lift("acme") == 0


def _shared_pair() -> tuple[SuspensionTable, SuspensionTable]:
    fd = shared_memory(table_size(2, 64))
    try:
        tables = []
        for worker in (0, 1):
            table = SuspensionTable(SharedBoard(map_table(fd, 2, worker, 64, evicting=True)))
            tables.append(table)
    finally:
        os.close(fd)  # the mappings stay
    return tables[0], tables[1]


def test_workers_count_failures_together_and_see_each_others_suspensions() -> None:
    first, second = _shared_pair()
    terminal = ("gw1", "198.18.0.9")
    assert first.fail(AUTH, terminal, 2, 60, T0) is None
    assert second.fail(AUTH, terminal, 2, 60, T0) is None
    entry = first.fail(AUTH, terminal, 2, 60, T0)
    assert entry is not None and entry.failures == 3
    seen = second.check(terminal, T0 + 1)
    assert seen is not None and seen.until == pytest.approx(T0 + 60, abs=0.001)
    assert second.active(T0 + 1) == []  # listed by the worker that decided it
    assert second.lift("gw1") == 0 and second.check(terminal, T0 + 1) is not None
    assert first.lift("gw1") == 1
    assert second.check(terminal, T0 + 1) is None and first.check(terminal, T0 + 1) is None
    # A success on one worker resets the count the other was adding to.
    assert first.fail(AUTH, terminal, 2, 60, T0) is None
    second.succeed(AUTH, terminal)
    assert first.fail(AUTH, terminal, 2, 60, T0) is None
    assert first.fail(AUTH, terminal, 2, 60, T0) is None
    assert second.check(("gw1", "198.18.0.10"), T0) is None  # per source IP


def test_a_flood_of_terminals_stays_in_the_shared_table() -> None:
    first, second = _shared_pair()
    for i in range(5000):  # far more terminals than the 64 slots
        first.fail(AUTH, (f"user{i}", "198.18.0.9"), 5, 60, T0)
    assert isinstance(first.board, SharedBoard) and first.board.table.used() == (64, 64)
    # New guesses still count, on both workers.
    terminal = ("victim", "198.18.0.9")
    assert first.fail(AUTH, terminal, 2, 60, T0) is None
    assert second.fail(AUTH, terminal, 2, 60, T0) is None
    assert first.fail(AUTH, terminal, 2, 60, T0) is not None
    assert second.check(terminal, T0) is not None


def test_a_suspension_whose_worker_restarted_can_still_be_lifted() -> None:
    first, second = _shared_pair()
    terminal = ("gw1", "198.18.0.9")
    now = time.time()
    for _ in range(3):
        first.fail(AUTH, terminal, 2, 60, now)
    first.suspended.pop(terminal)  # what a restart of the deciding worker loses
    assert second.check(terminal, now) is not None
    assert second.lift("gw1") == 0  # without the source: nothing to find it by
    assert second.lift("gw1", "198.18.0.1") == 0
    assert second.lift("gw1", "198.18.0.9") == 1
    assert first.check(terminal, now) is None and second.check(terminal, now) is None
