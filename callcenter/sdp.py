"""SDP (RFC 4566) parsing/serialization and the offer/answer model (RFC 3264), sans-IO.

This module owns:

- Rule 1 (RFC 4566 section 5): a session description is a list of ``<type>=<value>`` lines, the
  session part first (``v= o= s= i= u= e= p= c= b= t= r= z= k= a=``), then one section per
  ``m=`` line. We accept LF as well as CRLF line ends (RFC 4566 section 5: "parsers SHOULD be
  tolerant and also accept records terminated with a single newline").
- Rule 2 (RFC 3264 section 6): the answer has exactly one ``m=`` line per offered ``m=`` line,
  in the same order; a stream we refuse is answered with port 0.
- Rule 3 (RFC 3264 section 6.1): the answer direction mirrors the offer's (sendonly ->
  recvonly, recvonly -> sendonly, inactive -> inactive, sendrecv -> sendrecv).
- Rule 4 (RFC 3264 section 8.4): a connection address of ``0.0.0.0`` means "do not send me
  media" (the RFC 2543 hold); we answer normally and report no remote RTP address.

Only one audio stream is used; G.711 (PCMU/PCMA at 8 kHz) and RFC 4733 telephone-event are the
media formats we can negotiate.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Connection",
    "Direction",
    "MediaDescription",
    "NegotiatedMedia",
    "Origin",
    "RtpMap",
    "SdpError",
    "SdpNegotiationError",
    "SdpParseError",
    "SessionDescription",
    "make_offer",
    "negotiate",
    "negotiated_from_answer",
]

DEFAULT_PTIME = 20
"""Packetization time in milliseconds when the offer does not say (RFC 3551 section 4.5)."""

# RFC 3551 section 6, table 4: static audio payload types (name, clock rate).
STATIC_PAYLOAD_TYPES: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    13: ("CN", 8000),
    18: ("G729", 8000),
}

# RFC 4566 section 5: the order of the session-level lines.
_SESSION_ORDER = "vosiuepcbtrzka"
_MEDIA_ORDER = "micbka"
_RTP_PROFILES = frozenset({"RTP/AVP", "RTP/AVPF"})


class SdpError(Exception):
    """Base class of the SDP errors; ``status_code`` is the SIP response to send."""

    status_code = 400


class SdpParseError(SdpError):
    """The SDP body is malformed (answered with 400 Bad Request)."""

    status_code = 400


class SdpNegotiationError(SdpError):
    """No acceptable media in the offer (answered with 488 Not Acceptable Here)."""

    status_code = 488


class Direction(enum.StrEnum):
    """Media direction attribute (RFC 4566 section 6, RFC 3264 section 5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        """True when this side sends media in this direction."""
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        """True when this side receives media in this direction."""
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    def reversed(self) -> Direction:
        """The direction the answerer uses for this offered direction (RFC 3264 section 6.1)."""
        return _REVERSED[self]


_REVERSED = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}


