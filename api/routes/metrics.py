"""Prometheus metrics in the text exposition format 0.0.4, from the engine's live state.

Every value here is a snapshot the engine already keeps (nothing to instrument in this
process): they are gathered into metric families and written out by
``prometheus_client``'s exposition, which owns the format (escaping, histograms, the
counter names). When the engine does not answer the scrape still succeeds, with
``softswitch_engine_up 0`` and nothing else, so an alert can tell "down" from
"unscraped".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

from api import context
from api.openapi import operation
from api.resources import raw_body
from b2bua import control
from b2bua.stats.quality import PROMETHEUS_PDD_BUCKETS, Cell

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "softswitch_"
ENGINE_TIMEOUT = 1.0

Labels = dict[str, str]

# Fields of the "stats" op with a metric of their own; the refusal fields become
# softswitch_calls_refused_total{reason=FIELD}.
_CALL_COUNTERS = {
    "attempts": ("call_attempts_total", "Calls received (INVITEs that started a call)"),
    "answered": ("calls_answered_total", "Calls that ended after being answered"),
    "failed": ("calls_failed_total", "Calls that ended without being answered"),
}
_CALL_GAUGES = {
    "active": ("calls_active", "Calls up now"),
    "legs": ("call_legs_active", "Outgoing call legs up now"),
}
# Malformed or unsupported requests: answered (known sources) or dropped, as
# softswitch_bad_requests_total{outcome=answered|dropped}.
_BAD_REQUESTS = {"bad_requests_answered": "answered", "bad_requests_dropped": "dropped"}
_REFUSAL_PREFIXES = ("rejected_", "dropped_", "refused_")
_REFUSALS = frozenset({"loops", "too_many_hops"})
_COUNTER_GROUPS = {"sip": "SIP stack events", "transport": "SIP transport events"}
_SECURITY_COUNTERS = ("dropped", "rejected", "challenged", "authenticated", "suspended")
_SECURITY_GAUGES = {
    "suspended_now": "Terminals suspended now",
    "auth_sessions": "Digest authentication sessions held",
    "failure_entries": "Sources with authentication failures being counted",
    "nonce_counts": "Digest nonces with a use count",
}
_SECURITY_TOTALS = {
    "auth_sessions_evicted": "Digest sessions evicted when the table was full",
    "log_lines_suppressed": "Security log lines suppressed by SS_SECURITY_LOG_INTERVAL",
}
_KEEPALIVE_TOTALS = {
    "cycles": "Keep-alive cycles started",
    "completed": "Keep-alive cycles that reached every NAT phone in time",
    "restarted": "Keep-alive cycles cut short by the next period",
    "sent": "Keep-alive messages sent",
    "missed_total": "NAT phones missed by unfinished cycles",
}
_KEEPALIVE_GAUGES = {
    "missed_last_cycle": ("keepalive_missed_last_cycle", "NAT phones missed by the last cycle"),
    "phones_last_cycle": ("keepalive_phones_last_cycle", "NAT phones in the last cycle"),
    "last_cycle_at": ("keepalive_last_cycle_timestamp_seconds",
                      "When the last cycle ended (Unix time)"),
    "last_cycle_seconds": ("keepalive_last_cycle_seconds", "How long the last cycle took"),
}


@dataclass
class Family:
    name: str
    kind: str  # counter, gauge, histogram or untyped
    help: str
    # (sample name, labels, value); a histogram's are its _bucket, _sum and _count
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)


_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram",
          "untyped": "unknown"}


class Exposition:
    """Metric families in first-use order; each family's samples stay together."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {}
        # A cluster node's name: every sample carries it as the ``node`` label, so the
        # nodes' series stay apart however they are scraped (docs/cluster.md).
        self.node: str | None = None

    def declare(self, name: str, kind: str, help_text: str) -> Family:
        """The family ``name``; a labelled family may stay without samples."""
        full = PREFIX + name
        return self.families.setdefault(full, Family(full, kind, help_text))

    def add(self, name: str, kind: str, help_text: str, value: Any,
            labels: Labels | None = None) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        family = self.declare(name, kind, help_text)
        family.samples.append((family.name, labels or {}, float(value)))

    def add_histogram(self, name: str, help_text: str, labels: Labels,
                      buckets: Iterable[tuple[float, int]], count: int, total: float) -> None:
        """One histogram: cumulative ``(upper bound, count)`` pairs (+Inf is added)."""
        family = self.declare(name, "histogram", help_text)
        for bound, number in buckets:
            family.samples.append((f"{family.name}_bucket",
                                   {**labels, "le": repr(float(bound))}, float(number)))
        family.samples.append((f"{family.name}_bucket", {**labels, "le": "+Inf"},
                               float(count)))
        family.samples.append((f"{family.name}_count", labels, float(count)))
        family.samples.append((f"{family.name}_sum", labels, float(total)))

    def collect(self) -> Iterator[Metric]:
        """The families as ``prometheus_client`` metrics (a collector's method)."""
        node = {"node": self.node} if self.node is not None else {}
        for family in self.families.values():
            # The client names a counter's family without the _total its samples carry.
            name = family.name.removesuffix("_total") if family.kind == "counter" else \
                family.name
            metric = Metric(name, family.help, _TYPES[family.kind])
            for sample, labels, value in family.samples:
                metric.add_sample(sample, {**node, **labels}, value)
            yield metric

    def render(self) -> str:
        return generate_latest(self).decode()


