"""RFC 4733 telephone-event payloads: parse/serialize, receive (dedupe) and send, sans-IO.

This module owns:

- Rule 1 (RFC 4733 section 2.3): the payload is 4 octets: event, E|R|volume, duration.
- Rule 2 (RFC 4733 section 2.5.2.1): an event is identified by its RTP timestamp; every
  packet of the event (start, updates, the three end packets) carries the same timestamp.
  :class:`DtmfReceiver` reports a digit **at the first packet of an event that reaches us**,
  whatever its kind (start, update or end): this gives the IVR the digit ~50-100 ms sooner than
  waiting for the end, and still reports the digit when the start packet was lost. Later packets
  with the same timestamp (updates, repeated start packets, end retransmissions) are ignored.
- Rule 3 (RFC 4733 section 2.5.1.3): an event longer than 0xFFFF timestamp units continues with
  a new timestamp; such a segment of the same, unfinished event is not reported again.
- Rule 4: events above 15 (flash, tones) are not DTMF; they are ignored without error.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

__all__ = [
    "DTMF_DIGITS",
    "DtmfPacket",
    "DtmfReceiver",
    "TelephoneEvent",
    "TelephoneEventParseError",
    "digit_to_event",
    "dtmf_packets",
    "event_to_digit",
]

DTMF_DIGITS = "0123456789*#ABCD"
"""RFC 4733 section 3.2, table 7: events 0-15 in order."""

_PAYLOAD = struct.Struct("!BBH")


class TelephoneEventParseError(ValueError):
    """The payload is not a valid RFC 4733 event."""


def event_to_digit(event: int) -> str | None:
    """The DTMF digit of an event code, None for non-DTMF events (> 15)."""
    return DTMF_DIGITS[event] if 0 <= event < 16 else None


def digit_to_event(digit: str) -> int:
    """The event code of a DTMF digit (``0-9 * # A-D``, case-insensitive)."""
    index = DTMF_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return index


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 telephone-event payload (section 2.3)."""

    event: int
    """Event code, 0-255 (0-15 are DTMF)."""
    end: bool
    """E bit: this packet ends the event."""
    volume: int
    """Power level in -dBm0, 0-63 (RFC 4733 section 2.3.4)."""
    duration: int
    """Duration so far in timestamp units (RFC 4733 section 2.3.5)."""

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse the first 4 octets of a telephone-event payload.

        Raises:
            TelephoneEventParseError: when the payload is shorter than 4 octets.
        """
        if len(data) < 4:
            raise TelephoneEventParseError(
                f"telephone-event payload is less than 4 bytes (got {len(data)})"
            )
        event, flags, duration = _PAYLOAD.unpack_from(data)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def __bytes__(self) -> bytes:
        # R bit (0x40) is reserved: sent as zero (RFC 4733 section 2.3).
        return _PAYLOAD.pack(
            self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration
        )

    @property
    def digit(self) -> str | None:
        """The DTMF digit, None for events above 15."""
        return event_to_digit(self.event)


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """One packet of an outgoing event, to be sent one packetization interval apart."""

    payload: bytes
    """The 4-octet telephone-event payload."""
    marker: bool
    """RTP marker bit, set on the first packet of the event (RFC 4733 section 2.5.1.1)."""


def dtmf_packets(
    digit: str,
    *,
    duration_ms: int = 100,
    volume: int = 10,
    ptime_ms: int = 20,
    clock_rate: int = 8000,
) -> list[DtmfPacket]:
    """The packet sequence for one digit (RFC 4733 section 2.5.1).

    One packet per ``ptime_ms`` while the tone lasts, the first with the marker bit, each with
    the duration so far; then the end packet three times (section 2.5.1.4). All of them share
    the RTP timestamp of the event start: the caller sets it.

    Args:
        digit: ``0-9 * # A-D``.
        duration_ms: tone duration, rounded up to a whole number of ``ptime_ms``.
        volume: power level in -dBm0 (0-63).
        ptime_ms: packetization interval.
        clock_rate: RTP clock rate of the telephone-event payload type.

    Returns:
        ``ceil(duration_ms / ptime_ms) + 3`` packets.
    """
    event = digit_to_event(digit)
    if not 0 <= volume <= 63:
        raise ValueError("volume must be within 0-63 (-dBm0)")
    step = clock_rate * ptime_ms // 1000
    count = max(1, -(-duration_ms // ptime_ms))
    packets = [
        DtmfPacket(bytes(TelephoneEvent(event, False, volume, step * (i + 1))), i == 0)
        for i in range(count)
    ]
    end = bytes(TelephoneEvent(event, True, volume, min(step * count, 0xFFFF)))
    packets.extend(DtmfPacket(end, False) for _ in range(3))
    return packets


class DtmfReceiver:
    """Turns telephone-event packets into one digit per event (see the module rules)."""

    def __init__(self, history: int = 16) -> None:
        self._seen: deque[int] = deque(maxlen=history)
        self._last_ts: int | None = None
        self._last_event: int | None = None
        self._last_duration = 0
        self._last_ended = True
        self.ignored = 0
        """Packets ignored: malformed payloads and non-DTMF events."""

    def reset(self) -> None:
        """Forget the events seen (on SSRC change)."""
        self._seen.clear()
        self._last_ts = None
        self._last_event = None
        self._last_ended = True
        self._last_duration = 0

    def receive(self, payload: bytes, timestamp: int) -> str | None:
        """Process one packet; return the digit when it starts a new DTMF event."""
        try:
            event = TelephoneEvent.parse(payload)
        except TelephoneEventParseError:
            self.ignored += 1
            return None
        digit = event.digit
        if digit is None:
            self.ignored += 1
            return None
        if timestamp == self._last_ts:
            self._last_duration = max(self._last_duration, event.duration)
            self._last_ended = self._last_ended or event.end
            return None
        if timestamp in self._seen:
            # A late retransmission of an older event.
            return None
        continuation = (
            not self._last_ended
            and self._last_ts is not None
            and event.event == self._last_event
            and 0 < (timestamp - self._last_ts) & 0xFFFFFFFF <= 0xFFFF
            and self._last_duration >= 0xFFFF - 1600
        )
        self._seen.append(timestamp)
        self._last_ts = timestamp
        self._last_event = event.event
        self._last_duration = event.duration
        self._last_ended = event.end
        return None if continuation else digit
