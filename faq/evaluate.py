"""Accuracy measurement: plain evaluation and honest cross-validation."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from faq.embedding import Embedder, default_embedder
from faq.matcher import Decision, Features, Matcher, MatcherConfig
from faq.model import OUT_OF_SCOPE, KnowledgeBase

THRESHOLD_GRID = tuple(round(0.025 * i, 3) for i in range(21))
"""Out-of-scope floor scores tried when tuning on training folds."""
TEMPERATURE_GRID = (0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2)
"""Softmax temperatures tried when calibrating on training folds."""
_STEP = 5
WEIGHT_GRID: tuple[tuple[float, ...], ...] = tuple(
    (a / _STEP, b / _STEP, c / _STEP, d / _STEP, e / _STEP, (_STEP - a - b - c - d - e) / _STEP)
    for a in range(_STEP + 1)
    for b in range(_STEP + 1 - a)
    for c in range(_STEP + 1 - a - b)
    for d in range(_STEP + 1 - a - b - c)
    for e in range(_STEP + 1 - a - b - c - d)
)
"""(tfidf, neighbour, similarity, keywords, chars, semantic) weights tried when tuning (step
0.2). Without an embedder the semantic column is 0: weight put there only shrinks the
margins that break ties, so tuning leaves it at 0."""
_COMPONENTS = 6


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


DECISION_OUTCOMES = (
    "answer_right",
    "answer_wrong",
    "clarify_first",
    "clarify_second",
    "clarify_wrong",
    "menu",
    "oos_menu",
    "oos_clarify",
    "oos_answer",
)
"""Outcome kinds of :func:`decision_breakdown`."""


def decision_breakdown(matcher: Matcher, data: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Count what the dialogue would do with each labelled utterance.

    In-scope utterances: answered (or handed over) with the right or a wrong intent, a
    clarifying question whose first or second option is right, or whose options are both
    wrong, or the menu. Out-of-scope ones: the menu (right), a clarifying question, or an
    answer.

    Args:
        matcher: The matcher.
        data: (intent, text) pairs.

    Returns:
        Count per outcome of :data:`DECISION_OUTCOMES` (all present).
    """
    counts = dict.fromkeys(DECISION_OUTCOMES, 0)
    for gold, text in data:
        result = matcher.match(text)
        decision = result.decision
        if gold == OUT_OF_SCOPE:
            kind = {Decision.MENU: "oos_menu", Decision.CLARIFY: "oos_clarify"}.get(
                decision, "oos_answer"
            )
        elif decision is Decision.MENU:
            kind = "menu"
        elif decision is Decision.CLARIFY:
            options = result.clarify or (result.intent,)
            kind = (
                "clarify_first"
                if options[0] == gold
                else "clarify_second"
                if gold in options[1:]
                else "clarify_wrong"
            )
        else:
            kind = "answer_right" if result.intent == gold else "answer_wrong"
        counts[kind] += 1
    return counts


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


def _arrays(
    outcomes: Sequence[tuple[str, Sequence[Features]]], ids: Sequence[str], base_power: float
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.bool_]]:
    """Stack features into (utterance, intent, component) with gold indexes and an empty mask."""
    position = {intent: n for n, intent in enumerate(ids)}
    values = np.zeros((len(outcomes), len(ids), _COMPONENTS))
    gold = np.zeros(len(outcomes), dtype=np.int64)
    empty = np.zeros(len(outcomes), dtype=np.bool_)
    for row, (intent, features) in enumerate(outcomes):
        gold[row] = position[intent]
        empty[row] = not features
        for f in features:
            factor = f.coverage**base_power if f.intent != OUT_OF_SCOPE else 1.0
            values[row, position[f.intent]] = (
                factor * f.tfidf,
                factor * f.neighbour,
                factor * f.similarity,
                factor * f.keywords,
                factor * f.chars,
                f.semantic,  # not scaled by coverage (see Features.score)
            )
    return values, gold, empty


