"""SIP and SIPS URIs (RFC 3261 section 19.1 and the grammar of section 25.1).

``SipUri.parse`` checks every character class of the grammar, so a URI that parses can be
re-emitted safely with ``str()``. Escapes (``%HH``) are kept as received in every field; the
user part is unescaped exactly once on demand (``user_unescaped``, RFC 4475 section 3.1.1.3/
3.1.1.4: ``%00`` stays a NUL, it does not truncate the name). URI headers (``?Route=...``) are
parsed and kept but the SIP core never turns them into real headers (RFC 4475 section 3.1.2.11).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, replace
from urllib.parse import unquote

from callcenter.sip.errors import SipParseError, UnsupportedUriSchemeError

__all__ = ["SipUri", "uri_scheme"]

# RFC 3261 section 25.1 character classes.
_ALPHANUM = frozenset(string.ascii_letters + string.digits)
_UNRESERVED = _ALPHANUM | frozenset("-_.!~*'()")
_USER_CHARS = _UNRESERVED | frozenset("&=+$,;?/%")
_PASSWORD_CHARS = _UNRESERVED | frozenset("&=+$,%")
_PARAM_CHARS = _UNRESERVED | frozenset("[]/:&+$%")
_HEADER_CHARS = _UNRESERVED | frozenset("[]/?:+$%")

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
# hostname / IPv4address (RFC 3261 section 25.1). Underscores are tolerated: they appear in
# container and Windows host names in the wild and cannot be confused with a delimiter.
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]*[A-Za-z0-9_.])?")
_IPV6_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]")
_ESCAPE_RE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MAX_PORT = 65535


def uri_scheme(text: str) -> str | None:
    """Return the lower-cased scheme of an absolute URI, or ``None`` if there is none."""
    head, sep, _ = text.partition(":")
    if not sep or not _SCHEME_RE.fullmatch(head):
        return None
    return head.lower()


def _check_chars(text: str, allowed: frozenset[str], what: str, uri: str) -> None:
    for ch in text:
        if ch not in allowed:
            raise SipParseError(f"invalid character {ch!r} in the {what} of URI {uri!r}")
    if _ESCAPE_RE.search(text):
        raise SipParseError(f"bad %-escape in the {what} of URI {uri!r}")


def _parse_port(text: str, uri: str) -> int:
    # Never int() an unbounded digit string: length first (RFC 4475 section 3.1.2.4 spirit).
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        raise SipParseError(f"invalid port {text!r} in URI {uri!r}")
    port = int(text)
    if port > _MAX_PORT:
        raise SipParseError(f"port {port} out of range in URI {uri!r}")
    return port


def _split_host_port(hostport: str, uri: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipParseError(f"unterminated IPv6 reference in URI {uri!r}")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if not _IPV6_RE.fullmatch(host):
            raise SipParseError(f"invalid IPv6 reference {host!r} in URI {uri!r}")
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise SipParseError(f"junk {rest!r} after the host of URI {uri!r}")
        return host, _parse_port(rest[1:], uri)
    host, sep, port_text = hostport.partition(":")
    if not host or not _HOSTNAME_RE.fullmatch(host):
        raise SipParseError(f"invalid host {host!r} in URI {uri!r}")
    return host, (_parse_port(port_text, uri) if sep else None)


def _format_params(params: tuple[tuple[str, str | None], ...]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


@dataclass(frozen=True, slots=True)
class SipUri:
    """A parsed ``sip:`` or ``sips:`` URI (RFC 3261 section 19.1.1)."""

    scheme: str
    """``"sip"`` or ``"sips"`` (lower-cased; schemes are case-insensitive)."""
    user: str | None
    """The user part as on the wire (escapes kept), or ``None``."""
    password: str | None
    """The password part as on the wire, or ``None`` (its use is NOT RECOMMENDED)."""
    host: str
    """Host name, IPv4 address or bracketed IPv6 reference (``"[::1]"``)."""
    port: int | None = None
    """The port, or ``None`` when absent (default depends on transport, section 19.1.2)."""
    params: tuple[tuple[str, str | None], ...] = ()
    """URI parameters in order; ``None`` value for a flag such as ``;lr``."""
    headers: tuple[tuple[str, str], ...] = ()
    """URI headers (``?name=value&...``) as on the wire; never applied to messages."""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a SIP or SIPS URI.

        Raises:
            UnsupportedUriSchemeError: The scheme is well-formed but not sip/sips.
            SipParseError: The text is not a valid SIP URI.
        """
        scheme = uri_scheme(text)
        if scheme is None:
            raise SipParseError(f"URI {text!r} has no scheme")
        if scheme not in ("sip", "sips"):
            raise UnsupportedUriSchemeError(f"unsupported URI scheme {scheme!r}")
        rest = text[len(scheme) + 1 :]
        user: str | None = None
        password: str | None = None
        # '@' is not allowed anywhere but between userinfo and host (section 25.1: user,
        # password, params and headers all exclude it), so a second one is an error.
        if rest.count("@") > 1:
            raise SipParseError(f"more than one '@' in URI {text!r}")
        userinfo, at, hostpart = rest.rpartition("@")
        if at:
            user_text, colon, pw = userinfo.partition(":")
            if not user_text:
                raise SipParseError(f"empty user part in URI {text!r}")
            _check_chars(user_text, _USER_CHARS, "user part", text)
            user = user_text
            if colon:
                _check_chars(pw, _PASSWORD_CHARS, "password", text)
                password = pw
        hostpart, qmark, header_text = hostpart.partition("?")
        hostport, semi, param_text = hostpart.partition(";")
        host, port = _split_host_port(hostport, text)
        params: list[tuple[str, str | None]] = []
        if semi:
            for item in param_text.split(";"):
                name, eq, value = item.partition("=")
                if not name:
                    raise SipParseError(f"empty parameter in URI {text!r}")
                _check_chars(name, _PARAM_CHARS, "parameters", text)
                if eq:
                    if not value:
                        raise SipParseError(f"parameter {name!r} has an empty value in {text!r}")
                    _check_chars(value, _PARAM_CHARS, "parameters", text)
                    params.append((name, value))
                else:
                    params.append((name, None))
        headers: list[tuple[str, str]] = []
        if qmark:
            for item in header_text.split("&"):
                name, eq, value = item.partition("=")
                if not name or not eq:
                    raise SipParseError(f"malformed URI header {item!r} in {text!r}")
                _check_chars(name, _HEADER_CHARS, "headers", text)
                _check_chars(value, _HEADER_CHARS, "headers", text)
                headers.append((name, value))
        return cls(scheme, user, password, host, port, tuple(params), tuple(headers))

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(_format_params(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(out)

    @property
    def user_unescaped(self) -> str | None:
        """The user part with ``%HH`` escapes decoded once (a ``%00`` stays a NUL)."""
        if self.user is None:
            return None
        return unquote(self.user, errors="replace")

    def param(self, name: str) -> str | None:
        """Return a URI parameter value (names are case-insensitive), ``None`` if absent/flag."""
        key = name.lower()
        for k, v in self.params:
            if k.lower() == key:
                return v
        return None

    def has_param(self, name: str) -> bool:
        """Tell whether a URI parameter is present, with or without a value (``;lr``)."""
        key = name.lower()
        return any(k.lower() == key for k, _ in self.params)

    @property
    def transport(self) -> str:
        """The ``transport`` parameter lower-cased, ``"tls"`` for sips, else ``"udp"``."""
        value = self.param("transport")
        if value:
            return value.lower()
        return "tls" if self.scheme == "sips" else "udp"

    def with_params(self, **changes: str | None) -> SipUri:
        """Return a copy with parameters set (``None`` sets a flag), appended if absent."""
        params = list(self.params)
        for name, value in changes.items():
            for i, (k, _) in enumerate(params):
                if k.lower() == name.lower():
                    params[i] = (k, value)
                    break
            else:
                params.append((name, value))
        return replace(self, params=tuple(params))
