"""SpeechRecognizerProcessor with a scripted engine and an amplitude VAD (deterministic)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt
import pytest

from callcenter.media.asr.base import AsrError, AsrService, BufferedStream, Transcript
from callcenter.media.asr.settings import AsrSettings
from callcenter.media.frames import (
    AudioFrame,
    BargeInFrame,
    CancelFrame,
    Frame,
    ListenFrame,
    PlayPromptFrame,
    PromptFinishedFrame,
    SpeechStartedFrame,
    SpeechTimeoutFrame,
    StopListeningFrame,
    TranscriptFrame,
)
from callcenter.media.processor import FrameDirection
from callcenter.media.processors.speech_recognizer import SpeechRecognizerProcessor
from tests.media.harness import PipelineHarness

SPEECH = (np.full(160, 8000, dtype="<i2")).tobytes()
SILENCE = bytes(320)


class AmplitudeVad:
    """Speech when the mean absolute amplitude is high (no model: deterministic)."""

    def reset(self) -> None:
        pass

    def feed(self, samples: npt.NDArray[np.float32]) -> bool:
        return bool(samples.size) and float(np.mean(np.abs(samples))) > 0.05


class AmplitudeVadModel:
    def stream(self, *, threshold: float = 0.5, release: float = 0.35) -> AmplitudeVad:
        return AmplitudeVad()


class ScriptedStream(BufferedStream):
    def __init__(self, engine: ScriptedEngine, grammar: Sequence[str] | None) -> None:
        super().__init__()
        self.engine = engine
        self.grammar = grammar
        self.total = 0
        self.results: list[int] = []  # bytes decoded at each result()
        self.advances = 0

    def advance(self) -> None:
        with self.lock:
            self.advances += 1

    def result(self) -> Transcript:
        with self.lock:
            if self.closed:
                raise AsrError("closed")
            self.total += len(self.take_pending())
            self.results.append(self.total)
            time.sleep(self.engine.delay_s)
            if self.engine.fail:
                raise RuntimeError("engine exploded")
            audio_s = self.total / 32000
            return Transcript(f"{audio_s:.2f}", 0.9, "scripted", audio_s, self.engine.delay_s)

    def close(self) -> None:
        with self.lock:
            self.closed = True


class ScriptedEngine:
    """Returns the decoded audio length as text, after ``delay_s``."""

    def __init__(self, *, delay_s: float = 0.0, streaming: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = False
        self._streaming = streaming
        self.streams: list[ScriptedStream] = []
        self.closed = threading.Event()

    @property
    def name(self) -> str:
        return "scripted"

    @property
    def streaming(self) -> bool:
        return self._streaming

    def start(self, grammar: Sequence[str] | None = None) -> ScriptedStream:
        stream = ScriptedStream(self, grammar)
        self.streams.append(stream)
        return stream

    def close(self) -> None:
        self.closed.set()


SETTINGS = AsrSettings(
    end_of_turn_s=0.15,
    no_input_s=0.15,
    max_utterance_s=5.0,
    min_speech_s=0.1,
    barge_in_min_speech_s=0.16,
    resume_min_speech_s=0.04,
    pre_roll_s=0.1,
    workers=2,
)


@pytest.fixture
async def engine() -> AsyncIterator[ScriptedEngine]:
    yield ScriptedEngine()


@pytest.fixture
async def service(engine: ScriptedEngine) -> AsyncIterator[AsrService]:
    svc = AsrService(engine, SETTINGS, vad_model=AmplitudeVadModel())
    yield svc
    svc.close()


def audio(pcm: bytes) -> AudioFrame:
    return AudioFrame(pcm, 8000, 1, 0)


async def send_audio(h: PipelineHarness, pcm: bytes, seconds: float) -> None:
    for _ in range(round(seconds / 0.02)):
        await h.pipeline.queue_frame(audio(pcm))
    await h.settle()


async def wait_for(h: PipelineHarness, kind: type[Frame], within: float = 3.0) -> Frame:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for frame in h.down:
            if isinstance(frame, kind):
                return frame
        await asyncio.sleep(0.01)
    raise AssertionError(f"no {kind.__name__} in {h.down}")


def down(h: PipelineHarness) -> list[Frame]:
    return [f for f in h.down if not isinstance(f, CancelFrame)]


def results(h: PipelineHarness) -> list[Frame]:
    return [f for f in h.down if isinstance(f, TranscriptFrame | SpeechTimeoutFrame)]


async def test_audio_is_consumed_and_ignored_when_not_listening(
    service: AsrService, engine: ScriptedEngine
) -> None:
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        assert not proc.wants_audio
        await send_audio(h, SPEECH, 0.5)
    assert down(h) == [] and engine.streams == []


async def test_transcript_uses_the_speculative_decode(
    service: AsrService, engine: ScriptedEngine
) -> None:
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(ListenFrame())
        assert proc.wants_audio
        await send_audio(h, SILENCE, 0.06)
        await send_audio(h, SPEECH, 0.4)
        await send_audio(h, SILENCE, 0.1)
        frame = await wait_for(h, TranscriptFrame)
        assert not proc.listening
    assert isinstance(frame, TranscriptFrame)
    assert [type(f) for f in down(h)] == [SpeechStartedFrame, TranscriptFrame]
    assert frame.speculative and proc.speculation_used == 1
    stream = engine.streams[0]
    assert len(stream.results) == 1  # decoded once, when the silence started
    # Pre-roll (silence before the speech) + speech + the first silent frame, at 16 kHz.
    assert 0.42 <= float(frame.transcript.text) <= 0.58
    assert frame.speech_end < frame.end_of_turn <= frame.result_ready
    assert frame.end_of_turn - frame.speech_end == pytest.approx(0.15, abs=0.05)
    assert frame.latency_s < 0.05
    await asyncio.sleep(0.05)
    assert stream.closed


async def test_speech_resumed_discards_the_speculation(
    service: AsrService, engine: ScriptedEngine
) -> None:
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(ListenFrame())
        await send_audio(h, SPEECH, 0.3)
        await send_audio(h, SILENCE, 0.1)  # a pause shorter than the end of turn
        await send_audio(h, SPEECH, 0.3)
        await send_audio(h, SILENCE, 0.04)
        frame = await wait_for(h, TranscriptFrame)
    assert isinstance(frame, TranscriptFrame)
    assert proc.speculation_discarded == 1 and proc.speculation_used == 1
    stream = engine.streams[0]
    assert len(stream.results) == 2
    assert stream.results[1] > stream.results[0]
    # The pause's audio is part of the utterance once speech resumed.
    assert float(frame.transcript.text) >= 0.7


async def test_end_of_turn_waits_for_a_slow_speculative_decode(
    service: AsrService, engine: ScriptedEngine
) -> None:
    engine.delay_s = 0.35
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(ListenFrame())
        await send_audio(h, SPEECH, 0.3)
        await send_audio(h, SILENCE, 0.04)
        frame = await wait_for(h, TranscriptFrame)
    assert isinstance(frame, TranscriptFrame)
    assert frame.speculative
    assert len(engine.streams[0].results) == 1
    # The decode started at the silence, so only 0.35 - 0.15 s remained after the end of turn.
    assert 0.1 <= frame.latency_s <= 0.3


async def test_no_input_counts_from_the_end_of_the_prompt(service: AsrService) -> None:
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(PlayPromptFrame("menu"))
        await h.send(ListenFrame(no_input_s=0.1))
        await asyncio.sleep(0.2)
        assert results(h) == []  # the prompt still plays
        await h.send(PromptFinishedFrame("menu", False), FrameDirection.UPSTREAM)
        started = time.monotonic()
        frame = await wait_for(h, SpeechTimeoutFrame)
        assert time.monotonic() - started >= 0.08
    assert isinstance(frame, SpeechTimeoutFrame) and frame.reason == "no_input"
    assert [type(f) for f in h.up] == [PromptFinishedFrame]
    assert not proc.listening


async def test_no_input_without_prompt_starts_at_once(service: AsrService) -> None:
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(ListenFrame())
        await send_audio(h, SILENCE, 0.06)
        frame = await wait_for(h, SpeechTimeoutFrame)
    assert isinstance(frame, SpeechTimeoutFrame) and frame.reason == "no_input"
    assert [type(f) for f in down(h)] == [SpeechTimeoutFrame]


async def test_barge_in_stops_the_prompt(service: AsrService) -> None:
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(PlayPromptFrame("question"))
        await h.send(ListenFrame(barge_in=True))
        await send_audio(h, SPEECH, 0.1)  # enough speech normally, not during a prompt
        assert [type(f) for f in down(h)] == [PlayPromptFrame]
        await send_audio(h, SPEECH, 0.08)
        kinds = [type(f) for f in down(h)]
        assert kinds == [PlayPromptFrame, BargeInFrame, SpeechStartedFrame]
        started = h.down[2]
        assert isinstance(started, SpeechStartedFrame) and started.barge_in
        # The player reports the interruption; the caller finishes the sentence.
        await h.send(PromptFinishedFrame("question", True), FrameDirection.UPSTREAM)
        await send_audio(h, SPEECH, 0.2)
        await send_audio(h, SILENCE, 0.04)
        await wait_for(h, TranscriptFrame)


async def test_no_barge_in_ignores_speech_during_the_prompt(service: AsrService) -> None:
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(PlayPromptFrame("legal"))
        await h.send(ListenFrame(barge_in=False))
        await send_audio(h, SPEECH, 0.5)
        assert [type(f) for f in down(h)] == [PlayPromptFrame]
        await h.send(PromptFinishedFrame("legal", False), FrameDirection.UPSTREAM)
        await send_audio(h, SPEECH, 0.2)
        kinds = [type(f) for f in down(h)]
        assert kinds == [PlayPromptFrame, SpeechStartedFrame]


async def test_max_length_reports_what_was_said(service: AsrService) -> None:
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(ListenFrame(max_utterance_s=0.4))
        await send_audio(h, SPEECH, 0.6)
        frame = await wait_for(h, SpeechTimeoutFrame)
    assert isinstance(frame, SpeechTimeoutFrame) and frame.reason == "max_length"
    assert frame.transcript is not None and float(frame.transcript.text) >= 0.4
    assert len(results(h)) == 1


async def test_stop_listening_reports_nothing(service: AsrService, engine: ScriptedEngine) -> None:
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(ListenFrame())
        await send_audio(h, SPEECH, 0.3)
        await h.send(StopListeningFrame())
        assert not proc.listening
        await send_audio(h, SILENCE, 0.1)
        await asyncio.sleep(0.3)
    assert results(h) == []
    assert engine.streams[0].closed


async def test_cancel_while_decoding_closes_the_stream(
    service: AsrService, engine: ScriptedEngine
) -> None:
    engine.delay_s = 0.2
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(ListenFrame())
        await send_audio(h, SPEECH, 0.3)
        await send_audio(h, SILENCE, 0.04)  # speculative decode running
        await h.send(CancelFrame())
        assert not proc.listening
        await asyncio.sleep(0.4)
    assert results(h) == []
    assert engine.streams[0].closed


async def test_new_listen_replaces_the_previous_one(
    service: AsrService, engine: ScriptedEngine
) -> None:
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(ListenFrame())
        await send_audio(h, SPEECH, 0.3)
        await h.send(ListenFrame(grammar=("oui", "non")))
        await send_audio(h, SPEECH, 0.3)
        await send_audio(h, SILENCE, 0.04)
        await wait_for(h, TranscriptFrame)
    assert len(results(h)) == 1
    assert engine.streams[0].closed
    assert engine.streams[1].grammar == ("oui", "non")


async def test_engine_failure_gives_an_empty_transcript(
    service: AsrService, engine: ScriptedEngine
) -> None:
    engine.fail = True
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(ListenFrame())
        await send_audio(h, SPEECH, 0.3)
        await send_audio(h, SILENCE, 0.04)
        frame = await wait_for(h, TranscriptFrame)
    assert isinstance(frame, TranscriptFrame) and frame.transcript.empty
    # Counted for callcenter_asr_errors_total (the "ASR failing" alert).
    assert service.errors >= 1


async def test_streaming_engine_is_advanced_while_the_caller_speaks() -> None:
    engine = ScriptedEngine(streaming=True)
    service = AsrService(engine, SETTINGS, vad_model=AmplitudeVadModel())
    try:
        proc = SpeechRecognizerProcessor(service)
        async with PipelineHarness(proc) as h:
            await h.send(ListenFrame())
            for _ in range(8):
                await send_audio(h, SPEECH, 0.2)
                await asyncio.sleep(0.01)  # let the pool run the advance
            await send_audio(h, SILENCE, 0.04)
            await wait_for(h, TranscriptFrame)
        assert engine.streams[0].advances >= 2
    finally:
        service.close()


async def test_closed_service_does_not_break_the_call(engine: ScriptedEngine) -> None:
    service = AsrService(engine, replace(SETTINGS), vad_model=AmplitudeVadModel())
    proc = SpeechRecognizerProcessor(service)
    async with PipelineHarness(proc) as h:
        await h.send(ListenFrame())
        await send_audio(h, SPEECH, 0.3)
        service.close()
        await send_audio(h, SILENCE, 0.04)
        frame = await wait_for(h, TranscriptFrame)
    assert isinstance(frame, TranscriptFrame) and frame.transcript.empty
    assert engine.closed.is_set()
