"""Signing in to the console: the sign-in page, the lock-out, CSRF on the session's API
calls, a read-only operator, the Content-Security-Policy and no request to another host."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from consolekit import ADMIN, PASSWORD, READER, Browser
from support import REPO, SOFTSWITCH, Softswitch

from api.console import CSP, accounts
from b2bua.storage.operators import MAX_FAILURES


class Session:
    """A console session driven with urllib, as a script (or an attacker's page) would."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirect())
        self.csrf = ""

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None,
             form: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        data = None
        req_headers = dict(headers or {})
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            req_headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            req_headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers=req_headers)
        try:
            with self.opener.open(req, timeout=10) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), dict(err.headers)

    def sign_in(self, name: str, password: str = PASSWORD) -> int:
        _, page, _ = self.call("GET", "/console/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        status, _, _ = self.call("POST", "/console/login", form={
            "name": name, "password": password, "csrf_token": token.group(1)})
        if status == 303:
            _, app, _ = self.call("GET", "/console/")
            found = re.search(r'name="csrf-token" content="([^"]+)"', app)
            assert found
            self.csrf = found.group(1)
        return status


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_sign_in(browser: Browser) -> None:
    browser.open("/console/")
    browser.find("#signin")  # not signed in: the sign-in page
    assert browser.driver.current_url.endswith("/console/login")
    browser.screenshot("signin")
    browser.sign_in(ADMIN)
    browser.find("#nav a.active")
    assert browser.text_of("#who") == f"{ADMIN} (admin)"
    titles = [a.text for a in browser.all("#nav a")]
    assert titles == ["Dashboard", "Live calls", "CDRs", "Gateways", "Phones", "Number rules",
                      "Parameters", "Registrations", "Security", "Upstream", "Audit",
                      "Routing test", "Operators"]
    browser.find("#page-dashboard")  # the first page
    browser.screenshot("dashboard")


def test_wrong_password_then_lock_out(browser: Browser, switch: Softswitch) -> None:
    api = switch.api
    status, body, _ = api.call("POST", "/api/v1/operators",
                               {"name": "lockme", "role": "admin", "password": PASSWORD})
    assert status == 201, body
    for attempt in range(MAX_FAILURES):
        browser.sign_in("lockme", "not the password")
        assert browser.text_of("#signin-error") == accounts.REFUSED, attempt
        if attempt == 0:
            browser.screenshot("signin-refused")
    locked = api.get("/api/v1/operators/lockme")
    assert locked["locked_until"] is not None and locked["failures"] == 0
    # Locked: the right password is refused with the same message, in the browser and
    # straight to the sign-in endpoint.
    browser.sign_in("lockme")
    assert browser.text_of("#signin-error") == accounts.REFUSED
    assert Session(switch.api_base).sign_in("lockme") == 401
    entries = api.get("/api/v1/audit?action=lock&resource=operators/lockme")["items"]
    assert [(e["actor"], e["detail"]["failures"]) for e in entries] == [
        ("console", MAX_FAILURES)]
    # An admin unlocks it (as `softswitch operator unlock` does); it signs in again.
    status, _, _ = api.call("POST", "/api/v1/operators/lockme/unlock")
    assert status == 200
    browser.sign_in("lockme")
    browser.find("#nav a.active")


def test_a_session_write_without_its_csrf_token_is_refused(switch: Softswitch) -> None:
    session = Session(switch.api_base)
    assert session.sign_in(ADMIN) == 303
    status, _, _ = session.call("GET", "/api/v1/mapping-gateways")
    assert status == 200  # reading needs no token
    body = {"name": "csrf-test", "ips": ["192.0.2.50"]}
    status, text, _ = session.call("POST", "/api/v1/mapping-gateways", body)
    assert status == 403 and "CSRF" in json.loads(text)["detail"]
    status, _, _ = session.call("POST", "/api/v1/mapping-gateways", body,
                                headers={"X-CSRF-Token": "forged"})
    assert status == 403
    # A token of another session does not do either.
    other = Session(switch.api_base)
    assert other.sign_in(ADMIN) == 303
    status, _, _ = session.call("POST", "/api/v1/mapping-gateways", body,
                                headers={"X-CSRF-Token": other.csrf})
    assert status == 403
    assert switch.api.get("/api/v1/mapping-gateways?name=csrf-test")["items"] == []
    status, text, _ = session.call("POST", "/api/v1/mapping-gateways", body,
                                   headers={"X-CSRF-Token": session.csrf})
    assert status == 201, text
    entry = switch.api.get("/api/v1/audit?resource=mapping-gateways&action=create")["items"]
    assert entry[-1]["actor"] == f"operator:{ADMIN}"
    # Signing out with the form's token ends the session.
    status, _, headers = session.call("POST", "/console/logout",
                                      form={"csrf_token": session.csrf})
    assert status == 303 and headers["Location"] == "/console/login"
    assert session.call("GET", "/api/v1/mapping-gateways")[0] == 401


