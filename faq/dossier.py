"""Spoken answers read from the caller's own dossier (issue 4, part 5).

Pure domain logic: the store fills the frozen ``*View`` dataclasses below with one usager's
data, already restricted to what the identified caller may know, and :func:`answer` turns
them into plain spoken French for the intents that need the dossier. Time is a parameter
(``today``) and the result is data (:class:`SpokenAnswer`).

Rules this module owns (see ``../shared/domain/facts.md`` §1-§3, §8-§10):

- Dates in words ("le mardi trois juin", the year only when it is not the current one),
  amounts in euros in words; numbers never reach the synthesiser as digits.
- The current status is spoken with its label (facts §9), then what happens next and the
  typical delay. Legal deadlines: APA decision within 2 months of the complete dossier
  (silence is acceptance), MDPH decision within 4 months of the admissible dossier (silence
  is an implicit rejection, which opens the RAPO).
- Never bank details (the views carry none), never another person's data (an item that does
  not belong to the view's usager stops the answer), never beyond the caller's role.
- Suspension, rejection, a passed legal deadline, unknown or inconsistent data: say so plainly
  and hand over to a person.
"""

from __future__ import annotations

import calendar
import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from faq.answers import to_spoken

# ---------------------------------------------------------------------------------------------
# Input views (filled by the store)
# ---------------------------------------------------------------------------------------------


class Role(enum.StrEnum):
    """Who is calling about the dossier."""

    USAGER = "usager"
    """The person the dossier is about."""
    AIDANT = "aidant"
    """A carer declared on the dossier."""
    MANDATAIRE = "mandataire_judiciaire"
    """A legal representative (tutelle, curatelle, habilitation familiale)."""
    TRAVAILLEUR_SOCIAL = "travailleur_social"
    """A social worker following the person."""
    FAMILLE = "famille"
    """A relative declared on the dossier who is not the main carer."""


class Permission(enum.StrEnum):
    """What a caller may be told (same values as the store's ``Topic``, ``tiers.may_know``)."""

    STATUS = "status"
    """Demandes, their status and history, dates and legal deadlines."""
    DOCUMENTS = "documents"
    """Missing documents."""
    DECISIONS = "decisions"
    """Decisions: outcome, dates, validity (amounts granted also need ``PAYMENTS``)."""
    APPOINTMENTS = "appointments"
    """Appointment dates and places."""
    PAYMENTS = "payments"
    """Payment dates and amounts."""


ROLE_DEFAULT_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.USAGER: frozenset(Permission),
    Role.MANDATAIRE: frozenset(Permission),
    Role.TRAVAILLEUR_SOCIAL: frozenset(
        {Permission.STATUS, Permission.DOCUMENTS, Permission.DECISIONS, Permission.APPOINTMENTS}
    ),
    Role.AIDANT: frozenset({Permission.STATUS, Permission.DOCUMENTS, Permission.APPOINTMENTS}),
    Role.FAMILLE: frozenset({Permission.STATUS}),
}
"""Permissions per role when the dossier declares none (the back office's word prevails);
the same defaults as the store's ``DEFAULT_MAY_KNOW``."""


class DecisionSens(enum.StrEnum):
    """Outcome of a decision."""

    ACCORD = "accord"
    REJET = "rejet"
    PARTIEL = "partiel"


class PaymentStatus(enum.StrEnum):
    """State of one payment (same values as the store's ``PaymentStatus``)."""

    PREVU = "prevu"
    """Scheduled, not yet ordered."""
    MANDATE = "mandate"
    """Ordered to the paying agent; reaches the account 1 to 3 days later."""
    VERSE = "verse"
    """Paid."""
    SUSPENDU = "suspendu"
    """Withheld (suspension)."""
    ANNULE = "annule"
    """Cancelled."""

    @property
    def paid(self) -> bool:
        """True once the payment has been ordered or made."""
        return self in (PaymentStatus.MANDATE, PaymentStatus.VERSE)


class PaymentMotif(enum.StrEnum):
    """Why a payment differs from the usual amount (facts §10 ``motif_ecart``)."""

    RAPPEL = "rappel"
    SUSPENSION_HOSPITALISATION = "suspension_hospitalisation"
    INDU = "indu"
    REGULARISATION_JANVIER = "regularisation_janvier"
    REVISION_PLAN = "revision_plan"


class AppointmentKind(enum.StrEnum):
    """Kind of appointment."""

    EVALUATION_DOMICILE = "evaluation_domicile"
    """APA home evaluation by the médico-sociale team."""
    CONVOCATION_MDPH = "convocation_mdph"
    """MDPH convocation or assessment (évaluation complémentaire)."""
    AUTRE = "autre"


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One step of a demande's status history."""

    code: str
    """Status code (facts §9), e.g. ``COMPLET`` or ``RECEVABLE``."""
    date: date
    """Day the status was reached."""


@dataclass(frozen=True, slots=True)
class MissingDocument:
    """A document the service is waiting for."""

    label: str
    """Spoken name with its article, e.g. "le dernier avis d'imposition"."""
    requested_on: date | None = None
    """Day the document was asked for."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Decision on a demande (never health details: facts §10, RGPD note)."""

    sens: DecisionSens
    """Outcome."""
    decided_on: date
    """Day of the decision."""
    start: date | None = None
    """First day of the rights."""
    end: date | None = None
    """Last day of the rights (None with ``sans_limitation`` or when not known)."""
    sans_limitation: bool = False
    """Granted without time limit."""
    monthly_amount_cents: int | None = None
    """Monthly amount granted, in cents (APA, PCH), when there is one."""


@dataclass(frozen=True, slots=True)
class DemandeView:
    """One demande of the usager."""

    usager_id: str
    """Internal id of the usager the demande belongs to (never spoken)."""
    type: str
    """Type code: APA_DOMICILE, APA_ETAB, APA_URGENCE, PCH, AAH, AEEH, CMI_INV, CMI_PRIO,
    CMI_STAT, RQTH, ORIENT_ESMS... (facts §10)."""
    numero: str
    """Dossier number (never spoken: it may be given back to the agent)."""
    status: str
    """Current status code (facts §9)."""
    status_date: date
    """Day the current status was reached."""
    history: tuple[StatusChange, ...] = ()
    """Status history, oldest first, ending with the current status."""
    missing_documents: tuple[MissingDocument, ...] = ()
    """Documents still expected."""
    decision: Decision | None = None
    """Decision, once there is one."""
    cdaph_date: date | None = None
    """Day of the CDAPH session the demande is listed for (MDPH)."""


@dataclass(frozen=True, slots=True)
class PaymentView:
    """One payment (never bank details)."""

    usager_id: str
    """Internal id of the usager paid."""
    prestation: str
    """Type code of the prestation paid (APA_DOMICILE, PCH...)."""
    period_start: date
    """First day of the period paid."""
    period_end: date
    """Last day of the period paid."""
    date: date
    """Payment (mandatement) date, or planned date."""
    amount_cents: int
    """Amount paid to the usager, in cents."""
    status: PaymentStatus
    """Paid, scheduled, withheld or cancelled."""
    motif_ecart: PaymentMotif | None = None
    """Why the amount differs from the usual one."""


@dataclass(frozen=True, slots=True)
class AppointmentView:
    """One appointment."""

    usager_id: str
    """Internal id of the usager."""
    kind: AppointmentKind
    """What the appointment is."""
    when: datetime
    """Local date and time."""
    place: str = ""
    """Spoken place, e.g. "à votre domicile" (empty when not known)."""


