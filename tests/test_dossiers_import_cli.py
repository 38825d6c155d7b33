"""``callcenter dossiers import``: exit codes, summary, report, NIR key, interruptions.

The interruption tests run the real command in a subprocess on a generated extract, kill it
(SIGKILL, SIGINT) once the first batches are committed, check that the store holds whole
batches only, run the command again and compare every table with an uninterrupted import into
a fresh store; on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import pty
import select as select_fd
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import OperationalError, ProgrammingError

from callcenter.dossiers_cli import REPORT_STDERR_LIMIT, dossiers_main
from callcenter.store import db, demo, importer
from callcenter.store.audit import AUDIT
from callcenter.store.dossiers import (
    DECISION,
    DEMANDE,
    PAIEMENT,
    PHONE,
    PIECE,
    RDV,
    STATUS,
    TIERS,
    USAGER,
    nir_hash,
)
from tests.store.conftest import PG_URL, _pg_conninfo, pg_skip_reason
from tests.store.test_importer import DATA, EXAMPLES, NIR, csv_files, dump

CALLCENTER = Path(sys.executable).with_name("callcenter")
TODAY = date(2025, 6, 12)
BIG = 3000
"""Usagers in the generated extract (about 57 000 records)."""
BATCH = 100


@pytest.fixture(autouse=True)
def _no_store_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process runs use the --data-dir SQLite store, whatever the caller's environment."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name in list(os.environ):
        if name.startswith("CALLCENTER_"):
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = dossiers_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------------------------
# In-process: exit codes, summary, report


def test_examples_import_with_a_json_summary_then_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "var")
    files = [str(p) for p in csv_files(EXAMPLES / "csv")]
    code, out, err = run(capsys, "import", *files, "--data-dir", data, "--json")
    assert code == 0 and err == ""
    summary = json.loads(out)
    assert (summary["rows"], summary["imported"], summary["rejected"]) == (31, 31, 0)
    assert summary["usagers"] == {"inserted": 2, "updated": 0, "unchanged": 0}
    assert summary["children_written"] == 29
    assert summary["children"]["statuts"]["inserted"] == 16
    assert [f["kind"] for f in summary["files"]] == [k.value for k in importer.Kind]
    assert {(f["encoding"], f["delimiter"]) for f in summary["files"]} == {("utf-8", ";")}
    assert summary["errors"] == [] and summary["interrupted"] is False
    assert summary["rows_per_s"] > 0 and summary["batches"] == len(importer.Kind)

    code, out, err = run(capsys, "import", str(EXAMPLES / "usagers.json"), "--data-dir", data)
    assert code == 0 and err == ""
    assert out.splitlines()[1:] == [
        "usagers: 0 inserted, 0 updated, 2 unchanged",
        "children: 0 written, 29 unchanged",
    ]


def test_rejected_rows_exit_1_and_are_printed_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "nir.key"
    key.write_bytes(b"a secret of more than sixteen bytes\n")
    monkeypatch.setenv("CALLCENTER_DOSSIERS_NIR_KEY_FILE", str(key))
    files = [str(p) for p in csv_files(DATA / "bad_csv")]
    code, out, err = run(capsys, "import", *files, "--data-dir", str(tmp_path / "var"))
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 18
    usagers_csv = DATA / "bad_csv" / "usagers.csv"
    assert lines[1] == f"{usagers_csv}:4: date_naissance: not a date (value not shown)"
    assert "27 rows read from 6 file(s)" in out and "9 imported, 18 rejected" in out
    # The NIR was hashed with the configured key, and is printed nowhere.
    engine = db.make_engine(f"sqlite:///{tmp_path / 'var' / 'callcenter.sqlite3'}")
    with engine.connect() as conn:
        stored = conn.execute(
            select(USAGER.c.nir_hash).where(USAGER.c.external_id == "B-001")
        ).scalar_one()
    engine.dispose()
    assert stored == nir_hash(NIR, key.read_bytes().strip())
    assert "2 69 05" not in out + err and "269054" not in out + err


def test_usage_errors_exit_2_and_import_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(tmp_path / "var")
    example = str(EXAMPLES / "usagers.json")
    code, _, err = run(capsys, "import", example, str(tmp_path / "absent.csv"), "--data-dir", data)
    assert code == 2 and "absent.csv: no such file" in err
    odd = tmp_path / "export.csv"
    odd.write_text("numero;code;date\n")
    code, _, err = run(capsys, "import", str(odd), "--data-dir", data)
    assert code == 2 and "cannot tell the record kind" in err
    code, _, err = run(capsys, "import", str(odd), "--kind", "statuts", "--data-dir", data)
    assert code == 0
    toml = tmp_path / "c.toml"
    toml.write_text(f'[dossiers]\nnir_key_file = "{tmp_path / "no-key"}"\n')
    code, _, err = run(capsys, "import", example, "--config", str(toml), "--data-dir", data)
    assert code == 2 and "dossiers.nir_key_file: cannot read" in err
    with pytest.raises(SystemExit) as exc:
        run(capsys, "import", example, "--batch-size", "0", "--data-dir", data)
    assert exc.value.code == 2
    engine = db.make_engine(f"sqlite:///{tmp_path / 'var' / 'callcenter.sqlite3'}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(USAGER)).scalar_one() == 0
    engine.dispose()


def test_report_file_has_every_error_and_stderr_the_first_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extract = tmp_path / "usagers.csv"
    lines = ["external_id;nom;prenom;date_naissance;commune"]
    lines += [f"P-{i};Petit;Louis;{i + 1}/13/1950;Niort" for i in range(30)]
    lines += ["P-OK;Petit;Louis;01/12/1950;Niort"]
    extract.write_text("\n".join(lines) + "\n", encoding="cp1252")
    report = tmp_path / "report.txt"
    code, out, err = run(
        capsys,
        "import",
        str(extract),
        "--report",
        str(report),
        "--data-dir",
        str(tmp_path / "var"),
        "--json",
    )
    assert code == 1
    written = report.read_text(encoding="utf-8").splitlines()
    assert written[:30] == [
        f"{extract}:{i + 2}: date_naissance: not a date (value not shown)" for i in range(30)
    ]
    assert written[30:] == [f"notice: {extract}: column(s) ignored: commune"]
    shown = err.splitlines()
    assert shown[:REPORT_STDERR_LIMIT] == written[:REPORT_STDERR_LIMIT]
    assert shown[REPORT_STDERR_LIMIT] == f"... 10 more error(s) in {report}"
    summary = json.loads(out)
    assert (summary["rows"], summary["rejected"], summary["errors_total"]) == (31, 30, 30)
    assert summary["errors"][0] == {
        "file": str(extract),
        "line": 2,
        "field": "date_naissance",
        "message": "not a date (value not shown)",
    }


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    files = [str(p) for p in csv_files(EXAMPLES / "csv")]
    proc = subprocess.Popen(
        [str(CALLCENTER), "dossiers", "import", *files, "--data-dir", str(tmp_path / "var")],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "DATABASE_URL": ""},
    )
    os.close(slave)
    seen = b""
    while True:
        ready, _, _ = select_fd.select([master], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=30)
    os.close(master)
    assert proc.returncode == 0, seen
    assert b"\rimport [" in seen and b"] 100% 31 rows" in seen
    assert b"31 rows read" in out


# --------------------------------------------------------------------------------------------
# Interrupted imports, in a subprocess, on SQLite and PostgreSQL


@pytest.fixture(scope="module")
def big_extract(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[demo.DemoUsager]]:
    bundles = list(demo.generate(BIG, 11, TODAY))
    path = tmp_path_factory.mktemp("extract") / "usagers.jsonl"
    importer.write_jsonl(path, bundles)
    return path, bundles


class Store:
    """A store for the subprocess: its environment and an engine for the test to look."""

    def __init__(self, url: str, data_dir: Path) -> None:
        self.url = url
        self.data_dir = data_dir
        self.engine = db.make_engine(url)
        db.create_schema(self.engine)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCENTER_")}
        env["DATABASE_URL"] = "" if self.url.startswith("sqlite") else self.url
        return env

    def command(self, path: Path) -> list[str]:
        return [
            str(CALLCENTER),
            "dossiers",
            "import",
            str(path),
            "--batch-size",
            str(BATCH),
            "--data-dir",
            str(self.data_dir),
            "--json",
        ]

    def usagers(self) -> int:
        with self.engine.connect() as conn:
            n: int = conn.execute(select(func.count()).select_from(USAGER)).scalar_one()
        return n


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    """Two empty stores of one backend: one to interrupt, one for the uninterrupted import."""
    if request.param == "sqlite":
        pair = tuple(
            Store(f"sqlite:///{tmp_path / name / 'callcenter.sqlite3'}", tmp_path / name)
            for name in ("a", "b")
        )
        yield pair[0], pair[1]
        for store in pair:
            store.engine.dispose()
        return
    reason = pg_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    schemas = [f"test_import_{uuid.uuid4().hex[:10]}" for _ in range(2)]
    with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    stores = [
        Store(f"{PG_URL}{sep}options=-csearch_path%3D{schema}", tmp_path / schema)
        for schema in schemas
    ]
    try:
        yield stores[0], stores[1]
    finally:
        for store in stores:
            store.engine.dispose()
        with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _start_and_stop(store: Store, path: Path, sig: signal.Signals) -> tuple[int, str, str]:
    """Start the import, wait for its first committed batch, send ``sig``.

    Returns:
        The exit status, stdout and stderr of the import.
    """
    proc = subprocess.Popen(
        store.command(path),
        env=store.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                if store.usagers() > 0:
                    break
            except (OperationalError, ProgrammingError):  # pragma: no cover - schema racing
                pass
            if proc.poll() is not None:
                pytest.fail(f"the import ended before the test stopped it: {proc.communicate()}")
            assert time.monotonic() < deadline, "no batch committed in 90 s"
            time.sleep(0.005)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # pragma: no cover - only if the test failed above
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


def _children_per_usager(engine: Engine) -> dict[str, Counter[str]]:
    """Per usager external_id: how many rows of each child table the store holds."""
    found: dict[str, Counter[str]] = {}
    with engine.connect() as conn:
        ext = dict(conn.execute(select(USAGER.c.id, USAGER.c.external_id)).all())
        for uid in ext.values():
            found[uid] = Counter()
        by_usager = ((TIERS, "tiers"), (PHONE, "phones"), (DEMANDE, "demandes"), (RDV, "rdv"))
        for table, name in (*by_usager, (PAIEMENT, "paiements")):
            for usager, n in conn.execute(
                select(table.c.usager_id, func.count()).group_by(table.c.usager_id)
            ):
                found[ext[usager]][name] = n
        for table, name in ((STATUS, "statuses"), (PIECE, "pieces"), (DECISION, "decisions")):
            for usager, n in conn.execute(
                select(DEMANDE.c.usager_id, func.count())
                .select_from(table.join(DEMANDE, DEMANDE.c.id == table.c.demande_id))
                .group_by(DEMANDE.c.usager_id)
            ):
                found[ext[usager]][name] = n
    return found


def _expected_children(bundle: demo.DemoUsager) -> Counter[str]:
    wanted = Counter(
        {
            "tiers": len(bundle.tiers),
            "phones": len(bundle.usager.phones) + sum(len(t.phones) for t in bundle.tiers),
            "demandes": len(bundle.demandes),
            "rdv": len(bundle.rendez_vous),
            "paiements": len(bundle.paiements),
            "statuses": sum(len(d.statuses) for d in bundle.demandes),
            "pieces": sum(len(d.pieces) for d in bundle.demandes),
            "decisions": sum(len(d.decisions) for d in bundle.demandes),
        }
    )
    return +wanted  # drop the zeros, as the store's counts have none


def _check_whole_batches(store: Store, bundles: list[demo.DemoUsager]) -> int:
    committed = store.usagers()
    assert 0 < committed < BIG, "the import was not stopped half-way"
    assert committed % BATCH == 0, f"{committed} usagers: not whole batches of {BATCH}"
    children = _children_per_usager(store.engine)
    # Exactly the first batches of the file, each usager with all its children.
    assert set(children) == {b.usager.external_id for b in bundles[:committed]}
    for bundle in bundles[:committed]:
        assert children[bundle.usager.external_id] == _expected_children(bundle)
    return committed


def _audit_statuses(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        details = conn.execute(
            select(AUDIT.c.detail).where(AUDIT.c.action == "import").order_by(AUDIT.c.id)
        ).scalars()
        return [d["status"] for d in details]


@pytest.mark.timeout(300)
def test_killed_import_leaves_whole_batches_and_a_rerun_completes_it(
    stores: tuple[Store, Store], big_extract: tuple[Path, list[demo.DemoUsager]]
) -> None:
    killed, fresh = stores
    path, bundles = big_extract
    code, _, _ = _start_and_stop(killed, path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    committed = _check_whole_batches(killed, bundles)
    assert _audit_statuses(killed.engine) == ["running"]  # the killed run is on record

    rerun = subprocess.run(
        killed.command(path), env=killed.env(), capture_output=True, text=True, timeout=240
    )
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["usagers"] == {
        "inserted": BIG - committed,
        "updated": 0,
        "unchanged": committed,
    }
    assert summary["rejected"] == 0

    whole = subprocess.run(
        fresh.command(path), env=fresh.env(), capture_output=True, text=True, timeout=240
    )
    assert whole.returncode == 0, whole.stderr
    assert json.loads(whole.stdout)["usagers"]["inserted"] == BIG
    expected = dump(fresh.engine)
    assert len(expected["usager"]) == BIG
    assert dump(killed.engine) == expected
    assert _audit_statuses(killed.engine) == ["running", "done"]


@pytest.mark.timeout(300)
def test_ctrl_c_stops_after_the_running_batch_and_says_so(
    stores: tuple[Store, Store], big_extract: tuple[Path, list[demo.DemoUsager]]
) -> None:
    store, _ = stores
    path, bundles = big_extract
    code, out, err = _start_and_stop(store, path, signal.SIGINT)
    assert code == 130, err
    committed = _check_whole_batches(store, bundles)
    summary = json.loads(out)
    assert summary["interrupted"] is True and summary["failure"] is None
    assert summary["usagers"]["inserted"] == committed
    assert summary["batches"] == committed // BATCH
    assert _audit_statuses(store.engine) == ["interrupted"]
