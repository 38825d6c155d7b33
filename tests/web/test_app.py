from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from callcenter.metrics import Metrics
from callcenter.store import CallTrail, TrailConfig
from callcenter.web import HealthState, make_app, start_http

CALLER = "+33698765432"
T0 = datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
FAST = TrailConfig(batch_interval=0.02, retry_initial=0.05, close_timeout=2.0)
# RFC 3261 allows "/" and "@" in a Call-ID: the route must carry them.
ODD_ID = "f81d4fae/7dec@11d0.a765"


def add_call(trail: CallTrail, call_id: str, minutes: int) -> None:
    start = T0 + timedelta(minutes=minutes)
    trail.call_started(call_id, dialled="3975", caller=CALLER, flow_id="solidarites", at=start)
    trail.record(call_id, "answered", {}, start + timedelta(seconds=1))
    trail.record(call_id, "dtmf", {"digit": "2", "method": "info"}, start + timedelta(seconds=5))
    trail.call_ended(call_id, outcome="completed", cause="bye", side="caller", at=start)


@pytest.fixture
async def trail(tmp_path: Path) -> AsyncIterator[CallTrail]:
    t = CallTrail.from_url(f"sqlite:///{tmp_path / 'callcenter.sqlite3'}", config=FAST)
    await t.start()
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
def health() -> HealthState:
    return HealthState()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def client(
    trail: CallTrail, metrics: Metrics, health: HealthState
) -> AsyncIterator[TestClient[aiohttp.web.Request, aiohttp.web.Application]]:
    app = make_app(trail=trail, metrics=metrics, health=health)
    async with TestClient(TestServer(app, host="127.0.0.1")) as c:
        yield c


Client = TestClient[aiohttp.web.Request, aiohttp.web.Application]


async def test_health_states(client: Client, health: HealthState) -> None:
    resp = await client.get("/health")
    assert resp.status == 503
    assert await resp.json() == {"status": "starting"}
    health.state = "ok"
    health.active_calls = 3
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "active_calls": 3}
    health.state = "draining"
    resp = await client.get("/health")
    assert resp.status == 503
    assert (await resp.json())["status"] == "draining"


async def test_metrics_endpoint(client: Client, metrics: Metrics) -> None:
    metrics.sip_request("INVITE")
    metrics.sip_request(CALLER)
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    assert {"callcenter_sip_requests", "callcenter_calls", "callcenter_active_calls"} <= set(
        families
    )
    values = [v for f in families.values() for s in f.samples for v in s.labels.values()]
    assert not [v for v in values if re.search(r"\d{6,}", v)]


async def test_list_calls(client: Client, trail: CallTrail) -> None:
    for n in range(5):
        add_call(trail, f"call-{n}", minutes=n)
    add_call(trail, ODD_ID, minutes=-10)
    assert await trail.flush()
    resp = await client.get("/api/calls")
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert [c["sip_call_id"] for c in body] == [f"call-{n}" for n in range(4, -1, -1)] + [ODD_ID]
    assert CALLER not in await resp.text()
    assert body[0]["event_count"] == 2
    assert datetime.fromisoformat(body[0]["started_at"]) == T0 + timedelta(minutes=4)
    assert body[0]["started_at"].endswith("+00:00")
    resp = await client.get("/api/calls", params={"limit": "2"})
    assert [c["sip_call_id"] for c in await resp.json()] == ["call-4", "call-3"]


@pytest.mark.parametrize("limit", ["abc", "0", "-1", "501", "", "1.5", "1e3"])
async def test_list_calls_bad_limit(client: Client, limit: str) -> None:
    resp = await client.get("/api/calls", params={"limit": limit})
    assert resp.status == 400
    assert "limit" in (await resp.json())["error"]


async def test_list_calls_limit_bounds(client: Client, trail: CallTrail) -> None:
    add_call(trail, "one", 0)
    assert await trail.flush()
    for limit in ("1", "500"):
        resp = await client.get("/api/calls", params={"limit": limit})
        assert resp.status == 200
        assert len(await resp.json()) == 1


async def test_get_call(client: Client, trail: CallTrail) -> None:
    add_call(trail, ODD_ID, minutes=0)
    assert await trail.flush()
    resp = await client.get("/api/calls/" + quote(ODD_ID, safe=""))
    assert resp.status == 200
    call = await resp.json()
    assert call["sip_call_id"] == ODD_ID
    assert call["caller"] == CALLER  # the trail of one call includes its caller
    assert [(e["seq"], e["type"]) for e in call["events"]] == [(0, "answered"), (1, "dtmf")]
    assert call["events"][1]["data"] == {"digit": "2", "method": "info"}
    assert call["events"][1]["ts"] == "2025-06-02T08:00:05+00:00"
    # Unencoded "/" works too.
    resp = await client.get("/api/calls/" + ODD_ID)
    assert resp.status == 200


async def test_get_unknown_call(client: Client) -> None:
    resp = await client.get("/api/calls/does-not-exist")
    assert resp.status == 404
    assert await resp.json() == {"error": "call not found", "sip_call_id": "does-not-exist"}


async def test_store_unavailable_is_503(metrics: Metrics, health: HealthState) -> None:
    broken = CallTrail.from_url(
        "postgresql://postgres@127.0.0.1:1/test", config=TrailConfig(close_timeout=0.5)
    )
    app = make_app(trail=broken, metrics=metrics, health=health)
    try:
        async with TestClient(TestServer(app, host="127.0.0.1")) as c:
            for path in ("/api/calls", "/api/calls/x"):
                resp = await c.get(path)
                assert resp.status == 503
                assert await resp.json() == {"error": "call store unavailable"}
    finally:
        await broken.close()


async def test_start_http_binds_loopback(
    trail: CallTrail, metrics: Metrics, health: HealthState
) -> None:
    health.state = "ok"
    runner, port = await start_http(
        make_app(trail=trail, metrics=metrics, health=health), host="127.0.0.1", port=0
    )
    try:
        assert port > 0
        assert [a[0] for a in runner.addresses] == ["127.0.0.1"]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                assert resp.status == 200
                assert await resp.json() == {"status": "ok", "active_calls": 0}
    finally:
        await runner.cleanup()
