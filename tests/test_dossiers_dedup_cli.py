"""``callcenter dossiers duplicates|merge`` on a temporary SQLite store."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine

from callcenter import dossiers_cli
from callcenter.cli import common_options
from callcenter.dossiers_dedup_cli import (
    COMMANDS,
    DUPLICATES_REASON,
    MERGE_PREVIEW_REASON,
    add_commands,
    run,
)
from callcenter.store import db, dedup_seed
from callcenter.store import dossiers as repo
from callcenter.store.duplicates import scan_people
from callcenter.store.merge import resolve_usager

TODAY = date(2026, 1, 15)
SHOWN_FIELDS = {"id", "external_id", "nom", "prenom", "nom_naissance", "date_naissance"}


def parser() -> argparse.ArgumentParser:
    """``callcenter dossiers`` with only this module's commands (as the lead hooks them)."""
    top = argparse.ArgumentParser(prog="callcenter dossiers")
    sub = top.add_subparsers(dest="command", required=True)
    add_commands(sub, common_options())
    return top


class Store:
    """A data dir with a seeded set written through the repository."""

    def __init__(self, root: Path) -> None:
        self.data = str(root / "var")
        self.seeded = dedup_seed.seeded_set(80, 4, TODAY, duplicates=8, negatives=3)
        self.engine = db.make_engine(db.default_database_url(root / "var"))
        db.create_schema(self.engine)
        self.ids: dict[str, int] = {}
        with self.engine.begin() as conn:
            for record in self.seeded.usagers:
                self.ids[record.external_id] = repo.upsert_usager(conn, record)

    def cli(
        self, *argv: str, confirm: bool | None = None, tty: bool = True
    ) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()

        def ask(question: str) -> bool:
            if not tty:
                raise EOFError
            assert question.startswith("Merge #")
            return bool(confirm)

        args = parser().parse_args([*argv, "--data-dir", self.data])
        code = run(args, stdout=out, stderr=err, confirm=ask)
        return code, out.getvalue(), err.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path)
    try:
        yield s
    finally:
        s.engine.dispose()


def _audit(engine: Engine, actor: str) -> list[repo.AuditEntry]:
    return repo.audit_log(engine, actor=actor, limit=1000)


def test_duplicates_json_lists_the_library_pairs_with_the_minimum_shown(store: Store) -> None:
    code, out, err = store.cli("duplicates", "--json", "--actor", "agent7")
    assert code == 0, err
    body = json.loads(out)
    people = list(dedup_seed.people(store.seeded.usagers))
    ext = {p.usager_id: e for e, p in people}
    expected = [
        (p.score, {ext[p.first_id], ext[p.second_id]})
        for p in scan_people([p for _, p in people]).pairs
    ]
    got = [(p["score"], {u["external_id"] for u in p["usagers"]}) for p in body["pairs"]]
    assert got == expected and len(got) >= 8
    assert body["total"] == len(expected) and body["min_score"] == 70
    for pair in body["pairs"]:
        assert all(set(u) == SHOWN_FIELDS for u in pair["usagers"])
        assert pair["reasons"] and {"signal", "points"} == set(pair["reasons"][0])
        assert pair["score"] == max(0, min(100, sum(r["points"] for r in pair["reasons"])))
    truth = {frozenset((p.first, p.second)) for p in store.seeded.duplicates}
    assert truth <= {frozenset(ids) for _, ids in got}
    # Audited: the scan, then every usager shown.
    entries = _audit(store.engine, "agent7")
    shown = {u["id"] for p in body["pairs"] for u in p["usagers"]}
    assert {e.usager_id for e in entries if e.action == "duplicates"} == shown
    assert [e.action for e in entries].count("duplicates_scan") == 1
    assert {e.reason for e in entries} == {DUPLICATES_REASON} and {e.via for e in entries} == {
        "cli"
    }


def test_duplicates_limit_and_table(store: Store) -> None:
    code, out, _ = store.cli("duplicates", "--limit", "2", "--actor", "agent8")
    assert code == 0
    lines = out.splitlines()
    assert lines[-1].endswith(", 2 shown") and "pair(s) scoring 70 or more" in lines[-1]
    assert len(lines) == 2 * 3 + 1  # three lines a pair, then the summary
    assert lines[0][:3].strip().isdigit() and "#" in lines[0] and "/" in lines[0]
    shown = {e.usager_id for e in _audit(store.engine, "agent8") if e.action == "duplicates"}
    assert len(shown) == 4
    code, out, _ = store.cli("duplicates", "--min-score", "100", "--json")
    assert code == 0 and all(p["score"] == 100 for p in json.loads(out)["pairs"])