@dataclass(frozen=True, slots=True)
class DossierView:
    """What the identified caller may hear about one usager's dossier."""

    usager_id: str
    """Internal id of the usager (never spoken)."""
    role: Role
    """Role of the caller."""
    permissions: frozenset[Permission]
    """What the caller may be told."""
    demandes: tuple[DemandeView, ...] = ()
    """The usager's demandes."""
    payments: tuple[PaymentView, ...] = ()
    """The usager's payments."""
    appointments: tuple[AppointmentView, ...] = ()
    """The usager's appointments."""


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


class HandoverReason(enum.StrEnum):
    """Why a person must follow the spoken answer (most serious first)."""

    INCONSISTENT_DATA = "inconsistent_data"
    UNKNOWN_STATUS = "unknown_status"
    DEADLINE_PASSED = "deadline_passed"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    RIGHTS_EXPIRED = "rights_expired"
    PAYMENT_MISSING = "payment_missing"
    PAYMENT_UNEXPLAINED = "payment_unexplained"
    MISSING_DATA = "missing_data"
    NO_DEMANDE = "no_demande"
    ATTESTATION = "attestation"
    """A person sends the attestation."""


@dataclass(frozen=True, slots=True)
class SpokenAnswer:
    """Answer to speak to the caller."""

    intent_id: str
    """Intent answered."""
    text: str
    """Text for the synthesiser (already through :func:`faq.answers.to_spoken`)."""
    handover: bool = False
    """True when a person must follow."""
    reason: HandoverReason | None = None
    """Why, when ``handover``."""
    numero: str | None = None
    """Dossier number the answer is about, for the trail and the agent (not spoken)."""
    detail: str = ""
    """Technical detail for the trail (codes only, no personal data)."""


DOSSIER_INTENTS = frozenset(
    {
        "suivi_dossier_apa",
        "suivi_dossier_mdph",
        "pieces_manquantes",
        "rdv_evaluation_domicile",
        "paiement_date",
        "paiement_montant_ecart",
        "attestation_releve_paiement",
        "renouvellement_droits",
    }
)
"""Intents :func:`answer` speaks from the dossier."""

# ---------------------------------------------------------------------------------------------
# Numbers, amounts and dates in words
# ---------------------------------------------------------------------------------------------

_UNITS = (
    "zéro un deux trois quatre cinq six sept huit neuf dix onze douze treize quatorze quinze seize"
).split()
_TENS = {2: "vingt", 3: "trente", 4: "quarante", 5: "cinquante", 6: "soixante"}


def _below_100(n: int, final: bool) -> str:
    if n < 17:
        return _UNITS[n]
    if n < 20:
        return "dix-" + _UNITS[n - 10]
    if n < 70:
        tens, unit = divmod(n, 10)
        if unit == 0:
            return _TENS[tens]
        if unit == 1:
            return _TENS[tens] + " et un"
        return _TENS[tens] + "-" + _UNITS[unit]
    if n < 80:
        return "soixante et onze" if n == 71 else "soixante-" + _below_100(n - 60, final)
    if n == 80:
        # "quatre-vingts" takes an s only when nothing follows it (not before "mille").
        return "quatre-vingts" if final else "quatre-vingt"
    return "quatre-vingt-" + _below_100(n - 80, final)


def _below_1000(n: int, final: bool) -> str:
    hundreds, rest = divmod(n, 100)
    if hundreds == 0:
        return _below_100(rest, final)
    head = "cent" if hundreds == 1 else _UNITS[hundreds] + " cent"
    if rest == 0:
        # "deux cents" but "deux cent mille", "deux cent un".
        return head + ("s" if hundreds > 1 and final else "")
    return head + " " + _below_100(rest, final)


def int_in_words(n: int) -> str:
    """Write a whole number in French words (traditional spelling).

    Args:
        n: Number, 0 ≤ n < 10¹².

    Returns:
        The number in words: 71 "soixante et onze", 80 "quatre-vingts", 200 "deux cents",
        201 "deux cent un", 80 000 "quatre-vingt mille", 2 000 000 "deux millions".

    Raises:
        ValueError: If ``n`` is out of range.
    """
    if not 0 <= n < 10**12:
        raise ValueError(f"number out of range: {n}")
    if n == 0:
        return "zéro"
    billions, rest = divmod(n, 10**9)
    millions, rest = divmod(rest, 10**6)
    thousands, units = divmod(rest, 1000)
    parts: list[str] = []
    # "million" and "milliard" are nouns: "deux cents millions", "quatre-vingts milliards".
    if billions:
        parts.append(_below_1000(billions, True) + " milliard" + ("s" if billions > 1 else ""))
    if millions:
        parts.append(_below_1000(millions, True) + " million" + ("s" if millions > 1 else ""))
    if thousands:
        # "mille" is invariable and takes no "un"; what precedes it is not final.
        parts.append("mille" if thousands == 1 else _below_1000(thousands, False) + " mille")
    if units:
        parts.append(_below_1000(units, True))
    return " ".join(parts)


def euros_in_words(cents: int) -> str:
    """Write an amount in euros in French words.

    Args:
        cents: Amount in cents, 0 ≤ cents < 10¹⁴.

    Returns:
        E.g. 41250 "quatre cent douze euros et cinquante centimes", 100 "un euro",
        50 "cinquante centimes", 0 "zéro euro", 100000000 "un million d'euros".

    Raises:
        ValueError: If ``cents`` is negative or too large.
    """
    if cents < 0:
        raise ValueError(f"negative amount: {cents}")
    euros, rest = divmod(cents, 100)
    words = int_in_words(euros)
    if euros % 10**6 == 0 and euros:
        euro_part = words + " d'euros"
    else:
        euro_part = words + (" euros" if euros > 1 else " euro")
    if rest == 0:
        return euro_part
    cent_part = int_in_words(rest) + (" centimes" if rest > 1 else " centime")
    if euros == 0:
        return cent_part
    return f"{euro_part} et {cent_part}"


_WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def date_in_words(d: date, today: date) -> str:
    """Say a date the way a person would on the phone.

    Args:
        d: The date.
        today: Today's date (the year is said only when it differs).

    Returns:
        E.g. "le mardi trois juin", "le dimanche premier juin",
        "le lundi trente décembre deux mille vingt-quatre".
    """
    day = "premier" if d.day == 1 else int_in_words(d.day)
    text = f"le {_WEEKDAYS[d.weekday()]} {day} {_MONTHS[d.month - 1]}"
    if d.year != today.year:
        text += " " + int_in_words(d.year)
    return text


def month_in_words(d: date, today: date) -> str:
    """Say the month of a date ("mai", "décembre deux mille vingt-quatre").

    Args:
        d: Any day of the month.
        today: Today's date (the year is said only when it differs).

    Returns:
        The month name, with the year when it is not the current one.
    """
    text = _MONTHS[d.month - 1]
    if d.year != today.year:
        text += " " + int_in_words(d.year)
    return text


def time_in_words(t: datetime) -> str:
    """Say a time of day ("quatorze heures trente", "neuf heures", "midi").

    Args:
        t: The time.

    Returns:
        The time in words.
    """
    if t.minute == 0 and t.hour in (0, 12):
        return "minuit" if t.hour == 0 else "midi"
    # "heure" is feminine: "une heure", "vingt et une heures".
    hours = int_in_words(t.hour)
    if hours.endswith("un"):
        hours += "e"
    text = hours + (" heure" if t.hour == 1 else " heures")
    if t.minute:
        text += " " + int_in_words(t.minute)
    return text


