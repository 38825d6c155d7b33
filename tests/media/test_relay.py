"""The bridged call's audio relay: bounded delay, priming, mute."""

from __future__ import annotations

import pytest

from callcenter.media.relay import FRAME_BYTES, AudioRelay


def frame(n: int) -> bytes:
    return bytes([n % 256]) * FRAME_BYTES


def test_frames_come_out_in_order_after_priming() -> None:
    relay = AudioRelay(prime_frames=2)
    relay.push(frame(1))
    assert relay.pull() is None  # priming: one frame is not enough
    relay.push(frame(2))
    assert relay.pull() == frame(1)
    relay.push(frame(3))
    assert relay.pull() == frame(2)
    assert relay.pull() == frame(3)
    assert relay.pull() is None and relay.underruns == 1
    relay.push(frame(4))
    assert relay.pull() is None  # primes again after a gap
    relay.push(frame(5))
    assert [relay.pull(), relay.pull()] == [frame(4), frame(5)]


def test_delay_is_bounded_by_dropping_the_oldest() -> None:
    relay = AudioRelay(max_frames=5, prime_frames=0)
    for n in range(12):
        relay.push(frame(n))
    assert len(relay) == 5 and relay.dropped == 7
    assert [relay.pull() for _ in range(5)] == [frame(n) for n in range(7, 12)]


def test_odd_lengths_are_cut_into_padded_frames() -> None:
    relay = AudioRelay(prime_frames=0)
    relay.push(b"\x01" * (FRAME_BYTES + 10))
    assert relay.pull() == b"\x01" * FRAME_BYTES
    assert relay.pull() == b"\x01" * 10 + bytes(FRAME_BYTES - 10)


def test_mute_discards_and_silences() -> None:
    relay = AudioRelay(prime_frames=0)
    relay.push(frame(1))
    relay.muted = True
    relay.push(frame(2))
    assert relay.pull() is None
    relay.muted = False
    assert relay.pull() == frame(1) and relay.pull() is None
    relay.push(frame(3))
    relay.clear()
    assert relay.pull() is None


def test_priming_must_fit() -> None:
    with pytest.raises(ValueError, match="prime_frames"):
        AudioRelay(max_frames=2, prime_frames=3)
