"""Persistent store: the call event trail (SQLite by default, PostgreSQL via ``DATABASE_URL``).

The schema is managed by Alembic migrations (``callcenter/store/migrations``); ``create_schema``
runs ``upgrade head`` on start.
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
