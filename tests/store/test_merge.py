"""Merging duplicate usagers: everything moves, tombstones answer nothing, refusals, atomicity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypedDict

import pytest
from sqlalchemy import Engine, func, inspect, select, text

from callcenter.store import db, demo
from callcenter.store import dossiers as repo
from callcenter.store.dossier_models import DOSSIER_MODELS, TiersRole
from callcenter.store.merge import (
    MERGE,
    AlreadyMergedError,
    MergeConflictError,
    SameUsagerError,
    TombstoneTargetError,
    UnknownUsagerError,
    merge_log,
    merge_usagers,
    resolve_usager,
)

TODAY = date(2025, 6, 12)
NOW = datetime(2025, 6, 12, 9, 30, tzinfo=UTC)
KEY = b"k" * 32


class Access(TypedDict):
    actor: str
    reason: str
    via: repo.Via


class Merger(TypedDict):
    actor: str
    reason: str


BOT = Access(actor="bot", reason="caller identification", via=repo.Via.BOT)
WHO = Merger(actor="agent7", reason="ticket 42: same person entered twice")

OWN_SHARED = "01 99 00 11 11"
"""A number both records carry (in two written forms)."""
OWN_MERGED = "01 99 00 22 22"
FILLE_KEPT = "01 99 00 33 33"
FILLE_MERGED = "01 99 00 44 44"
VOISIN = "01 99 00 55 55"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    db.create_schema(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every dossier table, in id order."""
    with engine.connect() as conn:
        return {
            model.__tablename__: [  # type: ignore[misc]
                tuple(row)
                for row in conn.execute(
                    select(model.__table__).order_by(model.__table__.c.id)  # type: ignore[attr-defined]
                )
            ]
            for model in DOSSIER_MODELS
        }


def _payment(day: date, amount: int, numero: str | None) -> repo.PaiementRecord:
    return repo.PaiementRecord(
        prestation="APA_DOMICILE",
        periode=day.replace(day=1),
        date_paiement=day,
        montant_brut_cents=amount,
        statut="verse",
        numero=numero,
    )


def seed_pair(engine: Engine) -> tuple[int, int]:
    """Jeanne Martin entered twice: the kept record, and a merged one with more and overlapping."""
    kept = repo.upsert_usager(
        engine,
        repo.UsagerRecord(
            external_id="P-1",
            civilite="Mme",
            nom="Martin",
            prenom="Jeanne",
            date_naissance=date(1938, 4, 2),
            besoins=("malentendant",),
            phones=(OWN_SHARED,),
        ),
    )
    merged = repo.upsert_usager(
        engine,
        repo.UsagerRecord(
            external_id="P-2",
            nom="MARTIN",
            prenom="Jeane",
            nom_naissance="Durand",
            date_naissance=date(1938, 4, 2),
            besoins=("lsf",),
            mesure_protection="curatelle",
            nir_hash=repo.nir_hash("2 38 04 75 123 456", KEY),
            phones=("+33 1 99 00 11 11", OWN_MERGED),
        ),
    )
    fille = repo.TiersRecord(
        external_id="T-FILLE", nom="Martin", prenom="Claire", role=TiersRole.AIDANT,
        relation="fille", phones=(FILLE_KEPT,),
    )  # fmt: skip
    repo.upsert_tiers(engine, kept, fille)
    repo.upsert_tiers(
        engine,
        merged,
        repo.TiersRecord(
            external_id="T-FILLE", nom="Martin", prenom="Claire", role=TiersRole.FAMILLE,
            relation="fille", phones=(FILLE_KEPT, FILLE_MERGED),
        ),
    )  # fmt: skip
    repo.upsert_tiers(
        engine,
        merged,
        repo.TiersRecord(
            external_id="T-VOISIN", nom="Roux", role=TiersRole.AIDANT, phones=(VOISIN,)
        ),
    )
    repo.upsert_demande(
        engine,
        kept,
        repo.DemandeRecord(
            numero="APA-2025-00001",
            type="APA_DOMICILE",
            date_depot=date(2025, 2, 3),
            statuses=(repo.StatusRecord("RECU", date(2025, 2, 3)),),
        ),
    )
    repo.upsert_demande(
        engine,
        merged,
        repo.DemandeRecord(
            numero="TA-2025-00002",
            type="TELEASSISTANCE",
            date_depot=date(2025, 3, 1),
            statuses=(repo.StatusRecord("RECU", date(2025, 3, 1)),),
            pieces=(repo.PieceRecord("RIB", date(2025, 3, 5)),),
        ),
    )
    visit = datetime(2025, 6, 20, 8, 0, tzinfo=UTC)
    repo.upsert_rendez_vous(
        engine, kept, repo.RendezVousRecord(type="evaluation_domicile", debut=visit)
    )
    repo.upsert_rendez_vous(
        engine,
        merged,
        repo.RendezVousRecord(
            type="evaluation_domicile", debut=visit, lieu="à domicile", numero="TA-2025-00002"
        ),
    )
    repo.upsert_rendez_vous(
        engine,
        merged,
        repo.RendezVousRecord(type="bilan", debut=visit + timedelta(days=30)),
    )
    repo.upsert_paiement(engine, kept, _payment(date(2025, 5, 8), 50_000, "APA-2025-00001"))
    repo.upsert_paiement(engine, merged, _payment(date(2025, 5, 8), 50_000, "TA-2025-00002"))
    repo.upsert_paiement(engine, merged, _payment(date(2025, 4, 8), 50_000, "TA-2025-00002"))
    # Contacts of both records, interleaved in time.
    for i, usager_id in enumerate((kept, merged, kept, merged)):
        repo.record_contact(
            engine,
            channel="telephone",
            started_at=NOW - timedelta(days=10 - i),
            sip_call_id=f"call-{i}",
            usager_id=usager_id,
            summary=f"contact {i}",
        )
    fille_merged = _tiers_id(engine, merged, "T-FILLE")
    repo.record_contact(
        engine,
        channel="telephone",
        started_at=NOW - timedelta(days=1),
        sip_call_id="call-fille",
        usager_id=merged,
        tiers_id=fille_merged,
    )
    return kept, merged


