"""The policy stage: classification order, digest rounds, retries, timeouts, suspensions."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable

import pytest

from b2bua.config.live import Params
from b2bua.policy import Account, Action, Outcome, Policy, SourceKind, classify_by_address
from b2bua.routing.gateways import GatewayDirectory, MappingGateway, RoutingGateway
from b2bua.security.digest import NonceMinter, NonceState, response_digest
from b2bua.security.state import SESSION_LIMIT
from b2bua.sip.headers import parse_auth_params
from b2bua.sip.message import Request
from b2bua.sip.parser import parse_message
from b2bua.sip.peer import Peer
from b2bua.storage import migrate
from b2bua.storage.gateways import mapping_gateways, routing_gateways
from b2bua.storage.sqlite import SqliteDatabase

T0 = 1_700_000_000.0
REALM = "sw.example"
CALLEE = "sip:+4930123456@sw.example;user=phone"

GW_IP = "198.51.100.7"  # an ip / ip_port customer trunk
VENDOR_IP = "192.0.2.50"  # a routing gateway
ROAMING_IP = "203.0.113.5"  # somewhere on the internet: a password gateway or a phone
OTHER_IP = "203.0.113.99"
STRANGER_IP = "233.252.0.1"

_ids = itertools.count(1)


# -- fixtures ------------------------------------------------------------------------------


def mapping(gw_id: int, mode: str, ips: Iterable[str] = (), port: int | None = None,
            username: str | None = None, password: str | None = None,
            enabled: bool = True) -> MappingGateway:
    return MappingGateway(id=gw_id, name=f"m{gw_id}", auth_mode=mode, ips=frozenset(ips),
                          port=port, username=username, password=password, capacity=None,
                          enabled=enabled)


def vendor(gw_id: int, host: str, enabled: bool = True) -> RoutingGateway:
    return RoutingGateway(id=gw_id, name=f"r{gw_id}", host=host, port=5060, transport="udp",
                          prefixes=("49",), priority=0, prefix_mode="terminate", capacity=None,
                          enabled=enabled)


def directory(mappings: Iterable[MappingGateway] = (),
              vendors: Iterable[RoutingGateway] = ()) -> GatewayDirectory:
    """The directory as the engine's reload builds it (gateways in id order)."""
    d = GatewayDirectory()
    d.set_mapping(sorted(mappings, key=lambda g: g.id))
    d.set_routing(sorted(vendors, key=lambda g: g.id))
    return d


ACME = mapping(10, "password", username="acme", password="acme-secret")
IP_GW = mapping(1, "ip", ips=[GW_IP])
IP_PORT_GW = mapping(2, "ip_port", ips=[GW_IP], port=5070)
VENDOR = vendor(1, VENDOR_IP)
PHONES = {"1001": Account("1001", "phone-secret", "phone")}


def make_policy(values: dict[str, object] | None = None,
                mappings: Iterable[MappingGateway] = (ACME, IP_GW, IP_PORT_GW),
                vendors: Iterable[RoutingGateway] = (VENDOR,),
                phones: dict[str, Account] | None = None) -> Policy:
    params = Params()
    params.values.update(values or {})
    lookup = phones.get if phones is not None else None
    return Policy(params, directory(mappings, vendors), default_realm=REALM,
                  phone_accounts=lookup, any_phone=lambda: bool(phones))


def peer(ip: str, port: int = 5060) -> Peer:
    return Peer("udp", ip, port)


# -- requests ------------------------------------------------------------------------------


