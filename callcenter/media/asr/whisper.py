"""faster-whisper with the Whisper base model (the default engine).

Decoding settings are the measured ones (``../shared/SPEECH.md``, ``bench/asr.py``): French,
greedy or beam search at temperature 0 with **no** fallback (the fallback re-decodes at higher
temperatures and caused 3-15 s spikes), at most :attr:`AsrSettings.max_new_tokens` tokens, no
conditioning on previous text, no timestamps, and **no** initial prompt (on short input Whisper
repeats the prompt back: "oui" became "MDPH, PCH, AAH,").

Whisper is not a streaming model: :meth:`WhisperStream.result` decodes the whole utterance each
time, and returns its previous result when no audio arrived since. Whisper invents text on
silence and noise ("Sous-titres réalisés par la communauté d'Amara.org"): segments the model
itself thinks are not speech, low-probability loops, and the known subtitle credits are dropped.
"""

from __future__ import annotations

import importlib
import math
import re
import threading
import time
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from callcenter.media.asr.base import AsrError, BufferedStream, Transcript

if TYPE_CHECKING:
    from callcenter.media.asr.settings import AsrSettings

__all__ = ["WhisperEngine", "WhisperStream", "is_hallucination"]

# Whisper's own "no speech" rule (openai/whisper transcribe.py: no_speech_threshold=0.6 with
# logprob_threshold=-1.0), plus a stricter one for very unsure segments.
_NO_SPEECH_PROB = 0.6
_LOGPROB_FLOOR = -1.0
_VERY_UNSURE_LOGPROB = -1.5
_LOOP_COMPRESSION_RATIO = 2.4

# Credits and sign-offs from subtitled videos that Whisper produces on silence or noise.
_HALLUCINATIONS = (
    "sous-titres réalisés par la communauté d'amara.org",
    "sous-titres réalisés para la communauté d'amara.org",
    "sous-titrage st' 501",
    "sous-titrage st'501",
    "sous-titrage société radio-canada",
    "sous-titres fait par",
    "sous-titres par",
    "merci d'avoir regardé",
    "merci de votre attention",
    "abonnez-vous",
    "amara.org",
)
_ONLY_PUNCT = re.compile(r"^[\W_]*$")


def is_hallucination(text: str) -> bool:
    """Whether ``text`` is a known Whisper invention on silence (subtitle credits etc.).

    Args:
        text: A segment's text.

    Returns:
        True if it should be dropped.
    """
    norm = unicodedata.normalize("NFC", text).strip().lower().replace("’", "'")
    if _ONLY_PUNCT.match(norm):
        return True
    return any(marker in norm for marker in _HALLUCINATIONS)


class WhisperStream(BufferedStream):
    """One utterance for :class:`WhisperEngine` (decodes the whole buffer on each result)."""

    def __init__(self, engine: WhisperEngine) -> None:
        """Create a stream of ``engine``."""
        super().__init__()
        self._engine = engine
        self._audio = np.zeros(0, dtype=np.float32)
        self._last: Transcript | None = None
        self._last_len = -1

    def advance(self) -> None:
        """Nothing to do ahead of time for Whisper."""

    def result(self) -> Transcript:
        """Decode everything fed so far (blocking; cached while no audio arrives).

        Returns:
            The transcript, empty when nothing but silence or noise was heard.
        """
        with self.lock:
            if self.closed:
                raise AsrError("stream closed")
            pending = self.take_pending()
            if pending:
                more = np.frombuffer(pending, dtype="<i2").astype(np.float32) / 32768.0
                self._audio = np.concatenate((self._audio, more))
            if self._last is not None and self._last_len == self._audio.size:
                return self._last
            self._last = self._engine.transcribe(self._audio)
            self._last_len = self._audio.size
            return self._last

    def close(self) -> None:
        """Free the audio buffer."""
        with self.lock:
            self.closed = True
            self._audio = np.zeros(0, dtype=np.float32)
            self.take_pending()


