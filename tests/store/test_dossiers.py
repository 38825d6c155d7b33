from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import TypedDict

import pytest
from sqlalchemy import Engine, func, select

from callcenter.store import db
from callcenter.store.dossier_models import DEFAULT_MAY_KNOW, Circuit, TiersRole, Topic
from callcenter.store.dossiers import (
    CONTACT,
    DEMANDE,
    PAIEMENT,
    PHONE,
    STATUS,
    USAGER,
    DecisionRecord,
    DemandeRecord,
    PaiementRecord,
    PieceRecord,
    RendezVousRecord,
    Role,
    StatusRecord,
    TiersRecord,
    UsagerRecord,
    Via,
    audit,
    audit_log,
    contacts_for,
    dossier_snapshot,
    find_by_dossier_number,
    find_by_phone,
    nir_hash,
    normalize_phone,
    record_contact,
    set_agent_notes,
    upsert_demande,
    upsert_paiement,
    upsert_rendez_vous,
    upsert_tiers,
    upsert_usager,
    verify_birth_date,
)

TODAY = date(2025, 6, 12)
KEY = b"k" * 32


class Access(TypedDict):
    actor: str
    reason: str
    via: Via


BOT = Access(actor="bot", reason="caller identification", via=Via.BOT)
AGENT = Access(actor="agent42", reason="incoming call", via=Via.API)

USAGER_PHONE = "06 12 34 56 78"
AIDANT_PHONE = "+33 1 45 67 89 10"

JEANNE = UsagerRecord(
    external_id="P-000123",
    civilite="Mme",
    nom="Martin",
    prenom="Jeanne",
    nom_naissance="Durand",
    date_naissance=date(1938, 4, 2),
    besoins=("malentendant",),
    nir_hash=nir_hash("2 38 04 75 123 456 78", KEY),
    phones=(USAGER_PHONE, "0033612345678", "not a phone"),
)

FILLE = TiersRecord(
    external_id="T-1",
    nom="Martin",
    prenom="Claire",
    relation="fille",
    role=TiersRole.AIDANT,
    phones=(AIDANT_PHONE,),
)

APA = DemandeRecord(
    numero="APA-2025-04567",
    type="APA_DOMICILE",
    date_depot=date(2025, 2, 3),
    date_recevabilite=date(2025, 3, 10),
    date_limite_legale=date(2025, 5, 10),
    statuses=(
        StatusRecord("RECU", date(2025, 2, 3)),
        StatusRecord("INCOMPLET", date(2025, 2, 20), "avis d'imposition"),
        StatusRecord("COMPLET", date(2025, 3, 10)),
        StatusRecord("EVALUATION_PLANIFIEE", date(2025, 3, 20), "visite le 2 avril"),
        StatusRecord("DECISION_NOTIFIEE", date(2025, 4, 28)),
        StatusRecord("EN_PAIEMENT", date(2025, 5, 10)),
    ),
    pieces=(
        PieceRecord("avis d'imposition 2024", date(2025, 2, 20), date_recue=date(2025, 3, 8)),
        PieceRecord("RIB", date(2025, 4, 30), date_relance=date(2025, 5, 30)),
    ),
    decisions=(
        DecisionRecord(
            prestation="APA_DOMICILE",
            sens="accord",
            date_decision=date(2025, 4, 25),
            date_notification=date(2025, 4, 28),
            date_debut=date(2025, 3, 10),
            date_fin=date(2028, 3, 9),
            montant_cents=64_512,
            gir=3,
            taux_participation=12.5,
        ),
    ),
)

MDPH = DemandeRecord(
    numero="MDPH-2024-01234",
    type="CMI_STAT",
    date_depot=date(2024, 11, 4),
    statuses=(
        StatusRecord("DEPOSEE", date(2024, 11, 4)),
        StatusRecord("RECEVABLE", date(2024, 11, 20)),
    ),
)


