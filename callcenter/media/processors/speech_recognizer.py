"""Speech recognition on the caller's leg: VAD, end of turn, barge-in, speculative decoding.

Place it **between** the DTMF aggregator and the prompt player
(``Pipeline([DtmfAggregatorProcessor(), SpeechRecognizerProcessor(service), player])``): like the
aggregator it sees :class:`PlayPromptFrame` going down and :class:`PromptFinishedFrame` coming
back up, so it knows when prompts play (barge-in) and when they end (the no-input countdown).

A :class:`ListenFrame` arms it; it answers with exactly one :class:`TranscriptFrame` (possibly
empty: a no-match) or :class:`SpeechTimeoutFrame`, downstream, unless a
:class:`StopListeningFrame` or :class:`CancelFrame` comes first. :class:`SpeechStartedFrame`
reports the start of speech, preceded by :class:`BargeInFrame` when it interrupts a prompt.

Audio: :class:`AudioFrame` (8 kHz PCM16, 20 ms) is consumed, never forwarded. While not
listening a frame costs one ``isinstance`` (the call controller can also skip decoding RTP
payloads: see :attr:`SpeechRecognizerProcessor.wants_audio`). While listening: a streaming
2x upsampler to 16 kHz (:mod:`callcenter.media.asr.resample`: soxr's streams return audio in
100 ms bursts), Silero VAD, the pure end-of-turn machine
(:class:`~callcenter.media.asr.turn.TurnDetector`) and a buffer append.

Speculative decoding: when the caller falls silent the audio so far is submitted to the shared
thread pool. If speech resumes, that decode is discarded (its result ignored) and audio keeps
flowing into the stream. At the end of turn (0.8 s of silence by default) the speculative
result is used when no speech came since, else the whole utterance is decoded again. Decoding
never runs on the event loop: results come back through ``loop.call_soon_threadsafe`` and are
emitted with :meth:`push_frame_nowait`.

Timers are ``loop.call_at`` handles driven by the detector's ``get_timer()``; all are cancelled
on :class:`StopListeningFrame` and :class:`CancelFrame`, which also close the stream.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from callcenter.media.asr.base import AsrService, AsrStream, Transcript
from callcenter.media.asr.resample import Upsampler2x
from callcenter.media.asr.turn import (
    EndOfTurn,
    MaxLength,
    NoInput,
    SilenceStarted,
    SpeechResumed,
    SpeechStarted,
    TurnConfig,
    TurnDetector,
    TurnEvent,
)
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
from callcenter.media.processor import FrameDirection, FrameProcessor

__all__ = ["SpeechRecognizerProcessor"]

_T = TypeVar("_T")
_DOWN = FrameDirection.DOWNSTREAM
_RATE = 16000
_ADVANCE_BYTES = _RATE * 2 // 2  # streaming engines decode every 0.5 s of audio


@dataclass(slots=True)
class _Listen:
    """State of one listening period (replaced on every :class:`ListenFrame`)."""

    request: ListenFrame
    resampler: Upsampler2x
    pre_roll: deque[bytes]
    stream: AsrStream | None = None
    held: list[bytes] | None = None  # audio of the current pause, fed only if speech resumes
    speculation: concurrent.futures.Future[Transcript] | None = None
    speech_end: float = 0.0
    advancing: bool = False
    advanced_bytes: int = 0
    done: bool = False


class SpeechRecognizerProcessor(FrameProcessor):
    """Listens to the caller on :class:`ListenFrame` request and reports what was said."""

    def __init__(self, service: AsrService, *, name: str | None = None) -> None:
        """Create a recogniser for one call.

        Args:
            service: Engine, VAD model and thread pool shared by all calls.
            name: Log name.
        """
        super().__init__(name=name)
        self.service = service
        self.settings = service.settings
        self._vad = service.vad_model.stream(
            threshold=self.settings.vad_threshold, release=self.settings.vad_release
        )
        self._turn = TurnDetector()
        self._listen: _Listen | None = None
        self._prompts = 0  # prompts queued or playing downstream
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.speculation_used = 0
        """Turns whose speculative decode was used (metrics)."""
        self.speculation_discarded = 0
        """Speculative decodes thrown away because the caller went on speaking."""

    @property
    def wants_audio(self) -> bool:
        """Whether audio frames are needed now (the controller may skip them otherwise)."""
        return self._listen is not None and not self._listen.done

    @property
    def listening(self) -> bool:
        """Whether a listen is armed and has not produced its result yet."""
        return self._listen is not None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        """Consume audio and listen requests; track prompts; forward everything else.

        Args:
            frame: The frame received.
            direction: Which way it travels.
        """
        if isinstance(frame, AudioFrame):
            listen = self._listen
            if listen is not None and not listen.done:
                for out in self._on_audio(listen, frame):
                    await self.push_frame(out, _DOWN)
        elif isinstance(frame, ListenFrame):
            self._start(frame)
        elif isinstance(frame, StopListeningFrame):
            self._stop()
        elif isinstance(frame, PlayPromptFrame):
            self._prompts += 1
            if self._listen is not None:
                self._turn.disarm_no_input()
                self._reschedule()
            await self.push_frame(frame, direction)
        elif isinstance(frame, PromptFinishedFrame):
            self._prompts = max(0, self._prompts - 1)
            await self.push_frame(frame, direction)
            if self._prompts == 0 and self._listen is not None:
                self._turn.arm_no_input(self._now())
                self._reschedule()
        elif isinstance(frame, CancelFrame):
            self._stop()
            self._prompts = 0
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    # -- listening ---------------------------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _start(self, request: ListenFrame) -> None:
        self._stop()
        s = self.settings
        config = TurnConfig(
            end_of_turn_s=request.end_of_turn_s or s.end_of_turn_s,
            no_input_s=request.no_input_s or s.no_input_s,
            max_utterance_s=request.max_utterance_s or s.max_utterance_s,
            min_speech_s=s.min_speech_s,
            barge_in_min_speech_s=s.barge_in_min_speech_s,
            resume_min_speech_s=s.resume_min_speech_s,
        )
        self._vad.reset()
        self._turn.start(config)
        frames = int((s.pre_roll_s + s.barge_in_min_speech_s) / 0.02) + 3
        self._listen = _Listen(
            request=request,
            resampler=Upsampler2x(),
            pre_roll=deque(maxlen=frames),
        )
        if self._prompts == 0:
            self._turn.arm_no_input(self._now())
        self._reschedule()

    def _stop(self) -> None:
        self._cancel_timer()
        self._turn.stop()
        listen, self._listen = self._listen, None
        if listen is not None:
            listen.done = True
            self._close_stream(listen)

    def _close_stream(self, listen: _Listen) -> None:
        stream, listen.stream = listen.stream, None
        if stream is None:
            return
        try:
            # In the pool: serialised after any decode of this stream that is still running.
            self.service.submit(stream.close)
        except RuntimeError:  # the pool is shut down: nothing else can use the stream
            stream.close()

    def _on_audio(self, listen: _Listen, frame: AudioFrame) -> list[Frame]:
        samples = np.frombuffer(frame.pcm, dtype="<i2").astype(np.float32) * (1.0 / 32768.0)
        if frame.sample_rate != _RATE:  # the telephone leg: 8 kHz
            samples = listen.resampler.process(samples)
        playing = self._prompts > 0
        if playing and not listen.request.barge_in:
            return []  # speech during prompts is ignored: keep the VAD state as it is
        speech = self._vad.feed(samples)
        pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        if listen.stream is None:
            listen.pre_roll.append(pcm)
        elif listen.held is not None:
            listen.held.append(pcm)
        else:
            self._feed(listen, pcm)
        events = self._turn.feed(speech, self._now(), prompt_playing=playing)
        out = self._handle(listen, events) if events else []
        self._reschedule()
        return out

    def _feed(self, listen: _Listen, pcm: bytes) -> None:
        stream = listen.stream
        assert stream is not None
        stream.feed(pcm)
        if (
            self.service.engine.streaming
            and not listen.advancing
            and stream.fed_bytes - listen.advanced_bytes >= _ADVANCE_BYTES
        ):
            listen.advancing = True
            listen.advanced_bytes = stream.fed_bytes
            future = self._submit(stream.advance)
            if future is not None:
                future.add_done_callback(lambda _f: self._advance_done(listen))

    def _advance_done(self, listen: _Listen) -> None:
        listen.advancing = False  # a plain attribute store: safe from the worker thread

    def _submit(self, fn: Callable[[], _T]) -> concurrent.futures.Future[_T] | None:
        try:
            return self.service.submit(fn)
        except RuntimeError:
            self.logger.error("%s: speech service closed", self.name)
            return None

    def _handle(self, listen: _Listen, events: list[TurnEvent]) -> list[Frame]:
        out: list[Frame] = []
        for event in events:
            if isinstance(event, SpeechStarted):
                stream = self.service.engine.start(listen.request.grammar)
                listen.stream = stream
                for pcm in listen.pre_roll:
                    self._feed(listen, pcm)
                listen.pre_roll.clear()
                barge_in = self._prompts > 0 and listen.request.barge_in
                if barge_in:
                    out.append(BargeInFrame())
                out.append(SpeechStartedFrame(at=event.at, barge_in=barge_in))
            elif isinstance(event, SilenceStarted):
                assert listen.stream is not None
                listen.held = []
                listen.speech_end = event.at
                listen.speculation = self._submit(listen.stream.result)
            elif isinstance(event, SpeechResumed):
                if listen.speculation is not None:
                    self.speculation_discarded += 1
                    # Frees its pool slot if it has not started (a no-op once running: then its
                    # result is simply ignored). Nothing waits on it yet.
                    listen.speculation.cancel()
                listen.speculation = None
                held, listen.held = listen.held or [], None
                for pcm in held:
                    self._feed(listen, pcm)
            elif isinstance(event, EndOfTurn):
                listen.done = True
                listen.held = None
                self._cancel_timer()
                speculative = listen.speculation is not None
                future = listen.speculation or self._result_future(listen)
                self._deliver(listen, future, event.speech_end, event.at, speculative)
            elif isinstance(event, MaxLength):
                listen.done = True
                if listen.held:
                    for pcm in listen.held:
                        self._feed(listen, pcm)
                listen.held = None
                self._cancel_timer()
                self._deliver(listen, self._result_future(listen), event.at, event.at, None)
            elif isinstance(event, NoInput):
                listen.done = True
                self._listen = None
                self._cancel_timer()
                self._close_stream(listen)
                out.append(SpeechTimeoutFrame("no_input"))
        return out

    def _result_future(self, listen: _Listen) -> concurrent.futures.Future[Transcript] | None:
        if listen.stream is None:
            return None
        return self._submit(listen.stream.result)

    def _deliver(
        self,
        listen: _Listen,
        future: concurrent.futures.Future[Transcript] | None,
        speech_end: float,
        end_of_turn: float,
        speculative: bool | None,
    ) -> None:
        """Emit the listen's result when ``future`` completes (``speculative=None``: max length)."""
        loop = asyncio.get_running_loop()

        def finish(fut: concurrent.futures.Future[Transcript] | None) -> None:
            if self._listen is not listen:
                return  # stopped or cancelled meanwhile: nothing to report
            self._listen = None
            transcript = self._transcript_of(fut)
            self._close_stream(listen)
            if speculative is None:
                self.push_frame_nowait(SpeechTimeoutFrame("max_length", transcript), _DOWN)
                return
            if speculative:
                self.speculation_used += 1
            frame = TranscriptFrame(
                transcript=transcript,
                speech_end=speech_end,
                end_of_turn=end_of_turn,
                result_ready=loop.time(),
                speculative=speculative,
            )
            self.push_frame_nowait(frame, _DOWN)

        if future is None:
            loop.call_soon(finish, None)
        else:
            future.add_done_callback(lambda fut: _call_soon_threadsafe(loop, finish, fut))

    def _transcript_of(self, future: concurrent.futures.Future[Transcript] | None) -> Transcript:
        name = self.service.engine.name
        if future is None or future.cancelled():
            return Transcript("", 0.0, name, 0.0, 0.0)
        error = future.exception()
        if error is not None:
            self.logger.error("%s: recognition failed: %r", self.name, error)
            self.service.errors += 1
            return Transcript("", 0.0, name, 0.0, 0.0)
        return future.result()

    # -- timers -------------------------------------------------------------------------------

    def _reschedule(self) -> None:
        deadline = self._turn.get_timer()
        if deadline == self._timer_at:
            return
        self._cancel_timer()
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)
            self._timer_at = deadline

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        listen = self._listen
        if listen is None:
            return
        events = self._turn.handle_timer(self._now())
        for frame in self._handle(listen, events):
            self.push_frame_nowait(frame, _DOWN)
        self._reschedule()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None


def _call_soon_threadsafe(
    loop: asyncio.AbstractEventLoop,
    fn: Callable[[concurrent.futures.Future[Transcript]], None],
    fut: concurrent.futures.Future[Transcript],
) -> None:
    # Runs in the worker thread (or at once if the future was already done).
    if loop.is_closed():
        return
    try:
        loop.call_soon_threadsafe(fn, fut)
    except RuntimeError:  # the loop closed between the check and the call
        pass
