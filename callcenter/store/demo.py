"""Deterministic, realistic synthetic dossiers for demos and for testing the line (issue 4, part 3).

:func:`generate` yields synthetic usagers as the repository's import records
(:mod:`callcenter.store.dossiers`); :func:`load` writes them with the repository's upserts in
transactional batches. Rules this module owns:

1. Determinism. The output depends only on ``(seed, index, today)``: each usager draws from its
   own ``random.Random`` seeded with the demo seed and its index, so ``generate(10, s, t)`` is the
   prefix of ``generate(20, s, t)``. Nothing reads the clock.
2. Consistent histories by construction. Each demande's whole life is simulated forward from its
   dépôt along the facts §9 sequences (strictly increasing dates), then cut at ``today``: the
   current status is the last step reached, a rendez-vous exists once the step that fixes it is
   reached (so the visit of an ``EVALUATION_PLANIFIEE`` is in the future), documents asked for
   are received on the next step's date, decisions exist from their notification on, payments
   only once the rights are paid (paid ones on or before ``today``, scheduled ones after it).
3. Distributions close to facts §11: about 55 % of usagers are 60 or older with an APA
   (à domicile about three times as often as en établissement), 45 % are known to the MDPH, of
   whom 77 % adults (20 to 59) and 23 % children (under 20); MDPH demandes are deposited in
   groups (AAH, RQTH, CMI, PCH, orientation for adults; AEEH first for children).
4. Fiction only. Names come from a small embedded list; phone numbers are in the range the
   ARCEP reserves for fiction, ``01 99 00 xx xx`` (the mobile fiction range ``06 39 98`` is not a
   valid number for ``phonenumbers``, so the store would drop it). Each usager and each carer
   gets a number of their own for the first 4 997 usagers; the three guardianship associations
   share one number each, as they do in real life. Demo usagers' ``external_id`` starts with
   :data:`DEMO_PREFIX`.
5. Idempotence. Every record is keyed as the repository expects and ``upsert_usager`` is given
   ``now = today`` at midnight UTC, so loading the same set twice changes no row. A set generated
   for another ``today`` would mix two timelines: :func:`load` refuses it
   (:class:`DemoConflictError`).
"""

from __future__ import annotations

import random
import time as _time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select

from callcenter.store import dossiers as repo
from callcenter.store.dossier_models import (
    CommunicationNeed,
    DemandeType,
    PaymentStatus,
    ProtectionMeasure,
    TiersRole,
    Topic,
)

__all__ = [
    "DEMO_PREFIX",
    "DemoConflictError",
    "DemoSummary",
    "DemoUsager",
    "Population",
    "external_id",
    "generate",
    "load",
]

DEMO_PREFIX = "DEMO-"
"""``external_id`` prefix of every demo usager (``DEMO-<seed>-<index>``)."""

LOCAL_TZ = ZoneInfo("Europe/Paris")
"""Appointments are set at local office hours, then stored in UTC."""

BATCH_SIZE = 250
"""Usagers written per transaction by :func:`load`."""

PAYMENT_MONTHS = 14
"""Months of payment history generated (the snapshot reads the last 12)."""


class DemoConflictError(Exception):
    """The database holds this demo set generated for another ``today``."""


class Population:
    """Which part of the public a demo usager belongs to."""

    APA = "apa"
    """60 or older, known to the département's APA and aide sociale services."""
    MDPH_ADULTE = "mdph_adulte"
    """20 to 59, known to the MDPH."""
    MDPH_ENFANT = "mdph_enfant"
    """Under 20, known to the MDPH (the phone is the household's)."""


@dataclass(frozen=True, slots=True)
class DemoUsager:
    """One synthetic usager, as the repository's import records."""

    index: int
    """Position in the generated sequence (0-based)."""
    population: str
    """A :class:`Population` value."""
    usager: repo.UsagerRecord
    """The usager (own phones included)."""
    tiers: tuple[repo.TiersRecord, ...]
    """Carers, guardians, family, social workers declared on the dossier."""
    demandes: tuple[repo.DemandeRecord, ...]
    """Demandes with their status history (cut at ``today``), documents and decisions."""
    rendez_vous: tuple[repo.RendezVousRecord, ...]
    """Evaluation visits and MDPH convocations (past ones included)."""
    paiements: tuple[repo.PaiementRecord, ...]
    """Payments made (on or before ``today``), withheld, or scheduled (after ``today``)."""


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What :func:`load` wrote (counts of records given to the upserts)."""

    seed: int
    """The demo seed."""
    today: date
    """The date the set was generated for."""
    usagers: int
    """Usagers written."""
    tiers: int
    """Tiers written."""
    phones: int
    """Phone numbers given (usagers' and tiers')."""
    demandes: int
    """Demandes written."""
    statuses: int
    """Status history steps written."""
    pieces: int
    """Documents asked for (received or not)."""
    decisions: int
    """Decisions written."""
    rendez_vous: int
    """Rendez-vous written."""
    paiements: int
    """Payments written."""
    seconds: float
    """Wall time of the load."""
    by_population: Mapping[str, int] = field(default_factory=dict)
    """Usagers per :class:`Population`."""
    by_type: Mapping[str, int] = field(default_factory=dict)
    """Demandes per type."""
    by_status: Mapping[str, int] = field(default_factory=dict)
    """Demandes per current status."""

    def as_json(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict (dates as ISO strings)."""
        return {
            "seed": self.seed,
            "today": self.today.isoformat(),
            "usagers": self.usagers,
            "tiers": self.tiers,
            "phones": self.phones,
            "demandes": self.demandes,
            "statuses": self.statuses,
            "pieces": self.pieces,
            "decisions": self.decisions,
            "rendez_vous": self.rendez_vous,
            "paiements": self.paiements,
            "seconds": round(self.seconds, 3),
            "by_population": dict(sorted(self.by_population.items())),
            "by_type": dict(sorted(self.by_type.items())),
            "by_status": dict(sorted(self.by_status.items())),
        }


def external_id(seed: int, index: int) -> str:
    """Return the ``external_id`` of the demo usager ``index`` of ``seed``."""
    return f"{DEMO_PREFIX}{seed}-{index:06d}"


