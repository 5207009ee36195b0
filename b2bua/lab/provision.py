"""Configuring the lab's two softswitches, as an operator would: an API token made with
``softswitch token create``, then only REST API calls.

Softswitch A (under test):
    customer trunk ``customer`` (IP 198.19.0.10), phone account 2001,
    routing gateways ``dead-vendor`` (198.19.0.30, INVITE timeout 2 s, tried first) and
    ``softswitch-b`` (198.19.0.40, ``rtp_encryption`` on), media always relayed,
    NAT keep-alive every 10 s.
Softswitch B:
    mapping gateway ``softswitch-a`` (IP 198.19.0.1, ``rtp_encryption`` on), routing
    gateway ``vendor`` (198.19.200.2), media always relayed.
Both use the same ``SS_RTPENCRYPTIONMODE`` and ``SS_RTPENCRYPTIONKEY``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from b2bua.lab import plan
from b2bua.lab.api import Api, ApiError, wait_for

TOKEN_NAME = "lab"


class ProvisionError(Exception):
    """A softswitch could not be configured."""


def create_token(db: Path | str) -> str:
    """``softswitch token create --db DB --name lab --role admin``; the database (a
    SQLite file or a ``postgresql://`` URL) is created and migrated if needed."""
    cmd = [sys.executable, "-m", "b2bua.cli", "token", "create", "--db", str(db),
           "--name", TOKEN_NAME, "--role", "admin"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    token = proc.stdout.strip()
    if proc.returncode != 0 or not token:
        raise ProvisionError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.returncode}")
    return token


def set_encryption(api: Api, mode: int) -> None:
    """Media always relayed; the key first, so the mode is never set without a key that
    fits it."""
    api.put("/api/v1/parameters/SS_MEDIAPROXYMODE", {"value": "On"})
    api.put("/api/v1/parameters/SS_RTPENCRYPTIONKEY", {"value": plan.CIPHER_KEYS[mode]})
    api.put("/api/v1/parameters/SS_RTPENCRYPTIONMODE", {"value": mode})


def configure_a(api: Api, mode: int, keepalive_period: int) -> None:
    try:
        set_encryption(api, mode)
        api.put("/api/v1/parameters/SS_SIP_NAT_KEEP_ALIVE_PERIOD",
                {"value": keepalive_period})
        api.post("/api/v1/mapping-gateways",
                 {"name": "customer", "ips": [plan.CUSTOMER_ADDR]})
        api.post("/api/v1/routing-gateways", {
            "name": "dead-vendor", "host": plan.DEAD_ADDR, "port": plan.SIP_PORT,
            "priority": 0, "invite_timeout": plan.DEAD_INVITE_TIMEOUT})
        api.post("/api/v1/routing-gateways", {
            "name": "softswitch-b", "host": plan.B_ADDR, "port": plan.SIP_PORT,
            "priority": 1, "rtp_encryption": True})
        api.post("/api/v1/phones",
                 {"username": plan.PHONE_USER, "password": plan.PHONE_PASSWORD,
                  "display_name": "Lab phone"})
    except ApiError as exc:
        raise ProvisionError(f"softswitch A: {exc}") from None
    _wait_loaded(api, "A", 2)


def configure_b(api: Api, mode: int) -> None:
    try:
        set_encryption(api, mode)
        api.post("/api/v1/mapping-gateways", {
            "name": "softswitch-a", "ips": [plan.A_ADDR], "rtp_encryption": True})
        api.post("/api/v1/routing-gateways", {
            "name": "vendor", "host": plan.VENDOR_ADDR, "port": plan.SIP_PORT})
    except ApiError as exc:
        raise ProvisionError(f"softswitch B: {exc}") from None
    _wait_loaded(api, "B", 1)


def _wait_loaded(api: Api, label: str, routing_gateways: int) -> None:
    """The engine applies configuration within a second: wait until it has."""

    def loaded() -> bool:
        engine = api.get("/api/v1/engine")
        params = engine.get("params", {})
        return bool(engine.get("routing_gateways") == routing_gateways
                    and params.get("SS_MEDIAPROXYMODE") == "On")

    if not wait_for(loaded, timeout=10):
        raise ProvisionError(f"softswitch {label} did not load its configuration in 10 s")
