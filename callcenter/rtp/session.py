"""One RTP audio stream, both directions, sans-IO.

This module owns:

- Rule 1 (RFC 3550 section 5.1): the sender picks a random SSRC, initial sequence number and
  timestamp; each audio packet advances the sequence number by 1 and the timestamp by its
  samples. Time skipped without sending advances the timestamp only, and the next packet gets
  the marker bit (RFC 3551 section 4.1).
- Rule 2 (RFC 4961, symmetric RTP / latching): we send to the address from the SDP until the
  first valid packet with an expected payload type arrives; we then send to its source address
  ("latch") and drop packets from any other source. :meth:`RtpSession.set_remote` (a new
  SDP, e.g. a re-INVITE) unlatches. No SDP address (hold) means no sending, latched or not.
- Rule 3: RTCP (RFC 5761 section 4), garbage and truncated datagrams, unknown payload types are
  counted and dropped; :meth:`RtpSession.receive` never raises.
- Rule 4: a new remote SSRC resets the jitter buffer and the DTMF receiver (RFC 3550 section 8.2:
  the sequence and timestamp spaces of the new source are unrelated).
- Rule 5 (RFC 4733 section 2.5.1): DTMF events are sent in place of audio packets, sharing the
  sequence space and clock; the audio timestamp continues after them.

Events from the peer go through the :class:`~callcenter.rtp.jitter.JitterBuffer` (audio and
telephone-event alike, as they share the sequence space), then are decoded.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from typing import TypeAlias

from callcenter.rtp.codecs.base import Codec, get_codec
from callcenter.rtp.dtmf import DtmfReceiver, dtmf_packets
from callcenter.rtp.jitter import JitterBuffer
from callcenter.rtp.packet import (
    RTP_HEADER_SIZE,
    RtpPacket,
    RtpParseError,
    build_header,
    is_rtcp,
)
from callcenter.sdp import Direction, NegotiatedMedia

__all__ = ["AudioReceived", "DtmfReceived", "RtpEvent", "RtpSession", "RtpStats"]

Address: TypeAlias = tuple[str, int]
_Media: TypeAlias = tuple[int, int, bytes]  # payload type, timestamp, payload
_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class AudioReceived:
    """Audio from the peer; decoded on demand (most frames of a keypad call are never used)."""

    payload: bytes
    """The encoded RTP payload."""
    codec: Codec
    """The codec that decodes it."""
    sequence: int
    """Extended RTP sequence number (RFC 3550 appendix A.1), increasing across wraps."""
    timestamp: int
    """RTP timestamp of the first sample."""

    @property
    def pcm(self) -> bytes:
        """PCM16 little-endian mono at 8 kHz."""
        return self.codec.decode(self.payload)


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A DTMF digit from an RFC 4733 event, reported once per event."""

    digit: str
    """``0-9 * # A-D``."""
    timestamp: int
    """RTP timestamp identifying the event."""


RtpEvent: TypeAlias = AudioReceived | DtmfReceived


@dataclass(slots=True)
class RtpStats:
    """Counters of one session (mutable, read them at any time)."""

    packets_received: int = 0
    """Valid RTP packets accepted from the peer."""
    packets_lost: int = 0
    """Sequence numbers never received (skipped by the jitter buffer)."""
    packets_late: int = 0
    """Packets dropped as too late or out of the sequence window."""
    packets_duplicate: int = 0
    """Duplicate packets dropped."""
    packets_invalid: int = 0
    """Datagrams that were not valid RTP (garbage, truncated, wrong version)."""
    packets_rtcp: int = 0
    """RTCP packets seen on the RTP port, ignored."""
    packets_foreign: int = 0
    """Packets from another source than the latched one, dropped."""
    packets_unknown_pt: int = 0
    """Packets with a payload type we did not negotiate, dropped."""
    ssrc_changes: int = 0
    """Times the peer's SSRC changed."""
    dtmf_received: int = 0
    """DTMF digits reported."""
    packets_sent: int = 0
    """Packets built for sending (audio and DTMF)."""
    last_received: float | None = None
    """``now`` of the last valid packet, for the inactivity timeout."""


