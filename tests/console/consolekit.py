"""What the console's browser tests share: the Chromium settings, a page-driving helper
and the screenshot folder (``var/screenshots/``, kept by CI as artefacts)."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait
from support import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = REPO / "var" / "screenshots"
ADMIN, READER = "alice", "rita"
PASSWORD = "console-test-password"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1440,1000"]


@dataclass
class Browser:
    driver: WebDriver
    base: str

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def wait(self, condition: Callable[[WebDriver], Any], timeout: float = 10.0) -> Any:
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(condition)
        except TimeoutException:
            logs = self.console_log()
            raise AssertionError(f"timed out on {self.driver.current_url}; browser log: "
                                 f"{logs}") from None

    def find(self, css: str, timeout: float = 10.0) -> WebElement:
        """The first element matching ``css`` once it is shown."""
        def shown(d: WebDriver) -> WebElement | bool:
            for found in d.find_elements(By.CSS_SELECTOR, css):
                if found.is_displayed():
                    return found
            return False
        element: WebElement = self.wait(shown, timeout)
        return element

    def click(self, css: str, timeout: float = 10.0) -> None:
        """Click the first shown element matching ``css``, again if a page redrew it."""
        def clicked(d: WebDriver) -> bool:
            try:
                self.find(css, timeout).click()
            except StaleElementReferenceException:
                return False
            return True
        self.wait(clicked, timeout)

    def type(self, css: str, text: str, clear: bool = True) -> None:
        """Type into the field matching ``css`` (found again if a page redrew it)."""
        def typed(d: WebDriver) -> bool:
            try:
                field = self.find(css)
                if clear:
                    field.clear()
                field.send_keys(text)
            except StaleElementReferenceException:
                return False
            return True
        self.wait(typed)

    def texts(self, css: str) -> list[str]:
        """The text of every element matching ``css`` (read again if a page redrew it)."""
        def read(d: WebDriver) -> tuple[list[str]] | bool:
            try:
                return ([str(e.text) for e in d.find_elements(By.CSS_SELECTOR, css)],)
            except StaleElementReferenceException:
                return False
        found: tuple[list[str]] = self.wait(read)
        return found[0]

    def value_is(self, css: str, expected: str, timeout: float = 10.0) -> None:
        """Wait until the input matching ``css`` holds ``expected``."""
        def holds(d: WebDriver) -> bool:
            try:
                return any(e.get_attribute("value") == expected
                           for e in d.find_elements(By.CSS_SELECTOR, css))
            except StaleElementReferenceException:
                return False
        self.wait(holds, timeout)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text_of(self, css: str) -> str:
        """The text of the first shown element matching ``css`` (read again if a page
        redrew it)."""
        def read(d: WebDriver) -> tuple[str] | bool:
            try:
                return (str(self.find(css).text),)
            except StaleElementReferenceException:
                return False
        found: tuple[str] = self.wait(read)
        return found[0]

    def sign_in(self, name: str, password: str = PASSWORD) -> None:
        self.driver.delete_all_cookies()
        self.open("/console/login")
        self.find("#name").send_keys(name)
        self.find("#password").send_keys(password)
        self.find("#signin").click()

    def go(self, page: str, ready: str) -> None:
        """Open a console page (``#/page?...``) and wait for ``ready`` to show (a table:
        ``#id[data-loaded]`` once its rows are in)."""
        url = f"{self.base}/console/#/{page}"
        if self.driver.current_url == url:  # the same address: loaded again, afresh
            self.driver.refresh()
        else:
            self.driver.get(url)
        self.find(ready)

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def console_log(self) -> list[dict[str, Any]]:
        return list(self.driver.get_log("browser"))

    def requested_urls(self) -> list[str]:
        """Every URL the browser asked for since the last call (from its network log)."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                urls.append(str(message["params"]["request"]["url"]))
        return urls

    def accept_confirm(self) -> None:
        alert = self.wait(lambda d: d.switch_to.alert)
        alert.accept()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def register(sip_port: int, username: str, password: str, user_agent: str,
             src_ip: str = "127.0.0.1") -> int:
    """REGISTER ``username`` to the softswitch with a digest answer to its challenge;
    the final status code (200, or 403 for a wrong password)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((src_ip, 0))
        sock.settimeout(3)
        port = int(sock.getsockname()[1])
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
        uri = f"sip:127.0.0.1:{sip_port}"

        def send(cseq: int, authorization: str = "") -> str:
            lines = [f"REGISTER {uri} SIP/2.0",
                     f"Via: SIP/2.0/UDP {src_ip}:{port};branch=z9hG4bK{secrets.token_hex(6)}"
                     ";rport",
                     "Max-Forwards: 70", f"From: <sip:{username}@127.0.0.1>;tag={tag}",
                     f"To: <sip:{username}@127.0.0.1>", f"Call-ID: {call_id}",
                     f"CSeq: {cseq} REGISTER", f"Contact: <sip:{username}@{src_ip}:{port}>",
                     "Expires: 300", f"User-Agent: {user_agent}"]
            if authorization:
                lines.append(f"Authorization: {authorization}")
            sock.sendto(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode(),
                        ("127.0.0.1", sip_port))
            while True:
                reply = sock.recv(65535).decode()
                if not reply.startswith("SIP/2.0 1"):
                    return reply

        challenge = send(1)
        if not challenge.startswith("SIP/2.0 401"):
            return int(challenge.split(" ", 2)[1])
        header = next(line for line in challenge.split("\r\n")
                      if line.lower().startswith("www-authenticate:"))
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', header.split(" ", 2)[2]))

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = md5(f"{username}:{params['realm']}:{password}")
        ha2 = md5(f"REGISTER:{uri}")
        cnonce, nc = secrets.token_hex(4), "00000001"
        if "qop" in params:
            answer = md5(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
            extra = f", qop=auth, nc={nc}, cnonce=\"{cnonce}\""
        else:
            answer = md5(f"{ha1}:{params['nonce']}:{ha2}")
            extra = ""
        authorization = (f'Digest username="{username}", realm="{params["realm"]}", '
                         f'nonce="{params["nonce"]}", uri="{uri}", response="{answer}", '
                         f'algorithm=MD5{extra}')
        final = send(2, authorization)
        return int(final.split(" ", 2)[1])
