from __future__ import annotations

from pathlib import Path

import pytest

from faq.loader import default_knowledge_base_path, load_knowledge_base
from faq.matcher import Matcher
from faq.model import KnowledgeBase

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
DEV_TSV = SHARED / "domain" / "dev_utterances.tsv"
INTENTS_YAML = SHARED / "domain" / "intents.yaml"


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    return load_knowledge_base(default_knowledge_base_path())


@pytest.fixture(scope="session")
def matcher(kb: KnowledgeBase) -> Matcher:
    return Matcher(kb)