# --------------------------------------------------------------------------------------------
# Embedded fiction: names by generation, places, documents

_FIRST_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("apa", "F"): (
        "Jeanne", "Marie", "Germaine", "Simone", "Suzanne", "Yvette", "Paulette", "Marcelle",
        "Odette", "Denise", "Lucienne", "Colette", "Monique", "Jacqueline", "Renée", "Ginette",
    ),
    ("apa", "M"): (
        "Marcel", "André", "René", "Roger", "Robert", "Louis", "Henri", "Raymond", "Georges",
        "Lucien", "Fernand", "Maurice", "Jean", "Pierre", "Bernard", "Gérard",
    ),
    ("adulte", "F"): (
        "Nathalie", "Isabelle", "Sandrine", "Céline", "Sophie", "Aurélie", "Julie", "Émilie",
        "Stéphanie", "Karine", "Laetitia", "Camille", "Sarah", "Amandine", "Nadia", "Fatima",
    ),
    ("adulte", "M"): (
        "Stéphane", "Christophe", "Nicolas", "Sébastien", "Julien", "David", "Thomas", "Mickaël",
        "Frédéric", "Karim", "Anthony", "Guillaume", "Mathieu", "Romain", "Mehdi", "Olivier",
    ),
    ("enfant", "F"): (
        "Emma", "Léa", "Chloé", "Inès", "Jade", "Louise", "Manon", "Lina", "Zoé", "Alice",
    ),
    ("enfant", "M"): (
        "Lucas", "Hugo", "Nathan", "Louis", "Gabriel", "Adam", "Enzo", "Jules", "Noah", "Rayan",
    ),
}  # fmt: skip

_LAST_NAMES = (
    "Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
    "Moreau", "Simon", "Laurent", "Lefebvre", "Michel", "Garcia", "David", "Bertrand", "Roux",
    "Vincent", "Fournier", "Morel", "Girard", "André", "Lefèvre", "Mercier", "Dupont", "Lambert",
    "Bonnet", "François", "Martinez", "Legrand", "Garnier", "Faure", "Rousseau", "Blanc",
    "Guérin", "Muller", "Henry", "Roussel", "Nicolas", "Perrin", "Morin", "Mathieu", "Clément",
    "Gauthier", "Dumont", "Lopez", "Fontaine", "Chevalier", "Robin", "Masson", "Sanchez",
    "Gérard", "Nguyen", "Boyer", "Denis", "Lemaire", "Duval", "Joly", "Gautier", "Roger",
    "Roche", "Roy", "Noël", "Meyer", "Lucas", "Meunier", "Jean", "Perez", "Marchand", "Dufour",
    "Blanchard", "Marie", "Barbier", "Brun", "Dumas", "Brunet", "Schmitt", "Leroux", "Colin",
)  # fmt: skip

_MANDATAIRES = (
    ("UDAF", "Service des majeurs protégés", "0199000000"),
    ("ATMP", "Association tutélaire", "0199000001"),
    ("AGAP", "Mandataires judiciaires", "0199000002"),
)
"""Guardianship associations (fiction): one shared number each."""

_RESERVED_SLOTS = 5
"""Numbers ``01 99 00 00 00`` to ``…00 04`` are kept for the associations."""

_APA_PIECES = (
    "le dernier avis d'imposition",
    "un relevé d'identité bancaire",
    "la copie de la pièce d'identité",
    "le dernier avis de taxe foncière",
    "le formulaire de demande signé",
)
_MDPH_PIECES = (
    "le certificat médical de moins d'un an",
    "le justificatif de domicile",
    "la copie de la pièce d'identité",
    "le formulaire de demande daté et signé",
    "le jugement de protection",
)

_REFERENTS_APA = tuple(f"Équipe APA secteur {n}" for n in ("nord", "sud", "est", "ouest"))
_REFERENTS_MDPH = ("Pôle adultes", "Pôle enfants", "Pôle PCH", "Pôle insertion")

# APA à domicile: monthly ceilings of the plan per GIR, in cents (facts §1; 2026 from the MTP).
_APA_CEILINGS = {
    2024: {1: 195560, 2: 158144, 3: 114309, 4: 76287},
    2025: {1: 204556, 2: 165418, 3: 119567, 4: 79796},
    2026: {1: 208033, 2: 168230, 3: 121599, 4: 81152},
}
# APA d'urgence: 50 % of the GIR 1 ceiling (facts §1).
_APA_URGENCE = {2024: 97780, 2025: 102278, 2026: 104016}

_PAY_DAY = 8
"""The département orders APA and PCH on the 8th (at the latest the 10th: facts §8)."""


def _by_year(table: Mapping[int, Any], year: int) -> Any:
    return table[min(max(year, min(table)), max(table))]


# --------------------------------------------------------------------------------------------
# Calendar helpers


def _add_months(d: date, months: int) -> date:
    index = d.month - 1 + months
    year, month = d.year + index // 12, index % 12 + 1
    days = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(d.day, days))


def _month(d: date) -> date:
    return d.replace(day=1)


def _pay_date(month: date) -> date:
    """The payment order date of a month: the 8th, or the Friday before if a weekend."""
    day = month.replace(day=_PAY_DAY)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _first_pay_after(day: date) -> date:
    """The first monthly payment date strictly after ``day`` (in a later month)."""
    month = _add_months(_month(day), 1)
    return _pay_date(month)


def _years_before(today: date, rng: random.Random, low: float, high: float) -> date:
    """A birth date such that the age at ``today`` is at least ``low`` and below ``high``."""
    while True:
        birth = today - timedelta(days=int(rng.uniform(low, high) * 365.25))
        age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
        if low <= age < high:
            return birth


def _weighted(rng: random.Random, table: Sequence[tuple[Any, float]]) -> Any:
    values = [v for v, _ in table]
    weights = [w for _, w in table]
    return rng.choices(values, weights=weights)[0]


# --------------------------------------------------------------------------------------------
# Numbering: dossier numbers and phone slots