def paiement(day: date, statut: str, **kw: object) -> PaiementRecord:
    return PaiementRecord(
        prestation="APA_DOMICILE",
        periode=day.replace(day=1),
        date_paiement=day,
        montant_brut_cents=64_512,
        participation_cents=8_064,
        montant_verse_cents=56_448,
        mode="virement",
        statut=statut,
        iban_last4="1234",
        numero="APA-2025-04567",
        **kw,  # type: ignore[arg-type]
    )


PAIEMENTS = (
    paiement(date(2025, 5, 10), "verse", motif_ecart="rappel"),
    paiement(date(2025, 6, 10), "mandate"),
    paiement(date(2025, 7, 10), "prevu"),
    paiement(date(2025, 8, 10), "prevu"),
)

RDVS = (
    RendezVousRecord(
        "evaluation_domicile", datetime(2025, 4, 2, 8, tzinfo=UTC), "à domicile", numero=APA.numero
    ),
    RendezVousRecord("convocation_mdph", datetime(2025, 6, 30, 12, tzinfo=UTC), "MDPH, Valence"),
    RendezVousRecord("bilan", datetime(2025, 6, 20, 9, tzinfo=UTC), "CMP", annule=True),
    RendezVousRecord(
        "visite_controle", datetime(2025, 7, 3, 7, 30, tzinfo=UTC), "à domicile", numero=APA.numero
    ),
)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    db.create_schema(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def load(engine: Engine) -> tuple[int, int]:
    """The import of one dossier, in one transaction."""
    with engine.begin() as conn:
        usager_id = upsert_usager(conn, JEANNE, now=datetime(2025, 6, 1, tzinfo=UTC))
        tiers_id = upsert_tiers(conn, usager_id, FILLE)
        upsert_demande(conn, usager_id, APA)
        upsert_demande(conn, usager_id, MDPH)
        for rdv in RDVS:
            upsert_rendez_vous(conn, usager_id, rdv)
        for p in PAIEMENTS:
            upsert_paiement(conn, usager_id, p)
    return usager_id, tiers_id


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (USAGER, PHONE, DEMANDE, STATUS, PAIEMENT)
        }


# -- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("0612345678", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("tel:+33612345678", "+33612345678"),
        ("sip:0612345678@pbx.example.org;user=phone", "+33612345678"),
        ("01.45.67.89.10", "+33145678910"),
        ("+32 470 12 34 56", "+32470123456"),
        ("12", None),
        ("anonymous", None),
        ("", None),
    ],
)
def test_normalize_phone(raw: str, expected: str | None) -> None:
    assert normalize_phone(raw) == expected


def test_nir_hash_is_keyed_and_normalised() -> None:
    h = nir_hash("2 38 04 75 123 456 78", KEY)
    assert len(h) == 64 and h == nir_hash("2380475123456", KEY)  # key digits dropped
    assert h == nir_hash("2.38.04.75.123.456", KEY)
    assert h != nir_hash("2380475123456", b"x" * 32)
    assert h != nir_hash("1380475123456", KEY)
    assert "2380475123456" not in h
    assert nir_hash("1 52 03 2A 012 345", KEY) == nir_hash("152032a012345", KEY)  # Corsica
    with pytest.raises(ValueError, match="not a NIR"):
        nir_hash("12345", KEY)
    with pytest.raises(ValueError, match="16 bytes"):
        nir_hash("2380475123456", b"short")


def test_records_name_the_bad_field() -> None:
    with pytest.raises(ValueError, match="^nir_hash: "):
        replace(JEANNE, nir_hash="2380475123456")  # a NIR in clear is refused
    with pytest.raises(ValueError, match="^besoins: unknown need 'braille'"):
        replace(JEANNE, besoins=("braille",))
    with pytest.raises(ValueError, match="^type: unknown type 'APA'"):
        replace(APA, type="APA")
    with pytest.raises(ValueError, match="^statuses: 'RECEVABLE' is not a departement status"):
        replace(APA, statuses=(StatusRecord("RECEVABLE", date(2025, 1, 1)),))
    with pytest.raises(ValueError, match="^iban_last4: "):
        replace(PAIEMENTS[0], iban_last4="FR7630001007941234567890185")
    with pytest.raises(ValueError, match="^statut: "):
        replace(PAIEMENTS[0], statut="paid")
    with pytest.raises(ValueError, match="^gir: "):
        replace(APA.decisions[0], gir=7)
    with pytest.raises(ValueError, match="^role: "):
        replace(FILLE, role="voisin")  # type: ignore[arg-type]


