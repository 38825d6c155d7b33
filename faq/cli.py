"""Command line of the FAQ: ``check``, ``ask``, ``classify`` and ``eval``.

``callcenter faq ...`` and ``python -m faq ...`` both call :func:`main`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from faq.answers import fill_answer
from faq.evaluate import EvalReport, cross_validate, evaluate
from faq.loader import FaqError, default_knowledge_base_path, load_knowledge_base
from faq.matcher import Decision, Matcher, MatchResult, read_tsv
from faq.model import OUT_OF_SCOPE, KnowledgeBase


def result_json(kb: KnowledgeBase, result: MatchResult) -> dict[str, Any]:
    """JSON-ready view of a match result.

    ``answer`` is the intent's answer filled with the département values when the decision
    is ``answer`` or ``handover`` (distress intents give their emergency numbers before the
    hand-over), and null otherwise or when a placeholder needs the caller's dossier or the
    call's state.

    Args:
        kb: Knowledge base (for answers and département values).
        result: The match result.

    Returns:
        A mapping with ``intent``, ``confidence``, ``alternatives``, ``decision``, ``answer``
        and ``clarify`` (the two intents to ask between, or null).
    """
    answer = None
    if result.decision in (Decision.ANSWER, Decision.HANDOVER) and result.intent != OUT_OF_SCOPE:
        answer = fill_answer(kb.get(result.intent), kb.departement)
    return {
        "intent": result.intent,
        "confidence": round(result.confidence, 4),
        "alternatives": [
            {"intent": c.intent, "confidence": round(c.confidence, 4)} for c in result.alternatives
        ],
        "decision": result.decision.value,
        "answer": answer,
        "clarify": list(result.clarify) if result.clarify else None,
    }


def report_json(result: EvalReport) -> dict[str, Any]:
    """JSON-ready view of an evaluation report.

    Args:
        result: The report.

    Returns:
        Accuracy, counts, out-of-scope precision/recall/F1 and the confusions.
    """
    return {
        "total": result.total,
        "correct": result.correct,
        "accuracy": round(result.accuracy, 4),
        "oos_precision": round(result.oos_precision, 4),
        "oos_recall": round(result.oos_recall, 4),
        "oos_f1": round(result.oos_f1, 4),
        "confusions": [
            {"expected": g, "predicted": p, "count": n} for g, p, n in result.confusions
        ],
    }


def _print_report(title: str, result: EvalReport, out: TextIO) -> None:
    print(
        f"{title}: top-1 accuracy {result.accuracy:.1%} ({result.correct}/{result.total})", file=out
    )
    print(
        f"out-of-scope: precision {result.oos_precision:.2f} recall {result.oos_recall:.2f}"
        f" F1 {result.oos_f1:.2f}",
        file=out,
    )
    if result.confusions:
        print("confusions (expected -> predicted: count):", file=out)
        for gold, predicted, count in result.confusions:
            print(f"  {gold} -> {predicted}: {count}", file=out)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="FAQ knowledge base and matcher")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="validate a knowledge-base YAML file")
    check.add_argument("file")
    kb_help = "knowledge-base YAML (default: the shipped one)"
    ask = sub.add_parser("ask", help="match one utterance, print one JSON object")
    ask.add_argument("text")
    ask.add_argument("--kb", default=str(default_knowledge_base_path()), help=kb_help)
    classify = sub.add_parser("classify", help="match stdin lines, print one JSON object each")
    classify.add_argument("--kb", default=str(default_knowledge_base_path()), help=kb_help)
    ev = sub.add_parser("eval", help="top-1 accuracy on a TSV file (intent<TAB>text)")
    ev.add_argument("file")
    ev.add_argument("--kb", default=str(default_knowledge_base_path()), help=kb_help)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--min-accuracy", type=float, default=None, help="exit 1 below this")
    ev.add_argument("--min-oos-f1", type=float, default=None, help="exit 1 below this")
    ev.add_argument(
        "--cv", type=int, default=0, help="also run K-fold cross-validation (tuning held out)"
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "callcenter faq") -> int:
    """Run the FAQ command line.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).
        prog: Program name shown in help and errors.

    Returns:
        Process exit code: 0 on success, 1 on invalid input or a missed floor, 2 on usage
        errors.
    """
    args = _parser(prog).parse_args(argv)
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
    except FaqError as exc:
        print(exc, file=sys.stderr)
        return 1
    matcher = Matcher(kb)
    if args.command == "ask":
        print(json.dumps(result_json(kb, matcher.match(args.text)), ensure_ascii=False))
        return 0
    if args.command == "classify":
        for line in sys.stdin:
            text = line.strip()
            if text:
                payload = result_json(kb, matcher.match(text))
                print(json.dumps(payload, ensure_ascii=False), flush=True)
        return 0
    try:
        with open(args.file, encoding="utf-8") as handle:
            data = read_tsv(handle)
    except (OSError, ValueError) as exc:
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    unknown = sorted({gold for gold, _ in data} - set(kb.ids))
    if unknown:
        print(f"{args.file}: unknown intent(s): {', '.join(unknown)}", file=sys.stderr)
        return 1
    result = evaluate(matcher, data)
    cv = cross_validate(kb, data, args.cv, augment=False)[0] if args.cv >= 2 else None
    if args.json:
        payload = report_json(result)
        if cv is not None:
            payload["cross_validation"] = {"folds": args.cv, **report_json(cv)}
        print(json.dumps(payload, ensure_ascii=False))
    else:
        _print_report("knowledge base only", result, sys.stdout)
        if cv is not None:
            print(file=sys.stdout)
            _print_report(
                f"{args.cv}-fold cross-validation (settings tuned on the other folds)",
                cv,
                sys.stdout,
            )
    failed = False
    if args.min_accuracy is not None and result.accuracy < args.min_accuracy:
        print(f"top-1 accuracy {result.accuracy:.4f} < {args.min_accuracy}", file=sys.stderr)
        failed = True
    if args.min_oos_f1 is not None and result.oos_f1 < args.min_oos_f1:
        print(f"out-of-scope F1 {result.oos_f1:.4f} < {args.min_oos_f1}", file=sys.stderr)
        failed = True
    return 1 if failed else 0
