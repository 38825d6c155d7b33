from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faq.answers import to_spoken
from faq.dossier import (
    APA_STATUSES,
    DOSSIER_INTENTS,
    MDPH_STATUSES,
    ROLE_DEFAULT_PERMISSIONS,
    AppointmentKind,
    AppointmentView,
    Decision,
    DecisionSens,
    DemandeView,
    DossierView,
    HandoverReason,
    MissingDocument,
    PaymentMotif,
    PaymentStatus,
    PaymentView,
    Permission,
    Role,
    SpokenAnswer,
    StatusChange,
    add_months,
    answer,
    date_in_words,
    euros_in_words,
    int_in_words,
    month_in_words,
    time_in_words,
)
from faq.normalize import normalize

TODAY = date(2025, 6, 3)  # a Tuesday
U = "P-000123"

# ---------------------------------------------------------------------------------------------
# Numbers, amounts, dates
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "words"),
    [
        (0, "zéro"),
        (1, "un"),
        (16, "seize"),
        (17, "dix-sept"),
        (19, "dix-neuf"),
        (20, "vingt"),
        (21, "vingt et un"),
        (22, "vingt-deux"),
        (31, "trente et un"),
        (69, "soixante-neuf"),
        (70, "soixante-dix"),
        (71, "soixante et onze"),
        (72, "soixante-douze"),
        (77, "soixante-dix-sept"),
        (80, "quatre-vingts"),
        (81, "quatre-vingt-un"),
        (90, "quatre-vingt-dix"),
        (91, "quatre-vingt-onze"),
        (99, "quatre-vingt-dix-neuf"),
        (100, "cent"),
        (101, "cent un"),
        (180, "cent quatre-vingts"),
        (200, "deux cents"),
        (201, "deux cent un"),
        (280, "deux cent quatre-vingts"),
        (412, "quatre cent douze"),
        (1000, "mille"),
        (1001, "mille un"),
        (1080, "mille quatre-vingts"),
        (1999, "mille neuf cent quatre-vingt-dix-neuf"),
        (2000, "deux mille"),
        (2026, "deux mille vingt-six"),
        (21000, "vingt et un mille"),
        (80000, "quatre-vingt mille"),
        (81000, "quatre-vingt-un mille"),
        (100000, "cent mille"),
        (200000, "deux cent mille"),
        (200001, "deux cent mille un"),
        (1000000, "un million"),
        (2000000, "deux millions"),
        (200000000, "deux cents millions"),
        (80000000, "quatre-vingts millions"),
        (1000000000, "un milliard"),
        (3001002003, "trois milliards un million deux mille trois"),
    ],
)
def test_int_in_words(n: int, words: str) -> None:
    assert int_in_words(n) == words


@pytest.mark.parametrize("n", [-1, 10**12])
def test_int_in_words_range(n: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        int_in_words(n)


@given(st.integers(min_value=2, max_value=999_999))
def test_int_in_words_reads_back(n: int) -> None:
    # The FAQ normaliser's number parser is an independent implementation.
    assert normalize(int_in_words(n)) == str(n)


@given(st.integers(min_value=0, max_value=10**12 - 1))
def test_int_in_words_spelling_rules(n: int) -> None:
    words = int_in_words(n)
    tokens = words.split(" ")
    assert "" not in tokens
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        # Plural "vingts"/"cents" only when final or before a noun (million, milliard).
        if token.endswith(("vingts", "cents")):
            assert following in (None, "million", "millions", "milliard", "milliards"), words
        if token == "et":
            assert following in ("un", "onze"), words
    assert "milles" not in tokens
    assert not words.startswith("un mille")
    assert ("millions" in tokens) == (n // 10**6 % 1000 > 1)


@pytest.mark.parametrize(
    ("cents", "words"),
    [
        (0, "zéro euro"),
        (1, "un centime"),
        (50, "cinquante centimes"),
        (100, "un euro"),
        (101, "un euro et un centime"),
        (200, "deux euros"),
        (41250, "quatre cent douze euros et cinquante centimes"),
        (8000, "quatre-vingts euros"),
        (103332, "mille trente-trois euros et trente-deux centimes"),
        (208033, "deux mille quatre-vingts euros et trente-trois centimes"),
        (100000000, "un million d'euros"),
        (100020000, "un million deux cents euros"),
    ],
)
def test_euros_in_words(cents: int, words: str) -> None:
    assert euros_in_words(cents) == words


def test_euros_in_words_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        euros_in_words(-1)


@given(st.integers(min_value=0, max_value=99_999_999))
def test_euros_in_words_reads_back(cents: int) -> None:
    euros, rest = divmod(cents, 100)
    words = euros_in_words(cents)
    inner = int_in_words(euros).count(" et ") * (euros > 0)
    inner += int_in_words(rest).count(" et ") * (rest > 0)
    assert words.count(" et ") == inner + (euros > 0 and rest > 0)
    numbers = [int(t) for t in normalize(words).split() if t.isdigit()]
    expected_euros = [euros] if euros > 1 or (euros == 0 and rest == 0) else []
    expected_cents = [rest] if rest > 1 else []
    assert numbers == expected_euros + expected_cents, words
    assert ("euro" in words) == (euros > 0 or rest == 0)
    assert ("centime" in words) == (rest > 0)


@pytest.mark.parametrize(
    ("day", "words"),
    [
        (date(2025, 6, 3), "le mardi trois juin"),
        (date(2025, 6, 1), "le dimanche premier juin"),
        (date(2025, 8, 21), "le jeudi vingt et un août"),
        (date(2025, 2, 28), "le vendredi vingt-huit février"),
        (date(2024, 12, 30), "le lundi trente décembre deux mille vingt-quatre"),
        (date(2026, 1, 1), "le jeudi premier janvier deux mille vingt-six"),
    ],
)
def test_date_in_words(day: date, words: str) -> None:
    assert date_in_words(day, TODAY) == words


_WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


@given(st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31)), st.dates())
def test_date_in_words_properties(day: date, today: date) -> None:
    words = date_in_words(day, today)
    tokens = words.split(" ")
    assert tokens[0] == "le"
    assert tokens[1] == _WEEKDAYS[day.weekday()]
    assert not any(ch.isdigit() for ch in words)
    parsed = normalize(words).split()
    digits = [int(t) for t in parsed if t.isdigit()]
    if day.year == today.year:
        assert "mille" not in words
        assert digits == ([] if day.day == 1 else [day.day])
    else:
        assert digits[-1] == day.year or (day.day == 1 and digits == [day.year])