def wire(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def sip(method: str, user: str = "acme", *, src: str = ROAMING_IP, call_id: str | None = None,
        tag: str = "ft1", cseq: int = 1, auth: tuple[str, str] | None = None) -> Request:
    """A realistic out-of-dialog request as a trunk, a phone or a pinger sends it."""
    call_id = call_id or f"call-{next(_ids)}@{src}"
    host = f"[{src}]" if ":" in src else src
    if method == "REGISTER":
        ruri = f"sip:{REALM}"
        from_ = f"<sip:{user}@{REALM}>;tag={tag}"
        to = f"<sip:{user}@{REALM}>"
        extra = f"Contact: <sip:{user}@{host}:5060;ob>;expires=3600\nExpires: 3600\n"
    elif method == "OPTIONS":
        ruri = f"sip:{REALM}"
        from_ = f"<sip:{user}@{host}>;tag={tag}"
        to = f"<sip:{REALM}>"
        extra = "Accept: application/sdp\n"
    else:
        ruri = CALLEE
        from_ = f'"Acme Trunk" <sip:{user}@{host}>;tag={tag}'
        to = f"<{CALLEE}>"
        extra = (f"Contact: <sip:{user}@{host}:5060>\n"
                 "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\n"
                 "Supported: timer, replaces\n")
    lines = (
        f"{method} {ruri} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {host}:5060;rport;branch=z9hG4bK-{next(_ids)}\n"
        "Max-Forwards: 70\n"
        f"From: {from_}\n"
        f"To: {to}\n"
        f"Call-ID: {call_id}\n"
        f"CSeq: {cseq} {method}\n"
        f"{extra}"
        "User-Agent: PolicyTest/1.0\n"
    )
    if auth is not None:
        lines += f"{auth[0]}: {auth[1]}\n"
    message = parse_message(wire(lines + "Content-Length: 0\n\n"))
    assert isinstance(message, Request)
    return message


def credentials(challenge: tuple[str, str], method: str, uri: str, username: str,
                password: str, nc: str = "00000001", cnonce: str = "6b8b4567",
                ) -> tuple[str, str]:
    """Answer one challenge header the way sipp and pjsip do."""
    header, value = challenge
    scheme, params = parse_auth_params(value)
    assert scheme == "Digest"
    algorithm, realm, nonce = params["algorithm"], params["realm"], params["nonce"]
    assert params["qop"] == "auth"
    response = response_digest(algorithm, username, realm, password, method, uri, nonce, nc,
                               cnonce, "auth")
    name = "Authorization" if header == "WWW-Authenticate" else "Proxy-Authorization"
    return name, (f'Digest username="{username}",realm="{realm}",cnonce="{cnonce}",nc={nc},'
                  f'qop=auth,uri="{uri}",nonce="{nonce}",response="{response}",'
                  f"algorithm={algorithm}")


def retry(outcome: Outcome, method: str, user: str, password: str, *, src: str = ROAMING_IP,
          call_id: str, tag: str = "ft1", cseq: int = 2, which: int = 0,
          nc: str = "00000001") -> Request:
    """The authenticated retry of a challenged request, in the same Call-ID and From tag."""
    assert outcome.action == Action.CHALLENGE, outcome
    uri = f"sip:{REALM}" if method in ("REGISTER", "OPTIONS") else CALLEE
    auth = credentials(outcome.headers[which], method, uri, user, password, nc=nc)
    return sip(method, user, src=src, call_id=call_id, tag=tag, cseq=cseq, auth=auth)


def challenge_params(outcome: Outcome) -> list[dict[str, str]]:
    return [parse_auth_params(value)[1] for _name, value in outcome.headers]


def assert_pass_mapping(outcome: Outcome, gw: MappingGateway) -> None:
    assert outcome.action == Action.PASS, outcome
    assert outcome.source is not None
    assert outcome.source.kind == SourceKind.MAPPING_GATEWAY
    assert outcome.source.mapping == gw


# -- classification ------------------------------------------------------------------------


def test_ip_port_beats_ip_on_same_ip() -> None:
    policy = make_policy()
    assert_pass_mapping(policy.admit(sip("INVITE", "4930111", src=GW_IP),
                                     peer(GW_IP, 5070), T0), IP_PORT_GW)
    assert_pass_mapping(policy.admit(sip("INVITE", "4930111", src=GW_IP),
                                     peer(GW_IP, 5060), T0), IP_GW)


def test_ip_port_gateway_with_another_port_does_not_match() -> None:
    policy = make_policy(mappings=[ACME, IP_PORT_GW])
    outcome = policy.admit(sip("INVITE", "4930111", src=GW_IP), peer(GW_IP, 5071), T0)
    assert (outcome.action, outcome.status) == (Action.CHALLENGE, 401)  # as any stranger
    assert outcome.source is None
    assert_pass_mapping(policy.admit(sip("INVITE", "4930111", src=GW_IP),
                                     peer(GW_IP, 5070), T0), IP_PORT_GW)
    # The port of a TCP peer counts the same way.
    tcp = policy.admit(sip("INVITE", "4930111", src=GW_IP), Peer("tcp", GW_IP, 5070), T0)
    assert_pass_mapping(tcp, IP_PORT_GW)


def test_ip_port_beats_credentials() -> None:
    policy = make_policy()
    nonce = policy.verifier.minter.mint(REALM, T0)
    creds = credentials(("WWW-Authenticate", f'Digest realm="{REALM}", nonce="{nonce}", '
                         'algorithm=MD5, qop="auth"'), "INVITE", CALLEE, "acme", "wrong")
    outcome = policy.admit(sip("INVITE", src=GW_IP, auth=creds), peer(GW_IP, 5070), T0)
    assert_pass_mapping(outcome, IP_PORT_GW)


def test_credentials_for_password_gateway_beat_ip_gateway() -> None:
    policy = make_policy()
    nonce = policy.verifier.minter.mint(REALM, T0)
    challenge = ("WWW-Authenticate",
                 f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"')
    good = credentials(challenge, "INVITE", CALLEE, "acme", "acme-secret")
    outcome = policy.admit(sip("INVITE", src=GW_IP, auth=good), peer(GW_IP), T0 + 1)
    assert_pass_mapping(outcome, ACME)
    assert outcome.source is not None and outcome.source.account is not None
    assert outcome.source.account.kind == "gateway"
    # Wrong credentials for that user are checked too, not waved through as the IP trunk.
    bad = credentials(challenge, "INVITE", CALLEE, "acme", "guess", nc="00000002")
    outcome = policy.admit(sip("INVITE", src=GW_IP, auth=bad), peer(GW_IP), T0 + 1)
    assert outcome.action == Action.CHALLENGE
    # Credentials naming no known user leave the IP rule in charge.
    other = credentials(challenge, "INVITE", CALLEE, "nobody", "x", nc="00000003")
    outcome = policy.admit(sip("INVITE", src=GW_IP, auth=other), peer(GW_IP), T0 + 1)
    assert_pass_mapping(outcome, IP_GW)


def test_ip_gateway_passes_whatever_from_user() -> None:
    policy = make_policy()
    # Even a From user naming the password gateway: rule 3 comes before rule 4.
    assert_pass_mapping(policy.admit(sip("INVITE", "acme", src=GW_IP), peer(GW_IP), T0), IP_GW)
    assert_pass_mapping(policy.admit(sip("OPTIONS", "ping", src=GW_IP), peer(GW_IP), T0), IP_GW)


def test_from_user_of_password_gateway_is_challenged() -> None:
    policy = make_policy()
    outcome = policy.admit(sip("INVITE", "acme"), peer(ROAMING_IP), T0)
    assert outcome.action == Action.CHALLENGE
    assert outcome.status == 401
    assert [name for name, _v in outcome.headers] == ["WWW-Authenticate"]
    assert policy.counters.challenged == {"gateway": 1}


def test_claimed_phone_account_is_challenged() -> None:
    policy = make_policy(phones=PHONES)
    assert policy.admit(sip("INVITE", "1001"), peer(ROAMING_IP), T0).action == Action.CHALLENGE
    assert policy.admit(sip("REGISTER", "1001"), peer(ROAMING_IP), T0).action == \
        Action.CHALLENGE
    assert policy.counters.challenged == {"phone": 2}


def test_register_claims_the_to_user() -> None:
    policy = make_policy(values={"SS_REPLY_UNAUTHORIZED": "Off"}, phones=PHONES)
    text = (
        f"REGISTER sip:{REALM} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {ROAMING_IP}:5060;branch=z9hG4bK-reg-to\n"
        "Max-Forwards: 70\n"
        f"From: <sip:someone-else@{REALM}>;tag=x1\n"
        f"To: <sip:1001@{REALM}>\n"
        "Call-ID: reg-to@x\n"
        "CSeq: 1 REGISTER\n"
        f"Contact: <sip:1001@{ROAMING_IP}:5060>\n"
        "Content-Length: 0\n\n"
    )
    request = parse_message(wire(text))
    assert isinstance(request, Request)
    assert policy.admit(request, peer(ROAMING_IP), T0).action == Action.CHALLENGE


def test_routing_gateway_passes_with_routing_set() -> None:
    policy = make_policy()
    outcome = policy.admit(sip("OPTIONS", "ping", src=VENDOR_IP), peer(VENDOR_IP), T0)
    assert outcome.action == Action.PASS
    assert outcome.source is not None
    assert outcome.source.kind == SourceKind.ROUTING_GATEWAY
    assert outcome.source.routing == VENDOR
    assert outcome.source.mapping is None
    # Any port of the vendor's host.
    outcome = policy.admit(sip("OPTIONS", "ping", src=VENDOR_IP), peer(VENDOR_IP, 5099), T0)
    assert outcome.action == Action.PASS and outcome.source is not None
    assert outcome.source.routing == VENDOR
    # A vendor does not originate calls: its INVITE is challenged like a stranger's (a
    # carrier that is also a password-mode customer answers with its username).
    outcome = policy.admit(sip("INVITE", "4930111", src=VENDOR_IP), peer(VENDOR_IP), T0)
    assert (outcome.action, outcome.source) == (Action.CHALLENGE, None)


def test_claimed_user_comes_before_vendor() -> None:
    """Docstring order: rule 4 (From user of a password gateway) before rule 5 (vendor)."""
    policy = make_policy()
    outcome = policy.admit(sip("INVITE", "acme", src=VENDOR_IP), peer(VENDOR_IP), T0)
    assert outcome.action == Action.CHALLENGE


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS", "MESSAGE", "SUBSCRIBE", "REGISTER"])
def test_unknown_source_challenged_when_on(method: str) -> None:
    on = make_policy()
    outcome = on.admit(sip(method, "4930111", src=STRANGER_IP), peer(STRANGER_IP), T0)
    assert (outcome.action, outcome.status) == (Action.CHALLENGE, 401)
    assert [name for name, _v in outcome.headers] == ["WWW-Authenticate"]
    assert on.counters.challenged == {"unknown": 1}


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS", "MESSAGE", "SUBSCRIBE"])
def test_unknown_source_hears_nothing_when_off(method: str) -> None:
    off = make_policy({"SS_REPLY_UNAUTHORIZED": "Off"}, phones=PHONES)
    for user in ("4930111", "acme", "1001"):  # existing accounts or not: the same
        outcome = off.admit(sip(method, user, src=STRANGER_IP), peer(STRANGER_IP), T0)
        assert (outcome.action, outcome.status, outcome.headers) == (Action.DROP, 0, [])
    assert off.counters.dropped == {"unknown_source": 3}
    assert len(off.sessions) == 0  # no state


def test_register_challenged_whoever_it_names_when_off() -> None:
    off = make_policy({"SS_REPLY_UNAUTHORIZED": "Off"}, phones=PHONES)
    outcomes = [off.admit(sip("REGISTER", user, src=STRANGER_IP), peer(STRANGER_IP), T0)
                for user in ("2002", "1001", "acme")]
    assert [(o.action, o.status) for o in outcomes] == [(Action.CHALLENGE, 401)] * 3


def test_register_dropped_when_off_and_nothing_may_register() -> None:
    """Off on a switch with IP trunks only: not one byte to a REGISTER either. What a
    REGISTER can learn with Off is that accounts exist, never which."""
    off = {"SS_REPLY_UNAUTHORIZED": "Off"}
    for policy in (make_policy(off, mappings=[IP_GW, IP_PORT_GW]),
                   make_policy(off, mappings=[IP_GW, mapping(3, "password", username="acme",
                                                             password="x", enabled=False)])):
        outcome = policy.admit(sip("REGISTER", "acme", src=STRANGER_IP), peer(STRANGER_IP), T0)
        assert outcome.action == Action.DROP
    with_phone = make_policy(off, mappings=[IP_GW], phones=PHONES)
    outcome = with_phone.admit(sip("REGISTER", "x", src=STRANGER_IP), peer(STRANGER_IP), T0)
    assert outcome.action == Action.CHALLENGE


def test_known_sources_unaffected_by_reply_unauthorized_off() -> None:
    policy = make_policy({"SS_REPLY_UNAUTHORIZED": "Off"})
    assert_pass_mapping(policy.admit(sip("INVITE", "1", src=GW_IP), peer(GW_IP), T0), IP_GW)
    assert policy.admit(sip("OPTIONS", "p", src=VENDOR_IP), peer(VENDOR_IP), T0).action == \
        Action.PASS


def test_disabled_gateways_are_ignored() -> None:
    mappings = [
        mapping(1, "ip", ips=[GW_IP], enabled=False),
        mapping(2, "ip_port", ips=[GW_IP], port=5070, enabled=False),
        mapping(3, "password", username="acme", password="acme-secret", enabled=False),
    ]
    policy = make_policy(mappings=mappings, vendors=[vendor(1, VENDOR_IP, enabled=False)])
    for request, source in [
        (sip("INVITE", "1", src=GW_IP), peer(GW_IP)),
        (sip("INVITE", "1", src=GW_IP), peer(GW_IP, 5070)),
        (sip("INVITE", "acme"), peer(ROAMING_IP)),
        (sip("OPTIONS", "ping", src=VENDOR_IP), peer(VENDOR_IP)),
    ]:
        outcome = policy.admit(request, source, T0)
        assert (outcome.action, outcome.source) == (Action.CHALLENGE, None), request
    assert policy.counters.challenged == {"unknown": 4}
    # Credentials of a disabled password gateway are no better.
    nonce = policy.verifier.minter.mint(REALM, T0)
    creds = credentials(("WWW-Authenticate", f'Digest realm="{REALM}", nonce="{nonce}", '
                         'algorithm=MD5, qop="auth"'), "INVITE", CALLEE, "acme", "acme-secret")
    outcome = policy.admit(sip("INVITE", "acme", auth=creds), peer(ROAMING_IP), T0)
    assert outcome.action == Action.CHALLENGE and policy.counters.authenticated == {}


def test_disabled_gateway_does_not_hide_an_enabled_one() -> None:
    mappings = [mapping(1, "ip", ips=[GW_IP], enabled=False), mapping(2, "ip", ips=[GW_IP])]
    policy = make_policy(mappings=mappings, vendors=[vendor(1, GW_IP, enabled=False),
                                                     vendor(2, VENDOR_IP)])
    assert_pass_mapping(policy.admit(sip("INVITE", "1", src=GW_IP), peer(GW_IP), T0),
                        mappings[1])


def _loaded_directory(rows: list[tuple[object, ...]],
                      vendors: list[tuple[object, ...]]) -> GatewayDirectory:
    # The real schema, as the migrations build it.
    with SqliteDatabase(":memory:") as database:
        migrate.migrate(database)
        database.execute_many(
            "INSERT INTO mapping_gateways (id, name, auth_mode, ips, port, username, "
            "password, capacity, enabled) VALUES (?,?,?,?,?,?,?,?,?)", rows)
        database.execute_many(
            "INSERT INTO routing_gateways (id, name, host, port, transport, prefixes, "
            "priority, prefix_mode, capacity, enabled) VALUES (?,?,?,?,?,?,?,?,?,?)", vendors)
        d = GatewayDirectory()
        d.set_mapping(mapping_gateways(database))
        d.set_routing(routing_gateways(database))
    return d


def test_lowest_id_wins_among_gateways_of_one_rule() -> None:
    ips = json.dumps([GW_IP])
    # Inserted highest id first: the directory still lists them by id.
    d = _loaded_directory(
        [
            (9, "ip9", "ip", ips, None, None, None, None, 1),
            (7, "port7", "ip_port", ips, 5070, None, None, None, 1),
            (5, "port5", "ip_port", ips, 5070, None, None, None, 1),
            (4, "ip4", "ip", ips, None, None, None, None, 1),
            (8, "pw8", "password", "[]", None, "acme", "eight", None, 1),
            (6, "pw6", "password", "[]", None, "acme", "six", None, 1),
        ],
        [
            (3, "v3", VENDOR_IP, 5060, "udp", "[]", 0, "terminate", None, 1),
            (2, "v2", VENDOR_IP, 5060, "udp", "[]", 0, "terminate", None, 1),
        ],
    )
    assert classify_by_address(peer(GW_IP, 5070), d).mapping is d.mapping[5]
    assert classify_by_address(peer(GW_IP, 5060), d).mapping is d.mapping[4]
    assert classify_by_address(peer(VENDOR_IP), d).routing is d.routing[2]
    policy = Policy(Params(), d, default_realm=REALM)
    call_id = "lowest-id@x"
    first = policy.admit(sip("INVITE", "acme", call_id=call_id), peer(ROAMING_IP), T0)
    outcome = policy.admit(retry(first, "INVITE", "acme", "six", call_id=call_id),
                           peer(ROAMING_IP), T0)
    assert_pass_mapping(outcome, d.mapping[6])


# -- challenges ----------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "header"), [(401, "WWW-Authenticate"),
                                              (407, "Proxy-Authenticate")])
