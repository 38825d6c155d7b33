"""The audit log: who read or changed which dossier, when, why, and through which channel.

Every read of a dossier through :mod:`callcenter.store.dossiers` writes one row here, in the same
transaction as the read. Rows carry ids and outcomes only: never a phone number, a name or a
birth date (``detail`` is checked for that by the tests, not at run time).

Functions are blocking; call them from a thread when an event loop is running.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, insert, select
from sqlmodel import SQLModel

from callcenter.store import dossier_models

_ = dossier_models  # registers the tables in SQLModel.metadata
AUDIT: Table = SQLModel.metadata.tables["audit"]

REASON_MAX = 200
"""Longer reasons are cut to this many characters."""


class Via(enum.StrEnum):
    """The channel a dossier was reached through."""

    API = "api"
    CLI = "cli"
    BOT = "bot"
    PANEL = "panel"
    """The agent panel (issue 6)."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One row of the audit log."""

    id: int
    at: datetime
    """When (UTC)."""
    actor: str
    """``bot``, an agent's login, a CLI user."""
    via: str
    """A :class:`Via` value."""
    action: str
    """What was done: ``snapshot``, ``find_by_phone``, ``contacts``, ``import``..."""
    usager_id: int | None
    """The dossier concerned, if one."""
    reason: str
    """Why (free text given by the caller of the repository)."""
    detail: Mapping[str, Any]
    """Ids and outcomes only."""


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """Yield a connection in a transaction.

    An :class:`Engine` gets a new transaction, committed on exit; a :class:`Connection` is used
    as is, and its owner commits (so an import can batch many writes in one transaction).
    """
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            yield conn
    else:
        yield bind


_INSERT_AUDIT = insert(AUDIT)


def audit(
    bind: Engine | Connection,
    *,
    actor: str,
    reason: str,
    via: Via | str,
    action: str,
    usager_id: int | None = None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Write one audit row (blocking).

    Args:
        bind: Engine (own transaction) or connection (the caller's transaction).
        actor: Who: ``bot``, an agent's login, a CLI user. Must not be empty.
        reason: Why. Must not be empty; cut to :data:`REASON_MAX` characters.
        via: The channel (:class:`Via`).
        action: What was done.
        usager_id: The dossier concerned, if one.
        detail: Ids and outcomes only (JSON-serialisable); never personal data.
        at: When (defaults to now, UTC).

    Raises:
        ValueError: ``actor`` or ``reason`` is empty, or ``via`` unknown.
    """
    if not actor.strip():
        raise ValueError("audit: actor is required")
    if not reason.strip():
        raise ValueError("audit: reason is required")
    channel = Via(via)
    row = {
        "at": at or datetime.now(UTC),
        "actor": actor.strip()[:64],
        "via": channel.value,
        "action": action[:32],
        "usager_id": usager_id,
        "reason": reason.strip()[:REASON_MAX],
        "detail": dict(detail or {}),
    }
    with transaction(bind) as conn:
        # One prebuilt statement: building insert().values() per call cost more than the insert.
        conn.execute(_INSERT_AUDIT, row)


def audit_log(
    bind: Engine | Connection,
    *,
    usager_id: int | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Return audit rows, newest first, optionally for one dossier, one actor, or since a time."""
    query = select(AUDIT).order_by(AUDIT.c.at.desc(), AUDIT.c.id.desc()).limit(limit)
    if usager_id is not None:
        query = query.where(AUDIT.c.usager_id == usager_id)
    if actor is not None:
        query = query.where(AUDIT.c.actor == actor)
    if since is not None:
        query = query.where(AUDIT.c.at >= since)
    with transaction(bind) as conn:
        rows = conn.execute(query).mappings().all()
    return [
        AuditEntry(
            id=row["id"],
            at=as_utc(row["at"]),
            actor=row["actor"],
            via=row["via"],
            action=row["action"],
            usager_id=row["usager_id"],
            reason=row["reason"],
            detail=row["detail"],
        )
        for row in rows
    ]


def purge_audit(bind: Engine | Connection, before: datetime) -> int:
    """Delete audit entries older than ``before`` (``retention.audit_days``); count them.

    The audit log is kept long enough to answer a person's access request and to investigate a
    misuse (CNIL: six months to a year for access traces), then deleted like the rest.
    """
    with transaction(bind) as conn:
        result = conn.execute(delete(AUDIT).where(AUDIT.c.at < as_utc(before)))
    return int(result.rowcount or 0)


def as_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime (SQLite hands back naive ones)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
