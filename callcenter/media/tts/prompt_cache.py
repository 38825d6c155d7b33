"""Start-up cache of every prompt as 8 kHz PCM16, from recordings or espeak-ng.

For each prompt, in order of precedence:

1. ``<recordings_dir>/<prompt_id>.wav`` (a recorded voice always wins over synthesis);
2. the recording file the flow names for it (relative paths are under ``recordings_dir``);
3. the prompt text, synthesised by espeak-ng.

Results are kept in memory as bytes and on disk under ``cache_dir`` as 8 kHz WAV files. A TTS
file is named after a hash of (text, voice, rate), so an edited text is rendered again while an
unchanged one is read back from disk; a recording is keyed by its path, size and mtime, so it is
resampled once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from callcenter.media.audio import TELEPHONE_RATE, AudioFormatError, load_wav_8k, write_wav_8k
from callcenter.media.tts.espeak import EspeakTts, TtsError, TtsUnavailableError

__all__ = [
    "CachedPrompt",
    "PrepareReport",
    "PromptCache",
    "PromptCacheError",
    "PromptSource",
    "PromptSpec",
]

PromptSource: TypeAlias = Literal["recording", "tts"]
PromptSpec: TypeAlias = "tuple[str, str | None, str | Path | None]"
"""``(prompt_id, text, recording)``: text to synthesise and/or a recording file name."""

# Bump when the rendering chain changes (resampler, normalisation) to invalidate disk caches.
_CACHE_FORMAT = "1"
_PROMPT_ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_BYTES_PER_SECOND = TELEPHONE_RATE * 2

_logger = logging.getLogger(__name__)


class PromptCacheError(Exception):
    """A prompt cannot be made available; the message names the prompt id(s)."""


@dataclass(frozen=True, slots=True)
class CachedPrompt:
    """A prompt ready for playback."""

    prompt_id: str
    """The prompt's identifier."""
    pcm: bytes
    """8 kHz mono PCM16 little-endian audio."""
    source: PromptSource
    """Where the audio came from."""
    cache_file: Path | None
    """The 8 kHz WAV under ``cache_dir``; None for audio given to :meth:`PromptCache.add`."""

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.pcm) / _BYTES_PER_SECOND


@dataclass(frozen=True, slots=True)
class PrepareReport:
    """What one :meth:`PromptCache.prepare` call did."""

    rendered: int
    """Prompts synthesised by espeak-ng in this call."""
    from_disk: int
    """Prompts read back from the disk cache (unchanged text or recording)."""
    recordings: int
    """Prompts served from a recording (resampled now or read from the disk cache)."""
    seconds: float
    """Wall-clock duration of the call."""


@dataclass(frozen=True, slots=True)
class _Plan:
    prompt_id: str
    source: PromptSource
    text: str | None
    recording: Path | None
    cache_file: Path