def test_challenge_code_and_header(code: int, header: str) -> None:
    policy = make_policy({"SS_SIP_AUTHENTICATION_CODE": code})
    for request in (sip("INVITE", "acme"), sip("REGISTER", "acme")):
        outcome = policy.admit(request, peer(ROAMING_IP), T0)
        assert (outcome.action, outcome.status) == (Action.CHALLENGE, code)
        assert outcome.headers and all(name == header for name, _v in outcome.headers)


@pytest.mark.parametrize(
    ("setting", "algorithms"),
    [("MD5", ["MD5"]), ("SHA-256", ["SHA-256"]), ("MD5+SHA-256", ["MD5", "SHA-256"]),
     ("SHA-256+MD5", ["SHA-256", "MD5"])],
)
def test_one_challenge_header_per_algorithm_in_order(setting: str,
                                                     algorithms: list[str]) -> None:
    policy = make_policy({"SS_SIP_AUTHENTICATION_ALGORITHM": setting})
    outcome = policy.admit(sip("INVITE", "acme"), peer(ROAMING_IP), T0)
    params = challenge_params(outcome)
    assert [p["algorithm"] for p in params] == algorithms
    for p in params:
        assert p["realm"] == REALM and p["qop"] == "auth" and "stale" not in p
        assert policy.verifier.minter.check(p["nonce"], REALM, T0) == NonceState.VALID