def tune(
    outcomes: Sequence[tuple[str, Sequence[Features]]],
    base: MatcherConfig,
    ids: Sequence[str],
) -> MatcherConfig:
    """Choose weights, out-of-scope floor and temperature on labelled feature sets.

    Weights and floor maximise top-1 accuracy (ties: the larger mean margin of the gold
    intent); the temperature then minimises the log-loss of the softmax probabilities.

    Args:
        outcomes: (gold intent, features of the utterance) pairs.
        base: Configuration whose other fields are kept.
        ids: Intent ids of the knowledge base, in order (must contain ``hors_sujet``).

    Returns:
        The tuned configuration.
    """
    values, gold, empty = _arrays(outcomes, ids, base.coverage_power)
    oos = list(ids).index(OUT_OF_SCOPE)
    rows = np.arange(len(gold))
    floors = np.array(THRESHOLD_GRID)
    best: tuple[float, float, tuple[float, ...], float] | None = None
    for weights in WEIGHT_GRID:
        scores = values @ np.array(weights)
        in_scope = scores.copy()
        in_scope[:, oos] = -np.inf
        best_in = in_scope.max(axis=1)
        arg_in = in_scope.argmax(axis=1)
        own_oos = scores[:, oos]
        for floor in floors:
            oos_score = np.maximum(own_oos, floor)
            predicted = np.where((oos_score >= best_in) | empty, oos, arg_in)
            hits = float((predicted == gold).sum())
            full = scores.copy()
            full[:, oos] = oos_score
            gold_score = full[rows, gold]
            full[rows, gold] = -np.inf
            margin = float(np.clip(gold_score - full.max(axis=1), -0.2, 0.2).mean())
            key = (hits, margin)
            if best is None or key > (best[0], best[1]):
                best = (hits, margin, weights, float(floor))
    assert best is not None
    _, _, weights, floor = best
    scores = values @ np.array(weights)
    scores[:, oos] = np.maximum(scores[:, oos], floor)
    loss_by_t: list[tuple[float, float]] = []
    for temperature in TEMPERATURE_GRID:
        logits = scores / temperature
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        loss_by_t.append((float(-log_p[rows, gold].mean()), temperature))
    temperature = min(loss_by_t)[1]
    return replace(
        base,
        weight_tfidf=weights[0],
        weight_neighbour=weights[1],
        weight_similarity=weights[2],
        weight_keywords=weights[3],
        weight_chars=weights[4],
        weight_semantic=weights[5],
        out_of_scope_score=floor,
        temperature=temperature,
    )


def cross_validate(
    kb: KnowledgeBase,
    data: Sequence[tuple[str, str]],
    k: int = 5,
    config: MatcherConfig | None = None,
    *,
    augment: bool = True,
    embedder: Embedder | None | Literal["default"] = "default",
) -> tuple[EvalReport, tuple[MatcherConfig, ...]]:
    """K-fold cross-validation by wording style, tuning only on training folds.

    Folds follow :func:`folds_by_position`. For each test fold the weights, out-of-scope
    floor and temperature are tuned (:func:`tune`) on the other folds, then the test fold is
    matched; the test fold is never used for any choice.

    With ``augment`` (the default), the training folds are also added as examples, and tuning
    scores each training fold with a matcher that has not seen it (nested folds): this
    measures the matcher with more data. Without it, the matcher uses the knowledge base
    alone, as shipped: this measures how well configuration choices generalise.

    Args:
        kb: Knowledge base (its own examples are always used).
        data: (intent, text) pairs.
        k: Number of folds (at least 2).
        config: Base matcher configuration.
        augment: Add the training folds as examples.
        embedder: Sentence embedder of the ``semantic`` feature (``"default"``: the shared
            one, when installed); ``None`` measures the lexical features alone. With one,
            the semantic weight is tuned like the others, whatever ``config`` says.

    Returns:
        The report over all held-out utterances and the configuration chosen per fold.
    """
    base = config or MatcherConfig()
    model = default_embedder() if isinstance(embedder, str) else embedder
    # Features are computed with the semantic score on (its weight is chosen by tuning).
    scoring = replace(base, weight_semantic=1.0 if model is not None else 0.0)
    # Tuning only reads the lexical features: the matchers that compute them need no
    # classifier. The matcher of each test fold fits its own on the training folds only.
    lexical = replace(scoring, classifier_weight=0.0)
    folds = folds_by_position(data, k)
    results: list[tuple[str, str]] = []
    chosen: list[MatcherConfig] = []
    plain = Matcher(kb, lexical, embedder=model)
    plain_features = [plain.features(text) for _, text in data]
    for test in range(k):
        outcomes: list[tuple[str, Sequence[Features]]] = []
        if augment:
            for inner in range(k):
                if inner == test:
                    continue
                inner_matcher = Matcher(
                    kb,
                    lexical,
                    embedder=model,
                    extra_examples=_training(data, folds, {test, inner}),
                )
                outcomes.extend(
                    (gold, inner_matcher.features(text))
                    for (gold, text), fold in zip(data, folds, strict=True)
                    if fold == inner
                )
        else:
            outcomes = [
                (gold, features)
                for (gold, _), features, fold in zip(data, plain_features, folds, strict=True)
                if fold != test
            ]
        tuned = tune(outcomes, scoring, kb.ids)
        chosen.append(tuned)
        extra = _training(data, folds, {test}) if augment else {}
        matcher = Matcher(kb, tuned, embedder=model, extra_examples=extra)
        results.extend(
            (gold, matcher.match(text).intent)
            for (gold, text), fold in zip(data, folds, strict=True)
            if fold == test
        )
    return report(results), tuple(chosen)
