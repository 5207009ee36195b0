"""SIP dialogs (RFC 3261 section 12): UAS and UAC state, in-dialog requests, next hop."""

from __future__ import annotations

import pytest

from b2bua.sip.dialog import Dialog
from b2bua.sip.message import Request, Response
from b2bua.sip.parser import parse_message
from b2bua.sip.peer import Peer
from b2bua.sip.transaction import BRANCH_MAGIC


def wire(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def parse_request(text: str) -> Request:
    message = parse_message(wire(text))
    assert isinstance(message, Request)
    return message


def parse_response(text: str) -> Response:
    message = parse_message(wire(text))
    assert isinstance(message, Response)
    return message


INVITE = (
    "INVITE sip:15551234@198.51.100.1:5060 SIP/2.0\n"
    "Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bKproxy1\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKphone1\n"
    "Record-Route: <sip:192.0.2.20;lr;ftag=abc>\n"
    "Record-Route: <sip:192.0.2.30:5070;lr>, <sip:192.0.2.40;transport=tcp;lr>\n"
    "Max-Forwards: 69\n"
    'From: "Alice" <sip:alice@192.0.2.10>;tag=abc\n'
    "To: <sip:15551234@198.51.100.1>\n"
    "Call-ID: dlg-1@192.0.2.10\n"
    "CSeq: 314 INVITE\n"
    "Contact: <sip:alice@192.0.2.10:5062;transport=udp>\n"
    "\n"
)

RECORD_ROUTES = [
    "<sip:192.0.2.20;lr;ftag=abc>",
    "<sip:192.0.2.30:5070;lr>",
    "<sip:192.0.2.40;transport=tcp;lr>",
]

SOURCE = Peer("udp", "192.0.2.20", 5060)
CONTACT = "<sip:softswitch@198.51.100.1:5060>"


def uas(text: str = INVITE, send_to_source: bool = False) -> Dialog:
    return Dialog.as_uas(parse_request(text), SOURCE, "198.51.100.1:5060", CONTACT,
                         send_to_source)


# -- UAS ------------------------------------------------------------------------------------


def test_as_uas_takes_ids_route_set_and_target_from_the_invite() -> None:
    dialog = uas()
    assert dialog.call_id == "dlg-1@192.0.2.10"
    assert dialog.remote_tag == "abc"
    assert dialog.remote_uri == '"Alice" <sip:alice@192.0.2.10>'
    assert dialog.local_uri == "<sip:15551234@198.51.100.1>"
    assert dialog.remote_target == "sip:alice@192.0.2.10:5062;transport=udp"
    assert dialog.route_set == RECORD_ROUTES  # UAS keeps Record-Route order (12.1.1)
    assert dialog.remote_seq == 314
    assert dialog.local_tag
    assert dialog.local_tag != "abc"
    assert uas().local_tag != dialog.local_tag  # generated per dialog
    assert 1 <= dialog.local_seq <= 10000
    assert dialog.peer == Peer("udp", "192.0.2.10", 5062)


def test_as_uas_without_contact_targets_from_uri_and_can_pin_to_source() -> None:
    text = INVITE.replace("Contact: <sip:alice@192.0.2.10:5062;transport=udp>\n", "")
    dialog = uas(text)
    assert dialog.remote_target == "sip:alice@192.0.2.10"
    assert dialog.peer == Peer("udp", "192.0.2.10", 5060)
    pinned = uas(send_to_source=True)
    assert pinned.peer == SOURCE
    assert pinned.remote_target == "sip:alice@192.0.2.10:5062;transport=udp"


def test_create_request_bye_follows_the_dialog() -> None:
    dialog = uas()
    seq = dialog.local_seq
    bye = dialog.create_request("BYE")
    reparsed = parse_message(bye.to_bytes())
    assert isinstance(reparsed, Request)
    assert reparsed.method == "BYE"
    assert reparsed.uri == "sip:alice@192.0.2.10:5062;transport=udp"
    assert reparsed.get_all("Route") == RECORD_ROUTES
    assert reparsed.from_.tag == dialog.local_tag
    assert str(reparsed.from_.uri) == "sip:15551234@198.51.100.1"
    assert reparsed.to.tag == "abc"
    assert str(reparsed.to.uri) == "sip:alice@192.0.2.10"
    assert reparsed.call_id == "dlg-1@192.0.2.10"
    assert (reparsed.cseq.number, reparsed.cseq.method) == (seq + 1, "BYE")
    assert dialog.local_seq == seq + 1
    via = reparsed.top_via
    assert via.host == "198.51.100.1"
    assert via.port == 5060
    assert via.transport == "UDP"  # the first route has no transport parameter
    assert via.branch is not None
    assert via.branch.startswith(BRANCH_MAGIC)
    assert reparsed.max_forwards == 70
    assert not reparsed.has("Contact")


def test_create_request_increments_cseq_and_branch_each_time() -> None:
    dialog = uas()
    seq = dialog.local_seq
    first = dialog.create_request("INFO", b"Signal=5\r\n", "application/dtmf-relay")
    second = dialog.create_request("UPDATE")
    assert first.cseq.number == seq + 1
    assert second.cseq.number == seq + 2
    assert first.top_via.branch != second.top_via.branch
    assert first.body == b"Signal=5\r\n"
    assert first.get("Content-Type") == "application/dtmf-relay"
    assert second.get("Contact") == CONTACT  # target refresh requests carry our Contact


def test_create_request_ack_and_cancel_keep_the_cseq() -> None:
    dialog = uas()
    invite = dialog.create_request("INVITE")
    ack = dialog.create_request("ACK", cseq=invite.cseq.number)
    assert (ack.cseq.number, ack.cseq.method) == (invite.cseq.number, "ACK")
    assert dialog.local_seq == invite.cseq.number
    assert ack.top_via.branch != invite.top_via.branch  # an ACK for a 2xx is a new transaction
    explicit = dialog.create_request("ACK", cseq=7)
    assert explicit.cseq.number == 7
    assert dialog.local_seq == invite.cseq.number
    cancel = dialog.create_request("CANCEL")
    assert cancel.cseq.number == invite.cseq.number


def test_create_request_extra_headers_are_appended() -> None:
    dialog = uas()
    bye = dialog.create_request("BYE", extra=[("Reason", "Q.850;cause=16")])
    assert bye.get("Reason") == "Q.850;cause=16"
    assert bye.headers[-1] == ("Reason", "Q.850;cause=16")


# -- UAC ------------------------------------------------------------------------------------

VENDOR = Peer("udp", "203.0.113.5", 5060)


def uac() -> Dialog:
    """The outbound leg as the call code builds it before the INVITE goes out."""
    return Dialog(
        call_id="out-1@198.51.100.1",
        local_tag="ss-tag",
        local_uri='"Alice" <sip:alice@198.51.100.1>',
        remote_uri="<sip:15551234@203.0.113.5:5060>",
        remote_target="sip:15551234@203.0.113.5:5060",
        peer=VENDOR,
        via_host="198.51.100.1:5060",
        contact=CONTACT,
    )


def vendor_response(status: int, to_tag: str, contact: str | None,
                    record_routes: tuple[str, ...] = ()) -> Response:
    lines = [f"SIP/2.0 {status} Whatever",
             "Via: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKout1"]
    lines += [f"Record-Route: {rr}" for rr in record_routes]
    lines += [
        'From: "Alice" <sip:alice@198.51.100.1>;tag=ss-tag',
        f"To: <sip:15551234@203.0.113.5:5060>;tag={to_tag}",
        "Call-ID: out-1@198.51.100.1",
        "CSeq: 1 INVITE",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    return parse_response("\n".join(lines) + "\n\n")


def test_uac_update_from_response_learns_tag_reversed_route_set_and_target() -> None:
    dialog = uac()
    response = vendor_response(200, "vtag", "<sip:15551234@203.0.113.77:5080>",
                               ("<sip:203.0.113.20;lr>", "<sip:203.0.113.21:5066;lr>"))
    dialog.update_from_response(response)
    assert dialog.remote_tag == "vtag"
    assert dialog.route_set == ["<sip:203.0.113.21:5066;lr>", "<sip:203.0.113.20;lr>"]
    assert dialog.remote_target == "sip:15551234@203.0.113.77:5080"
    assert dialog.next_peer() == Peer("udp", "203.0.113.21", 5066)

    bye = dialog.create_request("BYE")
    assert bye.uri == "sip:15551234@203.0.113.77:5080"
    assert bye.get_all("Route") == ["<sip:203.0.113.21:5066;lr>", "<sip:203.0.113.20;lr>"]
    assert bye.to.tag == "vtag"
    assert bye.from_.tag == "ss-tag"
    assert bye.cseq.number == 2


def test_uac_without_route_set_sends_to_the_contact() -> None:
    dialog = uac()
    dialog.update_from_response(
        vendor_response(180, "vtag", "<sip:15551234@203.0.113.77:5080;transport=tcp>"))
    assert dialog.route_set == []
    assert dialog.remote_target == "sip:15551234@203.0.113.77:5080;transport=tcp"
    assert dialog.next_peer() == Peer("tcp", "203.0.113.77", 5080)
    assert dialog.create_request("BYE").top_via.transport == "TCP"


def test_uac_response_without_contact_keeps_the_target() -> None:
    dialog = uac()
    dialog.update_from_response(vendor_response(183, "vtag", None))
    assert dialog.remote_tag == "vtag"
    assert dialog.remote_target == "sip:15551234@203.0.113.5:5060"
    assert dialog.next_peer() == VENDOR


def test_uac_2xx_recomputes_the_route_set_of_an_early_dialog() -> None:
    """RFC 3261 13.2.2.4: when a 2xx confirms an early dialog (same To tag as the 1xx), the
    route set MUST be recomputed from the 2xx. A 183 without Record-Route followed by a 200
    that has one must leave the dialog routed through the Record-Route proxy."""
    dialog = uac()
    dialog.update_from_response(
        vendor_response(183, "vtag", "<sip:15551234@203.0.113.77:5080>"))
    assert dialog.route_set == []
    ok = vendor_response(200, "vtag", "<sip:15551234@203.0.113.77:5080>",
                         ("<sip:203.0.113.20;lr>",))
    dialog.update_from_response(ok)
    assert dialog.route_set == ["<sip:203.0.113.20;lr>"]
    assert dialog.next_peer() == Peer("udp", "203.0.113.20", 5060)


def test_uac_new_to_tag_replaces_the_route_set() -> None:
    dialog = uac()
    dialog.update_from_response(
        vendor_response(180, "fork-a", "<sip:a@203.0.113.77>", ("<sip:203.0.113.20;lr>",)))
    assert dialog.route_set == ["<sip:203.0.113.20;lr>"]
    dialog.update_from_response(vendor_response(200, "fork-b", "<sip:b@203.0.113.78:5090>"))
    assert dialog.remote_tag == "fork-b"
    assert dialog.route_set == []
    assert dialog.next_peer() == Peer("udp", "203.0.113.78", 5090)


# -- next_peer --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("<sip:192.0.2.20;lr>", Peer("udp", "192.0.2.20", 5060)),
        ("<sip:192.0.2.30:5070;lr>", Peer("udp", "192.0.2.30", 5070)),
        ("<sip:192.0.2.40;transport=tcp;lr>", Peer("tcp", "192.0.2.40", 5060)),
        ("<sip:192.0.2.41:5090;transport=TCP;lr>", Peer("tcp", "192.0.2.41", 5090)),
        ("<sip:192.0.2.42;transport=sctp;lr>", Peer("udp", "192.0.2.42", 5060)),
        ("<sip:[2001:db8::1]:5071;lr>", Peer("udp", "2001:db8::1", 5071)),
    ],
)
def test_next_peer_is_the_first_route(route: str, expected: Peer) -> None:
    dialog = uac()
    dialog.route_set = [route, "<sip:192.0.2.99:5099;lr>"]
    assert dialog.next_peer() == expected