@dataclass(frozen=True, slots=True)
class Origin:
    """The ``o=`` line (RFC 4566 section 5.2)."""

    username: str
    """User name on the originating host, ``-`` when there is none."""
    session_id: int
    """Numeric session identifier, stable for the whole session."""
    session_version: int
    """Version number, incremented by every new offer or answer in the session."""
    address: str
    """Unicast address of the originating host."""
    nettype: str = "IN"
    """Network type; always ``IN`` in practice."""
    addrtype: str = "IP4"
    """``IP4`` or ``IP6``."""

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """The ``c=`` line (RFC 4566 section 5.7)."""

    address: str
    """Connection address, without the multicast ``/ttl/count`` suffix."""
    nettype: str = "IN"
    """Network type; always ``IN`` in practice."""
    addrtype: str = "IP4"
    """``IP4`` or ``IP6``."""
    suffix: str = ""
    """The multicast ``/ttl[/count]`` suffix as written, kept for round-trips."""

    @property
    def is_hold(self) -> bool:
        """True for the RFC 2543 style hold address ``0.0.0.0`` (RFC 3264 section 8.4)."""
        return self.address in ("0.0.0.0", "::")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}{self.suffix}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """An ``a=rtpmap`` attribute (RFC 4566 section 6)."""

    payload_type: int
    """RTP payload type number."""
    encoding: str
    """Encoding name as written (``PCMU``, ``telephone-event``…)."""
    clock_rate: int
    """RTP clock rate in Hz."""
    channels: int | None = None
    """Number of audio channels, when given."""


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One media section: the ``m=`` line and the lines that follow it."""

    media: str
    """Media type: ``audio``, ``video``, ``application``…"""
    port: int
    """Transport port; 0 means the stream is rejected or disabled (RFC 3264 section 5.1)."""
    proto: str
    """Transport protocol, e.g. ``RTP/AVP``."""
    formats: tuple[str, ...]
    """Media formats; payload type numbers for RTP."""
    port_count: int | None = None
    """The ``/<number of ports>`` suffix of the port, if any."""
    connection: Connection | None = None
    """Media-level ``c=`` line, overriding the session-level one."""
    attributes: tuple[tuple[str, str | None], ...] = ()
    """``a=`` lines as (name, value) pairs; value is None for property attributes."""
    other: tuple[tuple[str, str], ...] = ()
    """Other lines (``i= b= k=``) as (type, value), kept for round-trips."""

    def attribute(self, name: str) -> str | None:
        """The value of the first attribute called ``name`` (None if absent or valueless)."""
        for key, value in self.attributes:
            if key == name:
                return value
        return None

    def has_attribute(self, name: str) -> bool:
        """True when an attribute called ``name`` is present."""
        return any(key == name for key, _ in self.attributes)

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """The ``a=rtpmap`` attributes by payload type (malformed ones are skipped)."""
        result: dict[int, RtpMap] = {}
        for key, value in self.attributes:
            if key != "rtpmap" or value is None:
                continue
            rtpmap = _parse_rtpmap(value)
            if rtpmap is not None:
                result[rtpmap.payload_type] = rtpmap
        return result

    @property
    def fmtps(self) -> dict[int, str]:
        """The ``a=fmtp`` parameters by payload type."""
        result: dict[int, str] = {}
        for key, value in self.attributes:
            if key != "fmtp" or value is None:
                continue
            pt, _, params = value.partition(" ")
            if pt.isdigit():
                result[int(pt)] = params.strip()
        return result

    @property
    def ptime(self) -> int | None:
        """The ``a=ptime`` value in milliseconds, if present and valid."""
        value = self.attribute("ptime")
        if value is None:
            return None
        try:
            ptime = int(float(value))
        except ValueError:
            return None
        return ptime if ptime > 0 else None

    @property
    def direction(self) -> Direction | None:
        """The media-level direction attribute, if any."""
        return _direction_of(self.attributes)

    def __str__(self) -> str:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        lines = [f"m={self.media} {port} {self.proto} {' '.join(self.formats)}".rstrip()]
        other = dict.fromkeys(t for t, _ in self.other)
        for kind in _MEDIA_ORDER:
            if kind == "c":
                if self.connection is not None:
                    lines.append(f"c={self.connection}")
            elif kind == "a":
                lines.extend(_format_attribute(k, v) for k, v in self.attributes)
            elif kind in other:
                lines.extend(f"{t}={v}" for t, v in self.other if t == kind)
        return "\r\n".join(lines) + "\r\n"


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole session description (RFC 4566 section 5)."""

    origin: Origin
    """The ``o=`` line."""
    session_name: str = "-"
    """The ``s=`` line."""
    connection: Connection | None = None
    """Session-level ``c=`` line, the default for every media section."""
    times: tuple[str, ...] = ("0 0",)
    """The ``t=`` values (``0 0`` for an unbounded session)."""
    attributes: tuple[tuple[str, str | None], ...] = ()
    """Session-level ``a=`` lines as (name, value) pairs."""
    media: tuple[MediaDescription, ...] = ()
    """The media sections in order."""
    other: tuple[tuple[str, str], ...] = ()
    """Other session-level lines (``i u e p b r z k``) as (type, value), kept for round-trips."""
    version: int = 0
    """The ``v=`` protocol version; always 0."""

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        """Parse an SDP body.

        Raises:
            SdpParseError: with the line number and the reason, when the body is malformed.
        """
        return _parse(data)

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, if any."""
        return _direction_of(self.attributes)

    def media_direction(self, media: MediaDescription) -> Direction:
        """The effective direction of a media section (media level, then session level)."""
        return media.direction or self.direction or Direction.SENDRECV

    def media_connection(self, media: MediaDescription) -> Connection | None:
        """The effective connection of a media section (media level, then session level)."""
        return media.connection or self.connection

    def __str__(self) -> str:
        lines = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        other = dict.fromkeys(t for t, _ in self.other)
        for kind in _SESSION_ORDER[3:]:
            if kind == "c":
                if self.connection is not None:
                    lines.append(f"c={self.connection}")
            elif kind == "t":
                lines.extend(f"t={t}" for t in self.times)
                # r= lines belong after their t= line; we keep them all after the last one.
            elif kind == "a":
                lines.extend(_format_attribute(k, v) for k, v in self.attributes)
            elif kind in other:
                lines.extend(f"{t}={v}" for t, v in self.other if t == kind)
        return "\r\n".join(lines) + "\r\n" + "".join(str(m) for m in self.media)

    def __bytes__(self) -> bytes:
        return str(self).encode("utf-8")


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The outcome of an offer/answer exchange for our single audio stream."""

    answer: SessionDescription
    """The answer to send (for :func:`negotiate`) or the answer received."""
    codec: str
    """Chosen codec name in upper case (``PCMU`` or ``PCMA``)."""
    payload_type: int
    """RTP payload type of the chosen codec, as numbered by the offerer."""
    clock_rate: int
    """RTP clock rate of the chosen codec in Hz."""
    telephone_event_pt: int | None
    """Payload type of RFC 4733 telephone-event at 8 kHz, or None if not offered."""
    remote_address: tuple[str, int] | None
    """Where to send RTP; None when the peer said not to (port 0 or ``0.0.0.0`` hold)."""
    ptime: int
    """Packetization time in ms that the peer asked for (``a=ptime``), default 20."""
    direction: Direction
    """Our direction for the stream (the answer's direction for :func:`negotiate`)."""

    @property
    def on_hold(self) -> bool:
        """True when the peer does not want media from us (RFC 3264 section 8.4)."""
        return self.remote_address is None or not self.direction.sends


