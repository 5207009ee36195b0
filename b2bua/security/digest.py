"""SIP digest authentication (RFC 2617, RFC 7616 with MD5 and SHA-256, qop=auth).

Nonces are stateless: ``time.random.origin.mac`` where the MAC (HMAC-SHA256 under a
key drawn at start-up, or the cluster's) covers the time, the random part, the origin
and the realm. A forged nonce, or one minted for another realm, fails the MAC; an old
one is reported stale so the client retries with the new nonce without asking its user
again. Replay of a nonce count is refused by remembering the highest ``nc`` seen per
nonce (bounded; see ``NonceCounts``).

The origin is the minting node's name, hashed (docs/cluster.md): a cluster's nodes share
the key, so another node's nonce passes the MAC, but it is answered as stale, not
accepted: the nonce counts a node keeps then cover every nonce it accepts, and a nonce
replayed to another node than the one that saw it gets a new challenge, not a call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from b2bua._tally import Tally
from b2bua.shared_tables import text_key
from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import format_auth_params, parse_auth_params
from b2bua.sip.uri import SipUri

NONCE_LIFETIME = 30.0
ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _h(algorithm: str, data: str) -> str:
    # Credentials come off the wire: a non-UTF-8 byte (kept as a surrogate by the
    # parser) must hash, not raise.
    return ALGORITHMS[algorithm](data.encode("utf-8", "surrogateescape")).hexdigest()


def response_digest(algorithm: str, username: str, realm: str, password: str, method: str,
                    uri: str, nonce: str, nc: str | None, cnonce: str | None,
                    qop: str | None) -> str:
    """The expected ``response`` value (RFC 7616 3.4.1, without -sess variants)."""
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return _h(algorithm, f"{ha1}:{nonce}:{ha2}")


class NonceState(Enum):
    VALID = "valid"
    STALE = "stale"
    INVALID = "invalid"


_ORIGIN_BYTES = 4
_NONCE_BYTES = 16 + _ORIGIN_BYTES + 16  # time and random, origin, MAC


class NonceMinter:
    def __init__(self, key: bytes | None = None, lifetime: float = NONCE_LIFETIME,
                 origin: str = "") -> None:
        self._key = key or secrets.token_bytes(32)
        self.lifetime = lifetime
        # This node's name as four bytes: another node's nonces are told apart.
        self._origin = hashlib.sha256(origin.encode()).digest()[:_ORIGIN_BYTES]

    def _mac(self, stamp: bytes, realm: str) -> bytes:
        return hmac.new(self._key, stamp + realm.encode(), hashlib.sha256).digest()[:16]

    def mint(self, realm: str, now: float) -> str:
        stamp = struct.pack(">d", now) + secrets.token_bytes(8) + self._origin
        return base64.urlsafe_b64encode(stamp + self._mac(stamp, realm)).decode().rstrip("=")

    def check(self, nonce: str, realm: str, now: float) -> NonceState:
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (ValueError, TypeError):
            return NonceState.INVALID
        if len(raw) != _NONCE_BYTES:
            return NonceState.INVALID
        stamp, mac = raw[:-16], raw[-16:]
        if not hmac.compare_digest(mac, self._mac(stamp, realm)):
            return NonceState.INVALID
        if stamp[16:] != self._origin:
            return NonceState.STALE  # another node's: genuine, but its counts are there
        (minted,) = struct.unpack(">d", stamp[:8])
        if not 0 <= now - minted <= self.lifetime:
            return NonceState.STALE
        return NonceState.VALID


# With several signalling workers, nonce counts live in shared memory, one slot each.
NONCE_SLOTS = 1 << 17


class NonceCounts:
    """Highest nonce count per nonce; oldest nonces forgotten beyond ``capacity``.

    A forgotten nonce is at least ``capacity`` nonces old; under the nonce lifetime
    that takes a flood far larger than any bound the policy lets through, and a
    forgotten nonce that is still valid can be replayed at most once more.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._seen: OrderedDict[str, int] = OrderedDict()

    def accept(self, nonce: str, nc: int) -> bool:
        last = self._seen.get(nonce)
        if last is not None and nc <= last:
            return False
        self._seen[nonce] = nc
        self._seen.move_to_end(nonce)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)


