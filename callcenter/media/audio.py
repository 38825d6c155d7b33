"""WAV loading, mono mixdown, resampling to 8 kHz PCM16 and level normalisation.

The RIFF reader is our own (a few lines) rather than stdlib ``wave`` because ``wave`` in Python
3.11 rejects ``WAVE_FORMAT_EXTENSIBLE`` (what sox writes for 24-bit or multichannel files) and
IEEE float, and trusts the data size that streaming writers such as ``espeak-ng --stdout`` leave
at ``0x7ffff000``. Writing uses stdlib ``wave``.
"""

from __future__ import annotations

import os
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr

__all__ = [
    "TELEPHONE_RATE",
    "AudioFormatError",
    "DecodedAudio",
    "decode_wav",
    "load_wav_8k",
    "normalise",
    "to_pcm16_8k",
    "wav_bytes_to_pcm16_8k",
    "write_wav_8k",
]

TELEPHONE_RATE = 8000
"""Sample rate of the G.711 leg (RFC 3551 section 4.5.14)."""

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE

# Telephone-friendly level: speech RMS near -20 dBFS, peaks kept below -3 dBFS, and a gain
# bounded to +/-12 dB so a deliberately quiet or loud recording is only nudged.
_TARGET_RMS = 10 ** (-20 / 20)
_PEAK_CEILING = 10 ** (-3 / 20)
_MAX_GAIN = 4.0
_MIN_GAIN = 0.25

Samples = npt.NDArray[np.float32]


class AudioFormatError(ValueError):
    """The data is not a WAV file this module can decode."""


@dataclass(frozen=True, slots=True)
class DecodedAudio:
    """Mono audio as float32 samples in [-1, 1]."""

    samples: Samples
    """Mono samples (channels averaged)."""
    sample_rate: int
    """Samples per second."""


def decode_wav(data: bytes) -> DecodedAudio:
    """Decode a RIFF/WAVE file held in memory and mix it down to mono.

    Supports integer PCM of 8, 16, 24 and 32 bits and 32/64-bit float, plain or
    ``WAVE_FORMAT_EXTENSIBLE``, any rate and channel count.

    Args:
        data: The complete file.

    Returns:
        The mono samples and their rate.

    Raises:
        AudioFormatError: Not a WAV file, or an unsupported encoding.
    """
    if len(data) < 12 or data[0:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioFormatError("not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    pcm: bytes | None = None
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]  # streaming writers overstate size: clamp
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise AudioFormatError("truncated fmt chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
                (tag,) = struct.unpack_from("<H", body, 24)  # first two bytes of SubFormat GUID
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            pcm = body
            break
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    if fmt is None:
        raise AudioFormatError("no fmt chunk")
    if pcm is None:
        raise AudioFormatError("no data chunk")
    tag, channels, rate, bits = fmt
    if channels < 1 or rate < 1:
        raise AudioFormatError(f"invalid WAV header: {channels} channels at {rate} Hz")
    samples = _decode_samples(pcm, tag, bits)
    frames = len(samples) // channels
    mono = samples[: frames * channels].reshape(frames, channels).mean(axis=1, dtype=np.float32)
    return DecodedAudio(samples=mono.astype(np.float32, copy=False), sample_rate=rate)


def _decode_samples(pcm: bytes, tag: int, bits: int) -> Samples:
    if not 1 <= bits <= 64:
        raise AudioFormatError(f"unsupported sample width: {bits} bits")
    width = (bits + 7) // 8
    pcm = pcm[: len(pcm) - len(pcm) % width]
    if tag == _WAVE_FORMAT_IEEE_FLOAT and bits in (32, 64):
        floats = np.frombuffer(pcm, dtype="<f4" if bits == 32 else "<f8").astype(np.float32)
        clipped: Samples = np.clip(floats, -1.0, 1.0)
        return clipped
    if tag != _WAVE_FORMAT_PCM:
        raise AudioFormatError(f"unsupported WAV encoding 0x{tag:04x} (need PCM or float)")
    if width == 1:  # 8-bit WAV is unsigned, centred on 128
        return ((np.frombuffer(pcm, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0).astype(
            np.float32
        )
    if width == 2:
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    if width == 3:
        raw = np.frombuffer(pcm, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return (value.astype(np.float32) / float(1 << 23)).astype(np.float32)
    if width == 4:
        return (np.frombuffer(pcm, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(
            np.float32
        )
    raise AudioFormatError(f"unsupported sample width: {bits} bits")


def normalise(samples: Samples) -> Samples:
    """Bring speech to a telephone-friendly level without clipping.

    Args:
        samples: Mono float samples.

    Returns:
        The samples scaled by a bounded gain (silence is returned unchanged).
    """
    if samples.size == 0:
        return samples
    peak = float(np.max(np.abs(samples)))
    if peak < 1e-6:
        return samples
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    gain = min(_TARGET_RMS / rms, _PEAK_CEILING / peak, _MAX_GAIN)
    # The peak bound is >= 0.7 for samples in [-1, 1], so this floor never causes clipping.
    gain = max(gain, _MIN_GAIN)
    return (samples * np.float32(gain)).astype(np.float32)


def to_pcm16_8k(audio: DecodedAudio, *, normalise_level: bool = True) -> bytes:
    """Resample mono audio to 8 kHz and encode it as PCM16 little-endian.

    Args:
        audio: Decoded mono audio at any rate.
        normalise_level: Apply :func:`normalise` after resampling.

    Returns:
        PCM16 LE bytes at 8000 Hz.
    """
    samples = audio.samples
    if audio.sample_rate != TELEPHONE_RATE and samples.size:
        samples = np.asarray(
            soxr.resample(samples, audio.sample_rate, TELEPHONE_RATE, quality="HQ"),
            dtype=np.float32,
        )
    if normalise_level:
        samples = normalise(samples)
    ints = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    return ints.tobytes()


def wav_bytes_to_pcm16_8k(data: bytes, *, normalise_level: bool = True) -> bytes:
    """Decode a WAV file in memory and convert it to 8 kHz mono PCM16.

    Args:
        data: The WAV file content.
        normalise_level: Apply :func:`normalise`.

    Returns:
        PCM16 LE bytes at 8000 Hz.
    """
    return to_pcm16_8k(decode_wav(data), normalise_level=normalise_level)


def load_wav_8k(path: Path, *, normalise_level: bool = True) -> bytes:
    """Load a WAV file of any rate, width and channel count as 8 kHz mono PCM16.

    Args:
        path: The file to read.
        normalise_level: Apply :func:`normalise`.

    Returns:
        PCM16 LE bytes at 8000 Hz.

    Raises:
        AudioFormatError: The file is not a supported WAV (message names the file).
    """
    try:
        return wav_bytes_to_pcm16_8k(path.read_bytes(), normalise_level=normalise_level)
    except AudioFormatError as exc:
        raise AudioFormatError(f"{path}: {exc}") from exc


def write_wav_8k(path: Path, pcm: bytes) -> None:
    """Write 8 kHz mono PCM16 to ``path`` atomically (temporary file, then rename).

    Args:
        path: Destination.
        pcm: PCM16 LE bytes at 8000 Hz.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(TELEPHONE_RATE)
        out.writeframes(pcm)
    os.replace(tmp, path)