# -- import ----------------------------------------------------------------------------------


def test_upserts_are_idempotent(engine: Engine) -> None:
    first = load(engine)
    before = counts(engine)
    assert before == {
        "usager": 1,
        "usager_phone": 2,  # one own number (three forms, one invalid), one for the aidant
        "demande": 2,
        "demande_status": 8,
        "paiement": 4,
    }
    assert load(engine) == first
    assert counts(engine) == before


def test_update_changes_values_and_keeps_the_nir_hash(engine: Engine) -> None:
    usager_id, _ = load(engine)
    moved = replace(JEANNE, nom="Martin-Roux", nir_hash=None, phones=("07 81 22 33 44",))
    assert upsert_usager(engine, moved) == usager_id
    with engine.connect() as conn:
        row = conn.execute(select(USAGER).where(USAGER.c.id == usager_id)).mappings().one()
        phones = conn.execute(
            select(PHONE.c.e164).where(PHONE.c.usager_id == usager_id, PHONE.c.tiers_id.is_(None))
        ).scalars()
        assert row["nom"] == "Martin-Roux" and row["nir_hash"] == JEANNE.nir_hash
        assert list(phones) == ["+33781223344"]
    assert find_by_phone(engine, USAGER_PHONE, **BOT) == []


def test_failed_import_batch_leaves_nothing(engine: Engine) -> None:
    with pytest.raises(ValueError, match="numero: no demande"), engine.begin() as conn:
        usager_id = upsert_usager(conn, JEANNE)
        upsert_demande(conn, usager_id, APA)
        upsert_paiement(conn, usager_id, replace(PAIEMENTS[0], numero="APA-0000-00000"))
    assert counts(engine) == dict.fromkeys(counts(engine), 0)


def test_numero_of_another_usager_is_refused(engine: Engine) -> None:
    load(engine)
    other = upsert_usager(engine, replace(JEANNE, external_id="P-999", nir_hash=None, phones=()))
    with pytest.raises(ValueError, match="belongs to another usager"):
        upsert_demande(engine, other, APA)


# -- lookups ---------------------------------------------------------------------------------


def test_find_by_phone_own_number_and_carer(engine: Engine) -> None:
    usager_id, tiers_id = load(engine)
    (own,) = find_by_phone(engine, "+33612345678", **BOT)
    assert own.usager_id == usager_id and own.role is Role.USAGER and own.tiers_id is None
    assert own.may_know == frozenset(Topic)
    assert own.numeros == ("APA-2025-04567", "MDPH-2024-01234")  # newest first
    assert own.besoins == ("malentendant",) and own.nom == "Martin"
    (carer,) = find_by_phone(engine, "01 45 67 89 10", **BOT)
    assert carer.usager_id == usager_id and carer.tiers_id == tiers_id
    assert carer.role is Role.AIDANT
    assert carer.may_know == DEFAULT_MAY_KNOW[TiersRole.AIDANT]
    assert find_by_phone(engine, "+33699999999", **BOT) == []
    assert find_by_phone(engine, "anonymous", **BOT) == []


def test_a_number_shared_by_two_dossiers(engine: Engine) -> None:
    usager_id, _ = load(engine)
    other = upsert_usager(engine, replace(JEANNE, external_id="P-2", prenom="Paul", nir_hash=None))
    refs = find_by_phone(engine, USAGER_PHONE, **BOT)
    assert [r.usager_id for r in refs] == sorted([usager_id, other])
    (entry, *_) = audit_log(engine, actor="bot")
    assert entry.usager_id is None and entry.detail["usager_ids"] == sorted([usager_id, other])


