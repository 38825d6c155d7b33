"""Repository of the agent panel: passwords, lockout, sessions, wrap-up, dossier search (issue 6).

Every function is blocking and takes an :class:`~sqlalchemy.Engine` (own transaction) or a
:class:`~sqlalchemy.Connection` (the caller's); from the event loop, call them through
``asyncio.to_thread``.

Rules this module owns:

1. Passwords are hashed with argon2id (argon2-cffi's :class:`~argon2.PasswordHasher` defaults,
   RFC 9106 section 4's second recommended option); a hash made with older parameters is
   replaced at the next successful login. A password is never stored, logged or returned.
2. Lockout is counted in the database (``agent.failed_logins``, ``agent.locked_until``) with
   an atomic increment, so that every node agrees: after ``max_failed`` consecutive failures
   the account is locked for ``lockout_s``; a success resets the counter. Unknown logins,
   disabled accounts and accounts without a password get the same answer as a wrong password,
   after the same work (a dummy verification), so a login cannot be probed by timing.
3. Sessions are rows (:mod:`callcenter.store.panel_models`): the cookie's 256-bit random id is
   stored as its SHA-256. :func:`session_for` ends a session past its absolute expiry, idle for
   longer than the idle timeout, or whose agent was disabled.
4. Every read of a dossier is audited with ``Via.PANEL`` (ids and counts only, never the
   query text, a name or a number).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlmodel import SQLModel

from callcenter.store import agents, panel_models
from callcenter.store.audit import Via, as_utc, audit, transaction
from callcenter.store.dossiers import (
    CONTACT,
    DEMANDE,
    PHONE,
    TIERS,
    USAGER,
    DossierSnapshot,
    PaymentInfo,
    Role,
    _numeros,
    _upsert,
    dossier_snapshot,
    normalize_numero,
    normalize_phone,
    numero_digits,
)

_ = panel_models  # registers the table in SQLModel.metadata
AGENT: Table = agents.AGENT
SESSION: Table = SQLModel.metadata.tables["panel_session"]

ROLES: tuple[str, ...] = ("agent", "supervisor", "admin")
"""Panel roles, lowest first: each role may do what the roles before it may."""

TOUCH_INTERVAL_S = 30.0
"""``last_seen`` is written at most this often per session (one write per 30 s, not per click)."""

PASSWORD_MIN = 12
"""Shortest password :func:`set_password` accepts (ANSSI recommends at least 12 characters)."""
PASSWORD_MAX = 1024
"""Longest password accepted (argon2 takes any length; this bounds the work per attempt)."""

MOTIF_MAX = 64
FOLLOW_UP_MAX = 200
NOTE_MAX = 4000
"""Longest wrap-up note kept, in characters."""

_HASHER = PasswordHasher()


class PanelError(ValueError):
    """An invalid panel operation; the message names the field."""


def role_rank(role: str) -> int:
    """Rank of a role (``agent`` 0 < ``supervisor`` 1 < ``admin`` 2); -1 if unknown."""
    return ROLES.index(role) if role in ROLES else -1


def _utc(value: datetime) -> datetime:
    # SQLite drops offsets: always store and compare UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise PanelError(f"role: must be one of {', '.join(ROLES)}, got {role!r}")
    return role


# --------------------------------------------------------------------------------------------
# Passwords and lockout


def set_password(
    bind: Engine | Connection,
    login: str,
    password: str,
    *,
    role: str | None = None,
    hasher: PasswordHasher | None = None,
    now: datetime | None = None,
) -> None:
    """Set an agent's panel password (argon2id) and optionally their role; unlock the account.

    Existing sessions of the agent are revoked (a new password ends every open panel).

    Raises:
        PanelError: the password is too short or too long, the role unknown, the agent unknown.
    """
    if len(password) < PASSWORD_MIN:
        raise PanelError(f"password: at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise PanelError(f"password: at most {PASSWORD_MAX} characters")
    values: dict[str, Any] = {
        "password_hash": (hasher or _HASHER).hash(password),
        "failed_logins": 0,
        "locked_until": None,
        "updated_at": _utc(now or datetime.now(UTC)),
    }
    if role is not None:
        values["role"] = _check_role(role)
    with transaction(bind) as conn:
        agent_id = _agent_id(conn, login)
        conn.execute(update(AGENT).where(AGENT.c.id == agent_id).values(**values))
        conn.execute(delete(SESSION).where(SESSION.c.agent_id == agent_id))


def set_role(bind: Engine | Connection, login: str, role: str) -> None:
    """Set an agent's panel role.

    Raises:
        PanelError: unknown role or agent.
    """
    _check_role(role)
    with transaction(bind) as conn:
        agent_id = _agent_id(conn, login)
        conn.execute(update(AGENT).where(AGENT.c.id == agent_id).values(role=role))


def get_role(bind: Engine | Connection, login: str) -> str | None:
    """An agent's panel role, or None for an unknown login."""
    with transaction(bind) as conn:
        role: str | None = conn.execute(
            select(AGENT.c.role).where(AGENT.c.login == login)
        ).scalar_one_or_none()
    return role


