"""Route sets (RFC 3261 12.1, 12.2, 16.4, 16.12) and Path (RFC 3327): what the
softswitch puts in responses and requests when proxies sit on either leg."""

from __future__ import annotations

from typing import Any

from b2bua.calls.call import Call
from b2bua.calls.endpoints import Destination
from b2bua.config.live import Params
from b2bua.registrar.bindings import Binding, BindingStore
from b2bua.registrar.keepalive import options_through_path
from b2bua.registrar.phones import PhoneAccount
from b2bua.registrar.registrar import Registrar
from b2bua.sip.dialog import Dialog, copy_record_route, origin_host, route_request
from b2bua.sip.message import Request, make_response
from b2bua.sip.parser import parse_message
from b2bua.sip.peer import Peer
from b2bua.sip.stack import SipStack
from b2bua.storage.registrations import RegistrationLog

PROXY = Peer("udp", "192.0.2.20", 5060)


def request(text: str) -> Request:
    message = parse_message(text.replace("\n", "\r\n").encode())
    assert isinstance(message, Request)
    return message


INVITE = (
    "INVITE sip:200@198.51.100.1 SIP/2.0\n"
    "Via: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKp1\n"
    "Via: SIP/2.0/UDP 10.0.0.5:5062;received=203.0.113.9;branch=z9hG4bKa1\n"
    "Record-Route: <sip:192.0.2.20;lr;ftag=x>\n"
    "Record-Route: <sip:192.0.2.21;lr>\n"
    "From: <sip:1001@example.net>;tag=x\n"
    "To: <sip:200@198.51.100.1>\n"
    "Call-ID: rr-1\n"
    "CSeq: 1 INVITE\n"
    "Contact: <sip:1001@10.0.0.5:5062>\n"
    "Max-Forwards: 69\n"
    "\n"
)


def test_dialog_creating_responses_carry_every_record_route_in_order() -> None:
    invite = request(INVITE)
    response = make_response(invite, 180, to_tag="t")
    copy_record_route(invite, response)
    assert response.get_all("Record-Route") == ["<sip:192.0.2.20;lr;ftag=x>",
                                                "<sip:192.0.2.21;lr>"]


def test_loose_route_keeps_the_target_strict_route_takes_the_request_uri() -> None:
    loose = ["<sip:192.0.2.20;lr>", "<sip:192.0.2.21;lr>"]
    assert route_request(loose, "sip:1001@10.0.0.5") == ("sip:1001@10.0.0.5", loose)
    strict = ["<sip:192.0.2.20;maddr=192.0.2.20?X-H=1>", "<sip:192.0.2.21;lr>"]
    assert route_request(strict, "sip:1001@10.0.0.5") == (
        "sip:192.0.2.20;maddr=192.0.2.20",
        ["<sip:192.0.2.21;lr>", "<sip:1001@10.0.0.5>"])
    assert route_request([], "sip:1001@10.0.0.5") == ("sip:1001@10.0.0.5", [])


def test_in_dialog_request_to_a_strict_router_goes_to_it_with_the_target_last() -> None:
    dialog = Dialog("c", "l", "<sip:a@h>", "<sip:b@h>", "sip:b@10.0.0.9:5070",
                    Peer("udp", "10.0.0.9", 5070), "198.51.100.1:5060", "<sip:s@h>",
                    remote_tag="r", route_set=["<sip:192.0.2.50:5080>"])
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:192.0.2.50:5080"
    assert bye.get_all("Route") == ["<sip:b@10.0.0.9:5070>"]
    assert dialog.next_peer() == Peer("udp", "192.0.2.50", 5080)


def test_caller_behind_a_record_routing_proxy_is_reached_through_it() -> None:
    invite = request(INVITE)
    assert origin_host(invite, PROXY) == "203.0.113.9"  # the bottom Via's received
    assert Call.behind_nat(invite, PROXY)  # its Contact is 10.0.0.5: NAT, via the proxy
    assert not Call._pin_to_source(invite, PROXY)  # the route set, not the source
    dialog = Dialog.as_uas(invite, PROXY, "198.51.100.1:5060", "<sip:s@198.51.100.1>",
                           Call._pin_to_source(invite, PROXY))
    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:1001@10.0.0.5:5062"
    assert bye.get_all("Route") == ["<sip:192.0.2.20;lr;ftag=x>", "<sip:192.0.2.21;lr>"]
    assert dialog.next_peer() == Peer("udp", "192.0.2.20", 5060)


def test_caller_without_proxies_keeps_the_source_rules() -> None:
    direct = request(INVITE.replace("Via: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKp1\n", "")
                     .replace("Record-Route: <sip:192.0.2.20;lr;ftag=x>\n", "")
                     .replace("Record-Route: <sip:192.0.2.21;lr>\n", ""))
    source = Peer("udp", "203.0.113.9", 40000)
    assert origin_host(direct, source) == "203.0.113.9"
    assert Call._pin_to_source(direct, source)  # behind NAT, nothing to route through