def add_months(d: date, months: int) -> date:
    """Add calendar months, clamping to the month's last day (31 jan + 1 month = 28/29 feb).

    Args:
        d: Start date.
        months: Months to add (may be negative).

    Returns:
        The shifted date.
    """
    index = d.month - 1 + months
    year, month = d.year + index // 12, index % 12 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " et " + items[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _de(noun: str) -> str:
    """Prefix "de", elided before a vowel ("d'APA", "de prestation")."""
    return ("d'" if noun[:1].lower() in "aeéèêioôuh" else "de ") + noun


# ---------------------------------------------------------------------------------------------
# Domain tables (facts §9)
# ---------------------------------------------------------------------------------------------

APA_TYPES = frozenset({"APA_DOMICILE", "APA_ETAB", "APA_URGENCE"})
"""Demande types handled by the APA service."""
MDPH_TYPES = frozenset(
    {"PCH", "AAH", "AEEH", "CMI_INV", "CMI_PRIO", "CMI_STAT", "RQTH", "ORIENT_ESMS"}
)
"""Demande types decided by the MDPH (CDAPH)."""

_TYPE_NAMES = {
    "APA_DOMICILE": "APA à domicile",
    "APA_ETAB": "APA en établissement",
    "APA_URGENCE": "APA d'urgence",
    "PCH": "prestation de compensation du handicap",
    "AAH": "allocation aux adultes handicapés",
    "AEEH": "allocation d'éducation de l'enfant handicapé",
    "CMI_INV": "carte mobilité inclusion invalidité",
    "CMI_PRIO": "carte mobilité inclusion priorité",
    "CMI_STAT": "carte mobilité inclusion stationnement",
    "RQTH": "reconnaissance de la qualité de travailleur handicapé",
    "ORIENT_ESMS": "orientation vers un établissement ou un service",
}

_APA_PENDING = ("COMPLET", "EVALUATION_PLANIFIEE", "EVALUATION_REALISEE", "PLAN_PROPOSE")
_MDPH_PENDING = (
    "RECEVABLE",
    "EN_EVALUATION",
    "EVALUATION_COMPLEMENTAIRE",
    "PPC_ENVOYE",
    "INSCRIT_CDAPH",
)
APA_STATUSES = frozenset(
    {
        "BROUILLON",
        "RECU",
        "INCOMPLET",
        *_APA_PENDING,
        "DECISION_NOTIFIEE",
        "DROITS_OUVERTS",
        "EN_PAIEMENT",
        "SUSPENDU",
        "REVISION_EN_COURS",
        "CLOS",
        "RECOURS_RAPO",
        "URGENCE_FORFAIT",
    }
)
"""APA status codes (facts §9)."""
MDPH_STATUSES = frozenset(
    {
        "DEPOSEE",
        "EN_ATTENTE_PIECES",
        *_MDPH_PENDING,
        "DECISION_PRISE",
        "NOTIFIEE",
        "DROIT_OUVERT",
        "REJET",
        "MISE_EN_OEUVRE",
        "RAPO_EN_COURS",
        "CONCILIATION",
    }
)
"""MDPH status codes (facts §9)."""

_GRANTED = frozenset({"DROITS_OUVERTS", "EN_PAIEMENT", "DROIT_OUVERT", "MISE_EN_OEUVRE"})
_DECIDED = _GRANTED | {"DECISION_NOTIFIEE", "NOTIFIEE", "REJET"}
_INCOMPLETE = frozenset({"INCOMPLET", "EN_ATTENTE_PIECES"})
_APA_DEADLINE_MONTHS = 2
_MDPH_DEADLINE_MONTHS = 4
_RAPO_MONTHS = 2
_PAYMENT_GAP_DAYS = 40
"""A monthly payment older than this, with none scheduled, counts as missing."""

# ---------------------------------------------------------------------------------------------
# Answer assembly
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Reply:
    intent_id: str
    sentences: list[str] = field(default_factory=list)
    reason: HandoverReason | None = None
    numero: str | None = None
    detail: str = ""

    def say(self, *sentences: str) -> None:
        self.sentences.extend(s for s in sentences if s)

    def hand_over(self, reason: HandoverReason, detail: str = "") -> None:
        # Keep the most serious reason (HandoverReason lists them in that order).
        order = list(HandoverReason)
        if self.reason is None or order.index(reason) < order.index(self.reason):
            self.reason = reason
            self.detail = detail

    def build(self) -> SpokenAnswer:
        return SpokenAnswer(
            intent_id=self.intent_id,
            text=to_spoken(" ".join(self.sentences)),
            handover=self.reason is not None,
            reason=self.reason,
            numero=self.numero,
            detail=self.detail,
        )


class _Inconsistent(Exception):
    """Data that cannot be spoken safely; carries a detail code for the trail."""


_INCONSISTENT_TEXT = (
    "Les informations de ce dossier ne sont pas cohérentes, et je préfère ne pas vous donner "
    "une réponse fausse. Je vous passe un conseiller qui va vérifier."
)
_NOT_ALLOWED = {
    Permission.STATUS: "l'état des demandes",
    Permission.DECISIONS: "le détail des décisions",
    Permission.PAYMENTS: "les paiements et les montants",
    Permission.APPOINTMENTS: "les rendez-vous",
    Permission.DOCUMENTS: "les pièces du dossier",
}


def answer(intent_id: str, view: DossierView, today: date) -> SpokenAnswer | None:
    """Speak the caller's dossier for an intent that needs it.

    Args:
        intent_id: One of :data:`DOSSIER_INTENTS`.
        view: The identified caller's view of one usager's dossier.
        today: Today's date (local).

    Returns:
        The spoken answer; it hands over to a person for suspensions, rejections, passed
        legal deadlines, unknown or inconsistent data. None when the intent is not one this
        module speaks.
    """
    handler = _HANDLERS.get(intent_id)
    if handler is None:
        return None
    reply = _Reply(intent_id)
    try:
        _check_owner(view)
        needed = _NEEDS[intent_id]
        if needed not in view.permissions:
            reply.say(
                f"Je ne peux pas vous donner {_NOT_ALLOWED[needed]} de ce dossier : "
                "ce n'est pas prévu pour votre rôle. La personne concernée ou son "
                "représentant légal peut nous appeler."
            )
            # No hand-over (an agent could not tell them either), but the trail must tell
            # this refusal from an answer.
            reply.detail = f"not_permitted:{needed.value}"
            return reply.build()
        handler(reply, view, today)
    except _Inconsistent as exc:
        reply = _Reply(intent_id, numero=reply.numero)
        reply.say(_INCONSISTENT_TEXT)
        reply.hand_over(HandoverReason.INCONSISTENT_DATA, str(exc))
    return reply.build()


def _check_owner(view: DossierView) -> None:
    items: Iterable[DemandeView | PaymentView | AppointmentView] = (
        *view.demandes,
        *view.payments,
        *view.appointments,
    )
    if any(item.usager_id != view.usager_id for item in items):
        raise _Inconsistent("item of another usager")


def _your(view: DossierView, article: str) -> str:
    """Say "votre" for the usager, the plain article for a third party."""
    return "votre" if view.role is Role.USAGER else article


