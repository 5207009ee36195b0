"""The one registry of softswitch parameters.

Every parameter the engine reads is declared here with its type, default, range
and description. The API and the CLI validate against it, the engine reads typed
values through it, and ``docs/parameters.md`` is generated from it, so the three
cannot drift apart.

Values are stored as JSON in SQLite in their canonical form (see ``Param.validate``).
On/Off parameters use the strings ``"On"`` and ``"Off"`` as VOS3000 operators know
them; ``true``/``false`` are accepted on input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from b2bua.routing.periods import valid_zone
from b2bua.sip.edge import parse_addresses, parse_proxy
from b2bua.sip.hep import parse_destination


class ParamError(ValueError):
    """A value outside a parameter's type or range; the message is shown to operators."""


Validator = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: how to validate it, its default, and where it is documented."""

    name: str
    kind: str  # onoff | int | choice | string | seconds_list | optional_int | auto_int | int_pair
    default: Any
    group: str
    description: str
    unit: str = ""
    minimum: int | float | None = None
    maximum: int | float | None = None
    choices: tuple[Any, ...] = ()
    live: bool = True
    max_length: int = 1024
    extra_check: Validator | None = field(default=None, compare=False)

    def validate(self, value: Any) -> Any:
        """Return the canonical form of ``value`` or raise ParamError."""
        checker = _KIND_CHECKS[self.kind]
        canonical = checker(self, value)
        if self.extra_check is not None:
            self.extra_check(canonical)
        return canonical

    def parse_text(self, text: str) -> Any:
        """Parse a value typed on a command line, then validate it."""
        stripped = text.strip()
        if self.kind in ("int", "choice") and _looks_int(stripped):
            return self.validate(int(stripped))
        if self.kind == "optional_int":
            return self.validate(None if stripped.lower() in ("none", "null", "") else stripped)
        if self.kind == "auto_int":
            return self.validate(stripped if stripped.lower() == "auto" else _int_or_text(stripped))
        if self.kind in ("seconds_list", "int_pair"):
            parts = [p for p in stripped.replace("/", ",").split(",") if p.strip()]
            return self.validate([_number_or_text(p.strip()) for p in parts])
        return self.validate(stripped)

    def range_text(self) -> str:
        """Human-readable range for the docs table."""
        if self.kind == "onoff":
            return "On/Off"
        if self.kind == "choice":
            return " / ".join(str(c) for c in self.choices)
        if self.kind == "string":
            return f"text, up to {self.max_length} characters"
        if self.kind == "seconds_list":
            return f"comma-separated seconds, each {self.minimum}-{self.maximum}"
        if self.kind == "optional_int":
            return f"none or {self.minimum}-{self.maximum}"
        if self.kind == "auto_int":
            return f"Auto or {self.minimum}-{self.maximum}"
        if self.kind == "int_pair":
            return f"min/max, each {self.minimum}-{self.maximum}, min <= max"
        return f"{self.minimum}-{self.maximum}"

    def default_text(self) -> str:
        return format_value(self.default)


def format_value(value: Any) -> str:
    """Render a canonical value the way the docs and the CLI show it."""
    if value is None:
        return "none"
    if isinstance(value, list):
        return ",".join(_fmt_number(v) for v in value)
    if isinstance(value, float):
        return _fmt_number(value)
    return str(value)


def _fmt_number(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _looks_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _int_or_text(text: str) -> int | str:
    return int(text) if _looks_int(text) else text


def _number_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_range(p: Param, value: int | float) -> None:
    if p.minimum is not None and value < p.minimum:
        raise ParamError(f"must be at least {_fmt_number(p.minimum)}{_unit(p)}")
    if p.maximum is not None and value > p.maximum:
        raise ParamError(f"must be at most {_fmt_number(p.maximum)}{_unit(p)}")


def _unit(p: Param) -> str:
    return f" {p.unit}" if p.unit else ""


def _check_onoff(p: Param, value: Any) -> str:
    if value is True or (isinstance(value, str) and value.lower() == "on"):
        return "On"
    if value is False or (isinstance(value, str) and value.lower() == "off"):
        return "Off"
    raise ParamError('must be "On" or "Off"')


def _check_int(p: Param, value: Any) -> int:
    if not _is_int(value):
        raise ParamError("must be an integer")
    _check_range(p, value)
    return int(value)


def _check_choice(p: Param, value: Any) -> Any:
    for choice in p.choices:
        if isinstance(choice, str) and isinstance(value, str) and choice.lower() == value.lower():
            return choice
        if _is_int(choice) and _is_int(value) and choice == value:
            return choice
    raise ParamError("must be one of " + ", ".join(str(c) for c in p.choices))


def _check_string(p: Param, value: Any) -> str:
    if not isinstance(value, str):
        raise ParamError("must be a string")
    if len(value) > p.max_length:
        raise ParamError(f"must be at most {p.max_length} characters")
    if any(ord(ch) < 32 and ch not in "\t" for ch in value):
        raise ParamError("must not contain control characters")
    return value


def _check_seconds_list(p: Param, value: Any) -> list[float]:
    if not isinstance(value, list) or not value:
        raise ParamError("must be a non-empty list of seconds")
    if len(value) > 32:
        raise ParamError("must have at most 32 entries")
    out: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float) or not math.isfinite(item):
            raise ParamError("every entry must be a number of seconds")
        _check_range(p, item)
        out.append(float(item))
    return out


def _check_optional_int(p: Param, value: Any) -> int | None:
    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None
    if isinstance(value, str) and _looks_int(value):
        value = int(value)
    if not _is_int(value):
        raise ParamError(f'must be "none" or an integer {p.minimum}-{p.maximum}')
    _check_range(p, value)
    return int(value)


def _check_auto_int(p: Param, value: Any) -> int | str:
    if isinstance(value, str) and value.lower() == "auto":
        return "Auto"
    if not _is_int(value):
        raise ParamError(f'must be "Auto" or an integer {p.minimum}-{p.maximum}')
    _check_range(p, value)
    return int(value)


def _check_int_pair(p: Param, value: Any) -> list[int]:
    if not isinstance(value, list) or len(value) != 2:
        raise ParamError("must be a pair [min, max]")
    pair: list[int] = []
    for item in value:
        if isinstance(item, float) and item.is_integer():
            item = int(item)
        if not _is_int(item):
            raise ParamError("both entries must be integers")
        _check_range(p, item)
        pair.append(int(item))
    if pair[0] > pair[1]:
        raise ParamError("min must not exceed max")
    return pair


_KIND_CHECKS: dict[str, Callable[[Param, Any], Any]] = {
    "onoff": _check_onoff,
    "int": _check_int,
    "choice": _check_choice,
    "string": _check_string,
    "seconds_list": _check_seconds_list,
    "optional_int": _check_optional_int,
    "auto_int": _check_auto_int,
    "int_pair": _check_int_pair,
}


def _check_edge_addresses(value: Any) -> None:
    try:
        parse_addresses(str(value))
    except ValueError as exc:
        raise ParamError(str(exc)) from None


def _check_outbound_proxy(value: Any) -> None:
    try:
        parse_proxy(str(value))
    except ValueError as exc:
        raise ParamError(str(exc)) from None


def _check_hep_destination(value: Any) -> None:
    try:
        parse_destination(str(value))
    except ValueError as exc:
        raise ParamError(str(exc)) from None


def _check_time_zone(value: Any) -> None:
    if not valid_zone(value):
        raise ParamError(f"{value!r} is not an IANA time zone (e.g. UTC, Europe/Berlin)")


def _onoff(name: str, default: str, group: str, description: str) -> Param:
    return Param(name, "onoff", default, group, description)


def _int(
    name: str,
    default: int,
    lo: int,
    hi: int,
    group: str,
    description: str,
    unit: str = "s",
) -> Param:
    return Param(name, "int", default, group, description, unit=unit, minimum=lo, maximum=hi)


AUTH = "Unknown sources and authentication"
PHONES = "Registration of phones"
KEEPALIVE = "NAT keep-alive"
VENDORS = "Calling out to vendors"
UPSTREAM = "Registration to vendors"
MEDIA = "Media"
LIVENESS = "Call liveness"
ENGINE = "Engine and logging"
CAPTURE = "SIP capture: call ladders and HEP"
EDGE = "Edge proxy and cluster"
CONTROLS = "Carrier controls"

WEBHOOKS = "Call events (webhooks)"

PARAMETERS: tuple[Param, ...] = (
    # Unknown sources and authentication
    _onoff(
        "SS_REPLY_UNAUTHORIZED",
        "On",
        AUTH,
        "On: every out-of-dialog request from a source that is not a mapping gateway by "
        "address gets the same digest challenge, whoever it names. Off: only a REGISTER (or a "
        "request from a live registration's address) is challenged, the same way whoever it "
        "names; anything else from an unknown source hears nothing. A suspended terminal "
        "hears at most one 403 per suspension (On) or nothing (Off).",
    ),
    Param(
        "SS_SIP_AUTHENTICATION_CODE",
        "choice",
        401,
        AUTH,
        "Challenge code for REGISTER and for password-mode INVITE: 401 (WWW-Authenticate) or "
        "407 (Proxy-Authenticate).",
        choices=(401, 407),
    ),
    _int(
        "SS_SIP_AUTHENTICATION_RETRY",
        6,
        0,
        999,
        AUTH,
        "Challenges per authentication session (same Call-ID/From-tag, or same registration) "
        "before a final 403.",
        unit="",
    ),
    _int(
        "SS_SIP_AUTHENTICATION_TIMEOUT",
        10,
        1,
        3600,
        AUTH,
        "An authentication session older than this is rejected (403) whatever retries remain.",
    ),
    _int(
        "SS_AUTHENTICATION_MAX_RETRY",
        6,
        0,
        999,
        AUTH,
        "Failed password attempts per terminal (account or gateway user) before suspension.",
        unit="",
    ),
    _int(
        "SS_AUTHENTICATION_FAILED_SUSPEND",
        180,
        60,
        3600,
        AUTH,
        "Suspension length. A suspended terminal's requests are refused (403, or dropped when "
        "SS_REPLY_UNAUTHORIZED is Off) until it ends; the API lists and lifts suspensions.",
    ),
    Param(
        "SS_SIP_AUTHENTICATION_ALGORITHM",
        "choice",
        "MD5",
        AUTH,
        "Digest algorithms offered in a challenge, one header each, in the order written "
        "(RFC 8760: the preferred first, so SHA-256+MD5 for both). One header by default: "
        "some clients (baresip 1.0) give up on a challenge with two. Credentials in any "
        "offered algorithm are accepted.",
        choices=("MD5", "SHA-256", "MD5+SHA-256", "SHA-256+MD5"),
    ),
    Param(
        "SS_SIP_AUTHENTICATION_REALM",
        "string",
        "",
        AUTH,
        "Digest realm offered in challenges; empty uses the public address of the softswitch.",
        max_length=128,
    ),
    # Registration of phones
    _onoff(
        "SS_ENDPOINT_REGISTER_REPLACE",
        "On",
        PHONES,
        "On: a new REGISTER for an account from another contact replaces the old binding. "
        "Off: refused (403) while the old binding is alive.",
    ),
    _int(
        "SS_ENDPOINT_REGISTER_RETRY",
        6,
        0,
        999,
        PHONES,
        "Failed registration attempts before the account is suspended.",
        unit="",
    ),
    _int(
        "SS_ENDPOINT_REGISTER_SUSPEND",
        180,
        0,
        3600,
        PHONES,
        "Suspension of an account whose registration attempts kept failing; 0 disables it.",
    ),
    Param(
        "SS_ENDPOINT_EXPIRE",
        "int_pair",
        [300, 3600],
        PHONES,
        "Registration expiry granted to phones, as min/max. A request below the minimum gets "
        "423 Interval Too Brief with Min-Expires; above the maximum it is clamped.",
        unit="s",
        minimum=60,
        maximum=86400,
    ),
    _int(
        "SS_ENDPOINT_NAT_EXPIRE",
        300,
        60,
        3600,
        PHONES,
        "Expiry granted to a phone detected behind NAT (it re-registers often, which keeps its "
        "NAT binding open).",
    ),
    # NAT keep-alive
    Param(
        "SS_SIP_NAT_KEEP_ALIVE_MESSAGE",
        "string",
        "HELLO",
        KEEPALIVE,
        "Raw UDP payload sent from the SIP socket to each NAT phone's source address; empty "
        "disables the keep-alive.",
        max_length=512,
    ),
    _int(
        "SS_SIP_NAT_KEEP_ALIVE_PERIOD",
        30,
        10,
        86400,
        KEEPALIVE,
        "A cycle over all NAT phones starts every period; an unfinished cycle restarts from "
        "the beginning.",
    ),
    _int(
        "SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL",
        500,
        10,
        10000,
        KEEPALIVE,
        "Pause between batches within a cycle.",
        unit="ms",
    ),
    _int(
        "SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME",
        3000,
        1,
        100000,
        KEEPALIVE,
        "Phones per batch.",
        unit="",
    ),
    # Calling out to vendors
    _int(
        "SS_SIP_TIMEOUT_INVITE",
        10,
        1,
        300,
        VENDORS,
        "No response at all within this time: the attempt failed (per-gateway override).",
    ),
    Param(
        "SS_SIP_RESEND_INTERVAL",
        "seconds_list",
        [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0],
        VENDORS,
        "INVITE retransmission schedule over UDP (seconds between sends), within the INVITE "
        "timeout.",
        unit="s",
        minimum=0.05,
        maximum=60,
    ),
    _int(
        "SS_SIP_TIMEOUT_TRYING",
        20,
        1,
        600,
        VENDORS,
        "After 100 Trying, wait this long for 18x/2xx.",
    ),
    _int(
        "SS_SIP_TIMEOUT_SESSION_PROGRESS",
        20,
        1,
        600,
        VENDORS,
        "After 183 without SDP, wait this long for 180/2xx.",
    ),
    _int(
        "SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP",
        120,
        1,
        3600,
        VENDORS,
        "After 183 with SDP (early media), wait this long for the answer.",
    ),
    _int(
        "SS_SIP_TIMEOUT_RINGING",
        120,
        1,
        3600,
        VENDORS,
        "After 180, wait this long for the answer.",
    ),
    _onoff(
        "SS_SIP_STOP_SWITCH_AFTER_SDP",
        "On",
        VENDORS,
        "SDP in a provisional response commits the call to this gateway.",
    ),
    _onoff(
        "SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT",
        "Off",
        VENDORS,
        "On: an INVITE timeout ends the call (408) instead of trying the next gateway "
        "(per-gateway override).",
    ),
    Param(
        "SS_GATEWAY_SWITCH_LIMIT",
        "optional_int",
        None,
        VENDORS,
        "Most gateways tried per call; none = no limit.",
        minimum=1,
        maximum=100,
    ),
    _onoff(
        "SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START",
        "On",
        VENDORS,
        "Once RTP from the gateway side has started, no more switching.",
    ),
    _onoff(
        "SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY",
        "On",
        VENDORS,
        "486 Busy Here ends the call with 486.",
    ),
    _onoff(
        "SS_GATEWAY_SWITCH_UNTIL_CONNECT",
        "Off",
        VENDORS,
        "On: keep switching on any failure until a 200.",
    ),
    # Registration to vendors
    _onoff(
        "SS_SIP_USER_AGENT_SEND_UNREGISTER",
        "On",
        UPSTREAM,
        "On graceful stop, send REGISTER with Expires: 0 (answering 401/407) for every "
        "upstream registration, bounded in time.",
    ),
    Param(
        "SS_SIP_USER_AGENT_EXPIRE",
        "auto_int",
        "Auto",
        UPSTREAM,
        "Requested upstream registration expiry; Auto uses what the registrar grants.",
        unit="s",
        minimum=20,
        maximum=7200,
    ),
    _int(
        "SS_SIP_USER_AGENT_RETRY_DELAY",
        60,
        30,
        600,
        UPSTREAM,
        "Wait after a failed upstream registration before retrying.",
    ),
    # Media
    Param(
        "SS_MEDIAPROXYMODE",
        "choice",
        "Auto",
        MEDIA,
        "Whether calls are anchored in the media relay. In Auto the gateways' media_relay "
        "decides: any leg must_on: relay; else any off: no relay; else any on: relay; else "
        "relay when a leg is behind NAT or encrypted.",
        choices=("Off", "On", "Auto", "MustOn"),
    ),
    _onoff(
        "SS_MEDIA_PROXY_BEHIND_NAT",
        "On",
        MEDIA,
        "Relay media for phones and gateways behind NAT and learn each side's real RTP source "
        "from its first packets (latching).",
    ),
    Param(
        "SS_RTPENCRYPTIONMODE",
        "choice",
        0,
        MEDIA,
        "RTP payload cipher for legs whose gateway has rtp_encryption on: 0 none, 1 XOR, "
        "2 RC4, 3 AES128.",
        choices=(0, 1, 2, 3),
    ),
    Param(
        "SS_RTPENCRYPTIONKEY",
        "string",
        "",
        MEDIA,
        "Shared RTP payload key. AES128 needs exactly 16 bytes (refused otherwise); RC4 needs "
        "5, 7, 8, 10, 16, 20, 24 or 32 bytes.",
        max_length=256,
    ),
    _int(
        "SS_MEDIA_CHECK_TIMEOUT",
        30,
        5,
        3600,
        MEDIA,
        "RTP interruption check: an answered call silent in a gateway's checked direction "
        "(media_check) for this long is hung up.",
    ),
    # Call liveness
    _int(
        "SS_SIP_SESSION_TTL",
        600,
        90,
        7200,
        LIVENESS,
        "RFC 4028 session timer offered/accepted on both legs; a leg that stops refreshing is "
        "torn down.",
    ),
    _int(
        "SS_SIP_SESSION_UPDATE_SEGMENT",
        2,
        2,
        10,
        LIVENESS,
        "Refresh the session at TTL divided by this.",
        unit="",
    ),
    _int(
        "SS_SIP_NO_TIMER_REINVITE_INTERVAL",
        7200,
        60,
        86400,
        LIVENESS,
        "For peers without session timers: longest call before a liveness re-INVITE (the "
        "call ends when it fails).",
    ),
    _int(
        "SS_MAX_CALL_DURATION",
        0,
        0,
        604800,
        CONTROLS,
        "Longest talk time of a call, in seconds, when its mapping gateway or phone sets "
        "none; at the limit both legs get BYE and the CDR says \"maximum duration\". 0: no "
        "limit (docs/carrier-controls.md).",
    ),
    Param(
        "SS_ROUTING_TIME_ZONE",
        "string",
        "UTC",
        CONTROLS,
        "IANA time zone (e.g. Europe/Berlin) in which routing gateways' periods are read: a "
        "call takes the period in force when it starts (docs/carrier-controls.md).",
        max_length=64,
        extra_check=_check_time_zone,
    ),
    # Engine and logging (ours)
    _onoff(
        "SS_SIP_TRACE",
        "Off",
        ENGINE,
        "Log every SIP message sent and received (one line each, with Call-ID).",
    ),
    _int(
        "SS_OVERLOAD_LOOP_LAG",
        500,
        0,
        10000,
        ENGINE,
        "Admission by load: new calls get 503 with Retry-After while the engine's event "
        "loop, or every relay worker's, runs this late (0: never refuse). Calls already up "
        "are not touched.",
        unit="ms",
    ),
    _int(
        "SS_SECURITY_LOG_INTERVAL",
        60,
        1,
        3600,
        ENGINE,
        "A failed authentication or a silent drop is logged at most once per source per "
        "interval.",
    ),
    # SIP capture (ours; docs/sip.md, "Call ladders" and "HEP export")
    Param(
        "SS_SIP_LADDERS",
        "choice",
        "Failed",
        CAPTURE,
        "Which calls' SIP messages (both legs) are kept after the call ends, for GET "
        "/calls/ID/sip and /cdrs/ID/sip: Failed, calls never answered; All, every call; "
        "Off, none (and nothing is captured). While a call is up its messages are kept "
        "whatever the value (the first 150 and the last 50).",
        choices=("Failed", "All", "Off"),
    ),
    _int(
        "SS_SIP_LADDERS_SIZE",
        64,
        1,
        4096,
        CAPTURE,
        "Memory for call ladders, live calls' included, for the whole switch (shared out "
        "among signalling workers); the oldest kept ladder is evicted first.",
        unit="MiB",
    ),
    _int(
        "SS_SIP_LADDERS_AGE",
        3600,
        60,
        604800,
        CAPTURE,
        "How long a call's ladder is kept after the call ends.",
    ),
    Param(
        "SS_HEP_DESTINATION",
        "string",
        "",
        CAPTURE,
        "ip[:port] (UDP, port 9060 when not given) of a HEP3 collector (Homer, sngrep -L) "
        "that gets a copy of every SIP message sent and received. Empty: no export.",
        max_length=64,
        extra_check=_check_hep_destination,
    ),
    _int(
        "SS_HEP_CAPTURE_ID",
        1,
        0,
        2**32 - 1,
        CAPTURE,
        "The capture agent id in each HEP packet: which softswitch (node) sent it.",
        unit="",
    ),
    Param(
        "SS_HEP_PASSWORD",
        "string",
        "",
        CAPTURE,
        "The authentication key sent in each HEP packet, for a collector that asks for "
        "one. Empty: none sent.",
        max_length=64,
    ),
    # Gateway quality (ours; docs/gateway-quality.md)
    _int(
        "SS_GATEWAY_STATS_INTERVAL",
        10,
        1,
        300,
        ENGINE,
        "How often finished calls are added to the gateways' stored quality figures (ASR, "
        "ACD, PDD, NER per minute, hour and day; GET /api/v1/stats/gateways).",
    ),
    _int(
        "SS_GATEWAY_STATS_MINUTE_DAYS",
        7,
        1,
        90,
        ENGINE,
        "Days the per-minute gateway quality figures are kept.",
        unit="days",
    ),
    _int(
        "SS_GATEWAY_STATS_HOUR_DAYS",
        90,
        1,
        1000,
        ENGINE,
        "Days the per-hour gateway quality figures are kept.",
        unit="days",
    ),
    _int(
        "SS_GATEWAY_STATS_DAY_DAYS",
        730,
        1,
        3660,
        ENGINE,
        "Days the per-day gateway quality figures are kept.",
        unit="days",
    ),
    # Edge proxy and cluster (ours; docs/cluster.md)
    Param(
        "SS_EDGE_ADDRESSES",
        "string",
        "",
        EDGE,
        "IP addresses of the proxies in front of the softswitch (the cluster's kamailio "
        "edge, deploy/kamailio/edge.cfg), comma-separated. A request from one of them is "
        "judged on the address in its X-Softswitch-Source header (the customer's), and a "
        "silent drop is answered to the edge with X-Softswitch-Drop, which the edge "
        "swallows. Empty: no edge; the header is ignored from anyone.",
        max_length=512,
        extra_check=_check_edge_addresses,
    ),
    Param(
        "SS_OUTBOUND_PROXY",
        "string",
        "",
        EDGE,
        "ip[:port] (UDP) that calls to vendors are sent through, with a loose Route to it "
        "(the edge, so vendors see one address). Empty: straight to the vendor.",
        max_length=64,
        extra_check=_check_outbound_proxy,
    ),
    # Call events (webhooks) (ours; docs/carrier-controls.md)
    _int(
        "SS_WEBHOOK_QUEUE_SIZE",
        10000,
        100,
        1000000,
        WEBHOOKS,
        "Events each webhook may have waiting for delivery (in each signalling worker); "
        "an event that finds its queue full goes to the dead-letter file.",
        unit="events",
    ),
    _int(
        "SS_WEBHOOK_RETRY_SECONDS",
        3600,
        10,
        604800,
        WEBHOOKS,
        "How long an event is tried again while its webhook does not take it; then it "
        "goes to the dead-letter file.",
    ),
    _int(
        "SS_WEBHOOK_BACKOFF_MAX",
        30,
        1,
        3600,
        WEBHOOKS,
        "The longest wait between two attempts at a webhook that fails (the wait starts "
        "at 1 s and doubles after each failure).",
    ),
    _int(
        "SS_WEBHOOK_TIMEOUT",
        5,
        1,
        60,
        WEBHOOKS,
        "How long one POST to a webhook may take (to connect, and for each read) before "
        "it counts as failed.",
    ),
    _int(
        "SS_WEBHOOK_CONNECTIONS",
        4,
        1,
        16,
        WEBHOOKS,
        "Requests in flight to one webhook at a time (each signalling worker), each on a "
        "kept-alive connection of its own; one call's events always go one after the other.",
        unit="",
    ),
    _int(
        "SS_WEBHOOK_DEAD_LETTER_MB",
        100,
        1,
        100000,
        WEBHOOKS,
        "The largest the dead-letter file may grow (each signalling worker's); beyond it "
        "given-up events are counted and dropped.",
        unit="MB",
    ),
)

REGISTRY: dict[str, Param] = {p.name: p for p in PARAMETERS}

# RC4 key lengths that `cryptography`'s ARC4 accepts (40-256 bits).
RC4_KEY_LENGTHS = (5, 7, 8, 10, 16, 20, 24, 32)


def lookup(name: str) -> Param:
    """Find a parameter by name (case-insensitive); KeyError when unknown."""
    param = REGISTRY.get(name.upper())
    if param is None:
        raise KeyError(name)
    return param


def defaults() -> dict[str, Any]:
    return {p.name: p.default for p in PARAMETERS}


def check_combination(values: dict[str, Any]) -> None:
    """Rules that span parameters; raises ParamError naming the offending parameter."""
    mode = values.get("SS_RTPENCRYPTIONMODE", 0)
    key = values.get("SS_RTPENCRYPTIONKEY", "")
    key_len = len(str(key).encode())
    if mode == 3 and key_len != 16:
        raise ParamError(
            f"AES128 (SS_RTPENCRYPTIONMODE 3) needs SS_RTPENCRYPTIONKEY of exactly 16 bytes; "
            f"it has {key_len}"
        )
    if mode == 2 and key_len not in RC4_KEY_LENGTHS:
        raise ParamError(
            "RC4 (SS_RTPENCRYPTIONMODE 2) needs SS_RTPENCRYPTIONKEY of "
            + ", ".join(str(n) for n in RC4_KEY_LENGTHS)
            + f" bytes; it has {key_len}"
        )
    if mode == 1 and key_len == 0:
        raise ParamError("XOR (SS_RTPENCRYPTIONMODE 1) needs a non-empty SS_RTPENCRYPTIONKEY")


def names() -> Sequence[str]:
    return [p.name for p in PARAMETERS]
