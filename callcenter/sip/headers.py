"""Structured SIP header values: Via, name-addr (To/From/Contact/Route...), CSeq, numbers.

Rules this file owns:

* Every ``parse`` accepts the LWS the grammar allows (RFC 3261 section 25.1: ``SLASH``,
  ``SEMI``, ``EQUAL``, ``COLON`` and ``LAQUOT`` may be surrounded by whitespace; folding has
  already been replaced by a single SP by the parser) and raises ``SipParseError`` with a
  message naming the header and what is wrong.
* Parameter values are kept as on the wire (a quoted-string keeps its quotes), so ``str()``
  re-emits what was received, modulo whitespace.
* Numbers are length-checked before ``int()`` and range-checked after, so no parsed number is
  ever used unchecked (RFC 4475 section 3.1.2.4/3.1.2.5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from callcenter.sip.errors import SipParseError
from callcenter.sip.message import Headers
from callcenter.sip.uri import SipUri, uri_scheme

__all__ = [
    "CSEQ_MAX",
    "CSeq",
    "NameAddress",
    "Params",
    "Via",
    "find_param",
    "format_params",
    "parse_contacts",
    "parse_int_header",
    "parse_name_addresses",
    "parse_option_tags",
    "parse_params",
    "parse_vias",
    "quote_string",
    "contacts_from_values",
    "int_from_values",
    "name_addresses_from_values",
    "vias_from_values",
]

Params = tuple[tuple[str, str | None], ...]

CSEQ_MAX = 2**31 - 1
"""Largest CSeq sequence number (RFC 3261 section 8.1.1.5: less than 2**31)."""

# RFC 3261 section 25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" /
# "'" / "~").
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
_TOKEN_RE = re.compile(_TOKEN)
# gen-value = token / host / quoted-string; host adds ':' and '[]' for IPv6 references.
_GEN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+")
_QUOTED_RE = re.compile(r'"(?:[^"\\\r\n]|\\[^\r\n])*"', re.S)
_WS = " \t"

_VIA_RE = re.compile(
    rf"\s*({_TOKEN})\s*/\s*({_TOKEN})\s*/\s*({_TOKEN})\s+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-]+)"
    r"(?:\s*:\s*([0-9]+))?\s*(.*)",
    re.S,
)
_CSEQ_RE = re.compile(rf"\s*([0-9]+)\s+({_TOKEN})\s*")
_MAX_PORT = 65535


def is_token(text: str) -> bool:
    """Tell whether ``text`` is an RFC 3261 token (method names, option tags, param names)."""
    return _TOKEN_RE.fullmatch(text) is not None


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif in_quotes and ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == sep and not in_quotes:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if in_quotes:
        raise SipParseError(f"unterminated quoted string in {text!r}")
    parts.append("".join(current))
    return parts


def parse_params(text: str, *, where: str = "header") -> Params:
    """Parse ``*( SEMI generic-param )`` (RFC 3261 section 25.1).

    Args:
        text: The parameter list, empty or starting with ``;`` (surrounding LWS allowed).
        where: What is being parsed, for the error message.

    Returns:
        ``(name, value)`` pairs in order; ``value`` is ``None`` for a flag and keeps the quotes
        of a quoted-string.

    Raises:
        SipParseError: An empty parameter (``;;``), a bad name or a bad value.
    """
    text = text.strip(_WS)
    if not text:
        return ()
    if not text.startswith(";"):
        raise SipParseError(f"unexpected {text!r} where {where} parameters should start")
    params: list[tuple[str, str | None]] = []
    for item in _split_outside_quotes(text[1:], ";"):
        name, eq, value = item.partition("=")
        name = name.strip(_WS)
        if not name:
            raise SipParseError(f"empty parameter in {where} parameters {text!r}")
        if not is_token(name):
            raise SipParseError(f"invalid parameter name {name!r} in {where}")
        if not eq:
            params.append((name, None))
            continue
        value = value.strip(_WS)
        if not value:
            raise SipParseError(f"parameter {name!r} has an empty value in {where}")
        if value.startswith('"'):
            if not _QUOTED_RE.fullmatch(value):
                raise SipParseError(f"malformed quoted value for parameter {name!r} in {where}")
        elif not _GEN_VALUE_RE.fullmatch(value):
            raise SipParseError(f"invalid value {value!r} for parameter {name!r} in {where}")
        params.append((name, value))
    return tuple(params)


def format_params(params: Params) -> str:
    """Serialize parameters as ``;name=value;flag``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def find_param(params: Params, name: str) -> tuple[bool, str | None]:
    """Return ``(present, value)`` for a parameter, comparing names case-insensitively."""
    key = name.lower()
    for k, v in params:
        if k.lower() == key:
            return True, v
    return False, None