def _check_demande(d: DemandeView, today: date, decisions_known: bool) -> None:
    if d.status_date > today:
        raise _Inconsistent(f"status date in the future ({d.status})")
    dates = [step.date for step in d.history]
    if dates != sorted(dates) or any(day > today for day in dates):
        raise _Inconsistent("history out of order or in the future")
    if d.history and (d.history[-1].code, d.history[-1].date) != (d.status, d.status_date):
        raise _Inconsistent("history does not end with the current status")
    decision = d.decision
    if decision is not None:
        if decision.decided_on > today:
            raise _Inconsistent("decision date in the future")
        if decision.sans_limitation and decision.end is not None:
            raise _Inconsistent("decision both limited and unlimited")
        if decision.start and decision.end and decision.end < decision.start:
            raise _Inconsistent("decision ends before it starts")
        if (decision.monthly_amount_cents or 0) < 0:
            raise _Inconsistent("negative amount")
        if d.status in _GRANTED and decision.sens is DecisionSens.REJET:
            raise _Inconsistent(f"{d.status} with a rejection")
        if d.status == "REJET" and decision.sens is not DecisionSens.REJET:
            raise _Inconsistent("REJET with a positive decision")
    elif decisions_known and d.status in _DECIDED:
        # A caller who may not know decisions gets a view without them: not an inconsistency.
        raise _Inconsistent(f"{d.status} without a decision")


def _started(d: DemandeView) -> date:
    return d.history[0].date if d.history else d.status_date


def _most_recent(demandes: Sequence[DemandeView]) -> DemandeView:
    return max(demandes, key=lambda d: (_started(d), d.status_date, d.numero))


def _step_date(d: DemandeView, code: str) -> date | None:
    dates = [step.date for step in d.history if step.code == code]
    if not dates and d.status == code:
        return d.status_date
    return dates[-1] if dates else None


def _others(view: DossierView, chosen: DemandeView, kinds: frozenset[str]) -> str:
    others = [d for d in view.demandes if d.type in kinds and d is not chosen]
    if not others:
        return ""
    names = sorted({_TYPE_NAMES[d.type] for d in others})
    listed = _join([f"une demande {_de(name)}" for name in names])
    return f"Il y a aussi dans ce dossier {listed}. Un conseiller peut vous en parler."


# -- suivi_dossier_apa / suivi_dossier_mdph ----------------------------------------------------


def _status_apa(reply: _Reply, view: DossierView, today: date) -> None:
    _status(reply, view, today, APA_TYPES, "d'APA", APA_STATUSES, _speak_apa)


def _status_mdph(reply: _Reply, view: DossierView, today: date) -> None:
    _status(reply, view, today, MDPH_TYPES, "à la MDPH", MDPH_STATUSES, _speak_mdph)


_Speaker = Callable[[_Reply, DossierView, DemandeView, date, str], None]


def _status(
    reply: _Reply,
    view: DossierView,
    today: date,
    kinds: frozenset[str],
    kind_name: str,
    statuses: frozenset[str],
    speak: _Speaker,
) -> None:
    demandes = [d for d in view.demandes if d.type in kinds]
    if not demandes:
        reply.say(
            f"Je ne trouve pas de demande {kind_name} dans ce dossier. "
            "Je vous passe un conseiller qui va vérifier avec vous."
        )
        reply.hand_over(HandoverReason.NO_DEMANDE)
        return
    d = _most_recent(demandes)
    reply.numero = d.numero
    _check_demande(d, today, Permission.DECISIONS in view.permissions)
    if d.status not in statuses:
        reply.say(
            f"Je ne sais pas lire l'état actuel de la demande {_de(_TYPE_NAMES[d.type])}. "
            "Je vous passe un conseiller."
        )
        reply.hand_over(HandoverReason.UNKNOWN_STATUS, d.status)
        return
    name = f"{_your(view, 'la')} demande {_de(_TYPE_NAMES[d.type])}"
    speak(reply, view, d, today, name)
    reply.say(_others(view, d, kinds))


def _say_missing(reply: _Reply, view: DossierView, d: DemandeView, today: date) -> None:
    if Permission.DOCUMENTS not in view.permissions:
        return
    if not d.missing_documents:
        reply.say("Je n'ai pas la liste des pièces attendues.")
        reply.hand_over(HandoverReason.MISSING_DATA, "incomplete without a list")
        return
    reply.say(_cap(_missing_text(d, today)) + ".")


def _missing_text(d: DemandeView, today: date) -> str:
    labels = [doc.label for doc in d.missing_documents]
    asked = [doc.requested_on for doc in d.missing_documents if doc.requested_on]
    if len(labels) == 1:
        pieces, asked_word = "la pièce attendue est", "demandée"
    else:
        pieces, asked_word = "les pièces attendues sont", "demandées"
    when = f", {asked_word} {date_in_words(max(asked), today)}" if asked else ""
    return f"{pieces} {_join(labels)}{when}"


def _say_appointment(
    reply: _Reply, view: DossierView, today: date, kinds: Sequence[AppointmentKind]
) -> bool:
    if Permission.APPOINTMENTS not in view.permissions:
        return False
    appointment = _next_appointment(view, today, kinds)
    if appointment is None:
        return False
    reply.say(f"Le rendez-vous est fixé {_appointment_in_words(appointment, today)}.")
    return True


def _say_no_visit_date(reply: _Reply, view: DossierView, today: date) -> None:
    past = [a for a in view.appointments if a.kind is AppointmentKind.EVALUATION_DOMICILE]
    if past:
        when = date_in_words(max(a.when for a in past).date(), today)
        reply.say(
            f"La visite était prévue {when}, mais le dossier n'indique pas encore qu'elle a eu "
            "lieu. Un conseiller va vérifier."
        )
        reply.hand_over(HandoverReason.MISSING_DATA, "visit passed, status not updated")
    else:
        reply.say("Je ne trouve pas la date de cette visite. Un conseiller va vérifier.")
        reply.hand_over(HandoverReason.MISSING_DATA, "planned visit without date")


def _appointment_in_words(a: AppointmentView, today: date) -> str:
    text = f"{date_in_words(a.when.date(), today)}, à {time_in_words(a.when)}"
    return f"{text}, {a.place}" if a.place else text


def _next_appointment(
    view: DossierView, today: date, kinds: Sequence[AppointmentKind]
) -> AppointmentView | None:
    future = [a for a in view.appointments if a.kind in kinds and a.when.date() >= today]
    return min(future, key=lambda a: a.when) if future else None


def _say_decision_amount(reply: _Reply, view: DossierView, decision: Decision) -> None:
    if {Permission.DECISIONS, Permission.PAYMENTS} <= view.permissions and (
        decision.monthly_amount_cents
    ):
        reply.say(
            f"Le montant accordé est de {euros_in_words(decision.monthly_amount_cents)} par mois."
        )


def _say_rights(reply: _Reply, decision: Decision, today: date) -> None:
    if decision.sans_limitation:
        reply.say("Le droit est accordé sans limitation de durée.")
    elif decision.start and decision.end:
        reply.say(
            f"Le droit est ouvert du {date_in_words(decision.start, today)[3:]} "
            f"au {date_in_words(decision.end, today)[3:]}."
        )
    elif decision.start:
        reply.say(f"Le droit est ouvert depuis {date_in_words(decision.start, today)}.")


