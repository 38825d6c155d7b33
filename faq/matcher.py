"""Intent matcher: keyword weighting, TF-IDF overlap and fuzzy similarity to examples.

The fuzzy scorer is a parameter (:data:`Scorer`), so a faster library such as rapidfuzz can
replace the stdlib :func:`difflib_scorer` without touching the rest.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher

from faq.model import OUT_OF_SCOPE, Handoff, Intent, KnowledgeBase, Priority
from faq.normalize import normalize_tokens

Scorer = Callable[[str, str], float]
"""Similarity of two normalised utterances, from 0.0 (unrelated) to 1.0 (identical)."""

STOPWORDS = frozenset(
    """a au aux avec ce ces c ca cela cet cette d de des du donc elle elles en est et etre
    il ils je j la le les leur lui ma mais me mes moi mon ne nous on ou par pas pour qu que qui
    sa se ses son sur ta te tes toi ton tu un une vos votre vous y oui non alors voila bonjour
    madame monsieur merci plait s vous svp appelle appel voudrais voulais veux savoir est-ce
    si suis ai as avez avoir fait faire dit bien tres tout toute tous""".split()
)
"""Words that carry no intent (after normalisation)."""


class Decision(enum.Enum):
    """What the dialogue should do with a match."""

    ANSWER = "answer"
    """Confident: speak the intent's answer."""
    CLARIFY = "clarify"
    """Two intents are close: ask which one the caller means."""
    MENU = "menu"
    """Not understood: fall back to the keypad menu."""
    HANDOFF = "handoff"
    """Hand over to a person now (policy ``always`` or critical priority)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ranked intent with its confidence."""

    intent: str
    """Intent id."""
    confidence: float
    """Confidence in [0, 1]."""


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Outcome of matching one utterance."""

    intent: str
    """Chosen intent id (``hors_sujet`` when nothing fits)."""
    confidence: float
    """Confidence in the chosen intent, in [0, 1]."""
    alternatives: tuple[Candidate, ...]
    """Next best intents, best first (the chosen one excluded)."""
    decision: Decision
    """What to do next."""


@dataclass(frozen=True, slots=True)
class MatcherConfig:
    """Weights and thresholds of the matcher."""

    weight_tfidf: float = 0.45
    """Weight of the TF-IDF cosine between utterance and intent vocabulary."""
    weight_similarity: float = 0.30
    """Weight of the best fuzzy similarity to an example utterance."""
    weight_keywords: float = 0.25
    """Weight of the (squashed, IDF-weighted) matched keywords."""
    out_of_scope_threshold: float = 0.22
    """Below this confidence the utterance is ``hors_sujet``."""
    answer_threshold: float = 0.35
    """At or above this confidence (and with a clear margin) the decision is ``answer``."""
    clarify_margin: float = 0.04
    """When the top two are closer than this, ask a clarifying question."""
    alternatives: int = 3
    """How many alternatives to return."""
    critical_margin: float = 0.05
    """A critical intent (distress, abuse) this close to the top one wins: missing one costs
    far more than an unneeded hand-off."""


def stem(token: str) -> str:
    """Crude French stemmer: cut plural/feminine endings and keep the first 7 letters.

    Args:
        token: Normalised token.

    Returns:
        The stem.
    """
    if len(token) > 4 and token.endswith("s"):
        token = token[:-1]
    if len(token) > 4 and token.endswith("e"):
        token = token[:-1]
    return token[:7]


def content_stems(text: str) -> list[str]:
    """Normalise an utterance and return the stems of its content words.

    Args:
        text: Raw or normalised utterance.

    Returns:
        Stems, stopwords removed, in order.
    """
    return [stem(tok) for tok in normalize_tokens(text) if tok not in STOPWORDS]


def difflib_scorer(query: str, choice: str) -> float:
    """Stdlib fuzzy scorer: order-insensitive token similarity with :mod:`difflib`.

    Args:
        query: Normalised utterance.
        choice: Normalised example.

    Returns:
        Similarity in [0, 1].
    """
    a, b = sorted(query.split()), sorted(choice.split())
    if not a or not b:
        return 0.0
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


@dataclass(frozen=True, slots=True)
class Features:
    """Raw score components of one intent for one utterance, each in [0, 1]."""

    intent: str
    """Intent id."""
    tfidf: float
    """TF-IDF cosine between the utterance and the intent's vocabulary."""
    similarity: float
    """Best fuzzy similarity to one of the intent's examples."""
    keywords: float
    """Squashed IDF weight of the intent's keywords found in the utterance."""


