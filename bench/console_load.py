"""Operators' browsers on the console while ``bench/cps.py`` loads the softswitch.

``ConsoleLoad`` makes a read-only operator account through the admin API, then starts
one headless Chromium per page of ``PAGES``, each driven by its own chromedriver,
signed in through the sign-in form and left on its page, which polls the API as it
does for an operator: the Dashboard (``/stats``, ``/security/stats`` and
``/stats/gateways`` every 5 s) and Live calls (``/calls`` every 3 s). One browser per
page rather than two tabs of one: a tab that is not in front is a background tab, whose
timers a browser may slow down, and the measure wants both pages polling at their real
pace (each step counts the requests each page made: ``requests()``).

Chromium is Debian's ``/usr/bin/chromium`` with the flags of the console's browser
tests (``tests/console/consolekit.py``), a temporary ``--user-data-dir`` per browser,
and ``--host-resolver-rules`` that resolve no host name at all: the pages are on
``http://127.0.0.1:PORT`` and nothing else is reachable by name.

The browsers' CPU is not the engine's: chromedriver, and so Chromium and every process
and thread it starts, runs under the ``SCHED_IDLE`` policy, set (with nice 19) before
chromedriver starts and inherited: it gets a core only when the softswitch, its API and
the sipps leave it idle (``cps.py`` pins nothing, so neither is the browser pinned).
Nice alone is not enough: Chromium sets its threads' nice values itself as it makes
them (0, and -8 for its display threads), which it may as root; their policy it leaves
as it is, and under ``SCHED_IDLE`` the nice value counts for nothing. ``not_idle()``
counts (and puts back) any thread that is not ``SCHED_IDLE``.
At the rates this machine sustains the browsers get what they need and poll at their
real pace; on a saturated machine they would fall behind (each step counts the
requests each page made: ``requests()``).

``stop()`` quits each browser and then ends, by pid, its chromedriver and any of the
processes it had started that is still there.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procstat import descendants, proc_cpu_s

REPO = Path(__file__).resolve().parents[1]
CONSOLE_TESTS = REPO / "tests" / "console"

# (page, what shows once its first poll has answered)
PAGES = (("dashboard", "#gateway-quality[data-loaded]"), ("calls", "#live-calls[data-loaded]"))
# What a page asks for every period (seconds): the requests a step should see.
POLLS_PER_S = {"dashboard": 3 / 5, "calls": 1 / 3}
NICE = 19
OPERATOR = "bench-console"
# No host name resolves: the console is on 127.0.0.1, named by its address.
NO_NAMES = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
COUNT_JS = ("return performance.getEntriesByType('resource')"
            ".filter(e => e.name.includes('/api/v1/')).length")


def _lower_priority() -> None:
    """In chromedriver's process before exec: inherited by all it starts."""
    os.nice(NICE)
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))


def _cpu_s(pid: int) -> float:
    return proc_cpu_s(pid) or 0.0


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): with the pid, names it."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2:].split()[19])


@dataclass
class ConsoleBrowser:
    """One Chromium (and its chromedriver) signed in and left on one console page."""

    page: str
    ready: str
    profile: Path
    driver: Any = None  # selenium WebDriver
    driver_pid: int | None = None  # chromedriver's
    # Every process seen below chromedriver, pid -> start time, ended by pid at the end
    # should the browser's own exit leave any of them.
    seen: dict[int, int] = field(default_factory=dict)

    def note_processes(self) -> None:
        if self.driver_pid is None:
            return
        for pid in descendants(self.driver_pid):
            start = _start_time(pid)
            if start is not None:
                self.seen.setdefault(pid, start)

    def cpu_s(self) -> float:
        """utime+stime of chromedriver and of every process below it, alive now."""
        if self.driver_pid is None:
            return 0.0
        return _cpu_s(self.driver_pid) + sum(
            _cpu_s(p) for p in descendants(self.driver_pid))