def _say_deadline(
    reply: _Reply, d: DemandeView, today: date, start_code: str, months: int, apa: bool
) -> None:
    start = _step_date(d, start_code)
    if start is None:
        return
    deadline = add_months(start, months)
    delay = int_in_words(months)
    if today <= deadline:
        reply.say(
            f"Le délai légal de {delay} mois court depuis {date_in_words(start, today)} : "
            f"la décision doit arriver au plus tard {date_in_words(deadline, today)}."
        )
        return
    if apa:
        reply.say(
            f"Le délai légal de {delay} mois après le dossier complet a pris fin "
            f"{date_in_words(deadline, today)} sans décision. En principe, sans réponse dans ce "
            "délai, la demande d'APA est considérée comme acceptée. Je vous passe un "
            "conseiller qui va vérifier votre dossier."
        )
    else:
        reply.say(
            f"Le délai légal de {delay} mois a pris fin {date_in_words(deadline, today)} sans "
            "décision. Cela vaut un rejet implicite : vous pouvez le contester par un recours "
            "administratif préalable, le RAPO, dans les deux mois. Je vous passe un conseiller "
            "qui va vous expliquer."
        )
    reply.hand_over(HandoverReason.DEADLINE_PASSED, f"{start_code}+{months}m")


def _say_rapo(reply: _Reply, view: DossierView, d: DemandeView, today: date, tribunal: str) -> None:
    received = d.status_date
    deadline = add_months(received, _RAPO_MONTHS)
    reply.say(
        f"{_cap(_your(view, 'le'))} recours est en cours d'examen depuis "
        f"{date_in_words(received, today)}."
    )
    if today <= deadline:
        reply.say(f"La réponse doit arriver au plus tard {date_in_words(deadline, today)}.")
        return
    reply.say(
        f"Sans réponse depuis {date_in_words(deadline, today)}, le recours est considéré comme "
        f"rejeté, et il est possible de saisir {tribunal} dans les deux mois. "
        "Je vous passe un conseiller."
    )
    reply.hand_over(HandoverReason.DEADLINE_PASSED, "RAPO+2m")


def _say_rejection(reply: _Reply, name: str, decision: Decision, today: date, to_whom: str) -> None:
    appeal_end = add_months(decision.decided_on, _RAPO_MONTHS)
    reply.say(
        f"{_cap(name)} a été refusée {date_in_words(decision.decided_on, today)} ; le courrier de "
        "décision en donne les raisons."
    )
    if today <= appeal_end:
        reply.say(
            "Vous pouvez contester cette décision par un recours administratif préalable, le "
            f"RAPO, adressé {to_whom}, dans les deux mois suivant la notification."
        )
    reply.say("Je vous passe un conseiller qui va vous expliquer.")
    reply.hand_over(HandoverReason.REJECTED)


def _decision_sent(name: str, since: str) -> str:
    return (
        f"Pour {name}, la décision a été envoyée par courrier {since}. Je ne peux pas vous en "
        "donner le contenu : la personne concernée ou son représentant légal peut nous appeler."
    )


def _speak_apa(reply: _Reply, view: DossierView, d: DemandeView, today: date, name: str) -> None:
    since = date_in_words(d.status_date, today)
    s = d.status
    decision = d.decision
    if s == "BROUILLON":
        reply.say(
            f"{_cap(name)} est en cours de saisie sur le téléservice : elle n'a pas "
            "encore été envoyée. Une fois envoyée, un accusé de réception arrive en général "
            "sous dix jours."
        )
    elif s == "RECU":
        reply.say(
            f"{_cap(name)} a été reçue {since} et elle est en cours d'enregistrement. "
            "Un accusé de réception, ou une demande de pièces manquantes, est envoyé dans les "
            "dix jours suivant la réception."
        )
    elif s == "INCOMPLET":
        reply.say(f"{_cap(name)} est incomplète depuis {since} : il manque des pièces.")
        _say_missing(reply, view, d, today)
        reply.say(
            "Dès leur réception, le dossier sera complet et le délai de deux mois pour la "
            "décision commencera."
        )
    elif s == "COMPLET":
        reply.say(
            f"{_cap(name)} est complète depuis {since}. Prochaine étape : un "
            "professionnel de l'équipe médico-sociale va appeler pour fixer une visite "
            "d'évaluation à domicile, en général dans les deux à quatre semaines."
        )
    elif s == "EVALUATION_PLANIFIEE":
        reply.say(f"Pour {name}, une visite d'évaluation à domicile est prévue.")
        if not _say_appointment(reply, view, today, (AppointmentKind.EVALUATION_DOMICILE,)):
            if Permission.APPOINTMENTS in view.permissions:
                _say_no_visit_date(reply, view, today)
        reply.say("Après la visite, un plan d'aide sera proposé.")
    elif s == "EVALUATION_REALISEE":
        reply.say(
            f"Pour {name}, l'évaluation à domicile a été faite {since}, et le plan d'aide est "
            "en préparation. Il sera proposé par courrier, avec une dizaine de jours pour "
            "donner son avis."
        )
    elif s == "PLAN_PROPOSE":
        reply.say(
            f"Pour {name}, un plan d'aide a été proposé {since} : il attend votre accord. "
            "Renvoyez votre accord ou vos observations dans une dizaine de jours ; la "
            "décision suivra."
        )
    elif s == "DECISION_NOTIFIEE" and Permission.DECISIONS not in view.permissions:
        reply.say(_decision_sent(name, since))
    elif s == "DECISION_NOTIFIEE":
        assert decision is not None  # checked by _check_demande
        if decision.sens is DecisionSens.REJET:
            _say_rejection(reply, name, decision, today, "au président du Département")
            return
        partial = " en partie" if decision.sens is DecisionSens.PARTIEL else ""
        reply.say(
            f"{_cap(name)} a été acceptée{partial} {date_in_words(decision.decided_on, today)}."
        )
        _say_decision_amount(reply, view, decision)
        reply.say(
            "Le premier versement arrive le mois qui suit la décision, avec le rappel depuis "
            "l'ouverture des droits."
        )
    elif s in ("DROITS_OUVERTS", "EN_PAIEMENT"):
        opened = (decision.start or decision.decided_on) if decision is not None else d.status_date
        if decision is None or Permission.DECISIONS not in view.permissions:
            opened = _step_date(d, "DROITS_OUVERTS") or d.status_date
        reply.say(f"Pour {name}, les droits sont ouverts depuis {date_in_words(opened, today)}.")
        if decision is not None:
            _say_decision_amount(reply, view, decision)
        if s == "EN_PAIEMENT":
            reply.say("L'APA est versée chaque mois, au plus tard le dix du mois.")
        else:
            reply.say("Le premier versement arrive le mois qui suit la décision, avec le rappel.")
    elif s == "SUSPENDU":
        reply.say(
            f"Pour {name}, le versement est suspendu depuis {since}. Cela arrive par exemple "
            "après une hospitalisation de plus de trente jours, ou quand des justificatifs "
            "manquent. Je vous passe un conseiller qui va vous dire pourquoi et comment le "
            "reprendre."
        )
        reply.hand_over(HandoverReason.SUSPENDED)
        return
    elif s == "REVISION_EN_COURS":
        reply.say(
            f"Pour {name}, une révision du plan d'aide est en cours depuis {since}. Un "
            "professionnel peut revenir à domicile, puis la nouvelle décision sera envoyée "
            "par courrier."
        )
    elif s == "CLOS":
        reply.say(f"Pour {name}, les droits sont fermés depuis {since}.")
    elif s == "RECOURS_RAPO":
        _say_rapo(reply, view, d, today, "le tribunal administratif")
        return
    else:  # URGENCE_FORFAIT
        reply.say(
            f"Pour {name}, une APA d'urgence est versée depuis {since}, à titre d'avance. Le "
            "montant définitif sera fixé dans les deux mois."
        )
    if s in _APA_PENDING:
        _say_deadline(reply, d, today, "COMPLET", _APA_DEADLINE_MONTHS, apa=True)


