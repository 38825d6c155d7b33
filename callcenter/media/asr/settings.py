"""Speech recognition settings (one frozen object; ``callcenter/config.py`` maps TOML onto it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["AsrSettings", "EngineName"]

EngineName = Literal["whisper", "vosk"]


@dataclass(frozen=True, slots=True)
class AsrSettings:
    """How speech is detected and recognised on the caller's leg.

    Defaults are the measured ones (``../shared/SPEECH.md`` and ``bench/asr.py``).
    """

    engine: EngineName = "whisper"
    """``whisper`` (faster-whisper, Whisper base from PyPI: default) or ``vosk``."""
    cache_dir: Path = Path("./var/models")
    """Where the joined Whisper model is cached (``<cache_dir>/whisper-base``)."""
    whisper_model_dir: Path | None = None
    """An already prepared CTranslate2 Whisper folder; ``None`` joins the PyPI parts."""
    vosk_model_dir: Path | None = None
    """The unpacked Vosk model folder (``callcenter models install vosk-fr-small``)."""
    language: str = "fr"
    """Language of the callers (Whisper's ``language``)."""
    beam_size: int = 5
    """Whisper beam width: 5 measured 29 % WER vs 35 % for greedy on phone audio, at the same
    speed (greedy decoding runs on longer, wrong outputs)."""
    max_new_tokens: int = 48
    """Upper bound on tokens per utterance: stops the rare decoding loops early."""
    threads: int = 2
    """CPU threads of one decoding (CTranslate2 ``intra_threads``)."""
    workers: int = 2
    """Decodings run at the same time (size of the shared thread pool and of the engine's
    worker count); further calls wait in the pool's queue."""
    sample_rate: int = 16000
    """Rate the engines are fed at (Whisper and the Vosk models want 16 kHz)."""
    vad_threshold: float = 0.5
    """Silero speech probability at or above which a frame is speech."""
    vad_release: float = 0.35
    """Probability below which speech ends (hysteresis: Silero's ``threshold - 0.15``)."""
    min_speech_s: float = 0.2
    """Speech shorter than this (a cough, a click) does not start an utterance."""
    barge_in_min_speech_s: float = 0.3
    """Speech needed to interrupt a prompt (longer: echo and noise must not cut prompts)."""
    resume_min_speech_s: float = 0.06
    """Speech that ends a pause inside an utterance (and discards the speculative decode)."""
    end_of_turn_s: float = 0.8
    """Silence that ends the caller's turn (elderly callers pause: do not go lower)."""
    no_input_s: float = 6.0
    """Time without speech, counted from the end of the prompts, before a no-input timeout."""
    max_utterance_s: float = 20.0
    """Longest utterance; the turn ends there with a ``max_length`` timeout."""
    pre_roll_s: float = 0.3
    """Audio kept before the detected start of speech (Silero reacts ~0.1 s late)."""
    min_confidence: float = 0.0
    """Transcripts below this confidence are reported empty (no match)."""

    def __post_init__(self) -> None:
        for name in (
            "end_of_turn_s",
            "no_input_s",
            "max_utterance_s",
            "min_speech_s",
            "barge_in_min_speech_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.threads < 1 or self.workers < 1:
            raise ValueError("threads and workers must be >= 1")
        if not 0.0 < self.vad_release <= self.vad_threshold < 1.0:
            raise ValueError("need 0 < vad_release <= vad_threshold < 1")
        if self.beam_size < 1 or self.max_new_tokens < 1:
            raise ValueError("beam_size and max_new_tokens must be >= 1")