class _Numbering:
    """Dossier numbers ``APA-2025-00123``: one counter per year shared by every prefix.

    Sharing the counter keeps the numbers' digits unique, so a number keyed on a telephone
    keypad (``202500123``) designates one demande only.
    """

    def __init__(self, seed: int) -> None:
        self._start = 100 + (seed * 7919) % 40000
        self._next: dict[int, int] = {}

    def next(self, prefix: str, year: int, rng: random.Random) -> str:
        current = self._next.get(year, self._start)
        self._next[year] = current + rng.randint(1, 3)
        return f"{prefix}-{year}-{current:05d}"


def _phone(seed: int, slot: int) -> str:
    """A fiction landline ``01 99 00 xx xx``, a bijection of ``slot`` for the first 9 995."""
    span = 10000 - _RESERVED_SLOTS
    n = _RESERVED_SLOTS + (slot * 7919 + seed * 104729) % span
    return f"01 99 00 {n // 100:02d} {n % 100:02d}"


# --------------------------------------------------------------------------------------------
# Timelines


@dataclass(slots=True)
class _Timeline:
    """A demande's whole life, simulated forward; :meth:`reached` cuts it at ``today``."""

    steps: list[tuple[str, date, str | None]] = field(default_factory=list)

    def add(self, code: str, day: date, detail: str | None = None) -> date:
        if self.steps and day <= self.steps[-1][1]:
            day = self.steps[-1][1] + timedelta(days=1)
        # Offices work on weekdays; only the usager types a draft on a weekend.
        while code != "BROUILLON" and day.weekday() >= 5:
            day += timedelta(days=1)
        self.steps.append((code, day, detail))
        return day

    @property
    def last(self) -> date:
        return self.steps[-1][1]

    def date_of(self, code: str) -> date | None:
        return next((d for c, d, _ in self.steps if c == code), None)

    def next_after(self, code: str) -> date | None:
        codes = [c for c, _, _ in self.steps]
        if code not in codes:
            return None
        i = codes.index(code)
        return self.steps[i + 1][1] if i + 1 < len(self.steps) else None

    def reached(self, today: date) -> tuple[repo.StatusRecord, ...]:
        return tuple(repo.StatusRecord(c, d, x) for c, d, x in self.steps if d <= today)


def _flat(cents: int) -> Callable[[date], tuple[int, int]]:
    """The same amount every month, no participation."""
    return lambda _month: (cents, 0)


def _days(rng: random.Random, low: int, high: int) -> timedelta:
    return timedelta(days=rng.randint(low, high))


@dataclass(slots=True)
class _Builder:
    """Collects one usager's records while their demandes are simulated."""

    seed: int
    index: int
    today: date
    rng: random.Random
    numbering: _Numbering
    demandes: list[repo.DemandeRecord] = field(default_factory=list)
    rendez_vous: list[repo.RendezVousRecord] = field(default_factory=list)
    paiements: list[repo.PaiementRecord] = field(default_factory=list)

    # -- shared pieces -------------------------------------------------------------------------
    def numero(self, prefix: str, first_day: date) -> str:
        return self.numbering.next(prefix, first_day.year, self.rng)

    def pieces(
        self, timeline: _Timeline, code: str, catalogue: Sequence[str]
    ) -> tuple[repo.PieceRecord, ...]:
        asked = timeline.date_of(code)
        if asked is None or asked > self.today:
            return ()
        closed = timeline.date_of("CLOS")
        if closed is not None and closed == timeline.next_after(code) and closed <= self.today:
            return ()  # closed without them: nothing is expected any more
        received = timeline.next_after(code)
        if received is not None and received > self.today:
            received = None
        relance: date | None = asked + timedelta(days=30)
        if relance is not None and relance > (received or self.today):
            relance = None  # no reminder was due
        chosen = self.rng.sample(list(catalogue[:4]), k=self.rng.choice((1, 1, 2, 2, 3)))
        return tuple(
            repo.PieceRecord(piece=p, date_demande=asked, date_relance=relance, date_recue=received)
            for p in chosen
        )

    def appointment(
        self, kind: str, day: date, lieu: str, numero: str, hours: Sequence[tuple[int, int]]
    ) -> None:
        hour, minute = self.rng.choice(hours)
        local = datetime.combine(day, time(hour, minute), tzinfo=LOCAL_TZ)
        self.rendez_vous.append(
            repo.RendezVousRecord(type=kind, debut=local.astimezone(UTC), lieu=lieu, numero=numero)
        )

    def monthly_payments(
        self,
        *,
        numero: str,
        prestation: str,
        first: date,
        amount: Callable[[date], tuple[int, int]],
        mode: str,
        stop: date | None = None,
        suspended_from: date | None = None,
        first_motif: str | None = None,
        first_extra_months: int = 0,
        one_off: bool = False,
    ) -> None:
        """Payments from ``first`` (a pay date), monthly, cut at ``today`` (+ the next one).

        ``amount(period) -> (brut, participation)``; ``stop``: no payment after it (rights
        closed); ``suspended_from``: payments after it are withheld (``suspendu``).
        """
        iban = f"{self.rng.randint(0, 9999):04d}"
        window_start = _add_months(_month(self.today), -(PAYMENT_MONTHS - 1))
        rows: list[repo.PaiementRecord] = []
        month = _month(first)
        while True:
            pay = _pay_date(month)
            if stop is not None and pay > stop:
                break
            withheld = suspended_from is not None and pay > suspended_from
            future = pay > self.today
            if month >= window_start or future:
                brut, part = amount(month)
                motif = None
                if month == _month(first) and first_motif is not None:
                    brut += brut * first_extra_months
                    part += part * first_extra_months
                    motif = first_motif
                elif month.month == 1 and part and month != _month(first):
                    motif = "regularisation_janvier"
                if withheld:
                    statut = PaymentStatus.SUSPENDU
                    motif = motif or "suspension_hospitalisation"
                elif future:
                    statut = PaymentStatus.PREVU
                elif (self.today - pay).days < 3:
                    statut = PaymentStatus.MANDATE
                else:
                    statut = PaymentStatus.VERSE
                rows.append(
                    repo.PaiementRecord(
                        prestation=prestation,
                        periode=month,
                        date_paiement=pay,
                        montant_brut_cents=brut,
                        participation_cents=part,
                        montant_verse_cents=brut - part,
                        mode=mode,
                        statut=statut.value,
                        motif_ecart=motif,
                        iban_last4=iban if mode == "virement" else None,
                        numero=numero,
                    )
                )
            if future:  # one scheduled (or withheld) payment after today, no more
                break
            month = _add_months(month, 1)
        if one_off:
            rows = self._one_off(rows)
        self.paiements.extend(rows)

    def _one_off(self, rows: list[repo.PaiementRecord]) -> list[repo.PaiementRecord]:
        """Lower one paid month for an indu or a hospitalisation, with its motif.

        The month is the last one paid (the bot explains it), or one at least two months
        before it (so the last two paid are equal and nothing looks unexplained).
        """
        paid = [i for i, r in enumerate(rows) if r.statut == PaymentStatus.VERSE.value]
        candidates = [i for i in paid if rows[i].motif_ecart is None]
        if len(paid) < 3 or not candidates:
            return rows
        last = paid[-1]
        allowed = [i for i in candidates if i == last or i <= paid[-3]]
        if not allowed:
            return rows
        i = self.rng.choice(allowed)
        row = rows[i]
        motif = self.rng.choice(("indu", "suspension_hospitalisation"))
        cut = row.montant_brut_cents * self.rng.randint(15, 60) // 100
        rows[i] = repo.PaiementRecord(
            prestation=row.prestation,
            periode=row.periode,
            date_paiement=row.date_paiement,
            montant_brut_cents=row.montant_brut_cents - cut,
            participation_cents=row.participation_cents,
            montant_verse_cents=max(0, (row.montant_verse_cents or 0) - cut),
            mode=row.mode,
            statut=row.statut,
            motif_ecart=motif,
            iban_last4=row.iban_last4,
            numero=row.numero,
        )
        return rows