def test_month_in_words() -> None:
    assert month_in_words(date(2025, 5, 1), TODAY) == "mai"
    assert month_in_words(date(2024, 12, 1), TODAY) == "décembre deux mille vingt-quatre"


@pytest.mark.parametrize(
    ("hour", "minute", "words"),
    [
        (14, 30, "quatorze heures trente"),
        (9, 0, "neuf heures"),
        (12, 0, "midi"),
        (0, 0, "minuit"),
        (1, 0, "une heure"),
        (21, 15, "vingt et une heures quinze"),
        (12, 5, "douze heures cinq"),
    ],
)
def test_time_in_words(hour: int, minute: int, words: str) -> None:
    assert time_in_words(datetime(2025, 6, 3, hour, minute)) == words


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (date(2025, 1, 31), 1, date(2025, 2, 28)),
        (date(2024, 1, 31), 1, date(2024, 2, 29)),
        (date(2025, 11, 15), 2, date(2026, 1, 15)),
        (date(2025, 3, 31), -1, date(2025, 2, 28)),
        (date(2025, 6, 3), -6, date(2024, 12, 3)),
    ],
)
def test_add_months(start: date, months: int, end: date) -> None:
    assert add_months(start, months) == end


# ---------------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------------


def view(
    *,
    role: Role = Role.USAGER,
    permissions: frozenset[Permission] | None = None,
    demandes: tuple[DemandeView, ...] = (),
    payments: tuple[PaymentView, ...] = (),
    appointments: tuple[AppointmentView, ...] = (),
) -> DossierView:
    return DossierView(
        usager_id=U,
        role=role,
        permissions=ROLE_DEFAULT_PERMISSIONS[role] if permissions is None else permissions,
        demandes=demandes,
        payments=payments,
        appointments=appointments,
    )


def demande(
    type_: str,
    steps: list[tuple[str, date]],
    *,
    numero: str = "D-1",
    decision: Decision | None = None,
    missing: tuple[MissingDocument, ...] = (),
    cdaph: date | None = None,
) -> DemandeView:
    history = tuple(StatusChange(code, day) for code, day in steps)
    return DemandeView(
        usager_id=U,
        type=type_,
        numero=numero,
        status=history[-1].code,
        status_date=history[-1].date,
        history=history,
        missing_documents=missing,
        decision=decision,
        cdaph_date=cdaph,
    )


def apa(status: str, **kwargs: object) -> DemandeView:
    """An APA à domicile demande reaching ``status`` on 20 May 2025, complete on 20 April."""
    steps = [("RECU", date(2025, 4, 1))]
    if status not in ("BROUILLON", "RECU", "INCOMPLET"):
        steps.append(("COMPLET", date(2025, 4, 20)))
    if status not in ("RECU", "COMPLET"):
        steps.append((status, date(2025, 5, 20)))
    if status == "BROUILLON":
        steps = [("BROUILLON", date(2025, 5, 20))]
    return demande("APA_DOMICILE", steps, numero="APA-2025-04567", **kwargs)  # type: ignore[arg-type]


def mdph(type_: str, status: str, **kwargs: object) -> DemandeView:
    """An MDPH demande, admissible on 10 March 2025, reaching ``status`` on 20 May 2025."""
    steps = [("DEPOSEE", date(2025, 3, 1))]
    if status not in ("DEPOSEE", "EN_ATTENTE_PIECES"):
        steps.append(("RECEVABLE", date(2025, 3, 10)))
    if status not in ("DEPOSEE", "RECEVABLE"):
        steps.append((status, date(2025, 5, 20)))
    return demande(type_, steps, numero="MDPH-2025-01234", **kwargs)  # type: ignore[arg-type]


ACCORD = Decision(
    DecisionSens.ACCORD,
    decided_on=date(2025, 5, 15),
    start=date(2025, 5, 1),
    end=date(2027, 4, 30),
    monthly_amount_cents=41250,
)
REJET = Decision(DecisionSens.REJET, decided_on=date(2025, 5, 15))


def payment(
    day: date,
    cents: int,
    status: PaymentStatus = PaymentStatus.VERSE,
    motif: PaymentMotif | None = None,
    prestation: str = "APA_DOMICILE",
) -> PaymentView:
    start = day.replace(day=1)
    end = add_months(start, 1) - timedelta(days=1)
    return PaymentView(U, prestation, start, end, day, cents, status, motif)


VISIT = AppointmentView(
    U, AppointmentKind.EVALUATION_DOMICILE, datetime(2025, 6, 10, 14, 30), "à votre domicile"
)


