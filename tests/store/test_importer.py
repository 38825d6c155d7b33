"""Import of back-office extracts (``callcenter/store/importer.py``) on SQLite and PostgreSQL.

The documented examples (``docs/examples/import``) are imported and read back through the
repository; the bad-row files of ``tests/data/import`` check every kind of error with its file,
line and field; re-imports, modified imports, NIR handling, database errors inside a batch, CSV
variants (delimiters, BOM, cp1252, decimal comma) and dry runs are checked against the store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict

import pytest
from sqlalchemy import Engine, func, select, text

from callcenter.store import db, demo, importer
from callcenter.store.audit import AUDIT, as_utc
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
    Role,
    Via,
    dossier_snapshot,
    find_by_phone,
    nir_hash,
    normalize_phone,
    verify_birth_date,
)
from callcenter.store.importer import ImportSummary, Kind, RowError, plan_files, run_import

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples" / "import"
DATA = ROOT / "tests" / "data" / "import"
DOC = ROOT / "docs" / "import-format.md"
KEY = b"import-test-key-0123456789"
NIR = "2 69 05 49 588 157 80"
"""The example NIR of the French Wikipedia article (valid key 80)."""


class Access(TypedDict):
    actor: str
    reason: str
    via: Via


READER = Access(actor="test", reason="import check", via=Via.CLI)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    db.create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def run(
    engine: Engine, *paths: Path, key: bytes | None = KEY, **kwargs: Any
) -> tuple[ImportSummary, list[str]]:
    errors: list[RowError] = []
    summary = run_import(
        engine, plan_files(list(paths)), nir_key=key, on_error=errors.append, **kwargs
    )
    return summary, [str(e) for e in errors]


def csv_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.csv"))


def dump(engine: Engine, *, timestamps: bool = False) -> dict[str, list[str]]:
    """Every dossier table, rows as sorted text, ids replaced by the natural keys they stand for.

    Surrogate ids differ between runs (PostgreSQL sequences are not rolled back), so a usager
    is named by its external_id, a tiers by (usager, external_id), a demande by its numéro.
    """
    out: dict[str, list[str]] = {}
    with engine.connect() as conn:
        usagers = dict(conn.execute(select(USAGER.c.id, USAGER.c.external_id)).all())
        tiers = {
            r.id: (usagers[r.usager_id], r.external_id)
            for r in conn.execute(select(TIERS.c.id, TIERS.c.usager_id, TIERS.c.external_id))
        }
        demandes = dict(conn.execute(select(DEMANDE.c.id, DEMANDE.c.numero)).all())
        for table in (USAGER, TIERS, PHONE, DEMANDE, STATUS, PIECE, DECISION, RDV, PAIEMENT):
            rows = []
            for mapping in conn.execute(select(table)).mappings():
                row = dict(mapping)
                row.pop("id")
                if not timestamps:
                    row.pop("created_at", None)
                    row.pop("updated_at", None)
                for name, ids in (
                    ("usager_id", usagers),
                    ("tiers_id", tiers),
                    ("demande_id", demandes),
                ):
                    if name in row:
                        row[name] = ids.get(row[name])
                row = {k: as_utc(v) if isinstance(v, datetime) else v for k, v in row.items()}
                rows.append(repr(sorted(row.items())))
            out[table.name] = sorted(rows)
    return out


def cents(value: Any) -> int | None:
    """The test's own reading of a JSON amount in euros."""
    if value is None:
        return None
    return int(Decimal(str(value)) * 100)


def iso(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)


def usager_id(engine: Engine, external_id: str) -> int:
    with engine.connect() as conn:
        found: int = conn.execute(
            select(USAGER.c.id).where(USAGER.c.external_id == external_id)
        ).scalar_one()
    return found


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        n: int = conn.execute(select(func.count()).select_from(table)).scalar_one()
    return n


# --------------------------------------------------------------------------------------------
# The documented examples


def test_the_doc_shows_every_example_file_verbatim() -> None:
    doc = DOC.read_text(encoding="utf-8")
    files = sorted(EXAMPLES.rglob("*.*"))
    assert {f.suffix for f in files} == {".json", ".jsonl", ".csv"}
    assert len(files) == 2 + len(Kind)
    for path in files:
        lang = "csv" if path.suffix == ".csv" else "json"
        block = f"`{path.relative_to(ROOT)}`:\n\n```{lang}\n{path.read_text(encoding='utf-8')}```"
        assert block in doc, f"{path.name} differs from its copy in {DOC.name}"