# -- département circuit ----------------------------------------------------------------------


def _apa(b: _Builder, kind: DemandeType, start: date, protected: bool) -> date | None:
    """An APA à domicile or en établissement; return the day its first decision was notified."""
    rng, today = b.rng, b.today
    t = _Timeline()
    if kind is DemandeType.APA_DOMICILE and rng.random() < 0.15:
        t.add("BROUILLON", start, "saisie sur le téléservice")
        start = start + _days(rng, 1, 20)
    depot = t.add("RECU", start)
    never_complete = False
    if rng.random() < 0.3:
        t.add("INCOMPLET", depot + _days(rng, 3, 10))
        never_complete = rng.random() < 0.1 and not protected
        if never_complete:
            t.add("CLOS", t.last + _days(rng, 60, 120), "classé sans suite : pièces non reçues")
        else:
            t.add("COMPLET", t.last + _days(rng, 10, 45))
    else:
        t.add("COMPLET", depot + _days(rng, 3, 10))
    numero = b.numero("APA", t.steps[0][1])
    decided: date | None = None
    decisions: list[repo.DecisionRecord] = []
    if not never_complete:
        if kind is DemandeType.APA_DOMICILE:
            planned = t.add("EVALUATION_PLANIFIEE", t.last + _days(rng, 5, 20), "visite à domicile")
            visit = t.add("EVALUATION_REALISEE", t.last + _days(rng, 10, 28))
            if planned <= today:
                b.appointment(
                    "evaluation_domicile",
                    visit,
                    "à domicile",
                    numero,
                    ((9, 30), (10, 0), (11, 0), (14, 0), (14, 30), (15, 30)),
                )
            t.add("PLAN_PROPOSE", t.last + _days(rng, 7, 25))
        else:
            t.add("EVALUATION_REALISEE", t.last + _days(rng, 10, 30), "GIR évalué en établissement")
        notified = t.add("DECISION_NOTIFIEE", t.last + _days(rng, 7, 20))
        sens = (
            "accord"
            if protected
            else _weighted(rng, (("accord", 85), ("partiel", 5), ("rejet", 10)))
        )
        year = notified.year
        gir = 5 if sens == "rejet" else _weighted(rng, ((1, 6), (2, 22), (3, 22), (4, 50)))
        plan = 0
        rate = 0.0
        if sens != "rejet":
            if kind is DemandeType.APA_DOMICILE:
                ceiling: int = _by_year(_APA_CEILINGS, year)[gir]
                plan = ceiling * rng.randint(45, 100) // 100
            else:
                plan = rng.randint(380, 720) * 100
            rate = rng.choice((0.0, 0.0, 0.0, 5.0, 10.0, 12.5, 18.0, 25.0, 32.0, 45.0))
        if notified <= today:
            decided = notified
            decisions.append(
                repo.DecisionRecord(
                    prestation=kind.value,
                    sens=sens,
                    date_decision=notified - timedelta(days=2),
                    date_notification=notified,
                    date_debut=None if sens == "rejet" else t.date_of("COMPLET"),
                    montant_cents=plan or None,
                    gir=gir,
                    taux_participation=None if sens == "rejet" else rate,
                    recours_jusqu_au=_add_months(notified, 2),
                )
            )
        if sens == "rejet":
            if rng.random() < 0.3:
                t.add("RECOURS_RAPO", notified + _days(rng, 10, 55))
        else:
            opened = t.add("DROITS_OUVERTS", notified + _days(rng, 1, 6))
            first_pay = t.add("EN_PAIEMENT", _first_pay_after(opened))
            event = _weighted(
                rng, (("", 68), ("SUSPENDU", 12), ("REVISION_EN_COURS", 10), ("CLOS", 10))
            )
            if protected and event == "CLOS":
                event = ""
            closed: date | None = None
            suspended: date | None = None
            if event:
                event_day = first_pay + _days(rng, 70, 900)
                if event == "SUSPENDU" and rng.random() < 0.5:
                    # Half the suspensions are recent, so that a few are still running.
                    event_day = max(first_pay + _days(rng, 70, 90), today - _days(rng, 5, 120))
                event_day = t.add(event, event_day)
                if event == "SUSPENDU":
                    # A long suspension ends the rights (death, entry into an establishment).
                    suspended = event_day
                    closed = t.add("CLOS", event_day + _days(rng, 30, 200))
                elif event == "CLOS":
                    closed = event_day
            if opened <= today:  # the first payment is at least scheduled
                complet = t.date_of("COMPLET") or depot

                def amount(month: date) -> tuple[int, int]:
                    # The participation is recalculated every 1st of January (facts §1).
                    r = rate if rate == 0 else rate + (month.year - notified.year) * 1.5
                    return plan, int(plan * min(r, 90.0) / 100)

                b.monthly_payments(
                    numero=numero,
                    prestation=kind.value,
                    first=first_pay,
                    amount=amount,
                    mode="tiers_payant"
                    if kind is DemandeType.APA_ETAB
                    else _weighted(rng, (("virement", 60), ("cesu", 25), ("tiers_payant", 15))),
                    stop=closed,
                    suspended_from=suspended,
                    first_motif="rappel",
                    first_extra_months=max(
                        0,
                        (first_pay.year - complet.year) * 12 + first_pay.month - complet.month - 1,
                    ),
                    one_off=rng.random() < 0.15,
                )
    complet_day = t.date_of("COMPLET")
    b.demandes.append(
        repo.DemandeRecord(
            numero=numero,
            type=kind.value,
            date_depot=depot if depot <= today else None,
            date_recevabilite=complet_day if complet_day and complet_day <= today else None,
            date_limite_legale=_add_months(complet_day, 2)
            if complet_day and complet_day <= today
            else None,
            referent=rng.choice(_REFERENTS_APA),
            statuses=t.reached(today),
            pieces=b.pieces(t, "INCOMPLET", _APA_PIECES),
            decisions=tuple(decisions),
        )
    )
    return decided


