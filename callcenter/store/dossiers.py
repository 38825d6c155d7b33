"""Repository of the dossiers: caller lookup, identity checks, dossier snapshots, contacts, upserts.

Every function is synchronous and takes an :class:`~sqlalchemy.Engine` (each call is its own
transaction) or a :class:`~sqlalchemy.Connection` (the caller's transaction, which the caller
commits). From the event loop, call them through ``asyncio.to_thread``.

Rules this module owns:

1. Audit. Every read of a dossier takes a mandatory ``actor``, ``reason`` and ``via`` and writes
   one audit row in the same transaction (reads for the voice bot: ``actor="bot"``,
   ``via=Via.BOT``). Audit rows carry ids and outcomes, never a phone number or a name.
2. Need to know. :func:`dossier_snapshot` fills only the sections the reader's role may know
   (a tiers's ``may_know``); a section left out is ``None``, an empty one is ``()``.
   Bank details never leave the store except ``iban_last4``, and only for agents.
3. Idempotent upserts. Importing the same extract twice changes nothing: usagers are keyed by
   ``external_id``, tiers by (usager, ``external_id``), demandes by ``numero``, statuses by
   (demande, code, date), missing documents by (demande, piece), decisions by
   (demande, prestation, date), rendez-vous by (usager, type, start), payments by
   (usager, prestation, period, date).
4. Phones are normalised to E.164 (``phonenumbers``, region FR by default) on the way in and on
   lookup; a number that cannot be parsed as a valid number is ignored on the way in (the import
   reports it) and matches nothing on lookup.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import phonenumbers
from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    Table,
    bindparam,
    delete,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel

from callcenter.store import dossier_models
from callcenter.store.audit import AuditEntry, Via, as_utc, audit, audit_log, transaction
from callcenter.store.dossier_models import (
    ALL_TOPICS,
    DEFAULT_MAY_KNOW,
    STATUSES_BY_CIRCUIT,
    Circuit,
    CommunicationNeed,
    ContactChannel,
    DemandeType,
    PaymentStatus,
    ProtectionMeasure,
    TiersRole,
    Topic,
    circuit_of,
)

__all__ = [
    "AppointmentInfo",
    "AuditEntry",
    "ContactInfo",
    "DecisionInfo",
    "DecisionRecord",
    "DemandeRecord",
    "DemandeRef",
    "DemandeSnapshot",
    "DossierSnapshot",
    "MissingDocument",
    "PaiementRecord",
    "PaymentInfo",
    "PieceRecord",
    "RendezVousRecord",
    "Role",
    "StatusEntry",
    "StatusRecord",
    "TiersRecord",
    "UsagerRecord",
    "UsagerRef",
    "Via",
    "audit",
    "audit_log",
    "contacts_for",
    "usager_exists",
    "purge_contact_summaries",
    "dossier_snapshot",
    "find_by_dossier_number",
    "find_by_phone",
    "nir_hash",
    "normalize_numero",
    "normalize_phone",
    "numero_digits",
    "record_contact",
    "set_agent_notes",
    "set_phones",
    "upsert_demande",
    "upsert_paiement",
    "upsert_rendez_vous",
    "upsert_tiers",
    "upsert_usager",
    "verify_birth_date",
]

_ = dossier_models  # registers the tables in SQLModel.metadata
_T = SQLModel.metadata.tables
USAGER: Table = _T["usager"]
TIERS: Table = _T["tiers"]
PHONE: Table = _T["usager_phone"]
DEMANDE: Table = _T["demande"]
STATUS: Table = _T["demande_status"]
PIECE: Table = _T["piece_manquante"]
DECISION: Table = _T["decision"]
RDV: Table = _T["rendez_vous"]
PAIEMENT: Table = _T["paiement"]
CONTACT: Table = _T["contact"]

DEFAULT_REGION = "FR"
"""Region used to read national numbers (``06 12 34 56 78``)."""

MAX_AUDITED_MATCHES = 20
"""At most this many usager ids are listed in a lookup's audit row."""


class Role(enum.StrEnum):
    """Who is reading a dossier, which decides what they may be told."""

    USAGER = "usager"
    """The person themselves: everything."""
    AGENT = "agent"
    """A call-centre agent: everything, bank details' last four characters included."""
    AIDANT = TiersRole.AIDANT.value
    MANDATAIRE_JUDICIAIRE = TiersRole.MANDATAIRE_JUDICIAIRE.value
    TRAVAILLEUR_SOCIAL = TiersRole.TRAVAILLEUR_SOCIAL.value
    FAMILLE = TiersRole.FAMILLE.value

    @property
    def is_tiers(self) -> bool:
        """True for a third party declared on the dossier (their ``may_know`` applies)."""
        return self not in (Role.USAGER, Role.AGENT)


# --------------------------------------------------------------------------------------------
# Normalisation helpers


