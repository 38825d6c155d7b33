"""SIP message parser: datagram (UDP) and stream (TCP) framing, start line, header section.

Rules this file owns:

* Rule 1 — framing. Over UDP one datagram is one message: without Content-Length the body is
  the rest of the datagram, octets beyond Content-Length are ignored, a Content-Length larger
  than what arrived is a 400 (RFC 3261 section 18.3). Over a stream Content-Length is
  mandatory and a framing error breaks the connection (RFC 3261 section 18.3, RFC 4475
  section 3.1.2.3 and 3.3.9).
* Rule 2 — liberal where the RFC is (RFC 3261 section 7.3.1 and 7.5, RFC 4475 section 3.1.1):
  leading CRLFs, any case and compact header names, whitespace before the colon, folding,
  empty values, unknown headers, UTF-8 reason phrases. Also tolerated on purpose (RFC 4475
  section 3.1.2 says "may"): extra SP between request-line elements and after the version
  (lwsstart, trws), URI headers in the Request-URI (escruri; kept in the URI, never applied),
  a Date in a non-GMT zone (baddate; the value is never used), a datagram whose header
  section is not closed by an empty line (baddn: the body is then empty), bare-LF line
  endings, and a Latin-1 header section (decoded as such when it is not valid UTF-8).
* Rule 3 — the returned message is usable: exactly one parseable Call-ID, From, To and CSeq,
  at least one Via, and every Via/Contact/Route/Record-Route, Max-Forwards, Expires,
  Content-Type and Retry-After parses; otherwise a ``LocalSipError`` is raised whose
  ``partial`` holds the request as far as it went (``None`` for responses: they are dropped,
  never answered, RFC 3261 section 18.1.2).

Nothing here raises anything but ``SipError`` subclasses, whatever the input
(``tests/sip/test_fuzz_parser.py``).
"""

from __future__ import annotations

import re

from callcenter.sip.errors import (
    LocalSipError,
    SipParseError,
    VersionNotSupportedError,
)
from callcenter.sip.headers import (
    CSeq,
    NameAddress,
    contacts_from_values,
    int_from_values,
    is_token,
    name_addresses_from_values,
    vias_from_values,
)
from callcenter.sip.message import Headers, SipRequest, SipResponse, canonical_name
from callcenter.sip.uri import SipUri, uri_scheme

__all__ = [
    "MAX_STREAM_BODY",
    "MAX_STREAM_HEADER",
    "StreamParser",
    "is_keepalive",
    "parse_message",
]

MAX_STREAM_HEADER = 65536
"""Largest header section accepted on a stream before the connection is declared broken."""
MAX_STREAM_BODY = 1 << 20
"""Largest Content-Length accepted on a stream (a UDP body is bounded by the datagram)."""

_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_MEDIA_TYPE_RE = re.compile(
    r"\s*[A-Za-z0-9\-.!%*_+`'~]+\s*/\s*[A-Za-z0-9\-.!%*_+`'~]+\s*(;.*)?", re.S
)
_HEADER_END_RE = re.compile(rb"\r\n\r\n|\n\n")
_LINE_SPLIT_RE = re.compile(r"\r?\n")
_WS = " \t"

# Headers that RFC 3261 section 7.3.1 does not allow as comma lists or repeated lines; a second
# line with a different value is a 400 (RFC 4475 section 3.3.8).
_SINGLE_VALUED = ("Call-ID", "From", "To", "CSeq", "Max-Forwards", "Content-Type", "Expires")
_MANDATORY = ("Via", "Call-ID", "From", "To", "CSeq")


def is_keepalive(data: bytes) -> bool:
    """Tell whether a datagram/chunk is only CRLFs (RFC 5626 section 3.5.1 ping or pong)."""
    return bool(data) and not data.strip(b"\r\n")


def _strip_leading_crlf(data: bytes) -> bytes:
    # RFC 3261 section 7.5: implementations SHOULD ignore CRLFs preceding the start line.
    return data.lstrip(b"\r\n")


