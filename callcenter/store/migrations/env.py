"""Alembic environment of the store: SQLite or PostgreSQL, from the service's URL or connection.

:func:`callcenter.store.db.create_schema` passes an open connection in
``config.attributes["connection"]`` (so an in-memory SQLite database, or a PostgreSQL
``search_path`` set on the URL, is the one migrated). The ``alembic`` command line may be used by
developers instead, with ``-x url=...`` or ``sqlalchemy.url``; offline (``--sql``) mode is not
supported.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection
from sqlmodel import SQLModel

from callcenter.store import agent_models, callback_models, db, dossier_models, models

# The metadata autogenerate compares against (developers only; revisions are written by hand).
_ = (models, dossier_models, agent_models, callback_models)
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: future revisions use batch operations there.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database: pass -x url=... or set sqlalchemy.url")
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
            conn.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported")
_run_online()