def normalize_phone(raw: str, region: str = DEFAULT_REGION) -> str | None:
    """Return ``raw`` as E.164 (``+33612345678``), or None if it is not a valid number.

    Accepts national (``06 12 34 56 78``), international (``+33 6...``, ``0033 6...``) and SIP
    user-part forms (``tel:+33...``, ``sip:0612345678@host``).
    """
    text = raw.strip()
    for prefix in ("tel:", "sip:", "sips:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    text = text.split("@", 1)[0].split(";", 1)[0]
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phone_kind(e164: str) -> str | None:
    kind = phonenumbers.number_type(phonenumbers.parse(e164))
    if kind in (
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    ):
        return "mobile"
    if kind == phonenumbers.PhoneNumberType.FIXED_LINE:
        return "fixe"
    return None


_NIR_RE = re.compile(r"^[12378][0-9]{4}(?:2A|2B|[0-9]{2})[0-9]{6}(?:[0-9]{2})?$")


def nir_hash(nir: str, key: bytes) -> str:
    """Return the keyed hash stored in ``usager.nir_hash``: HMAC-SHA256 (hex) of the NIR.

    The NIR is normalised (spaces and dots removed, upper case, the 2-digit key dropped) so
    that the same person always hashes the same. The key is the service's secret; without it
    the hash cannot be reversed by trying every NIR.

    Raises:
        ValueError: ``nir`` is not 13 or 15 characters of NIR syntax, or ``key`` is too short.
    """
    if len(key) < 16:
        raise ValueError("nir_hash: the key must be at least 16 bytes")
    compact = re.sub(r"[\s.]", "", nir).upper()
    if not _NIR_RE.match(compact):
        raise ValueError("nir_hash: not a NIR (13 characters, or 15 with the key)")
    return hmac.new(key, compact[:13].encode("ascii"), hashlib.sha256).hexdigest()


def numero_digits(text: str) -> str:
    """The digits of a numéro, as typed on a keypad (``APA-2025-0456`` -> ``20250456``)."""
    return "".join(ch for ch in text if ch.isdigit())


def normalize_numero(numero: str) -> str:
    """A numéro as stored and matched: without spaces, upper case."""
    return re.sub(r"\s+", "", numero).upper()


def _utc(value: datetime) -> datetime:
    # SQLite drops the offset of an aware datetime: always store UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _upsert(
    conn: Connection,
    table: Table,
    values: Mapping[str, Any],
    keys: Sequence[str],
    *,
    update_columns: Iterable[str] | None = None,
) -> int:
    """Insert ``values`` or update the row with the same ``keys``; return the row's id."""
    name = conn.dialect.name
    if name == "postgresql":
        stmt: Any = postgresql.insert(table).values(**values)
    elif name == "sqlite":
        stmt = sqlite.insert(table).values(**values)
    else:  # pragma: no cover - make_engine only builds these two
        raise NotImplementedError(f"upsert on {name}")
    columns = list(update_columns) if update_columns is not None else []
    if update_columns is None:
        columns = [c for c in values if c not in keys]
    # Always an update (possibly of a key to itself), so that RETURNING gives the existing id.
    set_ = {c: stmt.excluded[c] for c in columns} or {keys[0]: stmt.excluded[keys[0]]}
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_=set_)
    row_id: int = conn.execute(stmt.returning(table.c.id)).scalar_one()
    return row_id


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class UsagerRef:
    """A usager reachable on a phone number (caller-ID lookup result)."""

    usager_id: int
    role: Role
    """``Role.USAGER`` for the usager's own number, else the tiers's role."""
    tiers_id: int | None
    """The tiers the number belongs to, or None for the usager's own number."""
    may_know: frozenset[Topic]
    """What this caller may be told once identified."""
    civilite: str | None
    nom: str
    prenom: str
    langue: str
    besoins: tuple[str, ...]
    """``CommunicationNeed`` values of the usager."""
    mesure_protection: str | None
    numeros: tuple[str, ...]
    """Numéros de dossier of the usager's demandes, newest first."""


@dataclass(frozen=True, slots=True)
class DemandeRef:
    """A demande found by its numéro de dossier."""

    demande_id: int
    usager_id: int
    numero: str
    type: str


@dataclass(frozen=True, slots=True)
class StatusEntry:
    """One step of a demande's status history."""

    code: str
    """A facts §9 code (``COMPLET``, ``RECEVABLE``...)."""
    date: date
    detail: str | None


@dataclass(frozen=True, slots=True)
class MissingDocument:
    """A document asked for and not yet received."""

    piece: str
    date_demande: date | None
    date_relance: date | None


@dataclass(frozen=True, slots=True)
class DecisionInfo:
    """A decision on a demande."""

    prestation: str
    sens: str
    """``accord``, ``rejet`` or ``partiel``."""
    date_decision: date
    date_notification: date | None
    date_debut: date | None
    date_fin: date | None
    sans_limitation: bool
    montant_cents: int | None
    gir: int | None
    taux_participation: float | None
    recours_jusqu_au: date | None


@dataclass(frozen=True, slots=True)
class DemandeSnapshot:
    """A demande with its current status and history."""

    demande_id: int
    numero: str
    type: str
    """A ``DemandeType`` value."""
    circuit: Circuit
    date_depot: date | None
    date_recevabilite: date | None
    date_limite_legale: date | None
    status: StatusEntry | None
    """The current status (the latest by date), or None if the history is empty."""
    history: tuple[StatusEntry, ...]
    """Oldest first."""
    missing_documents: tuple[MissingDocument, ...] | None
    """None when the reader may not know documents."""
    decisions: tuple[DecisionInfo, ...] | None
    """Newest first; None when the reader may not know decisions."""


@dataclass(frozen=True, slots=True)
class AppointmentInfo:
    """A rendez-vous to come."""

    type: str
    debut: datetime
    """Start (UTC)."""
    lieu: str | None
    numero: str | None
    """The demande it is for, if known."""


@dataclass(frozen=True, slots=True)
class PaymentInfo:
    """A payment, made or scheduled. Never bank details beyond ``iban_last4`` (agents only)."""

    prestation: str
    periode: date
    """First day of the month paid for."""
    date_paiement: date
    montant_brut_cents: int
    participation_cents: int | None
    montant_verse_cents: int | None
    mode: str | None
    statut: str
    """A ``PaymentStatus`` value."""
    motif_ecart: str | None
    iban_last4: str | None
    """Only in agents' snapshots; None otherwise."""


@dataclass(frozen=True, slots=True)
class DossierSnapshot:
    """What a reader may know of a usager's dossier, at ``today``."""

    usager_id: int
    role: Role
    tiers_id: int | None
    """The tiers reading, when ``role`` is a tiers role."""
    topics: frozenset[Topic]
    """What the reader may know; sections outside it are None."""
    civilite: str | None
    nom: str
    prenom: str
    langue: str
    besoins: tuple[str, ...]
    mesure_protection: str | None
    demandes: tuple[DemandeSnapshot, ...] | None
    """Newest first (by date de dépôt); None without ``Topic.STATUS``."""
    appointments: tuple[AppointmentInfo, ...] | None
    """Rendez-vous from ``today`` on, soonest first; None without ``Topic.APPOINTMENTS``."""
    last_payment: PaymentInfo | None
    """The latest payment made or ordered on or before ``today``."""
    next_payment: PaymentInfo | None
    """The first payment scheduled or ordered after ``today``."""
    recent_payments: tuple[PaymentInfo, ...] | None
    """Up to 12 payments on or before ``today``, newest first; None without ``Topic.PAYMENTS``."""

    @property
    def next_appointment(self) -> AppointmentInfo | None:
        """The soonest rendez-vous, if any is known and may be told."""
        return self.appointments[0] if self.appointments else None