def _set_params(params: Params, changes: dict[str, str | int | bool | None]) -> Params:
    # None/True set a flag, False removes, anything else sets name=str(value).
    out = list(params)
    for name, value in changes.items():
        key = name.lower()
        idx = next((i for i, (k, _) in enumerate(out) if k.lower() == key), None)
        if value is False:
            if idx is not None:
                del out[idx]
            continue
        item = (
            out[idx][0] if idx is not None else name,
            None if value in (None, True) else str(value),
        )
        if idx is None:
            out.append(item)
        else:
            out[idx] = item
    return tuple(out)


def quote_string(text: str) -> str:
    """Quote a display name or parameter value as an RFC 3261 quoted-string."""
    out = ['"']
    for ch in text:
        if ch in "\r\n":
            out.append(" ")  # cannot be represented, even as a quoted-pair
        elif ch in '"\\' or (ord(ch) < 0x20 and ch != "\t") or ord(ch) == 0x7F:
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _unquote_at(text: str, start: int) -> tuple[str, int]:
    # Parse the quoted-string starting at text[start] == '"'; return (content, index after).
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text):
                break
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise SipParseError(f"unterminated quoted string in {text!r}")


def _parse_port(text: str, where: str) -> int:
    if len(text) > 5:  # never int() an unbounded digit run
        raise SipParseError(f"invalid port {text[:20]!r} in {where}")
    port = int(text)
    if port > _MAX_PORT:
        raise SipParseError(f"port {port} out of range in {where}")
    return port


@dataclass(frozen=True, slots=True)
class Via:
    """One ``via-parm`` of a Via header (RFC 3261 section 20.42)."""

    protocol: str
    """``protocol-name/protocol-version``, normally ``"SIP/2.0"``."""
    transport: str
    """Transport token upper-cased: ``UDP``, ``TCP``, ``TLS``, ``SCTP``, ``WS``... ."""
    host: str
    """The sent-by host (bracketed for IPv6)."""
    port: int | None = None
    """The sent-by port, ``None`` when absent."""
    params: Params = ()
    """via-params in order (branch, received, rport, maddr, ttl, extensions)."""

    @classmethod
    def parse(cls, value: str) -> Via:
        """Parse a single via-parm (not a comma list: use ``parse_vias``).

        Raises:
            SipParseError: The value does not match ``sent-protocol LWS sent-by *(;param)``.
        """
        m = _VIA_RE.fullmatch(value)
        if m is None:
            raise SipParseError(f"malformed Via {value.strip()!r}")
        name, version, transport, host, port_text, rest = m.groups()
        port = _parse_port(port_text, f"Via {value.strip()!r}") if port_text else None
        params = parse_params(rest, where="Via")
        return cls(f"{name.upper()}/{version}", transport.upper(), host, port, params)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def param(self, name: str) -> str | None:
        """Return a parameter value (``None`` if absent or a flag)."""
        return find_param(self.params, name)[1]

    @property
    def branch(self) -> str | None:
        """The branch parameter (RFC 3261 section 8.1.1.7), ``None`` for RFC 2543 peers."""
        return self.param("branch")

    @property
    def received(self) -> str | None:
        """The received parameter (RFC 3261 section 18.2.1)."""
        return self.param("received")

    @property
    def maddr(self) -> str | None:
        """The maddr parameter (RFC 3261 section 18.2.2)."""
        return self.param("maddr")

    @property
    def rport(self) -> int | Literal[True] | None:
        """RFC 3581 rport: ``None`` absent, ``True`` present without value, else the port."""
        present, value = find_param(self.params, "rport")
        if not present:
            return None
        if value is None:
            return True
        if not value.isascii() or not value.isdigit() or len(value) > 5 or int(value) > _MAX_PORT:
            raise SipParseError(f"invalid rport value {value!r}")
        return int(value)

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """``(host, port)`` of sent-by."""
        return self.host, self.port

    def with_params(self, **changes: str | int | bool | None) -> Via:
        """Return a copy with parameters changed.

        ``None``/``True`` set a flag (``rport=True`` → ``;rport``), ``False`` removes the
        parameter, any other value sets ``name=value``; new parameters go last.
        """
        return replace(self, params=_set_params(self.params, dict(changes)))


