"""Speech recognition for the caller's leg: engines, voice activity and end of turn.

Typical start-up (once per service)::

    settings = AsrSettings(cache_dir=config.data_path / "models")
    service = load_service(settings)          # engine + Silero VAD + bounded thread pool
    recognizer = SpeechRecognizerProcessor(service)   # one per call
    ...
    service.close()

Heavy modules (faster-whisper, vosk, onnxruntime) are imported only by :func:`load_engine`.
"""

from __future__ import annotations

from callcenter.media.asr.base import AsrEngine, AsrError, AsrService, AsrStream, Transcript
from callcenter.media.asr.settings import AsrSettings

__all__ = [
    "AsrEngine",
    "AsrError",
    "AsrService",
    "AsrSettings",
    "AsrStream",
    "Transcript",
    "load_engine",
    "load_service",
]


def load_engine(settings: AsrSettings) -> AsrEngine:
    """Load the engine ``settings.engine`` names (blocking: run it at start-up).

    Args:
        settings: Engine choice, model folders, threads.

    Returns:
        The loaded engine.

    Raises:
        AsrError: The model is missing or corrupt (the message says how to fix it).
    """
    if settings.engine == "vosk":
        from callcenter.media.asr.vosk import VoskEngine

        if settings.vosk_model_dir is None:
            raise AsrError(
                "engine 'vosk' needs vosk_model_dir: run "
                "'callcenter models install vosk-fr-small --dest DIR' and point it at the folder"
            )
        return VoskEngine(settings.vosk_model_dir, sample_rate=settings.sample_rate)
    from callcenter.media.asr.models import ensure_whisper_base
    from callcenter.media.asr.whisper import WhisperEngine

    model_dir = settings.whisper_model_dir
    if model_dir is not None and not (model_dir / "model.bin").is_file():
        raise AsrError(
            f"whisper_model_dir {model_dir}: no CTranslate2 model there (model.bin missing); "
            "convert a Whisper model with ct2-transformers-converter (docs/operations.md)"
        )
    model_dir = model_dir or ensure_whisper_base(settings.cache_dir)
    engine = WhisperEngine(model_dir, settings)
    engine.warm_up()
    return engine


def load_service(settings: AsrSettings) -> AsrService:
    """Load the engine and the VAD model, and create the shared thread pool.

    Args:
        settings: The speech settings.

    Returns:
        The service to give every call's :class:`SpeechRecognizerProcessor`.
    """
    return AsrService(load_engine(settings), settings)