def test_a_read_operator_sees_no_controls_and_the_api_refuses(browser: Browser,
                                                             switch: Softswitch) -> None:
    switch.api.post("/api/v1/routing-gateways", {"name": "read-only-view",
                                                 "host": "192.0.2.60"})
    browser.sign_in(READER)
    browser.find("#nav a.active")
    assert browser.text_of("#who") == f"{READER} (read)"
    assert "Operators" not in [a.text for a in browser.all("#nav a")]
    browser.go("gateways?kind=routing", "#routing-gateways[data-loaded] td.name")
    labels = set(browser.texts("#page-gateways button"))
    assert labels == {"Show"}, labels
    browser.click("#routing-gateways button.show")
    browser.find("#resource-form")
    inputs = browser.all("#resource-form input, #resource-form select")
    assert inputs and all(not i.is_enabled() for i in inputs)
    assert not [b for b in browser.all("#resource-form button[type=submit]") if b.is_displayed()]
    browser.screenshot("read-only-gateway")
    for page, ready in (("parameters", "#parameters[data-loaded]"),
                        ("numbers", "#transforms[data-loaded]"),
                        ("phones", "#phones[data-loaded]")):
        browser.go(page, ready)
        assert not browser.all(f"#page-{page} button.edit, #page-{page} button.new, "
                               f"#page-{page} button.delete")
    # The page's own fetch with the session's CSRF token: the API refuses a read operator.
    status = browser.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        fetch('/api/v1/routing-gateways', {method: 'POST', credentials: 'same-origin',
              headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf},
              body: JSON.stringify({name: 'sneaky', host: '192.0.2.61'})})
          .then((r) => done(r.status));
    """)
    assert status == 403
    session = Session(switch.api_base)
    assert session.sign_in(READER) == 303
    status, text, _ = session.call("PATCH", "/api/v1/routing-gateways/1", {"capacity": 1},
                                   headers={"X-CSRF-Token": session.csrf})
    assert status == 403 and json.loads(text)["detail"] == "this operator may only read"
    assert session.call("GET", "/api/v1/operators")[0] == 403
    assert switch.api.get("/api/v1/routing-gateways?name=sneaky")["items"] == []


def test_csp_on_every_console_response_and_no_outside_request(browser: Browser,
                                                               switch: Softswitch) -> None:
    session = Session(switch.api_base)
    for path in ("/console/login", "/console/static/console.css",
                 "/console/static/js/main.js", "/console/static/js/lib.js",
                 "/console/vendor/uplot/uPlot.esm.js"):
        status, _, headers = session.call("GET", path)
        assert status == 200, path
        assert headers["Content-Security-Policy"] == CSP
        assert headers["X-Content-Type-Options"] == "nosniff"
    assert session.sign_in(ADMIN) == 303
    status, page, headers = session.call("GET", "/console/")
    assert headers["Content-Security-Policy"] == CSP and "<script>" not in page
    assert "style=" not in page

    browser.sign_in(ADMIN)
    browser.find("#nav a.active")
    browser.requested_urls()  # start both logs afresh
    browser.console_log()
    for page, ready in (("gateways", "#mapping-gateways[data-loaded]"),
                        ("parameters", "#parameters[data-loaded]"),
                        ("audit", "#audit[data-loaded]"), ("dashboard", "#page-dashboard")):
        browser.go(page, ready)
    urls = browser.requested_urls()
    resources = browser.driver.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)")
    assert urls and resources
    outside = [u for u in urls + resources
               if not u.startswith(switch.api_base + "/") and not u.startswith("data:")]
    assert outside == []
    # Nothing the policy had to refuse, and no script error, on any of those pages.
    log = browser.console_log()
    assert not [e for e in log if "Content Security Policy" in e["message"]
                or (e["level"] == "SEVERE" and e["source"] == "javascript")], log


def operator_cli(switch: Softswitch, *args: str,
                 stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``softswitch operator ARGS`` where an operator would run it: beside var/."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("SOFTSWITCH_TOKEN", None)  # the admin token beside the database, var/admin-token
    return subprocess.run([*SOFTSWITCH, "operator", *args, "--api", switch.api_base],
                          cwd=switch.workdir, input=stdin, capture_output=True, text=True,
                          timeout=60, env=env, check=False)


def test_operator_commands(switch: Softswitch) -> None:
    added = operator_cli(switch, "add", "carol", "--role", "read", "--password-file", "-",
                         stdin="carol-password-1\n")
    assert added.returncode == 0, added.stderr
    assert "added operator carol (read)" in added.stdout
    assert Session(switch.api_base).sign_in("carol", "carol-password-1") == 303
    short = operator_cli(switch, "add", "dave", "--password-file", "-", stdin="short\n")
    assert short.returncode == 1 and "password: 10-256 characters" in short.stderr
    no_tty = operator_cli(switch, "add", "dave")
    assert no_tty.returncode == 1 and "--password-file" in no_tty.stderr
    for _ in range(MAX_FAILURES):
        Session(switch.api_base).sign_in("carol", "wrong")
    listed = json.loads(operator_cli(switch, "list", "--json").stdout)
    carol = next(o for o in listed if o["name"] == "carol")
    assert carol["locked_until"] is not None
    assert "carol" in operator_cli(switch, "list").stdout
    assert operator_cli(switch, "unlock", "carol").returncode == 0
    assert operator_cli(switch, "password", "carol", "--password-file", "-",
                        stdin="carol-password-2\n").returncode == 0
    assert Session(switch.api_base).sign_in("carol", "carol-password-2") == 303
    assert operator_cli(switch, "remove", "carol").returncode == 0
    gone = operator_cli(switch, "remove", "carol")
    assert gone.returncode == 1 and "404" in gone.stderr
    actions = [(e["actor"], e["action"]) for e in switch.api.get(
        "/api/v1/audit?resource=operators/carol")["items"]]
    assert actions == [("token:admin", "create"), ("operator:carol", "sign-in"),
                       ("console", "lock"), ("token:admin", "unlock"),
                       ("token:admin", "update"), ("operator:carol", "sign-in"),
                       ("token:admin", "delete")]