def _urgence(b: _Builder, start: date, until: date | None) -> None:
    """An APA d'urgence: a flat advance paid from the dépôt until the decision."""
    rng, today = b.rng, b.today
    t = _Timeline()
    depot = t.add("RECU", start)
    forfait = t.add("URGENCE_FORFAIT", depot + _days(rng, 2, 7), "certificat d'urgence reçu")
    numero = b.numero("APA", depot)
    if forfait <= today:
        flat: int = _by_year(_APA_URGENCE, forfait.year)
        b.monthly_payments(
            numero=numero,
            prestation=DemandeType.APA_URGENCE.value,
            first=_first_pay_after(forfait),
            amount=_flat(flat),
            mode="virement",
            stop=until,
        )
    b.demandes.append(
        repo.DemandeRecord(
            numero=numero,
            type=DemandeType.APA_URGENCE.value,
            date_depot=depot,
            referent=rng.choice(_REFERENTS_APA),
            statuses=t.reached(today),
        )
    )


def _aide_sociale(b: _Builder, kind: DemandeType, prefix: str, start: date) -> None:
    """ASH, aide ménagère or téléassistance: a short département instruction, no payment here."""
    rng, today = b.rng, b.today
    if start > today:
        return  # not deposited yet
    t = _Timeline()
    depot = t.add("RECU", start)
    if rng.random() < 0.2:
        t.add("INCOMPLET", depot + _days(rng, 5, 12))
    t.add("COMPLET", t.last + _days(rng, 5, 30))
    notified = t.add("DECISION_NOTIFIEE", t.last + _days(rng, 20, 60))
    t.add("DROITS_OUVERTS", notified + _days(rng, 1, 10))
    decisions: tuple[repo.DecisionRecord, ...] = ()
    if notified <= today:
        decisions = (
            repo.DecisionRecord(
                prestation=kind.value,
                sens="accord",
                date_decision=notified - timedelta(days=3),
                date_notification=notified,
                date_debut=t.date_of("COMPLET"),
                recours_jusqu_au=_add_months(notified, 2),
            ),
        )
    complet = t.date_of("COMPLET")
    b.demandes.append(
        repo.DemandeRecord(
            numero=b.numero(prefix, depot),
            type=kind.value,
            date_depot=depot,
            date_recevabilite=complet if complet and complet <= today else None,
            date_limite_legale=_add_months(complet, 2) if complet and complet <= today else None,
            referent="Service de l'aide sociale",
            statuses=t.reached(today),
            pieces=b.pieces(t, "INCOMPLET", _APA_PIECES),
            decisions=decisions,
        )
    )


# -- MDPH circuit -----------------------------------------------------------------------------

_RIGHT_YEARS: dict[str, tuple[tuple[int, float], ...]] = {
    "AAH": ((1, 10), (2, 25), (5, 30), (10, 10), (0, 25)),
    "RQTH": ((1, 5), (3, 20), (5, 30), (10, 15), (0, 30)),
    "CMI_INV": ((2, 20), (5, 30), (10, 20), (20, 10), (0, 20)),
    "CMI_PRIO": ((2, 30), (5, 40), (10, 30)),
    "CMI_STAT": ((2, 30), (5, 40), (10, 30)),
    "PCH": ((3, 30), (5, 30), (10, 30), (0, 10)),
    "ORIENT_ESMS": ((3, 30), (5, 40), (10, 30)),
    "AEEH": ((1, 20), (2, 30), (3, 20), (5, 30)),
}
"""Duration of the rights granted, in years (0: sans limitation de durée; facts §2-§3)."""


