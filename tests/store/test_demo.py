"""Demo dossiers: deterministic, realistic, consistent, idempotent (issue 4, part 3)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, select

from callcenter.identity import dossier_view
from callcenter.store import db, demo
from callcenter.store import dossiers as repo
from callcenter.store.audit import Via
from callcenter.store.dossier_models import (
    DEPARTEMENT_STATUSES,
    DOSSIER_MODELS,
    MDPH_STATUSES,
    STATUSES_BY_CIRCUIT,
    Circuit,
    PaymentStatus,
    TiersRole,
    Topic,
    circuit_of,
)
from faq import dossier as spoken

TODAY = date(2026, 12, 7)
SEED = 7
SAMPLE = 1000


@pytest.fixture(scope="module")
def sample() -> list[demo.DemoUsager]:
    return list(demo.generate(SAMPLE, SEED, TODAY))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    db.create_schema(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def dump(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every dossier table except the audit log, in id order."""
    with engine.connect() as conn:
        return {
            model.__tablename__: [  # type: ignore[misc]
                tuple(row)
                for row in conn.execute(
                    select(model.__table__).order_by(model.__table__.c.id)  # type: ignore[attr-defined]
                )
            ]
            for model in DOSSIER_MODELS
            if model.__tablename__ != "audit"
        }


def current(d: repo.DemandeRecord) -> str:
    return d.statuses[-1].code


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_same_usagers_and_a_prefix_for_a_smaller_count(
    sample: list[demo.DemoUsager],
) -> None:
    again = list(demo.generate(SAMPLE, SEED, TODAY))
    assert again == sample
    assert list(demo.generate(50, SEED, TODAY)) == sample[:50]
    other = list(demo.generate(50, SEED + 1, TODAY))
    assert [u.usager.nom for u in other] != [u.usager.nom for u in sample[:50]]
    assert {u.usager.external_id for u in other}.isdisjoint(
        u.usager.external_id for u in sample[:50]
    )
    assert all(u.usager.external_id.startswith(demo.DEMO_PREFIX) for u in sample)


def test_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        list(demo.generate(-1, SEED, TODAY))


# -- realism ---------------------------------------------------------------------------------


def test_populations_and_types_follow_the_domain_facts(sample: list[demo.DemoUsager]) -> None:
    populations = Counter(u.population for u in sample)
    assert 0.48 <= populations[demo.Population.APA] / SAMPLE <= 0.62
    mdph = populations[demo.Population.MDPH_ADULTE] + populations[demo.Population.MDPH_ENFANT]
    assert 0.70 <= populations[demo.Population.MDPH_ADULTE] / mdph <= 0.84
    types = Counter(d.type for u in sample for d in u.demandes)
    assert types["APA_DOMICILE"] > 2.5 * types["APA_ETAB"] > 0
    for kind in ("AAH", "PCH", "CMI_INV", "CMI_PRIO", "CMI_STAT", "RQTH", "AEEH", "ORIENT_ESMS"):
        assert types[kind] > 0, kind
    assert types["AAH"] + types["RQTH"] > types["PCH"]
    # MDPH demandes are deposited in groups: more demandes than MDPH usagers.
    assert sum(n for k, n in types.items() if circuit_of(k) is Circuit.MDPH) > 1.5 * mdph


def test_birth_dates_match_the_population(sample: list[demo.DemoUsager]) -> None:
    ranges = {
        demo.Population.APA: (60, 101),
        demo.Population.MDPH_ADULTE: (20, 60),
        demo.Population.MDPH_ENFANT: (0, 20),
    }
    for u in sample:
        born = u.usager.date_naissance
        age = TODAY.year - born.year - ((TODAY.month, TODAY.day) < (born.month, born.day))
        low, high = ranges[u.population]
        assert low <= age < high, (u.population, age)
        if u.population != demo.Population.MDPH_ENFANT:
            assert u.usager.civilite in ("Mme", "M.")
        assert "AEEH" not in {d.type for d in u.demandes} or age < 20
        assert "AAH" not in {d.type for d in u.demandes} or age >= 20


def test_statuses_are_spread_over_both_sequences(sample: list[demo.DemoUsager]) -> None:
    by_circuit: dict[Circuit, Counter[str]] = {c: Counter() for c in Circuit}
    for u in sample:
        for d in u.demandes:
            by_circuit[circuit_of(d.type)][current(d)] += 1
    dep, mdph = by_circuit[Circuit.DEPARTEMENT], by_circuit[Circuit.MDPH]
    # Every status of facts §9 but the draft-only and rare ones shows up in 1 000 usagers.
    assert set(DEPARTEMENT_STATUSES) - set(dep) <= {"BROUILLON", "URGENCE_FORFAIT"}
    assert set(MDPH_STATUSES) - set(mdph) <= {"EVALUATION_COMPLEMENTAIRE", "CONCILIATION"}
    # Most APA files are paid; a real share is still in instruction.
    in_instruction = sum(dep[s] for s in DEPARTEMENT_STATUSES[:7])
    assert dep["EN_PAIEMENT"] > 0.2 * sum(dep.values())
    assert in_instruction > 0.15 * sum(dep.values())