@dataclass(frozen=True, slots=True)
class ContactInfo:
    """One contact of a dossier's history."""

    id: int
    usager_id: int | None
    tiers_id: int | None
    sip_call_id: str | None
    channel: str
    started_at: datetime
    ended_at: datetime | None
    handled_by: str | None
    bot_path: tuple[str, ...]
    intents: tuple[str, ...]
    summary: str | None
    outcome: str | None
    agent_notes: str | None
    follow_up: str | None


# --------------------------------------------------------------------------------------------
# Reads (audited)


_BY_PHONE = (
    select(
        PHONE.c.usager_id,
        PHONE.c.tiers_id,
        USAGER.c.civilite,
        USAGER.c.nom,
        USAGER.c.prenom,
        USAGER.c.langue,
        USAGER.c.besoins,
        USAGER.c.mesure_protection,
        TIERS.c.role,
        TIERS.c.may_know,
    )
    .select_from(
        PHONE.join(USAGER, USAGER.c.id == PHONE.c.usager_id).outerjoin(
            TIERS, TIERS.c.id == PHONE.c.tiers_id
        )
    )
    # A merged usager (tombstone) owns nothing and answers no lookup.
    .where(PHONE.c.e164 == bindparam("e164"), USAGER.c.merged_into.is_(None))
    .order_by(PHONE.c.usager_id, PHONE.c.tiers_id)
)
_NUMEROS = (
    select(DEMANDE.c.usager_id, DEMANDE.c.numero)
    .where(DEMANDE.c.usager_id.in_(bindparam("ids", expanding=True)))
    .order_by(DEMANDE.c.usager_id, DEMANDE.c.date_depot.desc().nulls_last(), DEMANDE.c.id.desc())
)
_DEMANDE_COLUMNS = (DEMANDE.c.id, DEMANDE.c.usager_id, DEMANDE.c.numero, DEMANDE.c.type)
_LIVE_DEMANDES = DEMANDE.join(USAGER, USAGER.c.id == DEMANDE.c.usager_id)
_BY_NUMERO = (
    select(*_DEMANDE_COLUMNS)
    .select_from(_LIVE_DEMANDES)
    .where(DEMANDE.c.numero == bindparam("numero"), USAGER.c.merged_into.is_(None))
)
_BY_NUMERO_DIGITS = (
    select(*_DEMANDE_COLUMNS)
    .select_from(_LIVE_DEMANDES)
    .where(DEMANDE.c.numero_chiffres == bindparam("digits"), USAGER.c.merged_into.is_(None))
    .limit(2)
)
_BIRTH_DATE = select(USAGER.c.date_naissance).where(
    USAGER.c.id == bindparam("usager_id"), USAGER.c.merged_into.is_(None)
)


def find_by_phone(
    bind: Engine | Connection,
    phone: str,
    *,
    actor: str,
    reason: str,
    via: Via,
    region: str = DEFAULT_REGION,
) -> list[UsagerRef]:
    """Return the usagers whose dossier is reached on ``phone`` (own number or a tiers's).

    Args:
        bind: Engine or connection.
        phone: The caller's number (E.164 preferred; other forms are normalised).
        actor: Who looks up (``bot`` for the voice bot).
        reason: Why (e.g. ``caller identification``).
        via: The channel.
        region: Region for national numbers.

    Returns:
        One :class:`UsagerRef` per (usager, tiers) pair, ordered by usager id; empty if the
        number is unknown or invalid.
    """
    e164 = normalize_phone(phone, region)
    with transaction(bind) as conn:
        refs: list[UsagerRef] = []
        if e164 is not None:
            rows = conn.execute(_BY_PHONE, {"e164": e164}).all()
            numeros = _numeros(conn, {row.usager_id for row in rows})
            for row in rows:
                role = Role.USAGER if row.tiers_id is None else Role(row.role)
                refs.append(
                    UsagerRef(
                        usager_id=row.usager_id,
                        role=role,
                        tiers_id=row.tiers_id,
                        may_know=ALL_TOPICS if row.tiers_id is None else _topics(row.may_know),
                        civilite=row.civilite,
                        nom=row.nom,
                        prenom=row.prenom,
                        langue=row.langue,
                        besoins=tuple(row.besoins),
                        mesure_protection=row.mesure_protection,
                        numeros=numeros.get(row.usager_id, ()),
                    )
                )
        ids = sorted({ref.usager_id for ref in refs})
        audit(
            conn,
            actor=actor,
            reason=reason,
            via=via,
            action="find_by_phone",
            usager_id=ids[0] if len(ids) == 1 else None,
            detail={"matches": len(refs), "usager_ids": ids[:MAX_AUDITED_MATCHES]},
        )
    return refs


def _numeros(conn: Connection, usager_ids: set[int]) -> dict[int, tuple[str, ...]]:
    if not usager_ids:
        return {}
    rows = conn.execute(_NUMEROS, {"ids": sorted(usager_ids)}).all()
    found: dict[int, list[str]] = {}
    for row in rows:
        found.setdefault(row.usager_id, []).append(row.numero)
    return {k: tuple(v) for k, v in found.items()}


def _topics(values: Iterable[str] | None) -> frozenset[Topic]:
    known = {t.value for t in Topic}
    return frozenset(Topic(v) for v in values or () if v in known)


def find_by_dossier_number(
    bind: Engine | Connection,
    numero: str,
    *,
    actor: str,
    reason: str,
    via: Via,
) -> DemandeRef | None:
    """Return the demande with numéro ``numero``, or None.

    The match ignores case and spaces. A numéro given as digits only (keyed on a telephone
    keypad) matches the demande whose numéro has exactly these digits, if only one has.
    """
    wanted = normalize_numero(numero)
    with transaction(bind) as conn:
        row = None
        if wanted:
            row = conn.execute(_BY_NUMERO, {"numero": wanted}).first()
            if row is None and wanted.isdigit():
                rows = conn.execute(_BY_NUMERO_DIGITS, {"digits": wanted}).all()
                row = rows[0] if len(rows) == 1 else None
        ref = None
        if row is not None:
            ref = DemandeRef(
                demande_id=row.id, usager_id=row.usager_id, numero=row.numero, type=row.type
            )
        audit(
            conn,
            actor=actor,
            reason=reason,
            via=via,
            action="find_by_dossier_number",
            usager_id=None if ref is None else ref.usager_id,
            detail={
                "found": ref is not None,
                "demande_id": None if ref is None else ref.demande_id,
            },
        )
    return ref


