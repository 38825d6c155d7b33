"""Typed frames that flow through the media pipeline (pipecat style).

Three families, distinguished by base class:

* :class:`SystemFrame` skips the pipeline queue: it is processed at once, in the caller's task
  (start, cancel, barge-in, DTMF). Latency matters more than ordering for these.
* :class:`DataFrame` (audio) and :class:`ControlFrame` (prompt and digit-collection commands and
  notifications) are processed in order; those still queued are dropped on barge-in.

Every frame is an immutable ``@dataclass(frozen=True, slots=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from callcenter.media.asr.base import Transcript

__all__ = [
    "AudioFrame",
    "BargeInFrame",
    "CancelFrame",
    "CollectDigitsFrame",
    "ControlFrame",
    "DataFrame",
    "DigitsCollectedFrame",
    "DigitsTimeoutFrame",
    "DtmfFrame",
    "Frame",
    "PlayPromptFrame",
    "PromptFinishedFrame",
    "PromptStartedFrame",
    "StartFrame",
    "StopPromptFrame",
    "SystemFrame",
    # speech recognition (issue 3)
    "ListenFrame",
    "SpeechStartedFrame",
    "SpeechTimeoutFrame",
    "StopListeningFrame",
    "TranscriptFrame",
]

#: The sixteen DTMF symbols (RFC 4733 section 3.2, events 0-15).
DTMF_DIGITS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True)
class Frame:
    """Base class of everything that travels through a pipeline."""


@dataclass(frozen=True, slots=True)
class SystemFrame(Frame):
    """A frame that skips queues and is handled immediately."""


@dataclass(frozen=True, slots=True)
class DataFrame(Frame):
    """A frame processed in order; dropped from queues on barge-in."""


@dataclass(frozen=True, slots=True)
class ControlFrame(Frame):
    """A command or notification processed in order; dropped from queues on barge-in."""


# --- system frames -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartFrame(SystemFrame):
    """Sent once by the pipeline when it starts running."""


@dataclass(frozen=True, slots=True)
class CancelFrame(SystemFrame):
    """Teardown: processors cancel their timers and drop their state."""


@dataclass(frozen=True, slots=True)
class BargeInFrame(SystemFrame):
    """The caller interrupted: stop the current interruptible prompt and flush queued ones."""


@dataclass(frozen=True, slots=True)
class DtmfFrame(SystemFrame):
    """One keypad digit received from the caller (RFC 4733 event or SIP INFO)."""

    digit: str
    """One of ``0-9``, ``*``, ``#``, ``A-D``."""

    def __post_init__(self) -> None:
        if self.digit not in DTMF_DIGITS:
            raise ValueError(f"invalid DTMF digit {self.digit!r}")


# --- data frames -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AudioFrame(DataFrame):
    """A chunk of raw signed 16-bit little-endian PCM audio."""

    pcm: bytes
    """Interleaved PCM16 samples (little-endian)."""
    sample_rate: int
    """Samples per second per channel (8000 on the telephone leg)."""
    channels: int
    """Number of interleaved channels (1 on the telephone leg)."""
    pts: int
    """Presentation timestamp, in samples since the start of the stream."""


# --- control frames ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlayPromptFrame(ControlFrame):
    """Queue a cached prompt for playback on the caller's leg."""

    prompt_id: str
    """Identifier of the prompt in the :class:`~callcenter.media.tts.PromptCache`."""
    interruptible: bool = True
    """False for prompts that must be heard in full (legal or emergency notices)."""


@dataclass(frozen=True, slots=True)
class StopPromptFrame(ControlFrame):
    """Stop the current interruptible prompt and flush queued interruptible ones."""


@dataclass(frozen=True, slots=True)
class PromptStartedFrame(ControlFrame):
    """Notification: the first audio frame of a prompt was handed to the RTP sender."""

    prompt_id: str
    """The prompt that started."""


@dataclass(frozen=True, slots=True)
class PromptFinishedFrame(ControlFrame):
    """Notification: a prompt ended, was interrupted, or was flushed before it started."""

    prompt_id: str
    """The prompt that finished."""
    interrupted: bool
    """True if the prompt did not play to the end (barge-in, stop, flush or missing audio)."""


