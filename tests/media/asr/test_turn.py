from __future__ import annotations

import pytest

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
    TurnState,
)

CFG = TurnConfig(
    end_of_turn_s=0.8,
    no_input_s=5.0,
    max_utterance_s=3.0,
    min_speech_s=0.2,
    barge_in_min_speech_s=0.3,
    resume_min_speech_s=0.06,
)


class Clock:
    """Feeds 20 ms frames and advances time by 20 ms each."""

    def __init__(self, detector: TurnDetector) -> None:
        self.d = detector
        self.now = 100.0
        self.events: list[TurnEvent] = []

    def frames(self, speech: bool, seconds: float, *, prompt: bool = False) -> list[TurnEvent]:
        out: list[TurnEvent] = []
        for _ in range(round(seconds / 0.02)):
            self.now += 0.02
            out.extend(self.d.feed(speech, self.now, prompt_playing=prompt))
        self.events.extend(out)
        return out


def started(cfg: TurnConfig = CFG, *, arm: bool = True) -> Clock:
    d = TurnDetector()
    d.start(cfg)
    clock = Clock(d)
    if arm:
        d.arm_no_input(clock.now)
    return clock


def state(d: TurnDetector) -> TurnState:
    return d.state  # a call: mypy must not carry a narrowed state across start()/stop()


def types(events: list[TurnEvent]) -> list[type]:
    return [type(e) for e in events]


def test_idle_detector_ignores_frames() -> None:
    d = TurnDetector(CFG)
    assert d.feed(True, 1.0) == []
    assert d.get_timer() is None
    assert d.state is TurnState.IDLE and not d.listening


def test_speech_started_after_minimum_speech() -> None:
    c = started()
    assert c.frames(True, 0.18) == []  # 9 frames: not yet
    events = c.frames(True, 0.02)
    assert types(events) == [SpeechStarted]
    assert isinstance(events[0], SpeechStarted)
    assert events[0].audio_start_s == pytest.approx(0.0)
    assert c.d.state is TurnState.SPEAKING


def test_short_noise_does_not_start_speech_and_audio_start_is_tracked() -> None:
    c = started()
    c.frames(True, 0.1)  # a cough
    c.frames(False, 0.2)
    assert c.events == []
    events = c.frames(True, 0.2)
    assert isinstance(events[0], SpeechStarted)
    assert events[0].audio_start_s == pytest.approx(0.3)


def test_barge_in_needs_longer_speech_while_a_prompt_plays() -> None:
    c = started(arm=False)
    assert c.frames(True, 0.28, prompt=True) == []
    assert types(c.frames(True, 0.02, prompt=True)) == [SpeechStarted]


def test_silence_started_then_end_of_turn_by_frames() -> None:
    c = started()
    c.frames(True, 0.5)
    events = c.frames(False, 0.02)
    assert types(events) == [SilenceStarted]
    speech_end = c.now
    assert c.d.get_timer() == pytest.approx(speech_end + 0.8)
    assert c.frames(False, 0.76) == []
    events = c.frames(False, 0.04)
    assert types(events) == [EndOfTurn]
    assert isinstance(events[0], EndOfTurn)
    assert events[0].speech_end == pytest.approx(speech_end)
    assert c.d.state is TurnState.DONE and not c.d.listening
    assert c.frames(True, 1.0) == []  # done: nothing more


def test_end_of_turn_by_timer_when_packets_stop() -> None:
    c = started()
    c.frames(True, 0.5)
    c.frames(False, 0.02)
    deadline = c.d.get_timer()
    assert deadline is not None
    assert c.d.handle_timer(deadline - 0.01) == []
    assert types(c.d.handle_timer(deadline)) == [EndOfTurn]
    assert c.d.get_timer() is None


def test_speech_resumed_cancels_end_of_turn() -> None:
    c = started()
    c.frames(True, 0.5)
    c.frames(False, 0.5)
    assert c.frames(True, 0.04) == []  # under resume_min_speech_s
    events = c.frames(True, 0.02)
    assert types(events) == [SpeechResumed]
    assert c.d.get_timer() is None
    # A second pause restarts the end-of-turn countdown from its own beginning.
    assert types(c.frames(False, 0.02)) == [SilenceStarted]
    assert c.frames(False, 0.7) == []
    assert types(c.frames(False, 0.1)) == [EndOfTurn]


def test_brief_speech_in_a_pause_does_not_reset_the_silence() -> None:
    c = started()
    c.frames(True, 0.5)
    c.frames(False, 0.4)
    c.frames(True, 0.04)  # a click, shorter than resume_min_speech_s
    c.frames(False, 0.34)
    assert types(c.frames(False, 0.04)) == [EndOfTurn]


def test_max_length_counts_pauses() -> None:
    c = started()
    c.frames(True, 2.0)
    c.frames(False, 0.5)
    events = c.frames(True, 0.5)
    assert types(events) == [SpeechResumed, MaxLength]
    assert c.d.state is TurnState.DONE


def test_max_length_during_a_pause() -> None:
    cfg = TurnConfig(end_of_turn_s=2.0, max_utterance_s=1.0)
    c = started(cfg)
    c.frames(True, 0.6)
    assert types(c.frames(False, 0.4)) == [SilenceStarted, MaxLength]


def test_no_input_by_frames_and_by_timer() -> None:
    c = started()
    assert c.d.get_timer() == pytest.approx(105.0)
    c.frames(False, 4.98)
    assert c.events == []
    assert types(c.frames(False, 0.02)) == [NoInput]
    assert c.d.state is TurnState.DONE

    c = started()
    assert types(c.d.handle_timer(105.0)) == [NoInput]


def test_no_input_not_armed_until_asked() -> None:
    c = started(arm=False)
    assert c.d.get_timer() is None
    c.frames(False, 10.0)
    assert c.events == []
    c.d.arm_no_input(c.now)
    assert c.d.get_timer() == pytest.approx(c.now + 5.0)


def test_no_input_disarmed_while_a_prompt_plays_again() -> None:
    c = started()
    c.d.disarm_no_input()
    c.frames(False, 6.0)
    assert c.events == []


def test_no_input_waits_for_a_speech_candidate() -> None:
    c = started()
    c.frames(False, 4.9)
    c.frames(True, 0.1)  # candidate in progress at the deadline
    assert c.d.get_timer() is None
    assert types(c.frames(True, 0.1)) == [SpeechStarted]  # it became speech: no timeout
    assert c.d.get_timer() is None


def test_no_input_fires_after_a_failed_candidate_past_the_deadline() -> None:
    c = started()
    c.frames(False, 4.9)
    c.frames(True, 0.14)
    assert types(c.frames(False, 0.02)) == [NoInput]


def test_arm_no_input_ignored_once_speaking() -> None:
    c = started()
    c.frames(True, 0.3)
    c.d.arm_no_input(c.now)
    assert c.d.get_timer() is None


def test_stop_and_restart() -> None:
    c = started()
    c.frames(True, 0.3)
    c.d.stop()
    assert state(c.d) is TurnState.IDLE and c.d.get_timer() is None
    c.d.start()
    assert state(c.d) is TurnState.WAITING and c.d.audio_s == 0.0
    assert types(c.frames(True, 0.2)) == [SpeechStarted]


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        TurnConfig(end_of_turn_s=0)
