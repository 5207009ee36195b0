"""The console's configuration pages in a browser, as an admin: gateways created through
the forms, a field error shown beside its field, an edit refused after a concurrent
change, markup in data shown as text, phones, number rules, parameters, registrations,
suspensions, upstream registrations, the audit log and operators. Each page's
screenshot goes to var/screenshots/."""

from __future__ import annotations

import pytest
from consolekit import ADMIN, Browser, register, wait_for
from selenium.common.exceptions import NoAlertPresentException
from support import Softswitch

SCRIPT_NAME = "<script>alert(1)</script>"
IMG_NAME = '<img src=x onerror="window.__xss=1">'
UA = '<b>Phone</b><img src=x onerror="window.__xss_ua=1">'


@pytest.fixture(scope="module", autouse=True)
def signed_in(browser: Browser) -> None:
    browser.sign_in(ADMIN)
    browser.find("#nav a.active")


def test_create_a_mapping_gateway_and_see_a_field_error(browser: Browser,
                                                         switch: Softswitch) -> None:
    browser.go("gateways", "#mapping-gateways[data-loaded]")
    browser.click("button.new")
    browser.type("#f-name", "customer-a")
    browser.type("#f-ips", "192.0.2.10, 10.0.0.300")
    browser.click("#resource-form button[type=submit]")
    assert "'10.0.0.300' is not an IP address" in browser.text_of("#err-ips")
    assert "has-error" in str(browser.find("[data-field=ips]").get_attribute("class"))
    browser.screenshot("gateway-field-error")
    assert switch.api.get("/api/v1/mapping-gateways")["items"] == []
    browser.type("#f-ips", "192.0.2.10, 192.0.2.11")
    browser.type("#f-capacity", "30")
    browser.click("#resource-form button[type=submit]")
    browser.find(".notice.ok")
    assert "customer-a" in browser.texts("#mapping-gateways td.name")
    created = switch.api.get("/api/v1/mapping-gateways?name=customer-a")["items"][0]
    assert (created["ips"], created["capacity"], created["enabled"]) == (
        ["192.0.2.10", "192.0.2.11"], 30, True)
    browser.screenshot("gateways-mapping")


def test_create_a_routing_gateway(browser: Browser, switch: Softswitch) -> None:
    browser.go("gateways?kind=routing", "#routing-gateways[data-loaded]")
    browser.click("button.new")
    browser.type("#f-name", "vendor-eu")
    browser.type("#f-host", "198.51.100.7")
    browser.type("#f-prefixes", "44, 33")
    browser.type("#f-priority", "1")
    browser.click("details > summary")  # the timers are under "More settings"
    browser.type("#f-invite_timeout", "4")
    browser.click("#resource-form button[type=submit]")
    browser.find(".notice.ok")
    made = switch.api.get("/api/v1/routing-gateways?name=vendor-eu")["items"][0]
    assert (made["host"], made["port"], made["prefixes"], made["priority"],
            made["invite_timeout"]) == ("198.51.100.7", 5060, ["44", "33"], 1, 4)
    browser.screenshot("gateways-routing")


def test_an_edit_after_a_concurrent_change_is_refused(browser: Browser,
                                                       switch: Softswitch) -> None:
    api = switch.api
    gw = api.get("/api/v1/routing-gateways?name=vendor-eu")["items"][0]
    browser.go("gateways?kind=routing", "#routing-gateways[data-loaded] td.name")
    browser.click("#routing-gateways button.edit")
    browser.find("#resource-form #f-capacity")
    # Someone else changes the same gateway meanwhile, through the API.
    status, body, _ = api.call("PATCH", f"/api/v1/routing-gateways/{gw['id']}",
                               {"capacity": 77})
    assert status == 200, body
    browser.type("#f-capacity", "5")
    browser.click("#resource-form button[type=submit]")
    assert "Changed by someone else" in browser.text_of("#resource-form .notice.conflict")
    browser.screenshot("gateway-conflict")
    assert api.get(f"/api/v1/routing-gateways/{gw['id']}")["capacity"] == 77  # not overwritten
    # Reload shows the current version; the change then goes through.
    browser.click("#resource-form button.reload")
    browser.value_is("#f-capacity", "77")
    browser.type("#f-capacity", "5")
    browser.click("#resource-form button[type=submit]")
    browser.find(".notice.ok")
    assert api.get(f"/api/v1/routing-gateways/{gw['id']}")["capacity"] == 5