class SharedNonceCounts(NonceCounts):
    """With several signalling workers (chosen when the engine is wired): counts every
    worker sees, since a phone may reuse a nonce for a call that lands on another
    worker. Direct mapped: a nonce whose slot a newer one takes is forgotten, as at
    ``capacity``; a contended slot is counted by this worker alone."""

    def __init__(self, table: Tally) -> None:
        super().__init__()
        self.table = table

    def accept(self, nonce: str, nc: int) -> bool:
        key = text_key("nonce", nonce)
        try:
            if nc <= self.table.maximum(key):
                return False
            self.table.store(key, nc)
            return True
        except OverflowError:
            return super().accept(nonce, nc)

    def __len__(self) -> int:
        return int(self.table.used()[0])


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    nc: str | None
    cnonce: str | None

    @classmethod
    def parse(cls, value: str) -> Credentials:
        scheme, params = parse_auth_params(value)
        if scheme.lower() != "digest":
            raise SipParseError("not a Digest credential")
        try:
            algorithm = params.get("algorithm", "MD5").upper()
            if algorithm not in ALGORITHMS:
                raise SipParseError(f"unsupported algorithm {algorithm}")
            return cls(
                username=params["username"],
                realm=params["realm"],
                nonce=params["nonce"],
                uri=params["uri"],
                response=params["response"].lower(),
                algorithm=algorithm,
                qop=params.get("qop"),
                nc=params.get("nc"),
                cnonce=params.get("cnonce"),
            )
        except KeyError as exc:
            raise SipParseError(f"credential without {exc.args[0]}") from None


class Verdict(Enum):
    OK = "ok"
    STALE = "stale"
    WRONG = "wrong"  # a guess: counts toward suspension
    INVALID = "invalid"  # malformed, foreign nonce, replay: re-challenge, no guess counted


def challenge_header(realm: str, nonce: str, algorithm: str, stale: bool = False) -> str:
    params = {"realm": realm, "nonce": nonce, "algorithm": algorithm, "qop": "auth"}
    if stale:
        params["stale"] = "true"
    return format_auth_params("Digest", params, quoted={"realm", "nonce", "qop"})


def same_target(digest_uri: str, request_uri: str) -> bool:
    """Does the digest's ``uri`` name the request's target (RFC 3261 22.4: the server
    checks it)? Compared as URIs, not strings: same scheme, host (any letter case) and
    port (absent means the scheme's default), and the same user when the digest's uri
    names one. Some clients leave the user out (sipp sends ``uri="sip:host:port"`` for
    an INVITE to ``sip:100@host:port``), so a uri without a user still passes; one with
    a user must name the request's. Parameters and headers are not compared, as proxies
    and phones add and drop them."""
    try:
        a, b = SipUri.parse(digest_uri), SipUri.parse(request_uri)
    except SipParseError:
        return False
    if a.scheme != b.scheme or (a.user is not None and a.user != b.user):
        return False
    default = 5061 if a.scheme == "sips" else 5060
    return (a.host.lower() == b.host.lower()
            and (a.port or default) == (b.port or default))


class DigestVerifier:
    def __init__(self, minter: NonceMinter | None = None,
                 counts: NonceCounts | None = None) -> None:
        self.minter = minter or NonceMinter()
        self.counts = counts if counts is not None else NonceCounts()

    def verify(self, creds: Credentials, method: str, realm: str, password: str,
               now: float, request_uri: str | None = None) -> Verdict:
        if creds.realm != realm:
            return Verdict.INVALID
        if request_uri is not None and not same_target(creds.uri, request_uri):
            # Credentials computed for another target (a Request-URI changed on the way):
            # re-challenged, and not a password guess (no password was checked).
            return Verdict.INVALID
        state = self.minter.check(creds.nonce, realm, now)
        if state == NonceState.INVALID:
            return Verdict.INVALID
        if creds.qop is not None and (creds.qop != "auth" or not creds.nc or not creds.cnonce):
            return Verdict.INVALID
        expected = response_digest(creds.algorithm, creds.username, realm, password, method,
                                   creds.uri, creds.nonce, creds.nc, creds.cnonce, creds.qop)
        # Bytes, not str: compare_digest refuses non-ASCII text, and the response comes
        # off the wire (surrogate-escaped when it was not UTF-8).
        if not hmac.compare_digest(expected.encode(),
                                   creds.response.encode("utf-8", "surrogateescape")):
            return Verdict.WRONG
        if state == NonceState.STALE:
            return Verdict.STALE
        # Without qop the response does not cover nc, so any nc offered is ignored and
        # the nonce becomes single-use (count 1).
        try:
            nc = int(creds.nc, 16) if creds.qop is not None and creds.nc is not None else 1
        except ValueError:
            return Verdict.INVALID
        if not self.counts.accept(creds.nonce, nc):
            return Verdict.INVALID
        return Verdict.OK