_MDPH_NEXT = {
    "AAH": "L'allocation est versée par la CAF ou la MSA, vers le cinq du mois.",
    "AEEH": "L'allocation est versée par la CAF ou la MSA, vers le cinq du mois.",
    "PCH": "La prestation est versée chaque mois par le Département.",
    "CMI_INV": "La carte est fabriquée par l'Imprimerie nationale, qui envoie un courrier pour "
    "demander une photo.",
    "ORIENT_ESMS": "La décision est transmise aux établissements ; c'est à vous de les "
    "contacter pour l'admission.",
}
_MDPH_NEXT["CMI_PRIO"] = _MDPH_NEXT["CMI_STAT"] = _MDPH_NEXT["CMI_INV"]


def _speak_mdph(reply: _Reply, view: DossierView, d: DemandeView, today: date, name: str) -> None:
    since = date_in_words(d.status_date, today)
    s = d.status
    decision = d.decision
    if s == "DEPOSEE":
        reply.say(
            f"{_cap(name)} a été reçue et enregistrée {since}. La MDPH vérifie les "
            "pièces ; l'accusé de réception arrive en général sous une à deux semaines."
        )
    elif s == "EN_ATTENTE_PIECES":
        reply.say(
            f"{_cap(name)} n'est pas encore recevable depuis {since} : il manque des "
            "pièces obligatoires."
        )
        _say_missing(reply, view, d, today)
        reply.say(
            "L'étude commencera dès leur réception. Envoyez-les dans les trente jours environ."
        )
    elif s == "RECEVABLE":
        reply.say(
            f"{_cap(name)} est recevable : l'accusé de réception a été envoyé {since}. "
            "L'équipe pluridisciplinaire va maintenant l'étudier."
        )
    elif s == "EN_EVALUATION":
        reply.say(
            f"{_cap(name)} est étudiée par l'équipe pluridisciplinaire depuis {since}. "
            "Ensuite, un plan personnalisé de compensation sera envoyé, puis la commission, "
            "la CDAPH, décidera."
        )
    elif s == "EVALUATION_COMPLEMENTAIRE":
        reply.say(
            f"Pour {name}, l'équipe a demandé depuis {since} un bilan, une convocation ou "
            "une visite."
        )
        _say_appointment(reply, view, today, tuple(AppointmentKind))
        reply.say("L'étude reprendra une fois ces éléments reçus.")
    elif s == "PPC_ENVOYE":
        reply.say(
            f"Pour {name}, un plan personnalisé de compensation a été envoyé {since}. Vous "
            "avez environ quinze jours pour faire vos observations ; ensuite, la commission, "
            "la CDAPH, décidera."
        )
    elif s == "INSCRIT_CDAPH":
        when = f" {date_in_words(d.cdaph_date, today)}" if d.cdaph_date else ""
        reply.say(
            f"{_cap(name)} passera en commission, la CDAPH{when}. Le courrier de "
            "décision arrive en général deux à trois semaines après la commission."
        )
    elif s == "DECISION_PRISE":
        reply.say(
            f"Pour {name}, la commission a pris sa décision {since}. La décision est envoyée "
            "par courrier, en général deux à trois semaines après la commission : je ne peux "
            "pas la donner avant."
        )
    elif s in ("NOTIFIEE", "REJET") and Permission.DECISIONS not in view.permissions:
        reply.say(_decision_sent(name, since))
    elif s in ("DROIT_OUVERT", "MISE_EN_OEUVRE") and Permission.DECISIONS not in view.permissions:
        reply.say(f"Pour {name}, le droit est ouvert.", _MDPH_NEXT.get(d.type, ""))
    elif s in ("NOTIFIEE", "DROIT_OUVERT", "MISE_EN_OEUVRE", "REJET"):
        assert decision is not None  # checked by _check_demande
        if decision.sens is DecisionSens.REJET:
            _say_rejection(reply, name, decision, today, "à la MDPH")
            return
        partial = " en partie" if decision.sens is DecisionSens.PARTIEL else ""
        reply.say(
            f"{_cap(name)} a été acceptée{partial} par la commission "
            f"{date_in_words(decision.decided_on, today)}."
        )
        _say_rights(reply, decision, today)
        if d.type == "PCH":
            _say_decision_amount(reply, view, decision)
        reply.say(_MDPH_NEXT.get(d.type, ""))
    elif s == "RAPO_EN_COURS":
        _say_rapo(reply, view, d, today, "le tribunal")
        return
    else:  # CONCILIATION
        reply.say(
            f"Pour {name}, une conciliation est en cours depuis {since}. La personne "
            "chargée de la conciliation rend son rapport dans les deux mois."
        )
    if s in _MDPH_PENDING:
        _say_deadline(reply, d, today, "RECEVABLE", _MDPH_DEADLINE_MONTHS, apa=False)


# -- pieces_manquantes -------------------------------------------------------------------------


def _missing_documents(reply: _Reply, view: DossierView, today: date) -> None:
    known = [d for d in view.demandes if d.type in APA_TYPES | MDPH_TYPES]
    waiting = [d for d in known if d.status in _INCOMPLETE or d.missing_documents]
    if not waiting:
        if not known:
            reply.say(
                "Je ne trouve pas de demande en cours dans ce dossier. Je vous passe un "
                "conseiller qui va vérifier avec vous."
            )
            reply.hand_over(HandoverReason.NO_DEMANDE)
            return
        d = _most_recent(known)
        reply.numero = d.numero
        _check_demande(d, today, Permission.DECISIONS in view.permissions)
        reply.say(
            f"Aucune pièce n'est attendue pour {_your(view, 'la')} demande "
            f"{_de(_TYPE_NAMES[d.type])}."
        )
        return
    d = _most_recent(waiting)
    reply.numero = d.numero
    _check_demande(d, today, Permission.DECISIONS in view.permissions)
    name = f"{_your(view, 'la')} demande {_de(_TYPE_NAMES[d.type])}"
    if not d.missing_documents:
        reply.say(
            f"{_cap(name)} attend des pièces, mais je n'en ai pas la liste. Je vous "
            "passe un conseiller."
        )
        reply.hand_over(HandoverReason.MISSING_DATA, "incomplete without a list")
        return
    reply.say(f"Pour {name}, {_missing_text(d, today)}.")
    reply.say(
        "Tant qu'elles ne sont pas reçues, l'étude du dossier ne démarre pas. Envoyez-les avec "
        "le numéro de dossier, par courrier, en ligne ou à l'accueil."
    )
    others = [o for o in waiting if o is not d]
    if others:
        reply.say(
            "D'autres demandes de ce dossier attendent aussi des pièces ; un conseiller peut "
            "vous en donner la liste."
        )


# -- rdv_evaluation_domicile ----------------------------------------------------------------