def spoken(a: SpokenAnswer | None) -> SpokenAnswer:
    """Common checks on every answer; returns it for the test's own assertions."""
    assert a is not None
    assert a.text, a
    assert not re.search(r"\d", a.text), a.text
    assert not set(a.text) & set("«»()[]{};:/*€%"), a.text
    assert to_spoken(a.text) == a.text
    assert "APA-" not in a.text and "MDPH-" not in a.text and U not in a.text
    assert a.handover == (a.reason is not None)
    return a


# ---------------------------------------------------------------------------------------------
# answer(): general behaviour
# ---------------------------------------------------------------------------------------------


def test_unknown_intent_returns_none() -> None:
    assert answer("horaires_coordonnees", view(demandes=(apa("COMPLET"),)), TODAY) is None


def test_intents_exist_in_knowledge_base(kb: object) -> None:
    from faq.model import KnowledgeBase

    assert isinstance(kb, KnowledgeBase)
    for intent_id in DOSSIER_INTENTS:
        assert kb.get(intent_id).needs_dossier


def full_dossier() -> DossierView:
    return view(
        demandes=(
            apa("EVALUATION_PLANIFIEE"),
            mdph("PCH", "DROIT_OUVERT", decision=ACCORD),
        ),
        payments=(
            payment(date(2025, 5, 9), 41250),
            payment(date(2025, 6, 10), 41250, PaymentStatus.PREVU),
        ),
        appointments=(VISIT,),
    )


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("intent_id", sorted(DOSSIER_INTENTS))
def test_every_intent_every_role(intent_id: str, role: Role) -> None:
    v = replace(full_dossier(), role=role, permissions=ROLE_DEFAULT_PERMISSIONS[role])
    a = spoken(answer(intent_id, v, TODAY))
    assert a.intent_id == intent_id
    if Permission.PAYMENTS not in v.permissions:
        assert "euro" not in a.text
    if role is Role.USAGER:
        assert "votre" in a.text.lower()


def test_role_without_permission_is_refused_without_data() -> None:
    v = replace(full_dossier(), role=Role.AIDANT, permissions=frozenset({Permission.STATUS}))
    for intent_id, what in [
        ("paiement_date", "paiements"),
        ("paiement_montant_ecart", "paiements"),
        ("attestation_releve_paiement", "paiements"),
        ("rdv_evaluation_domicile", "rendez-vous"),
        ("pieces_manquantes", "pièces"),
    ]:
        a = spoken(answer(intent_id, v, TODAY))
        assert "Je ne peux pas vous donner" in a.text and what in a.text
        assert a.detail.startswith("not_permitted:") and not a.handover
        assert "euro" not in a.text and "juin" not in a.text and "mai" not in a.text
        assert not a.handover
    status = spoken(answer("suivi_dossier_apa", v, TODAY))
    assert "visite" in status.text and "dix juin" not in status.text  # no appointment right


def test_decision_and_amount_follow_the_role() -> None:
    d = apa("DECISION_NOTIFIEE", decision=ACCORD)
    usager = spoken(answer("suivi_dossier_apa", view(demandes=(d,)), TODAY))
    assert "quatre cent douze euros et cinquante centimes par mois" in usager.text
    assert usager.text.startswith("Votre demande") and "acceptée" in usager.text
    # A social worker may know decisions but not amounts.
    worker = spoken(
        answer("suivi_dossier_apa", view(role=Role.TRAVAILLEUR_SOCIAL, demandes=(d,)), TODAY)
    )
    assert "acceptée" in worker.text and "euro" not in worker.text
    assert worker.text.startswith("La demande")
    # A carer may know the status, not the content of the decision.
    carer = spoken(answer("suivi_dossier_apa", view(role=Role.AIDANT, demandes=(d,)), TODAY))
    assert "la décision a été envoyée par courrier le mardi vingt mai" in carer.text
    assert "acceptée" not in carer.text and "euro" not in carer.text
    mdph_d = mdph("AAH", "NOTIFIEE", decision=REJET)
    carer = spoken(answer("suivi_dossier_mdph", view(role=Role.FAMILLE, demandes=(mdph_d,)), TODAY))
    assert "refusée" not in carer.text and "Je ne peux pas vous en donner le contenu" in carer.text
    opened = mdph("CMI_STAT", "DROIT_OUVERT", decision=ACCORD)
    carer = spoken(answer("suivi_dossier_mdph", view(role=Role.AIDANT, demandes=(opened,)), TODAY))
    assert "le droit est ouvert." in carer.text and "avril" not in carer.text
    assert "Imprimerie nationale" in carer.text
    apa_open = apa("EN_PAIEMENT", decision=ACCORD)
    carer = spoken(answer("suivi_dossier_apa", view(role=Role.AIDANT, demandes=(apa_open,)), TODAY))
    assert "ouverts depuis le mardi vingt mai" in carer.text  # the status date, not the decision's
    renewal = spoken(
        answer("renouvellement_droits", view(role=Role.AIDANT, demandes=(opened,)), TODAY)
    )
    assert "le détail des décisions" in renewal.text and "avril" not in renewal.text


def test_data_of_another_usager_stops_the_answer() -> None:
    foreign = replace(payment(date(2025, 5, 9), 99900), usager_id="P-999")
    v = replace(full_dossier(), payments=(*full_dossier().payments, foreign))
    for intent_id in sorted(DOSSIER_INTENTS):
        a = spoken(answer(intent_id, v, TODAY))
        assert a.reason is HandoverReason.INCONSISTENT_DATA
        assert "pas cohérentes" in a.text and "euro" not in a.text
        assert a.detail == "item of another usager"


# ---------------------------------------------------------------------------------------------
# suivi_dossier_apa
# ---------------------------------------------------------------------------------------------

