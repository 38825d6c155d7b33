"""Tables of the agents: who answers the calls the bot hands over, and with which skills.

Rules this module owns:

1. An agent's **state** (available, on call, paused...) is not here: it changes every few seconds
   and lives in the routing state backend (memory or Redis). These tables hold what an
   administrator sets: login, display name, how the agent is reached, skills, credentials.
2. Credentials are stored as hashes only: the API token as its SHA-256 (tokens are 256-bit
   random strings, so a fast hash is enough and lookup by hash is one indexed read).
3. Skills are short identifiers (``apa``, ``mdph_adulte``...) of the routing configuration, with a
   proficiency from 1 (can help) to 5 (expert).

Created by the Alembic revision ``0004`` (``callcenter/store/migrations``); the panel columns
(role, password hash, failed logins) by ``0006``. Panel passwords are argon2id hashes (a slow,
memory-hard hash: unlike API tokens, passwords are guessable).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


class Agent(SQLModel, table=True):
    """A person who answers calls (on site or teleworking)."""

    __tablename__ = "agent"

    id: int | None = Field(default=None, primary_key=True)
    login: str = Field(max_length=64, unique=True, index=True)
    """Identifier in the audit log, the API and the panel (no personal data required)."""
    display_name: str = Field(max_length=128)
    """Name shown to supervisors (never in logs or metric labels)."""
    sip_uri: str | None = Field(default=None, max_length=255)
    """Where a desk phone or softphone is reached (``sip:poste12@10.0.0.12:5060``), if any."""
    token_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)
    """SHA-256 (hex) of the agent's API token; the token itself is never stored."""
    active: bool = True
    """False once disabled: no login, no calls; kept for the history."""
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    role: str = Field(
        default="agent",
        sa_column=Column(String(16), nullable=False, server_default="agent"),
    )
    """Panel role (revision ``0006``): ``agent``, ``supervisor`` or ``admin``."""
    password_hash: str | None = Field(default=None, sa_column=Column(String(255), nullable=True))
    """Argon2id hash (PHC string) of the panel password; None: no panel login."""
    failed_logins: int = Field(
        default=0, sa_column=Column(Integer, nullable=False, server_default="0")
    )
    """Consecutive failed panel logins (in the database, so every node counts the same)."""
    locked_until: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    """Panel logins are refused until then (UTC), after too many failures."""


class AgentSkill(SQLModel, table=True):
    """One skill of an agent, with a proficiency."""

    __tablename__ = "agent_skill"
    __table_args__ = (
        UniqueConstraint("agent_id", "skill", name="uq_agent_skill"),
        CheckConstraint("proficiency BETWEEN 1 AND 5", name="ck_agent_skill_proficiency"),
    )

    id: int | None = Field(default=None, primary_key=True)
    agent_id: int = Field(
        sa_column=Column(Integer, ForeignKey("agent.id", ondelete="CASCADE"), nullable=False)
    )
    skill: str = Field(max_length=64)
    proficiency: int
    """1 (can help) to 5 (expert)."""


AGENT_MODELS = (Agent, AgentSkill)
"""The agent tables, for the migration test."""
