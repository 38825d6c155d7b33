from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callcenter.sdp import (
    Direction,
    NegotiatedMedia,
    SdpNegotiationError,
    SdpParseError,
    SessionDescription,
    make_offer,
    negotiate,
    negotiated_from_answer,
)


def sdp(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode()


# What sipp's uac_pcap scenario offers (PCMA + telephone-event 101).
SIPP_OFFER = sdp(
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 16000 RTP/AVP 8 101",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-11,16",
)

# A baresip-like offer: several codecs, session-level attributes, b= and ptime.
BARESIP_OFFER = sdp(
    "v=0",
    "o=- 1187437337 1453196530 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "a=tool:baresip 1.0.0",
    "m=audio 10002 RTP/AVP 9 0 8 96",
    "b=AS:64",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:96 telephone-event/8000",
    "a=fmtp:96 0-15",
    "a=sendrecv",
    "a=label:1",
    "a=ssrc:1780349101 cname:6a2dd0ac-f0cc-4fe1-b5e0-9d4a0a7e58e1",
    "a=ptime:20",
)


def answer(data: bytes, supported: tuple[str, ...] = ("PCMU", "PCMA")) -> NegotiatedMedia:
    return negotiate(
        SessionDescription.parse(data),
        local_address="127.0.0.1",
        local_port=20000,
        supported=supported,
        session_id=7,
        session_version=1,
    )


@pytest.mark.parametrize("data", [SIPP_OFFER, BARESIP_OFFER])
def test_round_trip_is_exact(data: bytes) -> None:
    parsed = SessionDescription.parse(data)
    assert bytes(parsed) == data
    assert SessionDescription.parse(bytes(parsed)) == parsed


def test_parse_fields() -> None:
    sd = SessionDescription.parse(BARESIP_OFFER)
    assert sd.origin.session_id == 1187437337
    assert sd.connection is not None and sd.connection.address == "127.0.0.1"
    (audio,) = sd.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 10002, "RTP/AVP")
    assert audio.formats == ("9", "0", "8", "96")
    assert audio.rtpmaps[96].encoding == "telephone-event"
    assert audio.fmtps == {96: "0-15"}
    assert audio.ptime == 20
    assert audio.direction is Direction.SENDRECV
    assert sd.attributes == (("tool", "baresip 1.0.0"),)


def test_lf_line_endings_accepted() -> None:
    sd = SessionDescription.parse(SIPP_OFFER.replace(b"\r\n", b"\n"))
    assert bytes(sd) == SIPP_OFFER


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty SDP body"),
        (
            b"o=- 1 1 IN IP4 1.2.3.4\r\n",
            "line 1: SDP must start with 'v=', got 'o=- 1 1 IN IP4 1.2.3.4'",
        ),
        (b"v=1\r\n", "line 1: unsupported SDP version '1'"),
        (
            sdp("v=0", "o=- 1 IN IP4 127.0.0.1", "s=-"),
            "line 2: invalid origin (o=) line '- 1 IN IP4 127.0.0.1': expected 6 fields, got 5",
        ),
        (
            sdp("v=0", "o=- x 1 IN IP4 127.0.0.1", "s=-"),
            "line 2: invalid origin (o=) line '- x 1 IN IP4 127.0.0.1': "
            "session id and version must be numeric",
        ),
        (sdp("v=0", "s=-"), "missing origin (o=) line"),
        (sdp("v=0", "o=- 1 1 IN IP4 127.0.0.1"), "missing session name (s=) line"),
        (
            sdp("v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "m=audio 70000 RTP/AVP 0"),
            "line 5: invalid media (m=) line 'audio 70000 RTP/AVP 0': bad port '70000'",
        ),
        (
            sdp("v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "m=audio 5000 RTP/AVP PCMU"),
            "line 4: invalid media (m=) line 'audio 5000 RTP/AVP PCMU': "
            "bad RTP payload type 'PCMU'",
        ),
        (
            sdp("v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "m=audio 5000 RTP/AVP 0"),
            "media section 1 (audio) has no connection address (c=) and the session has none",
        ),
        (
            sdp("v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IPX 127.0.0.1"),
            "line 4: invalid connection (c=) line 'IN IPX 127.0.0.1': unknown address type 'IPX'",
        ),
        (
            sdp("v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "garbage"),
            "line 4: expected '<type>=<value>', got 'garbage'",
        ),
        (
            b"v=0\r\n\xff\r\n",
            "SDP is not valid UTF-8: 'utf-8' codec can't decode byte 0xff in "
            "position 5: invalid start byte",
        ),
    ],
)
def test_parse_errors(data: bytes, message: str) -> None:
    with pytest.raises(SdpParseError) as info:
        SessionDescription.parse(data)
    assert str(info.value) == message
    assert info.value.status_code == 400


@given(st.text(max_size=300))
def test_parse_random_text_raises_only_parse_error(text: str) -> None:
    try:
        sd = SessionDescription.parse(text)
    except SdpParseError:
        return
    # Whatever parses serializes to something that parses to the same thing.
    assert SessionDescription.parse(str(sd)) == sd


def test_negotiate_pcma_only_offer_with_telephone_event() -> None:
    result = answer(SIPP_OFFER)
    assert (result.codec, result.payload_type, result.clock_rate) == ("PCMA", 8, 8000)
    assert result.telephone_event_pt == 101
    assert result.remote_address == ("127.0.0.1", 16000)
    assert result.ptime == 20
    assert result.direction is Direction.SENDRECV
    assert not result.on_hold
    assert bytes(result.answer) == sdp(
        "v=0",
        "o=- 7 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 20000 RTP/AVP 8 101",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    )


def test_negotiate_prefers_offerer_order_and_any_telephone_event_pt() -> None:
    result = answer(BARESIP_OFFER)
    # G722 is first but unsupported; PCMU comes before PCMA in the offer.
    assert (result.codec, result.payload_type) == ("PCMU", 0)
    assert result.telephone_event_pt == 96
    assert result.answer.media[0].formats == ("0", "96")
    offer = BARESIP_OFFER.replace(b"RTP/AVP 9 0 8 96", b"RTP/AVP 8 0 96")
    assert answer(offer).codec == "PCMA"
    only_pcmu = answer(offer, supported=("PCMU",))
    assert only_pcmu.codec == "PCMU"


def test_static_payload_types_without_rtpmap_and_no_telephone_event() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 18 8",
    )
    result = answer(offer)
    assert (result.codec, result.payload_type, result.telephone_event_pt) == ("PCMA", 8, None)
    assert result.answer.media[0].formats == ("8",)


def test_dynamic_payload_type_for_pcmu() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 97 98",
        "a=rtpmap:97 pcmu/8000",
        "a=rtpmap:98 telephone-event/8000",
    )
    result = answer(offer)
    assert (result.codec, result.payload_type, result.telephone_event_pt) == ("PCMU", 97, 98)