APA_CASES: list[tuple[str, dict[str, object], str, HandoverReason | None]] = [
    ("BROUILLON", {}, "n'a pas encore été envoyée", None),
    ("RECU", {}, "a été reçue le mardi premier avril", None),
    (
        "INCOMPLET",
        {"missing": (MissingDocument("le dernier avis d'imposition", date(2025, 5, 20)),)},
        "pièce attendue est le dernier avis d'imposition, demandée le mardi vingt mai",
        None,
    ),
    ("INCOMPLET", {}, "Je n'ai pas la liste des pièces attendues", HandoverReason.MISSING_DATA),
    ("COMPLET", {}, "complète depuis le dimanche vingt avril", None),
    ("EVALUATION_PLANIFIEE", {}, "le mardi dix juin, à quatorze heures trente", None),
    ("EVALUATION_REALISEE", {}, "plan d'aide est en préparation", None),
    ("PLAN_PROPOSE", {}, "attend votre accord", None),
    ("DECISION_NOTIFIEE", {"decision": ACCORD}, "a été acceptée le jeudi quinze mai", None),
    ("DECISION_NOTIFIEE", {"decision": REJET}, "a été refusée", HandoverReason.REJECTED),
    ("DROITS_OUVERTS", {"decision": ACCORD}, "ouverts depuis le jeudi premier mai", None),
    ("EN_PAIEMENT", {"decision": ACCORD}, "au plus tard le dix du mois", None),
    ("SUSPENDU", {}, "suspendu depuis le mardi vingt mai", HandoverReason.SUSPENDED),
    ("REVISION_EN_COURS", {}, "révision du plan d'aide", None),
    ("CLOS", {}, "fermés depuis", None),
    ("RECOURS_RAPO", {}, "au plus tard le dimanche vingt juillet", None),
    ("URGENCE_FORFAIT", {}, "à titre d'avance", None),
]


@pytest.mark.parametrize(("status", "kwargs", "fragment", "reason"), APA_CASES)
def test_apa_statuses(
    status: str, kwargs: dict[str, object], fragment: str, reason: HandoverReason | None
) -> None:
    v = view(demandes=(apa(status, **kwargs),), appointments=(VISIT,))
    a = spoken(answer("suivi_dossier_apa", v, TODAY))
    assert fragment in a.text
    assert a.reason is reason
    assert a.numero == "APA-2025-04567"
    assert "votre" in a.text.lower()


def test_apa_cases_cover_every_status() -> None:
    assert {case[0] for case in APA_CASES} == APA_STATUSES


def test_apa_deadline_running() -> None:
    a = spoken(answer("suivi_dossier_apa", view(demandes=(apa("EVALUATION_REALISEE"),)), TODAY))
    assert "Le délai légal de deux mois court depuis le dimanche vingt avril" in a.text
    assert "au plus tard le vendredi vingt juin" in a.text
    assert not a.handover
    on_the_day = answer(
        "suivi_dossier_apa", view(demandes=(apa("EVALUATION_REALISEE"),)), date(2025, 6, 20)
    )
    assert on_the_day is not None and not on_the_day.handover


def test_apa_deadline_passed_means_acceptance_and_hands_over() -> None:
    later = date(2025, 6, 21)
    a = spoken(answer("suivi_dossier_apa", view(demandes=(apa("PLAN_PROPOSE"),)), later))
    assert "a pris fin le vendredi vingt juin sans décision" in a.text
    assert "considérée comme acceptée" in a.text
    assert a.reason is HandoverReason.DEADLINE_PASSED


def test_apa_no_deadline_after_decision() -> None:
    later = date(2025, 12, 1)
    d = apa("EN_PAIEMENT", decision=ACCORD)
    a = spoken(answer("suivi_dossier_apa", view(demandes=(d,)), later))
    assert "délai légal" not in a.text and not a.handover


def test_apa_rapo_passed() -> None:
    a = spoken(answer("suivi_dossier_apa", view(demandes=(apa("RECOURS_RAPO"),)), date(2025, 9, 1)))
    assert "considéré comme rejeté" in a.text and "tribunal administratif" in a.text
    assert a.reason is HandoverReason.DEADLINE_PASSED


def test_apa_visit_passed_without_update() -> None:
    later = date(2025, 6, 12)
    v = view(demandes=(apa("EVALUATION_PLANIFIEE"),), appointments=(VISIT,))
    a = spoken(answer("suivi_dossier_apa", v, later))
    assert "La visite était prévue le mardi dix juin" in a.text
    assert a.reason is HandoverReason.MISSING_DATA


def test_no_apa_demande() -> None:
    v = view(demandes=(mdph("AAH", "EN_EVALUATION"),))
    a = spoken(answer("suivi_dossier_apa", v, TODAY))
    assert "Je ne trouve pas de demande d'A P A" in a.text
    assert a.reason is HandoverReason.NO_DEMANDE


def test_unknown_status_hands_over() -> None:
    d = replace(apa("COMPLET"), status="EN_COURS_DE_TRUC", history=())
    a = spoken(answer("suivi_dossier_apa", view(demandes=(d,)), TODAY))
    assert "Je ne sais pas lire l'état actuel" in a.text
    assert a.reason is HandoverReason.UNKNOWN_STATUS and a.detail == "EN_COURS_DE_TRUC"


def test_several_demandes_most_recent_first_others_mentioned() -> None:
    old = demande(
        "APA_ETAB",
        [("RECU", date(2024, 1, 5)), ("CLOS", date(2024, 9, 1))],
        numero="APA-2024-00001",
    )
    recent = apa("COMPLET")
    a = spoken(answer("suivi_dossier_apa", view(demandes=(recent, old)), TODAY))
    assert a.numero == "APA-2025-04567"
    assert a.text.startswith("Votre demande d'A P A à domicile est complète")
    assert "Il y a aussi dans ce dossier une demande d'A P A en établissement" in a.text
    alone = spoken(answer("suivi_dossier_apa", view(demandes=(recent,)), TODAY))
    assert "Il y a aussi" not in alone.text