@dataclass(frozen=True, slots=True)
class CollectDigitsFrame(ControlFrame):
    """Arm the DTMF aggregator to collect a digit string."""

    max_digits: int = 1
    """Collection ends as soon as this many digits were received."""
    timeout_s: float = 5.0
    """Inter-digit timeout (also the first-digit timeout, counted from the end of prompts).

    0 collects only while the prompts play: the timeout fires as soon as they end."""
    terminator: str | None = "#"
    """Ends a multi-digit collection and is not included; ignored when ``max_digits == 1``."""
    allowed: str | frozenset[str] | None = None
    """Digits this collection accepts; others neither barge in nor count (kept as type-ahead)."""

    def __post_init__(self) -> None:
        if self.max_digits < 1:
            raise ValueError(f"max_digits must be >= 1, got {self.max_digits}")
        if self.timeout_s < 0:
            raise ValueError(f"timeout_s must be >= 0, got {self.timeout_s}")


@dataclass(frozen=True, slots=True)
class DigitsCollectedFrame(ControlFrame):
    """Result of a collection: the digits pressed (terminator excluded)."""

    digits: str
    """The collected digits, possibly including digits outside ``allowed``."""


@dataclass(frozen=True, slots=True)
class DigitsTimeoutFrame(ControlFrame):
    """Result of a collection: the timeout expired with no digit at all."""


# --- speech recognition (issue 3) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenFrame(ControlFrame):
    """Start listening to the caller.

    The speech recogniser answers with exactly one :class:`TranscriptFrame` or
    :class:`SpeechTimeoutFrame` (unless stopped or cancelled). ``None`` fields take the
    service's :class:`~callcenter.media.asr.AsrSettings` defaults.
    """

    no_input_s: float | None = None
    """Wait for speech, counted from the end of the prompts (or from now if none plays)."""
    end_of_turn_s: float | None = None
    """Silence that ends the caller's turn."""
    max_utterance_s: float | None = None
    """Longest utterance before a ``max_length`` timeout."""
    grammar: tuple[str, ...] | None = None
    """Words expected (closed questions); used by engines with a grammar mode (Vosk)."""
    barge_in: bool = True
    """Speech interrupts an interruptible prompt; when False, speech during prompts is ignored."""

    def __post_init__(self) -> None:
        for name in ("no_input_s", "end_of_turn_s", "max_utterance_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")


@dataclass(frozen=True, slots=True)
class StopListeningFrame(ControlFrame):
    """Stop listening without a result (e.g. the caller answered with the keypad)."""


@dataclass(frozen=True, slots=True)
class SpeechStartedFrame(ControlFrame):
    """Notification: the caller started speaking (after the minimum speech length)."""

    at: float
    """Event-loop time when the speech was confirmed."""
    barge_in: bool
    """True if this speech interrupted a prompt (a :class:`BargeInFrame` went first)."""


@dataclass(frozen=True, slots=True)
class TranscriptFrame(ControlFrame):
    """Result of a listen: what the caller said (possibly empty: a no-match)."""

    transcript: Transcript
    """Text, confidence, engine and decoding time."""
    speech_end: float
    """Event-loop time when the caller's speech ended (the silence began)."""
    end_of_turn: float
    """Event-loop time when the silence reached the end-of-turn length."""
    result_ready: float
    """Event-loop time when the transcript was ready (this frame was emitted)."""
    speculative: bool
    """True if the decode started at the beginning of the silence was used."""

    @property
    def latency_s(self) -> float:
        """Processing time after the end of turn (the part the caller waits for)."""
        return max(0.0, self.result_ready - self.end_of_turn)


@dataclass(frozen=True, slots=True)
class SpeechTimeoutFrame(ControlFrame):
    """Result of a listen: no speech in time, or an utterance too long."""

    reason: Literal["no_input", "max_length"]
    """``no_input``: no speech before the deadline; ``max_length``: the caller spoke too long."""
    transcript: Transcript | None = None
    """For ``max_length``: the transcript of what was said until the cut."""