def verify_birth_date(
    bind: Engine | Connection,
    usager_id: int,
    birth_date: date,
    *,
    actor: str,
    reason: str,
    via: Via,
) -> bool:
    """Return True if ``birth_date`` is the usager's; the attempt and its outcome are audited."""
    with transaction(bind) as conn:
        known = conn.execute(_BIRTH_DATE, {"usager_id": usager_id}).scalar_one_or_none()
        ok = known is not None and known == birth_date
        audit(
            conn,
            actor=actor,
            reason=reason,
            via=via,
            action="verify_birth_date",
            usager_id=usager_id,
            detail={"match": ok},
        )
    return ok


def dossier_snapshot(
    bind: Engine | Connection,
    usager_id: int,
    *,
    role: Role,
    actor: str,
    reason: str,
    via: Via,
    today: date,
    tiers_id: int | None = None,
) -> DossierSnapshot | None:
    """Assemble what ``role`` may know of a usager's dossier at ``today``.

    Args:
        bind: Engine or connection.
        usager_id: The dossier holder.
        role: Who reads. For a tiers role, ``tiers_id`` is required and the tiers's
            ``may_know`` decides the sections filled.
        actor: Who reads (``bot``, an agent's login...).
        reason: Why.
        via: The channel.
        today: The date the answer is for (payments and appointments are split around it).
        tiers_id: The tiers reading, for a tiers role.

    Returns:
        The snapshot, or None if the usager does not exist.

    Raises:
        PermissionError: ``tiers_id`` is missing, unknown, not declared on this dossier, or
            declared with another role.
    """
    with transaction(bind) as conn:
        usager, demande_rows = _usager_with_history(conn, usager_id)
        if usager is None:
            audit(
                conn,
                actor=actor,
                reason=reason,
                via=via,
                action="snapshot",
                usager_id=usager_id,
                detail={"found": False},
            )
            return None
        topics = ALL_TOPICS
        if role.is_tiers:
            topics = _tiers_topics(conn, usager_id, tiers_id, role)
        elif tiers_id is not None:
            raise PermissionError(f"snapshot: role {role.value} takes no tiers_id")
        demandes = _demandes(conn, demande_rows, topics) if Topic.STATUS in topics else None
        appointments = (
            _appointments(conn, usager_id, today) if Topic.APPOINTMENTS in topics else None
        )
        last_payment = next_payment = None
        recent: tuple[PaymentInfo, ...] | None = None
        if Topic.PAYMENTS in topics:
            last_payment, next_payment, recent = _payments(
                conn, usager_id, today, with_iban=role is Role.AGENT
            )
        audit(
            conn,
            actor=actor,
            reason=reason,
            via=via,
            action="snapshot",
            usager_id=usager_id,
            detail={
                "found": True,
                "role": role.value,
                "tiers_id": tiers_id,
                "topics": sorted(t.value for t in topics),
            },
        )
    return DossierSnapshot(
        usager_id=usager_id,
        role=role,
        tiers_id=tiers_id,
        topics=topics,
        civilite=usager["civilite"],
        nom=usager["nom"],
        prenom=usager["prenom"],
        langue=usager["langue"],
        besoins=tuple(usager["besoins"]),
        mesure_protection=usager["mesure_protection"],
        demandes=demandes,
        appointments=appointments,
        last_payment=last_payment,
        next_payment=next_payment,
        recent_payments=recent,
    )


def _tiers_topics(
    conn: Connection, usager_id: int, tiers_id: int | None, role: Role
) -> frozenset[Topic]:
    if tiers_id is None:
        raise PermissionError(f"snapshot: role {role.value} needs the tiers_id of the caller")
    row = conn.execute(_TIERS_OF, {"tiers_id": tiers_id}).first()
    if row is None or row.usager_id != usager_id:
        raise PermissionError("snapshot: this tiers is not declared on this dossier")
    if row.role != role.value:
        raise PermissionError("snapshot: this tiers is declared with another role")
    return _topics(row.may_know)


_Demande = tuple[RowMapping, list[StatusEntry]]


# The snapshot's statements are built once (with bind parameters): building a select() per
# call cost more Python time than the database took to run it (profiled: ~1 ms per snapshot).
_USAGER_WITH_HISTORY = (
    select(
        USAGER.c.civilite,
        USAGER.c.nom,
        USAGER.c.prenom,
        USAGER.c.langue,
        USAGER.c.besoins,
        USAGER.c.mesure_protection,
        DEMANDE.c.id.label("demande_id"),
        DEMANDE.c.numero,
        DEMANDE.c.type,
        DEMANDE.c.date_depot,
        DEMANDE.c.date_recevabilite,
        DEMANDE.c.date_limite_legale,
        STATUS.c.code,
        STATUS.c.date_statut,
        STATUS.c.detail,
    )
    .select_from(
        USAGER.outerjoin(DEMANDE, DEMANDE.c.usager_id == USAGER.c.id).outerjoin(
            STATUS, STATUS.c.demande_id == DEMANDE.c.id
        )
    )
    .where(USAGER.c.id == bindparam("usager_id"), USAGER.c.merged_into.is_(None))
    .order_by(
        DEMANDE.c.date_depot.desc().nulls_last(),
        DEMANDE.c.id.desc(),
        STATUS.c.date_statut,
        STATUS.c.id,
    )
)
_MISSING_PIECES = (
    select(PIECE.c.demande_id, PIECE.c.piece, PIECE.c.date_demande, PIECE.c.date_relance)
    .where(PIECE.c.demande_id.in_(bindparam("ids", expanding=True)), PIECE.c.date_recue.is_(None))
    .order_by(PIECE.c.demande_id, PIECE.c.id)
)
_DECISIONS = (
    select(DECISION)
    .where(DECISION.c.demande_id.in_(bindparam("ids", expanding=True)))
    .order_by(DECISION.c.demande_id, DECISION.c.date_decision.desc(), DECISION.c.id.desc())
)
_APPOINTMENTS = (
    select(RDV.c.type, RDV.c.debut, RDV.c.lieu, DEMANDE.c.numero)
    .select_from(RDV.outerjoin(DEMANDE, DEMANDE.c.id == RDV.c.demande_id))
    .where(
        RDV.c.usager_id == bindparam("usager_id"),
        RDV.c.debut >= bindparam("start"),
        RDV.c.annule.is_(False),
    )
    .order_by(RDV.c.debut)
    .limit(5)
)
_TIERS_OF = select(TIERS.c.usager_id, TIERS.c.role, TIERS.c.may_know).where(
    TIERS.c.id == bindparam("tiers_id")
)