def _decode_head(head: bytes) -> str:
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError:
        # RFC 3261 requires UTF-8, but a Latin-1 display name from an old PBX should not cost
        # a call: every byte maps to one character and the ASCII grammar is unaffected.
        return head.decode("latin-1")


def _parse_header_lines(lines: list[str]) -> tuple[Headers, SipParseError | None]:
    """Unfold and split header lines; keep going after an error so a partial can be built."""
    items: list[tuple[str, str]] = []
    error: SipParseError | None = None
    for line in lines:
        if line[:1] in (" ", "\t"):
            # RFC 3261 section 7.3.1: a continuation line (folding) is the same as one SP.
            if not items:
                error = error or SipParseError("continuation line before any header")
                continue
            name, value = items[-1]
            items[-1] = (name, (value.rstrip(_WS) + " " + line.strip(_WS)).strip(_WS))
            continue
        if not line.strip(_WS):
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(_WS)
        if not colon:
            error = error or SipParseError(f"header line without a colon: {line[:60]!r}")
            continue
        if not is_token(name):
            error = error or SipParseError(f"invalid header name {name[:60]!r}")
            continue
        items.append((name, value.strip(_WS)))
    return Headers(items), error


def _content_length(headers: Headers) -> int | None:
    values = headers.get_all("Content-Length")
    if not values:
        return None
    numbers: list[int] = []
    for raw in values:
        text = raw.strip(_WS)
        if not text or not text.isascii() or not text.isdigit():
            raise SipParseError(f"invalid Content-Length {text!r}")
        stripped = text.lstrip("0") or "0"
        if len(stripped) > 10:
            raise SipParseError(f"Content-Length {text[:20]} is too large")
        numbers.append(int(stripped))
    if len(set(numbers)) > 1:
        listed = ", ".join(str(n) for n in numbers)
        raise SipParseError(f"conflicting Content-Length values {listed} (RFC 3261 section 18.3)")
    return numbers[0]


def _check_structure(headers: Headers, *, is_request: bool) -> None:
    """Rule 3: the headers every transaction and dialog rule relies on are present and sane."""
    # One pass to index values by canonical name: Headers lookups are linear scans, and this
    # function needs a dozen of them.
    index: dict[str, list[str]] = {}
    for name, value in headers:
        index.setdefault(canonical_name(name).lower(), []).append(value)

    def values(name: str) -> list[str]:
        return index.get(name.lower(), [])

    missing = [name for name in _MANDATORY if name.lower() not in index]
    if missing:
        raise SipParseError(
            f"missing mandatory header(s): {', '.join(missing)} (RFC 3261 section 8.1.1)"
        )
    for name in _SINGLE_VALUED:
        found = values(name)
        if len(found) > 1 and len({v.strip(_WS) for v in found}) > 1:
            raise SipParseError(f"{name} header repeated with different values")
    CSeq.parse(values("CSeq")[0])
    call_id = values("Call-ID")[0].strip(_WS)
    if not call_id or any(ch.isspace() for ch in call_id):
        raise SipParseError(f"invalid Call-ID {call_id!r}")
    for name in ("From", "To"):
        try:
            NameAddress.parse(values(name)[0])
        except SipParseError as exc:
            raise SipParseError(f"invalid {name} header: {exc}") from None
    vias_from_values(values("Via"))
    contacts_from_values(values("Contact"))
    name_addresses_from_values(values("Route"), "Route")
    name_addresses_from_values(values("Record-Route"), "Record-Route")
    int_from_values(values("Max-Forwards"), "Max-Forwards", maximum=255)
    int_from_values(values("Expires"), "Expires")
    if not is_request:
        int_from_values(values("Retry-After"), "Retry-After", allow_trailing=True)
    content_type = values("Content-Type")
    if content_type and not _MEDIA_TYPE_RE.fullmatch(content_type[0]):
        raise SipParseError(f"invalid Content-Type {content_type[0]!r}")


