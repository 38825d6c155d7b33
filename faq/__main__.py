"""Command line: ``python -m faq check FILE`` and ``python -m faq eval FILE.tsv``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from faq.evaluate import EvalReport, cross_validate, evaluate
from faq.loader import FaqError, default_knowledge_base_path, load_knowledge_base
from faq.matcher import Matcher, read_tsv


def _print_report(title: str, result: EvalReport) -> None:
    print(f"{title}: top-1 accuracy {result.accuracy:.1%} ({result.correct}/{result.total})")
    print(
        f"out-of-scope: precision {result.oos_precision:.2f} recall {result.oos_recall:.2f}"
        f" F1 {result.oos_f1:.2f}"
    )
    if result.confusions:
        print("confusions (expected -> predicted: count):")
        for gold, predicted, count in result.confusions:
            print(f"  {gold} -> {predicted}: {count}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the FAQ command line.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        Process exit code (0 on success, 1 on invalid input).
    """
    parser = argparse.ArgumentParser(prog="python -m faq")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a knowledge-base YAML file")
    check.add_argument("file")
    ev = sub.add_parser("eval", help="top-1 accuracy on a TSV file (intent<TAB>text)")
    ev.add_argument("file")
    ev.add_argument("--kb", default=str(default_knowledge_base_path()))
    ev.add_argument("--cv", type=int, default=0, help="also run K-fold cross-validation")
    args = parser.parse_args(argv)

    if args.command == "check":
        try:
            kb = load_knowledge_base(args.file)
        except FaqError as exc:
            for issue in exc.issues:
                print(issue, file=sys.stderr)
            return 1
        print(f"{args.file}: OK, {len(kb.intents)} intents")
        return 0

    try:
        kb = load_knowledge_base(args.kb)
        with open(args.file, encoding="utf-8") as handle:
            data = read_tsv(handle)
    except FaqError as exc:
        print(exc, file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    _print_report("knowledge base only", evaluate(Matcher(kb), data))
    if args.cv >= 2:
        result, configs = cross_validate(kb, data, args.cv)
        print("\nchosen on training folds (tfidf, similarity, keywords weights; threshold):")
        for config in configs:
            print(
                f"  {config.weight_tfidf:.1f} {config.weight_similarity:.1f}"
                f" {config.weight_keywords:.1f}; {config.out_of_scope_threshold:.2f}"
            )
        _print_report(f"{args.cv}-fold cross-validation (held-out folds)", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
