"""Tables of the dossiers: who the usagers are, where their demandes stand, every contact.

The layout follows the agent's « fiche appelant » (domain facts §10) and the status sequences
of facts §9. Rules this module owns:

1. No NIR in clear. ``usager.nir_hash`` is an HMAC-SHA256 of the normalised NIR under a service
   key (:func:`callcenter.store.dossiers.nir_hash`); it only serves to match import records.
2. No bank details. A payment keeps at most the last four characters of the IBAN
   (``paiement.iban_last4``).
3. Phones are E.164 strings (``+33612345678``) in ``usager_phone``, one row per number and
   dossier; a number that belongs to a declared tiers (aidant, mandataire...) carries its
   ``tiers_id``. The ``e164`` index serves caller-ID lookup.
4. Amounts are integer cents (exact on SQLite and PostgreSQL alike).
5. Enumerated values (types, status codes, roles...) are stored as short strings; the
   ``StrEnum`` classes below list the known values.

The schema is created by the Alembic revision ``0002`` (``callcenter/store/migrations``); a test
checks that the migrations and these models agree.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# JSON on SQLite (stored as text), JSONB on PostgreSQL.
_JSON = JSON().with_variant(JSONB(), "postgresql")


class DemandeType(enum.StrEnum):
    """Kinds of demande (facts §10), with the issue's aide ménagère and téléassistance."""

    APA_DOMICILE = "APA_DOMICILE"
    APA_ETAB = "APA_ETAB"
    APA_URGENCE = "APA_URGENCE"
    PCH = "PCH"
    AAH = "AAH"
    AEEH = "AEEH"
    CMI_INV = "CMI_INV"
    CMI_PRIO = "CMI_PRIO"
    CMI_STAT = "CMI_STAT"
    RQTH = "RQTH"
    ORIENT_ESMS = "ORIENT_ESMS"
    ASH = "ASH"
    AIDE_MENAGERE = "AIDE_MENAGERE"
    TELEASSISTANCE = "TELEASSISTANCE"
    REVISION = "REVISION"
    RAPO = "RAPO"


class Circuit(enum.StrEnum):
    """Which status sequence a demande follows (facts §9)."""

    DEPARTEMENT = "departement"
    """APA and the département's aide sociale: the « Demande APA » sequence."""
    MDPH = "mdph"
    """Rights decided by the CDAPH: the « Demande MDPH » sequence."""


MDPH_TYPES = frozenset(
    {
        DemandeType.PCH,
        DemandeType.AAH,
        DemandeType.AEEH,
        DemandeType.CMI_INV,
        DemandeType.CMI_PRIO,
        DemandeType.CMI_STAT,
        DemandeType.RQTH,
        DemandeType.ORIENT_ESMS,
    }
)
"""Demande types instructed by the MDPH; every other type follows the département circuit."""


def circuit_of(demande_type: str) -> Circuit:
    """Return the status sequence of a demande type (``REVISION``/``RAPO`` count as département)."""
    return Circuit.MDPH if demande_type in MDPH_TYPES else Circuit.DEPARTEMENT


DEPARTEMENT_STATUSES: tuple[str, ...] = (
    "BROUILLON",
    "RECU",
    "INCOMPLET",
    "COMPLET",
    "EVALUATION_PLANIFIEE",
    "EVALUATION_REALISEE",
    "PLAN_PROPOSE",
    "DECISION_NOTIFIEE",
    "DROITS_OUVERTS",
    "EN_PAIEMENT",
    "SUSPENDU",
    "REVISION_EN_COURS",
    "CLOS",
    "RECOURS_RAPO",
    "URGENCE_FORFAIT",
)
"""Status codes of the département sequence (facts §9 « Demande APA »), in order."""

MDPH_STATUSES: tuple[str, ...] = (
    "DEPOSEE",
    "EN_ATTENTE_PIECES",
    "RECEVABLE",
    "EN_EVALUATION",
    "EVALUATION_COMPLEMENTAIRE",
    "PPC_ENVOYE",
    "INSCRIT_CDAPH",
    "DECISION_PRISE",
    "NOTIFIEE",
    "DROIT_OUVERT",
    "REJET",
    "MISE_EN_OEUVRE",
    "RAPO_EN_COURS",
    "CONCILIATION",
)
"""Status codes of the MDPH sequence (facts §9 « Demande MDPH »), in order."""