def _agent_id(conn: Connection, login: str) -> int:
    agent_id: int | None = conn.execute(
        select(AGENT.c.id).where(AGENT.c.login == login)
    ).scalar_one_or_none()
    if agent_id is None:
        raise PanelError(f"login: no agent {login!r}")
    return agent_id


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The outcome of a login attempt."""

    status: Literal["ok", "bad", "locked"]
    """``ok``; ``bad`` (unknown login, wrong password, disabled, no password); ``locked``."""
    login: str | None = None
    """The agent's login when ``ok``."""
    role: str | None = None
    """The agent's role when ``ok``."""
    retry_after_s: float = 0.0
    """When ``locked``: seconds until the lock ends."""
    locked_now: bool = False
    """When ``bad``: this failure locked the account (for the logs)."""


_DUMMY_HASH: str | None = None


def _dummy_verify(hasher: PasswordHasher, password: str) -> None:
    """Spend the time of one verification, so that a refusal's cause does not show in timing."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hasher.hash(secrets.token_urlsafe(16))
    try:
        hasher.verify(_DUMMY_HASH, password)
    except VerificationError:
        pass


def authenticate(
    bind: Engine | Connection,
    login: str,
    password: str,
    now: datetime,
    *,
    max_failed: int = 5,
    lockout_s: float = 900.0,
    hasher: PasswordHasher | None = None,
) -> LoginResult:
    """Check a login and password; count failures, lock, reset on success, rehash if needed.

    A locked account is refused without verifying the password (and without counting), until
    the lock ends. The failure that reaches ``max_failed`` consecutive failures locks the
    account for ``lockout_s`` (that attempt still answers ``bad``; the next ones ``locked``).
    """
    hasher = hasher or _HASHER
    at = _utc(now)
    with transaction(bind) as conn:
        row = conn.execute(
            select(
                AGENT.c.id,
                AGENT.c.login,
                AGENT.c.role,
                AGENT.c.active,
                AGENT.c.password_hash,
                AGENT.c.locked_until,
            ).where(AGENT.c.login == login)
        ).first()
    if row is None or not row.active or not row.password_hash or len(password) > PASSWORD_MAX:
        _dummy_verify(hasher, password[:PASSWORD_MAX])
        return LoginResult("bad")
    if row.locked_until is not None and as_utc(row.locked_until) > at:
        return LoginResult("locked", retry_after_s=(as_utc(row.locked_until) - at).total_seconds())
    try:
        hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        with transaction(bind) as conn:
            # Atomic on both backends: concurrent failures on two nodes both count.
            failures: int = conn.execute(
                update(AGENT)
                .where(AGENT.c.id == row.id)
                .values(failed_logins=AGENT.c.failed_logins + 1)
                .returning(AGENT.c.failed_logins)
            ).scalar_one()
            locked = failures >= max_failed
            if locked:
                conn.execute(
                    update(AGENT)
                    .where(AGENT.c.id == row.id)
                    .values(failed_logins=0, locked_until=at + timedelta(seconds=lockout_s))
                )
        return LoginResult("bad", locked_now=locked)
    values: dict[str, Any] = {"failed_logins": 0, "locked_until": None}
    if hasher.check_needs_rehash(row.password_hash):
        values["password_hash"] = hasher.hash(password)
    with transaction(bind) as conn:
        conn.execute(update(AGENT).where(AGENT.c.id == row.id).values(**values))
    return LoginResult("ok", login=row.login, role=row.role)


# --------------------------------------------------------------------------------------------
# Sessions


def hash_session_id(raw_id: str) -> str:
    """SHA-256 (hex) of a session id: what the table stores."""
    return hashlib.sha256(raw_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewSession:
    """A session just created: the id goes into the cookie and is not kept anywhere else."""

    raw_id: str
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session and its agent."""

    session_hash: str
    agent: agents.AgentInfo
    role: str
    csrf_token: str
    created_at: datetime
    last_seen: datetime
    expires_at: datetime


