from __future__ import annotations

import random
import struct

import numpy as np

from callcenter.rtp.codecs.base import get_codec
from callcenter.rtp.packet import RtpPacket
from callcenter.rtp.session import AudioReceived, DtmfReceived, RtpEvent, RtpSession
from callcenter.sdp import Direction, SessionDescription, negotiate

SDP_ADDR = ("127.0.0.1", 16000)


def latched(session: RtpSession) -> bool:
    # A function call, so that mypy does not narrow the property between receive() calls.
    return session.latched


def sends(session: RtpSession) -> bool:
    return session.sends


NAT_ADDR = ("203.0.113.7", 40000)


def pair(
    codec: str = "PCMU",
    *,
    ssrc: int | None = None,
    sequence_number: int | None = None,
    timestamp: int | None = None,
) -> tuple[RtpSession, RtpSession]:
    sender = RtpSession(
        codec=get_codec(codec),
        remote_address=("127.0.0.1", 20000),
        telephone_event_pt=101,
        rng=random.Random(1),
        ssrc=ssrc,
        sequence_number=sequence_number,
        timestamp=timestamp,
    )
    receiver = RtpSession(
        codec=get_codec(codec),
        remote_address=SDP_ADDR,
        telephone_event_pt=101,
        rng=random.Random(2),
    )
    return sender, receiver


def tone(n: int = 160) -> bytes:
    t = np.arange(n)
    return (np.sin(2 * np.pi * 440 * t / 8000) * 8000).astype("<i2").tobytes()


def test_audio_round_trip_and_counters() -> None:
    sender, receiver = pair("PCMA", ssrc=0x1234, sequence_number=10, timestamp=1000)
    events: list[RtpEvent] = []
    for i in range(3):
        events += receiver.receive(sender.encode_audio_packet(tone()), SDP_ADDR, now=float(i))
    assert [type(e) for e in events] == [AudioReceived] * 3
    assert isinstance(events[0], AudioReceived)
    assert (events[0].sequence, events[0].timestamp) == (10, 1000)
    assert isinstance(events[2], AudioReceived)
    assert (events[2].sequence, events[2].timestamp) == (12, 1320)
    decoded = np.frombuffer(events[1].pcm if isinstance(events[1], AudioReceived) else b"", "<i2")
    assert np.max(np.abs(decoded.astype(int) - np.frombuffer(tone(), "<i2"))) < 300
    assert receiver.stats.packets_received == 3 and receiver.stats.last_received == 2.0
    assert sender.stats.packets_sent == 3
    first = RtpPacket.parse(
        pair("PCMA", ssrc=1, sequence_number=0, timestamp=0)[0].build_audio_packet(b"\xd5" * 160)
    )
    assert first.marker and first.payload_type == 8 and first.ssrc == 1


def test_sequence_and_timestamp_wrap() -> None:
    sender, receiver = pair(sequence_number=65534, timestamp=0xFFFFFF00)
    seqs = []
    for _ in range(4):
        data = sender.encode_audio_packet(bytes(320))
        seqs.append(RtpPacket.parse(data).sequence_number)
        for event in receiver.receive(data, SDP_ADDR, 0.0):
            assert isinstance(event, AudioReceived)
            assert event.sequence >= 65534
    assert seqs == [65534, 65535, 0, 1]
    assert sender.timestamp == (0xFFFFFF00 + 4 * 160) & 0xFFFFFFFF
    assert receiver.stats.packets_lost == 0 and receiver.stats.packets_received == 4


def test_dtmf_packets_once_per_event_and_timestamps() -> None:
    sender, receiver = pair(timestamp=5000)
    sender.encode_audio_packet(bytes(320))  # audio at ts 5000
    packets = sender.build_dtmf_packets("5", duration_ms=60)
    parsed = [RtpPacket.parse(p) for p in packets]
    assert [p.payload_type for p in parsed] == [101] * 6
    assert {p.timestamp for p in parsed} == {5160}
    assert parsed[0].marker and not any(p.marker for p in parsed[1:])
    assert sender.timestamp == 5160 + 6 * 160
    after = RtpPacket.parse(sender.encode_audio_packet(bytes(320)))
    assert after.marker and after.sequence_number == parsed[-1].sequence_number + 1
    events = [e for p in packets for e in receiver.receive(p, SDP_ADDR, 0.0)]
    assert events == [DtmfReceived("5", 5160)]
    assert receiver.stats.dtmf_received == 1


def test_ssrc_change_resets_and_is_counted() -> None:
    first, receiver = pair(sequence_number=100)
    second = RtpSession(
        codec=get_codec("PCMU"),
        remote_address=None,
        telephone_event_pt=101,
        ssrc=first.ssrc ^ 1,
        sequence_number=40000,
        timestamp=1,
    )
    for _ in range(3):
        receiver.receive(first.encode_audio_packet(bytes(320)), SDP_ADDR, 0.0)
    events = receiver.receive(second.encode_audio_packet(bytes(320)), SDP_ADDR, 1.0)
    assert len(events) == 1 and isinstance(events[0], AudioReceived)
    assert events[0].sequence == 40000  # not treated as a jump in the old sequence space
    assert receiver.stats.ssrc_changes == 1
    assert receiver.stats.packets_lost == 0 and receiver.stats.packets_late == 0
    # The same DTMF timestamp from the new source is a new event.
    assert receiver.receive(second.build_dtmf_packets("1")[0], SDP_ADDR, 1.0) == [
        DtmfReceived("1", 161)
    ]


