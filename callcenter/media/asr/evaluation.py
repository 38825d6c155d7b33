"""Measuring recognisers: a simulated phone line and word error rate (tests and ``bench/asr.py``).

The phone line: 16 kHz audio resampled to 8 kHz (soxr's anti-aliasing filter), G.711 µ-law
encoded and decoded with the project's own codec, then resampled back to 16 kHz.

WER normalisation (``../shared/audio/fr-speech/README.md``): lower case, no punctuation,
hyphens and apostrophes as spaces, and numbers, "%" and "pour cent" written the same way on
both sides (French number words become digits).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soxr

from callcenter.media.audio import decode_wav
from callcenter.rtp.codecs.g711 import ulaw_decode, ulaw_encode
from faq.normalize import numbers_to_digits

__all__ = [
    "load_clip_16k",
    "normalise_for_wer",
    "phone_line",
    "phone_line_8k",
    "read_transcripts",
    "word_errors",
    "wer",
]


def normalise_for_wer(text: str) -> list[str]:
    """Words of ``text`` normalised for scoring.

    Args:
        text: A reference or a hypothesis.

    Returns:
        The words, lower-case, without punctuation, with numbers as digits.
    """
    text = unicodedata.normalize("NFC", text).lower()
    text = text.replace("’", "'").replace("œ", "oe")
    text = re.sub(r"(\d)\s*%", r"\1 pourcent", text)
    text = text.replace("pour cent", "pourcent").replace("%", " pourcent")
    text = re.sub(r"(\d)[h:](\d\d)", r"\1 heure \2", text)
    text = re.sub(r"[-'’]", " ", text)
    text = re.sub(r"[^\w\s]", " ", text)
    # "1", "un" and "une" are the same spoken word for scoring ("minuteur 1 heure").
    return ["un" if t in ("1", "une") else t for t in numbers_to_digits(text.split())]


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Levenshtein distance between two word sequences (substitutions, insertions, deletions).

    Args:
        reference: Expected words.
        hypothesis: Recognised words.

    Returns:
        The number of word errors.
    """
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


def wer(pairs: Iterable[tuple[str, str]]) -> float:
    """Corpus word error rate of (reference, hypothesis) pairs.

    Args:
        pairs: Texts, normalised here with :func:`normalise_for_wer`.

    Returns:
        Total word errors divided by total reference words.
    """
    errors = 0
    words = 0
    for reference, hypothesis in pairs:
        ref = normalise_for_wer(reference)
        errors += word_errors(ref, normalise_for_wer(hypothesis))
        words += len(ref)
    return errors / max(1, words)


def load_clip_16k(path: Path) -> bytes:
    """Load a WAV clip as 16 kHz mono PCM16 (resampled if needed).

    Args:
        path: The WAV file.

    Returns:
        PCM16 LE at 16 kHz.
    """
    audio = decode_wav(path.read_bytes())
    samples = audio.samples
    if audio.sample_rate != 16000:
        samples = np.asarray(soxr.resample(samples, audio.sample_rate, 16000), np.float32)
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2").tobytes()


def phone_line(pcm16k: bytes) -> bytes:
    """Send 16 kHz audio through a simulated G.711 µ-law phone line and back to 16 kHz.

    Args:
        pcm16k: PCM16 LE mono at 16 kHz.

    Returns:
        The degraded audio, PCM16 LE mono at 16 kHz.
    """
    x = np.frombuffer(pcm16k, dtype="<i2").astype(np.float32) / 32768.0
    narrow = np.asarray(soxr.resample(x, 16000, 8000, quality="HQ"), np.float32)
    pcm8 = np.clip(np.round(narrow * 32767.0), -32768, 32767).astype("<i2").tobytes()
    decoded = np.frombuffer(ulaw_decode(ulaw_encode(pcm8)), dtype="<i2").astype(np.float32)
    wide = np.asarray(soxr.resample(decoded / 32768.0, 8000, 16000, quality="HQ"), np.float32)
    return np.clip(np.round(wide * 32767.0), -32768, 32767).astype("<i2").tobytes()


def phone_line_8k(pcm16k: bytes) -> bytes:
    """The 8 kHz PCM16 a call would receive for this 16 kHz audio (after G.711 µ-law).

    Args:
        pcm16k: PCM16 LE mono at 16 kHz.

    Returns:
        PCM16 LE mono at 8 kHz, as decoded from the RTP payload.
    """
    x = np.frombuffer(pcm16k, dtype="<i2").astype(np.float32) / 32768.0
    narrow = np.asarray(soxr.resample(x, 16000, 8000, quality="HQ"), np.float32)
    pcm8 = np.clip(np.round(narrow * 32767.0), -32768, 32767).astype("<i2").tobytes()
    return ulaw_decode(ulaw_encode(pcm8))


def read_transcripts(folder: Path) -> list[tuple[Path, str]]:
    """Read ``transcripts.tsv`` (header ``file<TAB>sentence``) of a clip folder.

    Args:
        folder: The folder holding the clips and ``transcripts.tsv``.

    Returns:
        (clip path, reference sentence) pairs, in file order.
    """
    rows: list[tuple[Path, str]] = []
    lines = (folder / "transcripts.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        if line.strip():
            name, sentence = line.split("\t", 1)
            rows.append((folder / name, sentence.strip()))
    return rows