def test_documented_json_example_reads_back_as_the_file_says(engine: Engine) -> None:
    summary, errors = run(engine, EXAMPLES / "usagers.json")
    assert errors == [] and summary.rejected == 0 and summary.notices == ()
    people = json.loads((EXAMPLES / "usagers.json").read_text(encoding="utf-8"))
    assert summary.rows == len(people) == summary.counts["usagers"]["inserted"]

    for person in people:
        uid = usager_id(engine, person["external_id"])
        born = date.fromisoformat(person["date_naissance"])
        assert verify_birth_date(engine, uid, born, **READER)
        for raw in person.get("phones", []):
            refs = find_by_phone(engine, raw, **READER)
            assert [(r.usager_id, r.role) for r in refs] == [(uid, Role.USAGER)]
        for tiers in person.get("tiers", []):
            for raw in tiers["phones"]:
                (ref,) = find_by_phone(engine, raw, **READER)
                assert ref.usager_id == uid and ref.role.value == tiers["role"]
                if "may_know" in tiers:
                    assert sorted(t.value for t in ref.may_know) == sorted(tiers["may_know"])

        # Early in 2025: every rendez-vous is still to come.
        early = dossier_snapshot(engine, uid, role=Role.AGENT, today=date(2025, 1, 1), **READER)
        assert early is not None
        assert (early.civilite, early.nom, early.prenom) == (
            person["civilite"],
            person["nom"],
            person["prenom"],
        )
        assert early.langue == person.get("langue", "fr")
        assert list(early.besoins) == person["besoins"]
        assert early.mesure_protection == person["mesure_protection"]
        wanted_rdv = sorted(
            (
                r["type"],
                datetime.fromisoformat(r["debut"]).astimezone(UTC),
                r["lieu"],
                r["numero"],
            )
            for r in person["rendez_vous"]
        )
        assert early.appointments is not None
        assert sorted((a.type, a.debut, a.lieu, a.numero) for a in early.appointments) == (
            wanted_rdv
        )

        # End of 2025: every payment is in the past.
        late = dossier_snapshot(engine, uid, role=Role.AGENT, today=date(2025, 12, 31), **READER)
        assert late is not None and late.demandes is not None
        assert {d.numero for d in late.demandes} == {d["numero"] for d in person["demandes"]}
        for wanted in person["demandes"]:
            (got,) = [d for d in late.demandes if d.numero == wanted["numero"]]
            assert got.type == wanted["type"]
            assert got.date_depot == iso(wanted.get("date_depot"))
            assert got.date_recevabilite == iso(wanted.get("date_recevabilite"))
            assert got.date_limite_legale == iso(wanted.get("date_limite_legale"))
            history = sorted(wanted["statuses"], key=lambda s: s["date"])
            assert [(s.code, s.date, s.detail) for s in got.history] == [
                (s["code"], date.fromisoformat(s["date"]), s.get("detail")) for s in history
            ]
            assert got.status is not None and got.status.code == history[-1]["code"]
            missing = [p for p in wanted.get("pieces", []) if p.get("date_recue") is None]
            assert got.missing_documents is not None
            assert [(m.piece, m.date_demande, m.date_relance) for m in got.missing_documents] == [
                (p["piece"], iso(p["date_demande"]), iso(p.get("date_relance"))) for p in missing
            ]
            assert got.decisions is not None
            assert [
                (
                    d.prestation,
                    d.sens,
                    d.date_decision,
                    d.date_notification,
                    d.date_debut,
                    d.date_fin,
                    d.montant_cents,
                    d.gir,
                    d.taux_participation,
                    d.recours_jusqu_au,
                )
                for d in got.decisions
            ] == [
                (
                    d["prestation"],
                    d["sens"],
                    iso(d["date_decision"]),
                    iso(d["date_notification"]),
                    iso(d["date_debut"]),
                    iso(d["date_fin"]),
                    cents(d["montant"]),
                    d["gir"],
                    d["taux_participation"],
                    iso(d["recours_jusqu_au"]),
                )
                for d in wanted.get("decisions", [])
            ]
        assert late.recent_payments is not None
        assert sorted(
            (
                p.prestation,
                p.periode,
                p.date_paiement,
                p.montant_brut_cents,
                p.participation_cents,
                p.montant_verse_cents,
                p.mode,
                p.statut,
                p.motif_ecart,
                p.iban_last4,
            )
            for p in late.recent_payments
        ) == sorted(
            (
                p["prestation"],
                date.fromisoformat(p["periode"] + "-01"),
                date.fromisoformat(p["date_paiement"]),
                cents(p["montant_brut"]),
                cents(p["participation"]),
                cents(p["montant_verse"]),
                p["mode"],
                p["statut"],
                p["motif_ecart"],
                p["iban_last4"],
            )
            for p in person.get("paiements", [])
        )


