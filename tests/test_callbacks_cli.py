"""``callcenter callbacks list|cancel`` on a real SQLite store: numbers masked, one cancel."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from callcenter.cli import main
from callcenter.store import callbacks as store
from callcenter.store import db
from routing import QueuedCall
from routing import callbacks as rules


def test_list_masks_numbers_and_cancel(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "var"
    data.mkdir()
    engine = db.make_engine(f"sqlite:///{data / 'callcenter.sqlite3'}")
    db.create_schema(engine)
    call = QueuedCall("sip-1", "apa", joined_at=1_800_000_000.0)
    kept = dataclasses.replace(rules.keep_place(call, 1_800_000_060.0), id="abc123")
    store.create(engine, kept, phone="+33612345678", queue_call_id="sip-1")
    engine.dispose()

    assert main(["callbacks", "list", "--json", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    (row,) = json.loads(out)
    assert row["id"] == "abc123" and row["status"] == "queued" and row["mode"] == "keep_place"
    assert row["phone"].endswith("78") and "612345" not in out
    assert main(["callbacks", "list", "--data-dir", str(data)]) == 0
    text = capsys.readouterr().out
    assert "abc123" in text and "612345" not in text

    assert (
        main(["callbacks", "cancel", "abc123", "--reason", "doublon", "--data-dir", str(data)]) == 0
    )
    assert "abc123: cancelled" in capsys.readouterr().out
    assert main(["callbacks", "cancel", "abc123", "--reason", "x", "--data-dir", str(data)]) == 1
    assert "already ended (cancelled)" in capsys.readouterr().err
    assert main(["callbacks", "list", "--json", "--data-dir", str(data)]) == 0
    assert json.loads(capsys.readouterr().out) == []  # only open ones by default
    assert main(["callbacks", "list", "--all", "--json", "--data-dir", str(data)]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "cancelled" and row["cancel_reason"] == "doublon"