# ---------------------------------------------------------------------------------------------
# suivi_dossier_mdph
# ---------------------------------------------------------------------------------------------

MDPH_CASES: list[tuple[str, dict[str, object], str, HandoverReason | None]] = [
    ("DEPOSEE", {}, "reçue et enregistrée le samedi premier mars", None),
    (
        "EN_ATTENTE_PIECES",
        {
            "missing": (
                MissingDocument("le certificat médical de moins d'un an"),
                MissingDocument("un justificatif de domicile"),
            )
        },
        "pièces attendues sont le certificat médical de moins d'un an et un justificatif",
        None,
    ),
    ("RECEVABLE", {}, "l'accusé de réception a été envoyé le lundi dix mars", None),
    ("EN_EVALUATION", {}, "équipe pluridisciplinaire depuis le mardi vingt mai", None),
    ("EVALUATION_COMPLEMENTAIRE", {}, "un bilan, une convocation ou une visite", None),
    ("PPC_ENVOYE", {}, "quinze jours pour faire vos observations", None),
    ("INSCRIT_CDAPH", {"cdaph": date(2025, 6, 19)}, "la C D A P H le jeudi dix-neuf juin", None),
    ("DECISION_PRISE", {}, "je ne peux pas la donner avant", None),
    ("NOTIFIEE", {"decision": ACCORD}, "a été acceptée par la commission", None),
    ("DROIT_OUVERT", {"decision": ACCORD}, "du jeudi premier mai au vendredi trente avril", None),
    ("MISE_EN_OEUVRE", {"decision": ACCORD}, "versée par la caf", None),
    ("REJET", {"decision": REJET}, "adressé à la M D P H", HandoverReason.REJECTED),
    ("RAPO_EN_COURS", {}, "Votre recours est en cours d'examen", None),
    ("CONCILIATION", {}, "conciliation est en cours", None),
]


@pytest.mark.parametrize(("status", "kwargs", "fragment", "reason"), MDPH_CASES)
def test_mdph_statuses(
    status: str, kwargs: dict[str, object], fragment: str, reason: HandoverReason | None
) -> None:
    a = spoken(answer("suivi_dossier_mdph", view(demandes=(mdph("AAH", status, **kwargs),)), TODAY))
    assert fragment in a.text
    assert a.reason is reason
    assert a.text.startswith(
        ("Votre demande d'allocation aux adultes", "Pour votre demande", "Votre recours")
    )


def test_mdph_cases_cover_every_status() -> None:
    assert {case[0] for case in MDPH_CASES} == MDPH_STATUSES


def test_mdph_deadline_running_and_passed() -> None:
    d = mdph("PCH", "EN_EVALUATION")
    running = spoken(answer("suivi_dossier_mdph", view(demandes=(d,)), TODAY))
    assert "Le délai légal de quatre mois court depuis le lundi dix mars" in running.text
    assert "au plus tard le jeudi dix juillet" in running.text and not running.handover
    passed = spoken(answer("suivi_dossier_mdph", view(demandes=(d,)), date(2025, 7, 11)))
    assert "rejet implicite" in passed.text and "rapo" in passed.text
    assert passed.reason is HandoverReason.DEADLINE_PASSED


def test_mdph_decision_not_told_before_notification() -> None:
    d = mdph("AAH", "DECISION_PRISE", decision=REJET)
    a = spoken(answer("suivi_dossier_mdph", view(demandes=(d,)), TODAY))
    assert "refusée" not in a.text and "acceptée" not in a.text


def test_mdph_unlimited_rights() -> None:
    unlimited = Decision(
        DecisionSens.ACCORD,
        decided_on=date(2025, 5, 15),
        start=date(2025, 6, 1),
        sans_limitation=True,
    )
    a = spoken(
        answer(
            "suivi_dossier_mdph",
            view(demandes=(mdph("RQTH", "DROIT_OUVERT", decision=unlimited),)),
            TODAY,
        )
    )
    assert "sans limitation de durée" in a.text


@pytest.mark.parametrize(
    ("mutate", "detail"),
    [
        (lambda d: replace(d, status_date=date(2025, 7, 1)), "status date in the future"),
        (
            lambda d: replace(
                d, history=(*d.history[:-1], StatusChange("DROIT_OUVERT", date(2025, 7, 1)))
            ),
            "history out of order or in the future",
        ),
        (
            lambda d: replace(d, history=(d.history[1], d.history[0], *d.history[2:])),
            "history out of order or in the future",
        ),
        (
            lambda d: replace(d, status="DECISION_PRISE"),
            "history does not end with the current status",
        ),
        (lambda d: replace(d, decision=None), "DROIT_OUVERT without a decision"),
        (
            lambda d: replace(d, decision=replace(ACCORD, end=date(2025, 1, 1))),
            "decision ends before it starts",
        ),
        (
            lambda d: replace(d, decision=replace(ACCORD, sans_limitation=True)),
            "decision both limited and unlimited",
        ),
        (lambda d: replace(d, decision=REJET), "DROIT_OUVERT with a rejection"),
    ],
)
def test_inconsistent_demande_hands_over(mutate: object, detail: str) -> None:
    d = mdph("AAH", "DROIT_OUVERT", decision=ACCORD)
    bad = mutate(d)  # type: ignore[operator]
    for intent_id in ("suivi_dossier_mdph", "renouvellement_droits"):
        a = spoken(answer(intent_id, view(demandes=(bad,)), TODAY))
        assert a.reason is HandoverReason.INCONSISTENT_DATA, intent_id
        assert a.detail.startswith(detail)
        assert "pas cohérentes" in a.text and "avril" not in a.text


