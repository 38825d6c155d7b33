"""Fixtures shared by the loopback tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.loopback.audio import caller_wav


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Speech WAVs (µ-law, 8 kHz) for the caller and the agent."""
    folder = tmp_path_factory.mktemp("audio")
    caller = caller_wav(
        folder / "caller.wav", "u-law", text="Bonjour, je voudrais parler de mon dossier."
    )
    agent = caller_wav(
        folder / "agent.wav", "u-law", text="Bonjour madame, service autonomie, je vous écoute."
    )
    return caller, agent
