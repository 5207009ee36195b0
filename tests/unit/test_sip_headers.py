"""Header names, structured header values, URIs and the SipMessage header API."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from b2bua.sip.errors import SipParseError, UnsupportedSchemeError
from b2bua.sip.headers import (
    MULTI_VALUE,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    format_auth_params,
    parse_auth_params,
    split_commas,
)
from b2bua.sip.message import Request, Response, SipMessage
from b2bua.sip.uri import SipUri

# -- canonical_name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("i", "Call-ID"), ("m", "Contact"), ("e", "Content-Encoding"), ("l", "Content-Length"),
        ("c", "Content-Type"), ("f", "From"), ("s", "Subject"), ("k", "Supported"), ("t", "To"),
        ("v", "Via"), ("o", "Event"), ("u", "Allow-Events"), ("r", "Refer-To"),
        ("b", "Referred-By"), ("x", "Session-Expires"), ("a", "Accept-Contact"),
        ("j", "Reject-Contact"), ("d", "Request-Disposition"), ("y", "Identity"),
        ("n", "Identity-Info"),
    ],
)
def test_compact_forms_expand(compact: str, full: str) -> None:
    assert canonical_name(compact) == full
    assert canonical_name(compact.upper()) == full


@pytest.mark.parametrize(
    ("raw", "canon"),
    [
        ("call-id", "Call-ID"), ("CALL-ID", "Call-ID"), ("cseq", "CSeq"), ("CSEQ", "CSeq"),
        ("www-authenticate", "WWW-Authenticate"), ("max-forwards", "Max-Forwards"),
        ("MaX-fOrWaRdS", "Max-Forwards"), ("record-route", "Record-Route"),
        ("min-se", "Min-SE"), ("rack", "RAck"), ("rseq", "RSeq"), ("sip-etag", "SIP-ETag"),
        ("mime-version", "MIME-Version"), ("p-asserted-identity", "P-Asserted-Identity"),
        ("x-my-header", "X-My-Header"), ("X-CUSTOM-ID", "X-Custom-Id"),
        ("NewFangledHeader", "Newfangledheader"), ("Via ", "Via"), (" \tto", "To"),
    ],
)
def test_canonical_spelling(raw: str, canon: str) -> None:
    assert canonical_name(raw) == canon
    assert canonical_name(raw) == canon  # second call is served from the cache


def test_multi_value_membership() -> None:
    for name in ("Via", "Route", "Record-Route", "Contact", "Allow", "Supported", "Require",
                 "Proxy-Require", "Unsupported", "Accept", "Allow-Events"):
        assert name in MULTI_VALUE
    for name in ("WWW-Authenticate", "Authorization", "Proxy-Authenticate",
                 "Proxy-Authorization", "Date", "Call-ID", "From", "To", "CSeq"):
        assert name not in MULTI_VALUE


# -- split_commas -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parts"),
    [
        ("a", ["a"]),
        ("", []),
        ("a, b ,c", ["a", "b", "c"]),
        ("a,,b, ,", ["a", "b"]),
        ('"Doe, John" <sip:j@x>, <sip:k@y>', ['"Doe, John" <sip:j@x>', "<sip:k@y>"]),
        ("<sip:a@b;x=1,2>, sip:c@d", ["<sip:a@b;x=1,2>", "sip:c@d"]),
        (r'"a \", b" <sip:x@y>, <sip:z@w>', [r'"a \", b" <sip:x@y>', "<sip:z@w>"]),
        ('399 h "warn, text", 399 h2 "x"', ['399 h "warn, text"', '399 h2 "x"']),
    ],
)
def test_split_commas(value: str, parts: list[str]) -> None:
    assert split_commas(value) == parts


# -- Via --------------------------------------------------------------------------------------


def test_via_parse_and_format() -> None:
    via = Via.parse("SIP/2.0/udp 192.0.2.1:5060;branch=z9hG4bK776;rport=5061;received=1.2.3.4")
    assert via.transport == "UDP"
    assert via.host == "192.0.2.1"
    assert via.port == 5060
    assert via.branch == "z9hG4bK776"
    assert via.rport == "5061"
    assert via.received == "1.2.3.4"
    assert str(via) == "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport=5061;received=1.2.3.4"


def test_via_rport_without_value_and_absent() -> None:
    assert Via.parse("SIP/2.0/TCP h;rport;branch=z9hG4bKx").rport == ""
    via = Via.parse("SIP/2.0/TCP h;branch=z9hG4bKx")
    assert via.rport is None
    assert via.received is None
    assert str(Via.parse("SIP/2.0/TCP h;rport;branch=b")) == "SIP/2.0/TCP h;rport;branch=b"


def test_via_ipv6_and_lws() -> None:
    via = Via.parse("SIP / 2.0 / TLS  [2001:db8::1] : 5061 ; Branch = z9hG4bKq ; maddr=[::1]")
    assert via.transport == "TLS"
    assert via.host == "[2001:db8::1]"
    assert via.port == 5061
    assert via.params == {"branch": "z9hG4bKq", "maddr": "[::1]"}
    assert str(via) == "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKq;maddr=[::1]"


def test_via_unknown_transport_kept() -> None:
    assert Via.parse("SIP/2.0/tls-sctp t3.example.com").transport == "TLS-SCTP"


@pytest.mark.parametrize(
    "value",
    ["", "SIP/2.0 host", "HTTP/1.1/TCP host", "SIP/3.0/UDP host", "SIP/2.0/UDP",
     "SIP/2.0/UDP host:99999", "SIP/2.0/UDP host:abc", "SIP/2.0/UDP [::1",
     "SIP/2.0/UDP ho<st", "SIP/2.0/UDP host;=x"],
)
def test_via_garbage(value: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(value)


# -- CSeq -------------------------------------------------------------------------------------


def test_cseq() -> None:
    cseq = CSeq.parse("  0009 \t INVITE ")
    assert cseq == CSeq(9, "INVITE")
    assert str(cseq) == "9 INVITE"
    assert CSeq.parse("2147483647 BYE").number == 2**31 - 1


@pytest.mark.parametrize(
    "value", ["", "1", "INVITE", "x INVITE", "-1 INVITE", "2147483648 INVITE",
              "36893488147419103232 REGISTER", "1 INV ITE", "\u0661 INVITE"],
)
def test_cseq_garbage(value: str) -> None:
    with pytest.raises(SipParseError):
        CSeq.parse(value)


# -- NameAddr ---------------------------------------------------------------------------------


def test_name_addr_quoted_display() -> None:
    na = NameAddr.parse('"Alice" <sip:a@b;transport=tcp>;tag=1')
    assert na.display == "Alice"
    assert na.uri.transport == "tcp"
    assert na.tag == "1"
    assert str(na) == '"Alice" <sip:a@b;transport=tcp>;tag=1'


def test_name_addr_escapes_in_display_round_trip() -> None:
    na = NameAddr.parse(r'"J Rosenberg \\\"" <sip:jdrosen@example.com> ; tag = 98asjd8')
    assert na.display == 'J Rosenberg \\"'
    assert na.tag == "98asjd8"
    again = NameAddr.parse(str(na))
    assert again == na


def test_name_addr_bare_form_params_belong_to_header() -> None:
    na = NameAddr.parse("sip:a@b;tag=1;expires=60")
    assert na.display is None
    assert na.uri == SipUri("sip", "a", None, "b", None, {}, None)
    assert na.params == {"tag": "1", "expires": "60"}
    assert str(na) == "<sip:a@b>;tag=1;expires=60"


def test_name_addr_bare_form_user_with_semicolon() -> None:
    na = NameAddr.parse("sip:+15551234;npdi@gw.example.com;tag=x")
    assert na.uri.user == "+15551234;npdi"
    assert na.tag == "x"


def test_name_addr_token_display_and_no_space() -> None:
    assert NameAddr.parse("caller<sip:caller@example.com>;tag=323").display == "caller"
    na = NameAddr.parse("Bob Smith <sip:bob@x>")
    assert na.display == "Bob Smith"
    assert na.tag is None
    assert NameAddr.parse("<sip:bob@x>").display is None


def test_name_addr_params_case_and_valueless() -> None:
    na = NameAddr.parse('<sip:x@y>;Expires=60;Q=0.5;+sip.instance="<urn:uuid:1>";ob')
    assert na.params == {"expires": "60", "q": "0.5", "+sip.instance": '"<urn:uuid:1>"',
                         "ob": None}


def test_name_addr_tel_uri() -> None:
    na = NameAddr.parse("<tel:+1-201-555-0123;phone-context=example.com>;tag=9")
    assert na.uri.scheme == "tel"
    assert na.uri.user == "+1-201-555-0123"
    assert na.uri.params == {"phone-context": "example.com"}


@pytest.mark.parametrize(
    "value",
    ["*", "", '"Bell, Alexander <sip:a.g.bell@example.com>;tag=43', "<sip:a@b",
     '"x" sip:a@b', "<sip:a@b> junk", "<http://x>", "<sip:a b@c>", "<sip:a@b>;=1"],
)
def test_name_addr_garbage(value: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(value)


# -- SipUri -----------------------------------------------------------------------------------


def test_uri_full() -> None:
    text = "sips:alice:secret@[2001:db8::1]:5061;transport=TLS;lr;Maddr=x?subject=hi&a=b"
    uri = SipUri.parse(text)
    assert uri.scheme == "sips"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "[2001:db8::1]"
    assert uri.port == 5061
    assert uri.params == {"transport": "TLS", "lr": None, "maddr": "x"}
    assert uri.headers == "subject=hi&a=b"
    assert uri.transport == "tls"
    assert uri.host_port() == "[2001:db8::1]:5061"
    assert str(uri) == text.replace("Maddr", "maddr")


@pytest.mark.parametrize(
    "text",
    [
        "sip:example.com",
        "sip:example.com:5060",
        "sip:+15551234567@10.0.0.1;user=phone",
        "sip:sips%3Auser%40example.com@example.net",
        "sip:I%20have%20spaces@example.net",
        "sip:user;par=u%40example.net@example.com",
        "sip:%00@host5.example.com",
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com",
        "sip:bob@host?Replaces=abc%40h%3Bto-tag%3D1",
        "tel:+1-201-555-0123",
        "tel:7042;phone-context=example.com",
        "sip:alice@atlanta.example.com;maddr=239.255.255.1;ttl=15",
        "sip:a@[::1]",
        "sip:a@my_host.example.com.",
    ],
)
def test_uri_round_trip(text: str) -> None:
    assert str(SipUri.parse(text)) == text


def test_uri_user_with_password_and_question_mark() -> None:
    uri = SipUri.parse(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
        "(doesn't-it)@example.com")
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert uri.host == "example.com"


def test_uri_transport_absent_and_host_port() -> None:
    uri = SipUri.parse("SIP:Bob@Example.COM")
    assert uri.scheme == "sip"
    assert uri.user == "Bob"
    assert uri.host == "Example.COM"
    assert uri.transport is None
    assert uri.host_port() == "Example.COM"


@pytest.mark.parametrize(
    "text",
    ["", "sip", ":x", "sip:", "sip:@host", "sip:a@", "sip:host:port", "sip:host:99999",
     "sip:host:-1", "sip:a b@c", "sip:<a@b>", 'sip:"a"@b', "sip:[::1", "sip:[::1]x",
     "sip:[zz]", "sip:-host", "sip:ho st", "sip:host;=1", "tel:", "sip:a@b:\u0661"],
)
def test_uri_garbage(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


@pytest.mark.parametrize("text", ["http://example.com/", "mailto:a@b", "urn:uuid:1234",
                                  "nobodyknowsthisscheme:totallyopaquecontent"])
def test_uri_unsupported_scheme(text: str) -> None:
    with pytest.raises(UnsupportedSchemeError):
        SipUri.parse(text)


_user = st.text(alphabet="abcXYZ019-_.!~*'()&=+$,;?/%", min_size=1, max_size=12)
_host = st.one_of(
    st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,10}\.){0,3}[a-z]{1,5}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)
_param_name = st.from_regex(r"[a-z][a-z0-9\-]{0,8}", fullmatch=True)
_param_value = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9.\-_]{1,10}", fullmatch=True))


@given(
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.one_of(st.none(), _user.filter(lambda u: ":" not in u)),
    password=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9]{1,8}", fullmatch=True)),
    host=_host,
    port=st.one_of(st.none(), st.integers(0, 65535)),
    params=st.dictionaries(_param_name, _param_value, max_size=4),
    headers=st.one_of(st.none(), st.from_regex(r"[a-z]{1,5}=[a-z0-9]{0,5}", fullmatch=True)),
)
def test_uri_property_round_trip(
    scheme: str, user: str | None, password: str | None, host: str, port: int | None,
    params: dict[str, str | None], headers: str | None,
) -> None:
    uri = SipUri(scheme, user, password if user is not None else None, host, port, params,
                 headers)
    assert SipUri.parse(str(uri)) == uri


@given(st.text(max_size=60))
def test_uri_garbage_raises_only_parse_error(text: str) -> None:
    with contextlib.suppress(SipParseError):
        SipUri.parse(text)


@given(st.text(max_size=80))
def test_header_parsers_raise_only_parse_error(text: str) -> None:
    for parse in (Via.parse, CSeq.parse, NameAddr.parse, parse_auth_params):
        with contextlib.suppress(SipParseError):
            parse(text)


# -- auth params ------------------------------------------------------------------------------


def test_parse_auth_challenge() -> None:
    scheme, params = parse_auth_params(
        'Digest realm="x", nonce="y", qop="auth,auth-int", nc=00000001, Algorithm=MD5')
    assert scheme == "Digest"
    assert params == {"realm": "x", "nonce": "y", "qop": "auth,auth-int", "nc": "00000001",
                      "algorithm": "MD5"}


def test_parse_auth_credentials_pjsip_style() -> None:
    value = ('Digest username="1001", realm="example.com", nonce="5f1c", '
             'uri="sip:example.com", response="d41d8cd98f00b204e9800998ecf8427e", '
             'algorithm=MD5, cnonce="abc", opaque="op", qop=auth, nc=00000001')
    scheme, params = parse_auth_params(value)
    assert scheme == "Digest"
    assert params["uri"] == "sip:example.com"
    assert params["qop"] == "auth"
    assert params["nc"] == "00000001"


def test_parse_auth_escapes_and_whitespace() -> None:
    scheme, params = parse_auth_params('Digest  realm = "a \\"q\\" , b" ,nonce="",, stale=FALSE')
    assert scheme == "Digest"
    assert params == {"realm": 'a "q" , b', "nonce": "", "stale": "FALSE"}


def test_parse_auth_scheme_only() -> None:
    assert parse_auth_params("Digest") == ("Digest", {})


@pytest.mark.parametrize(
    "value", ["", "Digest realm", 'Digest realm="x', 'Digest realm="x" nonce="y"',
              'Digest ="x"', 'Digest a b="x"'],
)
def test_parse_auth_garbage(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_auth_params(value)


def test_format_auth_params_round_trip() -> None:
    params = {"username": "1001", "realm": 'r"q', "nonce": "n", "uri": "sip:x", "nc": "00000001",
              "qop": "auth", "response": "abc"}
    text = format_auth_params("Digest", params, {"username", "realm", "nonce", "uri", "response"})
    assert text == ('Digest username="1001", realm="r\\"q", nonce="n", uri="sip:x", '
                    'nc=00000001, qop=auth, response="abc"')
    assert parse_auth_params(text) == ("Digest", params)
    assert format_auth_params("Digest", {}, set()) == "Digest"


# -- SipMessage header API --------------------------------------------------------------------


def _message() -> Request:
    return Request("INVITE", "sip:bob@example.com", [
        ("v", "SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com"),
        ("Via", "SIP/2.0/UDP c.example.com;branch=z9hG4bK3"),
        ("f", "<sip:alice@example.com>;tag=a1"),
        ("t", "<sip:bob@example.com>"),
        ("i", "call-1"),
        ("CSEQ", "1 INVITE"),
        ("Route", "<sip:p1;lr>, <sip:p2;lr>"),
        ("WWW-Authenticate", 'Digest realm="x", qop="auth,auth-int"'),
        ("x-foo", "bar"),
    ])


def test_names_canonicalised_on_construction() -> None:
    msg = _message()
    assert [n for n, _ in msg.headers] == [
        "Via", "Via", "From", "To", "Call-ID", "CSeq", "Route", "WWW-Authenticate", "X-Foo"]


def test_get_and_get_all() -> None:
    msg = _message()
    assert msg.get("via") == "SIP/2.0/UDP a.example.com;branch=z9hG4bK1"
    assert msg.get_all("v") == ["SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
                                "SIP/2.0/TCP b.example.com",
                                "SIP/2.0/UDP c.example.com;branch=z9hG4bK3"]
    assert msg.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    assert msg.get("www-authenticate") == 'Digest realm="x", qop="auth,auth-int"'
    assert msg.get_all("WWW-Authenticate") == ['Digest realm="x", qop="auth,auth-int"']
    assert msg.get("X-FOO") == "bar"
    assert msg.get("Contact") is None
    assert msg.get_all("Contact") == []
    assert msg.has("I")
    assert not msg.has("Contact")


def test_set_replaces_in_place_of_first() -> None:
    msg = _message()
    msg.set("via", "SIP/2.0/UDP only.example.com")
    assert msg.headers[0] == ("Via", "SIP/2.0/UDP only.example.com")
    assert msg.get_all("Via") == ["SIP/2.0/UDP only.example.com"]
    msg.set("Contact", "<sip:me@h>")
    assert msg.headers[-1] == ("Contact", "<sip:me@h>")


def test_add_prepend_remove() -> None:
    msg = _message()
    msg.add("Route", "<sip:p3;lr>")
    assert msg.get_all("Route") == ["<sip:p1;lr>", "<sip:p2;lr>", "<sip:p3;lr>"]
    msg.prepend("Route", "<sip:p0;lr>")
    assert msg.get_all("Route")[0] == "<sip:p0;lr>"
    msg.prepend("v", "SIP/2.0/UDP me.example.com;branch=z9hG4bKme")
    assert msg.headers[0] == ("Via", "SIP/2.0/UDP me.example.com;branch=z9hG4bKme")
    msg.prepend("Record-Route", "<sip:me;lr>")
    assert msg.headers[0] == ("Record-Route", "<sip:me;lr>")
    msg.remove("route")
    assert not msg.has("Route")
    msg.remove("Nothing-Here")


def test_remove_first_splits_joined_line() -> None:
    msg = _message()
    assert msg.remove_first("Route") == "<sip:p1;lr>"
    assert msg.get_all("Route") == ["<sip:p2;lr>"]
    assert msg.remove_first("Route") == "<sip:p2;lr>"
    assert not msg.has("Route")
    assert msg.remove_first("Route") is None
    assert msg.remove_first("v") == "SIP/2.0/UDP a.example.com;branch=z9hG4bK1"
    assert msg.top_via.host == "b.example.com"
    assert msg.remove_first("Via") == "SIP/2.0/TCP b.example.com"
    assert msg.top_via.host == "c.example.com"
    assert msg.remove_first("Call-ID") == "call-1"


def test_parsed_views_follow_mutation() -> None:
    msg = _message()
    assert msg.from_.tag == "a1"
    assert msg.to.tag is None
    assert msg.cseq == CSeq(1, "INVITE")
    assert [v.host for v in msg.vias] == ["a.example.com", "b.example.com", "c.example.com"]
    assert msg.top_via.branch == "z9hG4bK1"
    msg.set("From", "<sip:carol@example.com>;tag=c3")
    msg.set("To", "<sip:bob@example.com>;tag=b2")
    msg.set("CSeq", "2 INVITE")
    msg.remove_first("Via")
    assert msg.from_.tag == "c3"
    assert msg.to.tag == "b2"
    assert msg.cseq.number == 2
    assert msg.top_via.host == "b.example.com"
    assert len(msg.vias) == 2
    msg.add("Via", "SIP/2.0/UDP d.example.com")
    assert len(msg.vias) == 3
    msg.remove("Via")
    assert msg.vias == []
    with pytest.raises(SipParseError):
        _ = msg.top_via


def test_invalidate_after_direct_edit() -> None:
    msg = _message()
    assert msg.call_id == "call-1"
    assert msg.to.tag is None
    msg.headers[3] = ("To", "<sip:bob@example.com>;tag=zz")
    msg.invalidate()
    assert msg.to.tag == "zz"


def test_missing_headers_raise_parse_error() -> None:
    msg = SipMessage()
    for attr in ("call_id", "cseq", "from_", "to", "top_via"):
        with pytest.raises(SipParseError):
            getattr(msg, attr)
    assert msg.vias == []
    assert msg.content_length is None
    assert msg.max_forwards is None


def test_numeric_views() -> None:
    msg = Response(200, headers=[("Max-Forwards", " 70 "), ("l", "12")])
    assert msg.max_forwards == 70
    assert msg.content_length == 12
    msg.set("Max-Forwards", "seventy")
    with pytest.raises(SipParseError):
        _ = msg.max_forwards


def test_request_uri_setter_invalidates_ruri() -> None:
    msg = _message()
    assert msg.ruri.user == "bob"
    msg.uri = "sip:carol@example.net:5070"
    assert msg.ruri.user == "carol"
    assert msg.ruri.port == 5070
    assert msg.start_line() == "INVITE sip:carol@example.net:5070 SIP/2.0"


def test_copy_is_independent() -> None:
    msg = _message()
    msg.body = b"v=0\r\n"
    dup = msg.copy()
    dup.set("Call-ID", "other")
    dup.uri = "sip:x@y"
    assert msg.call_id == "call-1"
    assert msg.uri == "sip:bob@example.com"
    assert dup.body == msg.body
    resp = Response(180, None, [("Call-ID", "c")])
    rdup = resp.copy()
    rdup.reason = "Other"
    rdup.add("X-A", "1")
    assert resp.reason == "Ringing"
    assert not resp.has("X-A")


def test_to_bytes_writes_correct_content_length() -> None:
    msg = Request("MESSAGE", "sip:a@b", [("Call-ID", "c"), ("Content-Length", "999"),
                                         ("l", "5"), ("Content-Type", "text/plain")],
                  "héllo".encode())
    wire = msg.to_bytes()
    assert wire == ("MESSAGE sip:a@b SIP/2.0\r\nCall-ID: c\r\nContent-Length: 6\r\n"
                    "Content-Type: text/plain\r\n\r\nhéllo").encode()
    msg.remove("Content-Length")
    assert msg.to_bytes().endswith(b"Content-Length: 6\r\n\r\nh\xc3\xa9llo")


def test_reason_defaults() -> None:
    assert Response(486).reason == "Busy Here"
    assert Response(299).reason == "Success"
    assert Response(499, "Custom").reason == "Custom"
    assert Response(200, "").start_line() == "SIP/2.0 200 "


def test_line_breaks_in_values_refused() -> None:
    msg = _message()
    for op in (msg.set, msg.add, msg.prepend):
        with pytest.raises(ValueError, match="line break"):
            op("Subject", "hi\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(ValueError, match="line break"):
        Request("OPTIONS", "sip:a@b", [("Subject", "x\ny")])
    assert not msg.has("Subject")