def test_rejet_status_with_positive_decision_is_inconsistent() -> None:
    d = mdph("AAH", "REJET", decision=ACCORD)
    a = spoken(answer("suivi_dossier_mdph", view(demandes=(d,)), TODAY))
    assert a.reason is HandoverReason.INCONSISTENT_DATA


# ---------------------------------------------------------------------------------------------
# pieces_manquantes
# ---------------------------------------------------------------------------------------------


def test_missing_documents_listed() -> None:
    docs = (
        MissingDocument("le dernier avis d'imposition", date(2025, 5, 2)),
        MissingDocument("un RIB", date(2025, 5, 20)),
        MissingDocument("la copie de la pièce d'identité"),
    )
    v = view(demandes=(apa("INCOMPLET", missing=docs), mdph("AAH", "EN_EVALUATION")))
    a = spoken(answer("pieces_manquantes", v, TODAY))
    assert (
        "Pour votre demande d'A P A à domicile, les pièces attendues sont le dernier avis "
        "d'imposition, un rib et la copie de la pièce d'identité, demandées le mardi vingt mai."
    ) in a.text
    assert "l'étude du dossier ne démarre pas" in a.text
    assert not a.handover and a.numero == "APA-2025-04567"


def test_missing_documents_list_unknown_hands_over() -> None:
    a = spoken(
        answer("pieces_manquantes", view(demandes=(mdph("AAH", "EN_ATTENTE_PIECES"),)), TODAY)
    )
    assert "je n'en ai pas la liste" in a.text
    assert a.reason is HandoverReason.MISSING_DATA


def test_no_missing_documents() -> None:
    a = spoken(answer("pieces_manquantes", view(demandes=(apa("COMPLET"),)), TODAY))
    assert a.text == "Aucune pièce n'est attendue pour votre demande d'A P A à domicile."
    empty = spoken(answer("pieces_manquantes", view(), TODAY))
    assert empty.reason is HandoverReason.NO_DEMANDE


def test_missing_documents_for_several_demandes() -> None:
    one = (MissingDocument("un RIB"),)
    two = (MissingDocument("le certificat médical"),)
    v = view(
        demandes=(apa("INCOMPLET", missing=one), mdph("AAH", "EN_ATTENTE_PIECES", missing=two))
    )
    a = spoken(answer("pieces_manquantes", v, TODAY))
    assert "la pièce attendue est un rib" in a.text  # the APA demande is the most recent
    assert "certificat" not in a.text
    assert "D'autres demandes de ce dossier attendent aussi des pièces" in a.text


# ---------------------------------------------------------------------------------------------
# rdv_evaluation_domicile
# ---------------------------------------------------------------------------------------------


def test_visit_planned() -> None:
    v = view(demandes=(apa("EVALUATION_PLANIFIEE"),), appointments=(VISIT,))
    a = spoken(answer("rdv_evaluation_domicile", v, TODAY))
    assert a.text.startswith(
        "Votre visite d'évaluation à domicile est prévue le mardi dix juin, à quatorze heures "
        "trente, à votre domicile."
    )
    carer = spoken(answer("rdv_evaluation_domicile", replace(v, role=Role.AIDANT), TODAY))
    assert carer.text.startswith("La visite d'évaluation")


def test_visit_not_yet_fixed() -> None:
    a = spoken(answer("rdv_evaluation_domicile", view(demandes=(apa("COMPLET"),)), TODAY))
    assert "Aucune visite n'est encore fixée" in a.text and not a.handover


def test_visit_planned_without_date_hands_over() -> None:
    a = spoken(
        answer("rdv_evaluation_domicile", view(demandes=(apa("EVALUATION_PLANIFIEE"),)), TODAY)
    )
    assert a.reason is HandoverReason.MISSING_DATA


def test_visit_done() -> None:
    a = spoken(
        answer("rdv_evaluation_domicile", view(demandes=(apa("EVALUATION_REALISEE"),)), TODAY)
    )
    assert a.text == "La visite d'évaluation a eu lieu le mardi vingt mai."


def test_visit_without_any_apa_demande() -> None:
    a = spoken(answer("rdv_evaluation_domicile", view(), TODAY))
    assert a.reason is HandoverReason.MISSING_DATA


# ---------------------------------------------------------------------------------------------
# Payments
# ---------------------------------------------------------------------------------------------

MAY = payment(date(2025, 5, 9), 41250)
JUNE = payment(date(2025, 6, 10), 41250, PaymentStatus.PREVU)


def test_payment_last_and_next() -> None:
    a = spoken(answer("paiement_date", view(payments=(MAY, JUNE)), TODAY))
    assert a.text == (
        "Votre dernier paiement d'A P A à domicile, quatre cent douze euros et cinquante "
        "centimes pour le mois de mai, a été fait le vendredi neuf mai. Le prochain est prévu "
        "le mardi dix juin, quatre cent douze euros et cinquante centimes pour le mois de juin. "
        "Comptez un à trois jours selon la banque."
    )


def test_payment_scheduled_but_not_made() -> None:
    a = spoken(answer("paiement_date", view(payments=(MAY, JUNE)), date(2025, 6, 12)))
    assert "Le paiement prévu le mardi dix juin n'apparaît pas comme fait" in a.text
    assert a.reason is HandoverReason.PAYMENT_MISSING


