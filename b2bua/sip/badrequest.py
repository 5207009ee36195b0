"""What a UAS answers to a request it cannot take (RFC 3261 8.2.2, 8.2.6, 21.4).

A request the parser refused still gets an answer when the headers a response copies
(Via, From, To, Call-ID, CSeq) can be read from it: ``400`` with a reason phrase naming
the fault, ``505`` for another SIP version, ``416`` for a Request-URI scheme other than
sip, sips or tel. ``420`` with ``Unsupported`` answers a ``Require`` naming an extension
the softswitch does not implement. Whether to answer at all is the caller's decision:
only sources the policy knows are answered (an unknown source's junk is dropped).
Pure functions: bytes and messages in, a response (or None) out.
"""

from __future__ import annotations

import re

from b2bua.sip.errors import SipParseError, UnsupportedSchemeError
from b2bua.sip.headers import canonical_name, split_commas
from b2bua.sip.message import Request, Response, make_response
from b2bua.sip.parser import find_header_end

# Extensions a request may require of us: session timers (RFC 4028) and Path (RFC 3327).
SUPPORTED_EXTENSIONS = frozenset({"timer", "path"})

_COPIED = frozenset({"Via", "From", "To", "Call-ID", "CSeq"})
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
# Lenient on purpose: stray whitespace in the Request-URI is one of the faults answered.
_REQUEST_LINE = re.compile(r"([A-Za-z0-9\-.!%*_+`'~]+)\s+(\S.*?)\s+(SIP/\S+)")
_PHRASE_UNSAFE = re.compile(r"[^\x20-\x7e]")


def status_for(error: SipParseError) -> int:
    if isinstance(error, UnsupportedSchemeError):
        return 416
    return 505 if "SIP version" in str(error) else 400


def reason_for(error: SipParseError) -> str:
    """A reason phrase naming the fault (21.4.1), printable ASCII, bounded."""
    status = status_for(error)
    if status == 416:
        return "Unsupported URI Scheme"
    if status == 505:
        return "Version Not Supported"
    detail = _PHRASE_UNSAFE.sub("?", str(error))[:80]
    return f"Bad Request ({detail})"


def salvage(data: bytes) -> Request | None:
    """The request line and the headers a response copies, read leniently from a
    request the parser refused; None when it is a response or they cannot be read."""
    head_end, _ = find_header_end(data)
    if head_end < 0:
        return None
    text = data[:head_end].decode("utf-8", "surrogateescape")
    lines = text.replace("\r\n", "\n").split("\n")
    start = _REQUEST_LINE.fullmatch(lines[0].strip())
    if start is None or start.group(1).upper().startswith("SIP/"):
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if headers and headers[-1][0] in _COPIED:  # folded continuation of a kept one
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}")
            continue
        raw, sep, value = line.partition(":")
        if not sep or _TOKEN.fullmatch(raw.strip(" \t")) is None:
            continue
        name = canonical_name(raw.strip(" \t"))
        seen = {n for n, _ in headers}
        # Every Via; the first of the others (a duplicate From is one of the faults).
        if name in _COPIED and "\r" not in value and (name == "Via" or name not in seen):
            headers.append((name, value.strip(" \t")))
    if {name for name, _ in headers} != _COPIED:
        return None
    request = Request(start.group(1), "sip:invalid", headers)
    # Via and CSeq are copied as they came, even unreadable (a Via of another SIP
    # version is what a 505 answers): the sender matches its own bytes.
    return request if request.call_id else None


def answer_malformed(data: bytes, error: SipParseError) -> tuple[Request, Response] | None:
    """The answer to a refused request, with the request it answers (for its Via);
    None for an ACK (never answered) or when nothing can be answered."""
    request = salvage(data)
    if request is None or request.method == "ACK":
        return None
    return request, make_response(request, status_for(error), reason_for(error))


def unsupported_required(request: Request) -> list[str]:
    """The option tags of ``Require`` that we do not implement (RFC 3261 8.2.2.3)."""
    tags = [tag.strip() for value in request.get_all("Require") for tag in split_commas(value)]
    return [tag for tag in tags if tag and tag.lower() not in SUPPORTED_EXTENSIONS]


def bad_extension(request: Request, tags: list[str]) -> Response:
    response = make_response(request, 420)
    response.add("Unsupported", ", ".join(tags))
    return response