class ConsoleLoad:
    """Headless Chromium browsers on the console of one softswitch (see the module)."""

    def __init__(self, workdir: Path, api_base: str, admin: Any,
                 log: Callable[[str], None] = print) -> None:
        self.workdir = workdir
        self.api_base = api_base
        self.admin = admin  # tests/support.py's Api with the admin token
        self.log = log
        self.password = secrets.token_urlsafe(18)
        self.browsers: list[ConsoleBrowser] = []
        self.parked = False
        self._operator_made = False

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """The operator account, then one signed-in browser per page."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self._operator_made:
            self.admin.post("/api/v1/operators", {"name": OPERATOR, "role": "read",
                                                  "password": self.password})
            self._operator_made = True
        try:
            for page, ready in PAGES:
                browser = self._launch(page, ready)
                self.browsers.append(browser)
                self._sign_in(browser)
                self._open(browser)
                browser.note_processes()
        except BaseException:
            self.stop()
            raise
        self.parked = False
        self.log(f"console: {len(self.browsers)} browsers signed in as {OPERATOR!r} on "
                 f"{', '.join(b.page for b in self.browsers)}, SCHED_IDLE; threads not "
                 f"SCHED_IDLE: {self.not_idle()}")

    def _launch(self, page: str, ready: str) -> ConsoleBrowser:
        if str(CONSOLE_TESTS) not in sys.path:
            sys.path.insert(0, str(CONSOLE_TESTS))
        from consolekit import CHROMEDRIVER, CHROMIUM, CHROMIUM_ARGS
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        # Selenium Manager would look for drivers online: the paths are given.
        os.environ["SE_OFFLINE"] = "true"
        profile = Path(tempfile.mkdtemp(prefix=f"console-{page}-", dir=self.workdir))
        browser = ConsoleBrowser(page, ready, profile)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in [*CHROMIUM_ARGS, f"--user-data-dir={profile}", NO_NAMES]:
            options.add_argument(arg)
        service = Service(CHROMEDRIVER, log_output=str(self.workdir / f"chromedriver-{page}.log"),
                          popen_kw={"preexec_fn": _lower_priority})
        try:
            browser.driver = webdriver.Chrome(service=service, options=options)
        except BaseException:
            # The driver may be up without a browser: end it by its pid.
            proc = getattr(service, "process", None)
            if proc is not None:
                browser.driver_pid = proc.pid
                self.browsers.append(browser)
            else:
                shutil.rmtree(profile, ignore_errors=True)
            raise
        browser.driver_pid = service.process.pid
        return browser

    def _wait(self, browser: ConsoleBrowser, what: Callable[[Any], Any],
              timeout: float = 20.0) -> Any:
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(browser.driver, timeout, poll_frequency=0.1).until(what)

    def _sign_in(self, browser: ConsoleBrowser) -> None:
        from selenium.webdriver.common.by import By

        d = browser.driver
        d.get(self.api_base + "/console/login")
        self._wait(browser, lambda drv: drv.find_elements(By.CSS_SELECTOR, "#name"))
        d.find_element(By.CSS_SELECTOR, "#name").send_keys(OPERATOR)
        d.find_element(By.CSS_SELECTOR, "#password").send_keys(self.password)
        d.find_element(By.CSS_SELECTOR, "#signin").click()
        self._wait(browser, lambda drv: "/console/login" not in drv.current_url
                   and drv.find_elements(By.CSS_SELECTOR, "#nav a"))

    def _open(self, browser: ConsoleBrowser) -> None:
        """Load the page afresh and wait for its first poll's answer."""
        from selenium.webdriver.common.by import By

        d = browser.driver
        d.get(f"{self.api_base}/console/#/{browser.page}")
        if "/console/login" in d.current_url:  # the session ended: sign in again
            self._sign_in(browser)
            d.get(f"{self.api_base}/console/#/{browser.page}")
        self._wait(browser, lambda drv: drv.find_elements(By.CSS_SELECTOR, browser.ready))
        # Room for every request of a long run in the page's resource timings.
        d.execute_script("performance.setResourceTimingBufferSize(1000000)")

    def reopen(self) -> None:
        """Each page loaded again (after the softswitch restarted, or to end parking)."""
        for browser in self.browsers:
            self._open(browser)
            browser.note_processes()
        self.parked = False

    def park(self) -> None:
        """Each browser on about:blank: up, but no page and no request to the API."""
        for browser in self.browsers:
            browser.driver.get("about:blank")
        self.parked = True

    def stop(self) -> None:
        """Quit each browser, then end by pid what is left of it; remove its profile."""
        for browser in self.browsers:
            browser.note_processes()
            if browser.driver is not None:
                with contextlib.suppress(Exception):
                    browser.driver.quit()
                browser.driver = None
            self._end(browser)
            shutil.rmtree(browser.profile, ignore_errors=True)
        self.browsers = []

    def _end(self, browser: ConsoleBrowser) -> None:
        pids = list(browser.seen.items())
        if browser.driver_pid is not None:
            start = _start_time(browser.driver_pid)
            if start is not None:
                pids.insert(0, (browser.driver_pid, start))
        for sig, pause in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 1.0)):
            alive = [pid for pid, start in pids if _start_time(pid) == start]
            if not alive:
                break
            for pid in alive:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and any(
                    _start_time(pid) == start for pid, start in pids):
                time.sleep(0.05)
        if browser.driver_pid is not None:
            # chromedriver is our child: reap it (its own children are reaped by it or
            # by init once it is gone).
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(browser.driver_pid, os.WNOHANG)
        left = [pid for pid, start in pids if _start_time(pid) == start]
        if left:
            self.log(f"console: processes of the {browser.page} browser still there: {left}")

    # ------------------------------------------------------------------ measures

    def requests(self) -> dict[str, int]:
        """API requests each page has made since it was loaded (its resource timings)."""
        out: dict[str, int] = {}
        for browser in self.browsers:
            try:
                out[browser.page] = int(browser.driver.execute_script(COUNT_JS))
            except Exception:  # a page being loaded again: not counted
                out[browser.page] = -1
        return out

    def cpu_s(self) -> float:
        """The browsers' CPU (chromedriver, Chromium and its processes), alive now."""
        return sum(b.cpu_s() for b in self.browsers)

    def threads(self) -> list[int]:
        """The thread ids of chromedriver and of every process below it."""
        tids = []
        for browser in self.browsers:
            if browser.driver_pid is None:
                continue
            for pid in [browser.driver_pid, *descendants(browser.driver_pid)]:
                with contextlib.suppress(OSError, ValueError):
                    tids += [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir()]
        return tids

    def not_idle(self) -> int:
        """How many of the browsers' threads were not under ``SCHED_IDLE``; each is put
        back under it."""
        moved = 0
        for tid in self.threads():
            with contextlib.suppress(OSError):
                if os.sched_getscheduler(tid) != os.SCHED_IDLE:
                    os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
                    moved += 1
        return moved


def chromium_available() -> str:
    """Why the console system cannot run here ("" when it can)."""
    for path in ("/usr/bin/chromium", "/usr/bin/chromedriver"):
        if not Path(path).exists():
            return f"{path} is not installed (apt-get install chromium chromium-driver)"
    probe = subprocess.run([sys.executable, "-c", "import selenium"], capture_output=True,
                           check=False)
    if probe.returncode != 0:
        return "selenium is not importable in this venv"
    return ""