def _usager_with_history(
    conn: Connection, usager_id: int
) -> tuple[RowMapping | None, list[_Demande]]:
    """Fetch the usager, their demandes (newest first) and status histories in one round trip."""
    rows = conn.execute(_USAGER_WITH_HISTORY, {"usager_id": usager_id}).mappings().all()
    if not rows:
        return None, []
    demandes: dict[int, _Demande] = {}
    for row in rows:
        if row["demande_id"] is None:
            continue
        _, history = demandes.setdefault(row["demande_id"], (row, []))
        if row["code"] is not None:
            history.append(StatusEntry(row["code"], row["date_statut"], row["detail"]))
    return rows[0], list(demandes.values())


def _demandes(
    conn: Connection, demandes: list[_Demande], topics: frozenset[Topic]
) -> tuple[DemandeSnapshot, ...]:
    if not demandes:
        return ()
    ids = [d["demande_id"] for d, _ in demandes]
    missing: dict[int, list[MissingDocument]] | None = None
    if Topic.DOCUMENTS in topics:
        missing = {i: [] for i in ids}
        for row in conn.execute(_MISSING_PIECES, {"ids": ids}):
            missing[row.demande_id].append(
                MissingDocument(row.piece, row.date_demande, row.date_relance)
            )
    decisions: dict[int, list[DecisionInfo]] | None = None
    if Topic.DECISIONS in topics:
        decisions = {i: [] for i in ids}
        for dec in conn.execute(_DECISIONS, {"ids": ids}).mappings():
            decisions[dec["demande_id"]].append(
                DecisionInfo(
                    prestation=dec["prestation"],
                    sens=dec["sens"],
                    date_decision=dec["date_decision"],
                    date_notification=dec["date_notification"],
                    date_debut=dec["date_debut"],
                    date_fin=dec["date_fin"],
                    sans_limitation=dec["sans_limitation"],
                    montant_cents=dec["montant_cents"],
                    gir=dec["gir"],
                    taux_participation=dec["taux_participation"],
                    recours_jusqu_au=dec["recours_jusqu_au"],
                )
            )
    return tuple(
        DemandeSnapshot(
            demande_id=d["demande_id"],
            numero=d["numero"],
            type=d["type"],
            circuit=circuit_of(d["type"]),
            date_depot=d["date_depot"],
            date_recevabilite=d["date_recevabilite"],
            date_limite_legale=d["date_limite_legale"],
            status=history[-1] if history else None,
            history=tuple(history),
            missing_documents=None if missing is None else tuple(missing[d["demande_id"]]),
            decisions=None if decisions is None else tuple(decisions[d["demande_id"]]),
        )
        for d, history in demandes
    )


def _appointments(conn: Connection, usager_id: int, today: date) -> tuple[AppointmentInfo, ...]:
    start = datetime.combine(today, time(0), tzinfo=UTC)
    rows = conn.execute(_APPOINTMENTS, {"usager_id": usager_id, "start": start}).all()
    return tuple(AppointmentInfo(r.type, as_utc(r.debut), r.lieu, r.numero) for r in rows)


_DONE = (PaymentStatus.VERSE.value, PaymentStatus.MANDATE.value)
_TO_COME = (PaymentStatus.PREVU.value, PaymentStatus.MANDATE.value)


# One round trip: the last 12 on or before today, and the first to come after it.
_PAYMENTS_DONE = (
    select(PAIEMENT)
    .where(
        PAIEMENT.c.usager_id == bindparam("usager_id"),
        PAIEMENT.c.date_paiement <= bindparam("today"),
    )
    .order_by(PAIEMENT.c.date_paiement.desc(), PAIEMENT.c.id.desc())
    .limit(12)
    .subquery()
)
_PAYMENTS_TO_COME = (
    select(PAIEMENT)
    .where(
        PAIEMENT.c.usager_id == bindparam("usager_id"),
        PAIEMENT.c.date_paiement > bindparam("today"),
        PAIEMENT.c.statut.in_(_TO_COME),
    )
    .order_by(PAIEMENT.c.date_paiement, PAIEMENT.c.id)
    .limit(1)
    .subquery()
)
_PAYMENTS = union_all(select(_PAYMENTS_DONE), select(_PAYMENTS_TO_COME))


def _payments(
    conn: Connection, usager_id: int, today: date, *, with_iban: bool
) -> tuple[PaymentInfo | None, PaymentInfo | None, tuple[PaymentInfo, ...]]:
    rows = conn.execute(_PAYMENTS, {"usager_id": usager_id, "today": today}).mappings().all()
    recent = sorted(
        (r for r in rows if r["date_paiement"] <= today),
        key=lambda r: (r["date_paiement"], r["id"]),
        reverse=True,
    )
    upcoming = next((r for r in rows if r["date_paiement"] > today), None)
    past = tuple(_payment(row, with_iban) for row in recent)
    last = next((p for p in past if p.statut in _DONE), None)
    return last, None if upcoming is None else _payment(upcoming, with_iban), past


def _payment(row: RowMapping, with_iban: bool) -> PaymentInfo:
    return PaymentInfo(
        prestation=row["prestation"],
        periode=row["periode"],
        date_paiement=row["date_paiement"],
        montant_brut_cents=row["montant_brut_cents"],
        participation_cents=row["participation_cents"],
        montant_verse_cents=row["montant_verse_cents"],
        mode=row["mode"],
        statut=row["statut"],
        motif_ecart=row["motif_ecart"],
        iban_last4=row["iban_last4"] if with_iban else None,
    )