def rank(features: Sequence[Features], config: MatcherConfig) -> list[Candidate]:
    """Combine score components with the config weights and rank the intents.

    Args:
        features: Components per intent (from :meth:`Matcher.features`).
        config: Weights.

    Returns:
        Candidates, best first (a single zero ``hors_sujet`` when ``features`` is empty).
    """
    if not features:
        return [Candidate(OUT_OF_SCOPE, 0.0)]
    out = [
        Candidate(
            f.intent,
            round(
                min(
                    1.0,
                    config.weight_tfidf * f.tfidf
                    + config.weight_similarity * f.similarity
                    + config.weight_keywords * f.keywords,
                ),
                4,
            ),
        )
        for f in features
    ]
    out.sort(key=lambda c: (-c.confidence, c.intent))
    return out


@dataclass(frozen=True, slots=True)
class _IntentIndex:
    intent: Intent
    examples: tuple[str, ...]
    keywords: tuple[tuple[str, ...], ...]
    vector: Mapping[str, float]


@dataclass(frozen=True)
class Matcher:
    """Match caller utterances to knowledge-base intents (pure, thread-safe once built)."""

    kb: KnowledgeBase
    """The knowledge base."""
    config: MatcherConfig = field(default_factory=MatcherConfig)
    """Weights and thresholds."""
    scorer: Scorer = difflib_scorer
    """Fuzzy similarity used against example utterances."""
    extra_examples: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """More example utterances per intent id (e.g. training folds in cross-validation)."""
    _index: tuple[_IntentIndex, ...] = field(init=False, repr=False)
    _idf: Mapping[str, float] = field(init=False, repr=False)
    _critical: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        docs: list[tuple[Intent, list[str], list[tuple[str, ...]], Counter[str]]] = []
        df: Counter[str] = Counter()
        for intent in self.kb.intents:
            examples = [*intent.examples, *self.extra_examples.get(intent.id, ())]
            keywords = [tuple(content_stems(k)) for k in intent.keywords]
            bag: Counter[str] = Counter()
            for text in examples:
                bag.update(set(content_stems(text)))
            for kw in keywords:
                bag.update(kw)
            # The maintainers' description names the situation in other words: vocabulary only.
            bag.update(set(content_stems(intent.description)) - set(bag))
            docs.append((intent, [" ".join(content_stems(e)) for e in examples], keywords, bag))
            df.update(bag.keys())
        n = len(docs)
        idf = {term: math.log(1 + n / count) for term, count in df.items()}
        index: list[_IntentIndex] = []
        for intent, examples, keywords, bag in docs:
            vec = {t: (1 + math.log(c)) * idf[t] for t, c in bag.items()}
            norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
            index.append(
                _IntentIndex(
                    intent=intent,
                    examples=tuple(examples),
                    keywords=tuple(k for k in keywords if k),
                    vector={t: v / norm for t, v in vec.items()},
                )
            )
        object.__setattr__(self, "_index", tuple(index))
        object.__setattr__(self, "_idf", idf)
        critical = (i.id for i in self.kb.intents if i.priority is Priority.CRITICAL)
        object.__setattr__(self, "_critical", frozenset(critical))

    def features(self, text: str) -> list[Features]:
        """Compute the raw score components of every intent for an utterance.

        Args:
            text: Utterance as written by the recogniser.

        Returns:
            One entry per intent, in knowledge-base order (empty if no content word).
        """
        stems = content_stems(text)
        if not stems:
            return []
        joined = " ".join(stems)
        counts = Counter(stems)
        max_idf = max(self._idf.values(), default=1.0)
        query = {t: (1 + math.log(c)) * self._idf.get(t, max_idf) for t, c in counts.items()}
        qnorm = math.sqrt(sum(v * v for v in query.values())) or 1.0
        padded = f" {joined} "
        out: list[Features] = []
        for entry in self._index:
            cosine = sum(w * entry.vector.get(t, 0.0) for t, w in query.items()) / qnorm
            similarity = max((self.scorer(joined, ex) for ex in entry.examples), default=0.0)
            matched = 0.0
            for kw in entry.keywords:
                if f" {' '.join(kw)} " in padded:
                    matched += sum(self._idf.get(t, max_idf) for t in kw)
            keyword = 1.0 - math.exp(-matched / 3.0)
            out.append(Features(entry.intent.id, cosine, similarity, keyword))
        return out

    def scores(self, text: str) -> list[Candidate]:
        """Score every intent for an utterance.

        Args:
            text: Utterance as written by the recogniser.

        Returns:
            One candidate per intent, best first.
        """
        return rank(self.features(text), self.config)

    def match(self, text: str) -> MatchResult:
        """Match an utterance and decide what to do.

        Args:
            text: Utterance as written by the recogniser.

        Returns:
            The chosen intent, its confidence, ranked alternatives and the decision.
        """
        return self.decide(self.scores(text))

    def decide(self, ranked: Sequence[Candidate]) -> MatchResult:
        """Turn ranked candidates into a decision (thresholds from the config).

        Args:
            ranked: Candidates, best first (as returned by :meth:`scores`).

        Returns:
            The match result.
        """
        cfg = self.config
        top = ranked[0]
        for candidate in ranked[1 : 1 + cfg.alternatives]:
            if (
                candidate.intent in self._critical
                and candidate.confidence >= top.confidence - cfg.critical_margin
            ):
                ranked = [candidate, *(c for c in ranked if c is not candidate)]
                top = candidate
                break
        alternatives = tuple(ranked[1 : 1 + cfg.alternatives])
        if top.intent == OUT_OF_SCOPE or top.confidence < cfg.out_of_scope_threshold:
            # A confident "hors_sujet" gets its orientation answer; anything unclear goes to
            # the keypad menu, with the best in-scope guesses as alternatives.
            if top.intent == OUT_OF_SCOPE and top.confidence >= cfg.out_of_scope_threshold:
                decision = Decision.ANSWER
            else:
                decision = Decision.MENU
                alternatives = tuple(c for c in ranked if c.intent != OUT_OF_SCOPE)
                alternatives = alternatives[: cfg.alternatives]
            return MatchResult(OUT_OF_SCOPE, top.confidence, alternatives, decision)
        intent = self.kb.get(top.intent)
        if intent.handoff is Handoff.ALWAYS or intent.priority is Priority.CRITICAL:
            return MatchResult(top.intent, top.confidence, alternatives, Decision.HANDOFF)
        second = ranked[1].confidence if len(ranked) > 1 else 0.0
        if top.confidence - second < cfg.clarify_margin:
            decision = Decision.CLARIFY
        elif top.confidence >= cfg.answer_threshold:
            decision = Decision.ANSWER
        else:
            decision = Decision.CLARIFY if len(ranked) > 1 else Decision.MENU
        return MatchResult(top.intent, top.confidence, alternatives, decision)


def read_tsv(lines: Iterable[str]) -> list[tuple[str, str]]:
    """Parse ``intent<TAB>text`` lines, skipping blanks and ``#`` comments.

    Args:
        lines: Lines of the file.

    Returns:
        (intent, text) pairs.

    Raises:
        ValueError: If a line has no tab.
    """
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("#"):
            continue
        if "\t" not in line:
            raise ValueError(f"line {number}: expected 'intent<TAB>text'")
        intent, text = line.split("\t", 1)
        pairs.append((intent.strip(), text.strip()))
    return pairs