class WhisperEngine:
    """faster-whisper model shared by all calls (thread-safe; ``workers`` decode in parallel)."""

    def __init__(self, model_dir: Path, settings: AsrSettings) -> None:
        """Load a CTranslate2 Whisper model.

        Args:
            model_dir: Folder with ``model.bin``, ``config.json``, ``tokenizer.json`` and
                ``vocabulary.txt`` (see :func:`~callcenter.media.asr.models.ensure_whisper_base`).
            settings: Threads, workers and decoding options.

        Raises:
            AsrError: The model cannot be loaded.
        """
        whisper_model = importlib.import_module("faster_whisper").WhisperModel  # untyped

        self.settings = settings
        self.model_dir = model_dir
        self._name = f"whisper-{model_dir.name.removeprefix('whisper-') or 'model'}"
        started = time.perf_counter()
        try:
            self._model: Any = whisper_model(
                str(model_dir),
                device="cpu",
                compute_type="int8",
                cpu_threads=settings.threads,
                num_workers=settings.workers,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise AsrError(f"cannot load the Whisper model in {model_dir}: {exc}") from exc
        self.load_s = time.perf_counter() - started
        self._options: dict[str, Any] = {
            "language": settings.language,
            "task": "transcribe",
            "beam_size": settings.beam_size,
            "best_of": 1,
            "temperature": 0.0,
            "compression_ratio_threshold": None,
            "log_prob_threshold": _LOGPROB_FLOOR,
            "no_speech_threshold": _NO_SPEECH_PROB,
            "condition_on_previous_text": False,
            "without_timestamps": True,
            "initial_prompt": None,
            "max_new_tokens": settings.max_new_tokens,
            "vad_filter": False,
            "word_timestamps": False,
        }
        self._closed = threading.Event()

    @property
    def name(self) -> str:
        """``whisper-base`` for the default model."""
        return self._name

    @property
    def streaming(self) -> bool:
        """Whisper decodes whole utterances: nothing to do while the caller speaks."""
        return False

    def start(self, grammar: Sequence[str] | None = None) -> WhisperStream:
        """Begin an utterance.

        Args:
            grammar: Ignored: Whisper cannot be restricted to a word list (closed questions
                map its free text onto the expected answers, or use Vosk or the keypad).

        Returns:
            A new stream.
        """
        return WhisperStream(self)

    def transcribe(self, audio: np.ndarray[Any, np.dtype[np.float32]]) -> Transcript:
        """Decode 16 kHz float32 mono audio in the calling thread (blocking).

        Args:
            audio: Samples in [-1, 1].

        Returns:
            The transcript with a confidence from the segments' log-probabilities.
        """
        audio_s = audio.size / 16000.0
        started = time.perf_counter()
        if audio.size < 1600:  # under 0.1 s: nothing Whisper could read
            return Transcript("", 0.0, self.name, audio_s, 0.0)
        segments, _info = self._model.transcribe(audio, **self._options)
        texts: list[str] = []
        weights = 0.0
        logprob_sum = 0.0
        speech_probs: list[float] = []
        for segment in segments:  # a generator: decoding happens while iterating
            text = segment.text.strip()
            if not text or is_hallucination(text):
                continue
            if segment.no_speech_prob > _NO_SPEECH_PROB and segment.avg_logprob < _LOGPROB_FLOOR:
                continue
            if segment.avg_logprob < _VERY_UNSURE_LOGPROB:
                continue
            if segment.compression_ratio > _LOOP_COMPRESSION_RATIO:
                continue  # the decoder looped on its own output
            weight = float(max(1, len(segment.tokens)))
            texts.append(text)
            weights += weight
            logprob_sum += segment.avg_logprob * weight
            speech_probs.append(1.0 - segment.no_speech_prob)
        decode_s = time.perf_counter() - started
        if not texts:
            return Transcript("", 0.0, self.name, audio_s, decode_s)
        mean_logprob = logprob_sum / weights
        confidence = math.exp(mean_logprob) * min(speech_probs)
        text = " ".join(texts)
        if confidence < self.settings.min_confidence:
            return Transcript("", confidence, self.name, audio_s, decode_s)
        return Transcript(text, min(1.0, max(0.0, confidence)), self.name, audio_s, decode_s)

    def warm_up(self) -> None:
        """Decode one second of silence so the first caller does not pay the first-run cost."""
        self.transcribe(np.zeros(16000, dtype=np.float32))

    def close(self) -> None:
        """Drop the model (CTranslate2 frees it when the last reference goes)."""
        self._closed.set()
        self._model = None
