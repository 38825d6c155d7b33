"""Trained linear classifier: word and character TF-IDF n-grams, multinomial logistic regression.

The lexical scores of :mod:`faq.matcher` are hand-built similarities; this classifier learns
from the same examples (and keywords) which n-grams tell the intents apart, ``hors_sujet``
included as a class of its own (its examples). The matcher blends both probability
distributions (``MatcherConfig.classifier_weight``).

Training is deterministic: the ``newton-cg`` solver uses no random numbers (``saga`` and
``liblinear`` shuffle), and it fits the shipped knowledge base in about 2 s where ``lbfgs``
needs 6 s for the same model. Fitted models are kept in a small in-process cache keyed by
the training set and settings, so rebuilding a matcher on an unchanged knowledge base (hot
reload, tests, the bot and the CLI in one process) costs nothing.

scikit-learn ships no type information: it is used only inside :class:`LinearClassifier`,
whose public surface is typed.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.pipeline import FeatureUnion  # type: ignore[import-untyped]

from faq.model import KnowledgeBase
from faq.normalize import normalize


@dataclass(frozen=True, slots=True)
class ClassifierConfig:
    """Features and regularisation of the linear classifier.

    The defaults are the lead's first measured setting (word 1-2-grams, character 2-5-grams
    within word boundaries, ``C`` = 10); they were not tuned on the dev set.
    """

    c: float = 10.0
    """Inverse regularisation strength of the logistic regression."""
    word_ngrams: tuple[int, int] = (1, 2)
    """Smallest and largest word n-gram."""
    char_ngrams: tuple[int, int] = (2, 5)
    """Smallest and largest character n-gram (``char_wb``: inside word boundaries)."""
    max_iter: int = 3000
    """Iteration cap of the solver (it converges long before on the shipped base)."""
    tol: float = 1e-4
    """Solver tolerance."""


def training_set(
    kb: KnowledgeBase, extra_examples: Mapping[str, Sequence[str]] | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Labelled texts to train on: every example and keyword of every intent.

    Args:
        kb: Knowledge base (``hors_sujet`` examples make the out-of-scope class).
        extra_examples: More examples per intent id (e.g. training folds).

    Returns:
        Normalised texts and their intent ids, in knowledge-base order.
    """
    extra = extra_examples or {}
    texts: list[str] = []
    labels: list[str] = []
    for intent in kb.intents:
        for text in (*intent.examples, *intent.keywords, *extra.get(intent.id, ())):
            normalised = normalize(text)
            if normalised:
                texts.append(normalised)
                labels.append(intent.id)
    return tuple(texts), tuple(labels)


