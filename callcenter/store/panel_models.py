"""Table of the agent panel's sessions (issue 6).

Rules this module owns:

1. Sessions are server-side rows, so that every node behind the load balancer sees the same
   logins and logouts. The browser's cookie holds a random 256-bit id; the table holds only its
   SHA-256 (a stolen database dump yields no usable cookie).
2. A session ends at ``expires_at`` (absolute limit), after the idle timeout without a request
   (``last_seen``, refreshed at most every 30 s), at logout, or when the agent is disabled.
3. The CSRF token is per session (synchroniser token pattern, OWASP CSRF cheat sheet): the
   panel's JavaScript reads it from the login or session response and sends it back in the
   ``X-CSRF-Token`` header.

Created by the Alembic revision ``0006`` (``callcenter/store/migrations``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, Integer
from sqlmodel import Field, SQLModel

from callcenter.store import agent_models

_ = agent_models  # the agent table is referenced by the foreign key


class PanelSession(SQLModel, table=True):
    """One logged-in browser of an agent."""

    __tablename__ = "panel_session"

    id: int | None = Field(default=None, primary_key=True)
    session_hash: str = Field(max_length=64, unique=True, index=True)
    """SHA-256 (hex) of the cookie's session id; the id itself is never stored."""
    agent_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("agent.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    csrf_token: str = Field(max_length=64)
    """Sent back by the panel in ``X-CSRF-Token`` on every state-changing request."""
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_seen: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    """The latest request (refreshed at most every 30 s)."""
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    """Absolute end of the session, whatever the activity."""


PANEL_MODELS = (PanelSession,)
"""The panel tables, for the migration test."""
