"""End of the caller's turn: a pure state machine fed one VAD decision per 20 ms frame.

No asyncio here (sans-IO, like the SIP engine): the caller passes ``now`` with every input,
asks :meth:`TurnDetector.get_timer` when to call :meth:`TurnDetector.handle_timer`, and gets
events back as data. Speech and utterance lengths are counted in **audio** time (frames fed);
silence and the no-input wait in ``now`` time, so they still expire when the caller's phone
stops sending packets during silence.

Rules (states in :class:`TurnState`):

1. ``WAITING``: speech must last ``min_speech_s`` (``barge_in_min_speech_s`` while a prompt
   plays) without a break to count (coughs and clicks do not) → :class:`SpeechStarted`,
   ``SPEAKING``. Without speech until the no-input deadline (armed by
   :meth:`TurnDetector.arm_no_input`, normally when the prompts end) → :class:`NoInput`,
   ``DONE``. A deadline passing during a speech candidate waits for the candidate's outcome.
2. ``SPEAKING``: a silent frame → :class:`SilenceStarted` (start decoding speculatively),
   ``PAUSED``.
3. ``PAUSED``: speech lasting ``resume_min_speech_s`` → :class:`SpeechResumed` (discard the
   speculation), ``SPEAKING``; silence reaching ``end_of_turn_s`` → :class:`EndOfTurn`, ``DONE``.
4. ``SPEAKING`` or ``PAUSED``: the utterance (pauses included) reaching ``max_utterance_s`` →
   :class:`MaxLength`, ``DONE``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "EndOfTurn",
    "MaxLength",
    "NoInput",
    "SilenceStarted",
    "SpeechResumed",
    "SpeechStarted",
    "TurnConfig",
    "TurnDetector",
    "TurnEvent",
    "TurnState",
]

FRAME_S = 0.02
"""Duration of one frame on the telephone leg."""
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class TurnConfig:
    """Timings of one listening period."""

    end_of_turn_s: float = 0.8
    """Silence after speech that ends the turn."""
    no_input_s: float = 6.0
    """Wait for speech after :meth:`TurnDetector.arm_no_input`."""
    max_utterance_s: float = 20.0
    """Longest utterance, from the start of speech, pauses included."""
    min_speech_s: float = 0.2
    """Continuous speech that starts an utterance."""
    barge_in_min_speech_s: float = 0.3
    """Continuous speech that starts an utterance while a prompt plays."""
    resume_min_speech_s: float = 0.06
    """Continuous speech that ends a pause."""
    frame_s: float = FRAME_S
    """Audio duration of one :meth:`TurnDetector.feed` call."""

    def __post_init__(self) -> None:
        if min(self.end_of_turn_s, self.no_input_s, self.max_utterance_s, self.frame_s) <= 0:
            raise ValueError("durations must be > 0")


class TurnState(enum.Enum):
    """Where the detector is in the caller's turn."""

    IDLE = enum.auto()
    """Not listening."""
    WAITING = enum.auto()
    """Listening, no speech yet."""
    SPEAKING = enum.auto()
    """The caller speaks."""
    PAUSED = enum.auto()
    """The caller paused after speech; the end-of-turn countdown runs."""
    DONE = enum.auto()
    """The turn ended (end of turn, no input or maximum length)."""


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech long enough to count began."""

    at: float
    """``now`` when it was confirmed."""
    audio_start_s: float
    """Audio time (seconds since :meth:`TurnDetector.start`) where the speech began."""


@dataclass(frozen=True, slots=True)
class SilenceStarted:
    """The caller stopped speaking (maybe for good): decode speculatively from here."""

    at: float
    """``now`` of the first silent frame."""
    audio_s: float
    """Audio time where the speech stopped."""


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """The pause was only a pause: the speculative decode is out of date."""

    at: float
    """``now`` when the resumed speech was confirmed."""


@dataclass(frozen=True, slots=True)
class EndOfTurn:
    """Silence lasted ``end_of_turn_s``: the caller's turn is over."""

    at: float
    """``now`` when the silence reached the end-of-turn length."""
    speech_end: float
    """``now`` when the silence began (the end of the caller's speech)."""


@dataclass(frozen=True, slots=True)
class MaxLength:
    """The utterance reached ``max_utterance_s``."""

    at: float
    """``now`` of the frame that reached it."""


@dataclass(frozen=True, slots=True)
class NoInput:
    """No speech before the no-input deadline."""

    at: float
    """``now`` when the timeout was noticed."""


TurnEvent: TypeAlias = (
    SpeechStarted | SilenceStarted | SpeechResumed | EndOfTurn | MaxLength | NoInput
)


