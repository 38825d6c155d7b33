"""Benchmark: FAQ matcher speed and accuracy on the dev set.

Usage: ``python bench/faq.py [--dev FILE] [--folds 5] [--repeat 5]``; prints one JSON object:
knowledge-base load and matcher build times, per-utterance classification time p50/p99 (µs),
top-1 accuracy and out-of-scope F1 on the dev set with the shipped settings, and the same
with settings tuned on the other folds (cross-validation by wording style, knowledge base
alone, as shipped) and with the training folds added as examples.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path and "faq" would import this
# module instead of the package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from faq.evaluate import cross_validate, evaluate  # noqa: E402 (after the sys.path fix)
from faq.loader import default_knowledge_base_path, load_knowledge_base  # noqa: E402
from faq.matcher import Matcher, read_tsv  # noqa: E402

DEV = Path(__file__).resolve().parents[2] / "shared" / "domain" / "dev_utterances.tsv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dev", type=Path, default=DEV)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    start = time.perf_counter()
    kb = load_knowledge_base(default_knowledge_base_path())
    load_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    matcher = Matcher(kb)
    build_ms = (time.perf_counter() - start) * 1000
    data = read_tsv(args.dev.read_text(encoding="utf-8").splitlines())

    timings: list[float] = []
    for _ in range(args.repeat):
        for _, text in data:
            t0 = time.perf_counter()
            matcher.match(text)
            timings.append((time.perf_counter() - t0) * 1e6)
    timings.sort()
    dev = evaluate(matcher, data)
    cv, _ = cross_validate(kb, data, args.folds, augment=False)
    cv_aug, _ = cross_validate(kb, data, args.folds, augment=True)
    print(
        json.dumps(
            {
                "utterances": len(data),
                "load_ms": round(load_ms, 1),
                "build_ms": round(build_ms, 1),
                "classify_us_p50": round(statistics.median(timings), 1),
                "classify_us_p99": round(timings[int(0.99 * (len(timings) - 1))], 1),
                "dev_accuracy": round(dev.accuracy, 4),
                "dev_oos_f1": round(dev.oos_f1, 4),
                "cv_folds": args.folds,
                "cv_accuracy": round(cv.accuracy, 4),
                "cv_oos_f1": round(cv.oos_f1, 4),
                "cv_augmented_accuracy": round(cv_aug.accuracy, 4),
                "cv_augmented_oos_f1": round(cv_aug.oos_f1, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
