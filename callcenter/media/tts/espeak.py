"""Text-to-speech with the ``espeak-ng`` command-line synthesiser (French voice).

Each render is one short-lived ``espeak-ng`` subprocess writing a WAV on stdout; the text goes
through stdin so that no text (e.g. one starting with ``-``) can be read as an option. A
semaphore bounds how many run at once.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass

from callcenter.media.audio import AudioFormatError, wav_bytes_to_pcm16_8k

__all__ = ["EspeakConfig", "EspeakTts", "TtsError", "TtsRenderError", "TtsUnavailableError"]


class TtsError(Exception):
    """Base class of TTS failures."""


class TtsUnavailableError(TtsError):
    """The ``espeak-ng`` binary cannot be found or started."""


class TtsRenderError(TtsError):
    """``espeak-ng`` ran but did not produce usable audio."""


@dataclass(frozen=True, slots=True)
class EspeakConfig:
    """How prompts are synthesised."""

    voice: str = "fr+f3"
    """espeak-ng voice (``-v``): French with a female variant."""
    rate: int = 130
    """Speaking rate in words per minute (``-s``); slow, the line serves elderly callers."""
    binary: str = "espeak-ng"
    """Executable name or path."""
    max_concurrency: int = 2
    """Renders running at once (one per core is plenty; espeak-ng is single-threaded)."""
    timeout_s: float = 30.0
    """A render taking longer than this is killed and reported."""

    def __post_init__(self) -> None:
        if not 80 <= self.rate <= 450:
            raise ValueError(f"espeak-ng rate must be within 80..450 words/min, got {self.rate}")
        if self.max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")


_MISSING = (
    "espeak-ng is not installed (binary {binary!r} not found in PATH): prompts that have no "
    "recorded WAV cannot be synthesised. Install it with `apt-get install espeak-ng`."
)


class EspeakTts:
    """Renders French text to 8 kHz mono PCM16 with espeak-ng."""

    def __init__(self, *, config: EspeakConfig | None = None) -> None:
        """Create a renderer.

        Args:
            config: Voice, rate, binary and concurrency (defaults: ``fr+f3``, 130 words/min).
        """
        self.config = config or EspeakConfig()
        self._semaphore = asyncio.Semaphore(self.config.max_concurrency)

    @property
    def voice(self) -> str:
        """The espeak-ng voice name."""
        return self.config.voice

    @property
    def rate(self) -> int:
        """The speaking rate in words per minute."""
        return self.config.rate

    def is_available(self) -> bool:
        """Return whether the espeak-ng binary can be found."""
        return shutil.which(self.config.binary) is not None

    def check_available(self) -> None:
        """Fail early when espeak-ng is missing.

        Raises:
            TtsUnavailableError: The binary is not in ``PATH``; the message names the package.
        """
        if not self.is_available():
            raise TtsUnavailableError(_MISSING.format(binary=self.config.binary))

    async def render(self, text: str) -> bytes:
        """Synthesise ``text`` to 8 kHz mono PCM16 (little-endian).

        Args:
            text: The text to speak (plain text, not SSML).

        Returns:
            PCM16 LE samples at 8000 Hz, level-normalised.

        Raises:
            TtsUnavailableError: espeak-ng is missing.
            TtsRenderError: espeak-ng failed, timed out or produced no audio.
        """
        if not text.strip():
            raise TtsRenderError("cannot render an empty text")
        cfg = self.config
        async with self._semaphore:
            try:
                proc = await asyncio.create_subprocess_exec(
                    cfg.binary,
                    "-v",
                    cfg.voice,
                    "-s",
                    str(cfg.rate),
                    "--stdout",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            except (FileNotFoundError, PermissionError) as exc:
                raise TtsUnavailableError(_MISSING.format(binary=cfg.binary)) from exc
            try:
                async with asyncio.timeout(cfg.timeout_s):
                    stdout, stderr = await proc.communicate(text.encode("utf-8"))
            except TimeoutError as exc:
                raise TtsRenderError(f"espeak-ng timed out after {cfg.timeout_s} s") from exc
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
        if proc.returncode != 0:
            detail = stderr.decode("utf-8", "replace").strip()
            raise TtsRenderError(f"espeak-ng exited with status {proc.returncode}: {detail}")
        try:
            pcm = wav_bytes_to_pcm16_8k(stdout)
        except AudioFormatError as exc:
            raise TtsRenderError(f"espeak-ng produced unreadable audio: {exc}") from exc
        if not pcm:
            raise TtsRenderError("espeak-ng produced no audio")
        return pcm