def test_payment_not_scheduled_yet() -> None:
    a = spoken(answer("paiement_date", view(payments=(MAY,)), TODAY))
    assert "pas encore programmé" in a.text and not a.handover
    gap = spoken(answer("paiement_date", view(payments=(MAY,)), date(2025, 6, 30)))
    assert gap.reason is HandoverReason.PAYMENT_MISSING


def test_payment_suspended() -> None:
    withheld = payment(date(2025, 6, 10), 41250, PaymentStatus.SUSPENDU)
    a = spoken(answer("paiement_date", view(payments=(MAY, withheld)), TODAY))
    assert "Le versement pour le mois de juin est suspendu" in a.text
    assert a.reason is HandoverReason.SUSPENDED


def test_no_payment_aah_is_paid_by_caf() -> None:
    v = view(demandes=(mdph("AAH", "DROIT_OUVERT", decision=ACCORD),))
    a = spoken(answer("paiement_date", v, TODAY))
    assert "versée par la caf ou la M S A" in a.text and not a.handover
    none = spoken(answer("paiement_date", view(demandes=(apa("COMPLET"),)), TODAY))
    assert none.reason is HandoverReason.PAYMENT_MISSING


def test_payment_paid_in_the_future_is_inconsistent() -> None:
    future = payment(date(2025, 6, 10), 41250)
    a = spoken(answer("paiement_date", view(payments=(MAY, future)), TODAY))
    assert a.reason is HandoverReason.INCONSISTENT_DATA and "euro" not in a.text


def test_payment_period_not_a_month() -> None:
    odd = replace(MAY, period_start=date(2025, 4, 15), period_end=date(2025, 5, 14))
    a = spoken(answer("paiement_date", view(payments=(odd,)), TODAY))
    assert "pour la période du mardi quinze avril au mercredi quatorze mai" in a.text


@pytest.mark.parametrize(
    ("motif", "fragment"),
    [
        (PaymentMotif.RAPPEL, "tient compte d'un rappel"),
        (PaymentMotif.SUSPENSION_HOSPITALISATION, "hospitalisation de plus de trente jours"),
        (PaymentMotif.INDU, "trop-perçu"),
        (PaymentMotif.REGULARISATION_JANVIER, "tient compte de la participation recalculée"),
        (PaymentMotif.REVISION_PLAN, "tient compte de la révision du plan d'aide"),
    ],
)
def test_payment_gap_explained(motif: PaymentMotif, fragment: str) -> None:
    april = payment(date(2025, 4, 10), 41250)
    may = payment(date(2025, 5, 9), 30000, motif=motif)
    a = spoken(answer("paiement_montant_ecart", view(payments=(april, may)), TODAY))
    assert "est de trois cents euros" in a.text
    assert fragment in a.text and not a.handover


def test_payment_gap_unexplained_hands_over() -> None:
    april = payment(date(2025, 4, 10), 41250)
    may = payment(date(2025, 5, 9), 30000)
    a = spoken(answer("paiement_montant_ecart", view(payments=(april, may)), TODAY))
    assert "C'est cent douze euros et cinquante centimes de moins que le paiement précédent" in (
        a.text
    )
    assert a.reason is HandoverReason.PAYMENT_UNEXPLAINED


def test_payment_gap_same_amount_and_missing() -> None:
    april = payment(date(2025, 4, 10), 41250)
    a = spoken(answer("paiement_montant_ecart", view(payments=(april, MAY)), TODAY))
    assert "C'est le même montant que le paiement précédent" in a.text and not a.handover
    late = spoken(answer("paiement_montant_ecart", view(payments=(april, MAY)), date(2025, 7, 1)))
    assert late.reason is HandoverReason.PAYMENT_MISSING


def test_payment_gap_next_withheld() -> None:
    withheld = payment(date(2025, 6, 10), 0, PaymentStatus.SUSPENDU)
    a = spoken(answer("paiement_montant_ecart", view(payments=(MAY, withheld)), TODAY))
    assert a.reason is HandoverReason.SUSPENDED


def test_attestation_totals_last_year_only() -> None:
    payments = (
        payment(date(2024, 11, 8), 40000),
        payment(date(2024, 12, 10), 41250),
        payment(date(2025, 1, 10), 50000),
        payment(date(2024, 12, 10), 10000, prestation="PCH"),
        payment(date(2024, 10, 10), 99900, PaymentStatus.ANNULE),
    )
    a = spoken(answer("attestation_releve_paiement", view(payments=payments), TODAY))
    assert (
        "En deux mille vingt-quatre, le Département a versé au total huit cent douze euros et "
        "cinquante centimes d'A P A à domicile et cent euros de prestation de compensation du "
        "handicap."
    ) in a.text
    assert a.reason is HandoverReason.ATTESTATION


def test_unknown_prestation_is_inconsistent() -> None:
    odd = replace(MAY, prestation="XYZ")
    a = spoken(answer("paiement_date", view(payments=(odd,)), TODAY))
    assert a.reason is HandoverReason.INCONSISTENT_DATA


# ---------------------------------------------------------------------------------------------
# renouvellement_droits
# ---------------------------------------------------------------------------------------------


def rights(end: date | None, *, type_: str = "AAH", unlimited: bool = False) -> DemandeView:
    decision = Decision(
        DecisionSens.ACCORD,
        decided_on=date(2023, 1, 10),
        start=date(2023, 2, 1),
        end=end,
        sans_limitation=unlimited,
    )
    return demande(
        type_,
        [("RECEVABLE", date(2022, 10, 1)), ("DROIT_OUVERT", date(2023, 1, 20))],
        numero=f"MDPH-{type_}",
        decision=decision,
    )