STATUSES_BY_CIRCUIT: dict[Circuit, tuple[str, ...]] = {
    Circuit.DEPARTEMENT: DEPARTEMENT_STATUSES,
    Circuit.MDPH: MDPH_STATUSES,
}


class TiersRole(enum.StrEnum):
    """Role of a third party declared on a dossier."""

    AIDANT = "aidant"
    MANDATAIRE_JUDICIAIRE = "mandataire_judiciaire"
    TRAVAILLEUR_SOCIAL = "travailleur_social"
    FAMILLE = "famille"


class Topic(enum.StrEnum):
    """What a caller may be told about a dossier (``tiers.may_know``)."""

    STATUS = "status"
    """Demandes, their status and history, dates and legal deadlines."""
    DOCUMENTS = "documents"
    """Missing documents."""
    DECISIONS = "decisions"
    """Decisions: sens, dates, validity, GIR, amounts of the plan."""
    APPOINTMENTS = "appointments"
    """Rendez-vous (home evaluation, convocations)."""
    PAYMENTS = "payments"
    """Payments: dates and amounts."""


ALL_TOPICS = frozenset(Topic)

DEFAULT_MAY_KNOW: dict[TiersRole, frozenset[Topic]] = {
    # A guardian acts for the person: everything.
    TiersRole.MANDATAIRE_JUDICIAIRE: ALL_TOPICS,
    TiersRole.TRAVAILLEUR_SOCIAL: frozenset(
        {Topic.STATUS, Topic.DOCUMENTS, Topic.DECISIONS, Topic.APPOINTMENTS}
    ),
    TiersRole.AIDANT: frozenset({Topic.STATUS, Topic.DOCUMENTS, Topic.APPOINTMENTS}),
    TiersRole.FAMILLE: frozenset({Topic.STATUS}),
}
"""What a tiers may be told when the import does not say (the back office's word prevails)."""


class ProtectionMeasure(enum.StrEnum):
    """Legal protection of an adult (facts §10 ``mesure_protection``)."""

    TUTELLE = "tutelle"
    CURATELLE = "curatelle"
    HABILITATION_FAMILIALE = "habilitation_familiale"


class CommunicationNeed(enum.StrEnum):
    """Accessibility needs the line must respect (facts §10 ``besoins_accessibilite``)."""

    MALENTENDANT = "malentendant"
    LSF = "lsf"
    LANGUE = "langue"
    ILLETTRISME = "illettrisme"


class PaymentStatus(enum.StrEnum):
    """Where a payment stands."""

    PREVU = "prevu"
    """Scheduled, not yet ordered."""
    MANDATE = "mandate"
    """Ordered to the paying agent (« mandaté »); reaches the account 1 to 3 days later."""
    VERSE = "verse"
    """Paid."""
    SUSPENDU = "suspendu"
    ANNULE = "annule"


class ContactChannel(enum.StrEnum):
    """How a contact happened (facts §10 ``historique_contacts.canal``)."""

    TELEPHONE = "telephone"
    BOT = "bot"
    ACCUEIL = "accueil"
    COURRIER = "courrier"
    EMAIL = "email"


class Usager(SQLModel, table=True):
    """A person with one or more demandes (the dossier holder)."""

    __tablename__ = "usager"

    id: int | None = Field(default=None, primary_key=True)
    external_id: str = Field(max_length=64, unique=True, index=True)
    """The back office's identifier (``P-000123``): the import's upsert key, never spoken."""
    civilite: str | None = Field(default=None, max_length=8)
    nom: str = Field(max_length=128)
    prenom: str = Field(max_length=128)
    nom_naissance: str | None = Field(default=None, max_length=128)
    date_naissance: date = Field(sa_column=Column(Date, nullable=False))
    langue: str = Field(default="fr", max_length=8)
    """Preferred language (BCP 47 primary tag, ``fr`` by default)."""
    besoins: list[str] = Field(default_factory=list, sa_column=Column(_JSON, nullable=False))
    """``CommunicationNeed`` values."""
    mesure_protection: str | None = Field(default=None, max_length=32)
    """A ``ProtectionMeasure`` value, or None."""
    nir_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)
    """HMAC-SHA256 (hex) of the NIR under the service key; never the NIR itself."""
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    merged_into: int | None = Field(default=None, sa_column=Column(Integer, index=True))
    """Set when this usager was merged into another (revision ``0003``): the kept usager's id.

    A merged usager is a *tombstone*: it keeps its identity so that old references (audit
    rows, call trails, tickets) still resolve, owns no phone and no demande (only rows a merge
    conflict left behind, listed in ``usager_merge``) and must answer no lookup. Always
    points at a live usager (merges re-point older tombstones).
    Not a foreign key: SQLite can add or drop a constrained column only by rebuilding the
    ``usager`` table, which with foreign keys on would cascade-delete every dossier.
    """
    merged_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    """When this usager was merged (UTC); None for a live usager."""