def metric_part(text: str) -> str:
    """A counter name from the engine, as a piece of a metric name ([a-z0-9_])."""
    out = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in text)
    return out.lower().strip("_") or "unnamed"


def _ask(op: str) -> Any:
    return control.request(context.control_path(), op, timeout=ENGINE_TIMEOUT)


def collect(metrics: Exposition) -> bool:
    """Ask the engine for each snapshot; False when it does not answer at all."""
    try:
        status = _ask("status")
    except control.ControlError:
        return False
    if isinstance(status, dict):
        metrics.add("engine_uptime_seconds", "gauge", "Seconds since the engine started",
                    status.get("uptime"))
        collector = status.get("gc") or {}
        metrics.add("gc_full_collections_total", "counter",
                    "Full garbage collections run by the engine (on memory growth only)",
                    collector.get("full_collections"))
        metrics.add("gc_full_collections_skipped_total", "counter",
                    "Full collections not run because memory grew with the live SIP state",
                    collector.get("skipped_live_growth"))
        writer = status.get("db_writer") or {}
        metrics.add("db_writes_pending", "gauge",
                    "Database writes (CDRs, call and registration state) queued, not yet applied",
                    writer.get("pending"))
        metrics.add("db_writes_total", "counter", "Database writes applied",
                    writer.get("written"))
        metrics.add("db_writes_failed_total", "counter",
                    "Database writes dropped after repeated errors", writer.get("failed"))
        metrics.add("gc_last_full_pause_seconds", "gauge",
                    "How long the last full garbage collection paused the engine",
                    collector.get("last_full_pause_seconds"))
        if isinstance(status.get("cluster"), dict):
            _cluster(metrics, status["cluster"])
    snapshots: tuple[tuple[str, type, Callable[[Exposition, Any], None]], ...] = (
        ("stats", dict, _stats), ("security", dict, _security),
        ("keepalive", dict, _keepalive), ("registrations", list, _registrations),
        ("gateways", list, _gateways), ("media", dict, _media), ("quality", dict, _quality),
    )
    for op, shape, render in snapshots:
        try:
            snapshot = _ask(op)
            if not isinstance(snapshot, shape):
                raise control.ControlError(f"{op}: unexpected reply")
        except control.ControlError:
            metrics.add("engine_scrape_errors", "gauge",
                        "Engine snapshots that failed in this scrape, by op", 1, {"op": op})
            continue
        render(metrics, snapshot)
    return True


def _stats(metrics: Exposition, stats: dict[str, Any]) -> None:
    for key, value in stats.items():
        if key in _CALL_COUNTERS:
            name, help_text = _CALL_COUNTERS[key]
            metrics.add(name, "counter", help_text, value)
        elif key in _CALL_GAUGES:
            name, help_text = _CALL_GAUGES[key]
            metrics.add(name, "gauge", help_text, value)
        elif key in _COUNTER_GROUPS and isinstance(value, dict):
            for counter, number in value.items():
                metrics.add(f"{key}_{metric_part(counter)}_total", "counter",
                            f"{_COUNTER_GROUPS[key]}: {counter}", number)
        elif key in _BAD_REQUESTS:
            metrics.add("bad_requests_total", "counter",
                        "Requests that could not be taken: answered 400/416/420/505 "
                        "(known sources) or dropped", value, {"outcome": _BAD_REQUESTS[key]})
        elif key.startswith(_REFUSAL_PREFIXES) or key in _REFUSALS:
            metrics.add("calls_refused_total", "counter",
                        "Calls refused or dropped before routing, by reason", value,
                        {"reason": key})
        elif not isinstance(value, dict):
            # A counter this version does not know yet: exposed, but untyped.
            metrics.add(f"engine_{metric_part(key)}", "untyped",
                        f"Engine call counter {key} (see /api/v1/stats)", value)