def test_renewal_window_ahead() -> None:
    a = spoken(answer("renouvellement_droits", view(demandes=(rights(date(2026, 3, 31)),)), TODAY))
    assert (
        "Votre droit à l'allocation aux adultes handicapés est ouvert jusqu'au mardi trente et un "
        "mars deux mille vingt-six."
    ) in a.text
    assert "entre le mardi trente septembre et le dimanche trente novembre" in a.text
    assert not a.handover and a.numero == "MDPH-AAH"


def test_renewal_window_now_and_late() -> None:
    now = spoken(
        answer("renouvellement_droits", view(demandes=(rights(date(2025, 11, 30)),)), TODAY)
    )
    assert (
        "C'est le bon moment" in now.text and "au plus tard le mercredi trente juillet" in now.text
    )
    late = spoken(
        answer("renouvellement_droits", view(demandes=(rights(date(2025, 8, 31)),)), TODAY)
    )
    assert "dès maintenant" in late.text


def test_renewal_expired_hands_over() -> None:
    a = spoken(answer("renouvellement_droits", view(demandes=(rights(date(2025, 5, 31)),)), TODAY))
    assert "a pris fin le samedi trente et un mai" in a.text
    assert a.reason is HandoverReason.RIGHTS_EXPIRED


def test_renewal_in_progress() -> None:
    renewing = demande("AAH", [("DEPOSEE", date(2025, 5, 2))], numero="MDPH-NEW")
    v = view(demandes=(rights(date(2025, 5, 31)), renewing))
    a = spoken(answer("renouvellement_droits", v, TODAY))
    assert "Une nouvelle demande est déjà en cours d'examen" in a.text and not a.handover
    v = view(demandes=(rights(date(2025, 11, 30)), renewing))
    a = spoken(answer("renouvellement_droits", v, TODAY))
    assert "renouvellement est déjà en cours" in a.text and "bon moment" not in a.text


def test_renewal_soonest_right_and_others() -> None:
    v = view(
        demandes=(
            rights(date(2027, 1, 31), type_="CMI_STAT"),
            rights(date(2026, 3, 31), type_="RQTH"),
            rights(None, type_="AAH", unlimited=True),
        )
    )
    a = spoken(answer("renouvellement_droits", v, TODAY))
    assert a.numero == "MDPH-RQTH"
    assert "Votre droit à la reconnaissance de la qualité de travailleur handicapé" in a.text
    assert "Ce dossier a aussi deux autres droits" in a.text


def test_renewal_unlimited_only_and_apa() -> None:
    a = spoken(
        answer("renouvellement_droits", view(demandes=(rights(None, unlimited=True),)), TODAY)
    )
    assert "sans limitation de durée" in a.text and "pas de renouvellement" in a.text
    b = spoken(
        answer(
            "renouvellement_droits", view(demandes=(apa("EN_PAIEMENT", decision=ACCORD),)), TODAY
        )
    )
    assert b.text.startswith("Pour l'A P A, il n'y a pas de renouvellement à demander")
    c = spoken(answer("renouvellement_droits", view(demandes=(rights(None),)), TODAY))
    assert c.reason is HandoverReason.MISSING_DATA
    d = spoken(answer("renouvellement_droits", view(), TODAY))
    assert d.reason is HandoverReason.NO_DEMANDE


# ---------------------------------------------------------------------------------------------
# Edge cases
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "detail"),
    [
        (replace(ACCORD, decided_on=date(2025, 7, 1)), "decision date in the future"),
        (replace(ACCORD, monthly_amount_cents=-1), "negative amount"),
    ],
)
def test_inconsistent_decision(bad: Decision, detail: str) -> None:
    a = spoken(
        answer("suivi_dossier_apa", view(demandes=(apa("EN_PAIEMENT", decision=bad),)), TODAY)
    )
    assert a.reason is HandoverReason.INCONSISTENT_DATA and a.detail == detail


def test_negative_payment_is_inconsistent() -> None:
    a = spoken(
        answer("paiement_montant_ecart", view(payments=(replace(MAY, amount_cents=-5),)), TODAY)
    )
    assert a.reason is HandoverReason.INCONSISTENT_DATA


def test_payment_gap_without_payment() -> None:
    a = spoken(answer("paiement_montant_ecart", view(demandes=(apa("COMPLET"),)), TODAY))
    assert a.reason is HandoverReason.PAYMENT_MISSING


def test_rights_open_without_end() -> None:
    open_ended = replace(ACCORD, end=None)
    d = mdph("PCH", "DROIT_OUVERT", decision=open_ended)
    a = spoken(answer("suivi_dossier_mdph", view(demandes=(d,)), TODAY))
    assert "Le droit est ouvert depuis le jeudi premier mai" in a.text


def test_incomplete_without_documents_right() -> None:
    docs = (MissingDocument("un RIB"),)
    perms = frozenset({Permission.STATUS})
    v = view(role=Role.AIDANT, permissions=perms, demandes=(apa("INCOMPLET", missing=docs),))
    a = spoken(answer("suivi_dossier_apa", v, TODAY))
    assert "il manque des pièces" in a.text and "rib" not in a.text and not a.handover


def test_pending_without_start_step_has_no_deadline() -> None:
    d = demande("APA_DOMICILE", [("EVALUATION_REALISEE", date(2025, 5, 20))])
    a = spoken(answer("suivi_dossier_apa", view(demandes=(d,)), date(2026, 1, 1)))
    assert "délai légal" not in a.text and not a.handover
    no_history = replace(d, history=(), status="COMPLET")
    b = spoken(answer("suivi_dossier_apa", view(demandes=(no_history,)), TODAY))
    assert "court depuis le mardi vingt mai" in b.text