def parse_vias(headers: Headers) -> list[Via]:
    """Parse every Via value, top-most first (comma lists and repeated lines).

    Raises:
        SipParseError: One element is malformed, or a comma list has an empty element.
    """
    return vias_from_values(headers.get_all("Via"))


def vias_from_values(lines: list[str]) -> list[Via]:
    """``parse_vias`` for the values of the Via lines, already looked up."""
    vias: list[Via] = []
    for line in lines:
        elements = _split_outside_quotes(line, ",")
        for element in elements:
            if not element.strip(_WS):
                raise SipParseError(f"empty element in Via {line.strip()!r}")
            vias.append(Via.parse(element))
    return vias


@dataclass(frozen=True, slots=True)
class NameAddress:
    """``name-addr`` or ``addr-spec`` with header parameters (RFC 3261 section 20.10).

    Used for To, From, Contact, Route, Record-Route, Refer-To, Reply-To, P-Asserted-Identity.
    """

    display_name: str | None
    """The display name, unquoted and unescaped; ``None`` when absent."""
    uri: str
    """The URI as on the wire, without the angle brackets (``"*"`` for a wildcard Contact)."""
    params: Params = ()
    """Header parameters (tag, expires, q, ...) in order, values as on the wire."""

    @classmethod
    def parse(cls, value: str) -> NameAddress:
        """Parse one name-addr/addr-spec followed by parameters.

        sip/sips URIs are fully checked with ``SipUri.parse``; other schemes only need to look
        like an absolute URI (RFC 4475 section 3.3.4: they must not crash the parser).

        Raises:
            SipParseError: Unbalanced quotes or brackets, an unquoted display name that is not
                a run of tokens, whitespace inside ``<...>``, or bad parameters.
        """
        text = value.strip(_WS)
        if not text:
            raise SipParseError("empty name-addr")
        display: str | None = None
        rest: str
        if text.startswith('"'):
            display, end = _unquote_at(text, 0)
            rest = text[end:].lstrip(_WS)
            if not rest.startswith("<"):
                raise SipParseError(f"quoted display name not followed by <URI> in {text!r}")
        else:
            lt = text.find("<")
            if lt >= 0:
                words = text[:lt].split()
                for word in words:
                    if not is_token(word):
                        raise SipParseError(
                            f"display name {text[:lt].strip()!r} must be quoted "
                            "(RFC 3261 section 25.1)"
                        )
                display = " ".join(words) if words else None
                rest = text[lt:]
            else:
                rest = text
        if rest.startswith("<"):
            gt = rest.find(">")
            if gt < 0:
                raise SipParseError(f"missing '>' in {text!r}")
            uri = rest[1:gt]
            if any(ch.isspace() for ch in uri):
                raise SipParseError(f"whitespace inside <{uri}>")
            param_text = rest[gt + 1 :]
        else:
            # addr-spec without brackets: ';' starts header parameters, and a URI holding
            # ',', '?' or ';' of its own MUST be bracketed (RFC 3261 section 20.10).
            uri, semi, param_text = rest.partition(";")
            uri = uri.strip(_WS)
            param_text = semi + param_text
            if "?" in uri or "," in uri:
                raise SipParseError(
                    f"URI {uri!r} with '?' or ',' must be enclosed in <> (RFC 3261 section 20.10)"
                )
            if any(ch.isspace() for ch in uri) or ">" in uri:
                raise SipParseError(f"malformed addr-spec {uri!r}")
        _check_uri(uri)
        return cls(display, uri, parse_params(param_text, where=f"<{uri}>"))

    def __str__(self) -> str:
        if self.uri == "*":
            return "*" + format_params(self.params)
        display = f"{quote_string(self.display_name)} " if self.display_name is not None else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"

    def param(self, name: str) -> str | None:
        """Return a header parameter value (``None`` if absent or a flag)."""
        return find_param(self.params, name)[1]

    @property
    def tag(self) -> str | None:
        """The tag parameter (RFC 3261 section 19.3), ``None`` when absent."""
        return self.param("tag")

    @property
    def is_wildcard(self) -> bool:
        """``Contact: *`` (RFC 3261 section 10.2.2)."""
        return self.uri == "*"

    def with_tag(self, tag: str) -> NameAddress:
        """Return a copy with the tag parameter set."""
        return self.with_params(tag=tag)

    def with_params(self, **changes: str | int | bool | None) -> NameAddress:
        """Return a copy with header parameters changed (see ``Via.with_params``)."""
        return replace(self, params=_set_params(self.params, dict(changes)))

    def sip_uri(self) -> SipUri:
        """Parse the URI as a SIP URI.

        Raises:
            UnsupportedUriSchemeError: Not a sip/sips URI.
            SipParseError: Malformed.
        """
        return SipUri.parse(self.uri)