def _security(metrics: Exposition, security: dict[str, Any]) -> None:
    for outcome in _SECURITY_COUNTERS:
        counters = security.get(outcome)
        if not isinstance(counters, dict):
            continue
        help_text = f"Requests {outcome} by the security policy, by reason"
        metrics.declare(f"security_{outcome}_total", "counter", help_text)
        for reason, value in sorted(counters.items()):
            metrics.add(f"security_{outcome}_total", "counter", help_text, value,
                        {"reason": reason})
    for key, help_text in _SECURITY_GAUGES.items():
        metrics.add(f"security_{key}", "gauge", help_text, security.get(key))
    for key, help_text in _SECURITY_TOTALS.items():
        metrics.add(f"security_{key}_total", "counter", help_text, security.get(key))


def _keepalive(metrics: Exposition, keepalive: dict[str, Any]) -> None:
    for key, help_text in _KEEPALIVE_TOTALS.items():
        name = "keepalive_missed_total" if key == "missed_total" else f"keepalive_{key}_total"
        metrics.add(name, "counter", help_text, keepalive.get(key))
    for key, (name, help_text) in _KEEPALIVE_GAUGES.items():
        metrics.add(name, "gauge", help_text, keepalive.get(key))


_SHARED_COUNTS = {
    "admissions": "Capacity admissions asked of Redis",
    "refused": "Capacity admissions Redis refused (the cluster's count at capacity)",
    "by_share": "Admissions decided on this node's share (Redis down or rebuilding)",
    "errors": "Redis commands that failed or timed out",
    "restarts_seen": "Times Redis came back without its data",
}


def _cluster(metrics: Exposition, view: dict[str, Any]) -> None:
    metrics.node = str(view["node"])
    redis = view.get("redis")
    if redis != "none":
        metrics.add("cluster_redis_up", "gauge", "1 when this node reaches Redis and "
                    "admits by the cluster's counts", 1 if redis == "up" else 0)
        metrics.add("cluster_redis_live_nodes", "gauge",
                    "Live nodes as Redis sees them (their liveness keys)",
                    view.get("redis_live_nodes"))
    for name, help_text in _SHARED_COUNTS.items():
        metrics.add(f"cluster_shared_{name}_total", "counter", help_text,
                    (view.get("counters") or {}).get(name))
    metrics.add("cluster_orphans_hung_up_total", "counter",
                "Legs of dead nodes' answered calls this node ended with BYE",
                view.get("orphans_hung_up"))


def _registrations(metrics: Exposition, bindings: Iterable[dict[str, Any]]) -> None:
    items = list(bindings)
    metrics.add("registrations", "gauge",
                "Live registrations (contacts) of phones and mapping gateways", len(items))
    metrics.add("registrations_nat", "gauge", "Live registrations behind NAT",
                sum(1 for b in items if b.get("nat")))
    gateways = [b for b in items if b.get("kind") == "mapping_gateway"]
    metrics.add("registered_phones", "gauge", "Phone accounts with a live registration",
                len({b.get("username") for b in items if b.get("kind") != "mapping_gateway"}))
    metrics.add("registered_mapping_gateways", "gauge",
                "Password-mode mapping gateways with a live registration",
                len({b.get("mapping_gateway_id") for b in gateways}))


def _gateways(metrics: Exposition, gateways: Iterable[dict[str, Any]]) -> None:
    for gw in gateways:
        labels = {"gateway": str(gw.get("name")), "gateway_id": str(gw.get("id"))}
        metrics.add("gateway_current_calls", "gauge",
                    "Calls up now through a routing gateway", gw.get("current_calls"), labels)
        metrics.add("gateway_calls_total", "counter",
                    "Calls sent to a routing gateway since the engine started",
                    gw.get("total_calls"), labels)
        metrics.add("gateway_enabled", "gauge", "1 when the routing gateway is enabled",
                    int(bool(gw.get("enabled"))), labels)
        metrics.add("gateway_retry_after", "gauge",
                    "1 while the routing gateway is out of routing for a Retry-After",
                    int(gw.get("retry_after_until") is not None), labels)


_QUALITY_TOTALS = {
    "attempts": ("gateway_attempts_total", "Calls from a mapping gateway, or attempts to a "
                 "routing gateway, finished since the engine started"),
    "answered": ("gateway_answered_total", "Of those, answered"),
    "ner": ("gateway_ner_effective_total", "Of those, answered or failed by the called "
            "user (busy, no answer, rejected): NER's numerator"),
    "talk": ("gateway_talk_seconds_total", "Seconds answered"),
}


_ROLLUP = {
    "runs": ("gateway_stats_rollup_runs_total", "counter",
             "Runs of the roll-up of CDRs into stored gateway quality (this node's)"),
    "calls": ("gateway_stats_rollup_calls_total", "counter", "CDRs it added"),
    "errors": ("gateway_stats_rollup_errors_total", "counter",
               "Runs that failed (the database away, its process dead); the next goes on"),
    "last_run_at": ("gateway_stats_rollup_last_run_timestamp_seconds", "gauge",
                    "When its last run ended (Unix time)"),
}