def test_realm_parameter_used_when_set() -> None:
    policy = make_policy({"SS_SIP_AUTHENTICATION_REALM": "voice.carrier.example"})
    assert policy.realm == "voice.carrier.example"
    outcome = policy.admit(sip("INVITE", "acme", call_id="realm@x"), peer(ROAMING_IP), T0)
    assert {p["realm"] for p in challenge_params(outcome)} == {"voice.carrier.example"}
    ok = policy.admit(retry(outcome, "INVITE", "acme", "acme-secret", call_id="realm@x"),
                      peer(ROAMING_IP), T0 + 1)
    assert_pass_mapping(ok, ACME)
    # Answers computed for the default realm are not accepted.
    policy2 = make_policy({"SS_SIP_AUTHENTICATION_REALM": "voice.carrier.example"})
    nonce = policy2.verifier.minter.mint(REALM, T0)
    creds = credentials(("WWW-Authenticate", f'Digest realm="{REALM}", nonce="{nonce}", '
                         'algorithm=MD5, qop="auth"'), "INVITE", CALLEE, "acme", "acme-secret")
    outcome = policy2.admit(sip("INVITE", "acme", auth=creds), peer(ROAMING_IP), T0)
    assert outcome.action == Action.CHALLENGE


def test_default_realm_when_parameter_empty() -> None:
    policy = make_policy({"SS_SIP_AUTHENTICATION_REALM": ""})
    assert policy.realm == REALM
    outcome = policy.admit(sip("INVITE", "acme"), peer(ROAMING_IP), T0)
    assert {p["realm"] for p in challenge_params(outcome)} == {REALM}


# -- digest rounds -------------------------------------------------------------------------


@pytest.mark.parametrize("code", [401, 407])
@pytest.mark.parametrize("which", [0, 1])
def test_full_digest_round_invite(code: int, which: int) -> None:
    policy = make_policy({"SS_SIP_AUTHENTICATION_CODE": code,
                          "SS_SIP_AUTHENTICATION_ALGORITHM": "SHA-256+MD5"})
    call_id = f"round-{code}-{which}@{ROAMING_IP}"
    first = policy.admit(sip("INVITE", "acme", call_id=call_id), peer(ROAMING_IP), T0)
    assert first.action == Action.CHALLENGE
    assert len(policy.sessions) == 1
    second = retry(first, "INVITE", "acme", "acme-secret", call_id=call_id, which=which)
    outcome = policy.admit(second, peer(ROAMING_IP), T0 + 0.2)
    assert_pass_mapping(outcome, ACME)
    assert outcome.source is not None and outcome.source.account is not None
    assert outcome.source.account.username == "acme"
    assert policy.counters.challenged == {"gateway": 1}
    assert policy.counters.authenticated == {"gateway": 1}
    assert len(policy.sessions) == 0
    assert len(policy.verifier.counts) == 1
    # The same answer again is a replay: challenged afresh, never passed.
    replay = policy.admit(second, peer(ROAMING_IP), T0 + 0.4)
    assert replay.action == Action.CHALLENGE
    assert policy.counters.authenticated == {"gateway": 1}


def test_full_digest_round_register_phone() -> None:
    policy = make_policy(phones=PHONES)
    first = policy.admit(sip("REGISTER", "1001", call_id="reg@x"), peer(ROAMING_IP), T0)
    outcome = policy.admit(retry(first, "REGISTER", "1001", "phone-secret", call_id="reg@x"),
                           peer(ROAMING_IP), T0 + 0.1)
    assert outcome.action == Action.PASS and outcome.source is not None
    assert outcome.source.kind == SourceKind.ACCOUNT
    assert outcome.source.account == PHONES["1001"]
    assert outcome.source.mapping is None
    assert policy.counters.authenticated == {"phone": 1}


