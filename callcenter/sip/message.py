"""SIP messages (RFC 3261 section 7): requests, responses and their header list.

This module owns the *container*: an ordered, case-insensitive header multi-map that knows the
compact forms (RFC 3261 section 7.3.3), and the serialization of requests and responses. The
wire grammar (framing, folding, structured header values) lives in ``parser.py`` and
``headers.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

# RFC 3261 section 7.3.3 and the IANA SIP parameters registry: compact form -> full name.
COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authentication-Info",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Language",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "MIME-Version",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Record-Route",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
        "Event",
        "Allow-Events",
        "Session-Expires",
        "Min-SE",
        "Refer-To",
        "Referred-By",
        "Reason",
        "P-Asserted-Identity",
        "Privacy",
    )
} | {full.lower(): full for full in COMPACT_FORMS.values()}


def canonical_name(name: str) -> str:
    """Return the canonical spelling of a header name, expanding compact forms.

    Unknown headers keep the spelling they arrived with (names are case-insensitive, RFC 3261
    section 7.3.1), so comparisons must go through this function or ``name.lower()``.
    """
    lowered = name.lower()
    if len(lowered) == 1 and lowered in COMPACT_FORMS:
        return COMPACT_FORMS[lowered]
    return _CANONICAL.get(lowered, name)


@functools.lru_cache(maxsize=4096)
def _key(name: str) -> str:
    # Memoised: a handful of names recur in every message (bounded for hostile input).
    return canonical_name(name).lower()


def split_comma_values(value: str) -> list[str]:
    """Split a header value on top-level commas (RFC 3261 section 7.3.1).

    Commas inside double quotes, angle brackets or after a backslash escape inside quotes do not
    split. Empty elements are dropped; elements are stripped of surrounding whitespace.
    """
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    in_angle = False
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
            continue
        if in_quotes:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                in_quotes = False
            current.append(ch)
            continue
        if ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


class Headers:
    """An ordered multi-map of SIP headers, case-insensitive and compact-form aware.

    Values are stored unfolded, exactly as received otherwise. ``get_all`` returns one entry per
    header line; ``get_list`` also splits comma-separated values, which is only correct for
    headers whose grammar is a comma list (Via, Contact, Route, Allow, Supported, Require...).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        # Names are kept as received (compact forms included) so that a parsed message
        # serializes back byte for byte; every lookup compares canonical, lower-cased names.
        self._items: list[tuple[str, str]] = list(items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = _key(name)
        return any(_key(n) == key for n, _ in self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    def copy(self) -> Headers:
        """Return an independent copy."""
        new = Headers()
        new._items = list(self._items)
        return new

    def get(self, name: str, default: str | None = None) -> str | None:
        """Return the value of the first header line with this name."""
        key = _key(name)
        for n, v in self._items:
            if _key(n) == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Return the values of every header line with this name, in order."""
        key = _key(name)
        return [v for n, v in self._items if _key(n) == key]

    def get_list(self, name: str) -> list[str]:
        """Return every comma-separated element of every header line with this name."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(split_comma_values(value))
        return out

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        self._items.append((canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        """Insert a header line before every other (e.g. a new top Via)."""
        self._items.insert(0, (canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every line with this name by one line, at the position of the first."""
        key = _key(name)
        for i, (n, _) in enumerate(self._items):
            if _key(n) == key:
                self._items[i] = (canonical_name(name), value)
                self._items = [
                    item for j, item in enumerate(self._items) if j <= i or _key(item[0]) != key
                ]
                return
        self._items.append((canonical_name(name), value))

    def remove(self, name: str) -> None:
        """Remove every line with this name."""
        key = _key(name)
        self._items = [(n, v) for n, v in self._items if _key(n) != key]


def _serialize_headers(headers: Headers, body: bytes) -> bytes:
    # Content-Length is always written from the body we actually send (RFC 3261 section 20.14),
    # in place if the message had one, else last.
    lines: list[str] = []
    has_length = False
    for name, value in headers:
        if _key(name) == "content-length":
            if has_length:
                continue
            has_length = True
            value = str(len(body))
        # An empty value is written without the space (baresip's "Supported:" round-trips).
        lines.append(f"{name}: {value}" if value else f"{name}:")
    if not has_length:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


@dataclass(slots=True)
class SipRequest:
    """A SIP request (RFC 3261 section 7.1)."""

    method: str
    """The method token, case-sensitive (RFC 3261 section 7.1)."""
    uri: str
    """The Request-URI exactly as on the wire."""
    headers: Headers = field(default_factory=Headers)
    """Header lines in order."""
    body: bytes = b""
    """The message body (framed by Content-Length)."""
    version: str = "SIP/2.0"
    """The SIP-Version token of the request line."""

    def __bytes__(self) -> bytes:
        start = f"{self.method} {self.uri} {self.version}\r\n".encode()
        return start + _serialize_headers(self.headers, self.body)

    @property
    def call_id(self) -> str:
        """The Call-ID value, or an empty string when absent."""
        return (self.headers.get("Call-ID") or "").strip()


@dataclass(slots=True)
class SipResponse:
    """A SIP response (RFC 3261 section 7.2)."""

    status_code: int
    """The three-digit status code."""
    reason: str = ""
    """The reason phrase (may be empty)."""
    headers: Headers = field(default_factory=Headers)
    """Header lines in order."""
    body: bytes = b""
    """The message body (framed by Content-Length)."""
    version: str = "SIP/2.0"
    """The SIP-Version token of the status line."""

    def __bytes__(self) -> bytes:
        start = f"{self.version} {self.status_code} {self.reason}\r\n".encode()
        return start + _serialize_headers(self.headers, self.body)

    @property
    def call_id(self) -> str:
        """The Call-ID value, or an empty string when absent."""
        return (self.headers.get("Call-ID") or "").strip()


SipMessage = SipRequest | SipResponse

# RFC 3261 section 21: default reason phrases for the responses this service sends.
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "Version Not Supported",
    603: "Decline",
}


def reason_phrase(status_code: int) -> str:
    """Return the default reason phrase for a status code."""
    return REASON_PHRASES.get(status_code, "")
