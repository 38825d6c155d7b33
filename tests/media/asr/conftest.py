from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from callcenter.media.asr.evaluation import read_transcripts
from callcenter.media.asr.models import ensure_whisper_base
from callcenter.media.asr.settings import AsrSettings
from callcenter.media.asr.whisper import WhisperEngine

FR_SPEECH = Path(__file__).resolve().parents[4] / "shared" / "audio" / "fr-speech"


@pytest.fixture(scope="session")
def fr_clips() -> list[tuple[Path, str]]:
    if not (FR_SPEECH / "transcripts.tsv").is_file():
        pytest.skip(f"French speech clips not found at {FR_SPEECH}")
    return read_transcripts(FR_SPEECH)


@pytest.fixture(scope="session")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_whisper_base(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def whisper_engine(whisper_dir: Path) -> Iterator[WhisperEngine]:
    engine = WhisperEngine(whisper_dir, AsrSettings())
    engine.warm_up()
    yield engine
    engine.close()