def _quality(metrics: Exposition, quality: dict[str, Any]) -> None:
    """Each gateway's ASR, ACD, NER and PDD since start, as counters and a histogram
    (the stored series: GET /api/v1/stats/gateways), and the roll-up's own counters."""
    rollup = quality.get("rollup") or {}
    for key, (name, kind, help_text) in _ROLLUP.items():
        metrics.add(name, kind, help_text, rollup.get(key))
    for gw in quality.get("gateways") or []:
        labels = {"kind": str(gw.get("kind")), "gateway_id": str(gw.get("id")),
                  "gateway": str(gw.get("name") or "")}
        for key, (name, help_text) in _QUALITY_TOTALS.items():
            metrics.add(name, "counter", help_text, gw.get(key), labels)
        help_failures = "Failures by final code (or outcome, when none came)"
        metrics.declare("gateway_failures_total", "counter", help_failures)
        for code, count in sorted((gw.get("failures") or {}).items()):
            metrics.add("gateway_failures_total", "counter", help_failures, count,
                        {**labels, "code": str(code)})
        cell = Cell.from_json(gw)
        count = sum(cell.pdd.values())
        metrics.add_histogram(
            "gateway_pdd_seconds", "Post-dial delay: INVITE to the first ringing, or to "
            "the answer (upper bucket edges exact, docs/gateway-quality.md)", labels,
            zip(PROMETHEUS_PDD_BUCKETS, cell.pdd_cumulative(PROMETHEUS_PDD_BUCKETS),
                strict=True),
            count, cell.pdd_seconds)


def _media(metrics: Exposition, media: dict[str, Any]) -> None:
    lag = media.get("engine_loop_lag") or {}
    metrics.add("engine_loop_lag_seconds", "gauge",
                "Engine event-loop lag, mean over the last 2 s (admission control's measure)",
                (lag.get("mean_ms") or 0) / 1000)
    metrics.add("engine_loop_lag_peak_seconds", "gauge",
                "Engine event-loop lag, worst in the last 2 s", (lag.get("peak_ms") or 0) / 1000)
    workers = media.get("workers") or []
    metrics.add("relay_workers_up", "gauge", "Relay worker processes running",
                sum(1 for w in workers if w.get("alive")))
    for w in workers:
        labels = {"worker": str(w.get("index"))}
        metrics.add("relay_worker_sessions", "gauge", "Relay sessions open on a relay worker",
                    w.get("sessions"), labels)
        metrics.add("relay_worker_loop_lag_seconds", "gauge",
                    "Relay worker event-loop lag, mean over the last 2 s",
                    (w.get("loop_lag_ms") or 0) / 1000, labels)
        metrics.add("relay_worker_starts_total", "counter",
                    "Times a relay worker was started (more than 1: it was restarted)",
                    w.get("starts"), labels)
    totals = media.get("totals") or {}
    for family, help_text in _RELAY_TOTALS.items():
        for cipher, row in sorted(totals.items()):
            metrics.add(f"relay_{family}_total", "counter", help_text, row.get(family),
                        {"cipher": cipher})


_RELAY_TOTALS = {
    "calls": "Finished calls whose media went through the relay, by payload cipher",
    "packets": "RTP packets relayed (both directions) in finished calls, by payload cipher",
    "bytes": "RTP bytes relayed (both directions) in finished calls, by payload cipher",
    "malformed": "Malformed RTP packets dropped by the relay in finished calls, by cipher",
    "foreign": "RTP packets from a source other than the latched one, dropped, by cipher",
    "dropped": "RTP packets lost to a full send buffer toward a party, by cipher",
    "packets_in_c": "RTP packets of finished calls relayed by the relay's C receive loop "
                    "(the rest by Python), by cipher",
    "cipher_errors": "RTP packets dropped because a payload cipher failed on them, by cipher",
}


@bp.get("/api/v1/metrics")
@raw_body(CONTENT_TYPE, "Prometheus text exposition format 0.0.4")
@operation("get", "Prometheus metrics (engine counters, security, keep-alive, registrations, "
           "gateways); softswitch_engine_up 0 when the engine is down")
def metrics() -> Any:
    exposition = Exposition()
    exposition.add("engine_up", "gauge", "1 when the engine answers on its control channel", 0)
    up = collect(exposition)
    family = exposition.families[PREFIX + "engine_up"]
    family.samples[0] = (family.name, {}, float(up))
    resp = Response(exposition.render(), status=200)
    resp.headers["Content-Type"] = CONTENT_TYPE
    resp.headers["Cache-Control"] = "no-store"
    return resp