def _mdph_group(b: _Builder, kinds: Sequence[str], start: date, birth: date) -> None:
    """Demandes deposited together at the MDPH: one instruction, one CDAPH, one decision each."""
    rng, today = b.rng, b.today
    t = _Timeline()
    depot = t.add("DEPOSEE", start)
    never_admissible = False
    if rng.random() < 0.35:
        t.add("EN_ATTENTE_PIECES", depot + _days(rng, 7, 21))
        # Some files never become admissible; the MDPH closes them after a few months, so
        # only recent ones are still waiting.
        never_admissible = rng.random() < 0.08 and (today - start).days < 150
    numeros = [b.numero("MDPH", depot) for _ in kinds]
    convocation: date | None = None
    if not never_admissible:
        t.add("RECEVABLE", t.last + (_days(rng, 15, 60) if len(t.steps) > 1 else _days(rng, 7, 14)))
        t.add("EN_EVALUATION", t.last + _days(rng, 5, 30))
        floor = t.last
        if rng.random() < 0.2:
            asked = t.add(
                "EVALUATION_COMPLEMENTAIRE", t.last + _days(rng, 15, 45), "convocation à la MDPH"
            )
            convocation = asked + _days(rng, 10, 30)
            # The study resumes after the convocation, still in this status: the next step
            # comes after it.
            floor = convocation + _days(rng, 5, 20)
        if "PCH" in kinds or "ORIENT_ESMS" in kinds or rng.random() < 0.3:
            t.add("PPC_ENVOYE", max(floor, t.last + _days(rng, 20, 50)))
            floor = t.last
        session = max(floor, t.last) + _days(rng, 30, 60)
        t.add(
            "INSCRIT_CDAPH", session - _days(rng, 10, 25), f"séance CDAPH du {session.isoformat()}"
        )
        t.add("DECISION_PRISE", session)
        t.add("NOTIFIEE", t.last + _days(rng, 10, 21))
    if convocation is not None and (t.date_of("EVALUATION_COMPLEMENTAIRE") or today) <= today:
        b.appointment(
            "convocation_mdph",
            convocation,
            "à la MDPH",
            numeros[0],
            ((9, 0), (10, 30), (14, 0), (15, 30)),
        )
    for kind, numero in zip(kinds, numeros, strict=True):
        own = _Timeline(list(t.steps))
        decisions: tuple[repo.DecisionRecord, ...] = ()
        notified = own.date_of("NOTIFIEE")
        if notified is not None:
            sens = _weighted(rng, (("accord", 78), ("partiel", 6), ("rejet", 16)))
            if sens == "rejet":
                rejected = own.add("REJET", notified + _days(rng, 1, 5))
                branch = _weighted(rng, (("", 70), ("RAPO_EN_COURS", 25), ("CONCILIATION", 5)))
                if branch:
                    own.add(branch, rejected + _days(rng, 15, 55))
            else:
                opened = own.add("DROIT_OUVERT", notified + _days(rng, 1, 5))
                if kind != "RQTH":
                    own.add("MISE_EN_OEUVRE", opened + _days(rng, 10, 40))
            if notified <= today:
                decisions = (_mdph_decision(b, kind, sens, own, birth),)
                decision = decisions[0]
                running = own.date_of("MISE_EN_OEUVRE")
                if kind == "PCH" and sens != "rejet" and running is not None and running <= today:
                    first = _first_pay_after(running)
                    monthly = decision.montant_cents or 0
                    debut = decision.date_debut or running
                    b.monthly_payments(
                        numero=numero,
                        prestation="PCH",
                        first=first,
                        amount=_flat(monthly),
                        mode="virement",
                        stop=decision.date_fin,
                        first_motif="rappel",
                        first_extra_months=max(
                            0, (first.year - debut.year) * 12 + first.month - debut.month - 1
                        ),
                        one_off=rng.random() < 0.1,
                    )
        recevable = own.date_of("RECEVABLE")
        b.demandes.append(
            repo.DemandeRecord(
                numero=numero,
                type=kind,
                date_depot=depot,
                date_recevabilite=recevable if recevable and recevable <= today else None,
                date_limite_legale=_add_months(recevable, 4)
                if recevable and recevable <= today
                else None,
                referent=rng.choice(_REFERENTS_MDPH),
                statuses=own.reached(today),
                pieces=b.pieces(own, "EN_ATTENTE_PIECES", _MDPH_PIECES),
                decisions=decisions,
            )
        )


def _mdph_decision(
    b: _Builder, kind: str, sens: str, t: _Timeline, birth: date
) -> repo.DecisionRecord:
    rng = b.rng
    notified = t.date_of("NOTIFIEE")
    session = t.date_of("DECISION_PRISE")
    assert notified is not None and session is not None
    if sens == "rejet":
        return repo.DecisionRecord(
            prestation=kind,
            sens="rejet",
            date_decision=session,
            date_notification=notified,
            recours_jusqu_au=_add_months(notified, 2),
        )
    start = _add_months(_month(t.steps[0][1]), 1)
    years = _weighted(rng, _RIGHT_YEARS[kind])
    end: date | None = None
    if years:
        end = _add_months(start, 12 * years) - timedelta(days=1)
    if kind == "AEEH":
        twenty = date(birth.year + 20, birth.month, min(birth.day, 28))
        end = max(min(end or twenty, twenty - timedelta(days=1)), start + timedelta(days=364))
    return repo.DecisionRecord(
        prestation=kind,
        sens=sens,
        date_decision=session,
        date_notification=notified,
        date_debut=start,
        date_fin=end,
        sans_limitation=end is None,
        montant_cents=rng.randint(25, 160) * 1000 if kind == "PCH" else None,
        recours_jusqu_au=_add_months(notified, 2),
    )


# --------------------------------------------------------------------------------------------
# Usagers


def _person(rng: random.Random, cohort: str, sex: str | None = None) -> tuple[str, str, str]:
    sex = sex or rng.choice("FM")
    civilite = "Mme" if sex == "F" else "M."
    return civilite, rng.choice(_FIRST_NAMES[(cohort, sex)]), rng.choice(_LAST_NAMES)


