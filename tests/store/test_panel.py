"""The panel repository on real SQLite and PostgreSQL: passwords, lockout, sessions, wrap-up,
search and the agent's dossier, with their audit rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, select, update

from callcenter.store import agents, db, panel
from callcenter.store import dossiers as repo
from callcenter.store.audit import AUDIT, Via, audit_log
from callcenter.store.dossier_models import TiersRole

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery staple"
FAST = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
"""Cheap parameters: a hash "made with older parameters" for the rehash test."""


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    db.create_schema(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def agent(engine: Engine) -> str:
    agents.add_agent(engine, "c.durand", "Claire Durand", skills={"apa": 4})
    panel.set_password(engine, "c.durand", PASSWORD)
    return "c.durand"


def _agent_row(engine: Engine, login: str) -> dict[str, object]:
    with engine.connect() as conn:
        row = conn.execute(select(panel.AGENT).where(panel.AGENT.c.login == login)).mappings()
        return dict(row.one())


def _auth(engine: Engine, password: str, at: datetime, **kw: object) -> panel.LoginResult:
    return panel.authenticate(engine, "c.durand", password, at, **kw)  # type: ignore[arg-type]


# -- passwords ---------------------------------------------------------------------------------


def test_an_argon2id_hash_is_stored_never_the_password(engine: Engine, agent: str) -> None:
    row = _agent_row(engine, agent)
    stored = str(row["password_hash"])
    assert stored.startswith("$argon2id$v=19$")
    assert PASSWORD not in json.dumps(row, default=str)
    assert row["role"] == "agent" and row["failed_logins"] == 0
    result = _auth(engine, PASSWORD, T0)
    assert (result.status, result.login, result.role) == ("ok", agent, "agent")
    assert _auth(engine, PASSWORD.upper(), T0).status == "bad"
    with pytest.raises(panel.PanelError, match="password: at least 12 characters"):
        panel.set_password(engine, agent, "short")
    with pytest.raises(panel.PanelError, match="role: must be one of"):
        panel.set_password(engine, agent, PASSWORD, role="root")
    with pytest.raises(panel.PanelError, match="login: no agent 'nobody'"):
        panel.set_password(engine, "nobody", PASSWORD)


def test_unknown_disabled_and_passwordless_accounts_get_the_same_answer(
    engine: Engine, agent: str
) -> None:
    agents.add_agent(engine, "b.martin", "Bruno Martin")  # no password
    assert panel.authenticate(engine, "nobody", PASSWORD, T0) == panel.LoginResult("bad")
    assert panel.authenticate(engine, "b.martin", "", T0) == panel.LoginResult("bad")
    agents.set_active(engine, agent, False)
    assert _auth(engine, PASSWORD, T0) == panel.LoginResult("bad")
    # Refusals of unknown/disabled accounts count nothing.
    assert _agent_row(engine, agent)["failed_logins"] == 0


def test_the_hash_is_upgraded_when_the_parameters_change(engine: Engine, agent: str) -> None:
    panel.set_password(engine, agent, PASSWORD, hasher=FAST)
    old = str(_agent_row(engine, agent)["password_hash"])
    assert "m=8192,t=1,p=1" in old
    assert _auth(engine, PASSWORD, T0).status == "ok"  # default hasher: rehash
    new = str(_agent_row(engine, agent)["password_hash"])
    assert new != old and not PasswordHasher().check_needs_rehash(new)
    assert _auth(engine, PASSWORD, T0).status == "ok"
    assert _agent_row(engine, agent)["password_hash"] == new  # no rehash needed any more


def test_lockout_is_counted_in_the_database_by_every_node(
    engine: Engine, agent: str, database_url: str
) -> None:
    other_node = db.make_engine(database_url)
    try:
        limits = {"max_failed": 3, "lockout_s": 600.0}
        assert _auth(engine, "wrong password 1", T0, **limits).status == "bad"
        assert _auth(engine, PASSWORD, T0, **limits).status == "ok"  # success resets
        assert _agent_row(engine, agent)["failed_logins"] == 0
        first = _auth(engine, "wrong password 1", T0, **limits)
        second = panel.authenticate(other_node, agent, "wrong 2", T0, max_failed=3)
        assert (first.status, first.locked_now, second.locked_now) == ("bad", False, False)
        third = panel.authenticate(other_node, agent, "wrong 3", T0, max_failed=3, lockout_s=600)
        assert (third.status, third.locked_now) == ("bad", True)
        # Locked: even the right password is refused, and nothing more is counted.
        locked = _auth(engine, PASSWORD, T0 + timedelta(seconds=100), **limits)
        assert locked.status == "locked" and locked.retry_after_s == pytest.approx(500)
        assert _agent_row(engine, agent)["failed_logins"] == 0
        assert _auth(engine, PASSWORD, T0 + timedelta(seconds=601), **limits).status == "ok"
        assert _agent_row(engine, agent)["locked_until"] is None
        # set-password unlocks.
        for n in range(3):
            _auth(engine, f"wrong again {n}", T0 + timedelta(seconds=700), **limits)
        assert _auth(engine, PASSWORD, T0 + timedelta(seconds=701), **limits).status == "locked"
        panel.set_password(engine, agent, PASSWORD, role="supervisor")
        ok = _auth(engine, PASSWORD, T0 + timedelta(seconds=702), **limits)
        assert (ok.status, ok.role) == ("ok", "supervisor")
    finally:
        other_node.dispose()


# -- sessions ----------------------------------------------------------------------------------


def test_sessions_idle_and_absolute_expiry(engine: Engine, agent: str) -> None:
    new = panel.create_session(engine, agent, now=T0, absolute_s=3600)
    assert len(new.raw_id) >= 43 and new.csrf_token and new.raw_id != new.csrf_token
    with engine.connect() as conn:
        stored = conn.execute(select(panel.SESSION)).mappings().one()
    assert stored["session_hash"] == panel.hash_session_id(new.raw_id) != new.raw_id
    assert new.raw_id not in json.dumps(dict(stored), default=str)

    def at(seconds: float) -> panel.SessionInfo | None:
        return panel.session_for(engine, new.raw_id, T0 + timedelta(seconds=seconds), 900, 3600)

    info = at(10)
    assert info is not None and info.agent.login == agent and info.role == "agent"
    assert info.agent.skills == {"apa": 4} and info.csrf_token == new.csrf_token
    assert info.last_seen == T0  # touched at most every 30 s
    info = at(40)
    assert info is not None and info.last_seen == T0 + timedelta(seconds=40)
    # Active every 10 minutes: alive until the absolute expiry.
    for seconds in range(600, 3600, 600):
        assert at(seconds) is not None
    assert at(3600) is None
    assert at(3000) is None  # deleted, not only refused
    assert panel.session_for(engine, "x" * 43, T0, 900, 3600) is None
    assert panel.session_for(engine, "", T0, 900, 3600) is None

    idle = panel.create_session(engine, agent, now=T0, absolute_s=3600)
    assert panel.session_for(engine, idle.raw_id, T0 + timedelta(seconds=900), 900, 3600)
    # 900 s after the touch at +900: still alive at the limit, gone one second later.
    assert panel.session_for(engine, idle.raw_id, T0 + timedelta(seconds=1801), 900, 3600) is None


def test_logout_revoke_disable_and_purge(engine: Engine, agent: str) -> None:
    a = panel.create_session(engine, agent, now=T0, absolute_s=3600)
    b = panel.create_session(engine, agent, now=T0, absolute_s=3600)
    assert a.raw_id != b.raw_id
    assert panel.delete_session(engine, a.raw_id) is True
    assert panel.delete_session(engine, a.raw_id) is False
    assert panel.session_for(engine, a.raw_id, T0, 900, 3600) is None
    assert panel.session_for(engine, b.raw_id, T0, 900, 3600) is not None
    assert panel.revoke_sessions(engine, agent) == 1
    assert panel.session_for(engine, b.raw_id, T0, 900, 3600) is None
    assert panel.revoke_sessions(engine, "nobody") == 0

    c = panel.create_session(engine, agent, now=T0, absolute_s=3600)
    agents.set_active(engine, agent, False)
    assert panel.session_for(engine, c.raw_id, T0, 900, 3600) is None
    agents.set_active(engine, agent, True)
    assert panel.session_for(engine, c.raw_id, T0, 900, 3600) is None  # revoked for good

    d = panel.create_session(engine, agent, now=T0, absolute_s=3600)
    panel.set_password(engine, agent, PASSWORD + "!")
    assert panel.session_for(engine, d.raw_id, T0, 900, 3600) is None

    panel.create_session(engine, agent, now=T0, absolute_s=100)
    panel.create_session(engine, agent, now=T0 + timedelta(seconds=50), absolute_s=3600)
    live = panel.create_session(engine, agent, now=T0 + timedelta(seconds=1000), absolute_s=3600)
    assert panel.purge_expired_sessions(engine, T0 + timedelta(seconds=100)) == 1
    assert panel.purge_expired_sessions(engine, T0 + timedelta(seconds=1001), idle_s=900) == 1
    assert panel.session_for(engine, live.raw_id, T0 + timedelta(seconds=1001), 900, 3600)


# -- dossiers ----------------------------------------------------------------------------------


def _seed(engine: Engine) -> dict[str, int]:
    helene = repo.upsert_usager(
        engine,
        repo.UsagerRecord(
            external_id="P1",
            civilite="Mme",
            nom="MARTIN",
            prenom="Hélène",
            date_naissance=date(1942, 3, 5),
            besoins=("malentendant",),
            phones=("06 12 34 56 78",),
        ),
    )
    repo.upsert_tiers(
        engine,
        helene,
        repo.TiersRecord(
            external_id="T1",
            nom="Martin",
            prenom="Paul",
            role=TiersRole.AIDANT,
            relation="fils",
            phones=("0698765432",),
        ),
    )
    repo.upsert_demande(
        engine,
        helene,
        repo.DemandeRecord(
            numero="APA-2026-000123",
            type="APA_DOMICILE",
            date_depot=date(2026, 9, 1),
            statuses=(
                repo.StatusRecord("RECU", date(2026, 9, 3)),
                repo.StatusRecord("INCOMPLET", date(2026, 9, 5), "<b>avis</b> d'imposition"),
                repo.StatusRecord("COMPLET", date(2026, 9, 10)),
            ),
            pieces=(
                repo.PieceRecord("RIB", date(2026, 9, 5), date(2026, 9, 20)),
                repo.PieceRecord("Avis d'imposition", date(2026, 9, 5), None, date(2026, 9, 8)),
            ),
            decisions=(
                repo.DecisionRecord(
                    "APA",
                    "accord",
                    date(2026, 10, 15),
                    date_debut=date(2026, 9, 10),
                    montant_cents=45000,
                    gir=3,
                ),
            ),  # fmt: skip
        ),
    )
    repo.upsert_rendez_vous(
        engine,
        helene,
        repo.RendezVousRecord(
            "evaluation_domicile",
            datetime(2026, 12, 10, 14, 0, tzinfo=UTC),
            lieu="à domicile",
            numero="APA-2026-000123",
        ),
    )
    repo.upsert_paiement(
        engine,
        helene,
        repo.PaiementRecord(
            "APA", date(2026, 11, 1), date(2026, 11, 10), 45000, "verse",
            montant_verse_cents=40000, iban_last4="1234",
        ),
    )  # fmt: skip
    heloise = repo.upsert_usager(
        engine,
        repo.UsagerRecord(
            external_id="P2", nom="Marchand", prenom="Héloïse", date_naissance=date(1950, 1, 2)
        ),
    )
    oeuvre = repo.upsert_usager(
        engine,
        repo.UsagerRecord(
            external_id="P3",
            nom="Cœurdevey",
            prenom="Élodie",
            nom_naissance="Dupont",
            date_naissance=date(1960, 5, 6),
        ),
    )
    ghost = repo.upsert_usager(
        engine,
        repo.UsagerRecord(
            external_id="P4", nom="Martin", prenom="Helene", date_naissance=date(1942, 3, 5)
        ),
    )
    with engine.begin() as conn:
        conn.execute(
            update(repo.USAGER).where(repo.USAGER.c.id == ghost).values(merged_into=helene)
        )
    return {"helene": helene, "heloise": heloise, "elodie": oeuvre, "ghost": ghost}


def _search(engine: Engine, query: str) -> list[int]:
    found = panel.search_dossiers(engine, query, actor="c.durand", reason="appel entrant")
    return [r.usager_id for r in found]


def test_search_by_phone_numero_and_name(engine: Engine) -> None:
    ids = _seed(engine)
    h, hl, e = ids["helene"], ids["heloise"], ids["elodie"]
    assert _search(engine, "+33612345678") == [h]
    assert _search(engine, "06 12 34 56 78") == [h]
    assert _search(engine, "06 98 76 54 32") == [h]  # the carer's number
    assert _search(engine, "0611111111") == []
    assert _search(engine, "apa-2026-000123") == [h]
    assert _search(engine, " APA 2026 000123 ") == [h]
    assert _search(engine, "2026000123") == [h]  # digits as keyed
    assert _search(engine, "APA-2026-999999") == []
    assert _search(engine, "martin") == [h]  # the merged Helene Martin never matches
    assert _search(engine, "MAR") == [hl, h]  # by name: Marchand, MARTIN
    assert _search(engine, "hél") == [hl, h]
    assert _search(engine, "HELENE mar") == [h]
    assert _search(engine, "helo") == [hl]
    assert _search(engine, "coeur") == [e] == _search(engine, "CŒUR")
    assert _search(engine, "elodie dupont") == [e]  # nom de naissance
    assert _search(engine, "ÉLO") == [e]
    assert _search(engine, "lene") == []  # a prefix, not a substring
    assert _search(engine, "m%") == [] and _search(engine, "_a") == []  # LIKE escaped
    assert _search(engine, "") == [] and _search(engine, "x") == []
    [result] = panel.search_dossiers(engine, "06 12 34 56 78", actor="c.durand", reason="appel")
    assert result.as_json() == {
        "usager_id": h,
        "display_name": "Mme Hélène MARTIN",
        "birth_year": 1942,
        "numeros": ["APA-2026-000123"],
    }
    rows = [r for r in audit_log(engine, actor="c.durand", limit=100) if r.action == "search"]
    assert len(rows) == 23 and {r.via for r in rows} == {Via.PANEL.value}
    assert rows[0].usager_id == h and rows[0].detail == {
        "kind": "phone",
        "matches": 1,
        "usager_ids": [h],
    }
    assert {r.detail["kind"] for r in rows} == {"phone", "numero", "name", "none"}


def test_agent_dossier_json(engine: Engine) -> None:
    ids = _seed(engine)
    h = ids["helene"]
    repo.record_contact(
        engine,
        channel="telephone",
        started_at=datetime(2026, 11, 20, 10, 0, tzinfo=UTC),
        sip_call_id="old-call",
        usager_id=h,
        handled_by="bot",
        intents=("apa_dossier_statut",),
        outcome="transferred",
    )
    panel.save_wrapup(
        engine,
        sip_call_id="old-call",
        agent_login="c.durand",
        motif="Pièce manquante",
        note="RIB <script>alert(1)</script>",
        resolved=False,
        follow_up="rappeler",
        follow_up_due=date(2026, 12, 5),
        now=datetime(2026, 11, 20, 10, 20, tzinfo=UTC),
    )
    dossier = panel.agent_dossier(
        engine, h, actor="c.durand", reason="appel", today=date(2026, 12, 1)
    )
    assert dossier is not None
    json.dumps(dossier)  # plain JSON: dates are ISO strings
    assert {k: dossier[k] for k in ("usager_id", "civilite", "nom", "prenom", "langue")} == {
        "usager_id": h,
        "civilite": "Mme",
        "nom": "MARTIN",
        "prenom": "Hélène",
        "langue": "fr",
    }
    assert dossier["besoins"] == ["malentendant"] and dossier["mesure_protection"] is None
    [demande] = dossier["demandes"]
    assert demande["numero"] == "APA-2026-000123" and demande["date_depot"] == "2026-09-01"
    assert demande["type"] == "APA_DOMICILE" and demande["circuit"] == "departement"
    assert demande["status"] == {
        "code": "COMPLET",
        "label": "Dossier complet",
        "date": "2026-09-10",
        "detail": None,
    }
    assert [s["code"] for s in demande["history"]] == ["RECU", "INCOMPLET", "COMPLET"]
    assert demande["history"][1]["label"] == "Pièces manquantes"
    assert demande["history"][1]["detail"] == "<b>avis</b> d'imposition"
    assert demande["missing_documents"] == [
        {"piece": "RIB", "date_demande": "2026-09-05", "date_relance": "2026-09-20"}
    ]
    assert demande["decisions"] == [
        {
            "prestation": "APA",
            "sens": "accord",
            "date_decision": "2026-10-15",
            "date_debut": "2026-09-10",
            "date_fin": None,
            "montant_cents": 45000,
            "gir": 3,
        }
    ]
    assert dossier["appointments"] == [
        {
            "type": "evaluation_domicile",
            "debut": "2026-12-10T14:00:00+00:00",
            "lieu": "à domicile",
            "numero": "APA-2026-000123",
        }
    ]
    assert dossier["payments"] == [
        {
            "prestation": "APA",
            "periode": "2026-11-01",
            "date_paiement": "2026-11-10",
            "montant_verse_cents": 40000,
            "statut": "verse",
            "motif_ecart": None,
        }
    ]
    assert "1234" not in json.dumps(dossier)  # no bank detail in the panel
    assert dossier["carers"] == [
        {
            "role": "aidant",
            "civilite": None,
            "nom": "Martin",
            "prenom": "Paul",
            "may_know": ["appointments", "documents", "status"],
        }
    ]
    assert dossier["contacts"] == [
        {
            "started_at": "2026-11-20T10:00:00+00:00",
            "channel": "telephone",
            "handled_by": "c.durand",
            "outcome": "transferred",
            "intents": ["apa_dossier_statut"],
            "summary": None,
            "agent_notes": "RIB <script>alert(1)</script>",
            "wrapup_motif": "Pièce manquante",
            "first_contact_resolved": False,
            "follow_up": "rappeler",
            "follow_up_due": "2026-12-05",
        }
    ]
    assert panel.agent_dossier(engine, 9999, actor="c.durand", reason="x", today=T0.date()) is None
    actions = [(r.action, r.via, r.usager_id) for r in audit_log(engine, actor="c.durand")]
    assert ("snapshot", "panel", h) in actions and ("panel_dossier", "panel", h) in actions
    assert ("wrapup", "panel", h) in actions


def test_agent_dossier_of_a_merged_usager_is_none(engine: Engine) -> None:
    ids = _seed(engine)
    found = panel.agent_dossier(engine, ids["ghost"], actor="c.durand", reason="x", today=T0.date())
    assert found is None


# -- wrap-up -----------------------------------------------------------------------------------


def _contact(engine: Engine, call_id: str) -> dict[str, object]:
    with engine.connect() as conn:
        row = conn.execute(
            select(repo.CONTACT).where(repo.CONTACT.c.sip_call_id == call_id)
        ).mappings()
        return dict(row.one())


def test_wrapup_before_the_call_record_creates_the_contact_and_is_kept(engine: Engine) -> None:
    ids = _seed(engine)
    cid = panel.save_wrapup(
        engine,
        sip_call_id="call-1",
        agent_login="c.durand",
        motif="Information APA",
        note="  A demandé le délai.  ",
        resolved=True,
        follow_up=None,
        follow_up_due=None,
        now=T0 + timedelta(minutes=5),
    )
    row = _contact(engine, "call-1")
    assert row["id"] == cid and row["channel"] == "telephone" and row["handled_by"] == "c.durand"
    assert row["agent_notes"] == "A demandé le délai." and row["first_contact_resolved"] is True
    assert row["usager_id"] is None
    assert not [r for r in audit_log(engine) if r.action == "wrapup"]  # no usager: no read
    # The call's own record at hang-up (as callcenter.identity writes it).
    again = repo.record_contact(
        engine,
        channel="bot",
        started_at=T0,
        ended_at=T0 + timedelta(minutes=4),
        sip_call_id="call-1",
        usager_id=ids["helene"],
        handled_by="bot",
        bot_path=("accueil", "menu_apa"),
        intents=("apa_dossier_statut",),
        outcome="transferred",
    )
    row = _contact(engine, "call-1")
    assert again == cid and row["usager_id"] == ids["helene"] and row["channel"] == "bot"
    assert row["started_at"] is not None and row["bot_path"] == ["accueil", "menu_apa"]
    assert (row["agent_notes"], row["wrapup_motif"], row["first_contact_resolved"]) == (
        "A demandé le délai.",
        "Information APA",
        True,
    )
    assert row["handled_by"] == "c.durand"


def test_wrapup_after_the_call_record_updates_it(engine: Engine) -> None:
    ids = _seed(engine)
    cid = repo.record_contact(
        engine,
        channel="telephone",
        started_at=T0,
        sip_call_id="call-2",
        usager_id=ids["heloise"],
        handled_by="bot",
        outcome="transferred",
    )
    assert (
        panel.save_wrapup(
            engine,
            sip_call_id="call-2",
            agent_login="c.durand",
            motif="Paiement",
            note=None,
            resolved=None,
            follow_up="Rappeler après le 10",
            follow_up_due=date(2026, 12, 11),
            now=T0 + timedelta(minutes=9),
        )
        == cid
    )
    row = _contact(engine, "call-2")
    assert (row["wrapup_motif"], row["follow_up"], row["handled_by"]) == (
        "Paiement",
        "Rappeler après le 10",
        "c.durand",
    )
    assert row["follow_up_due"] == date(2026, 12, 11) and row["first_contact_resolved"] is None
    assert row["outcome"] == "transferred" and row["usager_id"] == ids["heloise"]
    # A later record of the call (no follow-up of its own) loses nothing.
    repo.record_contact(
        engine,
        channel="telephone",
        started_at=T0,
        ended_at=T0 + timedelta(minutes=8),
        sip_call_id="call-2",
        handled_by="bot",
        outcome="answered_by_agent",
    )
    row = _contact(engine, "call-2")
    assert (row["follow_up"], row["follow_up_due"], row["wrapup_motif"]) == (
        "Rappeler après le 10",
        date(2026, 12, 11),
        "Paiement",
    )
    assert row["outcome"] == "answered_by_agent" and row["handled_by"] == "c.durand"
    [wrapup] = [r for r in audit_log(engine) if r.action == "wrapup"]
    assert (wrapup.actor, wrapup.via, wrapup.usager_id) == ("c.durand", "panel", ids["heloise"])
    assert wrapup.detail == {"contact_id": cid, "created": False}
    # The wrap-up of an unknown call links the call's usager when given.
    linked = panel.save_wrapup(
        engine,
        sip_call_id="call-3",
        agent_login="c.durand",
        motif="Autre",
        note="",
        resolved=False,
        follow_up="",
        follow_up_due=None,
        now=T0,
        usager_id=ids["helene"],
    )
    row = _contact(engine, "call-3")
    assert row["id"] == linked and row["usager_id"] == ids["helene"]
    assert row["agent_notes"] is None and row["follow_up"] is None
    for bad, message in (
        ({"motif": " "}, "motif: required"),
        ({"motif": "x" * 65}, "motif: required, at most 64"),
        ({"note": "x" * 4001}, "note: at most 4000"),
        ({"follow_up": "x" * 201}, "follow_up: at most 200"),
        ({"sip_call_id": ""}, "call_id: required"),
    ):
        fields: dict[str, object] = {
            "sip_call_id": "call-4",
            "agent_login": "c.durand",
            "motif": "Autre",
            "note": None,
            "resolved": None,
            "follow_up": None,
            "follow_up_due": None,
            "now": T0,
        }
        fields.update(bad)
        with pytest.raises(panel.PanelError, match=message):
            panel.save_wrapup(engine, **fields)  # type: ignore[arg-type]


def test_audit_rows_hold_no_personal_data(engine: Engine) -> None:
    ids = _seed(engine)
    queries = ("06 12 34 56 78", "APA-2026-000123", "hélène martin", "Cœurdevey", "2026000123")
    for q in queries:
        panel.search_dossiers(engine, q, actor="c.durand", reason="appel entrant")
    panel.agent_dossier(engine, ids["helene"], actor="c.durand", reason="appel", today=T0.date())
    panel.save_wrapup(
        engine,
        sip_call_id="call-9",
        agent_login="c.durand",
        motif="Autre",
        note="Mme Martin, 0612345678",
        resolved=None,
        follow_up=None,
        follow_up_due=None,
        now=T0,
        usager_id=ids["helene"],
    )
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(AUDIT)).mappings()]
    assert len(rows) >= len(queries) + 3
    dumped = json.dumps(rows, default=str, ensure_ascii=False).lower()
    for secret in (
        "0612345678",
        "+33612345678",
        "612345678",
        "martin",
        "hélène",
        "helene",
        "cœurdevey",
        "1942-03-05",
        "2026000123",
        "apa-2026-000123",
    ):
        assert secret not in dumped, secret