def _split_message(data: bytes) -> tuple[bytes, bytes, bool]:
    # Return (head, rest, closed): the header section, what follows the empty line, and
    # whether an empty line closed the header section at all.
    m = _HEADER_END_RE.search(data)
    if m is None:
        return data, b"", False
    return data[: m.start()], data[m.end() :], True


def _parse_response(
    start: str, headers: Headers, rest: bytes, head_error: SipParseError | None
) -> SipResponse:
    parts = start.split(" ", 2)
    version = parts[0]
    if version.upper() != "SIP/2.0":
        raise SipParseError(f"unsupported SIP version {version!r} in status line")
    code_text = parts[1] if len(parts) > 1 else ""
    if len(code_text) != 3 or not code_text.isascii() or not code_text.isdigit():
        raise SipParseError(f"status code {code_text[:20]!r} is not a 3-digit number")
    code = int(code_text)
    if not 100 <= code <= 699:
        raise SipParseError(f"status code {code} is outside 100..699 (RFC 3261 section 7.2)")
    if head_error is not None:
        raise head_error
    length = _content_length(headers)
    body = _frame_body(rest, length)
    _check_structure(headers, is_request=False)
    return SipResponse(code, parts[2] if len(parts) > 2 else "", headers, body, "SIP/2.0")


def _frame_body(rest: bytes, length: int | None) -> bytes:
    # RFC 3261 section 18.3: over UDP a missing Content-Length means "the rest of the datagram";
    # extra octets are discarded (RFC 4475 section 3.1.1.8), missing ones are an error.
    if length is None:
        return rest
    if length > len(rest):
        raise SipParseError(f"Content-Length {length} exceeds the {len(rest)} body bytes received")
    return rest[:length]


