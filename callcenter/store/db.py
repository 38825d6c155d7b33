"""Database URL resolution, engine creation and schema set-up for the store.

SQLite (the default, ``<data_dir>/callcenter.sqlite3``) and PostgreSQL (``DATABASE_URL``) are
supported. All functions here are blocking: call them from a thread (``asyncio.to_thread``) when
an event loop is running.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import SQLModel

from callcenter.store import models

SQLITE_FILENAME = "callcenter.sqlite3"
"""Name of the SQLite file inside the data directory."""

DATABASE_URL_ENV = "DATABASE_URL"
"""Environment variable that overrides the SQLite default."""


def default_database_url(data_dir: Path) -> str:
    """Return the SQLite URL of the store inside ``data_dir``.

    Args:
        data_dir: The service's data directory (``--data-dir`` / ``CALLCENTER_DATA_DIR``).

    Returns:
        A ``sqlite:///`` URL with an absolute path.
    """
    return f"sqlite:///{(data_dir / SQLITE_FILENAME).resolve()}"


def resolve_database_url(data_dir: Path, env: Mapping[str, str] | None = None) -> str:
    """Return ``DATABASE_URL`` if set and non-empty, else the SQLite default in ``data_dir``.

    Args:
        data_dir: The service's data directory.
        env: Environment to read (defaults to ``os.environ``).

    Returns:
        A SQLAlchemy URL.
    """
    env = os.environ if env is None else env
    url = env.get(DATABASE_URL_ENV, "").strip()
    return url or default_database_url(data_dir)


def normalize_url(url: str) -> str:
    """Map bare PostgreSQL URLs (``postgres://``, ``postgresql://``) to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def safe_url(url: str) -> str:
    """Return ``url`` with any password masked, fit for logs."""
    return make_url(normalize_url(url)).render_as_string(hide_password=True)


def make_engine(url: str, *, busy_timeout: float = 5.0, connect_timeout: int = 5) -> Engine:
    """Create an engine for the store.

    Statement parameters are hidden from error messages and logs (``hide_parameters``): they may
    hold a caller's number.

    Args:
        url: SQLAlchemy URL (``sqlite:///...`` or ``postgresql://...``).
        busy_timeout: SQLite only: seconds to wait for a lock held by another connection.
        connect_timeout: PostgreSQL only: seconds to wait for a connection.

    Returns:
        The engine. For SQLite, the parent directory is created if missing, and connections use
        WAL journaling so that readers (the HTTP API) never wait for the trail writer.
    """
    sa_url = make_url(normalize_url(url))
    connect_args: dict[str, Any] = {}
    engine_args: dict[str, Any] = {}
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database
        if not database or database == ":memory:":
            # One shared connection, or every pooled connection would see its own empty database.
            engine_args["poolclass"] = StaticPool
        elif not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args["timeout"] = busy_timeout
        # Connections are used by the writer thread and reader threads in turn, never at once.
        connect_args["check_same_thread"] = False
    elif sa_url.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = connect_timeout
    engine = create_engine(
        sa_url, connect_args=connect_args, hide_parameters=True, pool_pre_ping=True, **engine_args
    )
    if sa_url.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across application crashes in WAL mode (only an OS crash may lose
        # the last transactions), and much faster than FULL.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def create_schema(engine: Engine) -> None:
    """Create the store's tables if they do not exist (blocking).

    ``create_all`` is enough for this issue; Alembic migrations come with the dossier issue.
    """
    SQLModel.metadata.create_all(
        engine,
        tables=[models.Call.__table__, models.CallEvent.__table__],  # type: ignore[attr-defined]
    )


def has_schema(engine: Engine) -> bool:
    """Return True if the trail tables exist (blocking)."""
    insp = inspect(engine)
    return insp.has_table("call") and insp.has_table("call_event")
