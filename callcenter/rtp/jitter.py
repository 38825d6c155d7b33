"""A reordering jitter buffer keyed by extended sequence number, sans-IO.

This module owns:

- Rule 1 (RFC 3550 appendix A.1): the 16-bit sequence number is extended with a cycle count;
  a jump of more than ``MAX_DROPOUT`` ahead or ``MAX_MISORDER`` behind is not believed until
  two consecutive packets confirm it (the source restarted), and then the buffer resyncs.
- Rule 2: packets leave in sequence order. A packet that fills the next expected slot leaves at
  once, so in-order traffic is not delayed at all (what an IVR listening for speech wants). When a
  packet is missing, later packets wait until either it arrives or ``capacity`` packets are
  waiting; the missing ones are then counted lost and skipped.
- Rule 3: duplicates and packets older than what already left ("too late") are dropped and
  counted.

This is a fixed-depth reordering buffer, not a playout-delay buffer: the playout clock belongs
to the consumer. Call :meth:`JitterBuffer.reset` when the SSRC changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["MAX_DROPOUT", "MAX_MISORDER", "JitterBuffer", "JitterStats", "SequenceExtender"]

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100

T = TypeVar("T")


class SequenceExtender:
    """Extends 16-bit RTP sequence numbers (RFC 3550 appendix A.1)."""

    __slots__ = ("_bad_seq", "_max_ext")

    def __init__(self) -> None:
        self._max_ext: int | None = None
        self._bad_seq: int | None = None

    def reset(self) -> None:
        self._max_ext = None
        self._bad_seq = None

    @property
    def highest(self) -> int | None:
        """Highest extended sequence number seen so far."""
        return self._max_ext

    def extend(self, seq: int) -> tuple[int | None, bool]:
        """Extended sequence number of ``seq``, and whether the source restarted.

        Returns ``(None, False)`` for a packet that jumps too far and is not (yet) believed.
        """
        if self._max_ext is None:
            self._max_ext = seq
            return seq, False
        max_seq = self._max_ext & 0xFFFF
        delta = (seq - max_seq) & 0xFFFF
        if delta < MAX_DROPOUT:
            # In order, possibly with a gap; wrap handled by the modular delta.
            ext = self._max_ext + delta
            self._max_ext = ext
            self._bad_seq = None
            return ext, False
        if delta >= RTP_SEQ_MOD - MAX_MISORDER:
            # Duplicate or reordered packet, slightly behind.
            ext = self._max_ext - (RTP_SEQ_MOD - delta)
            return (ext, False) if ext >= 0 else (None, False)
        # A very large jump: believe it only if the next packet follows it (A.1 bad_seq).
        if self._bad_seq is not None and seq == self._bad_seq:
            self._bad_seq = None
            cycles = (self._max_ext >> 16) + 1
            ext = (cycles << 16) | seq
            self._max_ext = ext
            return ext, True
        self._bad_seq = (seq + 1) & 0xFFFF
        return None, False


@dataclass(slots=True)
class JitterStats:
    """Counters of a :class:`JitterBuffer` (mutable, read them at any time)."""

    received: int = 0
    """Packets offered to the buffer."""
    released: int = 0
    """Packets that left the buffer in order."""
    lost: int = 0
    """Sequence numbers skipped as never received."""
    late: int = 0
    """Packets dropped because they arrived after their slot had been skipped or released."""
    duplicates: int = 0
    """Packets dropped because the same sequence number was already waiting."""
    resyncs: int = 0
    """Sequence discontinuities accepted as a source restart (RFC 3550 appendix A.1)."""


class JitterBuffer(Generic[T]):
    """Reorders items (RTP packets) by sequence number; see the module docstring."""

    def __init__(self, capacity: int = 4) -> None:
        """Create an empty buffer.

        Args:
            capacity: how many packets may wait behind a missing one before it is declared lost
                (4 × 20 ms = 80 ms of reordering tolerance).
        """
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self.stats = JitterStats()
        self._seq = SequenceExtender()
        self._next: int | None = None
        self._waiting: dict[int, T] = {}

    def reset(self) -> None:
        """Forget the sequence state and drop waiting packets (e.g. on SSRC change)."""
        self._seq.reset()
        self._next = None
        self._waiting.clear()

    def __len__(self) -> int:
        return len(self._waiting)

    def put(self, sequence_number: int, item: T) -> list[tuple[int, T]]:
        """Add one packet; return the (extended sequence, item) pairs now ready, in order."""
        self.stats.received += 1
        ext, restarted = self._seq.extend(sequence_number)
        if ext is None:
            # Not believed yet (RFC 3550 A.1): counted as late/out of window.
            self.stats.late += 1
            return []
        if restarted:
            self.stats.resyncs += 1
            self._waiting.clear()
            self._next = ext
        if self._next is None:
            self._next = ext
        if ext < self._next:
            self.stats.late += 1
            return []
        if ext in self._waiting:
            self.stats.duplicates += 1
            return []
        if ext == self._next and not self._waiting:
            # Fast path: in order, nothing waiting.
            self._next = ext + 1
            self.stats.released += 1
            return [(ext, item)]
        self._waiting[ext] = item
        return self._drain()

    def flush(self) -> list[tuple[int, T]]:
        """Release everything waiting, in order, counting the holes as lost."""
        out: list[tuple[int, T]] = []
        for ext in sorted(self._waiting):
            assert self._next is not None
            self.stats.lost += ext - self._next
            out.append((ext, self._waiting[ext]))
            self._next = ext + 1
        self._waiting.clear()
        self.stats.released += len(out)
        return out

    def _drain(self) -> list[tuple[int, T]]:
        out: list[tuple[int, T]] = []
        waiting = self._waiting
        assert self._next is not None
        while waiting:
            if self._next in waiting:
                out.append((self._next, waiting.pop(self._next)))
                self._next += 1
                continue
            if len(waiting) < self.capacity:
                break
            # Too many waiting behind a hole: the missing packets are lost.
            first = min(waiting)
            self.stats.lost += first - self._next
            self._next = first
        self.stats.released += len(out)
        return out
