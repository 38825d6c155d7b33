"""The frame processor base class (pipecat style).

A processor overrides exactly one method, :meth:`FrameProcessor.process_frame`, and forwards
with :meth:`FrameProcessor.push_frame` whatever it does not consume. Processors are linked in a
chain by :class:`~callcenter.media.pipeline.Pipeline`; pushing a frame is a direct ``await`` of
the neighbour (no queue, no task per frame), so a chain of processors costs a few function calls.

Synchronous code (timer callbacks, the RTP sender pulling audio) cannot await: it uses
:meth:`FrameProcessor.push_frame_nowait`, which hands the frame to the pipeline's task.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING, TypeAlias

from callcenter.media.frames import Frame

if TYPE_CHECKING:
    from callcenter.media.pipeline import Pipeline

__all__ = ["FrameDirection", "FrameProcessor", "ProcessorLogger"]

ProcessorLogger: TypeAlias = "logging.Logger | logging.LoggerAdapter[logging.Logger]"

_logger = logging.getLogger(__name__)


class FrameDirection(enum.Enum):
    """Which way a frame travels along the chain."""

    DOWNSTREAM = enum.auto()
    """From the pipeline's source (call controller, caller's leg) towards its sink."""
    UPSTREAM = enum.auto()
    """From the sink back towards the source (notifications, e.g. prompt finished)."""


class FrameProcessor:
    """One stage of a media pipeline.

    Subclasses override :meth:`process_frame` only. A processor that raises while processing a
    frame does not stop the pipeline: the error is logged with the call's logger and the frame is
    forwarded unchanged (unless the processor had already forwarded it), so nothing is lost.
    ``asyncio.CancelledError`` is never caught.
    """

    def __init__(self, *, name: str | None = None) -> None:
        """Create an unlinked processor.

        Args:
            name: Name used in log messages (defaults to the class name).
        """
        self.name: str = name or type(self).__name__
        self.logger: ProcessorLogger = _logger
        self._prev: FrameProcessor | None = None
        self._next: FrameProcessor | None = None
        self._pipeline: Pipeline | None = None
        # The frame being processed, cleared when the processor forwards it: tells the error
        # path whether forwarding it would duplicate it.
        self._in_flight: Frame | None = None

    def link(self, next_processor: FrameProcessor) -> None:
        """Make ``next_processor`` this processor's downstream neighbour.

        Args:
            next_processor: The processor that receives this one's downstream frames.
        """
        self._next = next_processor
        next_processor._prev = self

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Handle one frame; the default forwards it unchanged.

        Args:
            frame: The frame received.
            direction: Which way it travels.
        """
        await self.push_frame(frame, direction)

    async def push_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        """Hand a frame to the neighbour in ``direction`` and wait until it has processed it.

        Args:
            frame: The frame to forward or emit.
            direction: Downstream (default) or upstream.
        """
        if frame is self._in_flight:
            self._in_flight = None
        target = self._next if direction is FrameDirection.DOWNSTREAM else self._prev
        if target is not None:
            await target._receive(frame, direction)

    def push_frame_nowait(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        """Schedule a push from synchronous code; the pipeline's task delivers it in order.

        Args:
            frame: The frame to emit.
            direction: Downstream (default) or upstream.
        """
        if self._pipeline is None:
            self.logger.warning("%s: no pipeline, dropped %s", self.name, type(frame).__name__)
            return
        self._pipeline._schedule(self, frame, direction)

    async def _receive(self, frame: Frame, direction: FrameDirection) -> None:
        outer = self._in_flight
        self._in_flight = frame
        try:
            await self.process_frame(frame, direction)
        except Exception:
            self.logger.exception("%s failed on %s", self.name, type(frame).__name__)
            if self._in_flight is frame:
                self._in_flight = None
                await self.push_frame(frame, direction)
        finally:
            self._in_flight = outer