def test_documented_jsonl_and_csv_examples_hold_the_same_dossiers(database_url: str) -> None:
    # The JSON example imported alone is the reference; the others must store the same rows.
    dumps = []
    for index, paths in enumerate(
        [
            [EXAMPLES / "usagers.json"],
            [EXAMPLES / "usagers.jsonl"],
            list(reversed(csv_files(EXAMPLES / "csv"))),  # given children first: still applied
        ]
    ):
        url = database_url
        if url.startswith("sqlite"):
            url = url.replace("callcenter.sqlite3", f"example{index}.sqlite3")
        engine = db.make_engine(url)
        db.create_schema(engine)
        try:
            with engine.begin() as conn:  # PostgreSQL: one schema, emptied between formats
                for table in (PAIEMENT, RDV, DECISION, PIECE, STATUS, DEMANDE, PHONE, TIERS):
                    conn.execute(table.delete())
                conn.execute(USAGER.delete())
            summary, errors = run(engine, *paths)
            assert errors == [] and summary.rejected == 0
            dumps.append(dump(engine))
        finally:
            engine.dispose()
    assert dumps[0]["usager"] and dumps[0]["paiement"]
    assert dumps[1] == dumps[0]
    assert dumps[2] == dumps[0]


# --------------------------------------------------------------------------------------------
# Bad rows


BAD_CSV_ERRORS = [
    "usagers.csv:3: nom: required",
    "usagers.csv:4: date_naissance: not a date (value not shown)",
    "usagers.csv:5: nir: the key does not match the NIR (mod 97 check failed)",
    "usagers.csv:6: phones: item 2 is not a valid phone number",
    "usagers.csv:7: besoins: unknown need 'sourd' (expected one of malentendant, lsf, langue, "
    "illettrisme)",
    # Same NIR as line 2 in the same batch: the database refuses it, the batch is replayed row
    # by row, and only this row is rejected.
    "usagers.csv:9: nir: already recorded for another usager",
    # "Le;Goff" unquoted: the later values would shift into the wrong columns.
    "usagers.csv:10: row: 9 cells, the header has 8",
    "tiers.csv:3: usager: unknown usager 'B-404'",
    "tiers.csv:4: role: unknown role 'voisin' (expected one of aidant, mandataire_judiciaire, "
    "travailleur_social, famille)",
    "demandes.csv:3: numero: APA-2025-90001 belongs to another usager",
    "demandes.csv:5: type: unknown type 'APA_MAISON' (expected one of APA_DOMICILE, APA_ETAB, "
    "APA_URGENCE, PCH, AAH, AEEH, CMI_INV, CMI_PRIO, CMI_STAT, RQTH, ORIENT_ESMS, ASH, "
    "AIDE_MENAGERE, TELEASSISTANCE, REVISION, RAPO)",
    "statuts.csv:3: code: 'RECEVABLE' is not a status of the departement circuit "
    "(demande APA-2025-90001, type APA_DOMICILE)",
    "statuts.csv:5: numero: unknown demande 'APA-2025-99999'",
    "statuts.csv:6: date: required",
    "rendez_vous.csv:3: debut: not a date and time: '15/04/2025'",
    "paiements.csv:3: montant_brut: not an amount in euros: 'douze'",
    "paiements.csv:4: numero: APA-2025-90001 belongs to another usager",
    "paiements.csv:5: iban_last4: at most the last four characters of the IBAN",
]


def _strip_dir(errors: Sequence[str]) -> list[str]:
    """The errors with the file's name only (``usagers.csv:3: ...``)."""
    return [re.sub(r"^\S*/(?=[^/\s]+:\d+: )", "", e) for e in errors]