def create_session(
    bind: Engine | Connection, login: str, *, now: datetime, absolute_s: float
) -> NewSession:
    """Open a session for an agent (a new random id at every login: no session fixation).

    Raises:
        PanelError: unknown agent.
    """
    raw_id = secrets.token_urlsafe(32)  # 256 bits
    csrf = secrets.token_urlsafe(32)
    at = _utc(now)
    expires = at + timedelta(seconds=absolute_s)
    with transaction(bind) as conn:
        agent_id = _agent_id(conn, login)
        conn.execute(
            SESSION.insert().values(
                session_hash=hash_session_id(raw_id),
                agent_id=agent_id,
                csrf_token=csrf,
                created_at=at,
                last_seen=at,
                expires_at=expires,
            )
        )
    return NewSession(raw_id, csrf, expires)


_SESSION_LOOKUP = select(
    SESSION.c.id,
    SESSION.c.session_hash,
    SESSION.c.csrf_token,
    SESSION.c.created_at,
    SESSION.c.last_seen,
    SESSION.c.expires_at,
    AGENT.c.login,
    AGENT.c.role,
    AGENT.c.active,
).select_from(SESSION.join(AGENT, AGENT.c.id == SESSION.c.agent_id))


def session_for(
    bind: Engine | Connection, raw_id: str, now: datetime, idle_s: float, absolute_s: float
) -> SessionInfo | None:
    """The live session with this cookie id, or None (expired, idle, revoked, agent disabled).

    An ended session found here is deleted. ``last_seen`` is refreshed when it is older than
    :data:`TOUCH_INTERVAL_S`.
    """
    if not raw_id or len(raw_id) > 128:
        return None
    at = _utc(now)
    digest = hash_session_id(raw_id)
    with transaction(bind) as conn:
        row = conn.execute(_SESSION_LOOKUP.where(SESSION.c.session_hash == digest)).first()
        if row is None:
            return None
        created, last_seen = as_utc(row.created_at), as_utc(row.last_seen)
        expires = min(as_utc(row.expires_at), created + timedelta(seconds=absolute_s))
        if not row.active or at >= expires or (at - last_seen).total_seconds() > idle_s:
            conn.execute(delete(SESSION).where(SESSION.c.id == row.id))
            return None
        if (at - last_seen).total_seconds() >= TOUCH_INTERVAL_S:
            conn.execute(update(SESSION).where(SESSION.c.id == row.id).values(last_seen=at))
            last_seen = at
        agent = agents.get_agent(conn, row.login)
    if agent is None:  # pragma: no cover - deleted between the two reads of one transaction
        return None
    return SessionInfo(
        session_hash=digest,
        agent=agent,
        role=row.role,
        csrf_token=row.csrf_token,
        created_at=created,
        last_seen=last_seen,
        expires_at=expires,
    )