class LinearClassifier:
    """A fitted classifier (immutable once built; safe to share between threads)."""

    __slots__ = ("_analyzers", "_coef", "_features", "_intercept", "_model", "classes")

    classes: tuple[str, ...]
    """Intent ids, in the order of the probability columns."""

    def __init__(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        config: ClassifierConfig | None = None,
    ) -> None:
        """Fit the classifier.

        Args:
            texts: Normalised training texts.
            labels: Intent id of each text.
            config: Features and regularisation.

        Raises:
            ValueError: If there are no texts, a label is missing, or fewer than two classes.
        """
        cfg = config or ClassifierConfig()
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if len(set(labels)) < 2:
            raise ValueError("the classifier needs at least two intents with examples")
        features: Any = FeatureUnion(
            [
                (
                    "words",
                    TfidfVectorizer(
                        analyzer="word", ngram_range=cfg.word_ngrams, sublinear_tf=True
                    ),
                ),
                (
                    "chars",
                    TfidfVectorizer(
                        analyzer="char_wb", ngram_range=cfg.char_ngrams, sublinear_tf=True
                    ),
                ),
            ]
        )
        model: Any = LogisticRegression(
            C=cfg.c, solver="newton-cg", max_iter=cfg.max_iter, tol=cfg.tol
        )
        model.fit(features.fit_transform(list(texts)), list(labels))
        self._features = features
        self._model = model
        self.classes = tuple(str(c) for c in model.classes_)
        # One utterance at a time, scikit-learn's input validation costs ~1 ms: keep what
        # the transform needs (analyser, vocabulary, IDF, column offset) for a direct path.
        analyzers: list[tuple[Any, dict[str, int], NDArray[np.float64], int]] = []
        offset = 0
        for _, vectorizer in features.transformer_list:
            vocabulary = {str(k): int(v) for k, v in vectorizer.vocabulary_.items()}
            idf = np.asarray(vectorizer.idf_, dtype=np.float64)
            analyzers.append((vectorizer.build_analyzer(), vocabulary, idf, offset))
            offset += len(vocabulary)
        self._analyzers = tuple(analyzers)
        # Column-major so that the columns of one utterance's n-grams are read contiguously.
        coef = np.asarray(model.coef_, dtype=np.float64)
        intercept = np.asarray(model.intercept_, dtype=np.float64)
        if len(self.classes) == 2:  # one row for the second class: softmax of (0, z)
            coef = np.vstack([np.zeros_like(coef), coef])
            intercept = np.concatenate([np.zeros(1), intercept])
        self._coef = np.asfortranarray(coef)
        self._intercept = intercept

    def predict_proba(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Class probabilities of normalised texts.

        Args:
            texts: Normalised utterances.

        Returns:
            Array (text, class) whose rows sum to 1; columns follow :attr:`classes`.
        """
        matrix = self._features.transform(list(texts))
        return np.asarray(self._model.predict_proba(matrix), dtype=np.float64)

    def probabilities(self, text: str) -> dict[str, float]:
        """Probability of each intent for one utterance.

        Args:
            text: Utterance, raw or normalised (it is normalised here).

        Returns:
            Intent id → probability (sums to 1).
        """
        row = self._proba_one(normalize(text))
        return {intent: float(p) for intent, p in zip(self.classes, row, strict=True)}

    def _proba_one(self, text: str) -> NDArray[np.float64]:
        """Same as ``predict_proba([text])[0]`` without scikit-learn's per-call overhead."""
        columns: list[int] = []
        values: list[NDArray[np.float64]] = []
        for analyzer, vocabulary, idf, offset in self._analyzers:
            counts: dict[int, int] = {}
            for gram in analyzer(text):
                index = vocabulary.get(gram)
                if index is not None:
                    counts[index] = counts.get(index, 0) + 1
            if not counts:
                continue
            indexes = np.fromiter(counts, dtype=np.intp, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            weights = (1.0 + np.log(tf)) * idf[indexes]  # sublinear_tf, then IDF
            weights /= np.linalg.norm(weights)  # each vectoriser normalises its own part (l2)
            columns.extend(int(i) + offset for i in indexes)
            values.append(weights)
        logits = self._intercept.copy()
        if columns:
            logits += self._coef[:, columns] @ np.concatenate(values)
        logits -= logits.max()
        exps = np.exp(logits)
        result: NDArray[np.float64] = exps / exps.sum()
        return result


_CACHE_SIZE = 4
_cache: OrderedDict[tuple[object, ...], LinearClassifier] = OrderedDict()
_lock = threading.Lock()


def train(
    texts: Sequence[str], labels: Sequence[str], config: ClassifierConfig | None = None
) -> LinearClassifier:
    """Fit a classifier, or return the one already fitted on the same data and settings.

    Args:
        texts: Normalised training texts.
        labels: Intent id of each text.
        config: Features and regularisation.

    Returns:
        The fitted classifier (shared: it is immutable).
    """
    cfg = config or ClassifierConfig()
    key = (tuple(texts), tuple(labels), cfg)
    with _lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    fitted = LinearClassifier(texts, labels, cfg)
    with _lock:
        _cache[key] = fitted
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return fitted


def clear_cache() -> None:
    """Forget every fitted classifier (the next :func:`train` fits again)."""
    with _lock:
        _cache.clear()