def test_find_by_dossier_number(engine: Engine) -> None:
    usager_id, _ = load(engine)
    ref = find_by_dossier_number(engine, "apa-2025-04567", **BOT)
    assert ref is not None and ref.usager_id == usager_id and ref.type == "APA_DOMICILE"
    assert (
        find_by_dossier_number(engine, " APA 2025-04567 ", **BOT) is None
    )  # separators are not guessed
    assert find_by_dossier_number(engine, "APA-2025- 04567", **BOT) == ref
    assert find_by_dossier_number(engine, "202504567", **BOT) == ref  # keyed on a keypad
    assert find_by_dossier_number(engine, "202401234", **BOT) is not None
    assert find_by_dossier_number(engine, "2025", **BOT) is None
    assert find_by_dossier_number(engine, "", **BOT) is None
    # Digits shared by two numéros identify nobody.
    other = upsert_usager(engine, replace(JEANNE, external_id="P-2", nir_hash=None, phones=()))
    upsert_demande(engine, other, replace(APA, numero="PCH-2025-04567", type="PCH", statuses=()))
    assert find_by_dossier_number(engine, "202504567", **BOT) is None


def test_verify_birth_date_is_audited(engine: Engine) -> None:
    usager_id, _ = load(engine)
    assert verify_birth_date(engine, usager_id, date(1938, 4, 2), **BOT) is True
    assert verify_birth_date(engine, usager_id, date(1938, 2, 4), **BOT) is False
    assert verify_birth_date(engine, usager_id + 100, date(1938, 4, 2), **BOT) is False
    log = audit_log(engine, usager_id=usager_id)
    assert [(e.action, e.detail) for e in log[:2]] == [
        ("verify_birth_date", {"match": False}),
        ("verify_birth_date", {"match": True}),
    ]


# -- snapshots -------------------------------------------------------------------------------


def test_snapshot_for_the_usager(engine: Engine) -> None:
    usager_id, _ = load(engine)
    snap = dossier_snapshot(engine, usager_id, role=Role.USAGER, today=TODAY, **BOT)
    assert snap is not None and snap.topics == frozenset(Topic)
    assert snap.demandes is not None
    apa, mdph = snap.demandes
    assert apa.numero == "APA-2025-04567" and apa.circuit is Circuit.DEPARTEMENT
    assert apa.status is not None and apa.status.code == "EN_PAIEMENT"
    assert [s.code for s in apa.history] == [
        "RECU",
        "INCOMPLET",
        "COMPLET",
        "EVALUATION_PLANIFIEE",
        "DECISION_NOTIFIEE",
        "EN_PAIEMENT",
    ]
    assert apa.history[1].detail == "avis d'imposition"
    assert apa.missing_documents is not None
    assert [d.piece for d in apa.missing_documents] == ["RIB"]  # the received one is not missing
    assert apa.decisions is not None and apa.decisions[0].gir == 3
    assert apa.decisions[0].montant_cents == 64_512 and apa.decisions[0].taux_participation == 12.5
    assert mdph.circuit is Circuit.MDPH and mdph.status is not None
    assert mdph.status.code == "RECEVABLE" and mdph.decisions == ()
    # Appointments: from today on, cancelled ones left out, soonest first.
    assert snap.appointments is not None
    assert [(a.type, a.numero) for a in snap.appointments] == [
        ("convocation_mdph", None),
        ("visite_controle", "APA-2025-04567"),
    ]
    assert snap.next_appointment is not None
    assert snap.next_appointment.debut == datetime(2025, 6, 30, 12, tzinfo=UTC)
    # Payments around today: the last made (or ordered), the next to come; no bank details.
    assert snap.last_payment is not None and snap.last_payment.date_paiement == date(2025, 6, 10)
    assert snap.next_payment is not None and snap.next_payment.date_paiement == date(2025, 7, 10)
    assert snap.recent_payments is not None
    assert [p.motif_ecart for p in snap.recent_payments] == [None, "rappel"]
    assert all(p.iban_last4 is None for p in (snap.last_payment, *snap.recent_payments))
    agent = dossier_snapshot(engine, usager_id, role=Role.AGENT, today=TODAY, **AGENT)
    assert agent is not None and agent.last_payment is not None
    assert agent.last_payment.iban_last4 == "1234"


