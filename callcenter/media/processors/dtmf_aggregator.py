"""DTMF aggregation: keypad digits into strings, with terminator, length and timeout.

Place it **before** the prompt player (``Pipeline([DtmfAggregatorProcessor(), player])``): it sees
:class:`PlayPromptFrame` going down and :class:`PromptFinishedFrame` coming back up, so it knows
whether a prompt is playing or queued, which decides barge-in and when the timeout runs.

Rules, in order:

1. A digit received while no collection is armed is kept (type-ahead, bounded) and used by the
   next :class:`CollectDigitsFrame`: callers who know the menu press early.
2. A digit used by an armed collection while a prompt plays emits :class:`BargeInFrame` first.
3. A collection ends on its terminator (multi-digit only; not included), on ``max_digits``, or
   when ``timeout_s`` passes without a digit: then :class:`DigitsCollectedFrame` with what was
   pressed, or :class:`DigitsTimeoutFrame` if nothing was. The timeout only runs while no prompt
   is playing, so it counts from the end of the menu prompt.
4. When the collection names ``allowed`` digits, any other digit neither barges in nor counts:
   it is kept as type-ahead for a later collection (e.g. a caller pressing the menu key during
   the welcome message, whose collection only accepts 0). Without ``allowed`` every digit
   counts and the flow decides validity.

Timers are ``loop.call_later`` handles (no task per digit), cancelled on :class:`CancelFrame`.
"""

from __future__ import annotations

import asyncio
from collections import deque

from callcenter.media.frames import (
    BargeInFrame,
    CancelFrame,
    CollectDigitsFrame,
    DigitsCollectedFrame,
    DigitsTimeoutFrame,
    DtmfFrame,
    Frame,
    PlayPromptFrame,
    PromptFinishedFrame,
)
from callcenter.media.processor import FrameDirection, FrameProcessor

__all__ = ["DtmfAggregatorProcessor"]

_DOWN = FrameDirection.DOWNSTREAM


class DtmfAggregatorProcessor(FrameProcessor):
    """Collects :class:`DtmfFrame` digits into strings on :class:`CollectDigitsFrame` request."""

    def __init__(self, *, max_typeahead: int = 32, name: str | None = None) -> None:
        """Create an aggregator.

        Args:
            max_typeahead: Digits kept while no collection is armed (oldest dropped beyond).
            name: Log name.
        """
        super().__init__(name=name)
        self._typeahead: deque[str] = deque(maxlen=max_typeahead)
        self._collect: CollectDigitsFrame | None = None
        self._digits: list[str] = []
        self._prompts = 0  # prompts queued or playing downstream
        self._timer: asyncio.TimerHandle | None = None

    @property
    def collecting(self) -> bool:
        """Whether a collection is armed."""
        return self._collect is not None

    @property
    def typeahead(self) -> str:
        """Digits buffered for the next collection."""
        return "".join(self._typeahead)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Aggregate digits and track prompts; forward everything but digits and requests.

        Args:
            frame: The frame received.
            direction: Which way it travels.
        """
        if isinstance(frame, DtmfFrame):
            if self._collect is None or not self._accepts(self._collect, frame.digit):
                self._typeahead.append(frame.digit)
            else:
                await self._add_digit(frame.digit)
        elif isinstance(frame, CollectDigitsFrame):
            await self._arm(frame)
        elif isinstance(frame, PlayPromptFrame):
            self._prompts += 1
            await self.push_frame(frame, direction)
        elif isinstance(frame, PromptFinishedFrame):
            self._prompts = max(0, self._prompts - 1)
            await self.push_frame(frame, direction)
            self._maybe_start_timer()
        elif isinstance(frame, CancelFrame):
            self._reset()
            self._typeahead.clear()
            self._prompts = 0
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    @staticmethod
    def _accepts(request: CollectDigitsFrame, digit: str) -> bool:
        return request.allowed is None or digit in request.allowed

    async def _arm(self, request: CollectDigitsFrame) -> None:
        self._reset()
        self._collect = request
        kept: list[str] = []
        while self._typeahead and self._collect is request:
            digit = self._typeahead.popleft()
            if self._accepts(request, digit):
                await self._add_digit(digit)
            else:
                kept.append(digit)
        # Digits this collection does not accept wait, in order, for a later one.
        self._typeahead.extendleft(reversed(kept))
        self._maybe_start_timer()

    async def _add_digit(self, digit: str) -> None:
        request = self._collect
        assert request is not None
        self._cancel_timer()
        if self._prompts:
            # Barge-in hook: the player stops the prompt; its "finished" notifications come
            # back up through us shortly and restart the timeout then.
            await self.push_frame(BargeInFrame(), _DOWN)
        terminator = request.terminator if request.max_digits > 1 else None
        if digit == terminator:
            await self._finish()
            return
        self._digits.append(digit)
        if len(self._digits) >= request.max_digits:
            await self._finish()
        else:
            self._maybe_start_timer()

    async def _finish(self) -> None:
        digits = "".join(self._digits)
        self._reset()
        await self.push_frame(DigitsCollectedFrame(digits), _DOWN)

    def _maybe_start_timer(self) -> None:
        if self._collect is None or self._prompts or self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._collect.timeout_s, self._on_timeout)

    def _on_timeout(self) -> None:
        self._timer = None
        if self._collect is None:
            return
        digits = "".join(self._digits)
        self._reset()
        result = DigitsCollectedFrame(digits) if digits else DigitsTimeoutFrame()
        self.push_frame_nowait(result, _DOWN)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _reset(self) -> None:
        self._cancel_timer()
        self._collect = None
        self._digits = []
