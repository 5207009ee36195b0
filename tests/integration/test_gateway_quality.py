"""Gateway quality from real calls: sipp callers and vendors with known delays, the
figures read back from GET /api/v1/stats/gateways and the Prometheus metrics, equal to
what the calls' own CDRs give, and kept across a restart."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from sippctl import VENDOR_IP
from support import Softswitch, free_port, wait_until
from test_basic_calls import cdrs, configure, run_pair

from b2bua.stats.quality import pdd_bucket


@pytest.fixture
def vendor_port() -> int:
    return free_port(VENDOR_IP)


def parse_metrics(text: str) -> dict[str, float]:
    """Each sample line's value by its name and labels, as written."""
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line and not line.startswith("#")}


def _quantile(delays: list[float], q: float) -> float:
    """The documented rule: nearest rank, reported as its bucket's upper edge."""
    ordered = sorted(pdd_bucket(d) for d in delays)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1] / 1000


def _totals(switch: Softswitch, kind: str, step: int = 60) -> dict[str, Any]:
    reply = switch.api.get(f"/api/v1/stats/gateways?kind={kind}&step={step}")
    (total,) = reply["totals"]
    summary: dict[str, Any] = total["summary"]
    return summary


def test_asr_acd_pdd_and_ner_of_known_calls(tmp_path: Path, softswitch: Softswitch,
                                            vendor_port: int) -> None:
    mgw, rgw = configure(softswitch, vendor_port)
    softswitch.api.put("/api/v1/parameters/SS_GATEWAY_STATS_INTERVAL", {"value": 1})
    # Three calls ring after 300 ms and are answered (1 s talk), two ring after 600 ms
    # and are busy.
    run_pair(tmp_path, softswitch, "uac_call.xml", "uas_ring_pause_answer.xml",
             uac_hold=1000, uas_hold=300, calls=3, vendor_port=vendor_port)
    run_pair(tmp_path, softswitch, "uac_ring_busy.xml", "uas_ring_pause_busy.xml",
             uas_hold=600, calls=2, vendor_port=vendor_port)
    records = cdrs(softswitch, 5)
    assert wait_until(lambda: _totals(softswitch, "routing")["attempts"] == 5, timeout=10)

    answered = [c for c in records if c["final_code"] == 200]
    customer = _totals(softswitch, "mapping")
    assert (customer["attempts"], customer["answered"], customer["asr"]) == (5, 3, 0.6)
    assert customer["ner"] == 1.0 and customer["failures"] == {"486": 2}
    assert customer["acd"] == round(sum(c["duration"] for c in answered) / 3, 3)
    assert 0.9 <= customer["acd"] <= 1.5
    ringing = [c["ringing_at"] - c["start_at"] for c in records]
    assert customer["pdd_median"] == _quantile(ringing, 0.5)
    assert customer["pdd_p95"] == _quantile(ringing, 0.95)
    assert 0.3 <= customer["pdd_median"] < 0.45 and 0.6 <= customer["pdd_p95"] < 0.75

    attempts = [a for c in records
                for a in softswitch.api.get(f"/api/v1/cdrs/{c['id']}")["attempts"]]
    vendor = _totals(softswitch, "routing")
    assert (vendor["attempts"], vendor["answered"], vendor["asr"]) == (5, 3, 0.6)
    assert vendor["failures"] == {"486": 2} and vendor["acd"] == customer["acd"]
    to_ring = [a["first_provisional_at"] - a["start_at"] for a in attempts]
    assert vendor["pdd_median"] == _quantile(to_ring, 0.5)
    assert vendor["pdd_mean"] == round(statistics.fmean(to_ring), 3)

    series = softswitch.api.get(f"/api/v1/stats/gateways?kind=routing&id={rgw['id']}"
                                "&step=3600")
    (one,) = series["series"]
    assert one["name"] == "vendor" and one["summary"]["attempts"] == 5
    assert series["source_step"] == 3600 and sum(p["attempts"] for p in one["points"]) == 5

    metrics = parse_metrics(softswitch.api.get("/api/v1/metrics"))
    labels = f'{{gateway="vendor",gateway_id="{rgw["id"]}",kind="routing"}}'
    assert metrics[f"softswitch_gateway_attempts_total{labels}"] == 5
    assert metrics[f"softswitch_gateway_answered_total{labels}"] == 3
    assert metrics[f"softswitch_gateway_pdd_seconds_count{labels}"] == 5
    le = labels[:-1] + ',le="0.5"}'
    assert metrics[f"softswitch_gateway_pdd_seconds_bucket{le}"] == 3
    customer_labels = f'{{code="486",gateway="customer",gateway_id="{mgw["id"]}",' \
                      'kind="mapping"}'
    assert metrics[f"softswitch_gateway_failures_total{customer_labels}"] == 2

    # Stored: the same after a restart, and nothing counted twice.
    assert softswitch.stop() == 0
    softswitch.start()
    softswitch.api.put("/api/v1/parameters/SS_GATEWAY_STATS_INTERVAL", {"value": 1})
    assert _totals(softswitch, "mapping") == customer
    run_pair(tmp_path, softswitch, "uac_ring_busy.xml", "uas_ring_pause_busy.xml",
             uas_hold=600, calls=1, vendor_port=vendor_port)
    assert wait_until(lambda: _totals(softswitch, "mapping")["attempts"] == 6, timeout=10)
    assert _totals(softswitch, "mapping", step=86400)["failures"] == {"486": 3}


def test_the_series_refuses_what_it_cannot_answer(softswitch: Softswitch) -> None:
    for query, field in (("kind=vendor", "kind"), ("id=3", "kind"), ("step=90", "step"),
                         ("step=60&from=0&to=1000000", "step"), ("from=10&to=5", "from"),
                         ("gateway=3", "gateway")):
        status, body, _ = softswitch.api.call("GET", f"/api/v1/stats/gateways?{query}")
        assert status == 422 and field in body["errors"], (query, body)
