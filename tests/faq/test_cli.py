from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from faq.cli import main
from tests.faq.conftest import DEV_TSV

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ask_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["ask", "quels sont vos horaires d'ouverture"], capsys)
    assert code == 0
    payload = json.loads(out)
    assert set(payload) == {"intent", "confidence", "alternatives", "decision", "answer", "clarify"}
    assert payload["intent"] == "horaires_coordonnees"
    assert payload["decision"] == "answer"
    assert "{" not in payload["answer"] and "lundi" in payload["answer"]
    assert all(set(alt) == {"intent", "confidence"} for alt in payload["alternatives"])


def test_ask_dossier_intent_has_no_answer(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["ask", "où en est mon dossier d'a p a"], capsys)
    payload = json.loads(out)
    assert payload["intent"] == "suivi_dossier_apa" and payload["answer"] is None


def test_ask_distress_hands_over_with_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["ask", "je veux en finir"], capsys)
    payload = json.loads(out)
    assert payload["decision"] == "handover"
    assert "31 14" in payload["answer"]


def test_classify_reads_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("la m d p h\n\nje voudrais un passeport\n"))
    code, out, _ = run(["classify"], capsys)
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(lines) == 2
    assert lines[1]["intent"] == "hors_sujet" and lines[1]["decision"] == "menu"


def test_eval_json_and_floors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["eval", str(DEV_TSV), "--json", "--min-accuracy", "0.5"], capsys)
    payload = json.loads(out)
    assert code == 0 and payload["total"] == 205
    assert 0.5 <= payload["accuracy"] <= 1.0 and "oos_f1" in payload
    code, _, err = run(["eval", str(DEV_TSV), "--min-accuracy", "1.01"], capsys)
    assert code == 1 and "top-1 accuracy" in err
    code, _, err = run(["eval", str(DEV_TSV), "--min-oos-f1", "1.01"], capsys)
    assert code == 1 and "out-of-scope F1" in err


def test_eval_text_with_cross_validation(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["eval", str(DEV_TSV), "--cv", "3"], capsys)
    assert code == 0
    assert "knowledge base only: top-1 accuracy" in out
    assert "3-fold cross-validation" in out


def test_eval_rejects_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("no tab here\n", encoding="utf-8")
    assert run(["eval", str(bad)], capsys)[0] == 1
    bad.write_text("intent_inconnu\tbonjour\n", encoding="utf-8")
    code, _, err = run(["eval", str(bad)], capsys)
    assert code == 1 and "intent_inconnu" in err


def test_check_reports_file_line_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "kb.yaml"
    bad.write_text("skills: {}\nintents: []\n", encoding="utf-8")
    code, _, err = run(["check", str(bad)], capsys)
    assert code == 1 and err.startswith(f"{bad}:2:")
    code, out, _ = run(["check", str(ROOT / "faq" / "solidarites.yaml")], capsys)
    assert code == 0 and "45 intents" in out


def test_python_dash_m_faq() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "faq", "ask", "la c m i"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout)["intent"] == "demande_cmi"
