"""Audio relay between two call legs (the B2BUA's media path, issue 5).

Each leg's RTP endpoint delivers the audio it decodes (20 ms frames of PCM16 at 8 kHz) and pulls
the audio it sends on the shared 20 ms clock (:class:`~callcenter.transport.rtp_udp.RtpPacer`).
A :class:`AudioRelay` is one direction: the receiving leg ``push``es, the sending leg ``pull``s.

Both legs tick on the same pacer, so one frame goes in and one comes out per tick; the buffer
only absorbs network jitter and scheduling order. It is bounded (:data:`MAX_FRAMES`): if the far
leg sends faster than we pace (clock drift, a burst after a stall), the oldest frames are
dropped so the conversation's delay never grows — a call centre conversation is interactive,
a delay that creeps up is worse than a dropped 20 ms. An empty buffer yields None, for which the
endpoint sends encoded silence. Pure and synchronous: no asyncio, no IO.
"""

from __future__ import annotations

from collections import deque

FRAME_BYTES = 320
"""20 ms of PCM16 at 8 kHz."""
MAX_FRAMES = 5
"""At most 100 ms of audio waits in one direction."""
PRIME_FRAMES = 2
"""Frames gathered before the first is played out (40 ms absorbs the pacer's ordering)."""


class AudioRelay:
    """One direction of a bridged call: frames pushed by one leg, pulled by the other."""

    def __init__(self, *, max_frames: int = MAX_FRAMES, prime_frames: int = PRIME_FRAMES) -> None:
        """A relay holding at most ``max_frames``, playing out after ``prime_frames``.

        Raises:
            ValueError: ``prime_frames`` is not between 0 and ``max_frames``.
        """
        if not 0 <= prime_frames <= max_frames:
            raise ValueError("prime_frames must be between 0 and max_frames")
        self._frames: deque[bytes] = deque()
        self._max = max_frames
        self._prime = prime_frames
        self._primed = prime_frames == 0
        self.dropped = 0
        """Frames dropped because the buffer was full (the far leg ran ahead)."""
        self.underruns = 0
        """Pulls that found nothing once playing (the far leg was late or silent)."""
        self.muted = False
        """While True, pulls return None (silence) and pushed audio is discarded (mute/hold)."""

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, pcm: bytes) -> None:
        """Add audio received from one leg (any length; cut or padded to 20 ms frames)."""
        if self.muted:
            return
        for start in range(0, len(pcm), FRAME_BYTES):
            frame = pcm[start : start + FRAME_BYTES]
            if len(frame) < FRAME_BYTES:
                frame += bytes(FRAME_BYTES - len(frame))
            if len(self._frames) >= self._max:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
        if not self._primed and len(self._frames) >= self._prime:
            self._primed = True

    def pull(self) -> bytes | None:
        """The next 20 ms for the other leg, or None (send silence)."""
        if self.muted or not self._primed:
            return None
        if not self._frames:
            self.underruns += 1
            # Re-prime after a gap so a late burst is not played at once then starved again.
            self._primed = self._prime == 0
            return None
        return self._frames.popleft()

    def clear(self) -> None:
        """Forget buffered audio (e.g. when the other leg changes) and prime again."""
        self._frames.clear()
        self._primed = self._prime == 0