def test_no_common_codec_is_488() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 18 96",
        "a=rtpmap:96 opus/48000/2",
    )
    with pytest.raises(SdpNegotiationError) as info:
        answer(offer)
    assert info.value.status_code == 488
    assert str(info.value) == "no common audio codec: offered G729, OPUS, supported PCMU, PCMA"


def test_srtp_profile_is_not_acceptable() -> None:
    offer = SIPP_OFFER.replace(b"RTP/AVP", b"RTP/SAVP")
    with pytest.raises(SdpNegotiationError):
        answer(offer)


def test_hold_with_sendonly_and_zero_address() -> None:
    offer = SIPP_OFFER.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0").replace(
        b"a=fmtp:101 0-11,16\r\n", b"a=fmtp:101 0-11,16\r\na=sendonly\r\n"
    )
    result = answer(offer)
    assert result.direction is Direction.RECVONLY
    assert result.remote_address is None
    assert result.on_hold
    assert result.answer.media[0].direction is Direction.RECVONLY


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("recvonly", Direction.SENDONLY),
        ("inactive", Direction.INACTIVE),
        ("sendrecv", Direction.SENDRECV),
    ],
)
def test_answer_direction(offered: str, answered: Direction) -> None:
    # Session-level direction attribute applies to the media section.
    offer = SIPP_OFFER.replace(b"t=0 0\r\n", f"t=0 0\r\na={offered}\r\n".encode())
    result = answer(offer)
    assert result.direction is answered
    assert result.remote_address == ("127.0.0.1", 16000)
    assert result.on_hold is (
        answered is not Direction.SENDRECV and answered is not Direction.SENDONLY
    )


def test_video_line_rejected_with_port_zero_and_media_level_connection() -> None:
    offer = sdp(
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "s=-",
        "t=0 0",
        "m=video 5002 RTP/AVP 96",
        "c=IN IP4 192.0.2.1",
        "a=rtpmap:96 H264/90000",
        "m=audio 5000 RTP/AVP 0",
        "c=IN IP4 192.0.2.2",
        "a=ptime:30",
        "m=audio 5004 RTP/AVP 0",
        "c=IN IP4 192.0.2.3",
    )
    result = answer(offer)
    video, audio, second = result.answer.media
    assert (video.media, video.port, video.formats) == ("video", 0, ("96",))
    assert (audio.media, audio.port) == ("audio", 20000)
    assert second.port == 0  # one audio stream only
    assert result.remote_address == ("192.0.2.2", 5000)
    assert result.ptime == 30
    assert SessionDescription.parse(bytes(result.answer)) == result.answer


def test_offer_answer_between_us() -> None:
    offer = make_offer(
        local_address="::1",
        local_port=30000,
        codecs=("PCMA", "PCMU"),
        session_id=3,
        session_version=9,
        telephone_event_pt=100,
    )
    parsed = SessionDescription.parse(bytes(offer))
    assert parsed == offer
    assert offer.connection is not None and offer.connection.addrtype == "IP6"
    theirs = negotiate(
        parsed,
        local_address="127.0.0.1",
        local_port=40000,
        supported=("PCMU",),
        session_id=5,
        session_version=1,
    )
    assert (theirs.codec, theirs.telephone_event_pt, theirs.remote_address) == (
        "PCMU",
        100,
        ("::1", 30000),
    )
    ours = negotiated_from_answer(offer, SessionDescription.parse(bytes(theirs.answer)))
    assert (ours.codec, ours.payload_type, ours.telephone_event_pt) == ("PCMU", 0, 100)
    assert ours.remote_address == ("127.0.0.1", 40000)
    assert ours.direction is Direction.SENDRECV


def test_make_offer_rejects_unknown_codec() -> None:
    with pytest.raises(ValueError, match="opus"):
        make_offer(
            local_address="127.0.0.1",
            local_port=1,
            codecs=("opus",),
            session_id=1,
            session_version=1,
        )
