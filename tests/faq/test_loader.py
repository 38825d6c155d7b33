from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from faq.__main__ import main
from faq.loader import FaqError, load_knowledge_base, parse_knowledge_base
from faq.model import Handoff, KnowledgeBase, Priority, placeholder_names
from tests.faq.conftest import INTENTS_YAML

VALID = """\
skills:
  apa: service APA
  accueil_general: accueil
placeholders:
  statut_dossier: statut
intents:
- id: suivi_dossier_apa
  topic: apa
  answer: 'Votre dossier est : {statut_dossier}.'
  examples: [ou en est mon apa]
  keywords: [apa]
  needs_dossier: true
  handoff: if_unresolved
  skill: apa
  priority: normal
- id: hors_sujet
  topic: hors_sujet
  answer: Cette ligne ne traite pas cette demande.
  examples: [carte d'identite]
  keywords: [passeport]
  needs_dossier: false
  handoff: on_request
  skill: accueil_general
  priority: low
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(FaqError) as info:
        parse_knowledge_base(text, "kb.yaml")
    return [str(issue) for issue in info.value.issues]


def test_shipped_knowledge_base_matches_the_domain_catalogue(kb: KnowledgeBase) -> None:
    source = yaml.safe_load(INTENTS_YAML.read_text(encoding="utf-8"))
    assert len(kb.intents) == 45
    assert kb.ids == tuple(item["id"] for item in source["intents"])
    for item in source["intents"]:
        intent = kb.get(item["id"])
        assert intent.answer == item["answer"]
        assert intent.skill == item["skill"]
        assert intent.handoff.value == item["handoff"]
        assert intent.needs_dossier == item["needs_dossier"]
        assert intent.placeholders == frozenset(item["placeholders"])
        assert intent.examples and intent.keywords
    assert set(kb.skills) == set(source["skills"])
    assert {"3114", "3977", "15", "112"} <= set(kb.emergency_numbers)
    assert kb.get("maltraitance").priority is Priority.CRITICAL
    assert kb.get("parler_conseiller").handoff is Handoff.ALWAYS


def test_valid_minimal_file_loads() -> None:
    kb = parse_knowledge_base(VALID)
    assert kb.ids == ("suivi_dossier_apa", "hors_sujet")
    assert kb.get("suivi_dossier_apa").line == 7
    assert kb.get("suivi_dossier_apa").needs_dossier is True


def test_bad_handoff_names_file_line_intent_and_field() -> None:
    text = VALID.replace("handoff: if_unresolved", "handoff: sometimes")
    assert issues_of(text) == [
        "kb.yaml:13: intent 'suivi_dossier_apa' field 'handoff': 'sometimes' is not one of "
        "never/on_request/if_unresolved/recommended/always"
    ]


def test_every_error_is_reported_and_nothing_loads() -> None:
    text = (
        VALID.replace("skill: apa", "skill: inconnu")
        .replace("needs_dossier: false", "needs_dossier: peut-etre")
        .replace("{statut_dossier}", "{statut_inconnu}")
    )
    found = issues_of(text)
    assert len(found) == 3
    assert "kb.yaml:14: intent 'suivi_dossier_apa' field 'skill': unknown skill 'inconnu'" in found
    assert any("field 'answer': undeclared placeholder(s): statut_inconnu" in i for i in found)
    assert any(i.startswith("kb.yaml:21: intent 'hors_sujet' field 'needs_dossier'") for i in found)


def test_missing_unknown_and_duplicate_fields() -> None:
    missing = VALID.replace("  keywords: [apa]\n", "")
    assert issues_of(missing) == [
        "kb.yaml:7: intent 'suivi_dossier_apa' field 'keywords': missing required field"
    ]
    unknown = VALID.replace("  priority: normal\n", "  priorite: normal\n")
    assert issues_of(unknown) == [
        "kb.yaml:15: intent 'suivi_dossier_apa' field 'priorite': unknown field"
    ]
    duplicate = VALID.replace("id: hors_sujet", "id: suivi_dossier_apa")
    assert any("duplicate id (first at line 7)" in i for i in issues_of(duplicate))


def test_empty_examples_and_wrong_types() -> None:
    found = issues_of(VALID.replace("examples: [ou en est mon apa]", "examples: []"))
    assert found == ["kb.yaml:10: intent 'suivi_dossier_apa' field 'examples': must not be empty"]
    found = issues_of(VALID.replace("keywords: [apa]", "keywords: apa"))
    assert found == [
        "kb.yaml:11: intent 'suivi_dossier_apa' field 'keywords': expected a list of strings"
    ]


def test_yaml_syntax_error_and_missing_out_of_scope() -> None:
    found = issues_of(VALID + "  oops: [unclosed\n")
    assert len(found) == 1 and found[0].startswith("kb.yaml:") and "invalid YAML" in found[0]
    no_oos = VALID.split("- id: hors_sujet")[0]
    assert issues_of(no_oos) == ["kb.yaml:7: field 'intents': an intent 'hors_sujet' is required"]


def test_placeholder_names() -> None:
    assert placeholder_names("a {x} b {y_2} {x}") == {"x", "y_2"}
    with pytest.raises(ValueError):
        placeholder_names("a {x:>3}")
    with pytest.raises(ValueError):
        placeholder_names("a {x")


def test_load_file_and_check_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(VALID, encoding="utf-8")
    assert len(load_knowledge_base(good).intents) == 2
    assert main(["check", str(good)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(VALID.replace("topic: apa", "topic: ''"), encoding="utf-8")
    assert main(["check", str(bad)]) == 1
    assert f"{bad}:8: intent 'suivi_dossier_apa' field 'topic'" in capsys.readouterr().err
    with pytest.raises(FaqError):
        load_knowledge_base(tmp_path / "absent.yaml")


def test_departement_values_are_validated() -> None:
    text = VALID.replace("intents:\n", "departement:\n  statut_dossier: en cours\nintents:\n", 1)
    assert parse_knowledge_base(text).departement == {"statut_dossier": "en cours"}
    unknown = VALID.replace("intents:\n", "departement:\n  horaires: 9h\nintents:\n", 1)
    assert issues_of(unknown) == [
        "kb.yaml:7: field 'departement.horaires': not a declared placeholder"
    ]
    braces = VALID.replace("intents:\n", "departement:\n  statut_dossier: '{x}'\nintents:\n", 1)
    assert issues_of(braces) == [
        "kb.yaml:7: field 'departement.statut_dossier': a value cannot contain braces"
    ]
    empty = VALID.replace("intents:\n", "departement:\n  statut_dossier: ''\nintents:\n", 1)
    assert issues_of(empty) == ["kb.yaml:7: field 'departement.statut_dossier': must not be empty"]


def test_shipped_departement_values(kb: KnowledgeBase) -> None:
    assert kb.departement["horaires_ligne"]
    assert set(kb.departement) <= set(kb.placeholders)
