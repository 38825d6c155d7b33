import asyncio
import logging

import pytest

from callcenter.media.frames import (
    BargeInFrame,
    CancelFrame,
    DigitsCollectedFrame,
    DtmfFrame,
    Frame,
    PlayPromptFrame,
    PromptStartedFrame,
    StartFrame,
    StopPromptFrame,
)
from callcenter.media.pipeline import Pipeline
from callcenter.media.processor import FrameDirection, FrameProcessor
from tests.media.harness import PipelineHarness, run_test


class Recorder(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[Frame, FrameDirection]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        self.seen.append((frame, direction))
        await self.push_frame(frame, direction)


class Exploding(FrameProcessor):
    """Fails on DtmfFrame('9'), forwards everything else."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, DtmfFrame) and frame.digit == "9":
            raise RuntimeError("boom")
        await self.push_frame(frame, direction)


class Echo(FrameProcessor):
    """Turns each DtmfFrame into an upstream DigitsCollectedFrame (and consumes it)."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, DtmfFrame):
            await self.push_frame(DigitsCollectedFrame(frame.digit), FrameDirection.UPSTREAM)
        else:
            await self.push_frame(frame, direction)


async def test_frames_flow_in_order_and_reach_on_output() -> None:
    out: list[Frame] = []
    rec = Recorder()
    pipeline = Pipeline([rec, Echo()], on_output=out.append)
    async with pipeline:
        await pipeline.queue_frame(PlayPromptFrame("a"))
        await pipeline.queue_frame(PlayPromptFrame("b"))
        await pipeline.queue_frame(DtmfFrame("1"))  # system frame: immediately, echoed upstream
        await asyncio.sleep(0.01)
    assert out[0] == DigitsCollectedFrame("1")  # upstream end
    assert [f for f in out if isinstance(f, PlayPromptFrame)] == [
        PlayPromptFrame("a"),
        PlayPromptFrame("b"),
    ]
    assert isinstance(rec.seen[0][0], StartFrame)
    assert isinstance(rec.seen[-1][0], CancelFrame)  # teardown reaches processors
    assert not any(isinstance(f, CancelFrame) for f in out)  # but not the controller


async def test_system_frames_skip_queue() -> None:
    rec = Recorder()
    pipeline = Pipeline([rec])
    await pipeline.queue_frame(PlayPromptFrame("queued"))
    await pipeline.queue_frame(DtmfFrame("5"))
    # Not running yet: only the system frame went through.
    assert [f for f, _ in rec.seen] == [DtmfFrame("5")]
    assert pipeline.pending_frames == 1
    task = asyncio.create_task(pipeline.run(), name="test-pipeline")
    await asyncio.sleep(0.01)
    assert [type(f) for f, _ in rec.seen] == [DtmfFrame, StartFrame, PlayPromptFrame]
    await pipeline.stop()
    await task
    assert not pipeline.running


async def test_async_on_output_and_upstream_injection() -> None:
    got: list[Frame] = []

    async def on_output(frame: Frame) -> None:
        await asyncio.sleep(0)
        got.append(frame)

    rec = Recorder()
    pipeline = Pipeline([rec], on_output=on_output)
    async with pipeline:
        await pipeline.queue_frame(PromptStartedFrame("x"), FrameDirection.UPSTREAM)
        await asyncio.sleep(0.01)
    assert got == [PromptStartedFrame("x")]
    assert rec.seen[1] == (PromptStartedFrame("x"), FrameDirection.UPSTREAM)


async def test_failing_processor_logs_with_call_logger_and_loses_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter = logging.LoggerAdapter(logging.getLogger("test.call"), {"call_id": "abc"})
    out: list[Frame] = []
    pipeline = Pipeline([Exploding(), Recorder()], on_output=out.append, logger=adapter)
    with caplog.at_level(logging.ERROR, logger="test.call"):
        async with pipeline:
            for digit in "192":
                await pipeline.queue_frame(DtmfFrame(digit))
            await pipeline.queue_frame(PlayPromptFrame("after"))
            await asyncio.sleep(0.01)
    assert out == [DtmfFrame("1"), DtmfFrame("9"), DtmfFrame("2"), PlayPromptFrame("after")]
    records = [r for r in caplog.records if r.name == "test.call"]
    assert len(records) == 1
    assert "Exploding failed on DtmfFrame" in records[0].getMessage()
    assert records[0].exc_info is not None


async def test_on_output_failure_does_not_stop_pipeline(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Frame] = []

    def on_output(frame: Frame) -> None:
        seen.append(frame)
        if isinstance(frame, DtmfFrame):
            raise ValueError("controller bug")

    pipeline = Pipeline([Recorder()], on_output=on_output)
    with caplog.at_level(logging.ERROR):
        async with pipeline:
            await pipeline.queue_frame(DtmfFrame("1"))
            await pipeline.queue_frame(PlayPromptFrame("p"))
            await asyncio.sleep(0.01)
    assert seen == [DtmfFrame("1"), PlayPromptFrame("p")]
    assert "on_output failed" in caplog.text


class Cancels(FrameProcessor):
    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, PlayPromptFrame):
            raise asyncio.CancelledError
        await self.push_frame(frame, direction)


async def test_cancelled_error_is_not_swallowed() -> None:
    pipeline = Pipeline([Cancels()])
    task = asyncio.create_task(pipeline.run(), name="test-pipeline")
    await pipeline.queue_frame(PlayPromptFrame("p"))
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(RuntimeError, match="already running or closed"):
        await pipeline.run()


async def test_outer_cancellation_propagates_through_context_manager() -> None:
    entered = asyncio.Event()

    async def body() -> None:
        async with Pipeline([Recorder()]):
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(body(), name="body")
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class Gate(FrameProcessor):
    """Holds queued frames until released, to observe the pipeline queue."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, PlayPromptFrame) and frame.prompt_id == "slow":
            await self.release.wait()
        await self.push_frame(frame, direction)


async def test_barge_in_drops_queued_controller_frames() -> None:
    gate = Gate()
    async with PipelineHarness([gate]) as harness:
        await harness.send(PlayPromptFrame("slow"))
        await harness.pipeline.queue_frame(PlayPromptFrame("dropped"))
        await harness.pipeline.queue_frame(StopPromptFrame())
        assert harness.pipeline.pending_frames == 2
        await harness.pipeline.queue_frame(BargeInFrame())
        assert harness.pipeline.pending_frames == 0
        gate.release.set()
        await harness.pipeline.queue_frame(PlayPromptFrame("kept"))
        await harness.settle()
        assert harness.down == [
            BargeInFrame(),
            PlayPromptFrame("slow"),
            PlayPromptFrame("kept"),
        ]


async def test_run_test_harness_checks_types() -> None:
    await run_test(
        Recorder(),
        frames_to_send=[PlayPromptFrame("a"), DtmfFrame("1")],
        expected_down_frames=[PlayPromptFrame, DtmfFrame],
    )
    with pytest.raises(AssertionError):
        await run_test(
            Echo(),
            frames_to_send=[DtmfFrame("1")],
            expected_down_frames=[DtmfFrame],
        )
