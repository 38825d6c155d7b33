"""Speech synthesis (espeak-ng) and the start-up prompt cache."""

from callcenter.media.tts.espeak import (
    EspeakConfig,
    EspeakTts,
    TtsError,
    TtsRenderError,
    TtsUnavailableError,
)
from callcenter.media.tts.prompt_cache import (
    CachedPrompt,
    PrepareReport,
    PromptCache,
    PromptCacheError,
    PromptSource,
    PromptSpec,
)

__all__ = [
    "CachedPrompt",
    "EspeakConfig",
    "EspeakTts",
    "PrepareReport",
    "PromptCache",
    "PromptCacheError",
    "PromptSource",
    "PromptSpec",
    "TtsError",
    "TtsRenderError",
    "TtsUnavailableError",
]
