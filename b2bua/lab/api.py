"""A small REST client for the lab's softswitches (standard library only).

Proxies from the environment are ignored: the lab's APIs are on loopback or inside the
lab's own networks, never behind a proxy.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ApiError(Exception):
    """The API refused a request or could not be reached."""


@dataclass(frozen=True, slots=True)
class Api:
    base: str
    token: str = ""
    timeout: float = 10.0

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")[:500]
            raise ApiError(f"{method} {self.base}{path}: {err.code} {detail}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise ApiError(f"{method} {self.base}{path}: {reason}") from None
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def engine_up(self) -> bool:
        try:
            health = self.get("/api/v1/health")
        except ApiError:
            return False
        return isinstance(health, dict) and health.get("engine") == "up"


def wait_for(check: Callable[[], T], timeout: float, interval: float = 0.1) -> T | None:
    """Call ``check()`` until it returns something true or ``timeout`` passes; API
    errors count as "not yet". Returns the last result (None after an error)."""
    deadline = time.monotonic() + timeout
    while True:
        result: T | None
        try:
            result = check()
        except ApiError:
            result = None
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)