def test_snapshot_for_a_carer_follows_may_know(engine: Engine) -> None:
    usager_id, tiers_id = load(engine)
    snap = dossier_snapshot(
        engine, usager_id, role=Role.AIDANT, tiers_id=tiers_id, today=TODAY, **BOT
    )
    assert snap is not None
    assert snap.topics == {Topic.STATUS, Topic.DOCUMENTS, Topic.APPOINTMENTS}
    assert snap.demandes is not None and snap.demandes[0].decisions is None
    assert snap.demandes[0].missing_documents is not None
    assert snap.appointments is not None
    assert snap.last_payment is None and snap.next_payment is None
    assert snap.recent_payments is None
    # The back office narrows it: status only.
    upsert_tiers(engine, usager_id, replace(FILLE, may_know=frozenset({Topic.STATUS})))
    snap = dossier_snapshot(
        engine, usager_id, role=Role.AIDANT, tiers_id=tiers_id, today=TODAY, **BOT
    )
    assert snap is not None and snap.appointments is None
    assert snap.demandes is not None and snap.demandes[0].missing_documents is None


def test_snapshot_refuses_an_undeclared_tiers(engine: Engine) -> None:
    usager_id, tiers_id = load(engine)
    other = upsert_usager(engine, replace(JEANNE, external_id="P-2", nir_hash=None, phones=()))
    with pytest.raises(PermissionError, match="needs the tiers_id"):
        dossier_snapshot(engine, usager_id, role=Role.AIDANT, today=TODAY, **BOT)
    with pytest.raises(PermissionError, match="not declared on this dossier"):
        dossier_snapshot(engine, other, role=Role.AIDANT, tiers_id=tiers_id, today=TODAY, **BOT)
    with pytest.raises(PermissionError, match="another role"):
        dossier_snapshot(
            engine,
            usager_id,
            role=Role.MANDATAIRE_JUDICIAIRE,
            tiers_id=tiers_id,
            today=TODAY,
            **BOT,
        )
    with pytest.raises(PermissionError, match="takes no tiers_id"):
        dossier_snapshot(engine, usager_id, role=Role.USAGER, tiers_id=tiers_id, today=TODAY, **BOT)


def test_snapshot_of_unknown_usager(engine: Engine) -> None:
    assert dossier_snapshot(engine, 4242, role=Role.AGENT, today=TODAY, **AGENT) is None
    (entry,) = audit_log(engine)
    assert entry.action == "snapshot" and entry.detail == {"found": False}


# -- audit -----------------------------------------------------------------------------------


def test_every_read_is_audited_without_personal_data(engine: Engine) -> None:
    usager_id, tiers_id = load(engine)
    assert audit_log(engine) == []  # the import itself reads nothing
    find_by_phone(engine, USAGER_PHONE, **BOT)
    find_by_dossier_number(engine, APA.numero, **BOT)
    verify_birth_date(engine, usager_id, JEANNE.date_naissance, **BOT)
    dossier_snapshot(engine, usager_id, role=Role.AIDANT, tiers_id=tiers_id, today=TODAY, **BOT)
    contacts_for(engine, usager_id, **AGENT)
    log = audit_log(engine, usager_id=usager_id)
    assert [e.action for e in log] == [
        "contacts",
        "snapshot",
        "verify_birth_date",
        "find_by_dossier_number",
        "find_by_phone",
    ]
    assert [(e.actor, e.via) for e in log] == [("agent42", "api")] + [("bot", "bot")] * 4
    assert log[1].detail == {
        "found": True,
        "role": "aidant",
        "tiers_id": tiers_id,
        "topics": ["appointments", "documents", "status"],
    }
    assert all(e.reason for e in log) and all(e.at.tzinfo is UTC for e in log)
    dumped = repr(log)
    for secret in ("612345678", "Martin", "Jeanne", "1938", APA.numero):
        assert secret not in dumped
    assert [e.action for e in audit_log(engine, actor="agent42")] == ["contacts"]
    assert audit_log(engine, since=datetime.now(UTC) + timedelta(hours=1)) == []


