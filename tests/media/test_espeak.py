import asyncio
import os
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from callcenter.media.tts.espeak import (
    EspeakConfig,
    EspeakTts,
    TtsRenderError,
    TtsUnavailableError,
)

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")

SENTENCE = "Bonjour, vous êtes bien au service solidarités du département."


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2)))


@needs_espeak
async def test_renders_french_sentence_at_8k() -> None:
    tts = EspeakTts()
    pcm = await tts.render(SENTENCE)
    seconds = len(pcm) / 16000
    # Ten words at 130 words/min plus pauses: a few seconds, not milliseconds or minutes.
    assert 2.0 < seconds < 10.0, seconds
    assert rms(pcm) > 500  # speech, not silence
    assert len(pcm) % 2 == 0


@needs_espeak
async def test_slower_rate_gives_longer_audio() -> None:
    slow = await EspeakTts(config=EspeakConfig(rate=100)).render(SENTENCE)
    fast = await EspeakTts(config=EspeakConfig(rate=200)).render(SENTENCE)
    assert len(slow) > 1.4 * len(fast)


@needs_espeak
async def test_text_starting_with_dash_is_spoken_not_parsed_as_option() -> None:
    pcm = await EspeakTts().render("-s 450 --version")
    assert len(pcm) > 8000  # at least half a second of speech


async def test_missing_binary_raises_clear_error() -> None:
    tts = EspeakTts(config=EspeakConfig(binary="espeak-ng-definitely-missing"))
    assert not tts.is_available()
    with pytest.raises(TtsUnavailableError, match=r"apt-get install espeak-ng"):
        tts.check_available()
    with pytest.raises(TtsUnavailableError, match="espeak-ng-definitely-missing"):
        await tts.render("Bonjour")


async def test_empty_text_and_bad_config() -> None:
    with pytest.raises(TtsRenderError, match="empty"):
        await EspeakTts().render("   ")
    with pytest.raises(ValueError, match="rate"):
        EspeakConfig(rate=10)


async def test_failing_binary_reports_status() -> None:
    tts = EspeakTts(config=EspeakConfig(binary="false"))
    with pytest.raises(TtsRenderError, match="exited with status 1"):
        await tts.render("Bonjour")


def fake_espeak(tmp_path: Path, body: str) -> str:
    """A stand-in binary: runs ``body`` then writes a 0.1 s 22.05 kHz WAV on stdout."""
    wav = tmp_path / "out.wav"
    samples = (np.sin(np.arange(2205) / 5) * 8000).astype("<i2")
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(22050)
        out.writeframes(samples.tobytes())
    script = tmp_path / "fake-espeak"
    script.write_text(f"#!/bin/sh\ncat >/dev/null\n{body}\ncat {wav}\n")
    script.chmod(0o755)
    return str(script)


async def test_concurrency_is_bounded(tmp_path: Path) -> None:
    log = tmp_path / "log"
    binary = fake_espeak(tmp_path, f"echo start >> {log}; sleep 0.05; echo end >> {log}")
    tts = EspeakTts(config=EspeakConfig(binary=binary, max_concurrency=2))
    results = await asyncio.gather(*(tts.render(f"texte {i}") for i in range(6)))
    assert all(len(pcm) == 1600 for pcm in results)  # 0.1 s at 8 kHz
    running = peak = 0
    for line in log.read_text().split():
        running += 1 if line == "start" else -1
        peak = max(peak, running)
    assert peak == 2


async def test_timeout_kills_renderer(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    binary = fake_espeak(tmp_path, f"echo $$ > {pid_file}; exec sleep 30")
    tts = EspeakTts(config=EspeakConfig(binary=binary, timeout_s=0.3))
    with pytest.raises(TtsRenderError, match="timed out"):
        await tts.render("Bonjour")
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


async def test_cancellation_propagates_and_reaps_renderer(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    binary = fake_espeak(tmp_path, f"echo $$ > {pid_file}; exec sleep 30")
    tts = EspeakTts(config=EspeakConfig(binary=binary))
    task = asyncio.create_task(tts.render("Bonjour"), name="render")
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
