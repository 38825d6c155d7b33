"""Database URL resolution, engine creation and schema set-up for the store.

SQLite (the default, ``<data_dir>/callcenter.sqlite3``) and PostgreSQL (``DATABASE_URL``) are
supported. All functions here are blocking: call them from a thread (``asyncio.to_thread``) when
an event loop is running.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

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


MIGRATIONS = "callcenter.store:migrations"
"""Alembic ``script_location`` of the store's migrations (shipped as package data)."""

BASELINE_REVISION = "0001"
"""The revision matching the schema ``create_all`` made before migrations existed."""

# Serialises concurrent upgrades of one PostgreSQL database (several service processes
# starting at once); any constant works, this one spells "callcntr".
_PG_MIGRATION_LOCK = 0x63616C6C636E7472


def alembic_config() -> Config:
    """Return the Alembic configuration of the store (no ``alembic.ini`` needed)."""
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


@functools.cache
def head_revision() -> str:
    """Return the newest revision of the shipped migrations."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError("no Alembic revision found in " + MIGRATIONS)
    return head


def ping(engine: Engine) -> None:
    """Run ``SELECT 1`` on a pooled connection (blocking); raises ``SQLAlchemyError`` if down."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def current_revision(engine: Engine) -> str | None:
    """Return the database's Alembic revision, or None if it was never migrated (blocking)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def create_schema(engine: Engine) -> None:
    """Bring the store's schema to the newest revision (``alembic upgrade head``; blocking).

    A database created before migrations existed (it has the ``call`` table but no
    ``alembic_version``) is stamped at the baseline revision first, so its tables and rows are
    kept, not recreated. Idempotent and cheap once the schema is current.
    """
    upgrade_schema(engine, "head")


def upgrade_schema(engine: Engine, revision: str = "head") -> None:
    """Upgrade the store's schema to ``revision`` (blocking); see :func:`create_schema`."""
    if revision == "head" and current_revision(engine) == head_revision():
        return
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        config = alembic_config()
        config.attributes["connection"] = conn
        insp = inspect(conn)
        if not insp.has_table("alembic_version") and insp.has_table("call"):
            command.stamp(config, BASELINE_REVISION)
        command.upgrade(config, revision)


def begin_write(conn: Connection) -> None:
    """Open the transaction for real on SQLite, with the write lock (no-op on PostgreSQL).

    Call it first thing in a transaction whose reads decide its writes (an import batch, a
    merge). pysqlite defers ``BEGIN`` to the first write, so without it the reads see data
    another writer may change before ours, and a ``SAVEPOINT`` issued first would itself be the
    outermost transaction (its ``RELEASE`` commits). ``BEGIN IMMEDIATE`` takes the write lock
    up front, so such transactions run one after the other and never fail half-way on a lock
    upgrade. PostgreSQL callers lock the rows they read instead (``SELECT ... FOR UPDATE``).
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def downgrade_schema(engine: Engine, revision: str) -> None:
    """Downgrade the store's schema to ``revision`` (blocking; drops the newer tables' data)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


def has_schema(engine: Engine) -> bool:
    """Return True if the trail tables exist (blocking)."""
    insp = inspect(engine)
    return insp.has_table("call") and insp.has_table("call_event")