def delete_session(bind: Engine | Connection, raw_id: str) -> bool:
    """End the session with this cookie id (logout); False if there was none."""
    with transaction(bind) as conn:
        result = conn.execute(
            delete(SESSION).where(SESSION.c.session_hash == hash_session_id(raw_id))
        )
    return bool(result.rowcount)


def revoke_sessions(bind: Engine | Connection, login: str) -> int:
    """End every session of an agent (disabled, password changed, stolen laptop); count them."""
    with transaction(bind) as conn:
        agent_id = conn.execute(
            select(AGENT.c.id).where(AGENT.c.login == login)
        ).scalar_one_or_none()
        if agent_id is None:
            return 0
        result = conn.execute(delete(SESSION).where(SESSION.c.agent_id == agent_id))
    return int(result.rowcount or 0)


def purge_expired_sessions(
    bind: Engine | Connection, now: datetime, *, idle_s: float | None = None
) -> int:
    """Delete sessions past their absolute expiry (and idle ones, with ``idle_s``); count them."""
    at = _utc(now)
    ended: ColumnElement[bool] = SESSION.c.expires_at <= at
    if idle_s is not None:
        ended = or_(ended, SESSION.c.last_seen < at - timedelta(seconds=idle_s))
    with transaction(bind) as conn:
        result = conn.execute(delete(SESSION).where(ended))
    return int(result.rowcount or 0)


# --------------------------------------------------------------------------------------------
# Wrap-up


def save_wrapup(
    bind: Engine | Connection,
    *,
    sip_call_id: str,
    agent_login: str,
    motif: str,
    note: str | None,
    resolved: bool | None,
    follow_up: str | None,
    follow_up_due: date | None,
    now: datetime,
    usager_id: int | None = None,
) -> int:
    """Save an agent's wrap-up into the call's contact; return the contact's id.

    The contact is found by ``sip_call_id``, or created (channel ``telephone``, handled by the
    agent) when the call has not recorded it yet; the call's own record at hang-up then keeps
    these fields (:func:`callcenter.store.dossiers.record_contact`). ``usager_id`` links the
    contact to the call's identified usager if it is not linked yet. Audited (``wrapup``,
    ``Via.PANEL``) when the contact concerns a usager.

    Raises:
        PanelError: a field is empty or too long.
    """
    motif = motif.strip()
    if not motif or len(motif) > MOTIF_MAX:
        raise PanelError(f"motif: required, at most {MOTIF_MAX} characters")
    if follow_up is not None and len(follow_up.strip()) > FOLLOW_UP_MAX:
        raise PanelError(f"follow_up: at most {FOLLOW_UP_MAX} characters")
    if note is not None and len(note) > NOTE_MAX:
        raise PanelError(f"note: at most {NOTE_MAX} characters")
    if not sip_call_id:
        raise PanelError("call_id: required")
    wrapup: dict[str, Any] = {
        "agent_notes": (note or "").strip() or None,
        "wrapup_motif": motif,
        "first_contact_resolved": resolved,
        "follow_up": (follow_up or "").strip() or None,
        "follow_up_due": follow_up_due,
        "handled_by": agent_login,
    }
    at = _utc(now)
    with transaction(bind) as conn:
        existed = conn.execute(
            select(CONTACT.c.id, CONTACT.c.handled_by, CONTACT.c.agent_notes).where(
                CONTACT.c.sip_call_id == sip_call_id
            )
        ).first()
        if (
            existed is not None
            and existed.agent_notes
            and existed.handled_by not in (None, "bot", agent_login)
        ):
            # Two agents took this call (a consultation handed it over): both notes stay, the
            # later agent's first; the motif and the follow-up are the later agent's.
            earlier = f"{existed.handled_by} : {existed.agent_notes}"
            mine = wrapup["agent_notes"]
            wrapup["agent_notes"] = f"{mine}\n\n{earlier}" if mine else earlier
        values = {
            "sip_call_id": sip_call_id,
            "channel": "telephone",
            "started_at": at,
            "bot_path": [],
            "intents": [],
            "usager_id": usager_id,
            **wrapup,
        }
        # One statement: the call's own record may insert the same sip_call_id concurrently.
        contact_id = _upsert(conn, CONTACT, values, ["sip_call_id"], update_columns=list(wrapup))
        if usager_id is not None:
            conn.execute(
                update(CONTACT)
                .where(CONTACT.c.id == contact_id, CONTACT.c.usager_id.is_(None))
                .values(usager_id=usager_id)
            )
        linked = conn.execute(
            select(CONTACT.c.usager_id).where(CONTACT.c.id == contact_id)
        ).scalar_one()
        if linked is not None:
            audit(
                conn,
                actor=agent_login,
                reason="fin d'appel",
                via=Via.PANEL,
                action="wrapup",
                usager_id=linked,
                detail={"contact_id": contact_id, "created": existed is None},
            )
    return contact_id