def test_bad_csv_rows_are_reported_with_file_line_field_and_good_rows_land(
    engine: Engine,
) -> None:
    summary, errors = run(engine, *csv_files(DATA / "bad_csv"), batch_size=50)
    assert _strip_dir(errors) == BAD_CSV_ERRORS
    assert (summary.rows, summary.rejected, summary.imported) == (27, 18, 9)
    assert summary.errors_total == len(BAD_CSV_ERRORS)
    # Never a NIR, a phone number or an IBAN in a message.
    text_out = "\n".join(errors + list(summary.notices))
    secrets = ("269054958815781", "2 69 05 49 588 157 8", "06 12", "FR76", "0199", "01 99")
    names = ("Lefèvre", "Hélène", "Roux", "André", "Goff", "Anne", "31/02/1950", "05/05/1940")
    for secret in (*secrets, *names):
        assert secret not in text_out

    with engine.connect() as conn:
        assert set(conn.execute(select(USAGER.c.external_id)).scalars()) == {"B-001", "B-007"}
        hashes = dict(conn.execute(select(USAGER.c.external_id, USAGER.c.nir_hash)).all())
        assert hashes == {"B-001": nir_hash(NIR, KEY), "B-007": None}
        assert set(conn.execute(select(TIERS.c.external_id)).scalars()) == {"B-001-T1"}
        owners = dict(
            conn.execute(
                select(DEMANDE.c.numero, USAGER.c.external_id).join(
                    USAGER, USAGER.c.id == DEMANDE.c.usager_id
                )
            ).all()
        )
        assert owners == {"APA-2025-90001": "B-001", "MDPH-2025-90002": "B-007"}
        statuses = conn.execute(
            select(DEMANDE.c.numero, STATUS.c.code)
            .join(DEMANDE, DEMANDE.c.id == STATUS.c.demande_id)
            .order_by(DEMANDE.c.numero)
        ).all()
        assert [tuple(s) for s in statuses] == [
            ("APA-2025-90001", "RECU"),
            ("MDPH-2025-90002", "DEPOSEE"),
        ]
        assert conn.execute(select(PAIEMENT.c.montant_brut_cents)).scalars().all() == [81240]
        assert conn.execute(select(func.count()).select_from(RDV)).scalar_one() == 1
        phones = set(conn.execute(select(PHONE.c.e164)).scalars())
    assert phones == {
        normalize_phone(p) for p in ("01 99 00 10 01", "01 99 00 10 07", "01 99 00 20 01")
    }

    # The same file again: the same rejections (the numéro is now another usager's in the
    # store), the good rows unchanged.
    again, errors_again = run(engine, *csv_files(DATA / "bad_csv"), batch_size=50)
    assert _strip_dir(errors_again) == BAD_CSV_ERRORS
    assert again.counts["usagers"] == {"inserted": 0, "updated": 0, "unchanged": 2}
    assert again.children_written == 0


def test_without_a_nir_key_a_nir_is_a_row_error(engine: Engine) -> None:
    summary, errors = run(engine, DATA / "bad_csv" / "usagers.csv", key=None)
    no_key = "nir: no NIR key configured (dossiers.nir_key_file): the NIR cannot be imported"
    assert [e for e in _strip_dir(errors) if "nir" in e] == [
        f"usagers.csv:2: {no_key}",
        f"usagers.csv:5: {no_key}",
        f"usagers.csv:9: {no_key}",
    ]
    assert summary.counts["usagers"]["inserted"] == 1  # B-007, the only good row without NIR


def test_bad_json_rows_name_the_path_inside_the_usager_object(engine: Engine) -> None:
    summary, errors = run(engine, DATA / "bad_json" / "usagers.json", batch_size=2)
    assert _strip_dir(errors) == [
        "usagers.json:2: demandes[0].statuses[1].code: 'DEPOSEE' is not a status of the "
        "departement circuit (type APA_DOMICILE)",
        # J-001 was rejected whole, so its demande does not exist for J-002's payment.
        "usagers.json:5: paiements[0].numero: unknown demande 'APA-2025-91001'",
        "usagers.json:9: nom: required",
        "usagers.json:9: date_naissance: not a date (value not shown)",
        "usagers.json:10: demandes[0].decisions[0].gir: must be 1 to 6",
    ]
    assert summary.rows == 6 and summary.rejected == 4
    assert summary.notices == (f"{DATA / 'bad_json' / 'usagers.json'}: field(s) ignored: couleur",)
    with engine.connect() as conn:
        assert set(conn.execute(select(USAGER.c.external_id)).scalars()) == {"J-005", "J-006"}
        assert count(engine, DEMANDE) == 1
        numero, demande_type = conn.execute(select(DEMANDE.c.numero, DEMANDE.c.type)).one()
        debut, rdv_numero = conn.execute(
            select(RDV.c.debut, DEMANDE.c.numero).join(DEMANDE, DEMANDE.c.id == RDV.c.demande_id)
        ).one()
    assert (numero, demande_type) == ("APA202591006", "APA_ETAB")  # spaces removed, upper case
    # 10:30 in Paris on 31 March 2025 is summer time: 08:30 UTC.
    assert as_utc(debut) == datetime(2025, 3, 31, 8, 30, tzinfo=UTC) and rdv_numero == numero