def test_audit_entries_are_deleted_after_their_retention(engine: Engine) -> None:
    from callcenter.store.audit import purge_audit

    usager_id, _ = load(engine)
    find_by_phone(engine, USAGER_PHONE, **BOT)
    contacts_for(engine, usager_id, **AGENT)
    assert purge_audit(engine, datetime.now(UTC) - timedelta(days=1)) == 0  # all recent
    assert len(audit_log(engine)) == 2
    assert purge_audit(engine, datetime.now(UTC) + timedelta(seconds=1)) == 2
    assert audit_log(engine) == []


def test_reads_without_actor_or_reason_are_refused(engine: Engine) -> None:
    usager_id, _ = load(engine)
    with pytest.raises(ValueError, match="reason is required"):
        dossier_snapshot(
            engine, usager_id, role=Role.AGENT, today=TODAY, actor="a", reason=" ", via=Via.API
        )
    with pytest.raises(ValueError, match="actor is required"):
        find_by_phone(engine, USAGER_PHONE, actor="", reason="x", via=Via.BOT)
    with pytest.raises(ValueError):
        audit(engine, actor="a", reason="r", via="fax", action="snapshot")
    assert audit_log(engine) == []


# -- contacts --------------------------------------------------------------------------------


def test_contacts_are_recorded_per_call_and_updated(engine: Engine) -> None:
    usager_id, tiers_id = load(engine)
    t0 = datetime(2025, 6, 12, 9, 30, tzinfo=UTC)
    anonymous = record_contact(engine, channel="bot", started_at=t0, sip_call_id="c-anon")
    first = record_contact(
        engine,
        channel="bot",
        started_at=t0,
        sip_call_id="c1",
        usager_id=usager_id,
        tiers_id=tiers_id,
        bot_path=("welcome", "identify"),
    )
    # At hang-up: the same call, now with its end and outcome; the usager stays.
    again = record_contact(
        engine,
        channel="bot",
        started_at=t0,
        sip_call_id="c1",
        ended_at=t0 + timedelta(minutes=3),
        handled_by="bot",
        bot_path=("welcome", "identify", "dossier_answer"),
        intents=("suivi_dossier_apa",),
        summary="statut APA donné",
        outcome="answered_by_bot",
    )
    assert again == first != anonymous
    later = record_contact(
        engine,
        channel="telephone",
        started_at=t0 + timedelta(days=1),
        usager_id=usager_id,
        handled_by="agent42",
        outcome="transferred",
    )
    assert set_agent_notes(engine, later, "rappeler jeudi", actor="agent42", via=Via.API)
    assert not set_agent_notes(engine, 999_999, "x", actor="agent42", via=Via.API)
    history = contacts_for(engine, usager_id, **AGENT)
    assert [c.id for c in history] == [later, first]
    assert history[0].agent_notes == "rappeler jeudi" and history[0].sip_call_id is None
    call = history[1]
    assert call.usager_id == usager_id and call.tiers_id == tiers_id
    assert call.bot_path == ("welcome", "identify", "dossier_answer")
    assert call.intents == ("suivi_dossier_apa",) and call.outcome == "answered_by_bot"
    assert call.started_at == t0 and call.ended_at == t0 + timedelta(minutes=3)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(CONTACT)).scalar_one() == 3
    assert contacts_for(engine, usager_id, limit=1, **AGENT)[0].id == later
    assert audit_log(engine, usager_id=usager_id)[0].action == "contacts"
    assert audit_log(engine, usager_id=usager_id)[2].action == "agent_notes"