def test_disable_enable_and_delete(browser: Browser, switch: Softswitch) -> None:
    api = switch.api
    api.post("/api/v1/routing-gateways", {"name": "to-delete", "host": "192.0.2.99"})
    browser.go("gateways?kind=routing", "#routing-gateways[data-loaded] td.name")
    row = "#routing-gateways tr:has(td.name)"
    browser.type("#page-gateways input.filter", "to-delete")
    assert browser.texts(f"{row} td.name") == ["to-delete"]
    browser.click(f"{row} button.toggle")
    browser.find(".notice.ok")
    assert api.get("/api/v1/routing-gateways?name=to-delete")["items"][0]["enabled"] is False
    # The list read again shows it disabled (a Delete on the version before would be
    # refused as a concurrent change).
    browser.wait(lambda d: browser.texts(f"{row} button.toggle") == ["Enable"])
    browser.click(f"{row} button.delete")
    browser.accept_confirm()
    wait_for(lambda: not api.get("/api/v1/routing-gateways?name=to-delete")["items"])
    assert api.get("/api/v1/routing-gateways?name=to-delete")["items"] == []


def test_markup_in_names_and_user_agents_is_shown_as_text(browser: Browser,
                                                          switch: Softswitch) -> None:
    api = switch.api
    for name in (SCRIPT_NAME, IMG_NAME):
        api.post("/api/v1/routing-gateways", {"name": name, "host": "192.0.2.70"})
    api.post("/api/v1/phones", {"username": "3001", "password": "Phone-secret-3001",
                                "display_name": IMG_NAME})
    # The engine loads the new phone within a second.
    assert wait_for(lambda: register(switch.sip_port, "3001", "Phone-secret-3001", UA) == 200)
    browser.go("gateways?kind=routing", "#routing-gateways[data-loaded] td.name")
    names = browser.texts("#routing-gateways td.name")
    assert SCRIPT_NAME in names and IMG_NAME in names
    browser.go("phones", "#phones[data-loaded] td")
    assert IMG_NAME in browser.texts("#phones td")
    browser.go("registrations", "#registrations[data-loaded] td.user-agent")
    assert browser.texts("#registrations td.user-agent") == [UA]
    browser.screenshot("registrations")
    # Nothing ran: no alert, no handler, no element made from the data.
    with pytest.raises(NoAlertPresentException):
        browser.driver.switch_to.alert.text  # noqa: B018 - raises when there is none
    ran = browser.driver.execute_script("return [window.__xss, window.__xss_ua]")
    assert ran == [None, None]
    assert not browser.all("#view img, #view b, #view script")


def test_unregister(browser: Browser, switch: Softswitch) -> None:
    browser.go("registrations", "#registrations[data-loaded] td.user-agent")
    browser.click("#registrations button.unregister")
    browser.accept_confirm()
    browser.find(".notice.ok")
    assert wait_for(lambda: not switch.api.get("/api/v1/registrations")["items"])


def test_lift_a_suspension(browser: Browser, switch: Softswitch) -> None:
    api = switch.api
    retries = api.get("/api/v1/parameters/SS_AUTHENTICATION_MAX_RETRY")["value"]
    for _ in range(retries + 1):
        register(switch.sip_port, "3001", "not-the-password", "bad-phone", "127.0.0.2")
    assert wait_for(lambda: api.get("/api/v1/suspensions")["items"])
    browser.go("security", "#suspensions[data-loaded] td")
    assert "3001" in browser.texts("#suspensions td")
    browser.screenshot("security")
    browser.click("#suspensions button.lift")
    browser.accept_confirm()
    browser.find(".notice.ok")
    assert api.get("/api/v1/suspensions")["items"] == []


def test_phones_page(browser: Browser, switch: Softswitch) -> None:
    browser.go("phones", "#phones[data-loaded]")
    browser.click("button.new")
    browser.type("#f-username", "3002")
    browser.type("#f-password", "Phone-secret-3002")
    browser.type("#f-display_name", "Desk 2")
    browser.click("#resource-form button[type=submit]")
    browser.find(".notice.ok")
    assert switch.api.get("/api/v1/phones?username=3002")["items"][0]["display_name"] == "Desk 2"
    browser.screenshot("phones")