def test_credentials_in_the_other_header_are_read_too() -> None:
    policy = make_policy({"SS_SIP_AUTHENTICATION_CODE": 401})
    first = policy.admit(sip("INVITE", "acme", call_id="other-hdr@x"), peer(ROAMING_IP), T0)
    name, value = credentials(first.headers[0], "INVITE", CALLEE, "acme", "acme-secret")
    assert name == "Authorization"
    request = sip("INVITE", "acme", call_id="other-hdr@x", cseq=2,
                  auth=("Proxy-Authorization", value))
    assert_pass_mapping(policy.admit(request, peer(ROAMING_IP), T0), ACME)


def test_authenticated_from_any_address() -> None:
    policy = make_policy()
    for i, ip in enumerate(["203.0.113.1", "2001:db8::7", "192.0.2.200"]):
        call_id = f"any-{i}@x"
        first = policy.admit(sip("INVITE", "acme", src=ip, call_id=call_id), peer(ip), T0)
        outcome = policy.admit(retry(first, "INVITE", "acme", "acme-secret", src=ip,
                                     call_id=call_id), peer(ip), T0)
        assert_pass_mapping(outcome, ACME)


def test_retry_limit() -> None:
    policy = make_policy({"SS_SIP_AUTHENTICATION_RETRY": 2})
    call_id = "retry@x"
    first = policy.admit(sip("INVITE", "acme", call_id=call_id), peer(ROAMING_IP), T0)
    assert first.action == Action.CHALLENGE
    second = policy.admit(retry(first, "INVITE", "acme", "guess", call_id=call_id),
                          peer(ROAMING_IP), T0 + 1)
    assert second.action == Action.CHALLENGE
    third = policy.admit(retry(second, "INVITE", "acme", "guess", call_id=call_id, cseq=3),
                         peer(ROAMING_IP), T0 + 2)
    assert (third.action, third.status, third.reason) == (Action.REJECT, 403, "retry limit")
    assert third.headers == []
    assert policy.counters.challenged == {"gateway": 2}
    assert policy.counters.rejected == {"retry_limit": 1}
    assert len(policy.sessions) == 0


def test_correct_answer_on_the_last_allowed_round_passes() -> None:
    policy = make_policy({"SS_SIP_AUTHENTICATION_RETRY": 2})
    call_id = "last-round@x"
    first = policy.admit(sip("INVITE", "acme", call_id=call_id), peer(ROAMING_IP), T0)
    second = policy.admit(retry(first, "INVITE", "acme", "guess", call_id=call_id),
                          peer(ROAMING_IP), T0)
    third = policy.admit(retry(second, "INVITE", "acme", "acme-secret", call_id=call_id,
                               cseq=3), peer(ROAMING_IP), T0)
    assert_pass_mapping(third, ACME)


def test_retry_limit_is_per_session() -> None:
    policy = make_policy({"SS_SIP_AUTHENTICATION_RETRY": 1})
    a = policy.admit(sip("INVITE", "acme", call_id="s@x", tag="a"), peer(ROAMING_IP), T0)
    b = policy.admit(sip("INVITE", "acme", call_id="s@x", tag="b"), peer(ROAMING_IP), T0)
    assert a.action == b.action == Action.CHALLENGE
    again = policy.admit(sip("INVITE", "acme", call_id="s@x", tag="a"), peer(ROAMING_IP), T0)
    assert again.action == Action.REJECT


def test_session_timeout() -> None:
    policy = make_policy({"SS_SIP_AUTHENTICATION_TIMEOUT": 10})
    first = policy.admit(sip("INVITE", "acme", call_id="late@x"), peer(ROAMING_IP), T0)
    late = policy.admit(retry(first, "INVITE", "acme", "acme-secret", call_id="late@x"),
                        peer(ROAMING_IP), T0 + 10.5)
    assert (late.action, late.status, late.reason) == (Action.REJECT, 403,
                                                       "authentication timeout")
    assert policy.counters.rejected == {"authentication_timeout": 1}
    assert len(policy.sessions) == 0
    # Exactly at the limit is still in time.
    first = policy.admit(sip("INVITE", "acme", call_id="edge@x"), peer(ROAMING_IP), T0)
    edge = policy.admit(retry(first, "INVITE", "acme", "acme-secret", call_id="edge@x"),
                        peer(ROAMING_IP), T0 + 10)
    assert_pass_mapping(edge, ACME)


# -- suspension ----------------------------------------------------------------------------

SUSPEND = {
    "SS_AUTHENTICATION_MAX_RETRY": 2,
    "SS_AUTHENTICATION_FAILED_SUSPEND": 60,
    "SS_SIP_AUTHENTICATION_RETRY": 999,
    "SS_SIP_AUTHENTICATION_TIMEOUT": 3600,
}


def guess(policy: Policy, src: str, now: float, password: str = "guess",
          method: str = "INVITE", user: str = "acme") -> Outcome:
    """One full try in a fresh session: challenge, then an answer with ``password``."""
    call_id = f"guess-{next(_ids)}@{src}"
    first = policy.admit(sip(method, user, src=src, call_id=call_id), peer(src), now)
    if first.action != Action.CHALLENGE:
        return first
    return policy.admit(retry(first, method, user, password, src=src, call_id=call_id),
                        peer(src), now)


@pytest.mark.parametrize(("reply", "method"), [("On", "INVITE"), ("On", "REGISTER"),
                                               ("Off", "REGISTER")])
