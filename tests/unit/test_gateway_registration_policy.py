"""Registering mapping gateways: a password-mode trunk registers like a phone, then its
registered address identifies its calls, whatever their From user. The policy, the
registrar and the bindings together, with a fake clock."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from test_policy import (
    ACME,
    CALLEE,
    IP_GW,
    PHONES,
    ROAMING_IP,
    T0,
    credentials,
    directory,
    peer,
    retry,
    sip,
)

from b2bua.config.live import Params
from b2bua.policy import Action, Outcome, Policy, Registered, SourceKind, registered_gateway
from b2bua.registrar.bindings import Binding, BindingStore
from b2bua.registrar.keepalive import KeepAlive
from b2bua.registrar.registrar import Registrar
from b2bua.routing.gateways import GatewayDirectory
from b2bua.sip.peer import Peer
from b2bua.storage.registrations import RegistrationLog

CALLER = "4930999888"  # the caller's number a PBX trunk puts in From
OFF = {"SS_REPLY_UNAUTHORIZED": "Off"}


class _Writes:
    def __init__(self) -> None:
        self.rows: list[tuple[str, tuple[Any, ...]]] = []

    def submit(self, sql: str, args: tuple[Any, ...]) -> None:
        self.rows.append((sql, args))


class Switch:
    """What the engine composes: the policy reading the bindings the registrar writes."""

    def __init__(self, values: dict[str, object] | None = None,
                 gateways: GatewayDirectory | None = None) -> None:
        self.params = Params()
        self.params.values.update(values or {})
        self.writes = _Writes()
        self.bindings = BindingStore(RegistrationLog(self.writes))  # type: ignore[arg-type]
        self.registrar = Registrar(self.params, self.bindings)
        self.gateways = gateways or directory([ACME, IP_GW])
        self.policy = Policy(self.params, self.gateways, "sw.example",
                             phone_accounts=PHONES.get, registered_user=self._registered,
                             any_phone=lambda: True)

    def _registered(self, source: Peer, now: float) -> Registered | None:
        binding = self.bindings.find_by_source(source, now)
        return Registered(binding.username, binding.mapping_gateway_id) if binding else None

    def register(self, src: Peer, now: float, password: str = "acme-secret",
                 path: str | None = None) -> int:
        """A REGISTER for acme from ``src`` through its digest round; the final status."""
        call_id = f"reg-{src.port}-{now}@pbx"
        request = sip("REGISTER", "acme", src=src.host, call_id=call_id)
        if path is not None:
            request.add("Path", path)
        first = self.policy.admit(request, src, now)
        assert first.action == Action.CHALLENGE, first
        answer = retry(first, "REGISTER", "acme", password, src=src.host, call_id=call_id)
        if path is not None:
            answer.add("Path", path)
        outcome = self.policy.admit(answer, src, now)
        if outcome.action != Action.PASS:
            return outcome.status
        assert outcome.source is not None and outcome.source.account is not None
        assert outcome.source.mapping == ACME and outcome.source.account.kind == "gateway"
        response = self.registrar.register(answer, src, outcome.source.account.username,
                                           now, outcome.source.mapping.id)
        return response.status

    def invite(self, src: Peer, now: float, call_id: str = "call@pbx") -> Outcome:
        return self.policy.admit(sip("INVITE", CALLER, src=src.host, call_id=call_id),
                                 src, now)


PBX = peer(ROAMING_IP, 5062)


def test_a_registered_gateway_is_found_by_its_address_whatever_the_from_user() -> None:
    switch = Switch(OFF)
    assert switch.register(PBX, T0) == 200
    (binding,) = switch.bindings.of("acme", T0)
    assert (binding.mapping_gateway_id, binding.source) == (ACME.id, PBX)
    assert binding.snapshot()["kind"] == "mapping_gateway"
    # Off, From naming the caller's number: challenged, as the gateway.
    first = switch.invite(PBX, T0 + 1)
    assert (first.action, first.status) == (Action.CHALLENGE, 401)
    assert switch.policy.counters.challenged == {"gateway": 2}  # REGISTER, INVITE
    # The trunk answers with the gateway's username, From still the caller's number.
    answer = sip("INVITE", CALLER, src=ROAMING_IP, call_id="call@pbx", cseq=2,
                 auth=_gateway_credentials(first))
    outcome = switch.policy.admit(answer, PBX, T0 + 1.1)
    assert outcome.action == Action.PASS and outcome.source is not None
    assert (outcome.source.kind, outcome.source.mapping) == (SourceKind.MAPPING_GATEWAY, ACME)


def _gateway_credentials(challenge: Outcome) -> tuple[str, str]:
    return credentials(challenge.headers[0], "INVITE", CALLEE, "acme", "acme-secret")


def test_a_wrong_password_from_the_registered_address_is_counted_for_the_gateway() -> None:
    switch = Switch(OFF)
    assert switch.register(PBX, T0) == 200
    first = switch.invite(PBX, T0 + 1, call_id="bad@pbx")
    auth = credentials(first.headers[0], "INVITE", CALLEE, "acme", "guess")
    outcome = switch.policy.admit(sip("INVITE", CALLER, src=ROAMING_IP, call_id="bad@pbx",
                                      cseq=2, auth=auth), PBX, T0 + 1.1)
    assert outcome.action == Action.CHALLENGE
    assert switch.policy.suspensions.failures.get(("authentication", ("acme", ROAMING_IP))) == 1


def test_another_port_of_the_same_host_is_not_the_gateway() -> None:
    switch = Switch(OFF)
    assert switch.register(PBX, T0) == 200
    outcome = switch.invite(peer(ROAMING_IP, 5064), T0 + 1)
    assert (outcome.action, outcome.headers) == (Action.DROP, [])


def test_without_registration_the_trunk_hears_nothing_when_off() -> None:
    switch = Switch(OFF)
    assert switch.invite(PBX, T0).action == Action.DROP


def test_a_register_for_the_gateway_is_challenged_when_off_and_a_wrong_one_fails() -> None:
    switch = Switch(OFF)
    assert switch.register(PBX, T0, password="guess") == 401  # re-challenged
    assert switch.bindings.all() == []


def test_the_registration_expires() -> None:
    switch = Switch(OFF)
    assert switch.register(PBX, T0) == 200
    (binding,) = switch.bindings.of("acme", T0)
    # Its Contact names port 5060, it sends from 5062: behind NAT, so it gets at most
    # SS_ENDPOINT_NAT_EXPIRE (of the 3600 asked), as a phone would.
    assert binding.nat and binding.expires_at == T0 + switch.params.integer(
        "SS_ENDPOINT_NAT_EXPIRE")
    assert switch.invite(PBX, binding.expires_at - 1).action == Action.CHALLENGE
    assert switch.invite(PBX, binding.expires_at).action == Action.DROP
    assert switch.bindings.expire(binding.expires_at) == 1


def test_not_identified_when_registered_through_a_path() -> None:
    """Through a proxy the source is the proxy's, shared by all behind it: not indexed."""
    switch = Switch(OFF)
    assert switch.register(PBX, T0, path="<sip:192.0.2.20;lr>") == 200
    (binding,) = switch.bindings.of("acme", T0)
    assert binding.path == ("<sip:192.0.2.20;lr>",)
    assert switch.bindings.find_by_source(PBX, T0) is None
    assert switch.invite(PBX, T0 + 1).action == Action.DROP