def test_a_top_route_naming_the_softswitch_is_popped_others_kept() -> None:
    stack = SipStack("0.0.0.0", 5060, "198.51.100.1")
    ours = request(INVITE.replace("Max-Forwards: 69\n", "Max-Forwards: 69\n"
                                  "Route: <sip:198.51.100.1;lr>, <sip:192.0.2.99;lr>\n"))
    stack._pop_own_route(ours)
    assert ours.get_all("Route") == ["<sip:192.0.2.99;lr>"]
    other = request(INVITE.replace("Max-Forwards: 69\n", "Max-Forwards: 69\n"
                                   "Route: <sip:198.51.100.1:5070;lr>\n"))
    stack._pop_own_route(other)  # another port: another server on our host
    assert other.get_all("Route") == ["<sip:198.51.100.1:5070;lr>"]


REGISTER = (
    "REGISTER sip:198.51.100.1 SIP/2.0\n"
    "Via: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKp2\n"
    "Via: SIP/2.0/UDP 10.0.0.7:5060;received=203.0.113.7;rport=4000;branch=z9hG4bKr1\n"
    "Path: <sip:192.0.2.20;lr;received=sip:203.0.113.7:4000>\n"
    "From: <sip:3001@198.51.100.1>;tag=r\n"
    "To: <sip:3001@198.51.100.1>\n"
    "Call-ID: reg-1\n"
    "CSeq: 1 REGISTER\n"
    "Contact: <sip:3001@10.0.0.7:5060>\n"
    "Expires: 300\n"
    "\n"
)


class _Writes:
    def __init__(self) -> None:
        self.rows: list[tuple[str, tuple[Any, ...]]] = []

    def submit(self, sql: str, args: tuple[Any, ...]) -> None:
        self.rows.append((sql, args))


def registrar() -> tuple[Registrar, BindingStore]:
    bindings = BindingStore(RegistrationLog(_Writes()))  # type: ignore[arg-type]
    return Registrar(Params(), bindings), bindings


def test_registrar_stores_path_and_returns_it_to_a_ua_that_supports_it() -> None:
    reg, bindings = registrar()
    account = PhoneAccount(1, "3001", "pw", None, None, True)
    ok = reg.register(request(REGISTER), PROXY, account.username, 1000.0)
    assert ok.status == 200 and ok.get_all("Path") == []  # no Supported: path
    (binding,) = bindings.of("3001", 1000.0)
    assert binding.path == ("<sip:192.0.2.20;lr;received=sip:203.0.113.7:4000>",)
    assert binding.nat  # its Contact is private; the proxy holds the mapping
    assert bindings.find_by_source(PROXY, 1000.0) is None  # the proxy's address is shared
    again = reg.register(request(REGISTER.replace("Expires: 300\n",
                                                  "Expires: 300\nSupported: path\n")),
                         PROXY, account.username, 1001.0)
    assert again.get_all("Path") == list(binding.path)
    assert "path" in again.get_all("Supported")


def test_calls_and_keepalives_to_a_path_binding_go_through_the_path() -> None:
    binding = Binding("3001", "sip:3001@10.0.0.7:5060", PROXY, True, 2000.0, 1000.0, "",
                      "reg-1", path=("<sip:192.0.2.20:5070;lr>", "<sip:192.0.2.21;lr>"))
    dest = Destination.phone(binding, "3001", "198.51.100.1")
    assert dest.peer == Peer("udp", "192.0.2.20", 5070)
    assert dest.route == binding.path and not dest.pinned
    probe = options_through_path(binding, "198.51.100.1:5060")
    assert probe.method == "OPTIONS" and probe.uri == "sip:3001@10.0.0.7:5060"
    assert probe.get_all("Route") == list(binding.path)
    direct = Binding("3002", "sip:3002@10.0.0.8", Peer("udp", "203.0.113.8", 4001), True,
                     2000.0, 1000.0, "", "reg-2")
    assert Destination.phone(direct, "3002", "h").pinned  # NAT without proxies: the source


def _direct_invite(contact: str | None) -> Request:
    text = (INVITE.replace("Via: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKp1\n", "")
            .replace("Via: SIP/2.0/UDP 10.0.0.5:5062;received=203.0.113.9;",
                     "Via: SIP/2.0/UDP 10.0.0.1:5060;"))
    line = "Contact: <sip:1001@10.0.0.5:5062>\n"
    return request(text.replace(line, f"Contact: <{contact}>\n" if contact else ""))


def test_behind_nat_compares_hosts_not_text() -> None:
    """A Contact at 10.0.0.12 is not the source 10.0.0.1, although its text contains
    "10.0.0.1": parsed hosts are compared."""
    source = Peer("udp", "10.0.0.1", 5060)
    assert Call.behind_nat(_direct_invite("sip:1001@10.0.0.12:5060"), source)
    assert not Call.behind_nat(_direct_invite("sip:1001@10.0.0.1:5062"), source)
    assert Call.behind_nat(_direct_invite(None), source)  # no Contact: back to the source