def _tiers_id(engine: Engine, usager_id: int, external_id: str) -> int:
    with engine.connect() as conn:
        found: int = conn.execute(
            select(repo.TIERS.c.id).where(
                repo.TIERS.c.usager_id == usager_id, repo.TIERS.c.external_id == external_id
            )
        ).scalar_one()
    return found


def _owned(engine: Engine, usager_id: int) -> dict[str, int]:
    counts = {}
    with engine.connect() as conn:
        for table in (
            repo.PHONE, repo.TIERS, repo.DEMANDE, repo.RDV, repo.PAIEMENT, repo.CONTACT,
        ):  # fmt: skip
            counts[table.name] = conn.execute(
                select(func.count()).select_from(table).where(table.c.usager_id == usager_id)
            ).scalar_one()
    return counts


# --------------------------------------------------------------------------------------------


def test_everything_moves_and_conflicts_keep_every_row(engine: Engine) -> None:
    kept, merged = seed_pair(engine)
    fille_kept = _tiers_id(engine, kept, "T-FILLE")
    fille_merged = _tiers_id(engine, merged, "T-FILLE")
    before_kept, before_merged = _owned(engine, kept), _owned(engine, merged)

    result = merge_usagers(engine, kept, merged, now=NOW, **WHO)

    after_kept, after_merged = _owned(engine, kept), _owned(engine, merged)
    # Own shared number and the fille's shared number are dropped as duplicates; the folded
    # tiers, the same rendez-vous and the same payment stay on the tombstone.
    assert after_merged == {
        "usager_phone": 0,
        "tiers": 1,
        "demande": 0,
        "rendez_vous": 1,
        "paiement": 1,
        "contact": 0,
    }
    assert after_kept == {
        "usager_phone": before_kept["usager_phone"] + 3,  # own 22 22, fille 44 44, voisin
        "tiers": before_kept["tiers"] + 1,
        "demande": before_kept["demande"] + 1,
        "rendez_vous": before_kept["rendez_vous"] + 1,
        "paiement": before_kept["paiement"] + 1,
        "contact": before_kept["contact"] + before_merged["contact"],
    }
    assert result.counts() == {
        "tiers": 1,
        "usager_phone": 3,
        "demande": 1,
        "rendez_vous": 1,
        "paiement": 1,
        "contact": 3,
        "tombstone": 0,
    }
    resolved = {(r["table"], r["id"]) for r in result.resolved}
    assert ("tiers", fille_merged) in resolved
    assert {r["table"] for r in result.resolved} == {
        "usager_phone",
        "tiers",
        "rendez_vous",
        "paiement",
        "usager",
    }

    # The fille's numbers all reach the kept tiers, whose role is kept (not widened).
    refs = repo.find_by_phone(engine, FILLE_MERGED, **BOT)
    assert [(r.usager_id, r.tiers_id, r.role) for r in refs] == [
        (kept, fille_kept, repo.Role.AIDANT)
    ]
    # The demande's history, documents and statuses followed it.
    ref = repo.find_by_dossier_number(engine, "TA-2025-00002", **BOT)
    assert ref is not None and ref.usager_id == kept
    snap = repo.dossier_snapshot(
        engine,
        kept,
        role=repo.Role.USAGER,
        today=TODAY,
        **BOT,
    )
    assert snap is not None and snap.demandes is not None
    assert {d.numero for d in snap.demandes} == {"APA-2025-00001", "TA-2025-00002"}
    ta = next(d for d in snap.demandes if d.numero == "TA-2025-00002")
    assert ta.missing_documents is not None and [m.piece for m in ta.missing_documents] == ["RIB"]
    # The kept rendez-vous got the place it lacked.
    with engine.connect() as conn:
        lieux = conn.execute(
            select(repo.RDV.c.type, repo.RDV.c.lieu).where(repo.RDV.c.usager_id == kept)
        ).all()
    assert sorted(lieux, key=lambda r: r.type) == [
        ("bilan", None),
        ("evaluation_domicile", "à domicile"),
    ]

    # Identity: empty fields filled, needs united, the NIR hash moved.
    with engine.connect() as conn:
        k, m = (
            conn.execute(select(repo.USAGER).where(repo.USAGER.c.id == i)).mappings().one()
            for i in (kept, merged)
        )
    assert (k["nom_naissance"], k["mesure_protection"]) == ("Durand", "curatelle")
    assert k["besoins"] == ["malentendant", "lsf"]
    assert k["nir_hash"] == repo.nir_hash("2 38 04 75 123 456", KEY)
    assert m["nir_hash"] is None and m["merged_into"] == kept
    assert (m["nom"], m["prenom"]) == ("MARTIN", "Jeane")  # the tombstone keeps its identity