class RtpSession:
    """State of one RTP audio stream; feed it datagrams, ask it for packets."""

    def __init__(
        self,
        *,
        codec: Codec,
        remote_address: Address | None,
        telephone_event_pt: int | None = None,
        direction: Direction = Direction.SENDRECV,
        ssrc: int | None = None,
        sequence_number: int | None = None,
        timestamp: int | None = None,
        jitter_capacity: int = 4,
        rng: random.Random | None = None,
    ) -> None:
        """Create a session.

        Args:
            codec: the negotiated audio codec (its ``payload_type`` is used both ways).
            remote_address: where to send until we latch; None to send nothing yet.
            telephone_event_pt: negotiated RFC 4733 payload type, None if none.
            direction: our direction from the SDP answer; we send only if it sends.
            ssrc: our SSRC; random by default (RFC 3550 section 8.1).
            sequence_number: initial sequence number; random by default.
            timestamp: initial timestamp; random by default.
            jitter_capacity: reordering depth of the jitter buffer, in packets.
            rng: random source for the defaults (tests pass a seeded one).
        """
        rand = rng or random.SystemRandom()
        self.codec = codec
        self.telephone_event_pt = telephone_event_pt
        self.direction = direction
        self.ssrc = rand.getrandbits(32) if ssrc is None else ssrc
        self.sequence_number = rand.getrandbits(16) if sequence_number is None else sequence_number
        self.timestamp = rand.getrandbits(32) if timestamp is None else timestamp
        self.deliver_audio = True
        """Emit :class:`AudioReceived` events; a keypad-only call turns it off (saves CPU)."""
        self.stats = RtpStats()
        self.jitter: JitterBuffer[_Media] = JitterBuffer(jitter_capacity)
        self.dtmf = DtmfReceiver()
        self._sdp_remote = remote_address
        self._latched: Address | None = None
        self._remote_ssrc: int | None = None
        self._marker = True  # RFC 3551 section 4.1: first packet of a talk spurt
        self._expected_pts = self._pts()

    @classmethod
    def from_negotiated(
        cls,
        media: NegotiatedMedia,
        *,
        ssrc: int | None = None,
        jitter_capacity: int = 4,
        rng: random.Random | None = None,
    ) -> RtpSession:
        """A session for the outcome of an SDP negotiation.

        Args:
            media: the negotiated parameters (:func:`callcenter.sdp.negotiate`).
            ssrc: our SSRC; random by default.
            jitter_capacity: reordering depth of the jitter buffer, in packets.
            rng: random source for SSRC, sequence number and timestamp.
        """
        codec = get_codec(media.codec, media.payload_type)
        return cls(
            codec=codec,
            remote_address=media.remote_address,
            telephone_event_pt=media.telephone_event_pt,
            direction=media.direction,
            ssrc=ssrc,
            jitter_capacity=jitter_capacity,
            rng=rng,
        )

    def _pts(self) -> frozenset[int]:
        pts = {self.codec.payload_type}
        if self.telephone_event_pt is not None:
            pts.add(self.telephone_event_pt)
        return frozenset(pts)

    # -- negotiation updates ---------------------------------------------------------------

    def update(self, media: NegotiatedMedia) -> None:
        """Apply a new negotiation (re-INVITE: hold, unhold, codec or address change)."""
        if media.codec != self.codec.name or media.payload_type != self.codec.payload_type:
            self.codec = get_codec(media.codec, media.payload_type)
        self.telephone_event_pt = media.telephone_event_pt
        self.direction = media.direction
        self._expected_pts = self._pts()
        if media.remote_address != self._sdp_remote:
            self.set_remote(media.remote_address)

    def set_remote(self, address: Address | None) -> None:
        """Send to ``address`` from now on, and latch again on the next valid packet."""
        self._sdp_remote = address
        self._latched = None

    @property
    def remote_address(self) -> Address | None:
        """Where packets go: the latched source, else the SDP address.

        None when the SDP says not to send (port 0 or ``0.0.0.0``, RFC 3264 section 8.4), even
        if we latched: the hold wins over symmetric RTP.
        """
        if self._sdp_remote is None:
            return None
        return self._latched or self._sdp_remote

    @property
    def latched(self) -> bool:
        """True once we follow the source address of the peer's packets."""
        return self._latched is not None

    @property
    def sends(self) -> bool:
        """True when audio should be sent (direction allows it and we know where to)."""
        return self.direction.sends and self.remote_address is not None

    # -- sending ---------------------------------------------------------------------------

    def build_audio_packet(self, payload: bytes) -> bytes:
        """One RTP packet for an encoded payload; advances sequence number and timestamp."""
        data = (
            build_header(
                self.codec.payload_type,
                self.sequence_number,
                self.timestamp,
                self.ssrc,
                self._marker,
            )
            + payload
        )
        self._marker = False
        self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self.codec.samples(payload)) & 0xFFFFFFFF
        self.stats.packets_sent += 1
        return data

    def encode_audio_packet(self, pcm: bytes) -> bytes:
        """Encode PCM16 with the session codec and build the packet."""
        return self.build_audio_packet(self.codec.encode(pcm))

    def skip(self, samples: int) -> None:
        """Let ``samples`` of time pass without sending (the next packet gets the marker)."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self._marker = True

    def build_dtmf_packets(
        self, digit: str, *, duration_ms: int = 100, volume: int = 10, ptime_ms: int = 20
    ) -> list[bytes]:
        """The RTP packets of one RFC 4733 event, to send one per ``ptime_ms`` instead of audio.

        They all carry the current timestamp; the audio timestamp moves past the event.

        Raises:
            ValueError: if no telephone-event payload type was negotiated, or a bad digit.
        """
        if self.telephone_event_pt is None:
            raise ValueError("telephone-event was not negotiated")
        packets = dtmf_packets(digit, duration_ms=duration_ms, volume=volume, ptime_ms=ptime_ms)
        start = self.timestamp
        out = []
        for packet in packets:
            out.append(
                build_header(
                    self.telephone_event_pt,
                    self.sequence_number,
                    start,
                    self.ssrc,
                    packet.marker,
                )
                + packet.payload
            )
            self.sequence_number = (self.sequence_number + 1) & 0xFFFF
        step = self.codec.clock_rate * ptime_ms // 1000
        self.timestamp = (start + step * len(packets)) & 0xFFFFFFFF
        self._marker = True
        self.stats.packets_sent += len(out)
        return out

    # -- receiving -------------------------------------------------------------------------

    def receive(self, data: bytes, addr: Address, now: float) -> list[RtpEvent]:
        """Process one datagram from ``addr`` received at ``now``; never raises."""
        stats = self.stats
        if is_rtcp(data):
            stats.packets_rtcp += 1
            return []
        if len(data) > RTP_HEADER_SIZE and data[0] == 0x80:
            # Fast path: no padding, extension or CSRC (the usual telephony packet).
            _, second, seq, timestamp, ssrc = _HEADER.unpack_from(data)
            payload_type = second & 0x7F
            payload = data[RTP_HEADER_SIZE:]
        else:
            try:
                packet = RtpPacket.parse(data)
            except RtpParseError:
                stats.packets_invalid += 1
                return []
            payload_type, seq, timestamp = (
                packet.payload_type,
                packet.sequence_number,
                packet.timestamp,
            )
            ssrc, payload = packet.ssrc, packet.payload
        if self._latched is not None and addr != self._latched:
            stats.packets_foreign += 1
            return []
        if payload_type not in self._expected_pts:
            stats.packets_unknown_pt += 1
            return []
        if self._latched is None:
            self._latched = (addr[0], addr[1])
        if ssrc != self._remote_ssrc:
            if self._remote_ssrc is not None:
                stats.ssrc_changes += 1
                self._flush_counts()
                self.jitter.reset()
                self.dtmf.reset()
            self._remote_ssrc = ssrc
        stats.packets_received += 1
        stats.last_received = now
        ready = self.jitter.put(seq, (payload_type, timestamp, payload))
        js = self.jitter.stats
        if js.lost or js.late or js.duplicates:
            self._flush_counts()
        if not ready:
            return []
        events: list[RtpEvent] = []
        codec = self.codec
        for ext, (pt, ts, body) in ready:
            if pt == codec.payload_type:
                if body and self.deliver_audio:
                    events.append(AudioReceived(body, codec, ext, ts))
            else:
                digit = self.dtmf.receive(body, ts)
                if digit is not None:
                    stats.dtmf_received += 1
                    events.append(DtmfReceived(digit, ts))
        return events

    def _flush_counts(self) -> None:
        # Jitter buffer counters are per source; the session keeps the totals.
        js = self.jitter.stats
        self.stats.packets_lost += js.lost
        self.stats.packets_late += js.late
        self.stats.packets_duplicate += js.duplicates
        js.lost = js.late = js.duplicates = 0