def _direction_of(attributes: Iterable[tuple[str, str | None]]) -> Direction | None:
    for key, _ in attributes:
        if key in _DIRECTIONS:
            return Direction(key)
    return None


_DIRECTIONS = frozenset(d.value for d in Direction)


def _format_attribute(name: str, value: str | None) -> str:
    return f"a={name}" if value is None else f"a={name}:{value}"


def _parse_rtpmap(value: str) -> RtpMap | None:
    # RFC 4566 section 6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<parameters>]
    pt, _, rest = value.strip().partition(" ")
    parts = rest.strip().split("/")
    if not pt.isdigit() or len(parts) < 2 or not parts[0] or not parts[1].isdigit():
        return None
    channels = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
    return RtpMap(int(pt), parts[0], int(parts[1]), channels)


def _parse_connection(value: str, lineno: int) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpParseError(
            f"line {lineno}: invalid connection (c=) line {value!r}: "
            f"expected '<nettype> <addrtype> <address>'"
        )
    nettype, addrtype, address = parts
    if addrtype not in ("IP4", "IP6"):
        raise SdpParseError(
            f"line {lineno}: invalid connection (c=) line {value!r}: "
            f"unknown address type {addrtype!r}"
        )
    address, slash, suffix = address.partition("/")
    if not address:
        raise SdpParseError(f"line {lineno}: invalid connection (c=) line {value!r}: no address")
    return Connection(address, nettype, addrtype, slash + suffix)


def _parse_origin(value: str, lineno: int) -> Origin:
    parts = value.split()
    if len(parts) != 6:
        raise SdpParseError(
            f"line {lineno}: invalid origin (o=) line {value!r}: "
            f"expected 6 fields, got {len(parts)}"
        )
    username, sess_id, sess_version, nettype, addrtype, address = parts
    if not sess_id.isdigit() or not sess_version.isdigit():
        raise SdpParseError(
            f"line {lineno}: invalid origin (o=) line {value!r}: "
            f"session id and version must be numeric"
        )
    return Origin(username, int(sess_id), int(sess_version), address, nettype, addrtype)