def test_contacts_are_kept_in_order_with_their_tiers(engine: Engine) -> None:
    kept, merged = seed_pair(engine)
    fille_kept = _tiers_id(engine, kept, "T-FILLE")
    merge_usagers(engine, kept, merged, **WHO)
    contacts = repo.contacts_for(engine, kept, **BOT)
    assert [c.sip_call_id for c in contacts] == [
        "call-fille",
        "call-3",
        "call-2",
        "call-1",
        "call-0",
    ]
    assert [c.started_at for c in contacts] == sorted(
        (c.started_at for c in contacts), reverse=True
    )
    assert next(c for c in contacts if c.sip_call_id == "call-fille").tiers_id == fille_kept
    assert repo.contacts_for(engine, merged, **BOT) == []


def test_a_tombstone_answers_no_lookup_and_old_references_resolve(engine: Engine) -> None:
    kept, merged = seed_pair(engine)
    result = merge_usagers(engine, kept, merged, **WHO)
    for number in (OWN_SHARED, OWN_MERGED, FILLE_MERGED, VOISIN):
        refs = repo.find_by_phone(engine, number, **BOT)
        assert refs and {r.usager_id for r in refs} == {kept}, number
    for numero in ("TA-2025-00002", "202500002"):
        ref = repo.find_by_dossier_number(engine, numero, **BOT)
        assert ref is not None and ref.usager_id == kept
    assert resolve_usager(engine, merged) == kept
    assert resolve_usager(engine, kept) == kept
    assert resolve_usager(engine, 999_999) is None
    # The merge log says who, when, why and what moved.
    [entry] = merge_log(engine, merged)
    assert (entry.actor, entry.reason, entry.via) == ("agent7", WHO["reason"], "cli")
    assert (entry.kept_id, entry.merged_id, entry.id) == (kept, merged, result.log_id)
    assert entry.moved == {k: list(v) for k, v in result.moved.items()}
    assert merge_log(engine, kept) == [entry]
    # Audit: one row per usager, ids and counts only.
    rows = repo.audit_log(engine, actor="agent7")
    assert {(e.action, e.usager_id) for e in rows} == {("merge", kept), ("merged_into", merged)}
    for e in rows:
        assert e.detail["merge_log_id"] == result.log_id
        assert "Martin" not in json.dumps(e.detail) and "1938" not in json.dumps(e.detail)


