from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from callcenter.rtp.jitter import JitterBuffer, SequenceExtender


def feed(jb: JitterBuffer[int], seqs: list[int]) -> list[int]:
    out: list[int] = []
    for seq in seqs:
        out.extend(item for _, item in jb.put(seq, seq))
    return out


def test_in_order_packets_leave_immediately() -> None:
    jb: JitterBuffer[int] = JitterBuffer(capacity=4)
    for seq in range(10, 20):
        assert jb.put(seq, seq) == [(seq, seq)]
    assert jb.stats.released == 10 and jb.stats.lost == 0


def test_reordering_within_capacity() -> None:
    jb: JitterBuffer[int] = JitterBuffer(capacity=4)
    assert feed(jb, [1, 3, 4, 2, 5]) == [1, 2, 3, 4, 5]
    assert jb.stats.lost == 0 and jb.stats.late == 0


def test_duplicates_and_late_packets_dropped() -> None:
    jb: JitterBuffer[int] = JitterBuffer(capacity=4)
    assert feed(jb, [1, 2, 2, 4, 4, 1]) == [1, 2]
    assert jb.stats.duplicates == 1  # the second 4 while 4 waits
    assert jb.stats.late == 2  # the second 2 and the 1 were already released


def test_loss_declared_when_capacity_reached() -> None:
    jb: JitterBuffer[int] = JitterBuffer(capacity=3)
    assert feed(jb, [1, 3, 4]) == [1]
    assert feed(jb, [5]) == [3, 4, 5]
    assert jb.stats.lost == 1
    # The missing packet arriving afterwards is too late.
    assert feed(jb, [2]) == []
    assert jb.stats.late == 1


def test_sequence_wrap_at_65535() -> None:
    jb: JitterBuffer[int] = JitterBuffer(capacity=4)
    seqs = [65533, 65534, 0, 65535, 1, 2]
    out = []
    for seq in seqs:
        out.extend(jb.put(seq, seq))
    assert [ext for ext, _ in out] == [65533, 65534, 65535, 65536, 65537, 65538]
    assert [item for _, item in out] == [65533, 65534, 65535, 0, 1, 2]
    assert jb.stats.lost == 0


def test_big_jump_needs_confirmation_then_resyncs() -> None:
    jb: JitterBuffer[int] = JitterBuffer(capacity=4)
    assert feed(jb, [100, 101]) == [100, 101]
    assert feed(jb, [30000]) == []  # not believed alone (RFC 3550 A.1)
    assert feed(jb, [30001]) == [30001]  # two in a row: the source restarted
    assert feed(jb, [30002]) == [30002]
    assert jb.stats.resyncs == 1


def test_reset_forgets_sequence_state() -> None:
    jb: JitterBuffer[int] = JitterBuffer(capacity=4)
    feed(jb, [10, 12])
    assert len(jb) == 1
    jb.reset()
    assert len(jb) == 0
    assert feed(jb, [5000, 5001]) == [5000, 5001]


def test_flush_releases_waiting_and_counts_holes() -> None:
    jb: JitterBuffer[int] = JitterBuffer(capacity=10)
    feed(jb, [1, 3, 6])
    assert [item for _, item in jb.flush()] == [3, 6]
    assert jb.stats.lost == 3


def test_extender_backwards_across_wrap() -> None:
    ext = SequenceExtender()
    assert ext.extend(2) == (2, False)
    assert ext.extend(65535) == (None, False)  # would be before the first packet
    assert ext.extend(3) == (3, False)


@given(st.integers(0, 0xFFFF), st.integers(1, 6), st.integers(10, 40))
def test_bounded_reordering_is_undone(start: int, window: int, count: int) -> None:
    # Packet 0 first (it sets the start), then blocks of `window` packets each reversed:
    # at most window - 1 wait behind a hole, less than the capacity, so nothing is lost.
    rest = list(range(1, count))
    arrival = [0] + [n for i in range(0, len(rest), window) for n in reversed(rest[i : i + window])]
    jb: JitterBuffer[int] = JitterBuffer(capacity=window)
    out = []
    for n in arrival:
        out.extend(jb.put((start + n) & 0xFFFF, n))
    assert [item for _, item in out] == list(range(count))
    assert [ext for ext, _ in out] == list(range(start, start + count))
    assert jb.stats.lost == 0 and jb.stats.late == 0