def test_a_broken_json_lines_line_rejects_that_line_only(engine: Engine) -> None:
    summary, errors = run(engine, DATA / "bad_json" / "broken.jsonl")
    assert _strip_dir(errors) == [
        "broken.jsonl:2: json: not valid JSON: Expecting ',' delimiter (column 88)",
        "broken.jsonl:3: json: expected a usager object",
    ]
    assert (summary.rows, summary.rejected) == (4, 2)
    assert summary.counts["usagers"]["inserted"] == 2


def test_a_broken_json_array_stops_at_the_error_and_says_so(engine: Engine, tmp_path: Path) -> None:
    good = json.dumps(
        {"external_id": "A-1", "nom": "Petit", "prenom": "Louis", "date_naissance": "1940-01-01"}
    )
    path = tmp_path / "usagers.json"
    path.write_text(f'[\n{good},\n\n{{"external_id": "A-2" "nom": 1}},\n{good}\n]\n')
    summary, errors = run(engine, path)
    assert _strip_dir(errors) == [
        "usagers.json:4: json: not valid JSON: Expecting ',' delimiter; the rest of the file "
        "was not read"
    ]
    assert (summary.rows, summary.rejected, summary.counts["usagers"]["inserted"]) == (2, 1, 1)
    path.write_text('{"external_id": "A-1"}')
    summary, errors = run(engine, path)
    assert _strip_dir(errors) == ["usagers.json:1: json: expected a JSON array of usager objects"]


