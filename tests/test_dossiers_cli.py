"""``callcenter dossiers demo|list`` on a temporary SQLite store."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from callcenter.dossiers_cli import LIST_ACTOR, LIST_REASON, dossiers_main
from callcenter.store import db, demo
from callcenter.store import dossiers as repo

TODAY = "2026-12-07"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = dossiers_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_then_list_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = str(tmp_path / "var")
    code, out, err = run(
        capsys, "demo", "--count", "30", "--seed", "4", "--today", TODAY, "--data-dir", data
    )
    assert code == 0, err
    assert len(out.splitlines()) == 1
    summary = json.loads(out)
    generated = list(demo.generate(30, 4, date.fromisoformat(TODAY)))
    assert summary["usagers"] == 30 and summary["seed"] == 4 and summary["today"] == TODAY
    assert summary["demandes"] == sum(len(u.demandes) for u in generated)
    assert (tmp_path / "var" / "callcenter.sqlite3").exists()

    code, out, err = run(
        capsys, "list", "--json", "--limit", "12", "--today", TODAY, "--data-dir", data
    )
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 12
    for row, usager in zip(rows, generated, strict=False):
        assert row["usager"] == usager.usager.external_id
        born = usager.usager.date_naissance
        assert row["date_naissance"] == born.strftime("%d%m%Y")
        assert row["phone"] == repo.normalize_phone(usager.usager.phones[0])
        numeros = {d.numero: d for d in usager.demandes}
        assert row["numero"] in numeros
        assert row["numero_chiffres"] == "".join(c for c in row["numero"] if c.isdigit())
        assert row["type"] == numeros[row["numero"]].type
        assert row["statut"] == numeros[row["numero"]].statuses[-1].code
        assert {d["numero"] for d in row["demandes"]} == set(numeros)
        assert len(row["tiers"]) == len(usager.tiers)

    # Every dossier listed was read through the audited repository.
    engine = db.make_engine(f"sqlite:///{tmp_path / 'var' / 'callcenter.sqlite3'}")
    entries = [e for e in repo.audit_log(engine, actor=LIST_ACTOR) if e.reason == LIST_REASON]
    engine.dispose()
    assert len(entries) == 12 and {e.via for e in entries} == {"cli"}
    assert all(e.action == "snapshot" and e.usager_id is not None for e in entries)
    for entry in entries:
        text = json.dumps(entry.detail)
        assert not any(row["phone"] in text or row["date_naissance"] in text for row in rows)


def _without_time(line: str) -> dict[str, object]:
    return {k: v for k, v in json.loads(line).items() if k != "seconds"}


def test_demo_twice_is_idempotent_and_another_day_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "var")
    args = ("demo", "--count", "10", "--seed", "2", "--today", TODAY, "--data-dir", data)
    code, first, _ = run(capsys, *args)
    assert code == 0
    code, second, _ = run(capsys, *args)
    assert code == 0
    assert _without_time(first) == _without_time(second)
    code, out, err = run(
        capsys, "demo", "--count", "10", "--seed", "2", "--today", "2026-12-08", "--data-dir", data
    )
    assert code == 1 and out == ""
    assert "generated for 2026-12-07" in err


def test_list_prints_a_table_and_nothing_without_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "var")
    code, out, _ = run(capsys, "list", "--json", "--data-dir", data)
    assert code == 0 and json.loads(out) == []
    run(capsys, "demo", "--count", "3", "--seed", "1", "--today", TODAY, "--data-dir", data)
    code, out, _ = run(capsys, "list", "--limit", "2", "--today", TODAY, "--data-dir", data)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3
    assert lines[0].split()[:4] == ["numero", "chiffres", "naissance", "telephone"]
    assert "+331990" in lines[1]


def test_config_file_and_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "callcenter.toml"
    config.write_text(f'data_dir = "{tmp_path / "from-config"}"\n', encoding="utf-8")
    code, _, err = run(
        capsys, "demo", "--count", "2", "--seed", "1", "--today", TODAY, "--config", str(config)
    )
    assert code == 0, err
    assert (tmp_path / "from-config" / "callcenter.sqlite3").exists()

    config.write_text("nonsense = 1\n", encoding="utf-8")
    code, _, err = run(capsys, "list", "--config", str(config))
    assert code == 2 and "nonsense" in err

    with pytest.raises(SystemExit) as exc:
        dossiers_main(["demo", "--today", "07/12/2026"])
    assert exc.value.code == 2
    assert "not a date" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        dossiers_main(["demo", "--count", "-3"])
