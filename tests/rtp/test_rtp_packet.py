from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.rtp.packet import RtpPacket, RtpParseError, is_rtcp


def test_minimal_packet_round_trip() -> None:
    data = bytes.fromhex("80 00 ff ff 00 00 00 a0 12 34 56 78") + b"\xff" * 160
    packet = RtpPacket.parse(data)
    assert packet == RtpPacket(
        payload_type=0,
        sequence_number=0xFFFF,
        timestamp=160,
        ssrc=0x12345678,
        payload=b"\xff" * 160,
    )
    assert bytes(packet) == data


def test_marker_csrc_extension_padding_round_trip() -> None:
    data = (
        bytes([0x80 | 0x20 | 0x10 | 2, 0x80 | 101])
        + struct.pack("!HII", 7, 8000, 1)
        + struct.pack("!II", 0xAAAA, 0xBBBB)  # 2 CSRC
        + struct.pack("!HH", 0xBEDE, 1)
        + b"\x10\xff\x00\x00"  # one-word extension
        + b"\x01\x02\x03\x04"  # payload
        + b"\x99\x00\x03"  # padding, arbitrary content, count 3
    )
    packet = RtpPacket.parse(data)
    assert packet.marker and packet.payload_type == 101
    assert packet.csrc == (0xAAAA, 0xBBBB)
    assert packet.extension_profile == 0xBEDE and packet.extension == b"\x10\xff\x00\x00"
    assert packet.payload == b"\x01\x02\x03\x04"
    assert packet.padding == b"\x99\x00\x03"
    assert bytes(packet) == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x80\x00\x00", "RTP packet length is less than 12 bytes (got 3)"),
        (bytes(12), "RTP packet has invalid version 0"),
        (b"\x82" + bytes(11) + bytes(4), "RTP packet is truncated: 2 CSRC need 20 bytes, got 16"),
        (b"\x90" + bytes(11) + b"\xbe", "RTP packet is truncated: missing header extension"),
        (
            b"\x90" + bytes(11) + b"\xbe\xde\x00\x02" + bytes(4),
            "RTP packet is truncated: header extension of 2 words needs 24 bytes, got 20",
        ),
        (b"\xa0" + bytes(11) + b"\x01\x00", "RTP packet has invalid padding length 0"),
        (b"\xa0" + bytes(11) + b"\x09", "RTP packet has invalid padding length 9"),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(RtpParseError) as info:
        RtpPacket.parse(data)
    assert str(info.value) == message


@given(st.binary(max_size=64))
def test_random_bytes_parse_or_raise_and_round_trip(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpParseError:
        return
    assert bytes(packet) == data


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
)
def test_serialize_then_parse(
    pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool, csrc: list[int]
) -> None:
    packet = RtpPacket(pt, seq, ts, ssrc, payload, marker, tuple(csrc))
    assert RtpPacket.parse(bytes(packet)) == packet


def test_is_rtcp() -> None:
    sender_report = bytes([0x80, 200]) + bytes(26)
    receiver_report = bytes([0x81, 201, 0, 7]) + bytes(28)
    assert is_rtcp(sender_report) and is_rtcp(receiver_report)
    assert not is_rtcp(bytes([0x80, 0]) + bytes(10))  # PCMU
    assert not is_rtcp(bytes([0x80, 0x80 | 101]) + bytes(10))  # telephone-event with marker
    assert not is_rtcp(b"\x80")