def _check_uri(uri: str) -> None:
    scheme = uri_scheme(uri)
    if scheme is None or len(uri) == len(scheme) + 1:
        raise SipParseError(f"{uri!r} is not an absolute URI")
    if scheme in ("sip", "sips"):
        SipUri.parse(uri)
    elif any(ch in '<>"' or ord(ch) < 0x21 or ord(ch) == 0x7F for ch in uri):
        raise SipParseError(f"invalid character in URI {uri!r}")


def parse_name_addresses(headers: Headers, name: str) -> list[NameAddress]:
    """Parse every element of a comma-list header of name-addrs (Route, Record-Route...).

    Raises:
        SipParseError: One element is malformed.
    """
    return name_addresses_from_values(headers.get_all(name), name)


def name_addresses_from_values(lines: list[str], name: str) -> list[NameAddress]:
    """``parse_name_addresses`` for header values already looked up."""
    out: list[NameAddress] = []
    for line in lines:
        for element in _split_list(line, name):
            out.append(NameAddress.parse(element))
    return out


def _split_list(line: str, name: str) -> list[str]:
    # Top-level commas split, except inside quotes and <...> (RFC 3261 section 7.3.1).
    parts: list[str] = []
    current: list[str] = []
    in_quotes = escaped = in_angle = False
    for ch in line:
        if escaped:
            escaped = False
        elif in_quotes:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                in_quotes = False
        elif ch == '"':
            in_quotes = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "," and not in_angle:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    if in_quotes:
        raise SipParseError(f"unterminated quoted string in {name} {line.strip()!r}")
    if any(not p.strip(_WS) for p in parts) and len(parts) > 1:
        raise SipParseError(f"empty element in {name} {line.strip()!r}")
    return [p for p in parts if p.strip(_WS)]


def parse_contacts(headers: Headers) -> list[NameAddress]:
    """Parse every Contact value; ``Contact: *`` gives one wildcard entry (``is_wildcard``).

    Raises:
        SipParseError: A malformed contact, or ``*`` mixed with other contacts (RFC 3261
            section 10.3 step 6).
    """
    return contacts_from_values(headers.get_all("Contact"))


