"""Persistent store: the call event trail (SQLite by default, PostgreSQL via ``DATABASE_URL``).

Tables are created with ``create_all`` on start; Alembic migrations arrive with the dossier issue.
"""

from callcenter.store.db import (
    create_schema,
    default_database_url,
    make_engine,
    resolve_database_url,
)
from callcenter.store.models import Call, CallEvent, CallOutcome, EventType, HangupSide
from callcenter.store.trail import CallTrail, TrailConfig, show_call, show_calls

__all__ = [
    "Call",
    "CallEvent",
    "CallOutcome",
    "CallTrail",
    "EventType",
    "HangupSide",
    "TrailConfig",
    "create_schema",
    "default_database_url",
    "make_engine",
    "resolve_database_url",
    "show_call",
    "show_calls",
]