def test_phones_are_fiction_valid_and_own_per_person(sample: list[demo.DemoUsager]) -> None:
    own: list[str] = []
    for u in sample:
        numbers = [*u.usager.phones, *(p for t in u.tiers for p in t.phones)]
        for raw in numbers:
            assert raw.replace(" ", "").startswith("019900"), raw
            assert repo.normalize_phone(raw) is not None, raw
        own.extend(u.usager.phones)
        own.extend(
            p for t in u.tiers if t.role != TiersRole.MANDATAIRE_JUDICIAIRE for p in t.phones
        )
    assert len(own) == len(set(own))


def test_dossier_numbers_are_unique_even_as_keyed_digits(sample: list[demo.DemoUsager]) -> None:
    numeros = [d.numero for u in sample for d in u.demandes]
    assert len(numeros) == len(set(numeros))
    digits = ["".join(c for c in n if c.isdigit()) for n in numeros]
    assert len(digits) == len(set(digits))
    for u in sample:
        for d in u.demandes:
            prefix, year, number = d.numero.split("-")
            if circuit_of(d.type) is Circuit.MDPH:
                assert prefix == "MDPH"
            else:
                assert prefix in ("APA", "ASH", "AM", "TA")
            assert int(year) == d.statuses[0].date.year and len(number) >= 5


# -- consistency -----------------------------------------------------------------------------


def test_histories_walk_the_sequences_in_order_up_to_today(sample: list[demo.DemoUsager]) -> None:
    for u in sample:
        for d in u.demandes:
            codes = STATUSES_BY_CIRCUIT[circuit_of(d.type)]
            steps = [codes.index(s.code) for s in d.statuses]
            dates = [s.date for s in d.statuses]
            assert steps == sorted(set(steps)), (d.numero, [s.code for s in d.statuses])
            assert dates == sorted(set(dates)) and dates[-1] <= TODAY, d.numero
            if d.date_recevabilite is not None:
                months = 4 if circuit_of(d.type) is Circuit.MDPH else 2
                assert d.date_limite_legale == spoken.add_months(d.date_recevabilite, months)


def test_each_status_comes_with_what_it_implies(sample: list[demo.DemoUsager]) -> None:
    decided = {"DECISION_NOTIFIEE", "DROITS_OUVERTS", "EN_PAIEMENT", "NOTIFIEE"}
    decided |= {"DROIT_OUVERT", "REJET", "MISE_EN_OEUVRE", "RAPO_EN_COURS", "RECOURS_RAPO"}
    seen: Counter[str] = Counter()
    for u in sample:
        numeros = {d.numero for d in u.demandes}
        for d in u.demandes:
            status = current(d)
            missing = [p for p in d.pieces if p.date_recue is None]
            if status in ("INCOMPLET", "EN_ATTENTE_PIECES"):
                assert missing, d.numero
                seen["pieces"] += 1
            else:
                assert not missing, d.numero
            if status == "EVALUATION_PLANIFIEE":
                visits = [
                    r
                    for r in u.rendez_vous
                    if r.numero == d.numero and r.type == "evaluation_domicile"
                ]
                assert visits and visits[-1].debut.date() > TODAY
                assert visits[-1].debut.weekday() < 5
                seen["visit"] += 1
            if status in decided:
                assert d.decisions and d.decisions[0].date_notification is not None, d.numero
                assert d.decisions[0].date_notification <= TODAY
                rejected = d.decisions[0].sens == "rejet"
                if status in ("REJET", "RAPO_EN_COURS", "RECOURS_RAPO"):
                    assert rejected, d.numero
                elif status != "DECISION_NOTIFIEE":  # an APA refusal is notified as such
                    assert not rejected, d.numero
            if status in ("DECISION_PRISE", "INSCRIT_CDAPH", "EN_EVALUATION", "COMPLET"):
                assert not d.decisions, d.numero
        for p in u.paiements:
            assert p.numero in numeros
            if p.statut in (PaymentStatus.VERSE, PaymentStatus.MANDATE):
                assert p.date_paiement <= TODAY
            if p.statut == PaymentStatus.PREVU:
                assert p.date_paiement > TODAY
            seen[f"motif:{p.motif_ecart}"] += p.motif_ecart is not None
            seen[f"statut:{p.statut}"] += 1
        paid = {p.numero for p in u.paiements}
        for d in u.demandes:
            if current(d) == "EN_PAIEMENT":
                assert d.numero in paid
                assert any(
                    p.numero == d.numero and p.statut == PaymentStatus.PREVU for p in u.paiements
                )
            if current(d) == "SUSPENDU":
                assert any(
                    p.numero == d.numero and p.statut == PaymentStatus.SUSPENDU for p in u.paiements
                )
    assert seen["pieces"] and seen["visit"]
    for motif in ("rappel", "regularisation_janvier", "indu", "suspension_hospitalisation"):
        assert seen[f"motif:{motif}"], motif
    for statut in (PaymentStatus.VERSE, PaymentStatus.PREVU, PaymentStatus.SUSPENDU):
        assert seen[f"statut:{statut}"], statut
    # TODAY is the day before the 8th: this month's payment is still to come.
    assert not seen[f"statut:{PaymentStatus.MANDATE}"]


