from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, inspect, text
from sqlmodel import SQLModel

from callcenter.store import db, models
from callcenter.store.agent_models import AGENT_MODELS
from callcenter.store.callback_models import CALLBACK_MODELS
from callcenter.store.dossier_models import DOSSIER_MODELS
from callcenter.store.panel_models import PANEL_MODELS

DOSSIER_TABLES = {m.__tablename__ for m in DOSSIER_MODELS}
AGENT_TABLES = (
    {m.__tablename__ for m in AGENT_MODELS}
    | {m.__tablename__ for m in CALLBACK_MODELS}
    | {m.__tablename__ for m in PANEL_MODELS}
)
HEAD = "0006"


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    try:
        yield eng
    finally:
        eng.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _store_metadata() -> MetaData:
    metadata = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        if table.name in DOSSIER_TABLES | AGENT_TABLES | {"call", "call_event"}:
            table.to_metadata(metadata)
    return metadata


def test_revisions_are_shipped_in_order() -> None:
    script = ScriptDirectory.from_config(db.alembic_config())
    assert [r.revision for r in script.walk_revisions()] == [
        "0006",
        "0005",
        "0004",
        "0003",
        "0002",
        "0001",
    ]
    assert db.head_revision() == HEAD
    assert db.BASELINE_REVISION == "0001"


def test_fresh_upgrade_matches_the_models(engine: Engine) -> None:
    assert db.current_revision(engine) is None
    db.create_schema(engine)
    assert db.current_revision(engine) == HEAD
    assert _tables(engine) >= DOSSIER_TABLES | AGENT_TABLES | {
        "call",
        "call_event",
        "alembic_version",
    }
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, _store_metadata())
    assert diff == []
    db.create_schema(engine)  # idempotent at head
    assert db.current_revision(engine) == HEAD


def test_database_created_by_create_all_is_stamped_not_recreated(engine: Engine) -> None:
    # The schema issue 1 made, with a call in it.
    SQLModel.metadata.create_all(
        engine,
        tables=[models.Call.__table__, models.CallEvent.__table__],  # type: ignore[attr-defined]
    )
    with engine.begin() as conn:
        conn.execute(
            models.Call.__table__.insert().values(  # type: ignore[attr-defined]
                sip_call_id="old-call", started_at=datetime(2025, 1, 2, tzinfo=UTC), dialled="3975"
            )
        )
    assert db.current_revision(engine) is None
    db.create_schema(engine)
    assert db.current_revision(engine) == HEAD
    assert _tables(engine) >= DOSSIER_TABLES
    with engine.connect() as conn:
        assert conn.execute(text("SELECT sip_call_id FROM call")).scalars().all() == ["old-call"]


def test_downgrade_of_dossiers_keeps_the_trail(engine: Engine) -> None:
    db.create_schema(engine)
    with engine.begin() as conn:
        conn.execute(
            models.Call.__table__.insert().values(  # type: ignore[attr-defined]
                sip_call_id="kept", started_at=datetime(2025, 1, 2, tzinfo=UTC), dialled="3975"
            )
        )
    db.downgrade_schema(engine, "0001")
    assert db.current_revision(engine) == "0001"
    assert not (_tables(engine) & (DOSSIER_TABLES | AGENT_TABLES))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM call")).scalar_one() == 1
    db.create_schema(engine)  # and up again
    assert db.current_revision(engine) == HEAD
    assert _tables(engine) >= DOSSIER_TABLES
    db.downgrade_schema(engine, "base")
    assert _tables(engine) <= {"alembic_version"}


def test_in_memory_sqlite_is_migrated_on_its_single_connection() -> None:
    engine = db.make_engine("sqlite://")
    try:
        db.create_schema(engine)
        assert db.current_revision(engine) == HEAD
        assert "usager" in _tables(engine)
    finally:
        engine.dispose()
