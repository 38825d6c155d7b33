"""The blind set: 265 caller utterances written without seeing the matcher or its knowledge base.

Nobody tunes on it (helpers working on the matcher are told never to open it); this test only
keeps its figures from silently getting worse. Measured when it was added: top-1 77.0 %,
out-of-scope F1 0.73 (docs/benchmarks.md). The issue's targets (90 % / 0.8) are not met yet.
"""

from __future__ import annotations

from pathlib import Path

from faq.evaluate import evaluate
from faq.loader import default_knowledge_base_path, load_knowledge_base
from faq.matcher import Matcher, read_tsv

HOLDOUT = Path(__file__).parent / "data" / "holdout.tsv"
CRITICAL = ("urgence_detresse_suicidaire", "maltraitance")


def test_blind_set_does_not_regress() -> None:
    kb = load_knowledge_base(default_knowledge_base_path())
    matcher = Matcher(kb)
    data = read_tsv(HOLDOUT.read_text(encoding="utf-8").splitlines())
    assert len(data) == 265
    report = evaluate(matcher, data)
    assert report.accuracy >= 0.75, report.confusions
    assert report.oos_f1 >= 0.70, (report.oos_precision, report.oos_recall)
    # Distress and abuse are never taken for an out-of-scope question.
    missed = [
        (gold, matcher.match(text).intent)
        for gold, text in data
        if gold in CRITICAL and matcher.match(text).intent == "hors_sujet"
    ]
    assert missed == []
