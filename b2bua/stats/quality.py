"""The quality figures of a gateway's calls, as a pure function of finished calls.

A *cell* sums what a gateway's calls did in one period: attempts, answered, the
talk time, the answers and failures that count for NER, the failures by final code, and
the post-dial delays as a histogram. Cells add up exactly, so minutes roll up into
hours and days, and the workers' live counters into one. The rules
(docs/gateway-quality.md):

- a **mapping gateway** counts each call it sent us: answered when the caller got a
  200; its PDD runs from the INVITE to the first ringing (18x) we relayed, or to the
  answer when none came; its failure code is the one the caller got;
- a **routing gateway** counts each attempt made to it: answered when its 200 came; its
  PDD runs from our INVITE to its first provisional other than 100, or to its answer;
  its failure code is its final code, or the attempt's outcome when it sent none
  (``invite_timeout``, ``dns_failure``, ...);
- **NER** (network effectiveness, ITU-T E.425) counts the answered, busy, no-answer and
  user-rejected ones (:data:`NER_CODES`, :data:`NER_OUTCOMES`) over the attempts;
- a failure without a PDD (no ringing, no answer) adds none: PDD is a delay to ringing.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

MAPPING, ROUTING = "mapping", "routing"
KINDS = (MAPPING, ROUTING)

# Final codes that are the called user's doing, not the network's: busy (486, 600),
# not answering or away (480, 487 after the caller gave up), rejecting (603), a number
# that does not exist (404, 410, 484, 604).
NER_CODES = frozenset({404, 410, 480, 484, 486, 487, 600, 603, 604})
# Attempt outcomes without a code that are the called side's: ringing too long, the
# caller cancelling (docs/failover.md, "CDR attempts").
NER_OUTCOMES = frozenset({"ringing_timeout", "cancelled"})


def _edges() -> tuple[int, ...]:
    """The PDD histogram's bucket upper edges in ms: 10 ms wide to 1 s, 100 ms to
    10 s, 1 s to 120 s; a longer delay counts in the last."""
    return (*range(10, 1001, 10), *range(1100, 10001, 100), *range(11000, 120001, 1000))


PDD_EDGES_MS = _edges()
# The Prometheus histogram's buckets (seconds), each an edge of the fine one above,
# so its cumulative counts are exact.
PROMETHEUS_PDD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 60.0)


def pdd_bucket(seconds: float) -> int:
    """The histogram bucket (its upper edge in ms) a delay of ``seconds`` falls in."""
    ms = max(0.0, seconds) * 1000
    # Within a microsecond of an edge counts as on it: Unix times carry float noise.
    index = bisect.bisect_left(PDD_EDGES_MS, math.ceil(ms - 1e-3))
    return PDD_EDGES_MS[min(index, len(PDD_EDGES_MS) - 1)]


@dataclass(frozen=True, slots=True)
class Observation:
    """One call (mapping side) or one attempt (routing side) of a gateway."""

    kind: str
    gateway_id: int
    gateway: str | None  # its name then
    at: float  # the call's (or the attempt's) start
    answered: bool
    talk: float  # seconds answered
    pdd: float | None
    failure: str | None  # the final code (or outcome) of one not answered
    ner: bool


def observations(call: Mapping[str, Any],
                 attempts: Iterable[Mapping[str, Any]]) -> Iterator[Observation]:
    """What one finished call tells of its gateways: a CDR's fields (``start_at``,
    ``ringing_at``, ``answer_at``, ``duration``, ``final_code``, the gateways' ids and
    names) and its attempts' (``docs/failover.md``, "CDR attempts")."""
    talk = float(call.get("duration") or 0.0)
    mapping_id = call.get("mapping_gateway_id")
    if mapping_id is not None:
        start = float(call["start_at"])
        answer_at, ringing_at = call.get("answer_at"), call.get("ringing_at")
        answered = answer_at is not None
        first = ringing_at if ringing_at is not None else answer_at
        final = int(call.get("final_code") or 0)
        yield Observation(MAPPING, int(mapping_id), call.get("mapping_gateway"), start,
                          answered, talk if answered else 0.0,
                          None if first is None else float(first) - start,
                          None if answered else str(final), answered or final in NER_CODES)
    for attempt in attempts:
        gw_id = attempt.get("routing_gateway_id")
        if gw_id is None:  # a phone of ours, not a vendor
            continue
        if attempt.get("outcome") == "rate_limited":  # never sent: the vendor saw nothing
            continue
        start = float(attempt["start_at"])
        outcome = str(attempt.get("outcome") or "")
        answered = outcome == "answered"
        code = attempt.get("final_code")
        provisional_at = attempt.get("first_provisional_at")
        if provisional_at is not None:
            pdd: float | None = float(provisional_at) - start
        elif answered:
            pdd = float(attempt.get("duration") or 0.0)  # the attempt lasted to its answer
        else:
            pdd = None
        failure = None if answered else (str(code) if code is not None else outcome)
        yield Observation(ROUTING, int(gw_id), attempt.get("routing_gateway"), start,
                          answered, talk if answered else 0.0, pdd, failure,
                          answered or (code is not None and int(code) in NER_CODES)
                          or (code is None and outcome in NER_OUTCOMES))