def test_a_csv_file_without_a_required_column_is_refused_whole(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "usagers_2025-06.csv"
    path.write_text("external_id;nom;naissance;adresse\nP-1;Petit;01/01/1940;rue\n")
    summary, errors = run(engine, path)
    assert _strip_dir(errors) == [
        "usagers_2025-06.csv:1: header: missing required column(s) prenom, date_naissance "
        "(kind usagers)"
    ]
    assert (summary.rows, summary.rejected, summary.files_rejected) == (0, 0, 1)
    assert count(engine, USAGER) == 0


# --------------------------------------------------------------------------------------------
# Re-imports


def test_reimport_is_a_no_op_and_a_modified_reimport_updates(
    engine: Engine, tmp_path: Path
) -> None:
    first, _ = run(engine, EXAMPLES / "usagers.json", now=datetime(2025, 6, 1, tzinfo=UTC))
    before = dump(engine, timestamps=True)

    again, errors = run(engine, EXAMPLES / "usagers.json", now=datetime(2025, 6, 2, tzinfo=UTC))
    assert errors == []
    assert again.counts["usagers"] == {"inserted": 0, "updated": 0, "unchanged": 2}
    for kind in importer.CHILD_KINDS:
        assert again.counts[kind]["inserted"] == again.counts[kind]["updated"] == 0
        assert again.counts[kind]["unchanged"] == first.counts[kind]["inserted"]
    assert again.children_written == 0
    assert dump(engine, timestamps=True) == before  # not even updated_at moved

    people = json.loads((EXAMPLES / "usagers.json").read_text(encoding="utf-8"))
    jeanne, karim = people
    jeanne["nom"] = "Martin-Durand"
    jeanne["phones"] = ["01 99 00 01 25"]  # replaces her number
    jeanne["demandes"][0]["statuses"][3]["detail"] = "visite à domicile (avancée)"
    june = dict(jeanne["paiements"][-1], periode="2025-06", date_paiement="2025-06-06")
    jeanne["paiements"].append(june)
    karim["demandes"][1]["pieces"][0]["date_recue"] = "2025-03-01"
    karim["tiers"][0]["phones"] = ["01 99 00 00 01"]  # only the tiers's numbers change
    modified = tmp_path / "usagers.json"
    modified.write_text(json.dumps(people, ensure_ascii=False), encoding="utf-8")

    changed, errors = run(engine, modified, now=datetime(2025, 6, 3, tzinfo=UTC))
    assert errors == []
    assert changed.counts["usagers"] == {"inserted": 0, "updated": 1, "unchanged": 1}
    assert changed.counts["statuts"] == {"inserted": 0, "updated": 1, "unchanged": 15}
    assert changed.counts["paiements"] == {"inserted": 1, "updated": 0, "unchanged": 2}
    assert changed.counts["pieces"] == {"inserted": 0, "updated": 1, "unchanged": 2}
    assert changed.counts["tiers"] == {"inserted": 0, "updated": 1, "unchanged": 1}
    assert changed.counts["demandes"]["updated"] == 0
    assert find_by_phone(engine, "01 99 00 01 23", **READER) == []
    (ref,) = find_by_phone(engine, "01 99 00 01 25", **READER)
    assert ref.nom == "Martin-Durand"
    (guardian,) = find_by_phone(engine, "01 99 00 00 01", **READER)
    assert guardian.role is Role.MANDATAIRE_JUDICIAIRE
    with engine.connect() as conn:
        stamps = dict(conn.execute(select(USAGER.c.external_id, USAGER.c.updated_at)).all())
    assert as_utc(stamps["P-000123"]) == datetime(2025, 6, 3, tzinfo=UTC)
    assert as_utc(stamps["P-000456"]) == datetime(2025, 6, 1, tzinfo=UTC)

    # A new number alone updates the usager too (and its updated_at).
    karim["phones"] = ["01 99 00 04 56"]
    modified.write_text(json.dumps(people, ensure_ascii=False), encoding="utf-8")
    phones_only, _ = run(engine, modified, now=datetime(2025, 6, 4, tzinfo=UTC))
    assert phones_only.counts["usagers"] == {"inserted": 0, "updated": 1, "unchanged": 1}
    assert phones_only.children_written == 0
    assert find_by_phone(engine, "+33 1 99 00 04 57", **READER) == []
    with engine.connect() as conn:
        stamp = conn.execute(
            select(USAGER.c.updated_at).where(USAGER.c.external_id == "P-000456")
        ).scalar_one()
    assert as_utc(stamp) == datetime(2025, 6, 4, tzinfo=UTC)


def test_a_merged_usager_is_never_written_again(engine: Engine) -> None:
    if "merged_into" not in USAGER.c:  # pragma: no cover - before usager merges existed
        pytest.skip("no usager.merged_into column")
    run(engine, EXAMPLES / "usagers.json")
    kept, merged = usager_id(engine, "P-000123"), usager_id(engine, "P-000456")
    with engine.begin() as conn:  # what a merge leaves: a tombstone pointing at the kept usager
        conn.execute(USAGER.update().where(USAGER.c.id == merged).values(merged_into=kept))
    before = dump(engine, timestamps=True)
    summary, errors = run(engine, EXAMPLES / "usagers.json")
    why = "'P-000456' was merged into 'P-000123': correct the back office's record"
    assert _strip_dir(errors) == [
        f"usagers.json:108: external_id: {why} (a merged usager is never written again)"
    ]
    assert summary.rejected == 1 and summary.counts["usagers"]["unchanged"] == 1
    summary, errors = run(engine, EXAMPLES / "csv" / "tiers.csv")
    assert _strip_dir(errors) == [
        f"tiers.csv:3: usager: {why} (a merged usager is never written again)"
    ]
    assert dump(engine, timestamps=True) == before


def test_a_row_without_nir_keeps_the_stored_one_and_a_nir_is_never_stored_in_clear(
    engine: Engine, tmp_path: Path
) -> None:
    with_nir = tmp_path / "usagers.jsonl"
    base = {
        "external_id": "N-1",
        "nom": "Petit",
        "prenom": "Louis",
        "date_naissance": "1940-01-01",
    }
    with_nir.write_text(json.dumps({**base, "nir": NIR}) + "\n")
    run(engine, with_nir)
    without = tmp_path / "again.jsonl"
    without.write_text(json.dumps(base) + "\n")
    summary, _ = run(engine, without)
    assert summary.counts["usagers"]["unchanged"] == 1
    with engine.connect() as conn:
        stored = conn.execute(select(USAGER.c.nir_hash)).scalar_one()
        audit_rows = conn.execute(select(AUDIT.c.detail)).scalars().all()
    assert stored == nir_hash(NIR, KEY)
    everything = json.dumps(dump(engine, timestamps=True)) + json.dumps(audit_rows)
    assert re.sub(r"\s", "", NIR) not in everything and NIR[:13] not in everything


def test_nir_key_check_and_corsica() -> None:
    assert importer.nir_key_ok("269054958815780")
    assert not importer.nir_key_ok("269054958815781")
    # Corsica: 2A counts as 19 and 2B as 18 in the key:
    # 97 - (1800119123456 mod 97) = 20, 97 - (1800118123456 mod 97) = 47.
    assert importer.nir_key_ok("180012A12345620")
    assert importer.nir_key_ok("180012B12345647")
    assert not importer.nir_key_ok("180012B12345620")
    assert not importer.nir_key_ok("2690549588157")  # no key: nothing to check


# --------------------------------------------------------------------------------------------
# Database errors inside a batch


def _refuse_nom(engine: Engine, nom: str) -> None:
    """A trigger that makes the database itself refuse one usager (a row-level DB error)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_nom BEFORE INSERT ON usager "
                    f"WHEN NEW.nom = '{nom}' BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse_nom() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.nom = '{nom}' THEN RAISE EXCEPTION 'refused by trigger' "
                    "USING ERRCODE = 'check_violation'; END IF; RETURN NEW; END $$ "
                    "LANGUAGE plpgsql"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_nom BEFORE INSERT ON usager "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_nom()"
                )
            )


def test_a_database_error_rolls_the_batch_back_and_replays_it_row_by_row(
    engine: Engine, tmp_path: Path
) -> None:
    bundles = list(demo.generate(12, 7, date(2025, 6, 12)))
    victim = bundles[5].usager
    _refuse_nom(engine, victim.nom + "-refused")
    bundles[5] = replace(bundles[5], usager=replace(victim, nom=victim.nom + "-refused"))
    path = tmp_path / "usagers.jsonl"
    importer.write_jsonl(path, bundles)

    summary, errors = run(engine, path, batch_size=5)
    assert _strip_dir(errors) == ["usagers.jsonl:6: database: refused by trigger"]
    assert (summary.rows, summary.rejected, summary.batches) == (12, 1, 3)
    wanted = {b.usager.external_id for i, b in enumerate(bundles) if i != 5}
    with engine.connect() as conn:
        assert set(conn.execute(select(USAGER.c.external_id)).scalars()) == wanted
        # The rejected usager's children went with it; the others' are all there.
        assert conn.execute(select(func.count()).select_from(DEMANDE)).scalar_one() == sum(
            len(b.demandes) for i, b in enumerate(bundles) if i != 5
        )


# --------------------------------------------------------------------------------------------
# CSV variants


@pytest.mark.parametrize(
    ("variant", "encoding", "delimiter"),
    [
        ("utf8_semicolon", "utf-8", ";"),
        ("utf8bom_comma", "utf-8", ","),
        ("cp1252_semicolon", "cp1252", ";"),
    ],
)
def test_csv_variants_read_the_same(
    engine: Engine, variant: str, encoding: str, delimiter: str
) -> None:
    summary, errors = run(engine, *csv_files(DATA / "variants" / variant))
    assert errors == [] and summary.rows == 4
    assert {(f.encoding, f.delimiter) for f in summary.files} == {(encoding, delimiter)}
    cp1252_notices = [n for n in summary.notices if "cp1252" in n]
    assert len(cp1252_notices) == (2 if encoding == "cp1252" else 0)
    with engine.connect() as conn:
        people = {
            r.external_id: r
            for r in conn.execute(
                select(
                    USAGER.c.external_id,
                    USAGER.c.nom,
                    USAGER.c.prenom,
                    USAGER.c.nom_naissance,
                    USAGER.c.date_naissance,
                    USAGER.c.besoins,
                )
            )
        }
        amounts = conn.execute(
            select(
                PAIEMENT.c.periode,
                PAIEMENT.c.montant_brut_cents,
                PAIEMENT.c.participation_cents,
                PAIEMENT.c.montant_verse_cents,
            ).order_by(PAIEMENT.c.periode)
        ).all()
        phones = sorted(conn.execute(select(PHONE.c.e164)).scalars())
    helene, tom = people["V-001"], people["V-002"]
    assert (helene.nom, helene.prenom, helene.nom_naissance) == ("Lefèvre", "Hélène", "Cœur-Dupré")
    assert helene.date_naissance == date(1941, 12, 24) and helene.besoins == ["malentendant", "lsf"]
    assert (tom.nom, tom.prenom) == ("N'Guyen", "Thiên, dit « Tom »")
    assert tom.date_naissance == date(1970, 2, 1)
    assert [tuple(a) for a in amounts] == [
        (date(2025, 5, 1), 243720, 30465, 213255),
        (date(2025, 6, 1), 81240, 0, 81240),
    ]
    assert phones == ["+33199004001", "+33199004002", "+33199004003"]


@pytest.mark.parametrize(
    ("raw", "wanted"),
    [
        ("1 234,56", 123456),
        ("1\u202f234,56", 123456),
        ("1.234,56", 123456),
        ("1234.56", 123456),
        ("1234,5", 123450),
        ("812,40 €", 81240),
        ("0", 0),
        (812.4, 81240),
        (12, 1200),
    ],
)
def test_amounts_in_euros(raw: Any, wanted: int) -> None:
    assert importer._cents(raw) == wanted


@pytest.mark.parametrize("raw", ["douze", "1,234.56", "12,345", "1e3", "", True, "--1"])
def test_amounts_that_are_not(raw: Any) -> None:
    with pytest.raises(ValueError, match="amount|decimals"):
        importer._cents(raw)


def test_dates_months_and_local_times() -> None:
    assert importer._date("24/12/1941") == importer._date("1941-12-24") == date(1941, 12, 24)
    assert importer._date("1/2/1970") == date(1970, 2, 1)
    for bad in ("31/02/1950", "1950-02-31", "24.12.1941", "19411224", "demain"):
        with pytest.raises(ValueError, match=re.escape(f"not a date: {bad!r}")):
            importer._date(bad)
    assert importer._month("06/2025") == importer._month("2025-06") == date(2025, 6, 1)
    assert importer._month("17/06/2025") == date(2025, 6, 1)
    winter = importer._datetime("14/02/2025 10:00")
    summer = importer._datetime("2025-06-14T10:00")
    assert winter == datetime(2025, 2, 14, 9, 0, tzinfo=UTC)
    assert summer == datetime(2025, 6, 14, 8, 0, tzinfo=UTC)
    assert importer._datetime("2025-06-14T10:00:00Z") == datetime(2025, 6, 14, 10, tzinfo=UTC)
    assert importer._datetime("14/06/2025 10h00") == summer


# --------------------------------------------------------------------------------------------
# Dry run and audit


def test_dry_run_counts_what_would_be_written_and_writes_nothing_but_its_audit_row(
    engine: Engine,
) -> None:
    dry, errors = run(engine, *csv_files(EXAMPLES / "csv"), dry_run=True, batch_size=4)
    assert errors == [] and dry.dry_run
    assert dry.counts["usagers"]["inserted"] == 2 and dry.children_written == 29
    assert count(engine, USAGER) == count(engine, STATUS) == count(engine, PAIEMENT) == 0
    real, _ = run(engine, *csv_files(EXAMPLES / "csv"), batch_size=4)
    assert real.counts == dry.counts
    with engine.connect() as conn:
        details = (
            conn.execute(
                select(AUDIT.c.detail).where(AUDIT.c.action == "import").order_by(AUDIT.c.id)
            )
            .scalars()
            .all()
        )
    assert [d["dry_run"] for d in details] == [True, False]


def test_one_audit_entry_per_run_with_counts_and_file_names_only(engine: Engine) -> None:
    summary, _ = run(engine, *csv_files(DATA / "bad_csv"), batch_size=3)
    assert summary.batches > 5
    with engine.connect() as conn:
        rows = conn.execute(select(AUDIT).where(AUDIT.c.action == "import")).mappings().all()
    (entry,) = rows
    assert (entry["actor"], entry["via"], entry["reason"]) == ("cli", "cli", "dossiers import")
    detail = entry["detail"]
    assert detail["status"] == "done" and detail["rows"] == 27 and detail["rejected"] == 18
    assert [f["file"] for f in detail["files"]] == [
        f"{k}.csv" for k in ("usagers", "tiers", "demandes", "statuts", "rendez_vous", "paiements")
    ]
    assert detail["counts"]["usagers"]["inserted"] == 2
    blob = json.dumps(detail, ensure_ascii=False)
    for personal in ("Lefèvre", "Hélène", "Blanc", "1941", "0199", "+33", "B-001", "2 69"):
        assert personal not in blob


def test_plan_files_orders_and_refuses(tmp_path: Path) -> None:
    given = [*reversed(csv_files(EXAMPLES / "csv")), EXAMPLES / "usagers.jsonl"]
    planned = plan_files(given)
    assert [(f.format, f.kind) for f in planned] == [("jsonl", None)] + [
        ("csv", kind) for kind in Kind
    ]
    with pytest.raises(importer.ImportUsageError, match="no such file"):
        plan_files([EXAMPLES / "absent.csv"])
    odd = tmp_path / "export.csv"
    odd.write_text("a;b\n")
    with pytest.raises(importer.ImportUsageError, match="cannot tell the record kind"):
        plan_files([DATA / "variants" / "utf8_semicolon" / "usagers.csv", odd])
    assert [f.kind for f in plan_files([odd], kind=Kind.TIERS)] == [Kind.TIERS]
    with pytest.raises(importer.ImportUsageError, match="unknown format '.xlsx'"):
        plan_files([odd.rename(tmp_path / "usagers.xlsx")])