def _appointment(reply: _Reply, view: DossierView, today: date) -> None:
    visit = _next_appointment(view, today, (AppointmentKind.EVALUATION_DOMICILE,))
    apa = [d for d in view.demandes if d.type in APA_TYPES]
    demande = _most_recent(apa) if apa else None
    if demande is not None:
        reply.numero = demande.numero
        _check_demande(demande, today, Permission.DECISIONS in view.permissions)
    if visit is not None:
        reply.say(
            f"{_cap(_your(view, 'la'))} visite d'évaluation à domicile est prévue "
            f"{_appointment_in_words(visit, today)}. Un proche peut être présent, c'est même "
            "conseillé. Pour la déplacer, un conseiller du service APA peut vous aider."
        )
        return
    status = demande.status if demande else None
    if status == "EVALUATION_PLANIFIEE":
        _say_no_visit_date(reply, view, today)
    elif status in ("RECU", "INCOMPLET", "COMPLET"):
        reply.say(
            "Aucune visite n'est encore fixée. Quand le dossier est complet, un professionnel "
            "de l'équipe médico-sociale appelle pour convenir d'une date, en général dans les "
            "deux à quatre semaines."
        )
    elif demande is not None and (done := _step_date(demande, "EVALUATION_REALISEE")):
        reply.say(f"La visite d'évaluation a eu lieu {date_in_words(done, today)}.")
    else:
        reply.say(
            "Je ne trouve pas de visite d'évaluation prévue dans ce dossier. Je vous passe le "
            "service APA."
        )
        reply.hand_over(HandoverReason.MISSING_DATA, "no visit")


# -- paiement_date / paiement_montant_ecart / attestation_releve_paiement ----------------------


def _check_payments(view: DossierView, today: date) -> None:
    for p in view.payments:
        if p.amount_cents < 0 or p.period_end < p.period_start:
            raise _Inconsistent("payment amount or period")
        if p.status.paid and p.date > today:
            raise _Inconsistent("payment paid in the future")


def _paid(view: DossierView) -> list[PaymentView]:
    return sorted(
        (p for p in view.payments if p.status.paid),
        key=lambda p: (p.date, p.period_start),
    )


def _period_in_words(p: PaymentView, today: date) -> str:
    start, end = p.period_start, p.period_end
    last = calendar.monthrange(start.year, start.month)[1]
    if start.day == 1 and end == start.replace(day=last):
        return f"pour le mois {_de(month_in_words(start, today))}"
    return (
        f"pour la période du {date_in_words(start, today)[3:]} au {date_in_words(end, today)[3:]}"
    )


def _prestation_name(code: str) -> str:
    name = _TYPE_NAMES.get(code)
    if name is None:
        raise _Inconsistent(f"unknown prestation {code}")
    return name


def _no_payment(reply: _Reply, view: DossierView) -> None:
    paid_by_caf = {d.type for d in view.demandes} & {"AAH", "AEEH"}
    if paid_by_caf and not {d.type for d in view.demandes} & (APA_TYPES | {"PCH"}):
        reply.say(
            "L'allocation est versée par la CAF ou la MSA, pas par le Département : c'est "
            "auprès d'elles qu'il faut demander les dates de paiement."
        )
        return
    reply.say(
        "Je ne vois aucun paiement dans ce dossier. Le premier versement arrive le mois qui "
        "suit la décision. Je vous passe le service paiement pour vérifier."
    )
    reply.hand_over(HandoverReason.PAYMENT_MISSING, "no payment")


def _payment_date(reply: _Reply, view: DossierView, today: date) -> None:
    _check_payments(view, today)
    paid = _paid(view)
    scheduled = sorted(
        (p for p in view.payments if p.status is PaymentStatus.PREVU), key=lambda p: p.date
    )
    late = [p for p in scheduled if p.date < today]
    upcoming = [p for p in scheduled if p.date >= today]
    if not paid and not scheduled:
        _no_payment(reply, view)
        return
    if paid:
        last = paid[-1]
        reply.say(
            f"{_cap(_your(view, 'le'))} dernier paiement "
            f"{_de(_prestation_name(last.prestation))}, {euros_in_words(last.amount_cents)} "
            f"{_period_in_words(last, today)}, a été fait {date_in_words(last.date, today)}."
        )
    if late:
        reply.say(
            f"Le paiement prévu {date_in_words(late[0].date, today)} n'apparaît pas comme "
            "fait. Je vous passe le service paiement pour vérifier."
        )
        reply.hand_over(HandoverReason.PAYMENT_MISSING, "scheduled payment not made")
        return
    if suspended := [p for p in view.payments if p.status is PaymentStatus.SUSPENDU]:
        reply.say(
            f"Le versement {_period_in_words(suspended[-1], today)} est suspendu. Je vous "
            "passe le service paiement pour vous expliquer."
        )
        reply.hand_over(HandoverReason.SUSPENDED, "payment withheld")
        return
    if upcoming:
        nxt = upcoming[0]
        reply.say(
            f"Le prochain est prévu {date_in_words(nxt.date, today)}, "
            f"{euros_in_words(nxt.amount_cents)} {_period_in_words(nxt, today)}. Comptez un à "
            "trois jours selon la banque."
        )
    elif paid and (today - paid[-1].date).days > _PAYMENT_GAP_DAYS:
        reply.say(
            "Je ne vois pas de paiement depuis. Je vous passe le service paiement pour vérifier."
        )
        reply.hand_over(HandoverReason.PAYMENT_MISSING, "no payment for a month")
    else:
        reply.say(
            "Le prochain n'est pas encore programmé ; les versements mensuels sont faits au "
            "plus tard le dix du mois, puis comptez un à trois jours selon la banque."
        )


_MOTIFS = {
    PaymentMotif.RAPPEL: "un rappel, c'est-à-dire des sommes dues depuis l'ouverture des droits",
    PaymentMotif.SUSPENSION_HOSPITALISATION: (
        "une retenue liée à une hospitalisation de plus de trente jours"
    ),
    PaymentMotif.INDU: "une retenue pour rembourser un trop-perçu",
    PaymentMotif.REGULARISATION_JANVIER: (
        "la participation recalculée au premier janvier, selon les ressources"
    ),
    PaymentMotif.REVISION_PLAN: "la révision du plan d'aide",
}


def _payment_gap(reply: _Reply, view: DossierView, today: date) -> None:
    _check_payments(view, today)
    paid = _paid(view)
    if not paid:
        _no_payment(reply, view)
        return
    last = paid[-1]
    name = _prestation_name(last.prestation)
    reply.say(
        f"{_cap(_your(view, 'le'))} dernier paiement {_de(name)}, fait "
        f"{date_in_words(last.date, today)} {_period_in_words(last, today)}, est de "
        f"{euros_in_words(last.amount_cents)}."
    )
    if any(
        p.status is PaymentStatus.SUSPENDU and p.period_start >= last.period_start
        for p in view.payments
    ):
        reply.say("Le versement suivant est suspendu. Je vous passe le service paiement.")
        reply.hand_over(HandoverReason.SUSPENDED, "payment withheld")
        return
    if last.motif_ecart is not None:
        reply.say(f"Ce montant tient compte {_de_motif(_MOTIFS[last.motif_ecart])}.")
        reply.say("Si cela ne l'explique pas, je peux vous passer le service paiement.")
        return
    previous = [p for p in paid[:-1] if p.prestation == last.prestation]
    if previous and previous[-1].amount_cents != last.amount_cents:
        diff = last.amount_cents - previous[-1].amount_cents
        more_less = "de plus" if diff > 0 else "de moins"
        reply.say(
            f"C'est {euros_in_words(abs(diff))} {more_less} que le paiement précédent, et je "
            "ne vois pas de motif dans le dossier. Je vous passe le service paiement."
        )
        reply.hand_over(HandoverReason.PAYMENT_UNEXPLAINED)
        return
    if (today - last.date).days > _PAYMENT_GAP_DAYS and not any(
        p.status is PaymentStatus.PREVU and p.date >= today for p in view.payments
    ):
        reply.say("Je ne vois pas de paiement depuis. Je vous passe le service paiement.")
        reply.hand_over(HandoverReason.PAYMENT_MISSING, "no payment for a month")
        return
    if previous:
        reply.say("C'est le même montant que le paiement précédent.")
    reply.say("Si vous voyez une autre différence, je peux vous passer le service paiement.")