def _parse_media_line(value: str, lineno: int) -> MediaDescription:
    # RFC 4566 section 5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ...
    parts = value.split()
    if len(parts) < 3:
        raise SdpParseError(
            f"line {lineno}: invalid media (m=) line {value!r}: "
            f"expected '<media> <port> <proto> <fmt> ...'"
        )
    media, port_text, proto, *formats = parts
    port_str, slash, count_str = port_text.partition("/")
    if not port_str.isdigit() or int(port_str) > 65535 or (slash and not count_str.isdigit()):
        raise SdpParseError(
            f"line {lineno}: invalid media (m=) line {value!r}: bad port {port_text!r}"
        )
    if proto in _RTP_PROFILES or proto.startswith("RTP/"):
        for fmt in formats:
            if not fmt.isdigit() or int(fmt) > 127:
                raise SdpParseError(
                    f"line {lineno}: invalid media (m=) line {value!r}: "
                    f"bad RTP payload type {fmt!r}"
                )
    return MediaDescription(
        media=media,
        port=int(port_str),
        proto=proto,
        formats=tuple(formats),
        port_count=int(count_str) if slash else None,
    )


def _parse(data: bytes | str) -> SessionDescription:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpParseError(f"SDP is not valid UTF-8: {exc}") from None
    else:
        text = data
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise SdpParseError("empty SDP body")

    session: dict[str, object] = {}
    s_attrs: list[tuple[str, str | None]] = []
    s_other: list[tuple[str, str]] = []
    times: list[str] = []
    media: list[MediaDescription] = []
    cur: MediaDescription | None = None
    m_attrs: list[tuple[str, str | None]] = []
    m_other: list[tuple[str, str]] = []

    def flush() -> None:
        if cur is not None:
            media.append(replace(cur, attributes=tuple(m_attrs), other=tuple(m_other)))

    for index, raw in enumerate(lines):
        lineno = index + 1
        line = raw.rstrip("\r")
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpParseError(f"line {lineno}: expected '<type>=<value>', got {line[:40]!r}")
        kind, value = line[0], line[2:]
        if index == 0:
            if kind != "v":
                raise SdpParseError(f"line 1: SDP must start with 'v=', got {line[:40]!r}")
            if value.strip() != "0":
                raise SdpParseError(f"line 1: unsupported SDP version {value.strip()!r}")
            continue
        if kind == "v":
            raise SdpParseError(f"line {lineno}: unexpected second 'v=' line")
        if kind == "m":
            flush()
            cur = _parse_media_line(value, lineno)
            m_attrs, m_other = [], []
            continue
        if kind == "a":
            name, colon, attr_value = value.partition(":")
            if not name:
                raise SdpParseError(f"line {lineno}: empty attribute name in {line[:40]!r}")
            pair = (name, attr_value if colon else None)
            (m_attrs if cur is not None else s_attrs).append(pair)
            continue
        if cur is not None:
            if kind == "c":
                if cur.connection is not None:
                    raise SdpParseError(f"line {lineno}: second 'c=' line in a media section")
                cur = replace(cur, connection=_parse_connection(value, lineno))
            else:
                m_other.append((kind, value))
            continue
        if kind == "o":
            if "o" in session:
                raise SdpParseError(f"line {lineno}: second 'o=' line")
            session["o"] = _parse_origin(value, lineno)
        elif kind == "s":
            session["s"] = value
        elif kind == "c":
            if "c" in session:
                raise SdpParseError(f"line {lineno}: second session-level 'c=' line")
            session["c"] = _parse_connection(value, lineno)
        elif kind == "t":
            times.append(value)
        else:
            s_other.append((kind, value))
    flush()

    origin = session.get("o")
    if not isinstance(origin, Origin):
        raise SdpParseError("missing origin (o=) line")
    session_name = session.get("s")
    if not isinstance(session_name, str):
        raise SdpParseError("missing session name (s=) line")
    connection = session.get("c")
    assert connection is None or isinstance(connection, Connection)
    for number, section in enumerate(media, 1):
        # RFC 4566 section 5.7: c= at session level or in every media section. A disabled
        # stream (port 0) needs no address, so we do not insist there.
        if section.connection is None and connection is None and section.port != 0:
            raise SdpParseError(
                f"media section {number} ({section.media}) has no connection address (c=) "
                f"and the session has none"
            )
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=connection,
        times=tuple(times) or ("0 0",),
        attributes=tuple(s_attrs),
        media=tuple(media),
        other=tuple(s_other),
    )


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def _codec_of(media: MediaDescription, fmt: str) -> tuple[str, int] | None:
    """(encoding name upper case, clock rate) of an RTP format, static or mapped."""
    if not fmt.isdigit():
        return None
    pt = int(fmt)
    rtpmap = media.rtpmaps.get(pt)
    if rtpmap is not None:
        return rtpmap.encoding.upper(), rtpmap.clock_rate
    # RFC 3551 section 6: static payload types need no rtpmap.
    return STATIC_PAYLOAD_TYPES.get(pt)


