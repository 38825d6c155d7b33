"""Caller identification and spoken dossier answers against a real store (SQLite file)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from callcenter.identity import IdentityService, Verification, contact_summary
from callcenter.store import db
from callcenter.store import dossiers as repo
from callcenter.store.dossier_models import DEFAULT_MAY_KNOW, PaymentStatus, TiersRole, Topic
from faq import dossier as spoken
from tests.store.seed import seed_apa_usager

TODAY = date(2025, 6, 2)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    db.create_schema(engine)
    usager = seed_apa_usager(engine, deposited=date(2025, 4, 1))
    repo.upsert_tiers(
        engine,
        usager,
        repo.TiersRecord(
            external_id="T1",
            nom="Martin",
            prenom="Paul",
            role=TiersRole.AIDANT,
            may_know=frozenset({Topic.STATUS}),
            phones=("0698765432",),
        ),
    )
    return engine


async def test_usager_identified_by_number_and_birth_date(engine: Engine) -> None:
    service = IdentityService(engine)
    assert await service.lookup_caller("0612345678", call_id="c1") is True
    assert await service.lookup_caller("0600000000", call_id="c1") is False
    assert await service.lookup_caller(None, call_id="c1") is False
    who = await service.verify(None, "20250456", "05031942", call_id="c1")
    assert who.result == "ok" and who.role == "usager"
    by_caller_id = await service.verify("0612345678", None, "05031942", call_id="c1")
    assert by_caller_id.result == "ok" and by_caller_id.usager_id == who.usager_id
    answer = await service.dossier_answer(who, "suivi_dossier_apa", TODAY, call_id="c1")
    assert answer is not None and answer.text
    assert "complète depuis le dimanche vingt avril" in answer.text
    assert "0456" not in answer.text and "Jeanne" not in answer.text


async def test_carer_is_told_what_their_role_allows(engine: Engine) -> None:
    service = IdentityService(engine)
    who = await service.verify("0698765432", None, "05031942", call_id="c2")
    assert who.result == "ok" and who.role == "aidant" and who.tiers_id is not None
    status = await service.dossier_answer(who, "suivi_dossier_apa", TODAY, call_id="c2")
    assert status is not None and "complète" in status.text
    payments = await service.dossier_answer(who, "paiement_date", TODAY, call_id="c2")
    assert payments is not None and "euro" not in payments.text


async def test_guessing_is_throttled(engine: Engine) -> None:
    clock = [0.0]
    service = IdentityService(engine, max_failures=3, window_s=60, clock=lambda: clock[0])
    for _ in range(3):
        miss = await service.verify("0600000001", "20250456", "01011950", call_id="c3")
        assert miss.result == "mismatch"
    # The right birth date no longer helps from this number, nor on this dossier.
    assert (await service.verify("0600000001", "20250456", "05031942", call_id="c3")).result == (
        "throttled"
    )
    assert (await service.verify("0600000002", "20250456", "05031942", call_id="c4")).result == (
        "throttled"
    )
    clock[0] = 61.0
    assert (await service.verify("0600000002", "20250456", "05031942", call_id="c4")).result == (
        "ok"
    )


async def test_throttle_keys_cannot_be_dodged(engine: Engine) -> None:
    clock = [0.0]
    service = IdentityService(engine, max_failures=2, window_s=60, clock=lambda: clock[0])
    # The caller's own number, written two ways: one budget.
    for caller in ("0612345678", "+33 6 12 34 56 78"):
        assert (await service.verify(caller, None, "01011950", call_id="a")).result == "mismatch"
    assert (await service.verify("0033612345678", None, "05031942", call_id="a")).result == (
        "throttled"
    )
    clock[0] = 61.0
    # One usager's budget, whatever numbers the guesses come from and however the numéro is
    # written (the carer's number reaches the same usager as the usager's own).
    assert (
        await service.verify("0600000009", "APA-2025-0456", "01011950", call_id="b")
    ).result == ("mismatch")
    assert (await service.verify("0698765432", None, "02021950", call_id="b")).result == (
        "mismatch"
    )
    assert (await service.verify("0600000010", "20250456", "05031942", call_id="b")).result == (
        "throttled"
    )
    clock[0] = 122.0
    assert (await service.verify("0600000010", "20250456", "05031942", call_id="b")).result == "ok"


async def test_parallel_guesses_share_the_budget(engine: Engine) -> None:
    service = IdentityService(engine, max_failures=3, window_s=60)
    results = await asyncio.gather(
        *(
            service.verify(f"06000001{i:02d}", "20250456", f"{i + 1:02d}011950", call_id=f"p{i}")
            for i in range(12)
        )
    )
    assert sorted(r.result for r in results) == ["mismatch"] * 3 + ["throttled"] * 9
    checks = [e for e in repo.audit_log(engine, limit=1000) if e.action == "verify_birth_date"]
    assert len(checks) <= 3


async def test_unknown_dossier_and_contact_history(engine: Engine) -> None:
    service = IdentityService(engine)
    assert (await service.verify(None, "99999999", "05031942", call_id="c5")).result == "mismatch"
    assert await service.dossier_answer(Verification("mismatch"), "x", TODAY, call_id="c5") is None
    who = await service.verify(None, "20250456", "05031942", call_id="c6")
    await service.record_contact(
        sip_call_id="c6",
        started_at=datetime(2025, 6, 2, 8, 0, tzinfo=UTC),
        ended_at=datetime(2025, 6, 2, 8, 3, tzinfo=UTC),
        who=who,
        bot_path=("ask_question", "identify_caller"),
        intents=("suivi_dossier_apa",),
        outcome="satisfied",
        summary=contact_summary(["où en est mon dossier", "  ", "oui"]),
    )
    assert who.usager_id is not None
    contacts = repo.contacts_for(
        engine, who.usager_id, actor="test", reason="check", via=repo.Via.CLI
    )
    assert [c.sip_call_id for c in contacts] == ["c6"]
    assert contacts[0].intents == ("suivi_dossier_apa",) and contacts[0].channel == "bot"
    assert contacts[0].summary == "« où en est mon dossier » · « oui »"
    # The caller's words follow the transcripts' retention; the contact itself stays.
    assert repo.purge_contact_summaries(engine, datetime(2025, 6, 2, 8, 0, tzinfo=UTC)) == 0
    assert repo.purge_contact_summaries(engine, datetime(2025, 6, 2, 8, 1, tzinfo=UTC)) == 1
    [kept] = repo.contacts_for(
        engine, who.usager_id, actor="test", reason="check", via=repo.Via.CLI
    )
    assert kept.summary is None and kept.intents == ("suivi_dossier_apa",)
    assert repo.purge_contact_summaries(engine, datetime(2026, 1, 1, tzinfo=UTC)) == 0


def test_contact_summary_keeps_the_newest_words() -> None:
    assert contact_summary([]) is None and contact_summary([" "]) is None
    long = contact_summary(["a" * 300, "dernière phrase"], limit=100)
    assert long is not None and len(long) == 100
    assert long.startswith("…") and long.endswith("« dernière phrase »")


def test_store_and_spoken_templates_agree_on_roles_topics_and_payment_states() -> None:
    """The store and faq/dossier.py each define these (faq cannot import the store): same values."""
    assert {t.value for t in Topic} == {p.value for p in spoken.Permission}
    assert {s.value for s in PaymentStatus} == {s.value for s in spoken.PaymentStatus}
    for role, topics in DEFAULT_MAY_KNOW.items():
        permissions = spoken.ROLE_DEFAULT_PERMISSIONS[spoken.Role(role.value)]
        assert {t.value for t in topics} == {p.value for p in permissions}, role
    assert {r.value for r in TiersRole} | {"usager"} == {r.value for r in spoken.Role}