def test_suspension_after_max_wrong_answers(reply: str, method: str) -> None:
    policy = make_policy({**SUSPEND, "SS_REPLY_UNAUTHORIZED": reply,
                          "SS_ENDPOINT_REGISTER_RETRY": 2, "SS_ENDPOINT_REGISTER_SUSPEND": 60})
    kind = "registration" if method == "REGISTER" else "authentication"
    call_id = "guessing@x"
    outcome = policy.admit(sip(method, "acme", call_id=call_id), peer(ROAMING_IP), T0)
    for i in range(2):
        outcome = policy.admit(retry(outcome, method, "acme", f"guess{i}", call_id=call_id),
                               peer(ROAMING_IP), T0 + i)
        assert outcome.action == Action.CHALLENGE
    suspended = policy.admit(retry(outcome, method, "acme", "guess3", call_id=call_id),
                             peer(ROAMING_IP), T0 + 3)
    # One 403 for the suspension when On, nothing when Off; no challenge header.
    assert suspended.action == (Action.REJECT if reply == "On" else Action.DROP)
    assert suspended.reason == "suspended"
    assert suspended.headers == []
    assert suspended.status == (403 if reply == "On" else 0)
    assert policy.counters.suspended == {kind: 1}
    [entry] = policy.suspensions.active(T0 + 3)
    assert (entry.terminal, entry.source_ip, entry.kind) == ("acme", ROAMING_IP, kind)
    assert (entry.since, entry.until, entry.failures) == (T0 + 3, T0 + 63, 3)
    # While suspended, even the right password gets nothing back: counted, not answered.
    assert guess(policy, ROAMING_IP, T0 + 10, "acme-secret", method=method).action == \
        Action.DROP
    nonce = policy.verifier.minter.mint(REALM, T0 + 10)
    uri = f"sip:{REALM}" if method == "REGISTER" else CALLEE
    creds = credentials(("WWW-Authenticate", f'Digest realm="{REALM}", nonce="{nonce}", '
                         'algorithm=MD5, qop="auth"'), method, uri, "acme", "acme-secret")
    for _ in range(100):
        direct = policy.admit(sip(method, "acme", auth=creds), peer(ROAMING_IP), T0 + 10)
        assert direct.action == Action.DROP
    told = 1 if reply == "On" else 0
    assert policy.counters.rejected == ({"suspended": 1} if told else {})
    assert policy.counters.dropped == {"suspended": 101 + 1 - told}
    # Another source address with the right password is unaffected.
    assert_pass_mapping(guess(policy, OTHER_IP, T0 + 10, "acme-secret", method=method), ACME)
    # After the suspension the terminal may try again...
    assert_pass_mapping(guess(policy, ROAMING_IP, T0 + 63, "acme-secret", method=method),
                        ACME)
    assert policy.suspensions.active(T0 + 63) == []
    # ... and a new suspension is told once again.
    outcomes = [guess(policy, ROAMING_IP, T0 + 70, method=method) for _ in range(5)]
    assert [o.status for o in outcomes] == [401, 401, 403 if told else 0, 0, 0]


def test_guesser_gets_max_plus_one_checks_per_period() -> None:
    policy = make_policy(SUSPEND)
    results = [guess(policy, ROAMING_IP, T0 + i).action for i in range(6)]
    assert results == [Action.CHALLENGE, Action.CHALLENGE, Action.REJECT, Action.DROP,
                       Action.DROP, Action.DROP]


def test_correct_password_resets_failure_count() -> None:
    policy = make_policy(SUSPEND)
    for _ in range(5):
        assert guess(policy, ROAMING_IP, T0).action == Action.CHALLENGE
        assert guess(policy, ROAMING_IP, T0).action == Action.CHALLENGE
        assert_pass_mapping(guess(policy, ROAMING_IP, T0, "acme-secret"), ACME)
    assert policy.suspensions.active(T0) == []


def test_stale_and_invalid_answers_do_not_count_as_failures() -> None:
    policy = make_policy(SUSPEND)
    foreign = NonceMinter().mint(REALM, T0)
    creds = credentials(("WWW-Authenticate", f'Digest realm="{REALM}", nonce="{foreign}", '
                         'algorithm=MD5, qop="auth"'), "INVITE", CALLEE, "acme", "guess")
    for _ in range(10):
        outcome = policy.admit(sip("INVITE", "acme", auth=creds), peer(ROAMING_IP), T0)
        assert outcome.action == Action.CHALLENGE
    assert len(policy.suspensions.failures) == 0


def test_register_failures_use_register_limits_for_phones() -> None:
    policy = make_policy({**SUSPEND, "SS_AUTHENTICATION_MAX_RETRY": 6,
                          "SS_ENDPOINT_REGISTER_RETRY": 1, "SS_ENDPOINT_REGISTER_SUSPEND": 30},
                         phones=PHONES)
    assert guess(policy, ROAMING_IP, T0, method="REGISTER", user="1001").action == \
        Action.CHALLENGE
    refused = guess(policy, ROAMING_IP, T0 + 1, method="REGISTER", user="1001")
    assert (refused.action, refused.reason) == (Action.REJECT, "suspended")
    [entry] = policy.suspensions.active(T0 + 1)
    assert (entry.terminal, entry.kind, entry.until) == ("1001", "registration", T0 + 31)
    assert policy.counters.suspended == {"registration": 1}
    ok = guess(policy, ROAMING_IP, T0 + 31, "phone-secret", method="REGISTER", user="1001")
    assert ok.action == Action.PASS


def test_register_suspend_zero_never_suspends_phones() -> None:
    policy = make_policy({**SUSPEND, "SS_ENDPOINT_REGISTER_RETRY": 1,
                          "SS_ENDPOINT_REGISTER_SUSPEND": 0}, phones=PHONES)
    for i in range(10):
        outcome = guess(policy, ROAMING_IP, T0 + i, method="REGISTER", user="1001")
        assert outcome.action == Action.CHALLENGE
    assert policy.suspensions.active(T0) == []


def test_gateway_register_uses_registration_limits() -> None:
    """Every REGISTER, whoever it names, counts against the registration limits, so the
    count before a suspension tells a gateway's username from a phone's or nobody's."""
    policy = make_policy({**SUSPEND, "SS_AUTHENTICATION_MAX_RETRY": 0,
                          "SS_ENDPOINT_REGISTER_RETRY": 3})
    results = [guess(policy, ROAMING_IP, T0, method="REGISTER").action for _ in range(4)]
    assert results == [Action.CHALLENGE] * 3 + [Action.REJECT]
    assert policy.counters.suspended == {"registration": 1}


def test_phone_invite_uses_authentication_limits() -> None:
    policy = make_policy({**SUSPEND, "SS_AUTHENTICATION_MAX_RETRY": 2,
                          "SS_ENDPOINT_REGISTER_RETRY": 0}, phones=PHONES)
    results = [guess(policy, ROAMING_IP, T0, user="1001").action for _ in range(3)]
    assert results == [Action.CHALLENGE, Action.CHALLENGE, Action.REJECT]


# -- nonexistent accounts ------------------------------------------------------------------


def test_register_for_nonexistent_account_never_passes() -> None:
    policy = make_policy({**SUSPEND, "SS_ENDPOINT_REGISTER_RETRY": 3}, phones=PHONES)
    seen: list[Action] = []
    for password in ["", "x", "phone-secret", "acme-secret", "guess", "guess2", "guess3"]:
        outcome = guess(policy, ROAMING_IP, T0, password, method="REGISTER", user="2002")
        seen.append(outcome.action)
    assert Action.PASS not in seen
    # Suspended on the fourth try, exactly like a phone guessing its own password.
    assert seen == [Action.CHALLENGE] * 3 + [Action.REJECT] + [Action.DROP] * 3
    existing = [guess(policy, OTHER_IP, T0, "nope", method="REGISTER", user="1001").action
                for _ in range(7)]
    assert existing == seen


