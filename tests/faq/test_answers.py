from __future__ import annotations

import pytest

from faq.answers import DOSSIER_PLACEHOLDERS, RUNTIME_PLACEHOLDERS, fill_answer, to_spoken
from faq.model import KnowledgeBase


def test_departement_values_cover_every_non_dossier_placeholder(kb: KnowledgeBase) -> None:
    used = frozenset().union(*(intent.placeholders for intent in kb.intents))
    assert set(kb.departement) == used - DOSSIER_PLACEHOLDERS - RUNTIME_PLACEHOLDERS
    assert DOSSIER_PLACEHOLDERS <= used


def test_fill_answer(kb: KnowledgeBase) -> None:
    hours = fill_answer(kb.get("horaires_coordonnees"), kb.departement)
    assert hours is not None and "{" not in hours
    assert kb.departement["horaires_ligne"] in hours
    assert fill_answer(kb.get("suivi_dossier_apa"), kb.departement) is None
    dossier = {**kb.departement, "statut_dossier": "complet", "etape_suivante": "la visite"}
    filled = fill_answer(kb.get("suivi_dossier_apa"), dossier)
    assert filled is not None and "actuellement : complet" in filled
    distress = fill_answer(kb.get("urgence_detresse_suicidaire"), {})
    assert distress is not None and "31 14" in distress


def test_every_answerable_intent_is_filled(kb: KnowledgeBase) -> None:
    for intent in kb.intents:
        needs = intent.placeholders & (DOSSIER_PLACEHOLDERS | RUNTIME_PLACEHOLDERS)
        filled = fill_answer(intent, kb.departement)
        assert (filled is None) == bool(needs), intent.id


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("L'APA et la PCH", "L'A P A et la P C H"),
        ("la MDPH, l'AAH, la CMI, l'AEEH", "la M D P H, l'A A H, la C M I, l'A E E H"),
        ("en EHPAD avec la CAF", "en éhpad avec la caf"),
        ("le GIR 4 (grille AGGIR)", "le guire 4, grille aguire"),
        ("1 033,32 € par mois", "1 033,32 euros par mois"),
        ("taux ≥ 80 %", "taux au moins 80 pour cent"),
        ("ouvert 9h-12h et 13h30-17h", "ouvert 9 heures à 12 heures et 13 heures 30 à 17 heures"),
        ("« Cerfa » n° 16301 ; voir : ici", "Cerfa numéro 16301, voir, ici"),
        ("APA/PCH", "A P A ou P C H"),
        ("le 31 14, jour et nuit.", "le 31 14, jour et nuit."),
        ("APAISER la PCHOSE", "APAISER la PCHOSE"),
    ],
)
def test_to_spoken(text: str, spoken: str) -> None:
    assert to_spoken(text) == spoken


def test_every_answer_speaks_cleanly(kb: KnowledgeBase) -> None:
    values = {name: "valeur" for name in kb.placeholders}
    for intent in kb.intents:
        filled = fill_answer(intent, {**values, **kb.departement})
        assert filled is not None
        spoken = to_spoken(filled)
        assert not set(spoken) & set("«»()[]{};:/*€%"), (intent.id, spoken)
        assert " MDPH" not in spoken and " APA" not in spoken
