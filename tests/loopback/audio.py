"""Audio helpers for real-peer tests: make caller WAVs with espeak-ng/sox, decode them with numpy.

The WAV decoder is our own (a few lines of RIFF walking) because the standard ``wave`` module
only reads PCM, while sipp streams G.711 WAVs (format tag 7 = µ-law, 6 = A-law).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

Encoding = Literal["u-law", "a-law", "pcm16"]

FloatArray = npt.NDArray[np.float64]

DEFAULT_TEXT = "Bonjour, je voudrais des renseignements sur l'allocation personnalisée d'autonomie."


def have(binary: str) -> bool:
    """Tell whether an executable is on PATH."""
    return shutil.which(binary) is not None


def _sox_encoding_args(encoding: Encoding) -> list[str]:
    if encoding == "pcm16":
        return ["-e", "signed-integer", "-b", "16"]
    return ["-e", encoding]


def espeak_wav(
    out: Path, text: str = DEFAULT_TEXT, *, voice: str = "fr+f3", speed: int = 140
) -> Path:
    """Render ``text`` with espeak-ng into ``out`` (espeak's native 22.05 kHz PCM16)."""
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(out), text],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return out


def convert(src: Path, out: Path, encoding: Encoding, *, pad_s: float = 0.0) -> Path:
    """Resample ``src`` to 8 kHz mono in ``encoding``; optionally append ``pad_s`` s of silence."""
    cmd = ["sox", str(src), "-r", "8000", "-c", "1", *_sox_encoding_args(encoding), str(out)]
    if pad_s > 0:
        cmd += ["pad", "0", f"{pad_s:g}"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    return out


def caller_wav(
    out: Path, encoding: Encoding, *, text: str = DEFAULT_TEXT, pad_s: float = 0.0
) -> Path:
    """Make a caller-side speech WAV (8 kHz mono) in ``encoding``; espeak-ng, else a sox tone."""
    raw = out.with_suffix(".src.wav")
    if have("espeak-ng"):
        espeak_wav(raw, text)
    else:
        subprocess.run(
            [
                "sox",
                "-n",
                "-r",
                "8000",
                "-c",
                "1",
                "-b",
                "16",
                str(raw),
                "synth",
                "3",
                "sine",
                "440",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
    convert(raw, out, encoding, pad_s=pad_s)
    raw.unlink(missing_ok=True)
    return out


# --- G.711 decoding (ITU-T G.711 tables, built once with numpy) ---------------------------------


def _ulaw_table() -> npt.NDArray[np.int16]:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> npt.NDArray[np.int16]:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1)
    )
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


ULAW_TABLE = _ulaw_table()
ALAW_TABLE = _alaw_table()


def decode_ulaw(data: bytes) -> npt.NDArray[np.int16]:
    """Decode G.711 µ-law bytes to PCM16 samples."""
    return ULAW_TABLE[np.frombuffer(data, dtype=np.uint8)]


def decode_alaw(data: bytes) -> npt.NDArray[np.int16]:
    """Decode G.711 A-law bytes to PCM16 samples."""
    return ALAW_TABLE[np.frombuffer(data, dtype=np.uint8)]


def read_wav(path: Path) -> tuple[FloatArray, int]:
    """Read a mono/stereo PCM16, µ-law or A-law WAV; return (samples in [-1, 1] of channel 0, rate).

    Raises:
        ValueError: the file is not a RIFF/WAVE file or uses an unsupported format.
    """
    blob = path.read_bytes()
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos = 12
    fmt: tuple[int, int, int, int] | None = None
    data: bytes | None = None
    while pos + 8 <= len(blob):
        chunk_id = blob[pos : pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = blob[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            tag, channels, rate = struct.unpack_from("<HHI", body, 0)
            (bits,) = struct.unpack_from("<H", body, 14)
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: real tag in the GUID
                (tag,) = struct.unpack_from("<H", body, 24)
            fmt = (tag, channels, rate, bits)
        elif chunk_id == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise ValueError(f"{path}: missing fmt or data chunk")
    tag, channels, rate, bits = fmt
    if tag == 1 and bits == 16:
        pcm = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
    elif tag == 7 and bits == 8:
        pcm = decode_ulaw(data)
    elif tag == 6 and bits == 8:
        pcm = decode_alaw(data)
    else:
        raise ValueError(f"{path}: unsupported WAV format tag {tag} with {bits} bits")
    if channels > 1:
        pcm = pcm[: len(pcm) // channels * channels].reshape(-1, channels)[:, 0]
    return pcm.astype(np.float64) / 32768.0, int(rate)


def resample(samples: FloatArray, rate: int, target: int) -> FloatArray:
    """Resample with soxr (installed in the venv); identity when the rates match."""
    if rate == target:
        return samples
    import soxr

    out: FloatArray = np.asarray(soxr.resample(samples, rate, target), dtype=np.float64)
    return out


# --- Analysis ------------------------------------------------------------------------------------


def rms_dbfs(samples: FloatArray) -> float:
    """Root-mean-square level in dBFS (−inf for digital silence)."""
    if samples.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(samples**2)))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")


def active_span(
    samples: FloatArray, rate: int, *, threshold_db: float = -40.0, frame_ms: int = 20
) -> tuple[float, float]:
    """Return (first, last) time in seconds of 20 ms frames louder than ``threshold_db``.

    Returns (0.0, 0.0) when no frame is that loud.
    """
    n = rate * frame_ms // 1000
    frames = samples[: samples.size // n * n].reshape(-1, n)
    if frames.size == 0:
        return 0.0, 0.0
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.nonzero(level > threshold_db)[0]
    if loud.size == 0:
        return 0.0, 0.0
    return float(loud[0] * n / rate), float((loud[-1] + 1) * n / rate)


def xcorr_peak(reference: FloatArray, signal: FloatArray) -> float:
    """Peak normalized cross-correlation of ``reference`` slid over ``signal`` (same rate).

    1.0 means ``signal`` contains ``reference`` exactly (up to gain) at some offset. Computed
    with FFTs and a running energy of ``signal`` so each offset is normalized on its own window.
    """
    ref = reference - reference.mean()
    sig = signal - signal.mean()
    m = ref.size
    if sig.size < m:
        sig = np.concatenate([sig, np.zeros(m - sig.size)])
    n = 1 << int(np.ceil(np.log2(sig.size + m)))
    corr = np.fft.irfft(np.fft.rfft(sig, n) * np.conj(np.fft.rfft(ref, n)), n)[: sig.size - m + 1]
    energy = np.concatenate([[0.0], np.cumsum(sig**2)])
    window = energy[m:] - energy[:-m]
    denom = np.sqrt(np.maximum(window, 1e-12) * float(np.sum(ref**2)))
    return float(np.max(np.abs(corr) / denom))
