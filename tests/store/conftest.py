"""Store fixtures: a trail on a real SQLite file and on a real PostgreSQL schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from callcenter.store import CallTrail, TrailConfig

PG_URL = os.environ.get("CALLCENTER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
"""Base PostgreSQL URL for the store tests (trust auth on loopback)."""

_pg_unreachable: str | None = None
_pg_checked = False


def _pg_conninfo() -> str:
    return PG_URL.replace("postgresql+psycopg://", "postgresql://")


def pg_skip_reason() -> str | None:
    """Return why PostgreSQL tests must be skipped, or None if the server answers."""
    global _pg_unreachable, _pg_checked
    if not _pg_checked:
        _pg_checked = True
        try:
            import psycopg
        except ImportError:
            _pg_unreachable = "psycopg is not installed (pip install 'psycopg[binary]')"
        else:
            try:
                psycopg.connect(_pg_conninfo(), connect_timeout=2).close()
            except psycopg.Error as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
                _pg_unreachable = f"PostgreSQL unreachable at {PG_URL}: {first}"
    return _pg_unreachable


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A URL whose connections use a fresh, unique schema (dropped afterwards)."""
    reason = pg_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    import psycopg

    schema = f"test_trail_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(_pg_conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'callcenter.sqlite3'}"
    url: str = request.getfixturevalue("pg_schema_url")
    return url


FAST = TrailConfig(batch_interval=0.02, retry_initial=0.05, retry_max=0.2, close_timeout=5.0)


@pytest.fixture
async def trail(database_url: str) -> AsyncIterator[CallTrail]:
    t = CallTrail.from_url(database_url, config=FAST)
    await t.start()
    try:
        yield t
    finally:
        await t.close()
