"""Tables of the call event trail: one ``call`` row per SIP call, one ``call_event`` per event.

The caller's number is personal data: it is stored here, in ``call.caller``, and nowhere else
(never in logs, metrics labels or event ``data``).

Schema changes: Alembic migrations (``callcenter/store/migrations``); revision 0001 is this schema.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, ForeignKey, Integer, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class CallOutcome(enum.StrEnum):
    """How a call ended, as seen by the service."""

    COMPLETED = "completed"
    """The flow ran to its end (or the caller hung up after being served)."""
    ABANDONED = "abandoned"
    """The caller hung up before the flow reached an end or a queue."""
    CANCELLED = "cancelled"
    """The caller cancelled before the call was answered (CANCEL, RFC 3261 section 9)."""
    FAILED = "failed"
    """The service could not handle the call (no common codec, error, RTP timeout...)."""
    QUEUED = "queued"
    """The call was handed off to a skill queue."""


class HangupSide(enum.StrEnum):
    """Which side ended the call."""

    CALLER = "caller"
    SERVICE = "service"


class EventType(enum.StrEnum):
    """Well-known event types; other strings are allowed (``reinvite``, ``rtp_timeout``...)."""

    ANSWERED = "answered"
    """The call was answered (200 OK acknowledged). Also sets ``call.answered_at``."""
    PROMPT_PLAYED = "prompt_played"
    """``data``: ``prompt_id`` (str), ``interrupted`` (bool)."""
    DTMF = "dtmf"
    """``data``: ``digit`` (str), ``method`` (``rfc4733`` or ``info``)."""
    FLOW_NODE = "flow_node"
    """``data``: ``node_id`` (str), ``node_type`` (str)."""
    QUEUED = "queued"
    """``data``: ``skill``, ``reason``, ``priority``, ``intent`` (str or None)."""
    TRANSCRIPT = "transcript"
    """What the caller said. ``data``: ``text`` (personal data: erased after the retention
    period, leaving ``purged: true``), ``engine``, ``confidence``, ``audio_s``, ``latency_ms``."""
    INTENT = "intent"
    """The bot's understanding. ``data``: ``decision``, ``intent``, ``confidence``,
    ``alternatives`` ([intent, confidence] pairs), ``command``, ``yes_no``."""
    ANSWER = "answer"
    """The bot spoke an FAQ answer. ``data``: ``intent``, ``prompt_id``."""
    SPEECH_TIMEOUT = "speech_timeout"
    """Listening ended without an utterance. ``data``: ``reason`` (``no_input``...)."""
    HANGUP = "hangup"
    """``data``: ``cause`` (str), ``side`` (``caller`` or ``service``)."""


# JSON on SQLite (stored as text), JSONB on PostgreSQL (indexable, compact).
_JSON = JSON().with_variant(JSONB(), "postgresql")


class Call(SQLModel, table=True):
    """One SIP call handled by the service."""

    __tablename__ = "call"

    id: int | None = Field(default=None, primary_key=True)
    sip_call_id: str = Field(max_length=255, unique=True, index=True)
    """The SIP ``Call-ID`` of the inbound dialog (RFC 3261 section 8.1.1.4)."""
    started_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
    """When the INVITE was received (UTC)."""
    answered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    """When the call was answered, or None if it never was."""
    ended_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    """When the call ended, or None while it is in progress."""
    dialled: str = Field(max_length=64)
    """The dialled number (the service's own number, e.g. ``3975``): not personal data."""
    flow_id: str | None = Field(default=None, max_length=128)
    """The IVR flow the dialled number is mapped to."""
    caller: str | None = Field(default=None, max_length=128)
    """The caller's number: personal data, stored only here and never logged."""
    outcome: str | None = Field(default=None, max_length=16)
    """A ``CallOutcome`` value, or None while the call is in progress."""
    hangup_cause: str | None = Field(default=None, max_length=64)
    """Why the call ended (e.g. ``bye``, ``cancel``, ``rtp_timeout``, ``flow_end``)."""
    hangup_side: str | None = Field(default=None, max_length=16)
    """A ``HangupSide`` value."""


class CallEvent(SQLModel, table=True):
    """One timestamped event of a call's trail."""

    __tablename__ = "call_event"
    __table_args__ = (UniqueConstraint("call_id", "seq", name="uq_call_event_call_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    call_id: int = Field(
        sa_column=Column(Integer, ForeignKey("call.id", ondelete="CASCADE"), nullable=False)
    )
    seq: int
    """Order of the event within its call, from 0."""
    ts: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    """When the event happened (UTC)."""
    type: str = Field(max_length=32)
    """An ``EventType`` value or another short event name."""
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(_JSON, nullable=False))
    """Event details; never a phone number."""
