"""A linear chain of frame processors with a source and a sink (pipecat ``Pipeline``).

The call controller feeds the pipeline with :meth:`Pipeline.queue_frame` and learns what comes
out of either end through the ``on_output`` callback::

    pipeline = Pipeline(
        [DtmfAggregatorProcessor(), PromptPlayerProcessor(cache)],
        on_output=controller.on_media_frame,
        logger=call_logger,
    )
    async with asyncio.TaskGroup() as tg:
        tg.create_task(pipeline.run(), name=f"pipeline-{call_id}")
        await pipeline.queue_frame(PlayPromptFrame("welcome"))

Costs: one task per pipeline (its :meth:`Pipeline.run`), never one per frame. System frames skip
the queue and are processed at once in the caller's task; data and control frames queued by the
controller are processed in order by the pipeline's task, and those still waiting are dropped
when a :class:`~callcenter.media.frames.BargeInFrame` reaches either end.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeAlias

from callcenter.media.frames import BargeInFrame, CancelFrame, Frame, StartFrame, SystemFrame
from callcenter.media.processor import FrameDirection, FrameProcessor, ProcessorLogger

__all__ = ["OutputCallback", "Pipeline"]

OutputCallback: TypeAlias = Callable[[Frame], "Awaitable[None] | None"]
"""Receives every frame that leaves the pipeline at either end (may be sync or async)."""


class _PipelineEnd(FrameProcessor):
    """Source or sink: delivers frames that reach an end to the pipeline's ``on_output``."""

    def __init__(self, pipeline: Pipeline, name: str) -> None:
        super().__init__(name=name)
        self._owner = pipeline

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await self._owner._output(frame)


class Pipeline:
    """Links processors between a source and a sink and runs their queued frames in order."""

    def __init__(
        self,
        processors: Sequence[FrameProcessor],
        *,
        on_output: OutputCallback | None = None,
        logger: ProcessorLogger | None = None,
        name: str = "pipeline",
    ) -> None:
        """Link ``processors`` in order.

        Args:
            processors: The chain, from the source side (caller input) to the sink side.
            on_output: Called with each frame that leaves the pipeline at either end.
            logger: The call's ``LoggerAdapter``; given to every processor.
            name: Task and log name.
        """
        self.name = name
        self._on_output = on_output
        self._source = _PipelineEnd(self, f"{name}-source")
        self._sink = _PipelineEnd(self, f"{name}-sink")
        self.processors: tuple[FrameProcessor, ...] = tuple(processors)
        chain: list[FrameProcessor] = [self._source, *self.processors, self._sink]
        for proc, nxt in zip(chain, chain[1:], strict=False):
            proc.link(nxt)
        for proc in chain:
            proc._pipeline = self
            if logger is not None:
                proc.logger = logger
        self.logger = self._source.logger
        # (origin, frame, direction, from_controller): origin.push_frame(frame, direction).
        self._items: deque[tuple[FrameProcessor, Frame, FrameDirection, bool]] = deque()
        self._wakeup = asyncio.Event()
        self._started = asyncio.Event()
        self._running = False
        self._stopping = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    async def queue_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        """Feed a frame into the pipeline from the controller.

        System frames are processed before this returns; other frames are queued and processed
        in order by :meth:`run`.

        Args:
            frame: The frame to inject.
            direction: ``DOWNSTREAM`` enters at the source (default), ``UPSTREAM`` at the sink.
        """
        if self._closed:
            return
        origin = self._source if direction is FrameDirection.DOWNSTREAM else self._sink
        if isinstance(frame, SystemFrame):
            await origin.push_frame(frame, direction)
        else:
            self._items.append((origin, frame, direction, True))
            self._wakeup.set()

    def queue_frame_nowait(self, frame: Frame) -> None:
        """Queue a non-system frame downstream from synchronous code (e.g. received audio).

        Unlike :meth:`queue_frame`, the frame is not dropped by a barge-in: audio that arrives
        while the caller interrupts a prompt belongs to what the caller is saying.

        Args:
            frame: A data or control frame.
        """
        if isinstance(frame, SystemFrame):
            raise TypeError("system frames must go through queue_frame")
        self._schedule(self._source, frame, FrameDirection.DOWNSTREAM)

    @property
    def pending_frames(self) -> int:
        """Frames queued and not yet processed by :meth:`run`."""
        return len(self._items)

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is active."""
        return self._running

    async def run(self) -> None:
        """Process queued frames until :meth:`stop` is called or the task is cancelled.

        Sends a :class:`StartFrame` first and a :class:`CancelFrame` on the way out, so processors
        cancel their timers.
        """
        if self._running or self._closed:
            raise RuntimeError(f"{self.name} is already running or closed")
        self._running = True
        try:
            await self._source.push_frame(StartFrame())
            self._started.set()
            while True:
                while self._items:
                    origin, frame, direction, _ = self._items.popleft()
                    await origin.push_frame(frame, direction)
                if self._stopping:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
        finally:
            self._closed = True
            self._running = False
            self._items.clear()
            # No suspension point in a CancelFrame's path for well-behaved processors, so this
            # completes even while the task is being cancelled.
            await self._source.push_frame(CancelFrame())

    async def stop(self) -> None:
        """Ask :meth:`run` to return once the frames already queued are processed."""
        self._stopping = True
        self._wakeup.set()

    async def __aenter__(self) -> Pipeline:
        self._task = asyncio.create_task(self.run(), name=self.name)
        # Return once StartFrame has gone through, so no frame overtakes it.
        started = asyncio.create_task(self._started.wait(), name=f"{self.name}-started")
        await asyncio.wait((self._task, started), return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            # Only swallow the child's cancellation, never our own (pipecat `cancelling()` check).
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    def _schedule(self, origin: FrameProcessor, frame: Frame, direction: FrameDirection) -> None:
        if self._closed:
            return
        self._items.append((origin, frame, direction, False))
        self._wakeup.set()

    def _flush(self) -> None:
        # Barge-in cancels what the controller queued; notifications scheduled by processors
        # (prompt finished, digits collected) must still come out.
        if any(from_controller for *_, from_controller in self._items):
            self._items = deque(item for item in self._items if not item[3])

    async def _output(self, frame: Frame) -> None:
        if isinstance(frame, BargeInFrame):
            self._flush()
        # Lifecycle frames are the pipeline's own business, not the controller's.
        if self._on_output is None or self._closed or isinstance(frame, StartFrame | CancelFrame):
            return
        try:
            result = self._on_output(frame)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.logger.exception("%s: on_output failed on %s", self.name, type(frame).__name__)