class Tiers(SQLModel, table=True):
    """A third party declared on a usager's dossier: carer, guardian, social worker, family."""

    __tablename__ = "tiers"
    __table_args__ = (UniqueConstraint("usager_id", "external_id", name="uq_tiers_usager_ext"),)

    id: int | None = Field(default=None, primary_key=True)
    usager_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("usager.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    external_id: str = Field(max_length=64)
    """The back office's identifier of this tiers on this dossier (upsert key with the usager)."""
    civilite: str | None = Field(default=None, max_length=8)
    nom: str = Field(max_length=128)
    prenom: str | None = Field(default=None, max_length=128)
    relation: str | None = Field(default=None, max_length=64)
    """Free text: ``fille``, ``fils``, ``voisin``, ``UDAF``..."""
    role: str = Field(max_length=32)
    """A ``TiersRole`` value."""
    may_know: list[str] = Field(default_factory=list, sa_column=Column(_JSON, nullable=False))
    """``Topic`` values this tiers may be told."""
    mandat_verifie: bool = False
    """The mandate (jugement, habilitation) was checked by the back office."""


class UsagerPhone(SQLModel, table=True):
    """A phone number on which a dossier is reached: the usager's own or a tiers's."""

    __tablename__ = "usager_phone"
    __table_args__ = (
        # A tiers's number is unique per dossier here; the usager's own numbers (tiers_id NULL,
        # and NULLs are distinct) are kept unique by ``set_phones``, which replaces the whole set.
        UniqueConstraint("usager_id", "tiers_id", "e164", name="uq_usager_phone"),
        # Caller-ID lookup: an index-only scan on PostgreSQL, a covering index on SQLite.
        Index("ix_usager_phone_e164", "e164", "usager_id", "tiers_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    usager_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("usager.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    tiers_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("tiers.id", ondelete="CASCADE"), nullable=True),
    )
    """None for the usager's own number, else the tiers this number belongs to."""
    e164: str = Field(max_length=16)
    kind: str | None = Field(default=None, max_length=16)
    """``mobile``, ``fixe``... as ``phonenumbers`` classifies it."""


class Demande(SQLModel, table=True):
    """One demande (APA, PCH, AAH...) identified by its numéro de dossier."""

    __tablename__ = "demande"
    __table_args__ = (Index("ix_demande_usager", "usager_id", "date_depot"),)

    id: int | None = Field(default=None, primary_key=True)
    usager_id: int = Field(
        sa_column=Column(Integer, ForeignKey("usager.id", ondelete="CASCADE"), nullable=False)
    )
    numero: str = Field(max_length=32, unique=True, index=True)
    """Numéro de dossier (``APA-2025-04567``): the identification key on the phone."""
    numero_chiffres: str = Field(max_length=32, index=True)
    """The numéro's digits only (``202504567``), for numbers keyed on a telephone keypad."""
    type: str = Field(max_length=24)
    """A ``DemandeType`` value."""
    date_depot: date | None = Field(default=None, sa_column=Column(Date))
    date_recevabilite: date | None = Field(default=None, sa_column=Column(Date))
    """Dossier complet (APA) or recevable (MDPH): the legal delay starts."""
    date_limite_legale: date | None = Field(default=None, sa_column=Column(Date))
    """Complet + 2 months (APA), recevable + 4 months (MDPH)."""
    referent: str | None = Field(default=None, max_length=128)
    """Name of the instructing officer (agents only)."""


class DemandeStatus(SQLModel, table=True):
    """One step of a demande's status history (facts §9 codes)."""

    __tablename__ = "demande_status"
    __table_args__ = (
        UniqueConstraint("demande_id", "code", "date_statut", name="uq_demande_status"),
        Index("ix_demande_status_demande", "demande_id", "date_statut"),
    )

    id: int | None = Field(default=None, primary_key=True)
    demande_id: int = Field(
        sa_column=Column(Integer, ForeignKey("demande.id", ondelete="CASCADE"), nullable=False)
    )
    code: str = Field(max_length=32)
    date_statut: date = Field(sa_column=Column(Date, nullable=False))
    """When the demande entered this status."""
    detail: str | None = Field(default=None, sa_column=Column(Text))
    """E.g. the date of the CDAPH session or of the evaluation visit, in plain words."""


class PieceManquante(SQLModel, table=True):
    """A document the instructor asked for."""

    __tablename__ = "piece_manquante"
    __table_args__ = (UniqueConstraint("demande_id", "piece", name="uq_piece_manquante"),)

    id: int | None = Field(default=None, primary_key=True)
    demande_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("demande.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    piece: str = Field(max_length=200)
    """What is missing, in plain French (``avis d'imposition 2024``)."""
    date_demande: date | None = Field(default=None, sa_column=Column(Date))
    date_relance: date | None = Field(default=None, sa_column=Column(Date))
    date_recue: date | None = Field(default=None, sa_column=Column(Date))
    """When it arrived; a received document is no longer missing."""


class Decision(SQLModel, table=True):
    """A decision on a demande (département or CDAPH)."""

    __tablename__ = "decision"
    __table_args__ = (
        UniqueConstraint("demande_id", "prestation", "date_decision", name="uq_decision"),
    )

    id: int | None = Field(default=None, primary_key=True)
    demande_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("demande.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    prestation: str = Field(max_length=32)
    sens: str = Field(max_length=16)
    """``accord``, ``rejet`` or ``partiel``."""
    date_decision: date = Field(sa_column=Column(Date, nullable=False))
    date_notification: date | None = Field(default=None, sa_column=Column(Date))
    date_debut: date | None = Field(default=None, sa_column=Column(Date))
    date_fin: date | None = Field(default=None, sa_column=Column(Date))
    sans_limitation: bool = False
    """Right granted without time limit (then ``date_fin`` is None)."""
    montant_cents: int | None = None
    """Monthly amount of the plan, in cents."""
    gir: int | None = None
    taux_participation: float | None = None
    """The beneficiary's share of the plan, in percent (APA)."""
    recours_jusqu_au: date | None = Field(default=None, sa_column=Column(Date))


class RendezVous(SQLModel, table=True):
    """An appointment: home evaluation, MDPH convocation..."""

    __tablename__ = "rendez_vous"
    __table_args__ = (
        UniqueConstraint("usager_id", "type", "debut", name="uq_rendez_vous"),
        Index("ix_rendez_vous_usager", "usager_id", "debut"),
    )

    id: int | None = Field(default=None, primary_key=True)
    usager_id: int = Field(
        sa_column=Column(Integer, ForeignKey("usager.id", ondelete="CASCADE"), nullable=False)
    )
    demande_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("demande.id", ondelete="SET NULL"), nullable=True),
    )
    type: str = Field(max_length=32)
    """``evaluation_domicile``, ``convocation_mdph``, ``bilan``..."""
    debut: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    lieu: str | None = Field(default=None, max_length=200)
    """``à domicile`` or a place's name; never a full address read to a third party."""
    annule: bool = False


class Paiement(SQLModel, table=True):
    """A payment (or a scheduled one) of a prestation for a period."""

    __tablename__ = "paiement"
    __table_args__ = (
        UniqueConstraint("usager_id", "prestation", "periode", "date_paiement", name="uq_paiement"),
        Index("ix_paiement_usager", "usager_id", "date_paiement"),
    )

    id: int | None = Field(default=None, primary_key=True)
    usager_id: int = Field(
        sa_column=Column(Integer, ForeignKey("usager.id", ondelete="CASCADE"), nullable=False)
    )
    demande_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("demande.id", ondelete="SET NULL"), nullable=True),
    )
    prestation: str = Field(max_length=32)
    periode: date = Field(sa_column=Column(Date, nullable=False))
    """First day of the month paid for."""
    date_paiement: date = Field(sa_column=Column(Date, nullable=False))
    """Date of mandatement (or planned date)."""
    montant_brut_cents: int
    participation_cents: int | None = None
    montant_verse_cents: int | None = None
    mode: str | None = Field(default=None, max_length=16)
    """``virement``, ``cesu``, ``tiers_payant``."""
    statut: str = Field(max_length=16)
    """A ``PaymentStatus`` value."""
    motif_ecart: str | None = Field(default=None, max_length=64)
    """``rappel``, ``suspension_hospitalisation``, ``indu``, ``regularisation_janvier``..."""
    iban_last4: str | None = Field(default=None, max_length=4)
    """Last four characters of the IBAN at most; never more."""