def test_a_payment_ordered_in_the_last_days_is_mandated() -> None:
    after_pay_day = date(2026, 12, 9)  # the 8th is a Tuesday
    statuts = Counter(
        (p.date_paiement, p.statut)
        for u in demo.generate(200, SEED, after_pay_day)
        for p in u.paiements
    )
    assert statuts[(date(2026, 12, 8), PaymentStatus.MANDATE)] > 0
    assert not statuts[(date(2026, 12, 8), PaymentStatus.VERSE)]
    assert statuts[(date(2026, 11, 6), PaymentStatus.VERSE)] > 0


def test_carers_and_guardians(sample: list[demo.DemoUsager]) -> None:
    roles = Counter(t.role for u in sample for t in u.tiers)
    assert roles[TiersRole.AIDANT] > 0.1 * SAMPLE
    assert roles[TiersRole.MANDATAIRE_JUDICIAIRE] > 0
    for u in sample:
        for t in u.tiers:
            if t.role == TiersRole.AIDANT:
                assert t.may_know is not None
                assert {Topic.STATUS, Topic.APPOINTMENTS} <= t.may_know
                assert Topic.PAYMENTS not in t.may_know
            if t.role == TiersRole.MANDATAIRE_JUDICIAIRE:
                assert u.usager.mesure_protection is not None and t.mandat_verifie
    protected_paid = [u for u in sample if u.usager.mesure_protection and u.paiements]
    assert protected_paid


def _answers(
    engine: Engine, usager: demo.DemoUsager
) -> Iterator[tuple[repo.Role, frozenset[Topic], str, spoken.SpokenAnswer]]:
    """Every dossier intent answered to the usager and to each tiers declared with a phone."""
    ref = repo.find_by_dossier_number(
        engine, usager.demandes[0].numero, actor="test", reason="test", via=Via.CLI
    )
    assert ref is not None
    readers: list[tuple[repo.Role, int | None]] = [(repo.Role.USAGER, None)]
    for tiers in usager.tiers:
        for caller in repo.find_by_phone(
            engine, tiers.phones[0], actor="test", reason="test", via=Via.CLI
        ):
            if caller.usager_id == ref.usager_id and caller.tiers_id is not None:
                readers.append((caller.role, caller.tiers_id))
    for role, tiers_id in readers:
        snapshot = repo.dossier_snapshot(
            engine,
            ref.usager_id,
            role=role,
            tiers_id=tiers_id,
            actor="test",
            reason="test",
            via=Via.CLI,
            today=TODAY,
        )
        assert snapshot is not None
        view = dossier_view(snapshot)
        for intent in sorted(spoken.DOSSIER_INTENTS):
            answer = spoken.answer(intent, view, TODAY)
            assert answer is not None
            yield role, snapshot.topics, intent, answer


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    path = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    engine = db.make_engine(f"sqlite:///{path}")
    db.create_schema(engine)
    demo.load(engine, 300, SEED, TODAY)
    yield engine
    engine.dispose()


def test_spoken_answers_never_find_the_data_inconsistent(
    sample: list[demo.DemoUsager], loaded: Engine
) -> None:
    reasons: Counter[spoken.HandoverReason | None] = Counter()
    roles: Counter[repo.Role] = Counter()
    for u in sample[:300]:
        for role, topics, intent, answer in _answers(loaded, u):
            roles[role] += 1
            reasons[answer.reason] += 1
            if Topic.DECISIONS not in topics and answer.detail.endswith("without a decision"):
                continue  # faq/dossier.py reads a hidden decision as a missing one: see below
            assert answer.reason is not spoken.HandoverReason.INCONSISTENT_DATA, (
                u.index,
                role,
                intent,
                answer.detail,
            )
    assert roles[repo.Role.USAGER] == 300 * len(spoken.DOSSIER_INTENTS)
    assert roles[repo.Role.AIDANT] and roles[repo.Role.MANDATAIRE_JUDICIAIRE]
    # The demo exercises the answers, not only hand-overs.
    assert reasons[None] > 0.4 * sum(reasons.values())


