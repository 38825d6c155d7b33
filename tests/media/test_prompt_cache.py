import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from callcenter.media.tts.espeak import EspeakConfig, EspeakTts
from callcenter.media.tts.prompt_cache import PromptCache, PromptCacheError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng missing")


class CountingTts(EspeakTts):
    """Real espeak-ng, counting renders."""

    def __init__(self, config: EspeakConfig | None = None) -> None:
        super().__init__(config=config)
        self.texts: list[str] = []

    async def render(self, text: str) -> bytes:
        self.texts.append(text)
        return await super().render(text)


def missing_tts() -> EspeakTts:
    return EspeakTts(config=EspeakConfig(binary="espeak-ng-not-here"))


def write_16k_recording(path: Path, seconds: float, freq: float = 440.0) -> None:
    t = np.arange(int(16000 * seconds)) / 16000
    samples = np.round(0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(samples.tobytes())


def dominant_frequency(pcm: bytes, rate: int = 8000) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


@needs_espeak
async def test_prepare_renders_with_espeak_and_caches_on_disk(tmp_path: Path) -> None:
    tts = CountingTts()
    cache = PromptCache(tmp_path / "cache", None, tts)
    report = await cache.prepare(
        [
            ("welcome", "Bienvenue au service solidarités.", None),
            ("menu", "Pour les personnes âgées, tapez 1.", None),
        ]
    )
    assert report.rendered == 2 and report.from_disk == 0
    assert cache.source("welcome") == "tts"
    assert 1.0 < cache.duration("welcome") < 8.0
    assert len(cache.get("menu")) == round(cache.duration("menu") * 16000)
    assert "welcome" in cache and cache.prompt_ids == {"welcome", "menu"}
    assert len(list((tmp_path / "cache").glob("tts-*.wav"))) == 2

    # A second process start: nothing rendered again, same audio.
    tts2 = CountingTts()
    again = PromptCache(tmp_path / "cache", None, tts2)
    report2 = await again.prepare([("welcome", "Bienvenue au service solidarités.", None)])
    assert tts2.texts == [] and report2.from_disk == 1
    assert again.get("welcome") == cache.get("welcome")


@needs_espeak
async def test_changed_text_or_rate_re_renders(tmp_path: Path) -> None:
    tts = CountingTts()
    cache = PromptCache(tmp_path, None, tts)
    await cache.prepare([("closed", "Le service est fermé.", None)])
    first = cache.get("closed")
    await cache.prepare([("closed", "Le service est fermé.", None)])
    assert tts.texts == ["Le service est fermé."]  # unchanged: served from disk
    await cache.prepare([("closed", "Le service est actuellement fermé, rappelez demain.", None)])
    assert len(tts.texts) == 2
    assert len(cache.get("closed")) > len(first)
    slower = PromptCache(tmp_path, None, CountingTts(EspeakConfig(rate=100)))
    assert slower.tts_key("x") != cache.tts_key("x")


async def test_recording_overrides_tts_and_is_resampled(tmp_path: Path) -> None:
    recordings = tmp_path / "rec"
    recordings.mkdir()
    write_16k_recording(recordings / "welcome.wav", 1.25, freq=500.0)
    # No espeak needed when a recording exists.
    cache = PromptCache(tmp_path / "cache", recordings, missing_tts())
    report = await cache.prepare([("welcome", "Texte qui ne sera pas synthétisé.", None)])
    assert report.recordings == 1 and report.rendered == 0
    assert cache.source("welcome") == "recording"
    assert cache.duration("welcome") == pytest.approx(1.25, abs=0.001)
    assert len(cache.get("welcome")) == 2 * 10000
    assert dominant_frequency(cache.get("welcome")) == pytest.approx(500, abs=2)
    cached = list((tmp_path / "cache").glob("rec-*.wav"))
    assert len(cached) == 1
    with wave.open(str(cached[0]), "rb") as wav:
        assert wav.getframerate() == 8000

    # Replacing the recording file is picked up (new size/mtime → new key).
    write_16k_recording(recordings / "welcome.wav", 0.5, freq=500.0)
    await cache.prepare([("welcome", "Texte qui ne sera pas synthétisé.", None)])
    assert cache.duration("welcome") == pytest.approx(0.5, abs=0.001)


async def test_named_recording_relative_to_recordings_dir(tmp_path: Path) -> None:
    write_16k_recording(tmp_path / "notice_3114.wav", 0.4)
    cache = PromptCache(tmp_path / "c", tmp_path, missing_tts())
    await cache.prepare([("emergency", None, "notice_3114.wav")])
    assert cache.source("emergency") == "recording"
    with pytest.raises(PromptCacheError, match=r"'other': recording .*nope.wav' not found"):
        await cache.prepare([("other", None, "nope.wav")])


async def test_text_without_tts_or_recording_names_the_prompt(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, tmp_path, missing_tts())
    with pytest.raises(PromptCacheError, match=r"'menu_main'.*apt-get install espeak-ng"):
        await cache.prepare([("menu_main", "Tapez 1.", None)])
    assert "menu_main" not in cache


async def test_invalid_specs_are_all_reported(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, None, missing_tts())
    with pytest.raises(PromptCacheError) as info:
        await cache.prepare([("../etc/passwd", "x", None), ("empty", None, None)])
    assert "invalid prompt id" in str(info.value)
    assert "'empty': neither text nor recording" in str(info.value)
    with pytest.raises(KeyError, match="was not prepared"):
        cache.get("empty")


async def test_add_and_bad_recording(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, tmp_path, missing_tts())
    cache.add("beep", b"\x01\x00" * 80)
    assert cache.duration("beep") == pytest.approx(0.01)
    cache.discard("beep")
    cache.discard("never-added")
    assert "beep" not in cache
    with pytest.raises(ValueError):
        cache.add("odd", b"\x00")
    (tmp_path / "broken.wav").write_bytes(b"not a wav at all")
    with pytest.raises(PromptCacheError, match="'broken'.*not a RIFF/WAVE"):
        await cache.prepare([("broken", "texte", None)])
