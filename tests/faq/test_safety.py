from __future__ import annotations

from pathlib import Path

import pytest

from faq.matcher import Decision, Matcher, MatcherConfig, read_tsv
from faq.model import KnowledgeBase
from faq.safety import ABUSE, DISTRESS, SafetySignal, detect, prepare
from tests.faq.conftest import DEV_TSV

DATA = Path(__file__).resolve().parent / "data"
CRITICAL = frozenset({DISTRESS, ABUSE})


def _lines(name: str) -> list[str]:
    text = (DATA / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize(
    ("name", "intent"), [("safety_distress.tsv", DISTRESS), ("safety_abuse.tsv", ABUSE)]
)
def test_every_written_cue_fires_with_its_intent(name: str, intent: str) -> None:
    lines = _lines(name)
    assert len(lines) >= 100
    missed = [t for t in lines if detect(t) is None]
    assert not missed
    mislabelled = [t for t in lines if (s := detect(t)) is not None and s.intent != intent]
    # A few lines say both ("elle menace de se tuer" is distress): at most 5 % cross over.
    assert len(mislabelled) <= len(lines) // 20, mislabelled


def test_benign_figures_of_speech_do_not_fire() -> None:
    lines = _lines("safety_benign.tsv")
    assert len(lines) >= 80
    fired = {t: s.cue for t in lines if (s := detect(t)) is not None}
    assert not fired


@pytest.mark.parametrize(
    ("text", "intent", "cue"),
    [
        ("je vais me foutre en l'air", DISTRESS, "me foutre en air"),
        ("Euh... à quoi bon ?", DISTRESS, "a quoi bon"),
        ("il va me tuer", ABUSE, "il va me tuer"),
        ("ma mère menace de se tuer", DISTRESS, "se tuer"),
        ("on l'enferme la nuit", ABUSE, "enferm"),
    ],
)
def test_detect_names_intent_and_cue(text: str, intent: str, cue: str) -> None:
    assert detect(text) == SafetySignal(intent, cue)


def test_prepare_masks_benign_phrases_so_no_cue_spans_them() -> None:
    assert prepare("Je meurs de faim, l'APA !") == "je | apa"
    assert prepare("") == ""
    assert detect("euh") is None


def test_dev_set_recall_and_precision() -> None:
    data = read_tsv(DEV_TSV.read_text(encoding="utf-8").splitlines())
    fired = [(gold, detect(text)) for gold, text in data]
    positives = [g for g, s in fired if g in CRITICAL]
    caught = [g for g, s in fired if g in CRITICAL and s is not None and s.intent == g]
    false_alarms = [g for g, s in fired if g not in CRITICAL and s is not None]
    assert len(caught) == len(positives) > 0
    assert not false_alarms


def test_matcher_hands_over_whatever_the_lexical_scores(kb: KnowledgeBase) -> None:
    text = "mon frère a écrit une lettre d'adieu je suis très inquiète"
    lexical = Matcher(kb, MatcherConfig(safety_net=False)).match(text)
    assert lexical.intent != DISTRESS  # the lexical features alone miss it
    result = Matcher(kb).match(text)
    assert (result.intent, result.decision) == (DISTRESS, Decision.HANDOVER)
    assert result.confidence >= 0.9
    assert DISTRESS not in {a.intent for a in result.alternatives}
    assert "hors_sujet" not in {a.intent for a in result.alternatives}
    abuse = Matcher(kb).match("ils enferment mon oncle handicapé dans sa chambre")
    assert (abuse.intent, abuse.decision) == (ABUSE, Decision.HANDOVER)