@dataclass(slots=True)
class Cell:
    """The sums of one gateway's calls over a period."""

    attempts: int = 0
    answered: int = 0
    ner: int = 0
    talk: float = 0.0
    pdd_seconds: float = 0.0  # the PDDs' sum
    pdd: dict[int, int] = field(default_factory=dict)  # bucket edge (ms) -> count
    failures: dict[str, int] = field(default_factory=dict)  # final code -> count

    def add(self, seen: Observation) -> None:
        self.attempts += 1
        if seen.answered:
            self.answered += 1
            self.talk += seen.talk
        if seen.ner:
            self.ner += 1
        if seen.pdd is not None:
            self.pdd_seconds += seen.pdd
            bucket = pdd_bucket(seen.pdd)
            self.pdd[bucket] = self.pdd.get(bucket, 0) + 1
        if seen.failure is not None:
            self.failures[seen.failure] = self.failures.get(seen.failure, 0) + 1

    def merge(self, other: Cell) -> None:
        self.attempts += other.attempts
        self.answered += other.answered
        self.ner += other.ner
        self.talk += other.talk
        self.pdd_seconds += other.pdd_seconds
        for bucket, count in other.pdd.items():
            self.pdd[bucket] = self.pdd.get(bucket, 0) + count
        for code, count in other.failures.items():
            self.failures[code] = self.failures.get(code, 0) + count

    # -- what is reported ------------------------------------------------------------------

    def pdd_quantile(self, q: float) -> float | None:
        """The delay (s) under which a share ``q`` of the PDDs fall, nearest rank, as the
        upper edge of its bucket; None with no PDD."""
        total = sum(self.pdd.values())
        if total == 0:
            return None
        rank = max(1, math.ceil(q * total))
        seen = 0
        for bucket in sorted(self.pdd):
            seen += self.pdd[bucket]
            if seen >= rank:
                return bucket / 1000
        raise AssertionError("unreachable: the ranks add up to the total")

    def figures(self) -> dict[str, Any]:
        """The cell as the API reports it."""
        return {
            "attempts": self.attempts,
            "answered": self.answered,
            "asr": round(self.answered / self.attempts, 4) if self.attempts else None,
            "acd": round(self.talk / self.answered, 3) if self.answered else None,
            "talk_seconds": round(self.talk, 3),
            "ner": round(self.ner / self.attempts, 4) if self.attempts else None,
            "pdd_median": self.pdd_quantile(0.5),
            "pdd_p95": self.pdd_quantile(0.95),
            "pdd_count": (counted := sum(self.pdd.values())),
            "pdd_mean": round(self.pdd_seconds / counted, 3) if counted else None,
            "failures": dict(sorted(self.failures.items())),
        }

    def pdd_cumulative(self, bounds_s: Iterable[float]) -> list[int]:
        """How many PDDs are at or under each bound (seconds; each a bucket edge)."""
        ordered = sorted(self.pdd.items())
        out = []
        for bound in bounds_s:
            limit = round(bound * 1000)
            out.append(sum(count for edge, count in ordered if edge <= limit))
        return out

    # -- as stored and sent between processes ----------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"attempts": self.attempts, "answered": self.answered, "ner": self.ner,
                "talk": self.talk, "pdd_seconds": self.pdd_seconds,
                "pdd": {str(k): v for k, v in self.pdd.items()},
                "failures": dict(self.failures)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cell:
        return cls(int(data.get("attempts", 0)), int(data.get("answered", 0)),
                   int(data.get("ner", 0)), float(data.get("talk", 0.0)),
                   float(data.get("pdd_seconds", 0.0)),
                   {int(k): int(v) for k, v in (data.get("pdd") or {}).items()},
                   {str(k): int(v) for k, v in (data.get("failures") or {}).items()})


CellKey = tuple[str, int, int, int]  # kind, gateway id, step (s), period start (s)
STEPS = (60, 3600, 86400)


def period_cells(calls: Iterable[tuple[Mapping[str, Any], Iterable[Mapping[str, Any]]]],
                 steps: Iterable[int] = STEPS) -> dict[CellKey, Cell]:
    """The cells of finished calls (each a CDR and its attempts) for each step, by the
    period their start falls in (UTC; a day is 00:00 to 24:00 UTC)."""
    steps = tuple(steps)
    cells: dict[CellKey, Cell] = {}
    for call, attempts in calls:
        for seen in observations(call, attempts):
            for step in steps:
                key = (seen.kind, seen.gateway_id, step, int(seen.at // step) * step)
                cell = cells.get(key)
                if cell is None:
                    cell = cells[key] = Cell()
                cell.add(seen)
    return cells