def test_bad_options_are_usage_errors(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["duplicates", "--min-score", "101"],
        ["duplicates", "--limit", "0"],
        ["merge", "1", "2"],  # --reason is required
        ["merge", "one", "2", "--reason", "x"],
    ):
        with pytest.raises(SystemExit) as exc:
            parser().parse_args(argv)
        assert exc.value.code == 2
    assert "--reason" in capsys.readouterr().err
    assert COMMANDS == {"duplicates", "merge"}


def test_merge_with_yes_then_refusals(store: Store) -> None:
    pair = store.seeded.duplicates[0]
    keep, merged = store.ids[pair.first], store.ids[pair.second]
    code, out, err = store.cli(
        "merge", str(keep), str(merged), "--reason", "ticket 12", "--yes", "--actor", "agent7"
    )
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["kept_id"], summary["merged_id"]) == (keep, merged)
    assert set(summary["moved"]) == {
        "tiers", "usager_phone", "demande", "rendez_vous", "paiement", "contact", "tombstone"
    }  # fmt: skip
    assert resolve_usager(store.engine, merged) == keep
    code, _, err = store.cli("merge", str(keep), str(merged), "--reason", "again", "--yes")
    assert code == 1 and f"usager {merged} was already merged into {keep}" in err
    code, _, err = store.cli("merge", str(merged), str(keep), "--reason", "back", "--yes")
    assert code == 1 and f"merge into {keep} instead" in err
    code, _, err = store.cli("merge", str(keep), str(keep), "--reason", "self", "--yes")
    assert code == 1 and "cannot be merged into itself" in err
    code, _, err = store.cli("merge", str(keep), "999999", "--reason", "x", "--yes")
    assert code == 1 and "no usager 999999" in err
    code, _, err = store.cli("merge", str(keep), str(merged), "--reason", "  ", "--yes")
    assert code == 2 and "--reason" in err


def test_merge_asks_first_and_shows_the_pair(store: Store) -> None:
    pair = store.seeded.duplicates[1]
    keep, merged = store.ids[pair.first], store.ids[pair.second]
    argv = ("merge", str(keep), str(merged), "--reason", "ticket 13", "--actor", "agent9")
    code, out, err = store.cli(*argv, confirm=False)
    assert code == 1 and "not merged" in err
    assert f"#{keep} " in out.splitlines()[0] and f"#{merged} " in out.splitlines()[1]
    assert resolve_usager(store.engine, merged) == merged
    previews = [e for e in _audit(store.engine, "agent9") if e.reason == MERGE_PREVIEW_REASON]
    assert {e.usager_id for e in previews} == {keep, merged}
    code, _, err = store.cli(*argv, tty=False)
    assert code == 2 and "pass --yes" in err
    assert resolve_usager(store.engine, merged) == merged
    code, out, err = store.cli(*argv, confirm=True)
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["merged_id"] == merged
    assert resolve_usager(store.engine, merged) == keep
    code, _, err = store.cli(*argv, confirm=True)
    assert code == 1 and "must both exist" in err


def _hooked() -> bool:
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            dossiers_cli.build_parser().parse_args(["duplicates", "--json"])
    except SystemExit:
        return False
    return True


@pytest.mark.skipif(not _hooked(), reason="not hooked into callcenter dossiers yet")
def test_through_callcenter_dossiers(store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    code = dossiers_cli.dossiers_main(["duplicates", "--json", "--data-dir", store.data])
    out = capsys.readouterr().out
    assert code == 0 and json.loads(out)["pairs"]
    pair = store.seeded.duplicates[2]
    keep, merged = store.ids[pair.first], store.ids[pair.second]
    argv = ["merge", str(keep), str(merged), "--reason", "r", "--yes", "--data-dir", store.data]
    assert dossiers_cli.dossiers_main(argv) == 0
    assert resolve_usager(store.engine, merged) == keep