def test_number_rules(browser: Browser, switch: Softswitch) -> None:
    api = switch.api
    browser.go("numbers", "#transforms[data-loaded]")
    browser.click("button.new")
    browser.type("#f-number", "0800123")
    browser.type("#f-replacement", "44800123")
    browser.click("#resource-form button[type=submit]")
    browser.find(".notice.ok")
    assert api.get("/api/v1/number-transforms?number=0800123")["items"][0][
        "replacement"] == "44800123"
    browser.screenshot("number-transforms")
    browser.go("numbers?tab=groups", "#groups[data-loaded]")
    browser.click("button.new")
    browser.type("#f-name", "fraud")
    browser.click("#resource-form button[type=submit]")
    browser.find(".notice.ok")
    browser.click("#groups button.numbers")
    browser.type("#bulk-numbers", "4420123\n4420124\n44-20")
    browser.click("button.add-numbers")
    assert "'44-20': a number is" in browser.text_of("#group-numbers .field-error")
    browser.type("#bulk-numbers", "4420123\n4420124")
    browser.click("button.add-numbers")
    browser.find("#group-numbers .notice.ok")
    assert browser.texts("#group-numbers ul.numbers li") == ["4420123", "4420124"]
    browser.screenshot("number-groups")


def test_parameters(browser: Browser, switch: Softswitch) -> None:
    browser.go("parameters", "#parameters[data-loaded]")
    browser.type("#page-parameters input.filter", "SS_SIP_TIMEOUT_INVITE")
    browser.click("#parameters button.edit")
    browser.type("[data-param=SS_SIP_TIMEOUT_INVITE] input", "999")
    browser.click("[data-param=SS_SIP_TIMEOUT_INVITE] button.save")
    assert "at most" in browser.text_of("#err-SS_SIP_TIMEOUT_INVITE")
    browser.screenshot("parameter-error")
    browser.type("[data-param=SS_SIP_TIMEOUT_INVITE] input", "12")
    browser.click("[data-param=SS_SIP_TIMEOUT_INVITE] button.save")
    browser.find(".notice.ok")
    assert switch.api.get("/api/v1/parameters/SS_SIP_TIMEOUT_INVITE")["value"] == 12
    browser.type("#page-parameters input.filter", "")
    browser.screenshot("parameters")


def test_upstream_registration(browser: Browser, switch: Softswitch) -> None:
    gw = switch.api.get("/api/v1/routing-gateways?name=vendor-eu")["items"][0]
    browser.go("upstream", "#upstream[data-loaded]")
    browser.find(f"#upstream-gateway option[value='{gw['id']}']")
    from selenium.webdriver.support.ui import Select

    Select(browser.find("#upstream-gateway")).select_by_value(str(gw["id"]))
    browser.type("#f-username", "trunk-user")
    browser.type("#f-registrar", "127.0.0.1:9")
    browser.click("#upstream-form button[type=submit]")
    browser.find(".notice.ok")
    assert switch.api.get(f"/api/v1/routing-gateways/{gw['id']}/registration")[
        "username"] == "trunk-user"
    assert wait_for(lambda: switch.api.get("/api/v1/upstream-registrations")["items"])
    browser.go("upstream", "#upstream[data-loaded] td")
    browser.screenshot("upstream")


def test_operators_page(browser: Browser, switch: Softswitch) -> None:
    browser.go("operators", "#operators[data-loaded]")
    browser.click("button.new")
    browser.type("#f-name", "bob")
    browser.type("#f-password", "short")
    browser.click("#operator-form button[type=submit]")
    assert "10-256 characters" in browser.text_of("#err-password")
    browser.type("#f-password", "a long enough password")
    browser.click("#operator-form button[type=submit]")
    browser.find(".notice.ok")
    bob = switch.api.get("/api/v1/operators/bob")
    assert bob["role"] == "read"
    browser.screenshot("operators")
    browser.type("#page-operators input.filter", "bob")
    browser.click("#operators button.delete")
    browser.accept_confirm()
    browser.find(".notice.ok")
    assert switch.api.call("GET", "/api/v1/operators/bob")[0] == 404


def test_audit_names_the_operator(browser: Browser) -> None:
    browser.go("audit", "#audit[data-loaded] td")
    actors = set(browser.texts("#audit tbody td:nth-child(3)"))
    assert f"operator:{ADMIN}" in actors
    browser.type("#audit-resource", "routing-gateways")
    browser.click("#audit-filters button[type=submit]")
    wait_for(lambda: all(t.startswith("routing-gateways")
                         for t in browser.texts("#audit tbody td:nth-child(5)")))
    assert all(t.startswith("routing-gateways")
               for t in browser.texts("#audit tbody td:nth-child(5)"))
    browser.screenshot("audit")
