"""One streaming interface for every speech recogniser.

An :class:`AsrEngine` holds a loaded model and is shared by all the calls of a service. Each
utterance gets an :class:`AsrStream` from :meth:`AsrEngine.start`:

* :meth:`AsrStream.feed` appends 16 kHz PCM16 audio. It is cheap and thread-safe: it only
  buffers, so the event loop may call it for every 20 ms frame.
* :meth:`AsrStream.advance` (blocking, run it in the pool) lets a streaming engine (Vosk) decode
  what was fed so far, so less is left when the turn ends. Whisper does nothing there.
* :meth:`AsrStream.result` (blocking, run it in the pool) returns the transcript of everything
  fed so far. It may be called several times on a growing buffer (speculative decoding when
  the caller pauses); a call on an unchanged buffer returns the previous result at once.
* :meth:`AsrStream.close` frees the stream; calls on one stream are serialised by its lock.

Decoding never runs on the event loop: :class:`AsrService` owns the bounded thread pool.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from callcenter.media.asr.settings import AsrSettings
    from callcenter.media.asr.vad import VadModel

__all__ = [
    "AsrEngine",
    "AsrError",
    "AsrService",
    "AsrStream",
    "BufferedStream",
    "Transcript",
]

_T = TypeVar("_T")


class AsrError(RuntimeError):
    """A model could not be loaded or prepared (the message says which file and what to do)."""


@dataclass(frozen=True, slots=True)
class Transcript:
    """What a recogniser heard in one utterance."""

    text: str
    """The words, as the engine writes them; empty when nothing usable was heard."""
    confidence: float
    """0 (guess) to 1 (sure), engine-specific calibration; 0 for an empty text."""
    engine: str
    """Name of the engine that produced it (``whisper-base``, ``vosk``, ...)."""
    audio_s: float
    """Seconds of audio decoded."""
    decode_s: float
    """Seconds of wall time spent decoding (in the worker thread)."""

    @property
    def empty(self) -> bool:
        """Whether nothing usable was recognised."""
        return not self.text


class AsrStream(Protocol):
    """One utterance being recognised (see the module docstring for the threading rules)."""

    def feed(self, pcm16k: bytes) -> None:
        """Append PCM16 little-endian mono audio at the engine's rate (cheap, thread-safe)."""

    def advance(self) -> None:
        """Decode what was fed so far, for streaming engines (blocking)."""

    def result(self) -> Transcript:
        """Transcript of everything fed so far (blocking; callable repeatedly)."""

    def close(self) -> None:
        """Free the stream's resources (blocking while a decode of this stream runs)."""

    @property
    def fed_bytes(self) -> int:
        """Bytes of audio fed so far."""


class AsrEngine(Protocol):
    """A loaded recogniser shared by every call of the service."""

    @property
    def name(self) -> str:
        """Engine name reported in :class:`Transcript`."""

    @property
    def streaming(self) -> bool:
        """Whether :meth:`AsrStream.advance` does useful work (worth calling during speech)."""

    def start(self, grammar: Sequence[str] | None = None) -> AsrStream:
        """Begin an utterance; ``grammar`` restricts the words where the engine supports it."""

    def close(self) -> None:
        """Release the model."""


class BufferedStream:
    """Base for streams: a thread-safe audio buffer and a per-stream lock for decoding."""

    def __init__(self) -> None:
        """Create an empty stream."""
        self._pending: list[bytes] = []
        self._fed = 0
        self._buffer_lock = threading.Lock()
        self.lock = threading.Lock()
        """Held by the blocking methods: one decode of this stream at a time."""
        self.closed = False

    def feed(self, pcm16k: bytes) -> None:
        """Buffer audio (cheap, called on the event loop).

        Args:
            pcm16k: PCM16 LE mono at the engine's rate.
        """
        if not pcm16k:
            return
        with self._buffer_lock:
            self._pending.append(pcm16k)
            self._fed += len(pcm16k)

    @property
    def fed_bytes(self) -> int:
        """Bytes of audio fed so far."""
        return self._fed

    def take_pending(self) -> bytes:
        """Return and clear the audio fed since the last call (for the worker thread)."""
        with self._buffer_lock:
            data = b"".join(self._pending)
            self._pending = []
        return data


class AsrService:
    """An engine, the Silero VAD model and the bounded thread pool all calls share."""

    def __init__(
        self,
        engine: AsrEngine,
        settings: AsrSettings,
        *,
        vad_model: VadModel | None = None,
    ) -> None:
        """Wrap a loaded engine.

        Args:
            engine: The recogniser.
            settings: The settings it was loaded with (defaults for every listen).
            vad_model: Shared Silero model; loaded here when ``None``.
        """
        from callcenter.media.asr.vad import SileroVadModel

        self.engine = engine
        self.settings = settings
        self.vad_model: VadModel = vad_model if vad_model is not None else SileroVadModel()
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="asr"
        )
        self._closed = False
        self.errors = 0
        """Recognitions that failed with an engine error (read by the metrics at scrape)."""

    def submit(self, fn: Callable[[], _T]) -> concurrent.futures.Future[_T]:
        """Run ``fn`` in the pool (raises ``RuntimeError`` once the service is closed)."""
        return self.executor.submit(fn)

    async def run(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` in the pool and await its result."""
        return await asyncio.wrap_future(self.submit(fn))

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Stop the pool (running decodes finish) and release the engine."""
        if self._closed:
            return
        self._closed = True
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.engine.close()
