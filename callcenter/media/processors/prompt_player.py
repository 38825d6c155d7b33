"""Prompt playback, pulled 20 ms at a time by the paced RTP sender.

The processor receives :class:`PlayPromptFrame` commands in the pipeline and keeps a playlist.
The RTP sender calls :meth:`PromptPlayerProcessor.next_frame` every 20 ms (synchronously, from
its own task): it gets 320 bytes of PCM16 (160 samples at 8 kHz, ``g711.SAMPLES_PER_FRAME``) or
``None`` when there is nothing to play (the sender then sends silence or nothing).

Notifications (:class:`PromptStartedFrame`, :class:`PromptFinishedFrame`) go **upstream**, so the
DTMF aggregator placed before the player learns that a prompt plays, and then leave the pipeline
through ``on_output`` to the call controller. All are handed to the pipeline's task with
:meth:`push_frame_nowait`: no await in the sender's path, and they come out in order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from callcenter.media.frames import (
    BargeInFrame,
    CancelFrame,
    Frame,
    PlayPromptFrame,
    PromptFinishedFrame,
    PromptStartedFrame,
    StopPromptFrame,
)
from callcenter.media.processor import FrameDirection, FrameProcessor
from callcenter.media.tts.prompt_cache import PromptCache
from callcenter.rtp.codecs.g711 import FRAME_BYTES  # 20 ms (RFC 3551 section 4.5)

__all__ = ["FRAME_BYTES", "PromptPlayerProcessor"]


_SILENCE = bytes(FRAME_BYTES)
_UPSTREAM = FrameDirection.UPSTREAM


@dataclass(slots=True)
class _Playing:
    prompt_id: str
    interruptible: bool
    pcm: bytes
    offset: int = 0


class PromptPlayerProcessor(FrameProcessor):
    """Plays cached prompts in order; barge-in stops the interruptible ones."""

    def __init__(
        self, cache: PromptCache, *, max_wait_frames: int = 50, name: str | None = None
    ) -> None:
        """Create a player.

        Args:
            cache: Where prompt audio is taken from.
            max_wait_frames: How many 20 ms ticks a prompt whose audio is not ready may delay
                the playlist before it is skipped (reported as interrupted).
            name: Log name.
        """
        super().__init__(name=name)
        self.cache = cache
        self.max_wait_frames = max_wait_frames
        self.underruns = 0
        """Ticks where a prompt was scheduled but its audio was not ready."""
        self._queue: deque[PlayPromptFrame] = deque()
        self._current: _Playing | None = None
        self._waited = 0

    @property
    def playing(self) -> str | None:
        """The prompt id currently playing, if any."""
        return None if self._current is None else self._current.prompt_id

    @property
    def pending(self) -> tuple[str, ...]:
        """Prompt ids queued after the current one."""
        return tuple(frame.prompt_id for frame in self._queue)

    def next_frame(self) -> bytes | None:
        """Return the next 20 ms of prompt audio, or ``None`` when idle.

        Called synchronously by the RTP sender every 20 ms. The last frame of a prompt is
        zero-padded to 320 bytes; the next prompt starts on the following call (no gap).

        Returns:
            320 bytes of PCM16 LE at 8 kHz, or ``None`` if nothing is playing.
        """
        current = self._current
        if current is None:
            current = self._start_next()
            if current is None:
                return None
        start = current.offset
        chunk = current.pcm[start : start + FRAME_BYTES]
        current.offset = start + FRAME_BYTES
        if current.offset >= len(current.pcm):
            self._current = None
            self.push_frame_nowait(PromptFinishedFrame(current.prompt_id, False), _UPSTREAM)
        if len(chunk) < FRAME_BYTES:
            chunk += _SILENCE[len(chunk) :]
        return chunk

    def _start_next(self) -> _Playing | None:
        while self._queue:
            frame = self._queue[0]
            try:
                pcm = self.cache.get(frame.prompt_id)
            except KeyError:
                # Scheduled but not ready: an underrun. Wait a little (a render may be in
                # flight), then skip it so the call does not hang on a missing prompt.
                self.underruns += 1
                self._waited += 1
                if self._waited < self.max_wait_frames:
                    return None
                self.logger.error("prompt %r has no audio, skipped", frame.prompt_id)
                self._queue.popleft()
                self._waited = 0
                self.push_frame_nowait(PromptFinishedFrame(frame.prompt_id, True), _UPSTREAM)
                continue
            self._queue.popleft()
            self._waited = 0
            if not pcm:
                self.push_frame_nowait(PromptFinishedFrame(frame.prompt_id, False), _UPSTREAM)
                continue
            self._current = _Playing(frame.prompt_id, frame.interruptible, pcm)
            self.push_frame_nowait(PromptStartedFrame(frame.prompt_id), _UPSTREAM)
            return self._current
        return None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Queue prompts, stop them on barge-in or stop, forward everything else.

        Args:
            frame: The frame received.
            direction: Which way it travels.
        """
        if isinstance(frame, PlayPromptFrame):
            self._queue.append(frame)
        elif isinstance(frame, BargeInFrame | StopPromptFrame):
            self._interrupt()
            if isinstance(frame, BargeInFrame):  # others (the controller) may care too
                await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            self._queue.clear()
            self._current = None
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    def _interrupt(self) -> None:
        # Notifications all go through the pipeline's queue, so "finished" can never overtake
        # a "started" that next_frame() scheduled a moment ago.
        current = self._current
        if current is not None and current.interruptible:
            self._current = None
            self.push_frame_nowait(PromptFinishedFrame(current.prompt_id, True), _UPSTREAM)
        # Queued legal or emergency notices still play; interruptible ones are flushed.
        kept: deque[PlayPromptFrame] = deque()
        for queued in self._queue:
            if queued.interruptible:
                self.push_frame_nowait(PromptFinishedFrame(queued.prompt_id, True), _UPSTREAM)
            else:
                kept.append(queued)
        self._queue = kept
        self._waited = 0
