import shutil
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from callcenter.media.audio import (
    AudioFormatError,
    decode_wav,
    load_wav_8k,
    normalise,
    wav_bytes_to_pcm16_8k,
    write_wav_8k,
)


def tone(rate: int, seconds: float, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float64)


def write_int_wav(
    path: Path, samples: np.ndarray, rate: int, width: int, channels: int = 1
) -> None:
    data = np.repeat(samples[:, None], channels, axis=1).reshape(-1)
    if width == 1:
        raw = np.round(data * 127 + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.round(data * 32767).astype("<i2").tobytes()
    elif width == 3:
        ints = np.round(data * (2**23 - 1)).astype("<i4")
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    else:
        raw = np.round(data * (2**31 - 1)).astype("<i4").tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(raw)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_decode_integer_widths(tmp_path: Path, width: int, channels: int) -> None:
    src = tone(22050, 0.1)
    path = tmp_path / "t.wav"
    write_int_wav(path, src, 22050, width, channels)
    audio = decode_wav(path.read_bytes())
    assert audio.sample_rate == 22050
    assert len(audio.samples) == len(src)
    tolerance = 0.01 if width == 1 else 1e-4
    assert np.max(np.abs(audio.samples - src)) < tolerance


def test_stereo_mixdown_averages_channels(tmp_path: Path) -> None:
    left = np.full(100, 0.5)
    right = np.full(100, -0.1)
    raw = np.round(np.stack([left, right], axis=1).reshape(-1) * 32767).astype("<i2").tobytes()
    path = tmp_path / "s.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(raw)
    audio = decode_wav(path.read_bytes())
    assert np.allclose(audio.samples, 0.2, atol=1e-3)


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
def test_extensible_24bit_from_sox(tmp_path: Path) -> None:
    path = tmp_path / "ext.wav"
    subprocess.run(
        ["sox", "-n", "-b", "24", "-r", "44100", "-c", "2", str(path)]
        + ["synth", "0.5", "sine", "440"],
        check=True,
    )
    assert struct.unpack_from("<H", path.read_bytes(), 20)[0] == 0xFFFE  # really extensible
    pcm = load_wav_8k(path)
    assert len(pcm) == 2 * 4000
    samples = np.frombuffer(pcm, dtype="<i2")
    assert np.max(np.abs(samples)) > 5000


def test_streaming_size_header_is_clamped() -> None:
    # espeak-ng --stdout writes 0x7ffff000 as the data size.
    body = np.round(tone(16000, 0.25) * 20000).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 0x7FFFF024) + b"WAVE"
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
    data = b"data" + struct.pack("<I", 0x7FFFF000) + body
    pcm = wav_bytes_to_pcm16_8k(header + fmt + data)
    assert len(pcm) == 2 * 2000


def test_float_wav() -> None:
    body = tone(8000, 0.1).astype("<f4").tobytes()
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 3, 1, 8000, 32000, 4, 32)
    data = b"data" + struct.pack("<I", len(body)) + body
    riff = b"RIFF" + struct.pack("<I", 4 + len(fmt) + len(data)) + b"WAVE" + fmt + data
    audio = decode_wav(riff)
    assert len(audio.samples) == 800
    assert abs(float(np.max(audio.samples)) - 0.5) < 1e-3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a RIFF/WAVE"),
        (b"RIFF\0\0\0\0WAVE", "no fmt chunk"),
        (b"RIFF\0\0\0\0WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 1, 2, 16), "no data"),
        (
            b"RIFF\0\0\0\0WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 6, 1, 8000, 8000, 1, 8)
            + b"data\2\0\0\0ab",
            "unsupported WAV encoding 0x0006",
        ),
    ],
)
def test_bad_input_raises_precise_error(data: bytes, message: str) -> None:
    with pytest.raises(AudioFormatError, match=message):
        decode_wav(data)


def test_resample_duration_and_level(tmp_path: Path) -> None:
    path = tmp_path / "quiet48k.wav"
    write_int_wav(path, tone(48000, 1.5, amp=0.02), 48000, 2)
    pcm = load_wav_8k(path)
    assert len(pcm) == 2 * 12000  # 1.5 s at 8 kHz
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    # Quiet input is raised, but by at most +12 dB.
    assert 0.07 < np.max(np.abs(samples)) < 0.09
    raw = load_wav_8k(path, normalise_level=False)
    assert np.max(np.abs(np.frombuffer(raw, dtype="<i2"))) < 700


def test_normalise_never_clips_and_keeps_silence() -> None:
    loud = np.clip(tone(8000, 0.5, amp=3.0), -1, 1).astype(np.float32)
    out = normalise(loud)
    assert np.max(np.abs(out)) <= 10 ** (-3 / 20) + 1e-6
    silence = np.zeros(100, dtype=np.float32)
    assert np.array_equal(normalise(silence), silence)


def test_write_wav_8k_round_trip(tmp_path: Path) -> None:
    pcm = np.arange(-500, 500, dtype="<i2").tobytes()
    path = tmp_path / "out.wav"
    write_wav_8k(path, pcm)
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.readframes(wav.getnframes()) == pcm
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
