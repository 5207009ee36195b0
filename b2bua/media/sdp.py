"""Pure SDP handling for the media relay: read where each stream goes, point it at the relay.

Only what anchoring media needs is parsed (RFC 4566 / 8866 line syntax):

* ``c=`` at session level and media level (the media-level one wins);
* ``m=`` lines: media type, port, protocol, formats;
* ``a=rtcp:`` (RFC 3605) per media; the direction attributes (``a=sendrecv`` etc.).

:func:`rewrite_sdp` replaces, and only replaces:

* every ``c=`` address with the relay address (``IN IP4`` or ``IN IP6`` after the relay
  address's family; a multicast ``/ttl`` suffix is dropped). A hold address ``0.0.0.0``
  (or ``::``) is kept as it is, so the hold still reads as a hold on the far side;
* the port of every ``m=`` line with the relay port given for that stream (a ``/count``
  suffix is dropped: the relay gives one port pair per stream); a disabled stream (port
  0) stays 0, and a relay port of 0 disables (rejects, RFC 3264) the stream;
* every media-level ``a=rtcp:`` with ``a=rtcp:<relay port + 1> IN IP4 <address>``, the
  address being the one the stream's ``c=`` ends up with.

Everything else (``o=``, codecs, ``a=fmtp``, ICE candidates, unknown lines) is copied
byte for byte, and each line keeps its own line ending (CRLF or LF). Input may be
``bytes`` (decoded as UTF-8 with ``surrogateescape``, so the round trip is lossless) or
``str``; the output has the same type. Nothing raises on bad input: garbage comes back
unchanged with ``ok=False`` and the reason in ``error``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import AnyStr, Generic

__all__ = [
    "MAX_SDP_LINES",
    "MAX_SDP_SIZE",
    "MediaInfo",
    "SdpInfo",
    "SdpRewrite",
    "parse_sdp",
    "rewrite_sdp",
]

MAX_SDP_SIZE = 65536
MAX_SDP_LINES = 2000
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
HOLD_ADDRESSES = ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """One ``m=`` section as far as the relay cares."""

    index: int  # position among the m= lines, from 0
    media: str  # audio, video, image, ...
    port: int  # 0: stream disabled
    proto: str  # RTP/AVP, RTP/SAVP, udptl, ...
    formats: tuple[str, ...]
    address: str | None  # effective connection address (media c= else session c=)
    addrtype: str | None  # IP4 / IP6
    rtcp_port: int | None  # from a=rtcp, else None (then RTCP is port + 1)
    rtcp_address: str | None  # from a=rtcp when it names one
    direction: str  # media-level, else session-level, else sendrecv

    @property
    def disabled(self) -> bool:
        return self.port == 0

    @property
    def hold_address(self) -> bool:
        """The connection address is the RFC 2543 hold address (0.0.0.0 or ::)."""
        return self.address in HOLD_ADDRESSES

    @property
    def effective_rtcp_port(self) -> int:
        return self.rtcp_port if self.rtcp_port is not None else self.port + 1


@dataclass(frozen=True, slots=True)
class SdpInfo:
    ok: bool
    error: str | None = None
    session_address: str | None = None
    media: tuple[MediaInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class SdpRewrite(Generic[AnyStr]):
    """The rewritten body (or the original one when ``ok`` is False)."""

    body: AnyStr
    ok: bool
    error: str | None = None
    media: tuple[MediaInfo, ...] = field(default=())  # as parsed from the original


@dataclass(slots=True)
class _Line:
    text: str  # without its line ending
    ending: str  # "\r\n", "\n" or "" (last line without one)


@dataclass(slots=True)
class _Parsed:
    lines: list[_Line]
    session_c: int | None = None  # line index of the session-level c=
    session_address: str | None = None
    session_addrtype: str | None = None
    session_direction: str | None = None
    # per media: m= line index, c= line index, a=rtcp line index
    m_lines: list[int] = field(default_factory=list)
    c_lines: list[int | None] = field(default_factory=list)
    rtcp_lines: list[int | None] = field(default_factory=list)
    media: list[MediaInfo] = field(default_factory=list)


class _SdpError(Exception):
    pass


def _to_text(body: bytes | str) -> str:
    if isinstance(body, str):
        return body
    return body.decode("utf-8", "surrogateescape")


def _split_lines(text: str) -> list[_Line]:
    out: list[_Line] = []
    parts = text.split("\n")
    last = len(parts) - 1
    for i, part in enumerate(parts):  # bounded by MAX_SDP_LINES (checked by the caller)
        if i == last:
            if part:
                out.append(_Line(part, ""))
            break
        if part.endswith("\r"):
            out.append(_Line(part[:-1], "\r\n"))
        else:
            out.append(_Line(part, "\n"))
    return out


def _parse_port(token: str) -> int:
    if not token.isdigit() or len(token) > 5:
        raise _SdpError(f"bad port {token!r}")
    port = int(token)
    if port > 65535:
        raise _SdpError(f"bad port {token!r}")
    return port


def _parse_connection(value: str) -> tuple[str, str]:
    # c=<nettype> <addrtype> <connection-address>[/ttl[/n]]
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise _SdpError(f"bad c= line {value!r}")
    address = parts[2].split("/", 1)[0]
    if not address:
        raise _SdpError(f"bad c= line {value!r}")
    return parts[1], address


def _parse_rtcp(value: str) -> tuple[int, str | None]:
    # a=rtcp:<port> [<nettype> <addrtype> <connection-address>]
    parts = value.split()
    if not parts:
        raise _SdpError("empty a=rtcp")
    port = _parse_port(parts[0])
    address = parts[3] if len(parts) >= 4 else None
    return port, address


@dataclass(slots=True)
class _RawMedia:
    m: int  # line index of the m= line
    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    c: int | None = None
    addrtype: str | None = None
    address: str | None = None
    rtcp: int | None = None
    rtcp_port: int | None = None
    rtcp_address: str | None = None
    direction: str | None = None


def _parse(text: str) -> _Parsed:
    if len(text) > MAX_SDP_SIZE:
        raise _SdpError(f"SDP larger than {MAX_SDP_SIZE} characters")
    if text.count("\n") > MAX_SDP_LINES:
        raise _SdpError(f"SDP longer than {MAX_SDP_LINES} lines")
    lines = _split_lines(text)
    p = _Parsed(lines=lines)
    first = next((ln.text for ln in lines if ln.text.strip()), "")
    if not first.startswith("v="):
        raise _SdpError("SDP does not start with v=")

    cur: _RawMedia | None = None
    raw: list[_RawMedia] = []
    for i, line in enumerate(lines):  # bounded by MAX_SDP_LINES
        t = line.text
        if not t.strip():
            continue
        if len(t) < 2 or t[1] != "=" or not ("a" <= t[0] <= "z"):
            raise _SdpError(f"line {i + 1} is not <type>=<value>: {t[:40]!r}")
        kind, value = t[0], t[2:]
        if kind == "m":
            parts = value.split()
            if len(parts) < 3:
                raise _SdpError(f"bad m= line {value!r}")
            port = _parse_port(parts[1].split("/", 1)[0])
            cur = _RawMedia(m=i, media=parts[0], port=port, proto=parts[2],
                            formats=tuple(parts[3:]))
            raw.append(cur)
        elif kind == "c":
            addrtype, address = _parse_connection(value)
            if cur is None:
                if p.session_c is not None:
                    raise _SdpError("two session-level c= lines")
                p.session_c, p.session_addrtype, p.session_address = i, addrtype, address
            else:
                if cur.c is not None:
                    # Several c= per media are legal only for multicast; not relayable.
                    raise _SdpError(f"two c= lines in media {len(raw) - 1}")
                cur.c, cur.addrtype, cur.address = i, addrtype, address
        elif kind == "a" and cur is not None and value.startswith("rtcp:"):
            cur.rtcp = i
            cur.rtcp_port, cur.rtcp_address = _parse_rtcp(value[5:])
        elif kind == "a" and value in DIRECTIONS:
            if cur is None:
                p.session_direction = value
            else:
                cur.direction = value

    for index, m in enumerate(raw):
        conn = m.address if m.address is not None else p.session_address
        conn_type = m.addrtype if m.addrtype is not None else p.session_addrtype
        if conn is None:
            raise _SdpError(f"media {index} has no connection address (c=)")
        p.m_lines.append(m.m)
        p.c_lines.append(m.c)
        p.rtcp_lines.append(m.rtcp)
        p.media.append(MediaInfo(
            index=index, media=m.media, port=m.port, proto=m.proto, formats=m.formats,
            address=conn, addrtype=conn_type, rtcp_port=m.rtcp_port,
            rtcp_address=m.rtcp_address,
            direction=m.direction or p.session_direction or "sendrecv",
        ))
    return p


def parse_sdp(body: bytes | str) -> SdpInfo:
    """Connection address, ports and direction of each stream; ``ok=False`` on garbage."""
    try:
        p = _parse(_to_text(body))
    except _SdpError as exc:
        return SdpInfo(ok=False, error=str(exc))
    return SdpInfo(ok=True, session_address=p.session_address, media=tuple(p.media))


def _relay_addrtype(relay_host: str) -> str:
    try:
        ip = ipaddress.ip_address(relay_host)
    except ValueError as exc:
        raise _SdpError(f"relay address {relay_host!r} is not an IP address") from exc
    return "IP6" if ip.version == 6 else "IP4"


def _rewrite_text(text: str, relay_host: str, ports: Sequence[int],
                  keep_hold: bool) -> tuple[str, tuple[MediaInfo, ...]]:
    p = _parse(text)
    addrtype = _relay_addrtype(relay_host)
    if len(ports) != len(p.media):
        raise _SdpError(f"{len(ports)} relay ports for {len(p.media)} m= lines")
    for port in ports:
        if not isinstance(port, int) or not 0 <= port < 65535:
            raise _SdpError(f"bad relay port {port!r}")
    lines = p.lines
    new: dict[int, str] = {}

    def c_line(address: str) -> tuple[str, str]:
        if keep_hold and address in HOLD_ADDRESSES:
            return address, "IP6" if ":" in address else "IP4"
        return relay_host, addrtype

    if p.session_c is not None and p.session_address is not None:
        address, at = c_line(p.session_address)
        new[p.session_c] = f"c=IN {at} {address}"
    for media, m_index, c_index, rtcp_index, port in zip(
        p.media, p.m_lines, p.c_lines, p.rtcp_lines, ports, strict=True
    ):
        address, at = c_line(media.address or "")
        if c_index is not None:
            new[c_index] = f"c=IN {at} {address}"
        if media.port == 0:
            continue  # a disabled stream stays disabled
        parts = lines[m_index].text[2:].split()
        parts[1] = str(port)
        new[m_index] = "m=" + " ".join(parts)
        if rtcp_index is not None and port:
            new[rtcp_index] = f"a=rtcp:{port + 1} IN {at} {address}"
    out = "".join((new.get(i, ln.text) + ln.ending) for i, ln in enumerate(lines))
    return out, tuple(p.media)


def rewrite_sdp(body: AnyStr, relay_host: str, ports: int | Sequence[int], *,
                keep_hold_address: bool = True) -> SdpRewrite[AnyStr]:
    """Point every stream of ``body`` at ``relay_host``: ``ports[i]`` for the i-th m= line.

    ``ports`` is one RTP port per ``m=`` line (an ``int`` when there is exactly one);
    RTCP is advertised on port + 1. A port of 0 disables that stream (its a=rtcp is left
    alone). On anything unparseable the body comes back
    unchanged with ``ok=False``.
    """
    port_list = [ports] if isinstance(ports, int) else list(ports)
    try:
        text, media = _rewrite_text(_to_text(body), relay_host, port_list, keep_hold_address)
    except _SdpError as exc:
        return SdpRewrite(body=body, ok=False, error=str(exc))
    if isinstance(body, bytes):
        return SdpRewrite(body=text.encode("utf-8", "surrogateescape"), ok=True, media=media)
    return SdpRewrite(body=text, ok=True, media=media)
