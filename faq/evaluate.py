"""Accuracy measurement: plain evaluation and honest cross-validation."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from faq.matcher import Features, Matcher, MatcherConfig, rank
from faq.model import OUT_OF_SCOPE, KnowledgeBase

THRESHOLD_GRID = (0.0, 0.1, 0.14, 0.18, 0.22, 0.26, 0.3, 0.34)
"""Out-of-scope thresholds tried when tuning on training folds."""
WEIGHT_GRID = tuple(
    (t / 10, s / 10, round(1 - t / 10 - s / 10, 1))
    for t in range(0, 11, 2)
    for s in range(0, 11 - t, 2)
)
"""(tfidf, similarity, keywords) weights tried when tuning on training folds."""


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Result of an evaluation run."""

    total: int
    """Number of utterances."""
    correct: int
    """Top-1 correct."""
    confusions: tuple[tuple[str, str, int], ...]
    """(expected, predicted, count), most frequent first."""
    oos_precision: float
    """Precision of ``hors_sujet`` predictions."""
    oos_recall: float
    """Recall of ``hors_sujet`` utterances."""

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy in [0, 1]."""
        return self.correct / self.total if self.total else 0.0

    @property
    def oos_f1(self) -> float:
        """F1 of out-of-scope detection."""
        p, r = self.oos_precision, self.oos_recall
        return 2 * p * r / (p + r) if p + r else 0.0


def report(pairs: Sequence[tuple[str, str]]) -> EvalReport:
    """Build a report from (expected, predicted) pairs.

    Args:
        pairs: Expected and predicted intent ids.

    Returns:
        The report.
    """
    confusions: Counter[tuple[str, str]] = Counter((g, p) for g, p in pairs if g != p)
    predicted_oos = sum(1 for _, p in pairs if p == OUT_OF_SCOPE)
    actual_oos = sum(1 for g, _ in pairs if g == OUT_OF_SCOPE)
    both = sum(1 for g, p in pairs if g == p == OUT_OF_SCOPE)
    return EvalReport(
        total=len(pairs),
        correct=sum(1 for g, p in pairs if g == p),
        confusions=tuple((g, p, n) for (g, p), n in confusions.most_common()),
        oos_precision=both / predicted_oos if predicted_oos else 0.0,
        oos_recall=both / actual_oos if actual_oos else 0.0,
    )


def evaluate(matcher: Matcher, data: Sequence[tuple[str, str]]) -> EvalReport:
    """Evaluate a matcher on labelled utterances.

    Args:
        matcher: The matcher.
        data: (intent, text) pairs.

    Returns:
        The report.
    """
    return report([(gold, matcher.match(text).intent) for gold, text in data])


def folds_by_position(data: Sequence[tuple[str, str]], k: int) -> list[int]:
    """Assign each utterance to a fold by its rank among its intent's utterances.

    The dev file lists each intent's utterances in the same order of wording styles
    (plain, hesitant, third party, long...), so a fold holds out similar styles.

    Args:
        data: (intent, text) pairs.
        k: Number of folds.

    Returns:
        Fold number per utterance.
    """
    seen: Counter[str] = Counter()
    folds: list[int] = []
    for gold, _ in data:
        folds.append(seen[gold] % k)
        seen[gold] += 1
    return folds


def _training(
    data: Sequence[tuple[str, str]], folds: Sequence[int], excluded: set[int]
) -> dict[str, list[str]]:
    extra: dict[str, list[str]] = defaultdict(list)
    for (gold, text), fold in zip(data, folds, strict=True):
        if fold not in excluded:
            extra[gold].append(text)
    return extra


def _tune(outcomes: Sequence[tuple[str, Sequence[Features]]], base: MatcherConfig) -> MatcherConfig:
    best: tuple[int, float, MatcherConfig] | None = None
    for tfidf, similarity, keywords in WEIGHT_GRID:
        config = replace(
            base, weight_tfidf=tfidf, weight_similarity=similarity, weight_keywords=keywords
        )
        ranked = [(gold, rank(features, config)[0]) for gold, features in outcomes]
        for threshold in THRESHOLD_GRID:
            hits = sum(
                (top.intent if top.confidence >= threshold else OUT_OF_SCOPE) == gold
                for gold, top in ranked
            )
            if best is None or (hits, -threshold) > (best[0], -best[1]):
                best = (hits, threshold, replace(config, out_of_scope_threshold=threshold))
    assert best is not None
    return best[2]


def cross_validate(
    kb: KnowledgeBase,
    data: Sequence[tuple[str, str]],
    k: int = 5,
    config: MatcherConfig | None = None,
) -> tuple[EvalReport, tuple[MatcherConfig, ...]]:
    """K-fold cross-validation with weights and threshold tuned on training folds only.

    For each test fold, the other folds are added as examples; the weights and the
    out-of-scope threshold are chosen by scoring each training fold with a matcher that has
    not seen it (nested folds). The test fold is never used for any choice.

    Args:
        kb: Knowledge base (its own examples are always used).
        data: (intent, text) pairs.
        k: Number of folds (at least 2).
        config: Base matcher configuration.

    Returns:
        The report over all held-out utterances and the configuration chosen per fold.
    """
    base = config or MatcherConfig()
    folds = folds_by_position(data, k)
    results: list[tuple[str, str]] = []
    chosen: list[MatcherConfig] = []
    for test in range(k):
        outcomes: list[tuple[str, Sequence[Features]]] = []
        for inner in range(k):
            if inner == test:
                continue
            inner_matcher = Matcher(kb, base, extra_examples=_training(data, folds, {test, inner}))
            outcomes.extend(
                (gold, inner_matcher.features(text))
                for (gold, text), fold in zip(data, folds, strict=True)
                if fold == inner
            )
        tuned = _tune(outcomes, base)
        chosen.append(tuned)
        matcher = Matcher(kb, tuned, extra_examples=_training(data, folds, {test}))
        results.extend(
            (gold, matcher.match(text).intent)
            for (gold, text), fold in zip(data, folds, strict=True)
            if fold == test
        )
    return report(results), tuple(chosen)
