"""Vosk (Kaldi) adapter: streaming recognition, and grammar mode for closed questions.

Vosk decodes as audio arrives: :meth:`VoskStream.advance` (in the pool, called while the caller
speaks) feeds ``AcceptWaveform`` with what was buffered, so little is left to decode when the
turn ends. :meth:`VoskStream.result` finalises the current segment; audio fed afterwards (the
caller resumed after a speculative result) starts a new segment and the transcript joins them.

Grammar mode (``start(grammar=["oui", "non"])``) restricts the words. Pitfalls measured in
``../shared/SPEECH.md``: the list must be JSON with ``ensure_ascii=False`` (otherwise every
accented word is unknown and results are empty); ``"[unk]"`` must be in it, or speech outside
the grammar is forced onto a grammar word, sometimes with confidence 1.0; so ``[unk]`` results
and words under ``grammar_min_confidence`` are rejected (empty transcript: a no-match).

French models are not on PyPI: ``callcenter models install vosk-fr-small`` downloads one.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from callcenter.media.asr.base import AsrError, BufferedStream, Transcript

__all__ = ["VoskEngine", "VoskStream", "grammar_json"]

UNKNOWN = "[unk]"


def _vosk() -> Any:
    # vosk ships no type information: import it as Any.
    return importlib.import_module("vosk")


def grammar_json(words: Sequence[str]) -> str:
    """The grammar string Vosk expects: a JSON list, accents kept, ``[unk]`` always present.

    Args:
        words: Words or phrases the caller may say.

    Returns:
        The JSON text for ``KaldiRecognizer``.
    """
    phrases = [w.strip().lower() for w in words if w.strip()]
    if UNKNOWN not in phrases:
        phrases.append(UNKNOWN)
    return json.dumps(phrases, ensure_ascii=False)


class VoskStream(BufferedStream):
    """One utterance on a Kaldi recogniser."""

    def __init__(self, engine: VoskEngine, grammar: Sequence[str] | None) -> None:
        """Create a recogniser for ``engine`` (grammar mode when ``grammar`` is given)."""
        super().__init__()
        vosk = _vosk()
        self._engine = engine
        self.grammar = tuple(grammar) if grammar is not None else None
        if self.grammar is not None:
            self._rec: Any = vosk.KaldiRecognizer(
                engine.model, engine.sample_rate, grammar_json(self.grammar)
            )
        else:
            self._rec = vosk.KaldiRecognizer(engine.model, engine.sample_rate)
        self._rec.SetWords(True)
        self._segments: list[dict[str, Any]] = []
        self._decode_s = 0.0
        self._accepted = 0
        self._last: Transcript | None = None

    def _accept(self) -> None:
        data = self.take_pending()
        if not data:
            return
        started = time.perf_counter()
        if self._rec.AcceptWaveform(data):
            self._segments.append(json.loads(self._rec.Result()))
        self._accepted += len(data)
        self._decode_s += time.perf_counter() - started

    def advance(self) -> None:
        """Decode the audio buffered so far (blocking)."""
        with self.lock:
            if not self.closed:
                self._accept()

    def result(self) -> Transcript:
        """Finalise and return the transcript of everything fed so far (blocking).

        Returns:
            The transcript; empty when only unknown or low-confidence words were heard.
        """
        with self.lock:
            if self.closed:
                raise AsrError("stream closed")
            before = self._accepted
            self._accept()
            if self._last is not None and self._accepted == before:
                return self._last
            started = time.perf_counter()
            self._segments.append(json.loads(self._rec.FinalResult()))
            self._decode_s += time.perf_counter() - started
            self._last = self._transcript()
            return self._last

    def _transcript(self) -> Transcript:
        words: list[str] = []
        confidences: list[float] = []
        for segment in self._segments:
            items = segment.get("result")
            if not items:
                text = str(segment.get("text", "")).strip()
                if text and text != UNKNOWN:
                    words.extend(text.split())
                    confidences.append(1.0)
                continue
            for item in items:
                word = str(item.get("word", ""))
                conf = float(item.get("conf", 0.0))
                if not word or word == UNKNOWN:
                    if self.grammar is not None:  # speech outside the grammar: no match
                        return self._empty()
                    continue
                if self.grammar is not None and conf < self._engine.grammar_min_confidence:
                    return self._empty()
                words.append(word)
                confidences.append(conf)
        if not words:
            return self._empty()
        confidence = sum(confidences) / len(confidences)
        return Transcript(
            " ".join(words), confidence, self._engine.name, self._audio_s(), self._decode_s
        )

    def _empty(self) -> Transcript:
        return Transcript("", 0.0, self._engine.name, self._audio_s(), self._decode_s)

    def _audio_s(self) -> float:
        return self._accepted / 2 / self._engine.sample_rate

    def close(self) -> None:
        """Release the recogniser."""
        with self.lock:
            self.closed = True
            self._rec = None
            self.take_pending()


class VoskEngine:
    """A Vosk model shared by every call (one recogniser per utterance)."""

    def __init__(
        self,
        model_dir: Path,
        *,
        sample_rate: int = 16000,
        grammar_min_confidence: float = 0.6,
        name: str = "vosk",
    ) -> None:
        """Load a Vosk model folder.

        Args:
            model_dir: The unpacked model (``am/``, ``conf/``, ``graph/``...).
            sample_rate: Rate of the audio fed.
            grammar_min_confidence: In grammar mode, a word under this confidence makes the
                result a no-match.
            name: Engine name reported in transcripts.

        Raises:
            AsrError: The folder is not a Vosk model.
        """
        if not (model_dir / "am").is_dir() or not (model_dir / "conf").is_dir():
            raise AsrError(
                f"{model_dir} is not a Vosk model folder (no am/ and conf/): install one with "
                "'callcenter models install vosk-fr-small' and set vosk_model_dir"
            )
        vosk = _vosk()
        vosk.SetLogLevel(-1)
        started = time.perf_counter()
        try:
            self.model: Any = vosk.Model(str(model_dir))
        except Exception as exc:  # vosk raises a bare Exception on load failures
            raise AsrError(f"cannot load the Vosk model in {model_dir}: {exc}") from exc
        self.load_s = time.perf_counter() - started
        self.sample_rate = sample_rate
        self.grammar_min_confidence = grammar_min_confidence
        self._name = name

    @property
    def name(self) -> str:
        """Engine name."""
        return self._name

    @property
    def streaming(self) -> bool:
        """Vosk decodes as audio arrives."""
        return True

    def start(self, grammar: Sequence[str] | None = None) -> VoskStream:
        """Begin an utterance, restricted to ``grammar`` when given."""
        return VoskStream(self, grammar)

    def close(self) -> None:
        """Drop the model reference."""
        self.model = None
