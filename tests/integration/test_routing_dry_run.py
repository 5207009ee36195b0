"""The routing dry run (POST /api/v1/routing/test) against a real softswitch: the number
stages, a black list's refusal, every vendor's reason, and the live state real calls
leave behind: a vendor's Retry-After hold (its 503 from sipp) and a vendor at capacity
(a call held up to it). One softswitch for the module; each test takes a few seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sipcaller import CallResult, place_call
from sippctl import CUSTOMER_IP, sipp
from support import Api, Softswitch, free_port, wait_until

from b2bua.storage import tokens

HOLD_IP, SMALL_IP = "127.0.0.3", "127.0.0.4"


@dataclass
class Lab:
    switch: Softswitch
    hold_port: int  # "hold503": answers 503 with Retry-After
    small_port: int  # "small": capacity 1, answers and keeps the call

    @property
    def api(self) -> Api:
        return self.switch.api

    def dry(self, callee: str, caller: str = "1001", **origin: Any) -> dict[str, Any]:
        body = {"caller": caller, "callee": callee, **(origin or {"mapping_gateway": "custA"})}
        status, result, _ = self.api.call("POST", "/api/v1/routing/test", body)
        assert status == 200, result
        return dict(result)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    switch = Softswitch(tmp_path_factory.mktemp("dry-run")).start()
    try:
        api = switch.api
        api.post("/api/v1/number-transforms", {"number": "862150001234",
                                               "replacement": "862150009999",
                                               "memo": "main DID"})
        group = api.post("/api/v1/number-groups", {"name": "fraud"})
        api.post(f"/api/v1/number-groups/{group['id']}/numbers", {"numbers": ["861111"]})
        api.post("/api/v1/mapping-gateways", {
            "name": "custA", "ips": [CUSTOMER_IP], "caller_dial_plan": "0:86*",
            "callee_dial_plan": "00:", "caller_transform": True,
            "caller_groups": ["fraud"], "caller_groups_mode": "deny",
            "callee_prefixes_deny": ["86900"]})
        lab = Lab(switch, free_port(HOLD_IP), free_port(SMALL_IP))
        vendor_numbers = {"callee_dial_plan": "*:+*", "caller_dial_plan": "*{E12}:+*",
                          "pai_dial_plan": "+:"}
        gateways: list[dict[str, Any]] = [
            {"name": "cn-long", "prefixes": ["8613"], "prefix_mode": "continue",
             **vendor_numbers},
            {"name": "cn-dns", "host": "sip.vendor.test", "port": None, "prefixes": ["8613"],
             "priority": 5, "prefix_mode": "continue"},
            {"name": "cn-a", "prefixes": ["86"], "priority": 1},
            {"name": "cn-b", "prefixes": ["86"], "prefix_mode": "continue"},
            {"name": "cn-off", "prefixes": ["86"], "enabled": False},
            {"name": "any", "prefixes": []},
            {"name": "other", "prefixes": ["44"]},
            {"name": "hold503", "host": HOLD_IP, "port": lab.hold_port, "prefixes": ["8671"]},
            {"name": "small", "host": SMALL_IP, "port": lab.small_port, "prefixes": ["8672"],
             "capacity": 1},
        ]
        for gw in gateways:
            api.post("/api/v1/routing-gateways",
                     {"host": "127.0.0.9", "port": 5060, **gw})
        api.post("/api/v1/phones", {"username": "4420", "password": "secret"})
        assert wait_until(lambda: api.get("/api/v1/engine")["routing_gateways"] == len(gateways),
                          timeout=3)
        yield lab
    finally:
        code = switch.stop()
        assert code == 0, f"softswitch exit code {code}\n{switch.log()[-3000:]}"


def by_name(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["name"]: g for g in result["gateways"]}


def test_number_stages_and_every_vendors_reason(lab: Lab) -> None:
    result = lab.dry("008613800138000", "02150001234")
    assert [(s["stage"], s["input"], s["output"], s["rule"]) for s in result["stages"]] == [
        ("caller_dial_plan", "02150001234", "862150001234", "0:86*"),
        ("callee_dial_plan", "008613800138000", "8613800138000", "00:"),
        ("caller_transform", "862150001234", "862150009999", "862150001234 -> 862150009999"),
        ("callee_transform", "8613800138000", "8613800138000", None),
    ]
    assert result["platform"] == {"caller": "862150009999", "callee": "8613800138000"}
    assert [c["verdict"] for c in result["lists"]] == ["pass", "none", "pass"]
    assert [(r["name"], r["position"]) for r in result["route"]] == [
        ("cn-long", 1), ("cn-dns", 2), ("cn-b", 3), ("cn-a", 4)]
    assert result["route"][0] == {
        "position": 1, "id": result["route"][0]["id"], "name": "cn-long",
        "target": "127.0.0.9:5060", "caller": "+862150009999",
        "callee": "+8613800138000", "pai": "862150009999"}
    gateways = by_name(result)
    assert {name: (g["verdict"], g["reason"], g["order_by"]) for name, g in gateways.items()} == {
        "cn-long": ("in", "route", None), "cn-dns": ("in", "route", "priority"),
        "cn-b": ("in", "route", "prefix"), "cn-a": ("in", "route", "priority"),
        "cn-off": ("out", "disabled", None), "any": ("out", "cut_by_terminate", None),
        "other": ("out", "no_prefix_match", None),
        "hold503": ("out", "no_prefix_match", None), "small": ("out", "no_prefix_match", None)}
    assert '"cn-a"' in gateways["any"]["detail"]
    assert gateways["cn-dns"]["dns"]["name"] == "sip.vendor.test"
    assert gateways["cn-dns"]["dns"]["state"] in ("unresolved", "no_address")
    assert result["result"]["outcome"] == "vendors"


def test_a_black_list_refuses_and_stops(lab: Lab) -> None:
    prefix = lab.dry("0086900123456")
    assert prefix["result"] == {"outcome": "refused", "stage": "lists", "code": 403,
                                "by_lists": True, "reason": 'callee prefix "86900" denied'}
    assert prefix["lists"][-1]["decided_by"] == "86900"
    assert prefix["gateways"] == [] and prefix["route"] == []
    group = lab.dry("008613800138000", "01111")
    assert group["result"]["reason"] == 'caller in deny group "fraud"'
    assert group["lists"] == [{"gateway": "custA", "check": "caller_groups",
                               "number": "861111", "rule": 'deny "fraud"',
                               "verdict": "refuse", "decided_by": "fraud",
                               "reason": 'caller in deny group "fraud"'}]


def test_a_phone_of_ours_takes_the_call(lab: Lab) -> None:
    result = lab.dry("4420")
    assert result["phone"]["reachable"] is False
    assert result["result"] == {"outcome": "refused", "stage": "phone", "code": 480,
                                "by_lists": False, "reason": "phone not registered"}


def test_a_vendors_retry_after_holds_it_out(lab: Lab, tmp_path: Path) -> None:
    before = lab.dry("008671000")
    assert by_name(before)["hold503"]["reason"] == "route"
    vendor = sipp("uas_503_retry_after.xml", tmp_path, HOLD_IP, lab.hold_port,
                  timeout_s=10, extra=["-key", "retry", "120"])
    try:
        call = place_call(CUSTOMER_IP, ("127.0.0.1", lab.switch.sip_port), "008671000")
        assert call.final == 503
        assert vendor.wait(10) == 0, vendor.output()
    finally:
        vendor.stop()
    result = lab.dry("008671000")
    assert "hold503" in by_name(result), result
    hold = by_name(result)["hold503"]
    assert (hold["verdict"], hold["reason"], hold["position"]) == ("out", "retry_after", None)
    assert 110 <= hold["retry_after_until"] - time.time() <= 121
    assert hold["detail"].startswith("held out of routing by the vendor's Retry-After for ")
    assert result["result"] == {
        "outcome": "refused", "stage": "routing", "code": 503, "by_lists": False,
        "reason": "every matching routing gateway is disabled, full or unavailable"}
    status = {g["name"]: g for g in lab.api.get("/api/v1/routing-gateways/status")["items"]}
    assert status["hold503"]["retry_after_until"] == hold["retry_after_until"]


def test_a_vendor_at_capacity_is_out_while_a_call_holds_it(lab: Lab, tmp_path: Path) -> None:
    vendor = sipp("uas_answer.xml", tmp_path, SMALL_IP, lab.small_port, timeout_s=15)
    held: list[CallResult] = []
    caller = threading.Thread(target=lambda: held.append(place_call(
        CUSTOMER_IP, ("127.0.0.1", lab.switch.sip_port), "008672000", hold=2.5)))
    caller.start()
    try:
        def busy() -> bool:
            items = lab.api.get("/api/v1/routing-gateways/status")["items"]
            return any(g["name"] == "small" and g["current_calls"] == 1 for g in items)

        assert wait_until(busy, timeout=5)
        result = lab.dry("008672000")
        small = by_name(result)["small"]
        assert (small["verdict"], small["reason"]) == ("out", "full")
        assert (small["current_calls"], small["capacity"]) == (1, 1)
        assert small["detail"] == "at capacity: 1 of 1 calls"
        assert result["result"]["code"] == 503
    finally:
        caller.join(15)
        vendor.wait(15)
        vendor.stop()
    assert held and held[0].final == 200
    after = wait_until(lambda: by_name(lab.dry("008672000"))["small"]["reason"] == "route",
                       timeout=3)
    assert after


def test_a_read_token_may_ask_an_unknown_gateway_is_422(lab: Lab) -> None:
    audited = len(lab.api.get("/api/v1/audit?limit=1000")["items"])
    with lab.switch.database() as db:
        reader = tokens.create_token(db, "dry-run-reader", "read")
    status, result, _ = lab.api.call(
        "POST", "/api/v1/routing/test",
        {"caller": "1001", "callee": "008613800138000", "mapping_gateway": "custA"},
        token=reader)
    assert status == 200 and result["route"], result
    status, problem, _ = lab.api.call(
        "POST", "/api/v1/routing/test",
        {"caller": "1001", "callee": "4420", "mapping_gateway": "nobody"})
    assert status == 422
    assert problem["errors"] == {"mapping_gateway": ["no mapping gateway 'nobody'"]}
    assert len(lab.api.get("/api/v1/audit?limit=1000")["items"]) == audited  # nothing changed
