"""Silero VAD (from faster-whisper) on phone-line speech, silence and noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from callcenter.media.asr.evaluation import load_clip_16k, phone_line_8k
from callcenter.media.asr.resample import Upsampler2x
from callcenter.media.asr.vad import SileroVadModel


@pytest.fixture(scope="module")
def model() -> SileroVadModel:
    return SileroVadModel()


def decisions(model: SileroVadModel, pcm8: bytes) -> list[bool]:
    vad = model.stream()
    up = Upsampler2x()
    out = []
    for offset in range(0, len(pcm8) - 319, 320):
        x = np.frombuffer(pcm8[offset : offset + 320], dtype="<i2").astype(np.float32)
        x *= np.float32(1 / 32768)
        out.append(vad.feed(up.process(x)))
    return out


def test_speech_detected_with_its_end(
    model: SileroVadModel, fr_clips: list[tuple[Path, str]]
) -> None:
    pcm8 = phone_line_8k(load_clip_16k(fr_clips[1][0])) + bytes(320 * 40)
    d = decisions(model, pcm8)
    assert sum(d) >= 20  # at least 0.4 s of speech
    assert not any(d[-20:])  # the trailing silence is silence


@pytest.mark.parametrize("level_db", [-40, -30])
def test_noise_is_not_speech(model: SileroVadModel, level_db: int) -> None:
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 10 ** (level_db / 20), 8000 * 3)
    pcm8 = (np.clip(noise, -1, 1) * 32767).astype("<i2").tobytes()
    assert sum(decisions(model, pcm8)) == 0
    assert sum(decisions(model, bytes(8000 * 2 * 2))) == 0


def test_upsampler_gives_one_block_per_frame() -> None:
    up = Upsampler2x()
    tone = (0.3 * np.sin(2 * np.pi * 1000 * np.arange(160) / 8000)).astype(np.float32)
    out = [up.process(tone) for _ in range(10)]
    assert {o.size for o in out} == {320}
    assert float(np.sqrt(np.mean(out[-1] ** 2))) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