class Contact(SQLModel, table=True):
    """One contact with a usager or about their dossier (every call, bot-only ones included)."""

    __tablename__ = "contact"
    __table_args__ = (Index("ix_contact_usager", "usager_id", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    usager_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("usager.id", ondelete="SET NULL"), nullable=True),
    )
    """None while (or when) the caller was not identified."""
    tiers_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("tiers.id", ondelete="SET NULL"), nullable=True),
    )
    """The tiers who called on the usager's behalf, if any."""
    sip_call_id: str | None = Field(default=None, max_length=255, unique=True, index=True)
    """Links to ``call.sip_call_id`` (not a foreign key: the trail is written asynchronously)."""
    channel: str = Field(max_length=16)
    """A ``ContactChannel`` value."""
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    ended_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    handled_by: str | None = Field(default=None, max_length=64)
    """``bot`` or an agent's login."""
    bot_path: list[str] = Field(default_factory=list, sa_column=Column(_JSON, nullable=False))
    """Flow node ids the call went through."""
    intents: list[str] = Field(default_factory=list, sa_column=Column(_JSON, nullable=False))
    summary: str | None = Field(default=None, sa_column=Column(Text))
    outcome: str | None = Field(default=None, max_length=32)
    """``answered_by_bot``, ``transferred``, ``abandoned``, ``callback``..."""
    agent_notes: str | None = Field(default=None, sa_column=Column(Text))
    follow_up: str | None = Field(default=None, max_length=200)
    wrapup_motif: str | None = Field(default=None, max_length=64)
    """The agent's wrap-up motif (revision ``0006``), one of the panel's configured motifs."""
    first_contact_resolved: bool | None = None
    """Resolved at first contact, as the agent said at wrap-up; None: not said."""
    follow_up_due: date | None = Field(default=None, sa_column=Column(Date))
    """When the ``follow_up`` is due."""


