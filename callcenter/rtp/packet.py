"""RTP packets (RFC 3550 section 5.1): parse and serialize, sans-IO.

``bytes(RtpPacket.parse(data)) == data`` for every packet this module accepts: the padding
octets and the extension are kept as received.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "RTP_HEADER_SIZE",
    "RTP_VERSION",
    "RtpPacket",
    "RtpParseError",
    "build_header",
    "is_rtcp",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12

_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")


class RtpParseError(ValueError):
    """The datagram is not a valid RTP packet."""


def is_rtcp(data: bytes) -> bool:
    """Tell RTCP from RTP on a shared port without decoding (RFC 5761 section 4).

    RTCP packet types 192-223 put 64-95 in the RTP payload type position once the marker bit
    is masked; those payload types are reserved so that the two can be told apart.
    """
    return len(data) >= 2 and 64 <= (data[1] & 0x7F) <= 95


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet."""

    payload_type: int
    """Payload type, 0-127."""
    sequence_number: int
    """16-bit sequence number."""
    timestamp: int
    """32-bit media timestamp."""
    ssrc: int
    """Synchronization source identifier."""
    payload: bytes = b""
    """The payload, without padding."""
    marker: bool = False
    """Marker bit (start of a talk spurt for audio, RFC 3551 section 4.1)."""
    csrc: tuple[int, ...] = ()
    """Contributing sources (at most 15)."""
    extension_profile: int | None = None
    """Profile-defined 16 bits of the header extension (RFC 3550 section 5.3.1), if any."""
    extension: bytes = b""
    """Header extension data (a multiple of 4 octets)."""
    padding: bytes = b""
    """Padding octets as received, the last one being their count (RFC 3550 section 5.1)."""

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet.

        Raises:
            RtpParseError: with the reason when the datagram is not a valid RTP packet.
        """
        length = len(data)
        if length < RTP_HEADER_SIZE:
            raise RtpParseError(
                f"RTP packet length is less than {RTP_HEADER_SIZE} bytes (got {length})"
            )
        first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpParseError(f"RTP packet has invalid version {version}")
        pos = RTP_HEADER_SIZE
        cc = first & 0x0F
        csrc: tuple[int, ...] = ()
        if cc:
            end = pos + 4 * cc
            if end > length:
                raise RtpParseError(
                    f"RTP packet is truncated: {cc} CSRC need {end} bytes, got {length}"
                )
            csrc = struct.unpack_from(f"!{cc}I", data, pos)
            pos = end
        extension_profile: int | None = None
        extension = b""
        if first & 0x10:
            if pos + 4 > length:
                raise RtpParseError("RTP packet is truncated: missing header extension")
            extension_profile, words = _EXT_HEADER.unpack_from(data, pos)
            end = pos + 4 + 4 * words
            if end > length:
                raise RtpParseError(
                    f"RTP packet is truncated: header extension of {words} words needs "
                    f"{end} bytes, got {length}"
                )
            extension = bytes(data[pos + 4 : end])
            pos = end
        padding = b""
        end = length
        if first & 0x20:
            count = data[-1]
            if count == 0 or pos + count > length:
                raise RtpParseError(f"RTP packet has invalid padding length {count}")
            end = length - count
            padding = bytes(data[end:])
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(second & 0x80),
            csrc=csrc,
            extension_profile=extension_profile,
            extension=extension,
            padding=padding,
        )

    def __bytes__(self) -> bytes:
        first = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension_profile is not None:
            first |= 0x10
        parts = [
            _HEADER.pack(
                first,
                (0x80 if self.marker else 0) | self.payload_type,
                self.sequence_number,
                self.timestamp,
                self.ssrc,
            )
        ]
        if self.csrc:
            parts.append(struct.pack(f"!{len(self.csrc)}I", *self.csrc))
        if self.extension_profile is not None:
            if len(self.extension) % 4:
                raise ValueError("RTP header extension length must be a multiple of 4")
            parts.append(_EXT_HEADER.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        parts.append(self.padding)
        return b"".join(parts)


def build_header(
    payload_type: int, sequence_number: int, timestamp: int, ssrc: int, marker: bool = False
) -> bytes:
    """A 12-byte RTP header without CSRC nor extension (the fast path for sending)."""
    return _HEADER.pack(
        0x80, (0x80 if marker else 0) | payload_type, sequence_number, timestamp, ssrc
    )
