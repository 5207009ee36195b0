"""Gateway quality: what each call tells of its gateways, cells that add up exactly, the
PDD histogram's quantiles, and the roll-up of CDRs into stored minutes, hours and days
(each CDR counted once, whatever restarts)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.calls.cdr import CdrRecord, CdrWriter
from b2bua.stats.quality import (
    MAPPING,
    PDD_EDGES_MS,
    PROMETHEUS_PDD_BUCKETS,
    ROUTING,
    Cell,
    observations,
    pdd_bucket,
    period_cells,
)
from b2bua.stats.rollup import StatsRollup, roll_up
from b2bua.stats.tally import GatewayTally, merge_snapshots
from b2bua.storage import gateway_stats, migrate, open_database
from b2bua.storage.backend import Database
from b2bua.storage.writer import DbWriter

T0 = 1_700_000_020.0  # 40 s into a minute, 820 s into an hour


def _attempt(seq: int, gw: int | None, start: float, *, provisional: float | None = None,
             code: int | None = None, outcome: str = "failed",
             duration: float = 0.0) -> dict[str, Any]:
    return {"seq": seq, "routing_gateway_id": gw, "routing_gateway": f"v{gw}",
            "call_id": f"b{seq}", "start_at": start, "first_provisional_at": provisional,
            "first_provisional": 180 if provisional is not None else None,
            "final_code": code, "outcome": outcome, "duration": duration, "target": None}


def _call(start: float, *, ringing: float | None = None, answer: float | None = None,
          duration: float = 0.0, code: int = 200, mapping: int | None = 1) -> dict[str, Any]:
    return {"mapping_gateway_id": mapping, "mapping_gateway": "cust", "start_at": start,
            "ringing_at": ringing, "answer_at": answer, "duration": duration,
            "final_code": code}


def test_a_failed_over_call_counts_once_for_its_customer_and_once_per_vendor_tried() -> None:
    call = _call(T0, ringing=T0 + 2.5, answer=T0 + 6, duration=30.0)
    attempts = [_attempt(1, 7, T0 + 0.01, code=503),
                _attempt(2, 8, T0 + 0.3, provisional=T0 + 2.5, code=200, outcome="answered",
                         duration=5.7)]
    seen = list(observations(call, attempts))
    assert [(o.kind, o.gateway_id, o.answered, o.failure, o.ner) for o in seen] == [
        (MAPPING, 1, True, None, True), (ROUTING, 7, False, "503", False),
        (ROUTING, 8, True, None, True)]
    assert seen[0].pdd == pytest.approx(2.5) and seen[0].talk == 30.0
    assert seen[1].pdd is None  # a failure without ringing has no PDD
    assert seen[2].pdd == pytest.approx(2.2) and seen[2].talk == 30.0


def test_the_pdd_of_an_answer_without_ringing_is_the_time_to_the_answer() -> None:
    call = _call(T0, answer=T0 + 1.2, duration=3)
    attempts = [_attempt(1, 7, T0, code=200, outcome="answered", duration=1.2)]
    assert [o.pdd for o in observations(call, attempts)] == [pytest.approx(1.2)] * 2


@pytest.mark.parametrize(("code", "outcome", "ner"), [
    (486, "failed", True), (600, "failed", True), (480, "failed", True),
    (603, "failed", True), (404, "failed", True), (487, "failed", True),
    (503, "failed", False), (408, "failed", False), (500, "failed", False),
    (None, "invite_timeout", False), (None, "dns_failure", False),
    (None, "ringing_timeout", True), (None, "cancelled", True)])
def test_ner_counts_the_called_users_failures_not_the_networks(
        code: int | None, outcome: str, ner: bool) -> None:
    (_, vendor) = observations(_call(T0, code=code or 408),
                               [_attempt(1, 7, T0, code=code, outcome=outcome)])
    assert vendor.ner is ner
    assert vendor.failure == (str(code) if code is not None else outcome)


def test_a_phone_attempt_counts_for_no_vendor_and_a_phone_call_for_no_customer() -> None:
    call = _call(T0, mapping=None, answer=T0 + 1, duration=2)
    assert list(observations(call, [_attempt(1, None, T0, code=200, outcome="answered")])) == []


def test_pdd_buckets_round_up_to_their_edge() -> None:
    assert pdd_bucket(0) == 10
    assert pdd_bucket(0.3) == 300
    assert pdd_bucket(0.3004) == 310
    assert pdd_bucket(1.05) == 1100
    assert pdd_bucket(12.2) == 13000
    assert pdd_bucket(500) == 120000  # past the last edge: counted in it
    assert all(round(b * 1000) in PDD_EDGES_MS for b in PROMETHEUS_PDD_BUCKETS)


def test_quantiles_are_the_nearest_rank_bucket_edges() -> None:
    cell = Cell()
    for pdd in (0.1, 0.2, 0.3, 0.4, 2.0):
        cell.add(next(observations(_call(T0, ringing=T0 + pdd, code=486), [])))
    figures = cell.figures()
    assert figures["pdd_median"] == 0.3 and figures["pdd_p95"] == 2.0
    assert figures["pdd_count"] == 5 and figures["pdd_mean"] == pytest.approx(0.6)
    assert figures["asr"] == 0.0 and figures["acd"] is None and figures["ner"] == 1.0
    assert figures["failures"] == {"486": 5}
    assert cell.pdd_cumulative((0.25, 0.5, 3.0)) == [2, 4, 5]
    assert Cell().figures()["pdd_median"] is None


_obs = st.builds(
    lambda pdd, answered, talk, code: _call(
        T0, ringing=None if pdd is None else T0 + pdd,
        answer=T0 + 9 if answered else None, duration=talk if answered else 0,
        code=200 if answered else code),
    st.none() | st.floats(0, 200), st.booleans(), st.floats(0, 3600),
    st.sampled_from([404, 486, 503, 408]))


@given(st.lists(_obs, max_size=30), st.integers(0, 30))
def test_cells_add_up_whatever_the_split(calls: list[dict[str, Any]], cut: int) -> None:
    whole, first, second = Cell(), Cell(), Cell()
    for i, call in enumerate(calls):
        for seen in observations(call, []):
            whole.add(seen)
            (first if i < cut else second).add(seen)
    first.merge(Cell.from_json(second.to_json()))
    assert first.figures() == whole.figures()


def test_period_cells_put_each_call_in_its_minute_hour_and_day() -> None:
    cells = period_cells([(_call(T0, answer=T0 + 1, duration=10), []),
                          (_call(T0 + 30, code=503), [])])
    minute = int(T0 // 60 * 60)
    assert cells[(MAPPING, 1, 60, minute)].attempts == 1  # T0 is 40 s into its minute
    assert cells[(MAPPING, 1, 60, minute + 60)].attempts == 1
    assert cells[(MAPPING, 1, 3600, int(T0 // 3600 * 3600))].attempts == 2
    assert cells[(MAPPING, 1, 86400, int(T0 // 86400 * 86400))].answered == 1


def test_the_live_tally_sums_across_workers() -> None:
    one, two = GatewayTally(), GatewayTally()
    one.add(_call(T0, answer=T0 + 1, duration=10), [
        _attempt(1, 7, T0, code=200, outcome="answered", duration=1)])
    two.add(_call(T0, code=486), [_attempt(1, 7, T0, code=486)])
    merged = {(g["kind"], g["id"]): g for g in merge_snapshots([one.snapshot(),
                                                                two.snapshot()])}
    vendor = Cell.from_json(merged[(ROUTING, 7)])
    assert (vendor.attempts, vendor.answered, vendor.ner) == (2, 1, 2)
    assert merged[(ROUTING, 7)]["name"] == "v7"
    assert Cell.from_json(merged[(MAPPING, 1)]).failures == {"486": 1}


# -- the roll-up, on each backend ------------------------------------------------------------



@pytest.fixture
def database(db_target: str) -> Iterator[Database]:
    with open_database(db_target) as opened:
        migrate.migrate(opened)
        yield opened


def _record(n: int, start: float, answered: bool, **extra: Any) -> CdrRecord:
    return CdrRecord(
        call_id_in=f"c{n}", call_id_out=None, caller="1", callee="2", source="x",
        mapping_gateway_id=1, mapping_gateway="cust", routing_gateway_id=7,
        routing_gateway="v7", start_at=start, ringing_at=start + 0.5,
        answer_at=start + 1 if answered else None, end_at=start + 20,
        duration=19.0 if answered else 0.0, final_code=200 if answered else 486,
        final_reason="", hangup_by="caller", termination_reason="", cdr_uuid=f"u{n}",
        **extra)


@pytest.mark.both_backends
def test_the_roll_up_counts_every_cdr_once(database: Database, db_target: str,
                                           tmp_path: Path) -> None:
    writer = DbWriter(db_target, spill_to=tmp_path / "spill")
    writer.start()
    try:
        cdrs = CdrWriter(writer)
        for n in range(6):
            start = T0 + 10 * n
            cdrs.submit(_record(n, start, answered=n % 2 == 0), [_attempt(
                1, 7, start + 0.01, provisional=start + 0.5, code=200 if n % 2 == 0 else 486,
                outcome="answered" if n % 2 == 0 else "failed", duration=0.99)])
        assert writer.flush()
        keep = {60: 7 * 86400.0, 3600: 90 * 86400.0, 86400: 730 * 86400.0}
        assert roll_up(database, T0, keep) == 6
        assert roll_up(database, T0, keep) == 0  # nothing twice
        cdrs.submit(_record(6, T0 + 100, answered=True), [])
        assert writer.flush()
        assert roll_up(database, T0, keep) == 1
    finally:
        writer.close()
    hour = int(T0 // 3600 * 3600)
    stored = dict(gateway_stats.cells(database, 3600, hour, hour + 3600, None, None))
    customer = stored[(MAPPING, 1, 3600, hour)].figures()
    assert (customer["attempts"], customer["answered"], customer["asr"]) == (7, 4, 0.5714)
    assert customer["acd"] == 19.0 and customer["pdd_median"] == 0.5
    assert customer["failures"] == {"486": 3}
    vendor = stored[(ROUTING, 7, 3600, hour)].figures()
    assert (vendor["attempts"], vendor["answered"], vendor["ner"]) == (6, 3, 1.0)
    assert vendor["pdd_median"] == 0.49 and vendor["acd"] == 19.0
    minutes = gateway_stats.cells(database, 60, hour, hour + 3600, MAPPING, 1)
    assert sum(cell.attempts for _key, cell in minutes) == 7 and len(minutes) == 3
    # Past their keeping time, the minutes go; the hour stays.
    roll_up(database, T0 + 8 * 86400, keep)
    assert gateway_stats.cells(database, 60, hour, hour + 3600, None, None) == []
    assert len(gateway_stats.cells(database, 3600, hour, hour + 3600, None, None)) == 2


def test_the_roll_up_runs_in_a_process_of_its_own_and_survives_its_death(
        database: Database, db_target: str, tmp_path: Path) -> None:
    """Started as the engine starts it: runs every interval in a child process, counts
    what the CDRs say; a killed child is a counted error, and the next run a new child."""
    writer = DbWriter(db_target, spill_to=tmp_path / "spill")
    writer.start()
    CdrWriter(writer).submit(_record(1, T0, answered=True), [])
    assert writer.flush()
    writer.close()
    params = {"SS_GATEWAY_STATS_INTERVAL": 1, "SS_GATEWAY_STATS_MINUTE_DAYS": 7,
              "SS_GATEWAY_STATS_HOUR_DAYS": 90, "SS_GATEWAY_STATS_DAY_DAYS": 3660}
    rollup = StatsRollup(db_target, params.__getitem__)

    async def scenario() -> None:
        rollup.start()
        while rollup.state.runs < 1:
            await asyncio.sleep(0.05)
        assert rollup.state.calls == 1 and rollup.snapshot()["running"]
        pool = rollup._pool
        assert pool is not None
        for process in list(pool._processes.values()):
            assert process.pid != os.getpid()
            os.kill(process.pid, signal.SIGKILL)
        while rollup.state.errors < 1:
            await asyncio.sleep(0.05)
        while rollup.state.runs < 2:
            await asyncio.sleep(0.05)
        await rollup.close()
        assert not rollup.snapshot()["running"]

    asyncio.run(asyncio.wait_for(scenario(), 20))
    # Counted once; its minute and hour, three years old, already pruned; its day kept.
    day = int(T0 // 86400 * 86400)
    assert [cell.attempts for _key, cell in
            gateway_stats.cells(database, 86400, day, day + 86400, MAPPING, None)] == [1]
    assert gateway_stats.cells(database, 3600, day, day + 86400, None, None) == []