def test_next_peer_over_tcp_dialog_defaults_to_tcp() -> None:
    dialog = uac()
    dialog.peer = Peer("tcp", "203.0.113.5", 5060)
    dialog.route_set = ["<sip:192.0.2.20;lr>"]
    assert dialog.next_peer() == Peer("tcp", "192.0.2.20", 5060)


def test_next_peer_falls_back_to_peer_without_routes_or_on_bad_route() -> None:
    dialog = uac()
    assert dialog.next_peer() == VENDOR
    dialog.route_set = ["not a uri"]
    assert dialog.next_peer() == VENDOR


def test_as_uas_next_peer_and_via_use_the_first_record_route() -> None:
    dialog = uas()
    assert dialog.next_peer() == Peer("udp", "192.0.2.20", 5060)
    text = INVITE.replace("Record-Route: <sip:192.0.2.20;lr;ftag=abc>\n", "")
    dialog = uas(text)
    assert dialog.next_peer() == Peer("udp", "192.0.2.30", 5070)
    text = text.replace("Record-Route: <sip:192.0.2.30:5070;lr>, ", "Record-Route: ")
    dialog = uas(text)
    assert dialog.next_peer() == Peer("tcp", "192.0.2.40", 5060)
    assert dialog.create_request("BYE").top_via.transport == "TCP"