def test_a_carer_without_decisions_is_not_told_the_data_is_inconsistent(
    sample: list[demo.DemoUsager], loaded: Engine
) -> None:
    carers = [
        u
        for u in sample[:300]
        if any(t.role == TiersRole.AIDANT for t in u.tiers)
        and any(current(d) == "EN_PAIEMENT" for d in u.demandes)
    ]
    assert carers
    for u in carers:
        for role, _, intent, answer in _answers(loaded, u):
            if role is repo.Role.AIDANT:
                assert answer.reason is not spoken.HandoverReason.INCONSISTENT_DATA, intent


def test_a_planned_visit_is_spoken_with_its_date(
    sample: list[demo.DemoUsager], loaded: Engine
) -> None:
    planned = [
        u for u in sample[:300] if any(current(d) == "EVALUATION_PLANIFIEE" for d in u.demandes)
    ]
    assert planned
    for u in planned:
        refs = repo.find_by_phone(loaded, u.usager.phones[0], actor="t", reason="t", via=Via.CLI)
        assert len(refs) == 1
        snapshot = repo.dossier_snapshot(
            loaded,
            refs[0].usager_id,
            role=repo.Role.USAGER,
            actor="t",
            reason="t",
            via=Via.CLI,
            today=TODAY,
        )
        assert snapshot is not None
        answer = spoken.answer("rdv_evaluation_domicile", dossier_view(snapshot), TODAY)
        assert answer is not None and answer.reason is None
        assert "est prévue le" in answer.text


# -- loading ---------------------------------------------------------------------------------


def test_load_writes_the_set_and_twice_changes_nothing(engine: Engine) -> None:
    summary = demo.load(engine, 60, SEED, TODAY)
    generated = list(demo.generate(60, SEED, TODAY))
    assert summary.usagers == 60
    assert summary.demandes == sum(len(u.demandes) for u in generated)
    assert summary.paiements == sum(len(u.paiements) for u in generated)
    assert sum(summary.by_status.values()) == summary.demandes
    before = dump(engine)
    assert len(before["usager"]) == 60
    assert len(before["demande"]) == summary.demandes
    assert len(before["demande_status"]) == summary.statuses
    assert len(before["paiement"]) == summary.paiements
    assert len(before["rendez_vous"]) == summary.rendez_vous
    assert len(before["decision"]) == summary.decisions
    again = demo.load(engine, 60, SEED, TODAY)
    assert again.as_json() | {"seconds": 0} == summary.as_json() | {"seconds": 0}
    assert dump(engine) == before


def test_a_larger_count_extends_the_set(engine: Engine) -> None:
    demo.load(engine, 20, SEED, TODAY)
    small = dump(engine)
    demo.load(engine, 40, SEED, TODAY)
    large = dump(engine)
    assert len(large["usager"]) == 40
    # The first 20 are untouched (same rows, same ids); the next 20 come after them.
    assert all(large[name][: len(rows)] == rows for name, rows in small.items())


def test_another_day_is_refused_rather_than_mixed(engine: Engine) -> None:
    demo.load(engine, 5, SEED, TODAY)
    with pytest.raises(demo.DemoConflictError, match="2026-12-07"):
        demo.load(engine, 5, SEED, date(2026, 12, 8))
    demo.load(engine, 5, SEED + 1, date(2026, 12, 8))  # another seed is another set


def test_a_failed_batch_leaves_nothing_of_it(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo, "BATCH_SIZE", 10)
    real = repo.upsert_paiement
    calls = Counter[str]()

    def failing(bind: Any, usager_id: int, record: repo.PaiementRecord) -> int:
        calls["n"] += 1
        if calls["n"] > 60:
            raise RuntimeError("disk full")
        return real(bind, usager_id, record)

    monkeypatch.setattr(repo, "upsert_paiement", failing)
    generated = list(demo.generate(40, SEED, TODAY))
    with pytest.raises(RuntimeError, match="disk full"):
        demo.load(engine, 40, SEED, TODAY)
    paid_before = 0
    written = 0
    for start in range(0, 40, 10):
        batch = generated[start : start + 10]
        paid_before += sum(len(u.paiements) for u in batch)
        if paid_before > 60:
            break
        written += 10
    rows = dump(engine)
    assert len(rows["usager"]) == written < 40
    assert {r[1] for r in rows["usager"]} == {u.usager.external_id for u in generated[:written]}


def test_five_hundred_usagers_load_in_seconds(tmp_path: Any) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'demo.sqlite3'}")
    db.create_schema(engine)
    summary = demo.load(engine, 500, SEED, TODAY)
    engine.dispose()
    assert summary.usagers == 500
    assert summary.seconds < 20, summary.seconds