class PromptCache:
    """Every prompt of the flows, rendered once at start-up, as 8 kHz PCM16 bytes."""

    def __init__(
        self,
        cache_dir: Path,
        recordings_dir: Path | None,
        tts: EspeakTts,
        *,
        max_concurrency: int = 4,
    ) -> None:
        """Create an empty cache; call :meth:`prepare` before use.

        Args:
            cache_dir: Where rendered 8 kHz WAV files are kept (created if missing).
            recordings_dir: Folder of recorded ``<prompt_id>.wav`` files overriding the TTS.
            tts: The synthesiser (its voice and rate are part of the cache key).
            max_concurrency: Recordings decoded at once (TTS is bounded by ``tts`` itself).
        """
        self.cache_dir = cache_dir
        self.recordings_dir = recordings_dir
        self.tts = tts
        self._max_concurrency = max_concurrency
        self._prompts: dict[str, CachedPrompt] = {}

    def tts_key(self, text: str) -> str:
        """Return the cache key of a synthesised text: a hash of (text, voice, rate).

        Args:
            text: The prompt text.
        """
        material = "\0".join((_CACHE_FORMAT, self.tts.voice, str(self.tts.rate), text))
        return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]

    async def prepare(self, prompts: Iterable[PromptSpec]) -> PrepareReport:
        """Make every prompt available, rendering or resampling only what is not cached.

        May be called again (flow reload): prompts are added or replaced, none is removed.

        Args:
            prompts: ``(prompt_id, text, recording)`` triples; ``text`` or ``recording`` (or a
                ``<prompt_id>.wav`` in ``recordings_dir``) must be given.

        Returns:
            Counts of what was rendered, read from disk and taken from recordings.

        Raises:
            PromptCacheError: Invalid ids, missing recordings, no TTS for a prompt that needs it,
                or failed renders; the message lists every prompt id concerned.
        """
        started = time.monotonic()
        plans = self._plan(prompts)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        need_tts = [p for p in plans if p.source == "tts" and not p.cache_file.is_file()]
        if need_tts and not self.tts.is_available():
            ids = ", ".join(repr(p.prompt_id) for p in need_tts)
            raise PromptCacheError(
                f"prompts {ids} have text but no recording in {self.recordings_dir} and no "
                "cached rendering, and espeak-ng is not installed: install it with "
                "`apt-get install espeak-ng` or provide <prompt_id>.wav recordings"
            ) from TtsUnavailableError(self.tts.config.binary)

        results: dict[str, CachedPrompt] = {}
        errors: dict[str, str] = {}
        counts = {"rendered": 0, "from_disk": 0, "recordings": 0}
        semaphore = asyncio.Semaphore(self._max_concurrency)

        async def one(plan: _Plan) -> None:
            try:
                results[plan.prompt_id] = await self._materialise(plan, semaphore, counts)
            except (TtsError, AudioFormatError, OSError) as exc:
                errors[plan.prompt_id] = str(exc)

        async with asyncio.TaskGroup() as tg:
            for plan in plans:
                tg.create_task(one(plan), name=f"prompt-{plan.prompt_id}")
        if errors:
            detail = "; ".join(f"{pid!r}: {msg}" for pid, msg in sorted(errors.items()))
            raise PromptCacheError(f"cannot prepare prompts: {detail}")
        self._prompts.update(results)
        report = PrepareReport(seconds=time.monotonic() - started, **counts)
        _logger.info(
            "prompt cache: %d prompts (%d rendered, %d from disk, %d recordings) in %.2f s",
            len(results),
            report.rendered,
            report.from_disk,
            report.recordings,
            report.seconds,
        )
        return report

    def add(self, prompt_id: str, pcm: bytes, *, source: PromptSource = "tts") -> None:
        """Add or replace a prompt from audio already at 8 kHz (memory only, nothing on disk).

        Args:
            prompt_id: The prompt.
            pcm: 8 kHz mono PCM16 little-endian bytes (an even number of bytes).
            source: Reported by :meth:`source`.

        Raises:
            ValueError: Odd byte count or invalid prompt id.
        """
        if len(pcm) % 2 or not _PROMPT_ID_RE.fullmatch(prompt_id):
            raise ValueError(f"invalid prompt {prompt_id!r} or odd PCM16 length {len(pcm)}")
        self._prompts[prompt_id] = CachedPrompt(prompt_id, pcm, source, None)

    def discard(self, prompt_id: str) -> None:
        """Forget a prompt added with :meth:`add` (a call's own spoken answers, at its end).

        Args:
            prompt_id: The prompt; unknown ids are ignored.
        """
        self._prompts.pop(prompt_id, None)

    def get(self, prompt_id: str) -> bytes:
        """Return a prompt's audio.

        Args:
            prompt_id: The prompt.

        Returns:
            8 kHz mono PCM16 little-endian bytes.

        Raises:
            KeyError: The prompt was not prepared.
        """
        return self._entry(prompt_id).pcm

    def duration(self, prompt_id: str) -> float:
        """Return a prompt's length in seconds.

        Args:
            prompt_id: The prompt.
        """
        return self._entry(prompt_id).duration

    def source(self, prompt_id: str) -> PromptSource:
        """Return whether a prompt comes from a ``"recording"`` or from ``"tts"``.

        Args:
            prompt_id: The prompt.
        """
        return self._entry(prompt_id).source

    def entry(self, prompt_id: str) -> CachedPrompt:
        """Return everything known about a prepared prompt.

        Args:
            prompt_id: The prompt.
        """
        return self._entry(prompt_id)

    def __contains__(self, prompt_id: object) -> bool:
        return prompt_id in self._prompts

    @property
    def prompt_ids(self) -> frozenset[str]:
        """The prompts prepared so far."""
        return frozenset(self._prompts)

    def _entry(self, prompt_id: str) -> CachedPrompt:
        try:
            return self._prompts[prompt_id]
        except KeyError:
            raise KeyError(f"prompt {prompt_id!r} was not prepared") from None

    def _plan(self, prompts: Iterable[PromptSpec]) -> list[_Plan]:
        plans: dict[str, _Plan] = {}
        problems: list[str] = []
        for prompt_id, text, recording in prompts:
            if not _PROMPT_ID_RE.fullmatch(prompt_id):
                problems.append(f"{prompt_id!r}: invalid prompt id (letters, digits, _ . -)")
                continue
            try:
                plan = self._plan_one(prompt_id, text, recording)
            except PromptCacheError as exc:
                problems.append(str(exc))
                continue
            previous = plans.get(prompt_id)
            if previous is not None and previous != plan:
                problems.append(f"{prompt_id!r}: defined twice with different content")
            plans[prompt_id] = plan
        if problems:
            raise PromptCacheError("; ".join(problems))
        return list(plans.values())

    def _plan_one(self, prompt_id: str, text: str | None, recording: str | Path | None) -> _Plan:
        if self.recordings_dir is not None:
            override = self.recordings_dir / f"{prompt_id}.wav"
            if override.is_file():
                return self._recording_plan(prompt_id, text, override)
        if recording is not None:
            path = Path(recording)
            if not path.is_absolute() and self.recordings_dir is not None:
                path = self.recordings_dir / path
            if not path.is_file():
                raise PromptCacheError(f"{prompt_id!r}: recording {str(path)!r} not found")
            return self._recording_plan(prompt_id, text, path)
        if text is None or not text.strip():
            raise PromptCacheError(f"{prompt_id!r}: neither text nor recording")
        cache_file = self.cache_dir / f"tts-{self.tts_key(text)}.wav"
        return _Plan(prompt_id, "tts", text, None, cache_file)

    def _recording_plan(self, prompt_id: str, text: str | None, path: Path) -> _Plan:
        resolved = path.resolve()
        stat = resolved.stat()
        fields = (_CACHE_FORMAT, str(resolved), str(stat.st_size), str(stat.st_mtime_ns))
        material = "\0".join(fields)
        key = hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]
        return _Plan(prompt_id, "recording", text, resolved, self.cache_dir / f"rec-{key}.wav")

    async def _materialise(
        self, plan: _Plan, semaphore: asyncio.Semaphore, counts: dict[str, int]
    ) -> CachedPrompt:
        cached = await asyncio.to_thread(_read_cached, plan.cache_file)
        if cached is not None:
            pcm = cached
            counts["from_disk"] += 1
        elif plan.source == "recording":
            assert plan.recording is not None
            async with semaphore:
                pcm = await asyncio.to_thread(load_wav_8k, plan.recording)
            if not pcm:
                raise AudioFormatError(f"{plan.recording}: no audio")
            await asyncio.to_thread(write_wav_8k, plan.cache_file, pcm)
        else:
            assert plan.text is not None
            pcm = await self.tts.render(plan.text)
            counts["rendered"] += 1
            await asyncio.to_thread(write_wav_8k, plan.cache_file, pcm)
        if plan.source == "recording":
            counts["recordings"] += 1
        return CachedPrompt(plan.prompt_id, pcm, plan.source, plan.cache_file)


def _read_cached(path: Path) -> bytes | None:
    """Read back one of our own 8 kHz WAV files; anything unexpected means re-render."""
    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) != (8000, 1, 2):
                return None
            pcm = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error):
        return None
    return pcm or None
