import dataclasses

import pytest

from callcenter.media.frames import (
    AudioFrame,
    BargeInFrame,
    CancelFrame,
    CollectDigitsFrame,
    ControlFrame,
    DataFrame,
    DigitsCollectedFrame,
    DigitsTimeoutFrame,
    DtmfFrame,
    PlayPromptFrame,
    PromptFinishedFrame,
    PromptStartedFrame,
    StartFrame,
    StopPromptFrame,
    SystemFrame,
)


def test_families() -> None:
    for system in (StartFrame(), CancelFrame(), BargeInFrame(), DtmfFrame("5")):
        assert isinstance(system, SystemFrame)
    assert isinstance(AudioFrame(b"\0\0", 8000, 1, 0), DataFrame)
    for control in (
        PlayPromptFrame("p"),
        StopPromptFrame(),
        PromptStartedFrame("p"),
        PromptFinishedFrame("p", interrupted=False),
        CollectDigitsFrame(),
        DigitsCollectedFrame("12"),
        DigitsTimeoutFrame(),
    ):
        assert isinstance(control, ControlFrame)
        assert not isinstance(control, SystemFrame)


def test_frozen_and_slotted() -> None:
    frame = PlayPromptFrame("welcome", interruptible=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.prompt_id = "other"  # type: ignore[misc]
    assert not hasattr(frame, "__dict__")
    assert PlayPromptFrame("a").interruptible is True


def test_validation() -> None:
    with pytest.raises(ValueError, match="invalid DTMF digit"):
        DtmfFrame("x")
    with pytest.raises(ValueError, match="max_digits"):
        CollectDigitsFrame(max_digits=0)
    with pytest.raises(ValueError, match="timeout_s"):
        CollectDigitsFrame(timeout_s=-1)
    assert CollectDigitsFrame(timeout_s=0).timeout_s == 0  # collect only while prompts play
    assert CollectDigitsFrame().terminator == "#"