def contacts_from_values(lines: list[str]) -> list[NameAddress]:
    """``parse_contacts`` for the values of the Contact lines, already looked up."""
    contacts: list[NameAddress] = []
    wildcard = False
    for line in lines:
        for element in _split_list(line, "Contact"):
            head = element.strip(_WS)
            if head == "*" or head.startswith("*;") or head.startswith("* "):
                wildcard = True
                contacts.append(NameAddress(None, "*", parse_params(head[1:], where="Contact")))
            else:
                contacts.append(NameAddress.parse(element))
    if wildcard and len(contacts) > 1:
        raise SipParseError("Contact '*' mixed with other contacts (RFC 3261 section 10.3)")
    return contacts


@dataclass(frozen=True, slots=True)
class CSeq:
    """The CSeq header (RFC 3261 section 20.16)."""

    number: int
    """Sequence number, 0 .. 2**31-1 (RFC 3261 section 8.1.1.5)."""
    method: str
    """The method token (case-sensitive)."""

    @classmethod
    def parse(cls, value: str) -> CSeq:
        """Parse ``1*DIGIT LWS Method``.

        Raises:
            SipParseError: Malformed, or the number is out of range.
        """
        m = _CSEQ_RE.fullmatch(value)
        if m is None:
            raise SipParseError(f"malformed CSeq {value.strip()!r}")
        digits, method = m.groups()
        stripped = digits.lstrip("0") or "0"
        if len(stripped) > 10 or int(stripped) > CSEQ_MAX:
            raise SipParseError(
                f"CSeq number {digits} is out of range (0 .. 2**31-1, RFC 3261 section 8.1.1.5)"
            )
        return cls(int(stripped), method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_int_header(
    headers: Headers,
    name: str,
    *,
    minimum: int = 0,
    maximum: int = 2**32 - 1,
    allow_trailing: bool = False,
) -> int | None:
    """Parse a single-valued numeric header (Max-Forwards, Expires, Min-Expires, Retry-After...).

    Args:
        headers: The message headers.
        name: The header name.
        minimum: Smallest accepted value.
        maximum: Largest accepted value (delta-seconds: 2**32-1, RFC 3261 section 20.19;
            Max-Forwards: 255, section 20.22).
        allow_trailing: Accept a comment or parameters after the number (Retry-After,
            RFC 3261 section 20.33).

    Returns:
        The value of the first line, or ``None`` when the header is absent.

    Raises:
        SipParseError: Not a number, out of range, or repeated with different values.
    """
    return int_from_values(
        headers.get_all(name),
        name,
        minimum=minimum,
        maximum=maximum,
        allow_trailing=allow_trailing,
    )


def int_from_values(
    values: list[str],
    name: str,
    *,
    minimum: int = 0,
    maximum: int = 2**32 - 1,
    allow_trailing: bool = False,
) -> int | None:
    """``parse_int_header`` for header values already looked up."""
    if not values:
        return None
    if len({v.strip() for v in values}) > 1:
        raise SipParseError(f"{name} header repeated with different values")
    text = values[0].strip()
    digits = text
    if allow_trailing:
        m = re.match(r"[0-9]+", text)
        digits = m.group(0) if m else ""
        tail = text[len(digits) :]
        if tail and tail[0] not in " \t(;":
            raise SipParseError(f"invalid {name} value {text!r}")
    if not digits or not digits.isascii() or not digits.isdigit():
        raise SipParseError(f"invalid {name} value {text!r}")
    stripped = digits.lstrip("0") or "0"
    if len(stripped) > len(str(maximum)) or not minimum <= int(stripped) <= maximum:
        raise SipParseError(f"{name} {digits} is out of range ({minimum} .. {maximum})")
    return int(stripped)


def parse_option_tags(headers: Headers, name: str) -> list[str]:
    """Return the option tags of Require/Supported/Proxy-Require/Unsupported (may be empty).

    Raises:
        SipParseError: An element is not a token.
    """
    tags: list[str] = []
    for line in headers.get_all(name):
        for element in line.split(","):
            tag = element.strip(_WS)
            if not tag:
                continue
            if not is_token(tag):
                raise SipParseError(f"invalid option tag {tag!r} in {name}")
            tags.append(tag)
    return tags
