"""The parameter registry: every documented parameter, its default, and its validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from b2bua.config import docgen
from b2bua.config.registry import PARAMETERS, REGISTRY, ParamError, check_combination, lookup

# Every parameter of the project's parameter list with its documented default.
DOCUMENTED_DEFAULTS: dict[str, Any] = {
    "SS_REPLY_UNAUTHORIZED": "On",
    "SS_SIP_AUTHENTICATION_CODE": 401,
    "SS_SIP_AUTHENTICATION_RETRY": 6,
    "SS_SIP_AUTHENTICATION_TIMEOUT": 10,
    "SS_SIP_AUTHENTICATION_ALGORITHM": "MD5",
    "SS_AUTHENTICATION_MAX_RETRY": 6,
    "SS_AUTHENTICATION_FAILED_SUSPEND": 180,
    "SS_ENDPOINT_REGISTER_REPLACE": "On",
    "SS_ENDPOINT_REGISTER_RETRY": 6,
    "SS_ENDPOINT_REGISTER_SUSPEND": 180,
    "SS_ENDPOINT_EXPIRE": [300, 3600],
    "SS_ENDPOINT_NAT_EXPIRE": 300,
    "SS_SIP_NAT_KEEP_ALIVE_MESSAGE": "HELLO",
    "SS_SIP_NAT_KEEP_ALIVE_PERIOD": 30,
    "SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL": 500,
    "SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME": 3000,
    "SS_SIP_TIMEOUT_INVITE": 10,
    "SS_SIP_RESEND_INTERVAL": [0.5, 1, 2, 4, 4, 4, 4, 4, 4, 4],
    "SS_SIP_TIMEOUT_TRYING": 20,
    "SS_SIP_TIMEOUT_SESSION_PROGRESS": 20,
    "SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP": 120,
    "SS_SIP_TIMEOUT_RINGING": 120,
    "SS_SIP_STOP_SWITCH_AFTER_SDP": "On",
    "SS_SIP_USER_AGENT_STOP_SWITCH_AFTER_INVITE_TIMEOUT": "Off",
    "SS_GATEWAY_SWITCH_LIMIT": None,
    "SS_GATEWAY_SWITCH_STOP_AFTER_RTP_START": "On",
    "SS_GATEWAY_SWITCH_STOP_AFTER_USER_BUSY": "On",
    "SS_GATEWAY_SWITCH_UNTIL_CONNECT": "Off",
    "SS_SIP_USER_AGENT_SEND_UNREGISTER": "On",
    "SS_SIP_USER_AGENT_EXPIRE": "Auto",
    "SS_SIP_USER_AGENT_RETRY_DELAY": 60,
    "SS_MEDIAPROXYMODE": "Auto",
    "SS_MEDIA_PROXY_BEHIND_NAT": "On",
    "SS_RTPENCRYPTIONMODE": 0,
    "SS_RTPENCRYPTIONKEY": "",
    "SS_SIP_SESSION_TTL": 600,
    "SS_SIP_SESSION_UPDATE_SEGMENT": 2,
    "SS_SIP_NO_TIMER_REINVITE_INTERVAL": 7200,
}

# (name, lowest valid, highest valid) from the documented ranges.
DOCUMENTED_RANGES = [
    ("SS_SIP_AUTHENTICATION_RETRY", 0, 999),
    ("SS_SIP_AUTHENTICATION_TIMEOUT", 1, 3600),
    ("SS_AUTHENTICATION_MAX_RETRY", 0, 999),
    ("SS_AUTHENTICATION_FAILED_SUSPEND", 60, 3600),
    ("SS_ENDPOINT_REGISTER_RETRY", 0, 999),
    ("SS_ENDPOINT_REGISTER_SUSPEND", 0, 3600),
    ("SS_ENDPOINT_NAT_EXPIRE", 60, 3600),
    ("SS_SIP_NAT_KEEP_ALIVE_PERIOD", 10, 86400),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_INTERVAL", 10, 10000),
    ("SS_SIP_NAT_KEEP_ALIVE_SEND_ONE_TIME", 1, 100000),
    ("SS_SIP_TIMEOUT_INVITE", 1, 300),
    ("SS_SIP_TIMEOUT_TRYING", 1, 600),
    ("SS_SIP_TIMEOUT_SESSION_PROGRESS", 1, 600),
    ("SS_SIP_TIMEOUT_SESSION_PROGRESS_SDP", 1, 3600),
    ("SS_SIP_TIMEOUT_RINGING", 1, 3600),
    ("SS_GATEWAY_SWITCH_LIMIT", 1, 100),
    ("SS_SIP_USER_AGENT_EXPIRE", 20, 7200),
    ("SS_SIP_USER_AGENT_RETRY_DELAY", 30, 600),
    ("SS_SIP_SESSION_TTL", 90, 7200),
    ("SS_SIP_SESSION_UPDATE_SEGMENT", 2, 10),
    ("SS_SIP_NO_TIMER_REINVITE_INTERVAL", 60, 86400),
]


def test_every_documented_parameter_has_its_default() -> None:
    for name, default in DOCUMENTED_DEFAULTS.items():
        assert name in REGISTRY, name
        assert REGISTRY[name].default == default, name


def test_defaults_validate_against_their_own_rules() -> None:
    for param in PARAMETERS:
        assert param.validate(param.default) == param.default, param.name
        assert param.description and param.group


@pytest.mark.parametrize(("name", "low", "high"), DOCUMENTED_RANGES)
def test_documented_ranges(name: str, low: int, high: int) -> None:
    param = REGISTRY[name]
    assert param.validate(low) == low
    assert param.validate(high) == high
    with pytest.raises(ParamError, match="at least"):
        param.validate(low - 1)
    with pytest.raises(ParamError, match="at most"):
        param.validate(high + 1)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("SS_SIP_TIMEOUT_INVITE", "10"),
        ("SS_SIP_TIMEOUT_INVITE", 1.5),
        ("SS_SIP_TIMEOUT_INVITE", True),
        ("SS_SIP_TIMEOUT_INVITE", None),
        ("SS_REPLY_UNAUTHORIZED", "maybe"),
        ("SS_REPLY_UNAUTHORIZED", 1),
        ("SS_SIP_AUTHENTICATION_CODE", 403),
        ("SS_MEDIAPROXYMODE", "Sometimes"),
        ("SS_RTPENCRYPTIONMODE", 4),
        ("SS_SIP_RESEND_INTERVAL", []),
        ("SS_SIP_RESEND_INTERVAL", [0.5, "x"]),
        ("SS_SIP_RESEND_INTERVAL", [0.01]),
        ("SS_SIP_RESEND_INTERVAL", "0.5,1"),
        ("SS_ENDPOINT_EXPIRE", [3600, 300]),
        ("SS_ENDPOINT_EXPIRE", [30, 300]),
        ("SS_ENDPOINT_EXPIRE", 300),
        ("SS_SIP_USER_AGENT_EXPIRE", "Sometimes"),
        ("SS_SIP_USER_AGENT_EXPIRE", 10),
        ("SS_GATEWAY_SWITCH_LIMIT", 0),
        ("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", 5),
        ("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", "x" * 513),
        ("SS_SIP_NAT_KEEP_ALIVE_MESSAGE", "bad\r\nline"),
    ],
)
def test_wrong_type_or_range_is_refused(name: str, bad: Any) -> None:
    with pytest.raises(ParamError):
        REGISTRY[name].validate(bad)


def test_canonical_forms() -> None:
    assert REGISTRY["SS_REPLY_UNAUTHORIZED"].validate(False) == "Off"
    assert REGISTRY["SS_REPLY_UNAUTHORIZED"].validate("on") == "On"
    assert REGISTRY["SS_MEDIAPROXYMODE"].validate("muston") == "MustOn"
    assert REGISTRY["SS_SIP_USER_AGENT_EXPIRE"].validate("auto") == "Auto"
    assert REGISTRY["SS_GATEWAY_SWITCH_LIMIT"].validate(None) is None
    assert REGISTRY["SS_SIP_RESEND_INTERVAL"].validate([1, 2]) == [1.0, 2.0]


def test_parse_text_as_typed_on_a_command_line() -> None:
    assert lookup("ss_sip_timeout_invite").parse_text("12") == 12
    assert lookup("SS_SIP_RESEND_INTERVAL").parse_text("0.5, 1,2") == [0.5, 1.0, 2.0]
    assert lookup("SS_ENDPOINT_EXPIRE").parse_text("120/600") == [120, 600]
    assert lookup("SS_GATEWAY_SWITCH_LIMIT").parse_text("none") is None
    assert lookup("SS_GATEWAY_SWITCH_LIMIT").parse_text("3") == 3
    assert lookup("SS_SIP_USER_AGENT_EXPIRE").parse_text("Auto") == "Auto"
    assert lookup("SS_SIP_USER_AGENT_EXPIRE").parse_text("600") == 600
    assert lookup("SS_RTPENCRYPTIONMODE").parse_text("3") == 3
    with pytest.raises(ParamError):
        lookup("SS_SIP_TIMEOUT_INVITE").parse_text("ten")
    with pytest.raises(KeyError):
        lookup("SS_NO_SUCH_THING")


def test_encryption_key_rules_span_two_parameters() -> None:
    check_combination({"SS_RTPENCRYPTIONMODE": 3, "SS_RTPENCRYPTIONKEY": "0123456789abcdef"})
    with pytest.raises(ParamError, match="exactly 16 bytes"):
        check_combination({"SS_RTPENCRYPTIONMODE": 3, "SS_RTPENCRYPTIONKEY": "short"})
    with pytest.raises(ParamError, match="RC4"):
        check_combination({"SS_RTPENCRYPTIONMODE": 2, "SS_RTPENCRYPTIONKEY": "abc"})
    check_combination({"SS_RTPENCRYPTIONMODE": 2, "SS_RTPENCRYPTIONKEY": "abcde"})
    with pytest.raises(ParamError, match="XOR"):
        check_combination({"SS_RTPENCRYPTIONMODE": 1, "SS_RTPENCRYPTIONKEY": ""})
    check_combination({"SS_RTPENCRYPTIONMODE": 0, "SS_RTPENCRYPTIONKEY": ""})


def test_parameters_doc_is_generated_from_the_registry() -> None:
    assert docgen.DOC_PATH.read_text() == docgen.render(), (
        "docs/parameters.md is stale: run python -m b2bua.config.docgen"
    )
    for param in PARAMETERS:
        assert f"`{param.name}`" in docgen.render()


def test_a_changed_default_reaches_only_operators_who_never_set_it(tmp_path: Path) -> None:
    """No migration for a new default: the parameters table holds only values an
    operator set (the API or the CLI), so a database without a row follows the new
    default and one with a row keeps it, even when it equals an old default."""
    from b2bua.storage import migrate, open_database, params_store
    from b2bua.storage.backend import Database

    def database(name: str) -> Database:
        opened = open_database(tmp_path / name)
        migrate.migrate(opened)
        return opened

    never_set = database("never-set.db")
    assert params_store.load_values(never_set)["SS_SIP_AUTHENTICATION_ALGORITHM"] == "MD5"
    assert never_set.value("SELECT COUNT(*) AS n FROM parameters") == 0
    explicit = database("explicit.db")
    params_store.set_value(explicit, "SS_SIP_AUTHENTICATION_ALGORITHM", "MD5+SHA-256")
    assert params_store.load_values(explicit)["SS_SIP_AUTHENTICATION_ALGORITHM"] == \
        "MD5+SHA-256"