def test_latching_to_the_first_valid_source() -> None:
    sender, receiver = pair()
    assert receiver.remote_address == SDP_ADDR and not latched(receiver)
    # Garbage, RTCP and unknown payload types from elsewhere do not latch.
    assert receiver.receive(b"\x00garbage", NAT_ADDR, 0.0) == []
    assert receiver.receive(bytes([0x80, 200]) + bytes(26), NAT_ADDR, 0.0) == []
    assert receiver.receive(bytes(RtpPacket(13, 1, 1, 9, b"\x00")), NAT_ADDR, 0.0) == []
    assert receiver.remote_address == SDP_ADDR
    assert receiver.stats.packets_invalid == 1 and receiver.stats.packets_rtcp == 1
    assert receiver.stats.packets_unknown_pt == 1
    # The first valid packet comes from behind a NAT: we latch there.
    assert len(receiver.receive(sender.encode_audio_packet(bytes(320)), NAT_ADDR, 0.0)) == 1
    assert latched(receiver) and receiver.remote_address == NAT_ADDR
    # Packets from any other source are now dropped.
    dropped = sender.encode_audio_packet(bytes(320))
    assert receiver.receive(dropped, SDP_ADDR, 0.0) == []
    assert receiver.stats.packets_foreign == 1
    # A new SDP (re-INVITE) unlatches.
    receiver.set_remote(("127.0.0.1", 16002))
    assert receiver.remote_address == ("127.0.0.1", 16002) and not latched(receiver)
    assert len(receiver.receive(dropped, SDP_ADDR, 0.0)) == 1
    assert receiver.remote_address == SDP_ADDR


def test_truncated_and_random_datagrams_never_raise() -> None:
    sender, receiver = pair()
    good = sender.encode_audio_packet(bytes(320))
    rng = random.Random(7)
    for size in range(13):
        assert receiver.receive(good[:size], SDP_ADDR, 0.0) == []
    assert receiver.stats.packets_invalid == 12  # a bare 12-byte header is valid but empty
    assert receiver.receive(good, SDP_ADDR, 0.0) == []  # same sequence number: a duplicate
    assert receiver.stats.packets_late == 1
    assert len(receiver.receive(sender.encode_audio_packet(bytes(320)), SDP_ADDR, 0.0)) == 1
    for _ in range(2000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(40)))
        receiver.receive(data, (f"127.0.0.{rng.randrange(3)}", 1), 0.0)
    # Truncated telephone-event payloads are valid RTP but ignored by the DTMF receiver.
    dtmf = sender.build_dtmf_packets("1")[0]
    assert receiver.receive(dtmf[:13], receiver.remote_address or SDP_ADDR, 0.0) == []


def test_from_negotiated_and_update_for_hold() -> None:
    offer = SessionDescription.parse(
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 16000 RTP/AVP 8 96\r\na=rtpmap:96 telephone-event/8000\r\n"
    )
    media = negotiate(
        offer, local_address="127.0.0.1", local_port=2, session_id=1, session_version=1
    )
    session = RtpSession.from_negotiated(media, ssrc=5)
    assert session.codec.name == "PCMA" and session.telephone_event_pt == 96 and session.ssrc == 5
    assert sends(session) and session.remote_address == SDP_ADDR
    hold = SessionDescription.parse(
        bytes(offer).replace(b"127.0.0.1\r\nt", b"0.0.0.0\r\nt") + b"a=sendonly\r\n"
    )
    session.update(
        negotiate(hold, local_address="127.0.0.1", local_port=2, session_id=1, session_version=2)
    )
    assert session.direction is Direction.RECVONLY and not sends(session)
    session.update(media)
    assert sends(session) and session.remote_address == SDP_ADDR


def test_audio_events_can_be_turned_off_but_dtmf_still_arrives() -> None:
    from callcenter.rtp.dtmf import dtmf_packets

    session = RtpSession(codec=get_codec("PCMU"), remote_address=None, telephone_event_pt=101)
    session.deliver_audio = False
    audio = struct.pack("!BBHII", 0x80, 0, 1, 160, 7) + bytes(160)
    assert session.receive(audio, ("127.0.0.1", 4000), 0.0) == []
    assert session.stats.packets_received == 1
    events: list[RtpEvent] = []
    for i, packet in enumerate(dtmf_packets("5")):
        header = struct.pack("!BBHII", 0x80, 101 | (0x80 if packet.marker else 0), 2 + i, 320, 7)
        events += session.receive(header + packet.payload, ("127.0.0.1", 4000), 0.02 * i)
    assert [e for e in events if isinstance(e, DtmfReceived)] == [DtmfReceived("5", 320)]
