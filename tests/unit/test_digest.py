"""Digest authentication: published RFC vectors, stateless nonces, verification, parsing."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import struct

import pytest

from b2bua.security.digest import (
    ALGORITHMS,
    NONCE_LIFETIME,
    Credentials,
    DigestVerifier,
    NonceCounts,
    NonceMinter,
    NonceState,
    SharedNonceCounts,
    Verdict,
    challenge_header,
    response_digest,
    same_target,
)
from b2bua.shared_tables import map_table, shared_memory, table_size
from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import parse_auth_params

REALM = "sw.example"
USER = "gw1"
PASSWORD = "s3cret-Pass"
URI = "sip:+4930123456@sw.example"
T0 = 1_700_000_000.0


# -- published vectors ---------------------------------------------------------------------


def test_rfc2617_section_3_5_vector() -> None:
    assert response_digest(
        "MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093", "00000001", "0a4f113b", "auth",
    ) == "6629fae49393a05397450978507c4ef1"


RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_vectors(algorithm: str, expected: str) -> None:
    assert response_digest(
        algorithm, "Mufasa", "http-auth@example.org", "Circle of Life", "GET",
        "/dir/index.html", RFC7616_NONCE, "00000001", RFC7616_CNONCE, "auth",
    ) == expected


def test_rfc2069_style_without_qop() -> None:
    # RFC 2069 / RFC 2617 3.2.2.1 without qop: KD(HA1, nonce ":" HA2).
    ha1 = "939e7578ed9e3c518a452acee763bce9"  # MD5("Mufasa:testrealm@host.com:Circle Of Life")
    ha2 = "39aff3a2bab6126f332b942af96d3366"  # MD5("GET:/dir/index.html")
    assert hashlib.md5(b"Mufasa:testrealm@host.com:Circle Of Life").hexdigest() == ha1
    assert hashlib.md5(b"GET:/dir/index.html").hexdigest() == ha2
    nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093"
    expected = hashlib.md5(f"{ha1}:{nonce}:{ha2}".encode()).hexdigest()
    assert response_digest("MD5", "Mufasa", "testrealm@host.com", "Circle Of Life", "GET",
                           "/dir/index.html", nonce, None, None, None) == expected


def test_algorithms_offered() -> None:
    assert set(ALGORITHMS) == {"MD5", "SHA-256"}


# -- nonces --------------------------------------------------------------------------------


def _flip(nonce: str, index: int) -> str:
    """Change one base64 character in the middle of the nonce (never a padding-only bit)."""
    c = nonce[index]
    replacement = "A" if c != "A" else "B"
    return nonce[:index] + replacement + nonce[index + 1:]


def test_fresh_nonce_valid_for_its_realm_only() -> None:
    minter = NonceMinter()
    nonce = minter.mint(REALM, T0)
    assert minter.check(nonce, REALM, T0) == NonceState.VALID
    assert minter.check(nonce, REALM, T0 + NONCE_LIFETIME) == NonceState.VALID
    assert minter.check(nonce, "other.example", T0) == NonceState.INVALID


def test_nonce_from_another_key_is_invalid() -> None:
    nonce = NonceMinter(key=b"k" * 32).mint(REALM, T0)
    assert NonceMinter(key=b"k" * 32).check(nonce, REALM, T0) == NonceState.VALID
    assert NonceMinter(key=b"x" * 32).check(nonce, REALM, T0) == NonceState.INVALID
    assert NonceMinter().check(nonce, REALM, T0) == NonceState.INVALID


@pytest.mark.parametrize("index", [0, 5, 11, 20, 30, 40])
def test_tampered_nonce_invalid(index: int) -> None:
    minter = NonceMinter()
    nonce = minter.mint(REALM, T0)
    tampered = _flip(nonce, index)
    assert tampered != nonce
    assert minter.check(tampered, REALM, T0) == NonceState.INVALID


def test_forged_timestamp_invalid() -> None:
    minter = NonceMinter()
    nonce = minter.mint(REALM, T0)
    raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
    forged = struct.pack(">d", T0 + 1000) + raw[8:]
    text = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    assert minter.check(text, REALM, T0 + 1000) == NonceState.INVALID


def test_nonce_stale_after_lifetime() -> None:
    minter = NonceMinter(lifetime=30.0)
    nonce = minter.mint(REALM, T0)
    assert minter.check(nonce, REALM, T0 + 29.9) == NonceState.VALID
    assert minter.check(nonce, REALM, T0 + 30.0) == NonceState.VALID
    assert minter.check(nonce, REALM, T0 + 30.1) == NonceState.STALE
    assert minter.check(nonce, REALM, T0 + 86400) == NonceState.STALE
    # A nonce from the future (clock stepped back) is not valid either.
    assert minter.check(nonce, REALM, T0 - 5) == NonceState.STALE
    # Stale is only reported for nonces we minted: another realm stays invalid.
    assert minter.check(nonce, "other.example", T0 + 60) == NonceState.INVALID


@pytest.mark.parametrize(
    "garbage",
    ["", "x", "====", "not a nonce", "!!!!!!!!", "é" * 43, "A" * 43, "A" * 44, "A" * 42,
     "A" * 64, "dcd98b7102dd2f0e8b11d0f600bfb0c093", RFC7616_NONCE, "\x00" * 43],
)
def test_garbage_nonce_invalid(garbage: str) -> None:
    assert NonceMinter().check(garbage, REALM, T0) == NonceState.INVALID


def test_wrong_length_nonce_invalid() -> None:
    minter = NonceMinter()
    nonce = minter.mint(REALM, T0)
    assert len(nonce) == 48  # 36 bytes, base64url
    assert minter.check(nonce[:-4], REALM, T0) == NonceState.INVALID
    assert minter.check(nonce + "AAAA", REALM, T0) == NonceState.INVALID


def test_nonces_differ_and_are_token_safe() -> None:
    minter = NonceMinter()
    nonces = {minter.mint(REALM, T0) for _ in range(100)}
    assert len(nonces) == 100
    for nonce in nonces:
        assert '"' not in nonce and "," not in nonce and " " not in nonce


# -- verification --------------------------------------------------------------------------


def make_creds(nonce: str, password: str = PASSWORD, *, algorithm: str = "MD5",
               realm: str = REALM, username: str = USER, method: str = "INVITE",
               uri: str = URI, qop: str | None = "auth", nc: str | None = "00000001",
               cnonce: str | None = "0a4f113b") -> Credentials:
    response = response_digest(algorithm, username, realm, password, method, uri, nonce, nc,
                               cnonce, qop)
    return Credentials(username=username, realm=realm, nonce=nonce, uri=uri,
                       response=response, algorithm=algorithm, qop=qop, nc=nc, cnonce=cnonce)


def fresh() -> tuple[DigestVerifier, str]:
    verifier = DigestVerifier()
    return verifier, verifier.minter.mint(REALM, T0)


def test_verify_ok() -> None:
    verifier, nonce = fresh()
    assert verifier.verify(make_creds(nonce), "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.OK
    assert len(verifier.counts) == 1


def test_verify_sha256_ok() -> None:
    verifier, nonce = fresh()
    creds = make_creds(nonce, algorithm="SHA-256")
    assert len(creds.response) == 64
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.OK


def test_verify_wrong_password() -> None:
    verifier, nonce = fresh()
    creds = make_creds(nonce, password="guess")
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.WRONG
    # The method is part of HA2: credentials computed for REGISTER do not fit an INVITE.
    creds = make_creds(nonce, method="REGISTER", nc="00000002")
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.WRONG


def test_verify_response_case_insensitive() -> None:
    verifier, nonce = fresh()
    creds = make_creds(nonce)
    upper = Credentials.parse(
        f'Digest username="{USER}", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
        f'response="{creds.response.upper()}", qop=auth, nc=00000001, cnonce="0a4f113b"')
    assert verifier.verify(upper, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.OK


def test_verify_stale_with_correct_password() -> None:
    verifier, nonce = fresh()
    later = T0 + NONCE_LIFETIME + 1
    assert verifier.verify(make_creds(nonce), "INVITE", REALM, PASSWORD, later) == Verdict.STALE
    # A wrong password on a stale nonce is still a wrong password, not a free retry.
    wrong = make_creds(nonce, password="guess")
    assert verifier.verify(wrong, "INVITE", REALM, PASSWORD, later) == Verdict.WRONG


def test_another_nodes_nonce_is_stale_here_and_valid_there() -> None:
    """A cluster's nodes share the key (docs/cluster.md): a nonce passes the MAC on
    every node, but only its own node accepts it, so the nonce counts of one node cover
    every nonce it accepts."""
    key = b"k" * 32
    n1, n2 = NonceMinter(key, origin="n1"), NonceMinter(key, origin="n2")
    nonce = n1.mint(REALM, T0)
    assert n1.check(nonce, REALM, T0) == NonceState.VALID
    assert n2.check(nonce, REALM, T0) == NonceState.STALE
    assert NonceMinter(key).check(nonce, REALM, T0) == NonceState.STALE  # a lone switch
    assert NonceMinter(b"x" * 32, origin="n1").check(nonce, REALM, T0) == NonceState.INVALID
    here, there = DigestVerifier(), DigestVerifier()
    here.minter, there.minter = n1, n2
    creds = make_creds(nonce)
    # The right password with n1's nonce on n2: stale (a new challenge, no failure)...
    assert there.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.STALE
    assert len(there.counts) == 0
    # ...a wrong one is still wrong there; on n1 the nonce works once per count.
    assert there.verify(make_creds(nonce, password="guess"), "INVITE", REALM, PASSWORD,
                        T0 + 1) == Verdict.WRONG
    assert here.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.OK
    assert here.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.INVALID


def test_verify_invalid_cases() -> None:
    verifier, nonce = fresh()
    now = T0 + 1
    # Realm of the credentials differs from ours.
    other = make_creds(nonce, realm="other.example")
    assert verifier.verify(other, "INVITE", REALM, PASSWORD, now) == Verdict.INVALID
    # A nonce we did not mint (another key), even with the right password.
    foreign = make_creds(NonceMinter().mint(REALM, T0))
    assert verifier.verify(foreign, "INVITE", REALM, PASSWORD, now) == Verdict.INVALID
    # A nonce minted for another realm, presented in ours.
    cross = make_creds(verifier.minter.mint("other.example", T0))
    assert verifier.verify(cross, "INVITE", REALM, PASSWORD, now) == Verdict.INVALID
    # qop=auth-int is not supported.
    auth_int = make_creds(nonce, qop="auth-int")
    assert verifier.verify(auth_int, "INVITE", REALM, PASSWORD, now) == Verdict.INVALID
    # qop=auth needs nc and cnonce.
    no_nc = make_creds(nonce, nc=None)
    assert verifier.verify(no_nc, "INVITE", REALM, PASSWORD, now) == Verdict.INVALID
    no_cnonce = make_creds(nonce, cnonce=None)
    assert verifier.verify(no_cnonce, "INVITE", REALM, PASSWORD, now) == Verdict.INVALID
    # A non-hex nonce count.
    bad_nc = make_creds(nonce, nc="zzzzzzzz")
    assert verifier.verify(bad_nc, "INVITE", REALM, PASSWORD, now) == Verdict.INVALID
    # None of these consumed a nonce count: the genuine answer still works.
    assert verifier.verify(make_creds(nonce), "INVITE", REALM, PASSWORD, now) == Verdict.OK


def test_replayed_nc_refused_and_increasing_accepted() -> None:
    verifier, nonce = fresh()
    now = T0 + 1
    first = make_creds(nonce, nc="00000001")
    assert verifier.verify(first, "INVITE", REALM, PASSWORD, now) == Verdict.OK
    assert verifier.verify(first, "INVITE", REALM, PASSWORD, now) == Verdict.INVALID
    second = make_creds(nonce, nc="00000002")
    assert verifier.verify(second, "INVITE", REALM, PASSWORD, now) == Verdict.OK
    # Skipping ahead is allowed (nc is hexadecimal), going back is not.
    tenth = make_creds(nonce, nc="0000000a")
    assert verifier.verify(tenth, "INVITE", REALM, PASSWORD, now) == Verdict.OK
    ninth = make_creds(nonce, nc="00000009")
    assert verifier.verify(ninth, "INVITE", REALM, PASSWORD, now) == Verdict.INVALID
    assert verifier.verify(second, "INVITE", REALM, PASSWORD, now) == Verdict.INVALID


def test_no_qop_nonce_is_single_use() -> None:
    verifier, nonce = fresh()
    creds = make_creds(nonce, qop=None, nc=None, cnonce=None)
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.OK
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.INVALID


def test_no_qop_replay_with_invented_nc_refused() -> None:
    """Without qop the response does not cover nc, so an nc sent alongside proves nothing.

    A captured RFC 2069-style answer must stay single-use even when a replayer adds an
    ``nc`` parameter of their own choosing.
    """
    verifier, nonce = fresh()
    creds = make_creds(nonce, qop=None, nc=None, cnonce=None)
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.OK
    for nc in ("00000002", "00000003", "ffffffff"):
        replay = dataclasses.replace(creds, nc=nc)
        assert verifier.verify(replay, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.INVALID


def test_no_qop_first_use_with_nc_then_replay_refused() -> None:
    verifier, nonce = fresh()
    creds = make_creds(nonce, qop=None, nc=None, cnonce=None)
    with_nc = dataclasses.replace(creds, nc="00000001")
    assert verifier.verify(with_nc, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.OK
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.INVALID
    replay = dataclasses.replace(creds, nc="00000005")
    assert verifier.verify(replay, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.INVALID


@pytest.mark.parametrize(
    "response",
    [
        pytest.param("é" * 32, id="latin1"),
        pytest.param("\udcff" * 32, id="surrogateescape"),
        pytest.param("0" * 31 + "\u00e9", id="last-char"),
    ],
)
def test_non_ascii_response_is_a_wrong_answer_not_a_crash(response: str) -> None:
    """``response`` comes off the wire (decoded with surrogateescape): never raise on it."""
    verifier, nonce = fresh()
    creds = dataclasses.replace(make_creds(nonce), response=response)
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) in (
        Verdict.WRONG, Verdict.INVALID)


def test_non_ascii_response_parsed_from_header_does_not_crash() -> None:
    verifier, nonce = fresh()
    creds = Credentials.parse(
        f'Digest username="{USER}", realm="{REALM}", nonce="{nonce}", uri="{URI}", '
        'response="ÿÿÿÿ", qop=auth, nc=00000001, cnonce="0a4f113b"')
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1) in (
        Verdict.WRONG, Verdict.INVALID)


# -- parsing credentials -------------------------------------------------------------------


def test_parse_sipp_style() -> None:
    value = ('Digest username="gw1",realm="127.0.0.1",cnonce="6b8b4567",nc=00000001,'
             'qop=auth,uri="sip:127.0.0.1:49759",nonce="AAAAbbbbCCCC-_",'
             'response="0123456789ABCDEF0123456789abcdef",algorithm=MD5')
    creds = Credentials.parse(value)
    assert creds == Credentials(
        username="gw1", realm="127.0.0.1", nonce="AAAAbbbbCCCC-_", uri="sip:127.0.0.1:49759",
        response="0123456789abcdef0123456789abcdef", algorithm="MD5", qop="auth",
        nc="00000001", cnonce="6b8b4567")


def test_parse_pjsip_style() -> None:
    value = ('Digest username="1001", realm="sw.example", '
             'nonce="q5Ba0wT7eGgAAAAA", uri="sip:sw.example;transport=UDP", '
             'response="3c1b2c9e57f0a1b8e1ab3b2f0a0c9d11", algorithm=SHA-256, '
             'cnonce="b5c4a3b2d1e0f9a8", qop=auth, nc=00000001')
    creds = Credentials.parse(value)
    assert creds.username == "1001"
    assert creds.realm == "sw.example"
    assert creds.uri == "sip:sw.example;transport=UDP"
    assert creds.algorithm == "SHA-256"
    assert (creds.qop, creds.nc, creds.cnonce) == ("auth", "00000001", "b5c4a3b2d1e0f9a8")


def test_parse_defaults_and_case() -> None:
    creds = Credentials.parse(
        'digest USERNAME="alice", Realm="r", NONCE="n", uri="sip:r", response="AB"')
    assert creds.algorithm == "MD5"
    assert creds.response == "ab"
    assert (creds.qop, creds.nc, creds.cnonce) == (None, None, None)
    lower = Credentials.parse(
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="ab", '
        'algorithm=sha-256')
    assert lower.algorithm == "SHA-256"
    quoted = Credentials.parse(
        'Digest username="a\\"b", realm="r", nonce="n", uri="sip:r", response="ab", '
        'algorithm="MD5", qop="auth", nc=00000001, cnonce="c"')
    assert quoted.username == 'a"b'
    assert quoted.qop == "auth"


def test_parse_round_trip_verifies() -> None:
    verifier, nonce = fresh()
    creds = make_creds(nonce, algorithm="SHA-256")
    value = (f'Digest username="{creds.username}",realm="{creds.realm}",'
             f'cnonce="{creds.cnonce}",nc={creds.nc},qop=auth,uri="{creds.uri}",'
             f'nonce="{creds.nonce}",response="{creds.response}",algorithm=SHA-256')
    parsed = Credentials.parse(value)
    assert parsed == creds
    assert verifier.verify(parsed, "INVITE", REALM, PASSWORD, T0 + 1) == Verdict.OK


@pytest.mark.parametrize(
    "value",
    [
        'Basic dXNlcjpwYXNz',
        'Bearer abc',
        'Digest realm="r", nonce="n", uri="sip:r", response="ab"',
        'Digest username="a", nonce="n", uri="sip:r", response="ab"',
        'Digest username="a", realm="r", uri="sip:r", response="ab"',
        'Digest username="a", realm="r", nonce="n", response="ab"',
        'Digest username="a", realm="r", nonce="n", uri="sip:r"',
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="ab", '
        'algorithm=MD5-sess',
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="ab", '
        'algorithm=SHA-512-256',
        'Digest username="a", realm="r", nonce="n", uri="sip:r", response="ab", '
        'algorithm=AKAv1-MD5',
        'Digest',
        '',
        'Digest username="unterminated',
        'Digest username',
    ],
)
def test_parse_refusals(value: str) -> None:
    with pytest.raises(SipParseError):
        Credentials.parse(value)


# -- challenges ----------------------------------------------------------------------------


def test_challenge_header_contents() -> None:
    nonce = NonceMinter().mint(REALM, T0)
    value = challenge_header(REALM, nonce, "MD5")
    assert value.startswith("Digest ")
    assert f'realm="{REALM}"' in value
    assert f'nonce="{nonce}"' in value
    assert 'qop="auth"' in value
    assert "algorithm=MD5" in value
    assert "stale" not in value
    scheme, params = parse_auth_params(value)
    assert scheme == "Digest"
    assert params == {"realm": REALM, "nonce": nonce, "algorithm": "MD5", "qop": "auth"}


def test_challenge_header_sha256_stale() -> None:
    value = challenge_header("10.0.0.1", "abc", "SHA-256", stale=True)
    assert "algorithm=SHA-256" in value
    assert "stale=true" in value
    assert 'algorithm="' not in value and 'stale="' not in value
    _scheme, params = parse_auth_params(value)
    assert params["stale"] == "true"
    assert params["realm"] == "10.0.0.1"


def test_challenge_then_answer_round_trip() -> None:
    """A client that reads our challenge and answers it is accepted."""
    verifier = DigestVerifier()
    _scheme, params = parse_auth_params(
        challenge_header(REALM, verifier.minter.mint(REALM, T0), "SHA-256"))
    creds = make_creds(params["nonce"], algorithm=params["algorithm"], realm=params["realm"],
                       qop=params["qop"])
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 2) == Verdict.OK


# -- nonce counts --------------------------------------------------------------------------


def test_nonce_counts_bounded_oldest_forgotten() -> None:
    counts = NonceCounts(capacity=3)
    assert counts.accept("a", 1)
    assert counts.accept("b", 1)
    assert counts.accept("c", 1)
    assert len(counts) == 3
    assert counts.accept("d", 1)
    assert len(counts) == 3
    # "a" was the oldest and is forgotten: its count 1 is accepted again.
    assert counts.accept("a", 1)
    # That evicted "b"; "c" and "d" are still remembered.
    assert not counts.accept("c", 1)
    assert not counts.accept("d", 1)
    assert counts.accept("b", 1)
    assert len(counts) == 3


def test_nonce_counts_use_refreshes() -> None:
    counts = NonceCounts(capacity=3)
    for nonce in ("a", "b", "c"):
        counts.accept(nonce, 1)
    assert counts.accept("a", 2)  # "a" now the most recent
    counts.accept("d", 1)  # evicts "b"
    assert not counts.accept("a", 2)
    assert counts.accept("b", 1)


def test_nonce_counts_monotonic() -> None:
    counts = NonceCounts(capacity=10)
    assert counts.accept("n", 5)
    assert not counts.accept("n", 5)
    assert not counts.accept("n", 4)
    assert counts.accept("n", 6)


def test_nonce_counts_flood_stays_bounded() -> None:
    counts = NonceCounts(capacity=1000)
    for i in range(20_000):
        counts.accept(f"n{i}", 1)
    assert len(counts) == 1000


@pytest.mark.parametrize(("digest_uri", "request_uri", "same"), [
    ("sip:100@example.com", "sip:100@example.com", True),
    ("sip:100@EXAMPLE.com:5060", "sip:100@example.com", True),  # host case, default port
    ("sip:100@example.com;transport=udp", "sip:100@example.com;user=phone", True),
    ("sips:100@example.com:5061", "sips:100@example.com", True),
    ("sip:100@example.com", "sip:900@example.com", False),  # another number
    ("sip:100@example.com", "sip:100@other.example", False),
    ("sip:100@example.com:5070", "sip:100@example.com", False),
    ("sip:100@example.com", "sips:100@example.com", False),
    ("sip:example.com", "sip:example.com", True),  # REGISTER
    ("sip:example.com:5060", "sip:100@example.com", True),  # sipp leaves the user out
    ("sip:example.com:5070", "sip:100@example.com", False),
    ("not a uri", "sip:100@example.com", False),
])
def test_same_target(digest_uri: str, request_uri: str, same: bool) -> None:
    assert same_target(digest_uri, request_uri) is same


def test_credentials_for_another_target_are_invalid_not_wrong() -> None:
    verifier, nonce = fresh()
    creds = make_creds(nonce)  # computed for URI
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1,
                           request_uri="sip:+4930999@sw.example") == Verdict.INVALID
    # Nothing was consumed: the same credentials for their own target pass.
    assert verifier.verify(creds, "INVITE", REALM, PASSWORD, T0 + 1,
                           request_uri=URI) == Verdict.OK


def test_nonce_counts_shared_by_workers_refuse_a_replay_on_either() -> None:
    fd = shared_memory(table_size(2, 64))
    try:
        first = SharedNonceCounts(map_table(fd, 2, 0, 64, evicting=True))
        second = SharedNonceCounts(map_table(fd, 2, 1, 64, evicting=True))
    finally:
        os.close(fd)
    assert first.accept("n1", 1)
    assert not second.accept("n1", 1)  # the same count on the other worker: a replay
    assert second.accept("n1", 2) and not first.accept("n1", 2)
    assert first.accept("n2", 1) and len(first) == len(second) == 2

