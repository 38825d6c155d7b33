"""Processor test harness (pipecat ``run_test`` style).

``run_test(processor, frames_to_send=[...], expected_down_frames=[types])`` runs the processor(s)
in a real :class:`Pipeline` between two capture stages and checks the frame types that came out
downstream (and optionally upstream). :class:`SleepFrame` in ``frames_to_send`` waits instead of
sending, for timers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType

from callcenter.media.frames import Frame
from callcenter.media.pipeline import Pipeline
from callcenter.media.processor import FrameDirection, FrameProcessor


@dataclass(frozen=True, slots=True)
class SleepFrame(Frame):
    """Harness-only: wait ``seconds`` before sending the next frame."""

    seconds: float


@dataclass(frozen=True, slots=True)
class CallFrame(Frame):
    """Harness-only: call ``fn()`` (e.g. a player pull) at this point of the sequence."""

    fn: Callable[[], object]


class _Capture(FrameProcessor):
    def __init__(self, keep: FrameDirection) -> None:
        super().__init__(name=f"capture-{keep.name.lower()}")
        self.keep = keep
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if direction is self.keep:
            self.frames.append(frame)
        await self.push_frame(frame, direction)


class PipelineHarness:
    """A running pipeline ``[up-capture, *processors, down-capture]``."""

    def __init__(self, processors: FrameProcessor | Sequence[FrameProcessor]) -> None:
        procs = [processors] if isinstance(processors, FrameProcessor) else list(processors)
        self._up = _Capture(FrameDirection.UPSTREAM)
        self._down = _Capture(FrameDirection.DOWNSTREAM)
        self.output: list[Frame] = []
        self.pipeline = Pipeline([self._up, *procs, self._down], on_output=self.output.append)

    @property
    def down(self) -> list[Frame]:
        """Frames that reached the sink side, StartFrame excluded."""
        return [f for f in self._down.frames if type(f).__name__ != "StartFrame"]

    @property
    def up(self) -> list[Frame]:
        """Frames that reached the source side."""
        return list(self._up.frames)

    async def send(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        if isinstance(frame, SleepFrame):
            await asyncio.sleep(frame.seconds)
        elif isinstance(frame, CallFrame):
            frame.fn()
        else:
            await self.pipeline.queue_frame(frame, direction)
        await self.settle()

    async def settle(self) -> None:
        """Let the pipeline task process everything queued so far."""
        for _ in range(3):
            await asyncio.sleep(0)
        for _ in range(10_000):
            if not self.pipeline.pending_frames:
                break
            await asyncio.sleep(0)
        await asyncio.sleep(0)

    async def __aenter__(self) -> PipelineHarness:
        await self.pipeline.__aenter__()
        await self.settle()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.pipeline.__aexit__(exc_type, exc, tb)


async def run_test(
    processors: FrameProcessor | Sequence[FrameProcessor],
    *,
    frames_to_send: Sequence[Frame],
    expected_down_frames: Sequence[type[Frame]],
    expected_up_frames: Sequence[type[Frame]] | None = None,
) -> tuple[list[Frame], list[Frame]]:
    """Send frames through the processor(s) and check what came out.

    Returns:
        The frames received downstream and upstream, for further assertions.
    """
    async with PipelineHarness(processors) as harness:
        for frame in frames_to_send:
            await harness.send(frame)
        down, up = harness.down, harness.up
    assert [type(f) for f in down] == list(expected_down_frames), down
    if expected_up_frames is not None:
        assert [type(f) for f in up] == list(expected_up_frames), up
    return down, up
