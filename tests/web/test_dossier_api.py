"""``GET /api/usagers/{id}/contacts``: bearer token, reason, audit; over real loopback HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine

from callcenter.metrics import Metrics
from callcenter.store import CallTrail, db
from callcenter.store import dossiers as repo
from callcenter.web import DossierApi, HealthState, make_app
from tests.store.seed import seed_apa_usager

TOKEN = "s3cret-token-for-the-tests"
T0 = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)

Client = TestClient[aiohttp.web.Request, aiohttp.web.Application]


@pytest.fixture
def store(tmp_path: Path) -> Engine:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'callcenter.sqlite3'}")
    db.create_schema(engine)
    return engine


@pytest.fixture
async def client(tmp_path: Path, store: Engine) -> AsyncIterator[Client]:
    trail = CallTrail.from_url(f"sqlite:///{tmp_path / 'callcenter.sqlite3'}")
    api = DossierApi(store=store, tokens={"crm": hashlib.sha256(TOKEN.encode()).hexdigest()})
    app = make_app(trail=trail, metrics=Metrics(), health=HealthState(), dossier_api=api)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


def url(usager_id: int, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"/api/usagers/{usager_id}/contacts" + (f"?{params}" if params else "")


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_contacts_are_read_with_a_token_and_a_reason_and_audited(
    client: Client, store: Engine
) -> None:
    usager_id = seed_apa_usager(store, deposited=date(2025, 2, 1))
    for minutes, outcome in ((0, "satisfied"), (90, "queued")):
        repo.record_contact(
            store,
            channel="telephone",
            started_at=T0 + timedelta(minutes=minutes),
            sip_call_id=f"call-{minutes}",
            usager_id=usager_id,
            bot_path=["welcome", "identify"],
            intents=["suivi_dossier_apa"],
            outcome=outcome,
        )
    resp = await client.get(url(usager_id, reason="rappel%20du%20dossier"), headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert body["usager_id"] == usager_id
    assert [c["sip_call_id"] for c in body["contacts"]] == ["call-90", "call-0"]
    assert body["contacts"][1]["outcome"] == "satisfied"
    assert body["contacts"][1]["bot_path"] == ["welcome", "identify"]
    assert body["contacts"][0]["started_at"] == (T0 + timedelta(minutes=90)).isoformat()

    [entry] = repo.audit_log(store, usager_id=usager_id, actor="crm")
    assert (entry.via, entry.action, entry.reason) == ("api", "contacts", "rappel du dossier")
    assert entry.detail == {"count": 2}

    resp = await client.get(url(usager_id, reason="x", limit="1"), headers=AUTH)
    assert [c["sip_call_id"] for c in (await resp.json())["contacts"]] == ["call-90"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
    ],
)
async def test_without_a_valid_token_nothing_is_read(
    client: Client, store: Engine, headers: dict[str, str]
) -> None:
    usager_id = seed_apa_usager(store, deposited=date(2025, 2, 1))
    resp = await client.get(url(usager_id, reason="curiosity"), headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert repo.audit_log(store, usager_id=usager_id) == []


async def test_reason_limit_and_unknown_usager(client: Client, store: Engine) -> None:
    usager_id = seed_apa_usager(store, deposited=date(2025, 2, 1))
    for query in ({}, {"reason": "%20"}, {"reason": "x" * 201}):
        resp = await client.get(url(usager_id, **query), headers=AUTH)
        assert resp.status == 400, query
        assert "reason" in (await resp.json())["error"]
    for limit in ("0", "501", "ten"):
        resp = await client.get(url(usager_id, reason="r", limit=limit), headers=AUTH)
        assert resp.status == 400, limit
    assert repo.audit_log(store, usager_id=usager_id) == []
    resp = await client.get(url(usager_id + 1000, reason="r"), headers=AUTH)
    assert resp.status == 404
    resp = await client.get("/api/usagers/abc/contacts?reason=r", headers=AUTH)
    assert resp.status == 404


async def test_no_dossier_routes_without_a_store(tmp_path: Path) -> None:
    trail = CallTrail.from_url(f"sqlite:///{tmp_path / 'trail.sqlite3'}")
    app = make_app(trail=trail, metrics=Metrics(), health=HealthState())
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        resp = await c.get("/api/usagers/1/contacts?reason=r", headers=AUTH)
        assert resp.status == 404


async def test_scheme_is_case_insensitive_and_huge_ids_are_unknown(
    client: Client, store: Engine
) -> None:
    usager_id = seed_apa_usager(store, deposited=date(2025, 2, 1))
    lower = {"Authorization": f"bearer {TOKEN}"}
    resp = await client.get(url(usager_id, reason="r"), headers=lower)
    assert resp.status == 200
    for huge in (2**31, 10**20):
        resp = await client.get(url(huge, reason="r"), headers=AUTH)
        assert resp.status == 404, huge


async def test_trail_routes_need_a_token_when_required(tmp_path: Path, store: Engine) -> None:
    trail = CallTrail.from_url(f"sqlite:///{tmp_path / 'callcenter.sqlite3'}")
    api = DossierApi(store=store, tokens={"crm": hashlib.sha256(TOKEN.encode()).hexdigest()})
    app = make_app(
        trail=trail,
        metrics=Metrics(),
        health=HealthState(),
        dossier_api=api,
        trail_requires_token=True,
    )
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        for path in ("/api/calls", "/api/calls/some-call-id"):
            resp = await c.get(path)
            assert resp.status == 401, path
        resp = await c.get("/api/calls", headers=AUTH)
        assert resp.status in (200, 503)  # the trail is not started here: not a 401
        assert (await c.get("/health")).status == 503  # starting: open, as before
        assert (await c.get("/metrics")).status == 200