# --------------------------------------------------------------------------------------------
# Contacts


def record_contact(
    bind: Engine | Connection,
    *,
    channel: ContactChannel | str,
    started_at: datetime,
    sip_call_id: str | None = None,
    ended_at: datetime | None = None,
    usager_id: int | None = None,
    tiers_id: int | None = None,
    handled_by: str | None = None,
    bot_path: Sequence[str] = (),
    intents: Sequence[str] = (),
    summary: str | None = None,
    outcome: str | None = None,
    follow_up: str | None = None,
) -> int:
    """Record a contact (every call, bot-only ones included); return its id.

    With a ``sip_call_id``, recording the same call again updates its row (e.g. once when the
    caller is identified, once at hang-up): the usager and tiers, once known, are kept if a
    later record leaves them None; a ``follow_up`` left None keeps the one recorded (e.g. at
    the agent's wrap-up, which may come before the call's own end); an agent's login in
    ``handled_by`` is not replaced by ``bot`` or None; agent notes and the wrap-up columns
    (``wrapup_motif``, ``first_contact_resolved``, ``follow_up_due``) are never written here.
    """
    values: dict[str, Any] = {
        "usager_id": usager_id,
        "tiers_id": tiers_id,
        "sip_call_id": sip_call_id,
        "channel": ContactChannel(channel).value,
        "started_at": _utc(started_at),
        "ended_at": None if ended_at is None else _utc(ended_at),
        "handled_by": handled_by,
        "bot_path": list(bot_path),
        "intents": list(intents),
        "summary": summary,
        "outcome": outcome,
        "follow_up": follow_up,
    }
    with transaction(bind) as conn:
        if sip_call_id is None:
            contact_id: int = conn.execute(
                insert(CONTACT).values(**values).returning(CONTACT.c.id)
            ).scalar_one()
            return contact_id
        existing = conn.execute(
            select(
                CONTACT.c.id, CONTACT.c.usager_id, CONTACT.c.tiers_id, CONTACT.c.handled_by
            ).where(CONTACT.c.sip_call_id == sip_call_id)
        ).first()
        if existing is None:
            return _upsert(conn, CONTACT, values, ["sip_call_id"])
        if usager_id is None:
            values["usager_id"] = existing.usager_id
            if tiers_id is None:
                values["tiers_id"] = existing.tiers_id
        if follow_up is None:
            del values["follow_up"]
        if existing.handled_by not in (None, "bot") and handled_by in (None, "bot"):
            del values["handled_by"]
        conn.execute(update(CONTACT).where(CONTACT.c.id == existing.id).values(**values))
        existing_id: int = existing.id
        return existing_id


def set_agent_notes(
    bind: Engine | Connection,
    contact_id: int,
    notes: str,
    *,
    actor: str,
    via: Via,
    reason: str = "agent notes",
) -> bool:
    """Set an agent's notes on a contact; return False if the contact does not exist. Audited."""
    with transaction(bind) as conn:
        usager_id = conn.execute(
            select(CONTACT.c.usager_id).where(CONTACT.c.id == contact_id)
        ).first()
        if usager_id is None:
            return False
        conn.execute(update(CONTACT).where(CONTACT.c.id == contact_id).values(agent_notes=notes))
        audit(
            conn,
            actor=actor,
            reason=reason,
            via=via,
            action="agent_notes",
            usager_id=usager_id[0],
            detail={"contact_id": contact_id},
        )
    return True


def purge_contact_summaries(bind: Engine | Connection, before: datetime) -> int:
    """Erase the summaries (what callers said) of contacts started before ``before``; count them.

    The contact itself (when, channel, path, intents, outcome, agent notes) is the dossier's
    history and stays; the caller's words follow the transcripts' retention.
    """
    with transaction(bind) as conn:
        result = conn.execute(
            update(CONTACT)
            .where(CONTACT.c.started_at < _utc(before), CONTACT.c.summary.is_not(None))
            .values(summary=None)
        )
    return int(result.rowcount or 0)


def usager_exists(bind: Engine | Connection, usager_id: int) -> bool:
    """Whether a live usager (not merged) has this id (reads no personal data: not audited)."""
    with transaction(bind) as conn:
        row = conn.execute(
            select(USAGER.c.id).where(USAGER.c.id == usager_id, USAGER.c.merged_into.is_(None))
        ).first()
    return row is not None


def contacts_for(
    bind: Engine | Connection,
    usager_id: int,
    *,
    actor: str,
    reason: str,
    via: Via,
    limit: int = 100,
) -> list[ContactInfo]:
    """Return the contact history of a usager, newest first (audited)."""
    with transaction(bind) as conn:
        rows = (
            conn.execute(
                select(CONTACT)
                .where(CONTACT.c.usager_id == usager_id)
                .order_by(CONTACT.c.started_at.desc(), CONTACT.c.id.desc())
                .limit(limit)
            )
            .mappings()
            .all()
        )
        audit(
            conn,
            actor=actor,
            reason=reason,
            via=via,
            action="contacts",
            usager_id=usager_id,
            detail={"count": len(rows)},
        )
    return [
        ContactInfo(
            id=r["id"],
            usager_id=r["usager_id"],
            tiers_id=r["tiers_id"],
            sip_call_id=r["sip_call_id"],
            channel=r["channel"],
            started_at=as_utc(r["started_at"]),
            ended_at=None if r["ended_at"] is None else as_utc(r["ended_at"]),
            handled_by=r["handled_by"],
            bot_path=tuple(r["bot_path"]),
            intents=tuple(r["intents"]),
            summary=r["summary"],
            outcome=r["outcome"],
            agent_notes=r["agent_notes"],
            follow_up=r["follow_up"],
        )
        for r in rows
    ]


# --------------------------------------------------------------------------------------------
# Upserts (the import)


def _check(condition: bool, field_name: str, message: str) -> None:
    if not condition:
        raise ValueError(f"{field_name}: {message}")