def _parse_request(
    start: str, headers: Headers, rest: bytes, head_error: SipParseError | None
) -> SipRequest:
    tokens = start.split()
    start_error: LocalSipError | None = None
    if len(tokens) < 3 or not is_token(tokens[0]):
        # Not even a method to answer: nothing useful can be sent back.
        raise SipParseError(f"malformed request line {start[:80]!r}")
    method, version = tokens[0], tokens[-1]
    uri = " ".join(tokens[1:-1])
    if len(tokens) > 3:
        # RFC 4475 section 3.1.2.8: whitespace is not allowed inside the Request-URI.
        start_error = SipParseError(f"whitespace inside the Request-URI {uri[:80]!r}")
    elif uri.startswith("<"):
        start_error = SipParseError(
            f"Request-URI {uri[:80]!r} must not be enclosed in <> (RFC 3261 section 25.1)"
        )
    elif uri_scheme(uri) is None:
        start_error = SipParseError(f"Request-URI {uri[:80]!r} has no scheme")
    if version.upper() == "SIP/2.0":
        version = "SIP/2.0"
    elif _VERSION_RE.fullmatch(version):
        # RFC 3261 section 8.2.1 (end): a different version is answered 505.
        start_error = start_error or VersionNotSupportedError(
            f"SIP version {version!r} is not supported (only SIP/2.0)"
        )
    else:
        start_error = start_error or SipParseError(f"malformed SIP-Version {version[:20]!r}")
    partial = SipRequest(method, uri, headers, b"", version)
    try:
        if start_error is not None:
            raise start_error
        if head_error is not None:
            raise head_error
        length = _content_length(headers)
        partial.body = _frame_body(rest, length)
        if uri_scheme(uri) in ("sip", "sips"):
            try:
                SipUri.parse(uri)
            except SipParseError as exc:
                raise SipParseError(f"invalid Request-URI: {exc}") from None
        _check_structure(headers, is_request=True)
    except LocalSipError as exc:
        exc.partial = partial
        raise
    return partial


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one SIP message from one UDP datagram (or one frame cut by ``StreamParser``).

    Args:
        data: The datagram, byte for byte.

    Returns:
        The request or response; ``bytes()`` of it gives ``data`` back when the message had no
        folding or unusual whitespace.

    Raises:
        LocalSipError: A subclass naming what is wrong; ``partial`` is set for requests whose
            start line could be split, so a 400/505 can be answered.
    """
    data = _strip_leading_crlf(data)
    if not data:
        raise SipParseError("empty message")
    head, rest, _closed = _split_message(data)
    text = _decode_head(head)
    lines = _LINE_SPLIT_RE.split(text)
    start = lines[0]
    headers, head_error = _parse_header_lines(lines[1:])
    if start.startswith("SIP/") or start.startswith("sip/"):
        return _parse_response(start, headers, rest, head_error)
    return _parse_request(start, headers, rest, head_error)


class StreamParser:
    """Cut a byte stream (TCP/TLS) into SIP messages (RFC 3261 section 18.3).

    ``feed`` returns, in order, every complete message and every per-message error; a framing
    error (bad or missing Content-Length, oversized header section or body) is returned once
    and then ``broken`` becomes true: the transport must close the connection, since message
    boundaries are lost (RFC 4475 section 3.1.2.3 and 3.3.9).
    """

    def __init__(
        self, *, max_header: int = MAX_STREAM_HEADER, max_body: int = MAX_STREAM_BODY
    ) -> None:
        self._buffer = bytearray()
        self._max_header = max_header
        self._max_body = max_body
        self.broken = False
        """True once a framing error has been reported; later data is ignored."""
        self.keepalive_pings = 0
        """Number of RFC 5626 double-CRLF pings seen between messages (each wants a CRLF pong)."""
        self._crlf_run = b""

    def feed(self, data: bytes) -> list[SipRequest | SipResponse | LocalSipError]:
        """Add received bytes; return the messages (or errors) they complete."""
        out: list[SipRequest | SipResponse | LocalSipError] = []
        if self.broken:
            return out
        self._buffer += data
        while self._buffer:
            self._skip_crlfs()
            if not self._buffer:
                break
            m = _HEADER_END_RE.search(self._buffer)
            if m is None:
                if len(self._buffer) > self._max_header:
                    out.append(self._break(f"header section exceeds {self._max_header} bytes"))
                break
            if m.start() > self._max_header:
                out.append(self._break(f"header section exceeds {self._max_header} bytes"))
                break
            head = bytes(self._buffer[: m.start()])
            lines = _LINE_SPLIT_RE.split(_decode_head(head))
            headers, _ = _parse_header_lines(lines[1:])
            try:
                length = _content_length(headers)
            except SipParseError as exc:
                out.append(self._break(str(exc)))
                break
            if length is None:
                out.append(
                    self._break("missing Content-Length on a stream (RFC 3261 section 18.3)")
                )
                break
            if length > self._max_body:
                out.append(self._break(f"Content-Length {length} exceeds {self._max_body}"))
                break
            total = m.end() + length
            if len(self._buffer) < total:
                break
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            try:
                out.append(parse_message(frame))
            except LocalSipError as exc:
                out.append(exc)
        return out

    def _skip_crlfs(self) -> None:
        # RFC 5626 section 3.5.1: a ping is CRLFCRLF between messages; it may arrive split
        # across reads, so the CRLF run is carried over until a message byte shows up.
        n = 0
        while n < len(self._buffer) and self._buffer[n] in (0x0D, 0x0A):
            n += 1
        self._crlf_run += bytes(self._buffer[:n])
        del self._buffer[:n]
        while (i := self._crlf_run.find(b"\r\n\r\n")) >= 0:
            self.keepalive_pings += 1
            self._crlf_run = self._crlf_run[i + 4 :]
        if self._buffer:
            self._crlf_run = b""

    def _break(self, message: str) -> SipParseError:
        self.broken = True
        self._buffer.clear()
        return SipParseError(message)