def _usager(seed: int, index: int, today: date, numbering: _Numbering) -> DemoUsager:
    rng = random.Random(f"callcenter-demo:{seed}:{index}")
    b = _Builder(seed, index, today, rng, numbering)
    population = _weighted(
        rng,
        (
            (Population.APA, 55.0),
            (Population.MDPH_ADULTE, 45.0 * 0.77),
            (Population.MDPH_ENFANT, 45.0 * 0.23),
        ),
    )
    ext = external_id(seed, index)
    own_phone = _phone(seed, 2 * index)
    carer_phone = _phone(seed, 2 * index + 1)
    tiers: list[repo.TiersRecord] = []
    besoins: list[str] = []
    protection: str | None = None
    nom_naissance: str | None = None

    if population == Population.APA:
        low = _weighted(rng, ((60, 10), (70, 25), (80, 45), (90, 20)))
        birth = _years_before(today, rng, low, low + 10 if low < 90 else 101)
        civilite, prenom, nom = _person(rng, "apa")
        if civilite == "Mme" and rng.random() < 0.6:
            nom_naissance = rng.choice(_LAST_NAMES)
        if rng.random() < 0.15:
            besoins.append(CommunicationNeed.MALENTENDANT.value)
        protected = rng.random() < 0.08
        if protected:
            protection = rng.choice(list(ProtectionMeasure)).value
        # Half in instruction (the last four months), half in payment for up to five years;
        # protected people's files are older (the guardian was appointed since).
        age_days = (
            rng.randint(200, 1800)
            if protected
            else (rng.randint(0, 130) if rng.random() < 0.45 else rng.randint(130, 1800))
        )
        start = today - timedelta(days=age_days)
        kind = _weighted(
            rng,
            (
                (DemandeType.APA_DOMICILE, 72),
                (DemandeType.APA_ETAB, 22),
                (DemandeType.AIDE_MENAGERE, 6),
            ),
        )
        if kind is DemandeType.AIDE_MENAGERE and not protected:
            _aide_sociale(b, kind, "AM", start)
        else:
            kind = DemandeType.APA_DOMICILE if kind is DemandeType.AIDE_MENAGERE else kind
            if kind is DemandeType.APA_DOMICILE and age_days < 60 and rng.random() < 0.1:
                decided = _apa(b, kind, start, protected)
                _urgence(b, start, decided)
            else:
                _apa(b, kind, start, protected)
            if kind is DemandeType.APA_ETAB and rng.random() < 0.35:
                _aide_sociale(b, DemandeType.ASH, "ASH", start + _days(rng, 0, 20))
            if kind is DemandeType.APA_DOMICILE and rng.random() < 0.08:
                _aide_sociale(b, DemandeType.TELEASSISTANCE, "TA", start + _days(rng, 30, 200))
        if rng.random() < 0.4:
            relation = _weighted(
                rng, (("fille", 40), ("fils", 25), ("conjoint", 20), ("voisine", 15))
            )
            sex = (
                "M"
                if relation in ("fils",)
                else ("F" if relation in ("fille", "voisine") else None)
            )
            c_civ, c_prenom, c_nom = _person(rng, "adulte", sex)
            if relation in ("fille", "fils", "conjoint") and rng.random() < 0.7:
                c_nom = nom
            may_know = {Topic.STATUS, Topic.APPOINTMENTS}
            if rng.random() < 0.5:
                may_know.add(Topic.DOCUMENTS)
            tiers.append(
                repo.TiersRecord(
                    external_id=f"{ext}-T1",
                    nom=c_nom,
                    prenom=c_prenom,
                    civilite=c_civ,
                    role=TiersRole.AIDANT,
                    relation=relation,
                    may_know=frozenset(may_know),
                    phones=(carer_phone,),
                )
            )
    elif population == Population.MDPH_ADULTE:
        birth = _years_before(today, rng, 20, 60)
        civilite, prenom, nom = _person(rng, "adulte")
        if rng.random() < 0.05:
            besoins.append(CommunicationNeed.MALENTENDANT.value)
        if rng.random() < 0.02:
            besoins.append(CommunicationNeed.LSF.value)
        if rng.random() < 0.03:
            besoins.append(CommunicationNeed.ILLETTRISME.value)
        protected = rng.random() < 0.06
        if protected:
            protection = rng.choice(list(ProtectionMeasure)).value
        kinds = _mdph_kinds(rng, adult=True, protected=protected)
        start = today - timedelta(
            days=rng.randint(0, 220) if rng.random() < 0.45 else rng.randint(220, 1400)
        )
        if protected:
            start = today - timedelta(days=rng.randint(300, 1400))
        _mdph_group(b, kinds, start, birth)
        if rng.random() < 0.15:
            c_civ, c_prenom, c_nom = _person(rng, "adulte")
            tiers.append(
                repo.TiersRecord(
                    external_id=f"{ext}-T1",
                    nom=c_nom,
                    prenom=c_prenom,
                    civilite=c_civ,
                    role=TiersRole.AIDANT,
                    relation=_weighted(rng, (("conjoint", 50), ("parent", 30), ("ami", 20))),
                    may_know=frozenset({Topic.STATUS, Topic.APPOINTMENTS, Topic.DOCUMENTS}),
                    phones=(carer_phone,),
                )
            )
        elif rng.random() < 0.06:
            c_civ, c_prenom, c_nom = _person(rng, "adulte")
            tiers.append(
                repo.TiersRecord(
                    external_id=f"{ext}-T1",
                    nom=c_nom,
                    prenom=c_prenom,
                    civilite=c_civ,
                    role=TiersRole.TRAVAILLEUR_SOCIAL,
                    relation="assistante sociale de secteur",
                    phones=(carer_phone,),
                )
            )
    else:
        birth = _years_before(today, rng, 2, 20)
        _, prenom, nom = _person(rng, "enfant")
        civilite = None
        kinds = _mdph_kinds(rng, adult=False, protected=False)
        start = today - timedelta(
            days=rng.randint(0, 220) if rng.random() < 0.45 else rng.randint(220, 1200)
        )
        start = max(start, birth + timedelta(days=200))
        _mdph_group(b, kinds, start, birth)
        protected = False
        if rng.random() < 0.2:
            c_civ, c_prenom, _ = _person(rng, "adulte")
            tiers.append(
                repo.TiersRecord(
                    external_id=f"{ext}-T1",
                    nom=nom,
                    prenom=c_prenom,
                    civilite=c_civ,
                    role=TiersRole.FAMILLE,
                    relation="parent",
                    phones=(carer_phone,),
                )
            )

    if protection is not None:
        association, service, number = _MANDATAIRES[index % len(_MANDATAIRES)]
        m_civ, m_prenom, m_nom = _person(rng, "adulte")
        tiers.append(
            repo.TiersRecord(
                external_id=f"{ext}-M1",
                nom=m_nom,
                prenom=m_prenom,
                civilite=m_civ,
                role=TiersRole.MANDATAIRE_JUDICIAIRE,
                relation=f"mandataire judiciaire ({association}, {service.lower()})",
                mandat_verifie=True,
                phones=(number,),
            )
        )

    usager = repo.UsagerRecord(
        external_id=ext,
        nom=nom,
        prenom=prenom,
        date_naissance=birth,
        civilite=civilite,
        nom_naissance=nom_naissance,
        besoins=tuple(besoins),
        mesure_protection=protection,
        phones=(own_phone,),
    )
    return DemoUsager(
        index=index,
        population=population,
        usager=usager,
        tiers=tuple(tiers),
        demandes=tuple(b.demandes),
        rendez_vous=tuple(b.rendez_vous),
        paiements=tuple(b.paiements),
    )


