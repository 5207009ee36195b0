"""Reports of several engine processes merged into one: what worker 0 answers the API
for the whole switch (its own report and each other signalling worker's)."""

from __future__ import annotations

from typing import Any


def sum_counters(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Counters of several workers added key by key (nested dicts too), lists joined;
    anything else is taken from the first report."""
    out: dict[str, Any] = {}
    for report in reports:
        for key, value in report.items():
            if key not in out:
                out[key] = (sum_counters([value]) if isinstance(value, dict)
                            else list(value) if isinstance(value, list) else value)
            elif isinstance(value, dict) and isinstance(out[key], dict):
                out[key] = sum_counters([out[key], value])
            elif isinstance(value, list) and isinstance(out[key], list):
                out[key].extend(value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[key] += value
    return out