def _de_motif(motif: str) -> str:
    # "tient compte d'un rappel", "tient compte de la participation"
    if motif.startswith("un"):
        return "d'" + motif
    return "de " + motif


def _attestation(reply: _Reply, view: DossierView, today: date) -> None:
    _check_payments(view, today)
    paid = _paid(view)
    last_year = today.year - 1
    totals: dict[str, int] = {}
    for p in paid:
        if p.date.year == last_year:
            totals[p.prestation] = totals.get(p.prestation, 0) + p.amount_cents
    if totals:
        parts = [
            f"{euros_in_words(cents)} {_de(_prestation_name(code))}"
            for code, cents in sorted(totals.items())
        ]
        reply.say(f"En {int_in_words(last_year)}, le Département a versé au total {_join(parts)}.")
    else:
        reply.say(f"Je ne vois pas de paiement du Département en {int_in_words(last_year)}.")
    reply.say(
        "Pour les impôts, seule la part restée à votre charge ouvre droit au crédit d'impôt "
        "pour l'aide à domicile. Pour recevoir l'attestation par courrier à l'adresse du "
        "dossier, je vous passe le service paiement."
    )
    reply.hand_over(HandoverReason.ATTESTATION)


# -- renouvellement_droits -----------------------------------------------------------------


def _renewal(reply: _Reply, view: DossierView, today: date) -> None:
    granted: list[DemandeView] = []
    for d in view.demandes:
        if d.type not in MDPH_TYPES:
            continue
        _check_demande(d, today, Permission.DECISIONS in view.permissions)
        if d.decision and d.decision.sens is not DecisionSens.REJET:
            granted.append(d)
    has_apa = any(d.type in APA_TYPES and d.status in _GRANTED for d in view.demandes)
    if not granted:
        if has_apa:
            reply.say(
                "Pour l'APA, il n'y a pas de renouvellement à demander : le plan d'aide est "
                "révisé régulièrement, ou à votre demande si la situation change."
            )
            return
        reply.say(
            "Je ne trouve pas de droit ouvert avec une date de fin dans ce dossier. Je vous "
            "passe un conseiller."
        )
        reply.hand_over(HandoverReason.NO_DEMANDE)
        return

    def end_of(d: DemandeView) -> date:
        assert d.decision is not None
        return d.decision.end or date.max

    limited = [d for d in granted if d.decision and d.decision.end]
    running = [d for d in limited if end_of(d) >= today]
    expired = [d for d in limited if end_of(d) < today]
    unlimited = [d for d in granted if d.decision and d.decision.sans_limitation]
    chosen = min(running, key=end_of) if running else None
    if chosen is None and expired:
        chosen = max(expired, key=end_of)
    if chosen is None:
        if not unlimited:
            reply.say("Je ne trouve pas la date de fin de ces droits. Je vous passe un conseiller.")
            reply.hand_over(HandoverReason.MISSING_DATA, "rights without end date")
            return
        names = sorted({_TYPE_NAMES[d.type] for d in unlimited})
        reply.numero = unlimited[0].numero
        reply.say(
            f"Ces droits sont accordés sans limitation de durée, {_join(names)} : il n'y a pas "
            "de renouvellement à demander."
        )
        return
    reply.numero = chosen.numero
    end = end_of(chosen)
    name = _TYPE_NAMES[chosen.type]
    renewing = any(
        d.type == chosen.type
        and d is not chosen
        and d.decision is None
        and chosen.decision is not None
        and _started(d) > chosen.decision.decided_on
        for d in view.demandes
    )
    if end < today:
        reply.say(
            f"{_cap(_your(view, 'le'))} droit {_de_article(name)} a pris fin "
            f"{date_in_words(end, today)}."
        )
        if renewing:
            reply.say("Une nouvelle demande est déjà en cours d'examen.")
            return
        reply.say("Il faut déposer une nouvelle demande. Je vous passe un conseiller.")
        reply.hand_over(HandoverReason.RIGHTS_EXPIRED)
        return
    reply.say(
        f"{_cap(_your(view, 'le'))} droit {_de_article(name)} est ouvert jusqu'{_au(end, today)}."
    )
    earliest, latest = add_months(end, -6), add_months(end, -4)
    if renewing:
        reply.say("Une demande de renouvellement est déjà en cours d'examen.")
    elif today < earliest:
        reply.say(
            f"Déposez le renouvellement entre {date_in_words(earliest, today)} et "
            f"{date_in_words(latest, today)}, soit quatre à six mois avant l'échéance, avec un "
            "nouveau formulaire et un certificat médical de moins d'un an."
        )
    elif today <= latest:
        reply.say(
            "C'est le bon moment pour déposer le renouvellement, au plus tard "
            f"{date_in_words(latest, today)}, avec un nouveau formulaire et un certificat "
            "médical de moins d'un an."
        )
    else:
        reply.say(
            "L'échéance est proche : déposez le renouvellement dès maintenant, avec un "
            "nouveau formulaire et un certificat médical de moins d'un an."
        )
    others = len(granted) - 1
    if others:
        count = "un autre droit" if others == 1 else f"{int_in_words(others)} autres droits"
        reply.say(f"Ce dossier a aussi {count} ; un conseiller peut vous donner leurs dates.")


def _de_article(name: str) -> str:
    # "le droit à la prestation...", "à l'allocation...", "à la carte..."
    if name[:1] in "aeéiou":
        return "à l'" + name
    if name.startswith(("reconnaissance", "prestation", "carte", "orientation")):
        return "à la " + name
    return "à " + name


def _au(d: date, today: date) -> str:
    # "jusqu'au mardi trois juin"
    return "au " + date_in_words(d, today)[3:]


_Handler = Callable[[_Reply, DossierView, date], None]
_HANDLERS: dict[str, _Handler] = {
    "suivi_dossier_apa": _status_apa,
    "suivi_dossier_mdph": _status_mdph,
    "pieces_manquantes": _missing_documents,
    "rdv_evaluation_domicile": _appointment,
    "paiement_date": _payment_date,
    "paiement_montant_ecart": _payment_gap,
    "attestation_releve_paiement": _attestation,
    "renouvellement_droits": _renewal,
}
_NEEDS: dict[str, Permission] = {
    "suivi_dossier_apa": Permission.STATUS,
    "suivi_dossier_mdph": Permission.STATUS,
    "pieces_manquantes": Permission.DOCUMENTS,
    "rdv_evaluation_domicile": Permission.APPOINTMENTS,
    "paiement_date": Permission.PAYMENTS,
    "paiement_montant_ecart": Permission.PAYMENTS,
    "attestation_releve_paiement": Permission.PAYMENTS,
    "renouvellement_droits": Permission.DECISIONS,
}