def test_a_disabled_gateway_is_not_identified_before_the_reload_prunes_it() -> None:
    switch = Switch(OFF)
    assert switch.register(PBX, T0) == 200
    for changed in (dataclasses.replace(ACME, enabled=False),
                    dataclasses.replace(ACME, auth_mode="ip", ips=frozenset([ROAMING_IP])),
                    dataclasses.replace(ACME, username="other")):
        switch.gateways.mapping[ACME.id] = changed
        assert registered_gateway(switch.gateways, ACME.id, "acme") is None
        if changed.auth_mode != "ip":
            assert switch.invite(PBX, T0 + 1).action == Action.DROP
    del switch.gateways.mapping[ACME.id]
    assert registered_gateway(switch.gateways, ACME.id, "acme") is None
    switch.gateways.mapping[ACME.id] = ACME
    assert registered_gateway(switch.gateways, ACME.id, "acme") == ACME
    # The engine's reload prunes with the same rule; phones' bindings stay.
    phone = Binding("1001", "sip:1001@192.0.2.9", peer("192.0.2.9"), False, T0 + 60, T0,
                    "", "c")
    switch.bindings.put(phone)
    del switch.gateways.mapping[ACME.id]
    removed = switch.bindings.prune(lambda b: b.mapping_gateway_id is None or registered_gateway(
        switch.gateways, b.mapping_gateway_id, b.username) is not None)
    assert removed == 1 and switch.bindings.all() == [phone]
    assert switch.writes.rows[-1][0].startswith("DELETE FROM registrations")


def test_the_binding_is_stored_with_the_gateway_id() -> None:
    switch = Switch()
    assert switch.register(PBX, T0) == 200
    sql, args = switch.writes.rows[-1]
    assert "mapping_gateway_id" in sql and args[-2] == ACME.id and args[-1] is None


def test_a_nat_gateway_gets_the_nat_keepalive() -> None:
    switch = Switch()
    assert switch.register(PBX, T0) == 200  # Contact port 5060, source 5062: NAT
    sent: list[tuple[bytes, str, int]] = []
    keepalive = KeepAlive(switch.params, switch.bindings,
                          lambda data, host, port: sent.append((data, host, port)))
    switch.bindings.by_user["acme"]["sip:acme@203.0.113.5:5060;ob"].expires_at = 2e10
    asyncio.run(keepalive.cycle(b"\r\n\r\n", deadline=float("inf")))
    assert sent == [(b"\r\n\r\n", ROAMING_IP, 5062)]
