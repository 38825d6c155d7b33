from __future__ import annotations

import pytest

from callcenter.rtp.dtmf import (
    DtmfReceiver,
    TelephoneEvent,
    TelephoneEventParseError,
    digit_to_event,
    dtmf_packets,
)


def test_payload_round_trip() -> None:
    data = bytes([5, 0x80 | 10, 0x03, 0x20])
    event = TelephoneEvent.parse(data)
    assert event == TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert event.digit == "5"
    assert bytes(event) == data
    assert TelephoneEvent(11, False, 63, 0).digit == "#"
    assert TelephoneEvent(16, False, 0, 0).digit is None  # flash is not DTMF


def test_parse_error() -> None:
    with pytest.raises(TelephoneEventParseError, match=r"less than 4 bytes \(got 3\)"):
        TelephoneEvent.parse(b"\x01\x02\x03")


def test_digit_mapping() -> None:
    assert [digit_to_event(d) for d in "0*#ad"] == [0, 10, 11, 12, 15]
    with pytest.raises(ValueError, match="not a DTMF digit"):
        digit_to_event("x")


def test_sender_sequence() -> None:
    packets = dtmf_packets("7", duration_ms=100, volume=10)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert len(packets) == 5 + 3
    assert [p.marker for p in packets] == [True] + [False] * 7
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800, 800]
    assert [e.end for e in events] == [False] * 5 + [True] * 3
    assert {e.event for e in events} == {7} and {e.volume for e in events} == {10}
    assert len(dtmf_packets("1", duration_ms=50)) == 3 + 3  # rounded up to whole frames
    with pytest.raises(ValueError, match="volume"):
        dtmf_packets("1", volume=64)


def test_one_digit_per_event_with_retransmissions() -> None:
    receiver = DtmfReceiver()
    digits = []
    for ts, digit in ((1000, "1"), (3000, "2")):
        for packet in dtmf_packets(digit):
            digits.append(receiver.receive(packet.payload, ts))
    # Reported at the first packet; updates and the 3 end packets add nothing.
    assert [d for d in digits if d] == ["1", "2"]
    assert digits[0] == "1" and digits[8] == "2"


def test_repeated_start_and_late_retransmission_deduplicated() -> None:
    receiver = DtmfReceiver()
    start = bytes(TelephoneEvent(3, False, 10, 160))
    end = bytes(TelephoneEvent(3, True, 10, 800))
    assert receiver.receive(start, 500) == "3"
    assert receiver.receive(start, 500) is None
    assert receiver.receive(bytes(TelephoneEvent(4, False, 10, 160)), 2000) == "4"
    assert receiver.receive(end, 500) is None  # old event's end arriving late


def test_same_digit_twice_is_two_events() -> None:
    receiver = DtmfReceiver()
    one = bytes(TelephoneEvent(1, True, 10, 800))
    assert receiver.receive(one, 100) == "1"
    assert receiver.receive(one, 100) is None
    assert receiver.receive(one, 2100) == "1"


def test_lost_start_still_reports_at_first_packet_received() -> None:
    receiver = DtmfReceiver()
    packets = dtmf_packets("9")
    assert [receiver.receive(p.payload, 42) for p in packets[2:]][0] == "9"


def test_non_dtmf_events_and_garbage_ignored() -> None:
    receiver = DtmfReceiver()
    assert receiver.receive(bytes(TelephoneEvent(16, False, 10, 160)), 1) is None
    assert receiver.receive(bytes(TelephoneEvent(200, True, 10, 160)), 2) is None
    assert receiver.receive(b"\x01", 3) is None
    assert receiver.ignored == 3
    assert receiver.receive(bytes(TelephoneEvent(0, False, 10, 160)), 4) == "0"


def test_long_event_continuation_not_reported_twice() -> None:
    # RFC 4733 section 2.5.1.3: an event longer than 0xFFFF units restarts with a new timestamp.
    receiver = DtmfReceiver()
    assert receiver.receive(bytes(TelephoneEvent(5, False, 10, 0xFFFF)), 10) == "5"
    assert receiver.receive(bytes(TelephoneEvent(5, False, 10, 160)), 10 + 0xFFFF) is None
    assert receiver.receive(bytes(TelephoneEvent(5, True, 10, 320)), 10 + 0xFFFF) is None
    assert receiver.receive(bytes(TelephoneEvent(5, False, 10, 160)), 200000) == "5"


def test_reset_forgets_events() -> None:
    receiver = DtmfReceiver()
    payload = bytes(TelephoneEvent(2, False, 10, 160))
    assert receiver.receive(payload, 7) == "2"
    receiver.reset()
    assert receiver.receive(payload, 7) == "2"