def _telephone_event_pt(media: MediaDescription) -> int | None:
    for fmt in media.formats:
        codec = _codec_of(media, fmt)
        if codec == ("TELEPHONE-EVENT", 8000):
            return int(fmt)
    return None


def _audio_lines(
    *,
    port: int,
    codecs: Sequence[tuple[int, str, int]],
    telephone_event_pt: int | None,
    ptime: int,
    direction: Direction,
) -> MediaDescription:
    formats = [str(pt) for pt, _, _ in codecs]
    attributes: list[tuple[str, str | None]] = [
        ("rtpmap", f"{pt} {name}/{rate}") for pt, name, rate in codecs
    ]
    if telephone_event_pt is not None:
        formats.append(str(telephone_event_pt))
        attributes.append(("rtpmap", f"{telephone_event_pt} telephone-event/8000"))
        # RFC 4733 section 2.4.1: we receive the 16 DTMF events.
        attributes.append(("fmtp", f"{telephone_event_pt} 0-15"))
    attributes.append(("ptime", str(ptime)))
    attributes.append((direction.value, None))
    return MediaDescription(
        media="audio",
        port=port,
        proto="RTP/AVP",
        formats=tuple(formats),
        attributes=tuple(attributes),
    )


def make_offer(
    *,
    local_address: str,
    local_port: int,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    telephone_event_pt: int | None = 101,
    ptime: int = DEFAULT_PTIME,
    direction: Direction = Direction.SENDRECV,
    session_id: int,
    session_version: int,
) -> SessionDescription:
    """Build an SDP offer with one audio stream (for our outbound calls and re-INVITEs).

    Args:
        local_address: the address we receive RTP on (``c=`` and ``o=``).
        local_port: the even RTP port we listen on.
        codecs: codec names in order of preference, among the static G.711 ones.
        telephone_event_pt: dynamic payload type for RFC 4733 events, None to omit them.
        ptime: packetization time we want to receive, in ms.
        direction: the direction we offer.
        session_id: the ``o=`` session id.
        session_version: the ``o=`` session version (increment it for each new offer).

    Returns:
        The offer.

    Raises:
        ValueError: if a codec has no static payload type.
    """
    static = {name: (pt, rate) for pt, (name, rate) in STATIC_PAYLOAD_TYPES.items()}
    entries: list[tuple[int, str, int]] = []
    for name in codecs:
        if name.upper() not in static:
            raise ValueError(f"codec {name!r} has no static payload type")
        pt, rate = static[name.upper()]
        entries.append((pt, name.upper(), rate))
    addrtype = _addrtype(local_address)
    return SessionDescription(
        origin=Origin("-", session_id, session_version, local_address, "IN", addrtype),
        session_name="-",
        connection=Connection(local_address, "IN", addrtype),
        media=(
            _audio_lines(
                port=local_port,
                codecs=entries,
                telephone_event_pt=telephone_event_pt,
                ptime=ptime,
                direction=direction,
            ),
        ),
    )


def _remote_address(sd: SessionDescription, media: MediaDescription) -> tuple[str, int] | None:
    connection = sd.media_connection(media)
    if media.port == 0 or connection is None or connection.is_hold:
        return None
    return connection.address, media.port


def _rejected(media: MediaDescription) -> MediaDescription:
    # RFC 3264 section 6: a refused stream keeps its m= line with port 0 and at least one
    # of the offered formats.
    return MediaDescription(
        media=media.media, port=0, proto=media.proto, formats=media.formats[:1] or ("0",)
    )