@dataclass(frozen=True, slots=True)
class UsagerRecord:
    """A usager as the back office extract describes it.

    Raises:
        ValueError: on construction, naming the field, if a value is invalid.
    """

    external_id: str
    nom: str
    prenom: str
    date_naissance: date
    civilite: str | None = None
    nom_naissance: str | None = None
    langue: str = "fr"
    besoins: tuple[str, ...] = ()
    """``CommunicationNeed`` values."""
    mesure_protection: str | None = None
    """A ``ProtectionMeasure`` value."""
    nir_hash: str | None = None
    """From :func:`nir_hash`; never the NIR."""
    phones: tuple[str, ...] = ()
    """The usager's own numbers, any usual form (normalised to E.164)."""

    def __post_init__(self) -> None:
        _check(bool(self.external_id.strip()), "external_id", "required")
        _check(bool(self.nom.strip()), "nom", "required")
        _check(bool(self.prenom.strip()), "prenom", "required")
        needs = {n.value for n in CommunicationNeed}
        for need in self.besoins:
            _check(need in needs, "besoins", f"unknown need {need!r}")
        if self.mesure_protection is not None:
            _check(
                self.mesure_protection in {m.value for m in ProtectionMeasure},
                "mesure_protection",
                f"unknown measure {self.mesure_protection!r}",
            )
        if self.nir_hash is not None:
            _check(
                re.fullmatch(r"[0-9a-f]{64}", self.nir_hash) is not None,
                "nir_hash",
                "not an HMAC-SHA256 hex digest (never pass the NIR itself)",
            )