def test_older_tombstones_follow_to_the_kept_usager(engine: Engine) -> None:
    ids = [
        repo.upsert_usager(
            engine,
            repo.UsagerRecord(
                external_id=f"P-{i}", nom="Roux", prenom="Paul", date_naissance=date(1950, 1, 2)
            ),
        )
        for i in range(3)
    ]
    a, b, c = ids
    merge_usagers(engine, b, c, **WHO)
    result = merge_usagers(engine, a, b, **WHO)
    assert result.moved["tombstone"] == (c,)
    with engine.connect() as conn:
        rows = conn.execute(select(repo.USAGER.c.id, repo.USAGER.c.merged_into)).all()
    pointers = {row.id: row.merged_into for row in rows}
    assert pointers == {a: None, b: a, c: a}
    assert resolve_usager(engine, c) == a


def test_refusals_write_nothing(engine: Engine) -> None:
    kept, merged = seed_pair(engine)
    other = repo.upsert_usager(
        engine,
        repo.UsagerRecord(
            external_id="P-3",
            nom="Martin",
            prenom="Jeanne",
            date_naissance=date(1938, 4, 2),
            nir_hash=repo.nir_hash("2 38 04 75 999 999", KEY),
        ),
    )
    before = dump(engine)
    with pytest.raises(SameUsagerError, match=f"usager {kept} cannot be merged into itself"):
        merge_usagers(engine, kept, kept, **WHO)
    with pytest.raises(UnknownUsagerError, match="no usager 999999"):
        merge_usagers(engine, kept, 999_999, **WHO)
    with pytest.raises(UnknownUsagerError, match="no usager 999999"):
        merge_usagers(engine, 999_999, kept, **WHO)
    with pytest.raises(MergeConflictError, match="different NIR"):
        merge_usagers(engine, other, merged, **WHO)
    with pytest.raises(ValueError, match="reason is required"):
        merge_usagers(engine, kept, merged, actor="agent7", reason=" ")
    with pytest.raises(ValueError, match="actor is required"):
        merge_usagers(engine, kept, merged, actor="", reason="x")
    assert dump(engine) == before

    merge_usagers(engine, kept, merged, now=NOW, **WHO)
    after = dump(engine)
    with pytest.raises(AlreadyMergedError, match=f"{merged} was already merged into {kept} on"):
        merge_usagers(engine, kept, merged, **WHO)
    with pytest.raises(AlreadyMergedError):  # the same error again: nothing half-done
        merge_usagers(engine, kept, merged, **WHO)
    with pytest.raises(TombstoneTargetError, match=f"merge into {kept} instead"):
        merge_usagers(engine, merged, other, **WHO)
    with pytest.raises(AlreadyMergedError):
        merge_usagers(engine, other, merged, **WHO)
    assert dump(engine) == after


def test_diverging_payments_are_refused_not_lost(engine: Engine) -> None:
    a = repo.upsert_usager(
        engine,
        repo.UsagerRecord(external_id="A", nom="Roux", prenom="Paul", date_naissance=TODAY),
    )
    b = repo.upsert_usager(
        engine,
        repo.UsagerRecord(external_id="B", nom="Roux", prenom="Paul", date_naissance=TODAY),
    )
    repo.upsert_paiement(engine, a, _payment(date(2025, 5, 8), 50_000, None))
    repo.upsert_paiement(engine, b, _payment(date(2025, 5, 8), 61_000, None))
    before = dump(engine)
    with pytest.raises(MergeConflictError, match="possible double payment"):
        merge_usagers(engine, a, b, **WHO)
    assert dump(engine) == before


