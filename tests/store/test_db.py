from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from callcenter.store import CallTrail, db


def test_default_url_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    url = db.resolve_database_url(tmp_path, env={})
    assert url == f"sqlite:///{tmp_path.resolve() / 'callcenter.sqlite3'}"


def test_database_url_env_overrides(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test"}
    assert db.resolve_database_url(tmp_path, env=env) == env["DATABASE_URL"]
    assert db.resolve_database_url(tmp_path, env={"DATABASE_URL": " "}).startswith("sqlite:///")


def test_postgres_urls_use_psycopg3() -> None:
    assert db.normalize_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert db.normalize_url("sqlite:///x") == "sqlite:///x"


def test_safe_url_hides_password() -> None:
    shown = db.safe_url("postgresql://user:s3cret@127.0.0.1/test")
    assert "s3cret" not in shown and "user" in shown


def test_make_engine_creates_parent_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "callcenter.sqlite3"
    engine = db.make_engine(f"sqlite:///{path}")
    try:
        assert not db.has_schema(engine)
        db.create_schema(engine)
        db.create_schema(engine)  # idempotent
        assert db.has_schema(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        engine.dispose()
    assert path.exists()


async def test_in_memory_sqlite_trail() -> None:
    async with CallTrail.from_url("sqlite://") as trail:
        now = datetime.now(UTC)
        trail.call_started("mem", dialled="3975", caller=None, flow_id=None, at=now)
        trail.record("mem", "answered", {}, now)
        assert await trail.flush()
        call = await trail.get_call("mem")
        assert call is not None and call["answered_at"] is not None