def _mdph_kinds(rng: random.Random, *, adult: bool, protected: bool) -> list[str]:
    if adult:
        table: list[tuple[str, float]] = [
            ("AAH", 30),
            ("RQTH", 28),
            ("CMI_PRIO", 10),
            ("CMI_INV", 10),
            ("CMI_STAT", 10),
            ("PCH", 7),
            ("ORIENT_ESMS", 5),
        ]
        if protected:
            table = [("PCH", 60), ("AAH", 30), ("CMI_INV", 10)]
    else:
        table = [("AEEH", 0), ("CMI_INV", 12), ("CMI_STAT", 8), ("PCH", 8), ("ORIENT_ESMS", 17)]
    kinds: list[str] = []
    if not adult and rng.random() < 0.8:
        kinds.append("AEEH")
    if protected:
        kinds.append("PCH")
    wanted = _weighted(rng, ((1, 40), (2, 35), (3, 25)))
    while len(kinds) < wanted:
        options = [(k, w) for k, w in table if k not in kinds and w > 0]
        if not options:
            break
        kinds.append(_weighted(rng, options))
    return kinds


def generate(count: int, seed: int, today: date) -> Iterator[DemoUsager]:
    """Yield ``count`` synthetic usagers, the same for the same ``(seed, today)``.

    Args:
        count: How many usagers.
        seed: The demo seed (each seed is a different population; ids and numbers differ).
        today: The date the dossiers are described at (histories are cut at it).

    Yields:
        :class:`DemoUsager` in index order; the first ``n`` do not depend on ``count``.
    """
    if count < 0:
        raise ValueError("count must be zero or more")
    numbering = _Numbering(seed)
    for index in range(count):
        yield _usager(seed, index, today, numbering)


def load(engine: Engine, count: int, seed: int, today: date) -> DemoSummary:
    """Write the demo set with the repository's upserts, :data:`BATCH_SIZE` usagers a transaction.

    A batch that fails leaves nothing written (the upserts share its transaction). Loading the
    same ``(count, seed, today)`` again changes nothing.

    Args:
        engine: The store (its schema already migrated).
        count: How many usagers.
        seed: The demo seed.
        today: The date the dossiers are described at.

    Returns:
        What was written.

    Raises:
        DemoConflictError: The database holds this seed's demo set generated for another day.
    """
    started = _time.perf_counter()
    now = datetime.combine(today, time(0), tzinfo=UTC)
    _check_generation_day(engine, seed, today)
    counts: Counter[str] = Counter()
    by_population: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    by_status: Counter[str] = Counter()
    batch: list[DemoUsager] = []

    def flush() -> None:
        with engine.begin() as conn:
            for demo in batch:
                usager_id = repo.upsert_usager(conn, demo.usager, now=now)
                for tiers in demo.tiers:
                    repo.upsert_tiers(conn, usager_id, tiers)
                for demande in demo.demandes:
                    repo.upsert_demande(conn, usager_id, demande)
                for rdv in demo.rendez_vous:
                    repo.upsert_rendez_vous(conn, usager_id, rdv)
                for paiement in demo.paiements:
                    repo.upsert_paiement(conn, usager_id, paiement)
        batch.clear()

    for demo in generate(count, seed, today):
        counts["usagers"] += 1
        counts["tiers"] += len(demo.tiers)
        counts["phones"] += len(demo.usager.phones) + sum(len(t.phones) for t in demo.tiers)
        counts["demandes"] += len(demo.demandes)
        counts["rendez_vous"] += len(demo.rendez_vous)
        counts["paiements"] += len(demo.paiements)
        by_population[demo.population] += 1
        for demande in demo.demandes:
            counts["statuses"] += len(demande.statuses)
            counts["pieces"] += len(demande.pieces)
            counts["decisions"] += len(demande.decisions)
            by_type[demande.type] += 1
            by_status[demande.statuses[-1].code] += 1
        batch.append(demo)
        if len(batch) >= BATCH_SIZE:
            flush()
    if batch:
        flush()
    return DemoSummary(
        seed=seed,
        today=today,
        usagers=counts["usagers"],
        tiers=counts["tiers"],
        phones=counts["phones"],
        demandes=counts["demandes"],
        statuses=counts["statuses"],
        pieces=counts["pieces"],
        decisions=counts["decisions"],
        rendez_vous=counts["rendez_vous"],
        paiements=counts["paiements"],
        seconds=_time.perf_counter() - started,
        by_population=dict(by_population),
        by_type=dict(by_type),
        by_status=dict(by_status),
    )


def _check_generation_day(engine: Engine, seed: int, today: date) -> None:
    """Refuse to mix two timelines: the first usager's ``created_at`` is its generation day."""
    with engine.connect() as conn:
        created = conn.execute(
            select(repo.USAGER.c.created_at).where(
                repo.USAGER.c.external_id == external_id(seed, 0)
            )
        ).scalar_one_or_none()
    if created is not None and created.date() != today:
        raise DemoConflictError(
            f"this database holds the demo set of seed {seed} generated for "
            f"{created.date().isoformat()}; load it again with that date (--today), or use "
            "another database"
        )