def _install_failing_trigger(engine: Engine) -> None:
    """Make any move of a contact fail inside the database, midway through a merge."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER fail_contact_move BEFORE UPDATE OF usager_id ON contact "
                    "BEGIN SELECT RAISE(ABORT, 'contact move refused by test trigger'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION fail_contact_move() RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'contact move refused by test trigger'; END $$"
                )
            )
            conn.execute(
                text(
                    "CREATE TRIGGER fail_contact_move BEFORE UPDATE OF usager_id ON contact "
                    "FOR EACH ROW EXECUTE FUNCTION fail_contact_move()"
                )
            )


def test_a_merge_failing_midway_leaves_nothing_changed(engine: Engine) -> None:
    kept, merged = seed_pair(engine)
    _install_failing_trigger(engine)
    before = dump(engine)
    for _ in range(2):  # the same failure each time: no half-merge to trip on
        with pytest.raises(Exception, match="contact move refused by test trigger"):
            merge_usagers(engine, kept, merged, **WHO)
        assert dump(engine) == before
    assert resolve_usager(engine, merged) == merged
    refs = repo.find_by_phone(engine, OWN_MERGED, **BOT)
    assert [r.usager_id for r in refs] == [merged]


def test_a_merge_in_the_callers_transaction_rolls_back_with_it(engine: Engine) -> None:
    kept, merged = seed_pair(engine)
    before = dump(engine)
    with engine.connect() as conn:
        merge_usagers(conn, kept, merged, **WHO)
        assert resolve_usager(conn, merged) == kept
        conn.rollback()
    assert dump(engine) == before


def test_merging_two_demo_dossiers_moves_all_their_history(engine: Engine) -> None:
    demo.load(engine, 30, 5, TODAY)
    with engine.connect() as conn:
        ids = conn.execute(select(repo.USAGER.c.id).order_by(repo.USAGER.c.id)).scalars().all()
    richest = max(ids, key=lambda i: _owned(engine, i)["paiement"])
    # A usager without payments: two people paid the same month would be a conflict.
    keep = next(i for i in ids if i != richest and _owned(engine, i)["paiement"] == 0)
    before_keep, before_merged = _owned(engine, keep), _owned(engine, richest)
    snap_before = repo.dossier_snapshot(
        engine,
        richest,
        role=repo.Role.AGENT,
        today=TODAY,
        **BOT,
    )
    merge_usagers(engine, keep, richest, **WHO)
    after = _owned(engine, keep)
    assert after == {k: before_keep[k] + before_merged[k] for k in after}
    assert sum(_owned(engine, richest).values()) == 0
    snap = repo.dossier_snapshot(
        engine,
        keep,
        role=repo.Role.AGENT,
        today=TODAY,
        **BOT,
    )
    assert snap is not None and snap.demandes is not None and snap_before is not None
    assert {d.numero for d in snap_before.demandes or ()} <= {d.numero for d in snap.demandes}
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(MERGE)).scalar_one() == 1


def test_migration_0003_keeps_existing_dossiers(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        # Seeded through today's repository (it targets the head schema), then taken back to
        # 0002 with its dossiers: the upgrade to 0003 must keep every row.
        db.create_schema(engine)
        kept, merged = seed_pair(engine)
        before = _owned(engine, kept)
        db.downgrade_schema(engine, "0002")
        db.upgrade_schema(engine, "0003")
        assert db.current_revision(engine) == "0003"
        assert _owned(engine, kept) == before
        merge_usagers(engine, kept, merged, **WHO)
        db.downgrade_schema(engine, "0002")  # drops the merge columns, never a dossier
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(repo.DEMANDE)).scalar_one() == 2
            columns = {c["name"] for c in inspect(conn).get_columns("usager")}
        assert "merged_into" not in columns
    finally:
        engine.dispose()


def test_a_tombstone_answers_no_lookup_and_refuses_updates(engine: Engine) -> None:
    kept, merged = seed_pair(engine)
    merge_usagers(engine, kept, merged, **WHO)
    access: dict[str, Any] = {"actor": "test", "reason": "check", "via": repo.Via.CLI}
    assert not repo.usager_exists(engine, merged) and repo.usager_exists(engine, kept)
    assert not repo.verify_birth_date(engine, merged, date(1938, 4, 2), **access)
    assert repo.verify_birth_date(engine, kept, date(1938, 4, 2), **access)
    snapshot = repo.dossier_snapshot(
        engine, merged, role=repo.Role.AGENT, today=date(2025, 6, 1), **access
    )
    assert snapshot is None
    # A re-import of the merged record's back-office id must not bring it back to life.
    with pytest.raises(ValueError, match=f"external_id: this usager was merged into usager {kept}"):
        repo.upsert_usager(
            engine,
            repo.UsagerRecord(
                external_id="P-2", nom="Martin", prenom="Jeane", date_naissance=date(1938, 4, 2),
                phones=("+33 1 99 00 77 77",),
            ),
        )  # fmt: skip
    assert repo.find_by_phone(engine, "+33 1 99 00 77 77", **access) == []