def test_credentials_for_nonexistent_account_when_off() -> None:
    """Off: a REGISTER is challenged and an INVITE dropped, whoever the credentials name."""
    policy = make_policy({"SS_REPLY_UNAUTHORIZED": "Off"}, phones=PHONES)
    nonce = policy.verifier.minter.mint(REALM, T0)
    for user in ("2002", "1001", "acme"):
        for method, uri, action in (("REGISTER", f"sip:{REALM}", Action.CHALLENGE),
                                    ("INVITE", CALLEE, Action.DROP)):
            creds = credentials(("WWW-Authenticate", f'Digest realm="{REALM}", nonce="{nonce}", '
                                 'algorithm=MD5, qop="auth"'), method, uri, user, "x")
            outcome = policy.admit(sip(method, user, auth=creds), peer(ROAMING_IP), T0)
            assert outcome.action == action, (user, method)


def test_probing_with_a_bad_nonce_cannot_tell_accounts_apart() -> None:
    """Existing and nonexistent accounts must look alike even with a nonce we never minted."""
    policy = make_policy({**SUSPEND, "SS_ENDPOINT_REGISTER_RETRY": 2}, phones=PHONES)
    foreign = NonceMinter().mint(REALM, T0)
    challenge = ("WWW-Authenticate",
                 f'Digest realm="{REALM}", nonce="{foreign}", algorithm=MD5, qop="auth"')

    def probe(user: str) -> list[tuple[Action, int]]:
        out = []
        for _ in range(5):
            creds = credentials(challenge, "REGISTER", f"sip:{REALM}", user, "guess")
            outcome = policy.admit(sip("REGISTER", user, auth=creds), peer(ROAMING_IP), T0)
            out.append((outcome.action, outcome.status))
        return out

    assert probe("2002") == probe("1001")


def _observed(outcome: Outcome) -> tuple[object, ...]:
    """What a prober sees of an outcome: everything but the nonce's random bytes."""
    params = [tuple(sorted((k, v) for k, v in p.items() if k != "nonce"))
              for p in challenge_params(outcome)]
    return (outcome.action, outcome.status, [n for n, _v in outcome.headers], params)


def _transcript(reply: str, method: str, user: str,
                monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, ...]]:
    """A prober's whole exchange naming ``user``: first requests, wrong answers in one
    session up to the retry limit, fresh sessions up to and past the suspension, a
    forged nonce, an expired nonce, and the digests computed along the way."""
    import b2bua.security.digest as digest

    hashed: list[int] = []
    real = digest.response_digest

    def counting(*args: str | None) -> str:
        hashed.append(1)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(digest, "response_digest", counting)
    # Different limits for calls and registrations: neither may tell accounts apart.
    policy = make_policy({"SS_REPLY_UNAUTHORIZED": reply, "SS_AUTHENTICATION_MAX_RETRY": 2,
                          "SS_ENDPOINT_REGISTER_RETRY": 4, "SS_SIP_AUTHENTICATION_RETRY": 3,
                          "SS_SIP_AUTHENTICATION_TIMEOUT": 3600}, phones=PHONES)
    seen: list[tuple[object, ...]] = []
    uri = f"sip:{REALM}" if method in ("REGISTER", "OPTIONS") else CALLEE
    src = peer(ROAMING_IP)
    # One session: wrong answers until the retry limit (or the suspension).
    outcome = policy.admit(sip(method, user, call_id="s1"), src, T0)
    seen.append(_observed(outcome))
    for i in range(4):
        if outcome.action != Action.CHALLENGE:
            break
        outcome = policy.admit(retry(outcome, method, user, f"g{i}", call_id="s1",
                                     cseq=2 + i), src, T0 + i)
        seen.append((*_observed(outcome), len(hashed)))
    for _ in range(8):  # fresh sessions from the same source
        seen.append(_observed(guess(policy, ROAMING_IP, T0 + 5, method=method, user=user)))
    other = peer(OTHER_IP)
    for nonce in (NonceMinter().mint(REALM, T0),  # forged
                  policy.verifier.minter.mint(REALM, T0 - 100)):  # expired
        creds = credentials(("WWW-Authenticate", f'Digest realm="{REALM}", nonce="{nonce}", '
                             'algorithm=MD5, qop="auth"'), method, uri, user, "guess")
        seen.append(_observed(policy.admit(sip(method, user, auth=creds), other, T0)))
    seen.append(("digests computed", len(hashed)))
    return seen


