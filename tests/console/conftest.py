"""The web console's browser tests: one real softswitch and one headless Chromium per
module (Debian's ``chromium`` and ``chromium-driver``; nothing is downloaded), an admin
and a read-only operator (``consolekit.py`` has the helpers)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from consolekit import ADMIN, CHROMEDRIVER, CHROMIUM, CHROMIUM_ARGS, PASSWORD, READER, Browser
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from support import Softswitch


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Softswitch]:
    """A real softswitch with an admin and a read-only operator."""
    sw = Softswitch(tmp_path_factory.mktemp("console")).start()
    try:
        for name, role in ((ADMIN, "admin"), (READER, "read")):
            status, body, _ = sw.api.call("POST", "/api/v1/operators",
                                          {"name": name, "role": role, "password": PASSWORD})
            assert status == 201, body
        yield sw
    finally:
        code = sw.stop()
        assert code == 0, f"softswitch exit code {code}\n{sw.log()[-3000:]}"


@pytest.fixture(scope="module")
def browser(switch: Softswitch) -> Iterator[Browser]:
    profile = tempfile.mkdtemp(prefix="console-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in [*CHROMIUM_ARGS, f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # Selenium Manager would look for drivers online: the paths are given, and it is told so.
    os.environ["SE_OFFLINE"] = "true"
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield Browser(driver, switch.api_base)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