class Audit(SQLModel, table=True):
    """Who read or changed which dossier, when, why, through which channel."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_usager", "usager_id", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    actor: str = Field(max_length=64)
    """``bot``, an agent's login, a CLI user."""
    via: str = Field(max_length=8)
    """``api``, ``cli`` or ``bot``."""
    action: str = Field(max_length=32)
    """``snapshot``, ``find_by_phone``, ``verify_birth_date``, ``contacts``, ``import``..."""
    usager_id: int | None = None
    """The dossier concerned; not a foreign key, so the log outlives merges and erasures."""
    reason: str = Field(max_length=200)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(_JSON, nullable=False))
    """Ids and outcomes only; never a phone number, a name or a birth date."""


class UsagerMerge(SQLModel, table=True):
    """The merge log: one row per usager merged into another (revision ``0003``).

    Written by :func:`callcenter.store.merge.merge_usagers` in the merge's transaction. Holds
    ids and counts, and the rows a conflict left on the tombstone; the merged usager's identity
    stays on its tombstone row.
    """

    __tablename__ = "usager_merge"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    actor: str = Field(max_length=64)
    """Who merged (an agent's or back-office user's login)."""
    via: str = Field(max_length=8)
    """``api`` or ``cli`` (an ``audit.Via`` value)."""
    reason: str = Field(max_length=200)
    """Why (free text: the ticket, the evidence)."""
    kept_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("usager.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    """The usager that received everything."""
    merged_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("usager.id", ondelete="CASCADE"), nullable=False, unique=True
        )
    )
    """The usager turned into a tombstone (a usager is merged at most once)."""
    moved: dict[str, Any] = Field(default_factory=dict, sa_column=Column(_JSON, nullable=False))
    """Ids of the rows moved, per table (``tiers``, ``usager_phone``, ``demande``...)."""
    resolved: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(_JSON, nullable=False)
    )
    """How each conflict was resolved (a duplicate phone dropped, a tiers folded, a field
    filled...), with the ids involved."""


DOSSIER_MODELS: tuple[type[SQLModel], ...] = (
    Usager,
    Tiers,
    UsagerPhone,
    Demande,
    DemandeStatus,
    PieceManquante,
    Decision,
    RendezVous,
    Paiement,
    Contact,
    Audit,
    UsagerMerge,
)
"""The dossier tables, parents first (creation order)."""