def negotiate(
    offer: SessionDescription,
    *,
    local_address: str,
    local_port: int,
    supported: Sequence[str] = ("PCMU", "PCMA"),
    session_id: int,
    session_version: int,
) -> NegotiatedMedia:
    """Answer an SDP offer (RFC 3264 section 6).

    The first audio stream over RTP/AVP with a codec we support is accepted; among our
    supported codecs the offerer's order of preference wins. Every other stream is refused
    with port 0.

    Args:
        offer: the parsed offer.
        local_address: the address we receive RTP on.
        local_port: the RTP port we listen on.
        supported: codec names we can use (``PCMU``, ``PCMA``).
        session_id: ``o=`` session id of our answer (keep it for the whole dialog).
        session_version: ``o=`` session version of our answer (increment on each change).

    Returns:
        The answer and the negotiated parameters.

    Raises:
        SdpNegotiationError: when no audio stream has a common codec (status 488).
    """
    wanted = {name.upper() for name in supported}
    answer_media: list[MediaDescription] = []
    chosen: NegotiatedMedia | None = None
    addrtype = _addrtype(local_address)
    session_ptime = _ptime_value(offer.attributes)
    for section in offer.media:
        codec: tuple[int, str, int] | None = None
        if (
            chosen is None
            and section.media == "audio"
            and section.proto in _RTP_PROFILES
            and section.port != 0
        ):
            for fmt in section.formats:
                found = _codec_of(section, fmt)
                if found is not None and found[0] in wanted and found[1] == 8000:
                    codec = (int(fmt), found[0], found[1])
                    break
        if codec is None:
            answer_media.append(_rejected(section))
            continue
        te_pt = _telephone_event_pt(section)
        direction = offer.media_direction(section).reversed()
        ptime = section.ptime or session_ptime or DEFAULT_PTIME
        media = _audio_lines(
            port=local_port,
            codecs=[codec],
            telephone_event_pt=te_pt,
            ptime=DEFAULT_PTIME,
            direction=direction,
        )
        answer_media.append(media)
        chosen = NegotiatedMedia(
            answer=offer,  # the answer is not built yet; replaced below
            codec=codec[1],
            payload_type=codec[0],
            clock_rate=codec[2],
            telephone_event_pt=te_pt,
            remote_address=_remote_address(offer, section),
            ptime=ptime,
            direction=direction,
        )
    if chosen is None:
        offered = sorted(
            {
                (_codec_of(m, f) or (f, 0))[0]
                for m in offer.media
                if m.media == "audio"
                for f in m.formats
            }
        )
        raise SdpNegotiationError(
            f"no common audio codec: offered {', '.join(offered) or 'none'}, "
            f"supported {', '.join(s.upper() for s in supported)}"
        )
    answer = SessionDescription(
        origin=Origin("-", session_id, session_version, local_address, "IN", addrtype),
        session_name="-",
        connection=Connection(local_address, "IN", addrtype),
        times=("0 0",),
        media=tuple(answer_media),
    )
    return replace(chosen, answer=answer)


def negotiated_from_answer(
    offer: SessionDescription, answer: SessionDescription
) -> NegotiatedMedia:
    """Read the negotiated audio stream from the answer to one of our offers.

    Raises:
        SdpNegotiationError: when the answer accepts no audio stream with a known codec.
    """
    for index, section in enumerate(answer.media):
        if section.media != "audio" or section.port == 0:
            continue
        ours = offer.media[index] if index < len(offer.media) else section
        for fmt in section.formats:
            found = _codec_of(section, fmt) or _codec_of(ours, fmt)
            if found is None or found[0] in ("TELEPHONE-EVENT", "CN"):
                continue
            ptime = section.ptime or _ptime_value(answer.attributes) or DEFAULT_PTIME
            return NegotiatedMedia(
                answer=answer,
                codec=found[0],
                payload_type=int(fmt),
                clock_rate=found[1],
                telephone_event_pt=_telephone_event_pt(section),
                remote_address=_remote_address(answer, section),
                ptime=ptime,
                direction=answer.media_direction(section).reversed(),
            )
    raise SdpNegotiationError("the answer accepts no audio stream")


def _ptime_value(attributes: Iterable[tuple[str, str | None]]) -> int | None:
    for key, value in attributes:
        if key == "ptime" and value is not None:
            try:
                ptime = int(float(value))
            except ValueError:
                return None
            return ptime if ptime > 0 else None
    return None
