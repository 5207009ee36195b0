"""SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966), parsed leniently but never crashing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from b2bua.sip.errors import SipParseError, UnsupportedSchemeError

__all__ = ["SipUri", "format_params", "parse_hostport"]

# Hostnames are checked loosely (underscores and trailing dots occur in the wild); what matters
# is that whitespace, quotes and brackets never end up in a host we later route to.
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*)")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+(?:%[A-Za-z0-9._~\-]+)?\]")
_SCHEMES = frozenset({"sip", "sips", "tel"})
# Characters that can never appear unescaped in a URI we accept (RFC 3261 25.1).
_BAD_URI_CHARS = frozenset(' \t\r\n<>"')


def user_at(user: str, host: str) -> str:
    """``user@host`` for a sip URI, or ``host`` alone when ``user`` is empty (a number
    rule may strip a number to nothing): the userinfo is optional (RFC 3261 25.1), and
    ``sip:@host`` is no URI."""
    return f"{user}@{host}" if user else host


def parse_hostport(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]``; IPv6 hosts keep their brackets so the result re-serialises as is."""
    if text.startswith("["):
        close = text.find("]")
        if close == -1:
            raise SipParseError("unterminated IPv6 reference")
        host = text[: close + 1]
        rest = text[close + 1 :]
        if not rest:
            port_text = None
        elif rest[0] == ":":
            port_text = rest[1:]
        else:
            raise SipParseError("junk after IPv6 reference")
        if _IPV6_RE.fullmatch(host) is None:
            raise SipParseError("bad IPv6 reference")
    else:
        host, sep, port_text_raw = text.partition(":")
        port_text = port_text_raw if sep else None
        if _HOSTNAME_RE.fullmatch(host) is None:
            raise SipParseError("bad host")
    if port_text is None:
        return host, None
    if not (port_text.isascii() and port_text.isdigit()) or len(port_text) > 5:
        raise SipParseError("bad port")
    port = int(port_text)
    if port > 65535:
        raise SipParseError("bad port")
    return host, port


def _parse_params(segments: list[str]) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for segment in segments:
        if not segment:
            continue
        name, sep, value = segment.partition("=")
        if not name:
            raise SipParseError("empty URI parameter name")
        params[name.lower()] = value if sep else None
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Render ``;name=value`` / ``;name`` pairs in insertion order."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


@dataclass(slots=True)
class SipUri:
    """A parsed URI; the user part is kept byte-exact (escapes untouched) for faithful relaying.

    For ``tel:`` URIs the subscriber number is in ``user`` and ``host`` is empty.
    """

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str | None = None

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; :class:`SipParseError` on anything that is not a usable sip/sips/tel URI."""
        text = text.strip(" \t")
        scheme, sep, rest = text.partition(":")
        if not sep or not scheme:
            raise SipParseError("URI without scheme")
        if not _BAD_URI_CHARS.isdisjoint(text):
            raise SipParseError("illegal character in URI")
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            raise UnsupportedSchemeError(f"unsupported URI scheme {scheme[:16]!r}")
        if scheme == "tel":
            number, *segments = rest.split(";")
            if not number:
                raise SipParseError("empty tel number")
            return cls("tel", number, None, "", None, _parse_params(segments), None)

        # '@' cannot appear unescaped after the userinfo (RFC 3261 25.1), while the user part may
        # legally contain ';' and '?', so the first '@' is the only reliable delimiter.
        at = rest.find("@")
        user: str | None = None
        password: str | None = None
        if at != -1:
            userinfo = rest[:at]
            rest = rest[at + 1 :]
            user, colon, pw = userinfo.partition(":")
            if not user:
                raise SipParseError("empty URI user")
            if colon:
                password = pw
        hostpart, qmark, headers = rest.partition("?")
        hostport, *segments = hostpart.split(";")
        host, port = parse_hostport(hostport)
        return cls(scheme, user, password, host, port, _parse_params(segments),
                   headers if qmark else None)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user or ''}{format_params(self.params)}"
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts += (":", self.password)
            parts.append("@")
        parts.append(self.host_port())
        if self.params:
            parts.append(format_params(self.params))
        if self.headers is not None:
            parts += ("?", self.headers)
        return "".join(parts)

    @property
    def transport(self) -> str | None:
        """The ``transport`` URI parameter, lower-cased, or None when absent."""
        value = self.params.get("transport")
        return value.lower() if value else None

    def host_port(self) -> str:
        """``host`` or ``host:port``, as used in Via sent-by and for DNS/socket targets."""
        return self.host if self.port is None else f"{self.host}:{self.port}"
