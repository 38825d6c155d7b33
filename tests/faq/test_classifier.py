from __future__ import annotations

import numpy as np
import pytest

import faq.classifier
from faq.classifier import (
    ClassifierConfig,
    LinearClassifier,
    clear_cache,
    train,
    training_set,
)
from faq.evaluate import cross_validate, folds_by_position
from faq.matcher import Matcher, MatcherConfig, read_tsv
from faq.model import KnowledgeBase
from faq.normalize import normalize
from tests.faq.conftest import DEV_TSV

TINY = (
    ("ou en est mon dossier apa", "suivi"),
    ("mon dossier apa avance", "suivi"),
    ("je veux changer mon rib", "rib"),
    ("nouvelles coordonnees bancaires", "rib"),
    ("refaire mon passeport", "hors_sujet"),
    ("acheter un billet de train", "hors_sujet"),
)


def _tiny(pairs: tuple[tuple[str, str], ...] = TINY) -> LinearClassifier:
    return LinearClassifier([t for t, _ in pairs], [label for _, label in pairs])


def test_training_set_has_examples_keywords_and_extra(kb: KnowledgeBase) -> None:
    texts, labels = training_set(kb)
    expected = sum(len(i.examples) + len(i.keywords) for i in kb.intents)
    assert len(texts) == len(labels) == expected
    assert set(labels) == set(kb.ids) and "hors_sujet" in labels
    assert all(t == normalize(t) for t in texts)
    more, more_labels = training_set(kb, {"demande_cmi": ["zorglub carte"]})
    assert len(more) == expected + 1
    assert ("zorglub carte", "demande_cmi") in set(zip(more, more_labels, strict=True))


def test_probabilities_are_learned_and_sum_to_one() -> None:
    classifier = _tiny()
    assert classifier.classes == ("hors_sujet", "rib", "suivi")
    probabilities = classifier.probabilities("où en est le dossier d'A.P.A.")
    assert max(probabilities, key=probabilities.__getitem__) == "suivi"
    assert abs(sum(probabilities.values()) - 1.0) < 1e-9
    rib = classifier.probabilities("changer le rib")
    assert max(rib, key=rib.__getitem__) == "rib"


def test_fitting_is_deterministic() -> None:
    first = _tiny().predict_proba(["dossier apa", "passeport perdu"])
    second = _tiny().predict_proba(["dossier apa", "passeport perdu"])
    assert np.array_equal(first, second)


@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary"])
def test_direct_path_equals_scikit_learn(binary: bool) -> None:
    classifier = _tiny(TINY[:4] if binary else TINY)
    texts = ["dossier apa", "rib", "", "zzz qqq", "mon dossier mon dossier apa rib"]
    reference = classifier.predict_proba(texts)
    for text, row in zip(texts, reference, strict=True):
        direct = classifier.probabilities(text)
        assert np.allclose([direct[c] for c in classifier.classes], row, atol=1e-12), text


def test_direct_path_equals_scikit_learn_on_the_knowledge_base(matcher: Matcher) -> None:
    texts, labels = training_set(matcher.kb)
    classifier = train(texts, labels, matcher.config.classifier)
    data = [normalize(t) for _, t in read_tsv(DEV_TSV.read_text(encoding="utf-8").splitlines())]
    reference = classifier.predict_proba(data)
    for text, row in zip(data[:60], reference[:60], strict=True):
        direct = classifier.probabilities(text)
        assert np.allclose([direct[c] for c in classifier.classes], row, atol=1e-12), text


def test_train_caches_by_data_and_settings() -> None:
    texts, labels = [t for t, _ in TINY], [label for _, label in TINY]
    clear_cache()
    first = train(texts, labels)
    assert train(list(texts), list(labels)) is first
    assert train(texts, labels, ClassifierConfig(c=1.0)) is not first
    clear_cache()
    assert train(texts, labels) is not first


def test_rejects_bad_training_sets() -> None:
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        LinearClassifier(["a b", "c d"], ["x"])
    with pytest.raises(ValueError, match="at least two intents"):
        LinearClassifier(["a b", "c d"], ["x", "x"])


def test_weight_zero_fits_nothing(kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr("faq.matcher.train", lambda *a, **k: calls.append(1))
    Matcher(kb, MatcherConfig(classifier_weight=0.0))
    assert calls == []


def test_cross_validation_trains_on_training_folds_only(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = [
        ("suivi_dossier_apa", "zorglub un dossier"),
        ("suivi_dossier_apa", "zorglub deux dossier"),
        ("hors_sujet", "frobnication une"),
        ("hors_sujet", "frobnication deux"),
    ] * 2
    data = [(g, f"{t} {n}") for n, (g, t) in enumerate(data)]
    folds = folds_by_position(data, 2)
    base, _ = training_set(kb)
    seen: list[set[str]] = []
    real_train = faq.classifier.train

    def recording(
        texts: tuple[str, ...], labels: tuple[str, ...], config: ClassifierConfig
    ) -> LinearClassifier:
        seen.append(set(texts) - set(base))
        return real_train(texts, labels, config)

    monkeypatch.setattr("faq.matcher.train", recording)
    result, _ = cross_validate(kb, data, k=2, augment=True, embedder=None)
    assert result.total == len(data)
    assert len(seen) == 2  # one classifier per test fold; tuning matchers fit none
    by_fold = [
        {normalize(t) for (_, t), f in zip(data, folds, strict=True) if f == k} for k in (0, 1)
    ]
    # Each classifier saw exactly one fold's utterances: the other one, never its test fold.
    assert seen == [by_fold[1], by_fold[0]]