@dataclass(frozen=True, slots=True)
class TiersRecord:
    """A third party declared on a dossier."""

    external_id: str
    nom: str
    role: TiersRole
    prenom: str | None = None
    civilite: str | None = None
    relation: str | None = None
    may_know: frozenset[Topic] | None = None
    """None: the role's default (:data:`DEFAULT_MAY_KNOW`)."""
    mandat_verifie: bool = False
    phones: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(bool(self.external_id.strip()), "external_id", "required")
        _check(bool(self.nom.strip()), "nom", "required")
        _check(self.role in {r.value for r in TiersRole}, "role", f"unknown role {self.role!r}")


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """A status step of a demande."""

    code: str
    date: date
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class PieceRecord:
    """A document asked for."""

    piece: str
    date_demande: date | None = None
    date_relance: date | None = None
    date_recue: date | None = None


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A decision on a demande."""

    prestation: str
    sens: str
    date_decision: date
    date_notification: date | None = None
    date_debut: date | None = None
    date_fin: date | None = None
    sans_limitation: bool = False
    montant_cents: int | None = None
    gir: int | None = None
    taux_participation: float | None = None
    recours_jusqu_au: date | None = None

    def __post_init__(self) -> None:
        _check(self.sens in ("accord", "rejet", "partiel"), "sens", f"unknown sens {self.sens!r}")
        _check(self.gir is None or 1 <= self.gir <= 6, "gir", "must be 1 to 6")
        _check(self.montant_cents is None or self.montant_cents >= 0, "montant_cents", "negative")
        _check(
            self.taux_participation is None or 0 <= self.taux_participation <= 100,
            "taux_participation",
            "must be a percentage",
        )
        _check(
            not (self.sans_limitation and self.date_fin is not None),
            "date_fin",
            "given with sans_limitation",
        )


@dataclass(frozen=True, slots=True)
class DemandeRecord:
    """A demande with its history, missing documents and decisions."""

    numero: str
    type: str
    """A ``DemandeType`` value."""
    date_depot: date | None = None
    date_recevabilite: date | None = None
    date_limite_legale: date | None = None
    referent: str | None = None
    statuses: tuple[StatusRecord, ...] = ()
    pieces: tuple[PieceRecord, ...] = ()
    decisions: tuple[DecisionRecord, ...] = ()

    def __post_init__(self) -> None:
        _check(bool(normalize_numero(self.numero)), "numero", "required")
        _check(len(normalize_numero(self.numero)) <= 32, "numero", "longer than 32 characters")
        _check(self.type in {t.value for t in DemandeType}, "type", f"unknown type {self.type!r}")
        codes = STATUSES_BY_CIRCUIT[circuit_of(self.type)]
        for status in self.statuses:
            _check(
                status.code in codes,
                "statuses",
                f"{status.code!r} is not a {circuit_of(self.type).value} status",
            )


@dataclass(frozen=True, slots=True)
class RendezVousRecord:
    """A rendez-vous."""

    type: str
    debut: datetime
    lieu: str | None = None
    annule: bool = False
    numero: str | None = None
    """The demande it is for, by numéro (must exist)."""


@dataclass(frozen=True, slots=True)
class PaiementRecord:
    """A payment, made or scheduled."""

    prestation: str
    periode: date
    date_paiement: date
    montant_brut_cents: int
    statut: str
    participation_cents: int | None = None
    montant_verse_cents: int | None = None
    mode: str | None = None
    motif_ecart: str | None = None
    iban_last4: str | None = None
    """At most the last four characters of the IBAN."""
    numero: str | None = None
    """The demande it is for, by numéro (must exist)."""

    def __post_init__(self) -> None:
        _check(
            self.statut in {s.value for s in PaymentStatus},
            "statut",
            f"unknown payment status {self.statut!r}",
        )
        _check(self.montant_brut_cents >= 0, "montant_brut_cents", "negative")
        _check(
            self.iban_last4 is None or re.fullmatch(r"[0-9A-Z]{1,4}", self.iban_last4) is not None,
            "iban_last4",
            "at most the last four characters of the IBAN",
        )


def upsert_usager(
    bind: Engine | Connection, record: UsagerRecord, *, now: datetime | None = None
) -> int:
    """Insert or update a usager by ``external_id`` and replace their own phones; return the id.

    ``nir_hash`` is only ever set, never cleared, by a record that lacks it.
    """
    at = _utc(now or datetime.now(UTC))
    values: dict[str, Any] = {
        "external_id": record.external_id.strip(),
        "civilite": record.civilite,
        "nom": record.nom.strip(),
        "prenom": record.prenom.strip(),
        "nom_naissance": record.nom_naissance,
        "date_naissance": record.date_naissance,
        "langue": record.langue,
        "besoins": list(record.besoins),
        "mesure_protection": record.mesure_protection,
        "created_at": at,
        "updated_at": at,
    }
    update_columns = [c for c in values if c not in ("external_id", "created_at")]
    if record.nir_hash is not None:
        values["nir_hash"] = record.nir_hash
        update_columns.append("nir_hash")
    with transaction(bind) as conn:
        merged_into = conn.execute(
            select(USAGER.c.merged_into).where(USAGER.c.external_id == values["external_id"])
        ).scalar_one_or_none()
        if merged_into is not None:
            raise ValueError(
                f"external_id: this usager was merged into usager {merged_into}; "
                "update the kept usager instead"
            )
        usager_id = _upsert(conn, USAGER, values, ["external_id"], update_columns=update_columns)
        set_phones(conn, usager_id, record.phones)
    return usager_id


def set_phones(
    bind: Engine | Connection,
    usager_id: int,
    phones: Iterable[str],
    *,
    tiers_id: int | None = None,
    region: str = DEFAULT_REGION,
) -> list[str]:
    """Replace the numbers of a usager (or of one of their tiers); return the E.164 kept.

    Invalid numbers are skipped; duplicates are kept once.
    """
    kept: list[str] = []
    for raw in phones:
        e164 = normalize_phone(raw, region)
        if e164 is not None and e164 not in kept:
            kept.append(e164)
    owner = PHONE.c.tiers_id.is_(None) if tiers_id is None else PHONE.c.tiers_id == tiers_id
    with transaction(bind) as conn:
        current = conn.execute(
            select(PHONE.c.e164).where(PHONE.c.usager_id == usager_id, owner)
        ).scalars()
        if sorted(current) == sorted(kept):
            return kept
        conn.execute(delete(PHONE).where(PHONE.c.usager_id == usager_id, owner))
        if kept:
            conn.execute(
                insert(PHONE),
                [
                    {
                        "usager_id": usager_id,
                        "tiers_id": tiers_id,
                        "e164": e,
                        "kind": _phone_kind(e),
                    }
                    for e in kept
                ],
            )
    return kept


def upsert_tiers(bind: Engine | Connection, usager_id: int, record: TiersRecord) -> int:
    """Insert or update a tiers of a usager by its ``external_id``; replace its phones."""
    may_know = (
        DEFAULT_MAY_KNOW[TiersRole(record.role)] if record.may_know is None else record.may_know
    )
    values: dict[str, Any] = {
        "usager_id": usager_id,
        "external_id": record.external_id.strip(),
        "civilite": record.civilite,
        "nom": record.nom.strip(),
        "prenom": record.prenom,
        "relation": record.relation,
        "role": TiersRole(record.role).value,
        "may_know": sorted(t.value for t in may_know),
        "mandat_verifie": record.mandat_verifie,
    }
    with transaction(bind) as conn:
        tiers_id = _upsert(conn, TIERS, values, ["usager_id", "external_id"])
        set_phones(conn, usager_id, record.phones, tiers_id=tiers_id)
    return tiers_id


def upsert_demande(bind: Engine | Connection, usager_id: int, record: DemandeRecord) -> int:
    """Insert or update a demande by numéro, with its statuses, documents and decisions.

    Statuses are added (an existing (code, date) is left as is, its detail updated); documents
    and decisions are upserted. Nothing is deleted: a re-import never loses history.

    Raises:
        ValueError: the numéro belongs to another usager.
    """
    numero = normalize_numero(record.numero)
    values: dict[str, Any] = {
        "usager_id": usager_id,
        "numero": numero,
        "numero_chiffres": numero_digits(numero),
        "type": record.type,
        "date_depot": record.date_depot,
        "date_recevabilite": record.date_recevabilite,
        "date_limite_legale": record.date_limite_legale,
        "referent": record.referent,
    }
    with transaction(bind) as conn:
        owner = conn.execute(
            select(DEMANDE.c.usager_id).where(DEMANDE.c.numero == numero)
        ).scalar_one_or_none()
        if owner is not None and owner != usager_id:
            raise ValueError(f"numero: {numero} belongs to another usager")
        demande_id = _upsert(conn, DEMANDE, values, ["numero"])
        for status in record.statuses:
            _upsert(
                conn,
                STATUS,
                {
                    "demande_id": demande_id,
                    "code": status.code,
                    "date_statut": status.date,
                    "detail": status.detail,
                },
                ["demande_id", "code", "date_statut"],
            )
        for piece in record.pieces:
            _upsert(
                conn,
                PIECE,
                {
                    "demande_id": demande_id,
                    "piece": piece.piece,
                    "date_demande": piece.date_demande,
                    "date_relance": piece.date_relance,
                    "date_recue": piece.date_recue,
                },
                ["demande_id", "piece"],
            )
        for decision in record.decisions:
            _upsert(
                conn,
                DECISION,
                {"demande_id": demande_id, **_fields(decision)},
                ["demande_id", "prestation", "date_decision"],
            )
    return demande_id


def _fields(record: DecisionRecord | PaiementRecord) -> dict[str, Any]:
    return asdict(record)


def _demande_id(conn: Connection, usager_id: int, numero: str | None) -> int | None:
    if numero is None:
        return None
    row = conn.execute(
        select(DEMANDE.c.id, DEMANDE.c.usager_id).where(
            DEMANDE.c.numero == normalize_numero(numero)
        )
    ).first()
    if row is None or row.usager_id != usager_id:
        raise ValueError(f"numero: no demande {numero} for this usager")
    demande_id: int = row.id
    return demande_id


def upsert_rendez_vous(bind: Engine | Connection, usager_id: int, record: RendezVousRecord) -> int:
    """Insert or update a rendez-vous by (usager, type, start)."""
    with transaction(bind) as conn:
        values = {
            "usager_id": usager_id,
            "demande_id": _demande_id(conn, usager_id, record.numero),
            "type": record.type,
            "debut": _utc(record.debut),
            "lieu": record.lieu,
            "annule": record.annule,
        }
        return _upsert(conn, RDV, values, ["usager_id", "type", "debut"])


def upsert_paiement(bind: Engine | Connection, usager_id: int, record: PaiementRecord) -> int:
    """Insert or update a payment by (usager, prestation, period, date)."""
    with transaction(bind) as conn:
        values = _fields(record)
        values.pop("numero")
        values["usager_id"] = usager_id
        values["demande_id"] = _demande_id(conn, usager_id, record.numero)
        return _upsert(
            conn, PAIEMENT, values, ["usager_id", "prestation", "periode", "date_paiement"]
        )