# --------------------------------------------------------------------------------------------
# Search


@dataclass(frozen=True, slots=True)
class SearchResult:
    """A dossier found by :func:`search_dossiers`."""

    usager_id: int
    display_name: str
    """``Mme Jeanne MARTIN``."""
    birth_year: int
    numeros: tuple[str, ...]
    """Numéros de dossier, newest first."""

    def as_json(self) -> dict[str, Any]:
        """The search result as the panel API sends it."""
        return {
            "usager_id": self.usager_id,
            "display_name": self.display_name,
            "birth_year": self.birth_year,
            "numeros": list(self.numeros),
        }


def display_name(civilite: str | None, prenom: str | None, nom: str) -> str:
    """``Mme Jeanne MARTIN`` (civilité and first name when known)."""
    return " ".join(p for p in (civilite, prenom, nom) if p)


# Accent folding in SQL. PostgreSQL: translate() of the accented letters (upper case too: with
# a "C" LC_CTYPE, lower() folds ASCII only), no need for the unaccent extension. SQLite: its
# parser refuses ~60 nested replace() calls and it has no translate(), so :func:`fold` itself is
# registered as a SQL function on the connection.
_FOLD = {
    "a": "àáâãäåÀÁÂÃÄÅ",
    "c": "çÇ",
    "e": "èéêëÈÉÊË",
    "i": "ìíîïÌÍÎÏ",
    "n": "ñÑ",
    "o": "òóôõöÒÓÔÕÖ",
    "u": "ùúûüÙÚÛÜ",
    "y": "ýÿÝŸ",
}
_FOLD_FROM = "".join(_FOLD.values())
_FOLD_TO = "".join(plain * len(accented) for plain, accented in _FOLD.items())
_SQLITE_FOLD = "cc_fold"


def fold(text: str) -> str:
    """Lower-case ``text`` without accents (``Hélène`` -> ``helene``, ``Cœur`` -> ``coeur``)."""
    text = text.replace("œ", "oe").replace("Œ", "oe").replace("æ", "ae").replace("Æ", "ae")
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def _fold_sql(conn: Connection, column: Any) -> Any:
    if conn.dialect.name == "sqlite":
        return getattr(func, _SQLITE_FOLD)(column)
    folded = func.translate(func.lower(column), _FOLD_FROM, _FOLD_TO)
    for ligature, plain in (("œ", "oe"), ("Œ", "oe"), ("æ", "ae"), ("Æ", "ae")):
        folded = func.replace(folded, ligature, plain)
    return folded


def _sqlite_fold(value: str | None) -> str | None:
    return None if value is None else fold(value)


