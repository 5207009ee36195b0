"""Configuration changed through the API is live in the engine within a second, on each
backend: on SQLite the engine sees another connection's commit in ``data_version``; on
PostgreSQL the config triggers' notifications (the 5 s tick alone would miss nearly all
of these bounds)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from support import Softswitch, wait_until

pytestmark = pytest.mark.both_backends


def live_within_a_second(check: Callable[[], Any], what: str) -> None:
    started = time.monotonic()
    assert wait_until(check, timeout=1.0, interval=0.02), f"{what}: not live within 1 s"
    assert time.monotonic() - started < 1.0, what


def test_parameters_and_gateways_are_live_within_a_second(softswitch: Softswitch) -> None:
    api = softswitch.api

    def engine() -> dict[str, Any]:
        status: dict[str, Any] = api.get("/api/v1/engine")
        return status

    for value in (3, 4, 5):
        api.put("/api/v1/parameters/SS_SIP_TIMEOUT_INVITE", {"value": value})

        def applied(wanted: int = value) -> bool:
            return bool(engine()["params"]["SS_SIP_TIMEOUT_INVITE"] == wanted)

        live_within_a_second(applied, f"SS_SIP_TIMEOUT_INVITE={value}")
    vendor = api.post("/api/v1/routing-gateways", {"name": "vendor", "host": "127.0.0.9",
                                                   "port": 5070})
    live_within_a_second(lambda: engine()["routing_gateways"] == 1, "a new routing gateway")
    status, _, _ = api.call("PATCH", f"/api/v1/routing-gateways/{vendor['id']}",
                            {"enabled": False})
    assert status == 200
    live_within_a_second(
        lambda: [g["enabled"] for g in api.get("/api/v1/routing-gateways/status")["items"]]
        == [False], "a routing gateway disabled")
    customer = api.post("/api/v1/mapping-gateways", {"name": "customer",
                                                     "ips": ["127.0.0.10"]})
    live_within_a_second(lambda: engine()["mapping_gateways"] == 1, "a new mapping gateway")
    status, _, _ = api.call("DELETE", f"/api/v1/mapping-gateways/{customer['id']}")
    assert status == 204
    live_within_a_second(lambda: engine()["mapping_gateways"] == 0,
                         "a mapping gateway deleted")
    assert engine()["config_reloads"] >= 7