class TurnDetector:
    """The end-of-turn state machine (see the module docstring for the rules)."""

    def __init__(self, config: TurnConfig | None = None) -> None:
        """Create an idle detector.

        Args:
            config: Timings; :meth:`start` may replace them per listening period.
        """
        self.config = config or TurnConfig()
        self.state = TurnState.IDLE
        self.audio_s = 0.0
        """Audio fed since :meth:`start`."""
        self._run_s = 0.0  # current run of speech frames (WAITING) or resumed speech (PAUSED)
        self._run_start_audio = 0.0
        self._utterance_s = 0.0
        self._silence_start: float | None = None
        self._no_input_deadline: float | None = None

    def start(self, config: TurnConfig | None = None) -> None:
        """Begin a listening period (no-input countdown not armed yet).

        Args:
            config: Timings for this period (default: the current ones).
        """
        if config is not None:
            self.config = config
        self.state = TurnState.WAITING
        self.audio_s = 0.0
        self._run_s = 0.0
        self._run_start_audio = 0.0
        self._utterance_s = 0.0
        self._silence_start = None
        self._no_input_deadline = None

    def stop(self) -> None:
        """Stop listening (no more events)."""
        self.state = TurnState.IDLE
        self._no_input_deadline = None
        self._silence_start = None

    @property
    def listening(self) -> bool:
        """Whether frames are expected (``WAITING``, ``SPEAKING`` or ``PAUSED``)."""
        return self.state in (TurnState.WAITING, TurnState.SPEAKING, TurnState.PAUSED)

    def arm_no_input(self, now: float) -> None:
        """Start (or restart) the no-input countdown; ignored once speech started.

        Args:
            now: Current time.
        """
        if self.state is TurnState.WAITING:
            self._no_input_deadline = now + self.config.no_input_s

    def disarm_no_input(self) -> None:
        """Suspend the no-input countdown (a prompt started playing again)."""
        self._no_input_deadline = None

    def feed(self, speech: bool, now: float, *, prompt_playing: bool = False) -> list[TurnEvent]:
        """Process one frame's VAD decision.

        Args:
            speech: Whether the VAD hears speech in this frame.
            now: Current time.
            prompt_playing: A prompt is playing (speech must last longer to count).

        Returns:
            The events this frame caused (usually none).
        """
        cfg = self.config
        state = self.state
        if state not in (TurnState.WAITING, TurnState.SPEAKING, TurnState.PAUSED):
            return []
        frame_start = self.audio_s
        self.audio_s += cfg.frame_s
        events: list[TurnEvent] = []
        if state is TurnState.WAITING:
            if speech:
                if self._run_s == 0.0:
                    self._run_start_audio = frame_start
                self._run_s += cfg.frame_s
                needed = cfg.barge_in_min_speech_s if prompt_playing else cfg.min_speech_s
                if self._run_s + _EPS >= needed:
                    self.state = TurnState.SPEAKING
                    self._utterance_s = self._run_s
                    self._run_s = 0.0
                    self._no_input_deadline = None
                    events.append(SpeechStarted(now, self._run_start_audio))
                    events.extend(self._check_length(now))
            else:
                self._run_s = 0.0
                events.extend(self.handle_timer(now))
            return events
        self._utterance_s += cfg.frame_s
        if state is TurnState.SPEAKING:
            if not speech:
                self.state = TurnState.PAUSED
                self._silence_start = now
                self._run_s = 0.0
                events.append(SilenceStarted(now, frame_start))
        elif speech:
            self._run_s += cfg.frame_s
            if self._run_s + _EPS >= cfg.resume_min_speech_s:
                self.state = TurnState.SPEAKING
                self._silence_start = None
                self._run_s = 0.0
                events.append(SpeechResumed(now))
        else:
            self._run_s = 0.0
            events.extend(self.handle_timer(now))
            if self.state is TurnState.DONE:
                return events
        events.extend(self._check_length(now))
        return events

    def _check_length(self, now: float) -> list[TurnEvent]:
        if self._utterance_s + _EPS >= self.config.max_utterance_s:
            self.state = TurnState.DONE
            self._silence_start = None
            return [MaxLength(now)]
        return []

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must be called next, if at all."""
        if self.state is TurnState.WAITING and self._run_s == 0.0:
            return self._no_input_deadline
        if self.state is TurnState.PAUSED and self._silence_start is not None:
            return self._silence_start + self.config.end_of_turn_s
        return None

    def handle_timer(self, now: float) -> list[TurnEvent]:
        """Fire the no-input or end-of-turn deadline if it has passed.

        Args:
            now: Current time.

        Returns:
            :class:`NoInput` or :class:`EndOfTurn`, or nothing if not yet due.
        """
        deadline = self.get_timer()
        if deadline is None or now + _EPS < deadline:
            return []
        if self.state is TurnState.WAITING:
            self.state = TurnState.DONE
            self._no_input_deadline = None
            return [NoInput(now)]
        assert self._silence_start is not None
        speech_end = self._silence_start
        self.state = TurnState.DONE
        self._silence_start = None
        return [EndOfTurn(now, speech_end)]