def _register_fold(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        raw = conn.connection.driver_connection
        raw.create_function(_SQLITE_FOLD, 1, _sqlite_fold, deterministic=True)  # type: ignore[union-attr]


def _letters(numero: str) -> str:
    return "".join(ch for ch in numero if ch.isalpha())


_LIKE_ESCAPE = re.compile(r"([\\%_])")
_SEARCH_SELECT = select(
    USAGER.c.id, USAGER.c.civilite, USAGER.c.prenom, USAGER.c.nom, USAGER.c.date_naissance
)


def search_dossiers(
    bind: Engine | Connection,
    query: str,
    *,
    actor: str,
    reason: str,
    limit: int = 20,
) -> list[SearchResult]:
    """Find dossiers by phone number, numéro de dossier, or name; audited (``Via.PANEL``).

    - A valid phone number (any usual form) matches the usager's own numbers and their tiers's.
    - A numéro matches ignoring case and spaces, or by its digits only.
    - Otherwise each word (2 characters or more) must start the nom, prénom or nom de naissance,
      ignoring case and accents (``mart hel`` finds Hélène Martin).

    Merged usagers never match. At most ``limit`` results, by name.
    """
    text = query.strip()[:200]
    ids: set[int] = set()
    kind = "none"
    with transaction(bind) as conn:
        e164 = normalize_phone(text) if text and not text.isalpha() else None
        if e164 is not None:
            kind = "phone"
            ids |= set(
                conn.execute(select(PHONE.c.usager_id).where(PHONE.c.e164 == e164)).scalars()
            )
        numero = normalize_numero(text)
        if not ids and numero and any(ch.isdigit() for ch in numero):
            kind = "numero"
            where = DEMANDE.c.numero == numero
            digits = numero_digits(numero)
            if len(digits) >= 4:
                where = or_(where, DEMANDE.c.numero_chiffres == digits)
            # By digits, the letters typed (if any) must be the numéro's: « APA 2026 000123 ».
            letters = _letters(numero)
            for row in conn.execute(select(DEMANDE.c.usager_id, DEMANDE.c.numero).where(where)):
                if row.numero == numero or not letters or _letters(row.numero) == letters:
                    ids.add(row.usager_id)
        words = [w for w in re.split(r"[\s,;]+", fold(text)) if len(w) >= 2]
        if not ids and words and not any(ch.isdigit() for ch in text):
            kind = "name"
            _register_fold(conn)
            conditions = []
            for word in words:
                pattern = _LIKE_ESCAPE.sub(r"\\\1", word) + "%"
                conditions.append(
                    or_(
                        *(
                            _fold_sql(conn, col).like(pattern, escape="\\")
                            for col in (USAGER.c.nom, USAGER.c.prenom, USAGER.c.nom_naissance)
                        )
                    )
                )
            rows = conn.execute(
                _SEARCH_SELECT.where(and_(*conditions), USAGER.c.merged_into.is_(None))
                .order_by(USAGER.c.nom, USAGER.c.prenom, USAGER.c.id)
                .limit(limit)
            ).all()
        else:
            rows = (
                conn.execute(
                    _SEARCH_SELECT.where(
                        USAGER.c.id.in_(sorted(ids)), USAGER.c.merged_into.is_(None)
                    )
                    .order_by(USAGER.c.nom, USAGER.c.prenom, USAGER.c.id)
                    .limit(limit)
                ).all()
                if ids
                else []
            )
        # By name as people read it (SQL orders "MARTIN" before "Marchand").
        rows = sorted(rows, key=lambda r: (fold(r.nom), fold(r.prenom), r.id))
        numeros = _numeros(conn, {r.id for r in rows})
        found = [
            SearchResult(
                usager_id=r.id,
                display_name=display_name(r.civilite, r.prenom, r.nom),
                birth_year=r.date_naissance.year,
                numeros=numeros.get(r.id, ()),
            )
            for r in rows
        ]
        found_ids = [r.usager_id for r in found]
        audit(
            conn,
            actor=actor,
            reason=reason,
            via=Via.PANEL,
            action="search",
            usager_id=found_ids[0] if len(found_ids) == 1 else None,
            detail={"kind": kind, "matches": len(found_ids), "usager_ids": found_ids},
        )
    return found


# --------------------------------------------------------------------------------------------
# The agent's view of a dossier

STATUS_LABELS: Mapping[str, str] = {
    # Département circuit (facts §9 « Demande APA »).
    "BROUILLON": "En cours de saisie",
    "RECU": "Reçue, en cours d'enregistrement",
    "INCOMPLET": "Pièces manquantes",
    "COMPLET": "Dossier complet",
    "EVALUATION_PLANIFIEE": "Visite d'évaluation prévue",
    "EVALUATION_REALISEE": "Évaluation réalisée, plan d'aide en préparation",
    "PLAN_PROPOSE": "Plan d'aide proposé, en attente d'accord",
    "DECISION_NOTIFIEE": "Décision notifiée",
    "DROITS_OUVERTS": "Droits ouverts",
    "EN_PAIEMENT": "Versement mensuel en cours",
    "SUSPENDU": "Versement suspendu",
    "REVISION_EN_COURS": "Révision en cours",
    "CLOS": "Droits fermés",
    "RECOURS_RAPO": "Recours en cours d'examen",
    "URGENCE_FORFAIT": "APA d'urgence (forfait)",
    # MDPH circuit (facts §9 « Demande MDPH »).
    "DEPOSEE": "Déposée",
    "EN_ATTENTE_PIECES": "Non recevable : pièces obligatoires manquantes",
    "RECEVABLE": "Recevable, délai légal en cours",
    "EN_EVALUATION": "En évaluation (équipe pluridisciplinaire)",
    "EVALUATION_COMPLEMENTAIRE": "Évaluation complémentaire demandée",
    "PPC_ENVOYE": "Plan personnalisé de compensation envoyé",
    "INSCRIT_CDAPH": "Inscrite en commission (CDAPH)",
    "DECISION_PRISE": "Décision prise en commission",
    "NOTIFIEE": "Décision notifiée",
    "DROIT_OUVERT": "Droit ouvert",
    "REJET": "Refus",
    "MISE_EN_OEUVRE": "Mise en œuvre",
    "RAPO_EN_COURS": "Recours en cours",
    "CONCILIATION": "Conciliation en cours",
}
"""French labels of the status codes (facts §9), as the agent reads them. No such map existed
in the code base: the voice bot phrases statuses in whole sentences (``faq/dossier.py``)."""


def status_label(code: str) -> str:
    """The French label of a status code (the code itself when unknown)."""
    return STATUS_LABELS.get(code, code)


def _iso(value: date | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _payment_json(p: PaymentInfo) -> dict[str, Any]:
    return {
        "prestation": p.prestation,
        "periode": _iso(p.periode),
        "date_paiement": _iso(p.date_paiement),
        "montant_verse_cents": p.montant_verse_cents,
        "statut": p.statut,
        "motif_ecart": p.motif_ecart,
    }


def dossier_json(
    snap: DossierSnapshot,
    carers: Sequence[Mapping[Any, Any]] = (),
    contacts: Sequence[Mapping[Any, Any]] = (),
) -> dict[str, Any]:
    """The panel's ``Dossier`` JSON of an agent's snapshot, carers and contact rows."""
    demandes = []
    for d in snap.demandes or ():
        history = [
            {
                "code": s.code,
                "label": status_label(s.code),
                "date": _iso(s.date),
                "detail": s.detail,
            }
            for s in d.history
        ]
        demandes.append(
            {
                "numero": d.numero,
                "type": d.type,
                "circuit": d.circuit.value,
                "date_depot": _iso(d.date_depot),
                "status": history[-1] if history else None,
                "history": history,
                "missing_documents": [
                    {
                        "piece": m.piece,
                        "date_demande": _iso(m.date_demande),
                        "date_relance": _iso(m.date_relance),
                    }
                    for m in d.missing_documents or ()
                ],
                "decisions": [
                    {
                        "prestation": c.prestation,
                        "sens": c.sens,
                        "date_decision": _iso(c.date_decision),
                        "date_debut": _iso(c.date_debut),
                        "date_fin": _iso(c.date_fin),
                        "montant_cents": c.montant_cents,
                        "gir": c.gir,
                    }
                    for c in d.decisions or ()
                ],
            }
        )
    payments = [] if snap.next_payment is None else [_payment_json(snap.next_payment)]
    payments += [_payment_json(p) for p in snap.recent_payments or ()]
    return {
        "usager_id": snap.usager_id,
        "civilite": snap.civilite,
        "nom": snap.nom,
        "prenom": snap.prenom,
        "langue": snap.langue,
        "besoins": list(snap.besoins),
        "mesure_protection": snap.mesure_protection,
        "demandes": demandes,
        "appointments": [
            {"type": a.type, "debut": _iso(a.debut), "lieu": a.lieu, "numero": a.numero}
            for a in snap.appointments or ()
        ],
        "payments": payments,
        "carers": [
            {
                "role": c["role"],
                "civilite": c["civilite"],
                "nom": c["nom"],
                "prenom": c["prenom"],
                "may_know": sorted(c["may_know"] or ()),
            }
            for c in carers
        ],
        "contacts": [
            {
                "started_at": _iso(as_utc(c["started_at"])),
                "channel": c["channel"],
                "handled_by": c["handled_by"],
                "outcome": c["outcome"],
                "intents": list(c["intents"] or ()),
                "summary": c["summary"],
                "agent_notes": c["agent_notes"],
                "wrapup_motif": c["wrapup_motif"],
                "first_contact_resolved": c["first_contact_resolved"],
                "follow_up": c["follow_up"],
                "follow_up_due": _iso(c["follow_up_due"]),
            }
            for c in contacts
        ],
    }


CONTACTS_SHOWN = 20
"""The panel shows this many previous contacts, newest first."""


def agent_dossier(
    bind: Engine | Connection, usager_id: int, *, actor: str, reason: str, today: date
) -> dict[str, Any] | None:
    """The ``Dossier`` JSON of a usager for an agent, or None if there is no such live usager.

    Two audit rows (``Via.PANEL``), in the read's transaction: the snapshot's (by
    :func:`~callcenter.store.dossiers.dossier_snapshot`) and ``panel_dossier`` for the carers
    and previous contacts read here.
    """
    with transaction(bind) as conn:
        snap = dossier_snapshot(
            conn,
            usager_id,
            role=Role.AGENT,
            actor=actor,
            reason=reason,
            via=Via.PANEL,
            today=today,
        )
        if snap is None:
            return None
        carers = (
            conn.execute(
                select(
                    TIERS.c.role, TIERS.c.civilite, TIERS.c.nom, TIERS.c.prenom, TIERS.c.may_know
                )
                .where(TIERS.c.usager_id == usager_id)
                .order_by(TIERS.c.id)
            )
            .mappings()
            .all()
        )
        contacts = (
            conn.execute(
                select(CONTACT)
                .where(CONTACT.c.usager_id == usager_id)
                .order_by(CONTACT.c.started_at.desc(), CONTACT.c.id.desc())
                .limit(CONTACTS_SHOWN)
            )
            .mappings()
            .all()
        )
        audit(
            conn,
            actor=actor,
            reason=reason,
            via=Via.PANEL,
            action="panel_dossier",
            usager_id=usager_id,
            detail={"carers": len(carers), "contacts": len(contacts)},
        )
    return dossier_json(snap, carers, contacts)