@pytest.mark.parametrize("reply", ["On", "Off"])
@pytest.mark.parametrize("method", ["INVITE", "REGISTER", "OPTIONS"])
def test_existing_and_nonexistent_accounts_look_alike(reply: str, method: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A password gateway's username, a phone account and a name that is nobody's get
    the same codes, headers, challenge parameters, suspension and digest work."""
    transcripts = {user: _transcript(reply, method, user, monkeypatch)
                   for user in ("acme", "1001", "nobody")}
    assert transcripts["acme"] == transcripts["nobody"]
    assert transcripts["1001"] == transcripts["nobody"]
    codes = [t[1] for t in transcripts["nobody"] if t[0] != "digests computed"]
    if reply == "Off" and method != "REGISTER":
        assert set(codes) == {0}  # nothing at all
    else:
        assert 401 in codes and codes.count(403) <= 2  # the retry limit, one suspension


# -- stale nonces --------------------------------------------------------------------------


def test_stale_nonce_with_correct_password_rechallenged_with_stale_true() -> None:
    policy = make_policy(phones=PHONES)
    call_id, src = "refresh@x", peer(ROAMING_IP)
    first = policy.admit(sip("REGISTER", "1001", call_id=call_id), src, T0)
    ok = policy.admit(retry(first, "REGISTER", "1001", "phone-secret", call_id=call_id), src,
                      T0 + 1)
    assert ok.action == Action.PASS
    # An hour later the phone refreshes with the cached nonce and the next nonce count.
    refresh = retry(first, "REGISTER", "1001", "phone-secret", call_id=call_id, cseq=3,
                    nc="00000002")
    stale = policy.admit(refresh, src, T0 + 3600)
    assert (stale.action, stale.status) == (Action.CHALLENGE, 401)
    params = challenge_params(stale)
    assert params and all(p.get("stale") == "true" for p in params)
    assert all(p["nonce"] != challenge_params(first)[0]["nonce"] for p in params)
    assert len(policy.suspensions.failures) == 0
    again = policy.admit(retry(stale, "REGISTER", "1001", "phone-secret", call_id=call_id,
                               cseq=4), src, T0 + 3600.1)
    assert again.action == Action.PASS
    # A wrong password on a stale nonce is no stale case: no stale flag, a failure counted.
    wrong = retry(first, "REGISTER", "1001", "guess", call_id=call_id, cseq=5, nc="00000003")
    outcome = policy.admit(wrong, src, T0 + 3601)
    assert outcome.action == Action.CHALLENGE
    assert all("stale" not in p for p in challenge_params(outcome))
    assert len(policy.suspensions.failures) == 1


# -- hostile input -------------------------------------------------------------------------


def test_non_ascii_response_from_the_wire_does_not_raise() -> None:
    policy = make_policy()
    nonce = policy.verifier.minter.mint(REALM, T0)
    data = wire(
        f"INVITE {CALLEE} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {ROAMING_IP}:5060;branch=z9hG4bK-hostile\n"
        "Max-Forwards: 70\n"
        f"From: <sip:acme@{ROAMING_IP}>;tag=h1\n"
        f"To: <{CALLEE}>\n"
        "Call-ID: hostile@x\n"
        "CSeq: 1 INVITE\n"
        f'Proxy-Authorization: Digest username="acme",realm="{REALM}",nonce="{nonce}",'
        f'uri="{CALLEE}",response="RESPONSE",qop=auth,nc=00000001,cnonce="c"\n'
        "Content-Length: 0\n\n"
    ).replace(b"RESPONSE", b"\xff\xfe" * 16)
    request = parse_message(data)
    assert isinstance(request, Request)
    outcome = policy.admit(request, peer(ROAMING_IP), T0)
    assert outcome.action in (Action.CHALLENGE, Action.REJECT)


def test_unparsable_credentials_are_ignored() -> None:
    policy = make_policy()
    for value in ("Basic YWNtZTpzZWNyZXQ=", 'Digest username="acme", algorithm=MD5-sess',
                  'Digest username="unterminated'):
        outcome = policy.admit(sip("INVITE", "acme", auth=("Authorization", value)),
                               peer(ROAMING_IP), T0)
        assert outcome.action == Action.CHALLENGE
        outcome = policy.admit(sip("INVITE", "1", src=GW_IP, auth=("Authorization", value)),
                               peer(GW_IP), T0)
        assert_pass_mapping(outcome, IP_GW)


# -- bounds, logs, snapshot ----------------------------------------------------------------


def _ip(i: int) -> str:
    return f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def test_memory_bound_under_a_flood_of_distinct_sources() -> None:
    policy = make_policy()
    n = 100_000
    for i in range(n):
        ip = _ip(i)
        # Unknown REGISTERs are the one unknown request that creates a session.
        request = Request("REGISTER", f"sip:{REALM}", [
            ("Via", f"SIP/2.0/UDP {ip}:5060;branch=z9hG4bK-{i}"),
            ("From", f"<sip:u{i}@{REALM}>;tag=t{i}"),
            ("To", f"<sip:u{i}@{REALM}>"),
            ("Call-ID", f"flood-{i}@{ip}"),
            ("CSeq", "1 REGISTER"),
        ])
        outcome = policy.admit(request, peer(ip), T0 + i / 1000)
        assert outcome.action == Action.CHALLENGE
        assert len(policy.sessions) <= SESSION_LIMIT
    assert len(policy.sessions) == SESSION_LIMIT
    snapshot = policy.snapshot(T0)
    assert snapshot["auth_sessions"] == SESSION_LIMIT
    assert snapshot["auth_sessions_evicted"] == n - SESSION_LIMIT
    assert snapshot["challenged"] == {"unknown": n}


def test_flood_of_unknown_invites_creates_no_state_when_off() -> None:
    policy = make_policy({"SS_REPLY_UNAUTHORIZED": "Off"})
    for i in range(5_000):
        ip = _ip(i)
        outcome = policy.admit(sip("INVITE", "4930111", src=ip), peer(ip), T0)
        assert outcome.action == Action.DROP
    assert len(policy.sessions) == 0
    assert len(policy.suspensions.failures) == 0


def test_flood_of_random_usernames_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wrong credentials for ever new usernames (a scanner's dictionary) from ever new
    addresses: every table stays within its bound, and counting still works after."""
    import b2bua.security.state as state

    for name in ("FAILURE_LIMIT", "SUSPENSION_LIMIT", "SESSION_LIMIT", "LOG_LIMIT"):
        monkeypatch.setattr(state, name, 500)
    policy = make_policy({**SUSPEND, "SS_AUTHENTICATION_MAX_RETRY": 0}, phones=PHONES)
    policy.sessions = state.BoundedMap(500)
    nonce = policy.verifier.minter.mint(REALM, T0)
    challenge = ("WWW-Authenticate",
                 f'Digest realm="{REALM}", nonce="{nonce}", algorithm=MD5, qop="auth"')
    for i in range(3_000):
        ip = _ip(i % 1_500)
        creds = credentials(challenge, "INVITE", CALLEE, f"u{i}", "x")
        policy.admit(sip("INVITE", f"u{i}", src=ip, auth=creds), peer(ip), T0)
    assert len(policy.sessions) <= 500
    assert len(policy.suspensions.failures) <= 500
    assert len(policy.suspensions.suspended) <= 500
    assert len(policy.suspensions.told) <= 500
    assert len(policy.verifier.counts) == 0  # wrong answers never reach the nonce counts
    # A guesser of a real account is still suspended at the limit.
    assert guess(policy, OTHER_IP, T0).action == Action.REJECT


def test_log_throttled_per_source(caplog: pytest.LogCaptureFixture) -> None:
    policy = make_policy({"SS_SECURITY_LOG_INTERVAL": 60, "SS_REPLY_UNAUTHORIZED": "Off"})
    with caplog.at_level(logging.INFO, logger="b2bua.security"):
        for i in range(10):
            policy.admit(sip("INVITE", "1", src=STRANGER_IP), peer(STRANGER_IP), T0 + i)
        policy.admit(sip("INVITE", "1", src=OTHER_IP), peer(OTHER_IP), T0)
        policy.admit(sip("INVITE", "1", src=STRANGER_IP), peer(STRANGER_IP), T0 + 60)
    lines = [r for r in caplog.records if r.name == "b2bua.security"]
    assert len(lines) == 3
    assert policy.snapshot(T0)["log_lines_suppressed"] == 9


def test_snapshot_keys() -> None:
    policy = make_policy(SUSPEND)
    guess(policy, ROAMING_IP, T0)
    snapshot = policy.snapshot(T0)
    assert set(snapshot) == {
        "dropped", "rejected", "challenged", "authenticated", "suspended", "suspended_now",
        "auth_sessions", "auth_sessions_evicted", "failure_entries", "nonce_counts",
        "log_lines_suppressed",
    }
    assert snapshot["challenged"] == {"gateway": 2}
    assert snapshot["failure_entries"] == 1
    assert snapshot["suspended_now"] == 0
    json.dumps(snapshot)
