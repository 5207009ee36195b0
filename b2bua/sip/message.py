"""SIP message model: an ordered header list plus body, with lazily parsed convenience views.

Headers are stored as ``(canonical name, raw value)`` pairs exactly as received, so relaying a
message does not reformat what the engine never looked at. Structured views (``from_``,
``vias``...) are parsed on first access and cached; every mutating method drops the cache.
"""

from __future__ import annotations

from collections.abc import Iterable

from b2bua.sip.errors import SipParseError
from b2bua.sip.headers import MULTI_VALUE, CSeq, NameAddr, Via, canonical_name, split_commas
from b2bua.sip.uri import SipUri

__all__ = [
    "REASON_PHRASES",
    "Request",
    "Response",
    "SipMessage",
    "SipParseError",
    "default_reason",
    "make_response",
]

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}

# Used for codes missing from REASON_PHRASES, keyed by status class.
_CLASS_PHRASES = {1: "Provisional", 2: "Success", 3: "Redirection", 4: "Client Error",
                  5: "Server Error", 6: "Global Failure"}


def _safe(value: str) -> str:
    """Refuse line breaks in header values set by code: they would let a value forge headers."""
    if "\r" in value or "\n" in value:
        raise ValueError("line break in SIP header value")
    return value


class SipMessage:
    """Headers and body shared by requests and responses.

    Mutate headers through the methods so cached views stay correct; code that edits
    ``headers`` directly must call :meth:`invalidate` afterwards. Cached views are shared
    objects: treat them as read-only and write changes back with :meth:`set`/:meth:`prepend`.
    """

    __slots__ = ("_contact", "_cseq", "_from", "_to", "_top_via", "_vias", "body", "headers")

    def __init__(self, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = [(canonical_name(n), _safe(v)) for n, v in headers]
        self.body = body
        self._clear()

    def _clear(self) -> None:
        self._cseq: CSeq | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._vias: list[Via] | None = None
        self._top_via: Via | None = None
        self._contact: SipUri | bool | None = False  # False: not parsed yet

    def invalidate(self) -> None:
        """Forget cached parsed views after direct edits of ``headers``."""
        self._clear()

    # -- generic header access -------------------------------------------------------------

    def first_raw(self, canon: str) -> str | None:
        """The first value of a header by its canonical name, as received: a presence
        check that costs one scan of the header list and nothing more."""
        for name, value in self.headers:
            if name == canon:
                return value
        return None

    def get(self, name: str) -> str | None:
        """First value of a header; for list headers, the first comma-separated element."""
        canon = canonical_name(name)
        for hname, value in self.headers:
            if hname == canon:
                if canon in MULTI_VALUE and "," in value:
                    parts = split_commas(value)
                    return parts[0] if parts else ""
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of a header in order, list headers split into their elements."""
        canon = canonical_name(name)
        if canon in MULTI_VALUE:
            out: list[str] = []
            for hname, value in self.headers:
                if hname == canon:
                    out.extend(split_commas(value))
            return out
        return [value for hname, value in self.headers if hname == canon]

    def has(self, name: str) -> bool:
        """Whether at least one header of this name is present."""
        canon = canonical_name(name)
        return any(hname == canon for hname, _ in self.headers)

    def set(self, name: str, value: str) -> None:
        """Replace every occurrence with one value at the position of the first, or append."""
        canon = canonical_name(name)
        out: list[tuple[str, str]] = []
        placed = False
        for entry in self.headers:
            if entry[0] == canon:
                if not placed:
                    out.append((canon, _safe(value)))
                    placed = True
            else:
                out.append(entry)
        if not placed:
            out.append((canon, _safe(value)))
        self.headers = out
        self._clear()

    def add(self, name: str, value: str) -> None:
        """Append a header line after all existing ones."""
        self.headers.append((canonical_name(name), _safe(value)))
        self._clear()

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first header of this name (top of the headers when absent), as
        needed for Via, Record-Route and Route push operations."""
        canon = canonical_name(name)
        index = 0
        for i, (hname, _) in enumerate(self.headers):
            if hname == canon:
                index = i
                break
        self.headers.insert(index, (canon, _safe(value)))
        self._clear()

    def remove(self, name: str) -> None:
        """Drop every occurrence of a header."""
        canon = canonical_name(name)
        self.headers = [entry for entry in self.headers if entry[0] != canon]
        self._clear()

    def remove_first(self, name: str) -> str | None:
        """Pop the first value (splitting a comma-joined list line); return it, or None."""
        canon = canonical_name(name)
        for i, (hname, value) in enumerate(self.headers):
            if hname != canon:
                continue
            self._clear()
            if canon in MULTI_VALUE and "," in value:
                parts = split_commas(value)
                if len(parts) > 1:
                    self.headers[i] = (canon, ", ".join(parts[1:]))
                    return parts[0]
            del self.headers[i]
            return value
        return None

    # -- parsed views ----------------------------------------------------------------------

    def _require(self, canon: str) -> str:
        value = self.first_raw(canon)
        if value is None:
            raise SipParseError(f"missing {canon}")
        return value

    @property
    def call_id(self) -> str:
        """Call-ID value; :class:`SipParseError` if absent."""
        return self._require("Call-ID")

    @property
    def cseq(self) -> CSeq:
        """Parsed CSeq."""
        if self._cseq is None:
            self._cseq = CSeq.parse(self._require("CSeq"))
        return self._cseq

    @property
    def from_(self) -> NameAddr:
        """Parsed From (trailing underscore because ``from`` is a keyword)."""
        if self._from is None:
            self._from = NameAddr.parse(self._require("From"))
        return self._from

    @property
    def to(self) -> NameAddr:
        """Parsed To."""
        if self._to is None:
            self._to = NameAddr.parse(self._require("To"))
        return self._to

    @property
    def contact_uri(self) -> SipUri | None:
        """The first Contact's URI, parsed once; None when there is none, it is ``*``, or
        it does not parse."""
        if self._contact is False:
            value = self.get("Contact")
            uri: SipUri | None = None
            if value and value.strip() != "*":
                try:
                    uri = NameAddr.parse(value).uri
                except SipParseError:
                    uri = None
            self._contact = uri
        return self._contact if isinstance(self._contact, SipUri) else None

    @property
    def vias(self) -> list[Via]:
        """Every Via entry, top first."""
        if self._vias is None:
            self._vias = [Via.parse(v) for v in self.get_all("Via")]
        return self._vias

    @property
    def top_via(self) -> Via:
        """The topmost Via, parsed without touching the others."""
        if self._top_via is None:
            if self._vias:
                self._top_via = self._vias[0]
            else:
                value = self.get("Via")
                if value is None:
                    raise SipParseError("missing Via")
                self._top_via = Via.parse(value)
        return self._top_via

    @property
    def content_length(self) -> int | None:
        """Declared Content-Length, or None when the header is absent."""
        return _parse_uint(self.first_raw("Content-Length"), "Content-Length")

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, or None when absent (RFC 3261 tolerates that from old peers)."""
        return _parse_uint(self.first_raw("Max-Forwards"), "Max-Forwards")

    # -- serialisation ---------------------------------------------------------------------

    def start_line(self) -> str:
        """Request-Line or Status-Line without the CRLF."""
        raise TypeError("a bare SipMessage has no start line: use Request or Response")

    def to_bytes(self) -> bytes:
        """Wire form; Content-Length is always rewritten to match ``body``."""
        length_line = f"Content-Length: {len(self.body)}\r\n"
        parts = [self.start_line(), "\r\n"]
        append = parts.append
        wrote_length = False
        for name, value in self.headers:
            if name == "Content-Length":
                if not wrote_length:
                    append(length_line)
                    wrote_length = True
                continue
            append(f"{name}: {value}\r\n")
        if not wrote_length:
            append(length_line)
        append("\r\n")
        # surrogateescape gives back the exact bytes the parser could not decode as UTF-8.
        return "".join(parts).encode("utf-8", "surrogateescape") + self.body


def _parse_uint(value: str | None, what: str) -> int | None:
    if value is None:
        return None
    value = value.strip(" \t")
    if not (value.isascii() and value.isdigit()) or len(value) > 10:
        raise SipParseError(f"bad {what}")
    return int(value)


class Request(SipMessage):
    """A SIP request; ``uri`` is the raw Request-URI, ``ruri`` its parsed form."""

    __slots__ = ("_ruri", "_uri", "method")

    def __init__(self, method: str, uri: str, headers: Iterable[tuple[str, str]] = (),
                 body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.method = method
        self._uri = uri
        self._ruri: SipUri | None = None

    @classmethod
    def _trusted(cls, method: str, uri: str, headers: list[tuple[str, str]], body: bytes,
                 cseq: CSeq | None = None) -> Request:
        """Build from parser output whose header names are already canonical."""
        self = cls.__new__(cls)
        self.headers = headers
        self.body = body
        self._clear()
        self._cseq = cseq
        self.method = method
        self._uri = uri
        self._ruri = None
        return self

    @property
    def uri(self) -> str:
        """Request-URI exactly as received or set."""
        return self._uri

    @uri.setter
    def uri(self, value: str) -> None:
        self._uri = value
        self._ruri = None

    @property
    def ruri(self) -> SipUri:
        """Parsed Request-URI; :class:`UnsupportedSchemeError` marks a 416 case."""
        if self._ruri is None:
            self._ruri = SipUri.parse(self._uri)
        return self._ruri

    def start_line(self) -> str:
        return f"{self.method} {self._uri} SIP/2.0"

    def copy(self) -> Request:
        """Independent header list and same body; the cheap basis for forwarding a request."""
        return Request._trusted(self.method, self._uri, list(self.headers), self.body)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri}>"


class Response(SipMessage):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str | None = None,
                 headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = default_reason(status) if reason is None else reason

    @classmethod
    def _trusted(cls, status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
                 cseq: CSeq | None = None) -> Response:
        """Build from parser output whose header names are already canonical."""
        self = cls.__new__(cls)
        self.headers = headers
        self.body = body
        self._clear()
        self._cseq = cseq
        self.status = status
        self.reason = reason
        return self

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def copy(self) -> Response:
        """Independent header list and same body."""
        return Response._trusted(self.status, self.reason, list(self.headers), self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def default_reason(status: int) -> str:
    """Reason phrase for a status code, falling back to a generic one for its class."""
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")


_RESPONSE_COPIED = frozenset({"Via", "From", "Call-ID", "CSeq"})


def make_response(request: Request, status: int, reason: str | None = None,
                  to_tag: str | None = None) -> Response:
    """Build a response to ``request`` per RFC 3261 8.2.6.

    Via (all, in order), From, Call-ID and CSeq are copied verbatim; To too, with
    ``;tag=to_tag`` appended when it has no tag yet. A 100 also echoes Timestamp (8.2.6.1).
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status code out of range: {status}")
    headers: list[tuple[str, str]] = []
    for name, value in request.headers:
        if name == "To":
            if to_tag is not None:
                try:
                    has_tag = NameAddr.parse(value).tag is not None
                except SipParseError:
                    has_tag = False
                if not has_tag:
                    value = f"{value};tag={to_tag}"
            headers.append((name, value))
        elif name in _RESPONSE_COPIED or (name == "Timestamp" and status == 100):
            headers.append((name, value))
    return Response._trusted(status, default_reason(status) if reason is None else reason,
                             headers, b"")

