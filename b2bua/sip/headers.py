"""Header names and the structured header values a B2BUA reads: Via, CSeq, name-addr, Digest.

Parsing here is on demand: the message parser only splits lines, and these functions run when
the transaction or dialog layer actually looks at a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from b2bua.sip.errors import SipParseError
from b2bua.sip.uri import SipUri, format_params, parse_hostport

__all__ = [
    "MULTI_VALUE",
    "CSeq",
    "NameAddr",
    "Via",
    "canonical_name",
    "format_auth_params",
    "parse_auth_params",
    "split_commas",
    "split_semicolons",
]

# RFC 3261 7.3.3 and the extension RFCs that define one-letter forms.
_COMPACT: dict[str, str] = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}

# Headers whose conventional spelling is not plain Title-Case, plus the common ones so that
# lookups of well-known names never fall through to string building.
_KNOWN_NAMES = (
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language",
    "Accept-Resource-Priority", "Alert-Info", "Allow", "Allow-Events", "Authentication-Info",
    "Authorization", "Call-ID", "Call-Info", "Contact", "Content-Disposition",
    "Content-Encoding", "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date",
    "Diversion", "Error-Info", "Event", "Expires", "From", "History-Info", "Identity",
    "Identity-Info", "In-Reply-To", "Max-Breadth", "Max-Forwards", "MIME-Version",
    "Min-Expires", "Min-SE", "Organization", "P-Access-Network-Info", "P-Asserted-Identity",
    "P-Associated-URI", "P-Called-Party-ID", "P-Charging-Function-Addresses",
    "P-Charging-Vector", "P-Early-Media", "P-Preferred-Identity", "P-Visited-Network-ID",
    "Path", "Priority", "Privacy", "Proxy-Authenticate", "Proxy-Authorization",
    "Proxy-Require", "RAck", "Reason", "Record-Route", "Refer-Sub", "Refer-To", "Referred-By",
    "Reject-Contact", "Remote-Party-ID", "Replaces", "Reply-To", "Request-Disposition",
    "Require", "Resource-Priority", "Retry-After", "Route", "RSeq", "Security-Client",
    "Security-Server", "Security-Verify", "Server", "Service-Route", "Session-Expires",
    "Session-ID", "SIP-ETag", "SIP-If-Match", "Subject", "Subscription-State", "Supported",
    "Target-Dialog", "Timestamp", "To", "Unsupported", "User-Agent", "Via", "Warning",
    "WWW-Authenticate",
)
_KNOWN: dict[str, str] = {name.lower(): name for name in _KNOWN_NAMES}

# Raw spelling -> canonical. Bounded so a peer inventing header names cannot grow it forever.
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_LIMIT = 4096


def canonical_name(name: str) -> str:
    """Canonical spelling of a header name, so headers compare with plain ``==``."""
    try:
        return _NAME_CACHE[name]
    except KeyError:
        pass
    key = name.strip(" \t").lower()
    canon = _COMPACT.get(key) or _KNOWN.get(key)
    if canon is None:
        canon = "-".join(part.capitalize() for part in key.split("-"))
    if len(_NAME_CACHE) < _NAME_CACHE_LIMIT:
        _NAME_CACHE[name] = canon
    return canon


# Comma-separated list headers (RFC 3261 7.3.1): a line carrying several values is the same as
# several lines. Deliberately absent: the auth headers, whose single value contains commas, and
# headers such as Date whose value has a comma in it.
MULTI_VALUE: frozenset[str] = frozenset({
    "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language",
    "Accept-Resource-Priority", "Alert-Info", "Allow", "Allow-Events", "Call-Info", "Contact",
    "Content-Encoding", "Content-Language", "Diversion", "Error-Info", "History-Info",
    "In-Reply-To", "P-Asserted-Identity", "P-Associated-URI", "P-Preferred-Identity", "Path",
    "Proxy-Require", "Reason", "Record-Route", "Reject-Contact", "Request-Disposition",
    "Require", "Resource-Priority", "Route", "Security-Client", "Security-Server",
    "Security-Verify", "Service-Route", "Supported", "Unsupported", "Via", "Warning",
})


def _split_outside(value: str, sep: str) -> list[str]:
    """Split on ``sep`` outside double quotes (with backslash escapes) and outside ``<...>``."""
    out: list[str] = []
    start = 0
    quoted = angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif angle:
            if c == ">":
                angle = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angle = True
        elif c == sep:
            out.append(value[start:i])
            start = i + 1
        i += 1
    out.append(value[start:])
    return out


def split_commas(value: str) -> list[str]:
    """Split a list header into its elements, dropping empty ones."""
    if "," not in value:
        stripped = value.strip(" \t")
        return [stripped] if stripped else []
    parts = value.split(",") if '"' not in value and "<" not in value else _split_outside(
        value, ",")
    return [p for p in (part.strip(" \t") for part in parts) if p]


def split_semicolons(value: str) -> list[str]:
    """Split a parameter list on ``;`` outside quoted strings and angle brackets."""
    if '"' not in value and "<" not in value:
        return value.split(";")
    return _split_outside(value, ";")


def _parse_header_params(segments: Iterable[str]) -> dict[str, str | None]:
    """``name[=value]`` segments -> ordered dict; values stay raw (quotes kept) for relaying."""
    params: dict[str, str | None] = {}
    for segment in segments:
        name, sep, value = segment.partition("=")
        name = name.strip(" \t").lower()
        if not name:
            if sep or segment.strip(" \t"):
                raise SipParseError("empty parameter name")
            continue
        params[name] = value.strip(" \t") if sep else None
    return params


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Unescape the quoted-string opening at ``text[start]``; return it and the index after it."""
    out: list[str] = []
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise SipParseError("unterminated quoted string")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(slots=True)
class Via:
    """One Via entry (RFC 3261 20.42); ``host`` keeps IPv6 brackets."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Via:
        """Parse one Via element (not a comma-joined list); LWS around ``/``, ``:`` and ``;``
        is tolerated as RFC 3261 allows."""
        head, *segments = split_semicolons(value)
        protocol, sep1, rest = head.partition("/")
        version, sep2, rest = rest.partition("/")
        if not (sep1 and sep2):
            raise SipParseError("bad Via sent-protocol")
        if protocol.strip(" \t").upper() != "SIP" or version.strip(" \t") != "2.0":
            raise SipParseError("bad Via protocol")
        pieces = rest.split(None, 1)
        if len(pieces) != 2:
            raise SipParseError("Via without sent-by")
        transport, sent_by = pieces
        host, port = parse_hostport("".join(sent_by.split()))
        return cls(transport.upper(), host, port, _parse_header_params(segments))

    def __str__(self) -> str:
        sent_by = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"SIP/2.0/{self.transport} {sent_by}{format_params(self.params)}"

    @property
    def branch(self) -> str | None:
        """Transaction key (RFC 3261 17.2.3); None for RFC 2543 peers."""
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        """Source address a server recorded for this hop (RFC 3261 18.2.1)."""
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        """RFC 3581 value: None when absent, "" when requested but not yet filled in."""
        if "rport" not in self.params:
            return None
        return self.params["rport"] or ""


@dataclass(slots=True)
class CSeq:
    """CSeq header (RFC 3261 20.16)."""

    number: int
    method: str

    @classmethod
    def parse(cls, value: str) -> CSeq:
        """Parse ``number method``; the number must fit in 31 bits as RFC 3261 8.1.1.5 demands."""
        parts = value.split()
        if len(parts) != 2:
            raise SipParseError("bad CSeq")
        number, method = parts
        if not (number.isascii() and number.isdigit()) or len(number.lstrip("0")) > 10:
            raise SipParseError("bad CSeq number")
        seq = int(number)
        if seq >= 2**31:
            raise SipParseError("CSeq number too large")
        return cls(seq, method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


@dataclass(slots=True)
class NameAddr:
    """From/To/Contact/Route style value: optional display name, URI, header parameters."""

    display: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        """Parse name-addr or bare addr-spec; ``*`` (a wildcard Contact) is rejected."""
        text = value.strip(" \t")
        if not text or text == "*":
            raise SipParseError("not a name-addr")
        display: str | None = None
        if text[0] == '"':
            display, pos = _read_quoted(text, 0)
            lt = text.find("<", pos)
            if lt == -1 or text[pos:lt].strip(" \t"):
                raise SipParseError("quoted display name without <URI>")
        else:
            lt = text.find("<")
            if lt != -1 and ";" not in text[:lt]:
                display = text[:lt].strip(" \t") or None
            else:
                lt = -1
        if lt != -1:
            gt = text.find(">", lt)
            if gt == -1:
                raise SipParseError("unterminated <URI>")
            uri = SipUri.parse(text[lt + 1 : gt])
            rest = text[gt + 1 :]
        else:
            # addr-spec form: the URI cannot carry ';' params (RFC 3261 20.10), so the first ';'
            # after the userinfo starts the header parameters.
            at = text.find("@")
            quote = text.find('"')
            start = at + 1 if at != -1 and (quote == -1 or at < quote) else 0
            semi = text.find(";", start)
            if semi == -1:
                semi = len(text)
            uri = SipUri.parse(text[:semi])
            rest = text[semi:]
        rest = rest.strip(" \t")
        if not rest:
            return cls(display, uri, {})
        if rest[0] != ";":
            raise SipParseError("junk after URI")
        return cls(display, uri, _parse_header_params(split_semicolons(rest[1:])))

    def __str__(self) -> str:
        uri = f"<{self.uri}>{format_params(self.params)}"
        return uri if self.display is None else f"{_quote(self.display)} {uri}"

    @property
    def tag(self) -> str | None:
        """Dialog tag (RFC 3261 19.3), None when absent."""
        return self.params.get("tag")


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Parse a challenge or credentials value into (scheme, params without quotes).

    Keys are lower-cased; quoted values are unescaped, so ``qop="auth,auth-int"`` comes back as
    ``auth,auth-int``.
    """
    pieces = value.strip(" \t").split(None, 1)
    if not pieces:
        raise SipParseError("empty auth header")
    scheme = pieces[0]
    rest = pieces[1] if len(pieces) > 1 else ""
    params: dict[str, str] = {}
    i = 0
    n = len(rest)
    while True:
        while i < n and rest[i] in " \t,":
            i += 1
        if i >= n:
            return scheme, params
        eq = rest.find("=", i)
        if eq == -1:
            raise SipParseError("auth parameter without '='")
        key = rest[i:eq].strip(" \t").lower()
        if not key or any(c in key for c in ' \t,"'):
            raise SipParseError("bad auth parameter name")
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            params[key], i = _read_quoted(rest, i)
        else:
            comma = rest.find(",", i)
            end = n if comma == -1 else comma
            params[key] = rest[i:end].strip(" \t")
            i = end
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] != ",":
            raise SipParseError("junk after auth parameter")


def format_auth_params(scheme: str, params: Mapping[str, str], quoted: set[str]) -> str:
    """Render a challenge/credentials value; ``quoted`` names the params to emit as strings,
    since Digest quotes some (realm, nonce) but not others (nc, algorithm)."""
    body = ", ".join(
        f"{k}={_quote(v)}" if k in quoted else f"{k}={v}" for k, v in params.items()
    )
    return f"{scheme} {body}" if body else scheme
