"""The console's call pages in headless Chromium against a real softswitch and sipp:
a call shows in live calls and on the dashboard, its SIP ladder opens, a read operator
cannot hang it up, an admin does (both sipp peers get their BYE), its CDR is found by
search with its attempts and ladder, the dashboard shows the gateways' quality, and the
routing test explains the route. The caller's display name and User-Agent carry markup:
shown as text everywhere, and none of it runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consolekit import ADMIN, READER, Browser, wait_for
from sippctl import CUSTOMER_IP, VENDOR_IP, Sipp, sipp
from support import Softswitch, free_port

SCRIPT_NAME = "<script>window.pwned=1</script>"
SCRIPT_AGENT = "<img src=x onerror=window.pwned=2>"


@pytest.fixture(scope="module")
def configured(switch: Softswitch) -> dict[str, Any]:
    api = switch.api
    vendor_port = free_port(VENDOR_IP)
    mgw = api.post("/api/v1/mapping-gateways", {"name": "customer", "ips": [CUSTOMER_IP]})
    rgw = api.post("/api/v1/routing-gateways", {"name": "vendor", "host": VENDOR_IP,
                                                "port": vendor_port})
    for name, value in (("SS_GATEWAY_STATS_INTERVAL", 1), ("SS_SIP_LADDERS", "All")):
        api.put(f"/api/v1/parameters/{name}", {"value": value})
    assert wait_for(lambda: api.get("/api/v1/engine")["routing_gateways"] == 1, 3)
    return {"vendor_port": vendor_port, "mapping": mgw, "routing": rgw}


@pytest.fixture
def call(tmp_path: Path, switch: Softswitch, configured: dict[str, Any]
         ) -> Iterator[tuple[Sipp, Sipp]]:
    """One answered call up, its caller waiting for our BYE."""
    vendor = sipp("uas_answer.xml", tmp_path, VENDOR_IP, configured["vendor_port"],
                  timeout_s=60)
    caller = sipp("uac_wait_bye_markup.xml", tmp_path, CUSTOMER_IP, free_port(CUSTOMER_IP),
                  f"127.0.0.1:{switch.sip_port}", timeout_s=60)
    try:
        assert wait_for(lambda: any(c["answer_at"] for c in
                                    switch.api.get("/api/v1/calls")["items"]), 10)
        yield caller, vendor
    finally:
        caller.stop()
        vendor.stop()


def _sign_in(browser: Browser, name: str) -> None:
    browser.sign_in(name)
    browser.wait(lambda d: browser.text_of("#who").startswith(f"{name} ("))


def _no_script_ran(browser: Browser) -> None:
    assert browser.driver.execute_script("return window.pwned === undefined") is True


def _row_texts(browser: Browser, table: str) -> list[list[str]]:
    """The table's cells' text, read at once (a page may redraw it any moment)."""
    rows: list[list[str]] = browser.driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map("
        "tr => [...tr.cells].map(td => td.innerText.trim()));", f"#{table} tbody tr")
    return rows


def test_a_call_from_live_calls_to_its_cdr(browser: Browser, switch: Softswitch,
                                           call: tuple[Sipp, Sipp]) -> None:
    caller, vendor = call
    # A read operator sees the call and its ladder, but no hang-up, and the API refuses it.
    _sign_in(browser, READER)
    browser.go("calls", "#live-calls[data-loaded] tbody tr a[data-ladder]")
    assert browser.all("button.hangup") == []
    (live,) = switch.api.get("/api/v1/calls")["items"]
    status = browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/v1/calls/' + arguments[0], {method: 'DELETE', headers: {'X-CSRF-Token':"
        " document.querySelector('meta[name=csrf-token]').content}}).then(r => done(r.status));",
        live["id"])
    assert status == 403
    browser.console_log()  # read (and so cleared): that refusal was the point

    _sign_in(browser, ADMIN)
    browser.go("calls", "#live-calls[data-loaded] tbody tr button.hangup")
    (row,) = _row_texts(browser, "live-calls")
    assert SCRIPT_NAME in row and SCRIPT_AGENT in row
    assert browser.text_of("#live-calls td.caller-name") == SCRIPT_NAME
    _no_script_ran(browser)
    browser.screenshot("live-calls")

    browser.go("dashboard", "#gateway-quality[data-loaded]")
    assert wait_for(lambda: browser.text_of("#tile-active") == "1", 10)
    browser.click("a[data-page='calls']")
    browser.click(f"a[data-ladder='{live['id']}']")
    browser.find("#ladder .arrow")
    heads = browser.texts("#ladder .ladder-head .who")
    assert heads[1:] == ["softswitch", "vendor"] and heads[0] in ("customer", CUSTOMER_IP)
    assert browser.texts("#ladder .arrow")[0].startswith("INVITE sip:")
    browser.click("#ladder .arrow")
    message = browser.text_of("#sip-message")
    assert f'From: "{SCRIPT_NAME}"' in message and f"User-Agent: {SCRIPT_AGENT}" in message
    _no_script_ran(browser)
    browser.screenshot("call-ladder")

    # The admin hangs it up: each sipp peer answers its BYE and ends well.
    browser.click("#back")
    browser.click("button.hangup")
    browser.accept_confirm()
    assert caller.wait() == 0, caller.output()
    assert vendor.wait() == 0, vendor.output()

    browser.go("cdrs", "#cdrs[data-loaded]")
    browser.type("#cdr-reason", "operator")
    browser.click("#cdr-search button[type=submit]")
    assert wait_for(lambda: len(_row_texts(browser, "cdrs")) == 1
                    and "operator" in _row_texts(browser, "cdrs")[0], 10)
    assert SCRIPT_NAME in _row_texts(browser, "cdrs")[0]
    csv = browser.find("#cdr-csv").get_attribute("href") or ""
    assert csv.endswith("/api/v1/cdrs.csv?termination_reason=operator")
    browser.screenshot("cdrs")
    browser.click("#cdrs a[data-cdr]")
    browser.find("#attempts .bar.answered")
    assert browser.text_of("#cdr-fields dd[data-field='caller_name']") == SCRIPT_NAME
    assert browser.text_of("#cdr-fields dd[data-field='user_agent']") == SCRIPT_AGENT
    assert browser.text_of("#cdr-fields dd[data-field='termination_reason']") == "operator"
    browser.find("#ladder-panel #ladder .arrow")
    assert any(t.startswith("BYE sip:") for t in browser.texts("#ladder-panel .arrow"))
    _no_script_ran(browser)
    browser.screenshot("cdr")

    # The roll-up has counted it: the dashboard's gateway table shows both sides.
    def quality() -> list[list[str]]:
        browser.go("dashboard", "#gateway-quality[data-loaded]")
        return _row_texts(browser, "gateway-quality")
    rows = wait_for(lambda: len(quality()) == 2 and quality(), 15)
    assert [r[:4] for r in rows] == [["customer", "customer", "1", "1"],
                                     ["vendor", "vendor", "1", "1"]]
    assert rows[0][4] == "100.0 %"
    browser.screenshot("dashboard")
    assert not [e for e in browser.console_log() if e["level"] == "SEVERE"]


def test_the_routing_test_page(browser: Browser, configured: dict[str, Any]) -> None:
    _sign_in(browser, READER)  # it changes nothing: a read operator may run it
    browser.go("routing-test", "#routing-test")
    browser.wait(lambda d: len(browser.all("#rt-origin option")) > 1)
    browser.find("#rt-origin").send_keys("customer: customer")
    browser.type("#rt-caller", "1001")
    browser.type("#rt-callee", "200")
    browser.click("#routing-test button[type=submit]")
    browser.find("#route-gateways tr[data-gateway='vendor']")
    (row,) = _row_texts(browser, "route-gateways")
    assert row[:4] == ["1", "vendor", "in", f"route\n{row[3].splitlines()[1]}"]
    assert row[8] == "1001 → 200"
    browser.screenshot("routing-test")
