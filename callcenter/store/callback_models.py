"""Table of the callbacks ("rappel"): a caller asked to be called back (issue 5).

Rules this module owns:

1. The number to call is personal data: it is stored here, in ``callback.phone`` (E.164), and
   nowhere else (never in logs, metric labels, the trail's ``data`` or the router). It is erased
   ``callbacks.retention_days`` after the callback ended (completed, failed or cancelled).
2. ``status`` is the one field two nodes may race on: every transition that starts work
   (``waiting`` → ``queued``, ``queued`` → ``dialing``) is a compare-and-set in one ``UPDATE``
   (:mod:`callcenter.store.callbacks`), so two nodes never dial the same callback.
3. Times are what the routing clock said (POSIX seconds stored as UTC datetimes).

Created by the Alembic revision ``0005`` (``callcenter/store/migrations``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Index, Integer
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

_JSON = JSON().with_variant(JSONB(), "postgresql")


class CallbackRow(SQLModel, table=True):
    """One callback request and its progress."""

    __tablename__ = "callback"
    __table_args__ = (
        Index("ix_callback_status_due", "status", "due_at"),
        Index("ix_callback_queue_call_id", "queue_call_id"),
    )

    id: str = Field(primary_key=True, max_length=32)
    """Opaque id (hex), shown by ``callcenter callbacks list``."""
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    """When the caller asked (routing clock)."""
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    """Last transition."""
    skill: str = Field(max_length=64)
    """Queue that calls back."""
    priority: int = 1
    """``routing.Priority`` value of the original call."""
    mode: str = Field(max_length=16)
    """``keep_place`` or ``slot``."""
    status: str = Field(max_length=16)
    """``waiting``, ``queued``, ``dialing``, ``completed``, ``failed``, ``cancelled``."""
    due_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    """When a ``waiting`` callback enters its queue (slot start or retry)."""
    slot_start: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    slot_end: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    joined_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    """When the caller first joined the queue: the place a ``keep_place`` callback keeps."""
    attempts: int = 0
    """Outbound attempts made so far."""
    last_outcome: str | None = Field(default=None, max_length=16)
    """``connected``, ``no_answer``, ``busy`` or ``unreachable``."""
    history: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(_JSON, nullable=False)
    )
    """Outcome of every attempt: ``[{"at": iso, "outcome": ..., "agent": login}]``."""
    origin_call_id: str | None = Field(default=None, max_length=255)
    """SIP Call-ID of the call that asked (its trail)."""
    queue_call_id: str | None = Field(default=None, max_length=255)
    """The router's id of the entry while queued (the original Call-ID, or ``cb-<id>``)."""
    usager_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("usager.id", ondelete="SET NULL"), nullable=True),
    )
    """The identified usager, if any (the contact history is written there)."""
    intent: str | None = Field(default=None, max_length=64)
    phone: str | None = Field(default=None, max_length=32)
    """The number to call, E.164: personal data, stored only here, erased after retention."""
    node: str | None = Field(default=None, max_length=64)
    """The service node that claimed it last (queued or dialling)."""
    claimed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    cancel_reason: str | None = Field(default=None, max_length=200)


CALLBACK_MODELS = (CallbackRow,)
"""The callback tables, for the migration test."""
