"""The agent API over real loopback HTTP and WebSocket, a real SQLite store and a real router."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine

import routing
from callcenter.metrics import Metrics
from callcenter.routing_service import RoutingService
from callcenter.store import CallTrail, agents, db
from callcenter.transfer import TransferError, TransferKind, TransferPolicy, TransferTarget
from callcenter.web import HealthState, make_app
from callcenter.web.agent_api import AgentApiConfig, Transferrer, add_agent_routes

Client = TestClient[web.Request, web.Application]
WS = aiohttp.ClientWebSocketResponse


class FakeMonotonic:
    """The API's monotonic clock (token cache and rate limit), moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    client: Client
    service: RoutingService
    store: Engine
    clock: FakeMonotonic
    tokens: dict[str, str]
    decisions: list[routing.Decision]

    def auth(self, login: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[login]}"}

    async def post(
        self, login: str, path: str, body: Any = None, status: int = 200
    ) -> dict[str, Any]:
        resp = await self.client.post(path, json=body, headers=self.auth(login))
        data: dict[str, Any] = await resp.json()
        assert resp.status == status, data
        assert resp.headers["Cache-Control"] == "no-store"
        return data

    async def me(self, login: str) -> dict[str, Any]:
        resp = await self.client.get("/api/agent/me", headers=self.auth(login))
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-store"
        data: dict[str, Any] = await resp.json()
        return data

    async def events(self, login: str) -> WS:
        ws = await self.client.ws_connect("/api/agent/events", headers=self.auth(login))
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello" and hello["agent"]["login"] == login
        return ws

    def queue_call(self, call_id: str, skill: str = "apa", **fields: Any) -> None:
        now = self.service.now()
        call = routing.QueuedCall(call_id, skill, joined_at=now, **fields)
        self.service.handle(routing.CallQueued(call, now))


EnvFactory = Callable[..., Awaitable[Env]]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'callcenter.sqlite3'}")
    db.create_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
async def make_env(store: Engine) -> AsyncIterator[EnvFactory]:
    tokens: dict[str, str] = {}
    for login, skills in (
        ("c.durand", {"apa": 4, "accueil_general": 2}),
        ("b.martin", {"apa": 3}),
        ("l.petit", {"accueil_general": 3}),
        ("x.ancien", {"apa": 5}),
    ):
        _, tokens[login] = agents.add_agent(store, login, login.title(), skills=skills)
    agents.set_active(store, "x.ancien", False)
    opened: list[tuple[Client, RoutingService]] = []

    async def factory(
        *,
        ring_timeout_s: float = 30.0,
        wrap_up_s: float = 60.0,
        transfer: Transferrer | None = None,
        transfer_policy: TransferPolicy | None = None,
        **api: Any,
    ) -> Env:
        config = routing.RoutingConfig.simple(
            [
                routing.QueueConfig(
                    "apa", ring_timeout_s=ring_timeout_s, wrap_up_s=wrap_up_s, max_wait_s=600.0
                ),
                routing.QueueConfig(
                    "accueil_general",
                    ring_timeout_s=ring_timeout_s,
                    wrap_up_s=wrap_up_s,
                    max_wait_s=600.0,
                ),
            ]
        )
        service = RoutingService(config=config)
        decisions: list[routing.Decision] = []
        service.listen(decisions.append)
        clock = FakeMonotonic()
        app = web.Application()
        add_agent_routes(
            app,
            routing=service,
            store=store,
            clock=clock,
            config=AgentApiConfig(**api),
            transfer=transfer,
            transfer_policy=transfer_policy,
        )
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        opened.append((client, service))
        return Env(client, service, store, clock, tokens, decisions)

    yield factory
    for client, service in opened:
        await client.close()
        service.close()


@pytest.fixture
async def env(make_env: EnvFactory) -> Env:
    return await make_env()


async def drain(ws: WS) -> list[dict[str, Any]]:
    """Every event pushed so far: ask for a pong and collect what comes before it.

    The server queues events for a socket as the router decides them, and the pong after the
    ping it reads, so everything decided before the ping arrives first.
    """
    await ws.send_json({"type": "ping"})
    got: list[dict[str, Any]] = []
    while True:
        message: dict[str, Any] = await ws.receive_json(timeout=5)
        if message["type"] == "pong":
            return got
        got.append(message)


async def receive_close(ws: WS) -> aiohttp.WSMessage:
    while True:
        msg = await ws.receive(timeout=5)
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
            return msg


# -- REST state changes ------------------------------------------------------------------------


async def test_login_pause_ready_logout(env: Env) -> None:
    me = await env.me("c.durand")
    assert me["state"] == "offline" and me["since"] is None
    assert me["skills"] == {"accueil_general": 2, "apa": 4}  # from the store
    assert "non réponse" in me["pause_reasons"]

    me = await env.post("c.durand", "/api/agent/login")
    assert me["state"] == "available" and me["login"] == "c.durand"
    assert me["since"] == pytest.approx(time.time(), abs=5)
    agent = env.service.router.agent("c.durand")
    assert agent.state is routing.AgentState.AVAILABLE and dict(agent.skills) == me["skills"]

    me = await env.post("c.durand", "/api/agent/pause", {"reason": "déjeuner"})
    assert (me["state"], me["pause_reason"]) == ("paused", "déjeuner")
    assert env.service.router.agent("c.durand").pause_reason == "déjeuner"
    me = await env.post("c.durand", "/api/agent/ready")
    assert (me["state"], me["pause_reason"]) == ("available", None)
    me = await env.post("c.durand", "/api/agent/logout")
    assert me["state"] == "offline"
    assert env.service.router.agent("c.durand").state is routing.AgentState.OFFLINE

    # Log in paused, with the reason checked against the configuration.
    me = await env.post("c.durand", "/api/agent/login", {"pause_reason": "formation"})
    assert (me["state"], me["pause_reason"]) == ("paused", "formation")
    changes = [d for d in env.decisions if isinstance(d, routing.AgentStateChanged)]
    assert [(c.state.value, c.reason) for c in changes] == [
        ("available", None),
        ("paused", "déjeuner"),
        ("available", None),
        ("offline", None),
        ("paused", "formation"),
    ]


async def test_bad_bodies_are_400_naming_the_field_and_change_nothing(env: Env) -> None:
    await env.post("c.durand", "/api/agent/login")
    for body, field in (
        ({"reason": "sieste"}, "reason"),
        ({"reason": 3}, "reason"),
        ({}, "reason"),
        ({"reason": "pause", "until": "14:00"}, "until"),
        (["pause"], "body"),
    ):
        data = await env.post("c.durand", "/api/agent/pause", body, status=400)
        assert data["field"] == field, data
        assert data["error"].startswith(f"{field}:"), data
    data = await env.post("c.durand", "/api/agent/pause", {"reason": "sieste"}, status=400)
    assert "'sieste' is not a pause reason" in data["error"] and "déjeuner" in data["error"]
    resp = await env.client.post(
        "/api/agent/pause", data=b"{not json", headers=env.auth("c.durand")
    )
    assert resp.status == 400 and (await resp.json())["field"] == "body"
    assert env.service.router.agent("c.durand").state is routing.AgentState.AVAILABLE

    data = await env.post("b.martin", "/api/agent/login", {"pause_reason": "x"}, status=400)
    assert data["field"] == "pause_reason"
    assert "b.martin" not in env.service.router.agents
    data = await env.post("c.durand", "/api/agent/wrapup", {"resolved": "oui"}, status=400)
    assert data["field"] == "resolved"


async def test_invalid_transitions_are_409_and_unknown_calls_404(env: Env) -> None:
    for path, body in (
        ("/api/agent/ready", None),
        ("/api/agent/pause", {"reason": "pause"}),
        ("/api/agent/logout", None),
        ("/api/agent/wrapup", {"resolved": True}),
    ):
        data = await env.post("c.durand", path, body, status=409)
        assert data == {"error": "agent 'c.durand' is not logged in", "state": "offline"}, path
    await env.post("c.durand", "/api/agent/login")
    data = await env.post("c.durand", "/api/agent/login", status=409)
    assert data["error"] == "agent 'c.durand' is already logged in"
    data = await env.post("c.durand", "/api/agent/wrapup", {"resolved": False}, status=409)
    assert data == {"error": "agent 'c.durand' is not in wrap-up", "state": "available"}

    data = await env.post("c.durand", "/api/agent/offers/nope/accept", status=404)
    assert data == {"error": "unknown call", "call_id": "nope"}
    # The call exists but rings another agent: neither accept nor reject applies.
    await env.post("b.martin", "/api/agent/login")
    await env.post("c.durand", "/api/agent/pause", {"reason": "pause"})
    env.queue_call("call-1")
    assert env.service.router.agent("b.martin").call_id == "call-1"
    for action in ("accept", "reject"):
        data = await env.post("c.durand", f"/api/agent/offers/call-1/{action}", status=409)
        assert data["error"] == "call call-1 is not being offered to 'c.durand'"
    assert env.service.router.call_phase("call-1") == "offered"


# -- events ------------------------------------------------------------------------------------


async def test_offer_accept_conversation_and_wrap_up_reach_the_socket(env: Env) -> None:
    await env.post("c.durand", "/api/agent/login")
    ws = await env.events("c.durand")
    call_id = "a84b4c76e66710@pc33.example.fr/7"  # a Call-ID may contain "/" and "@"
    before = time.time()
    env.queue_call(call_id)
    [offer, state] = await drain(ws)
    assert offer == {
        "type": "offer",
        "call_id": call_id,
        "queue": "apa",
        "priority": "normal",
        "proficiency": 4,
        "wait_s": pytest.approx(0.0, abs=1.0),
        "ring_deadline": pytest.approx(before + 30.0, abs=2.0),
        "dial_out": False,
        "at": pytest.approx(before, abs=2.0),
    }
    assert state["type"] == "state" and state["state"] == "reserved"
    me = await env.me("c.durand")
    assert me["call_id"] == call_id and me["offer"]["ring_deadline"] == offer["ring_deadline"]

    me = await env.post("c.durand", f"/api/agent/offers/{quote(call_id, safe='')}/accept")
    assert (me["state"], me["call_id"], me["offer"]) == ("on_call", call_id, None)
    answered, state = await drain(ws)
    assert answered["type"] == "call_answered" and answered["call_id"] == call_id
    assert (answered["queue"], answered["via_queue"]) == ("apa", "apa")
    assert state["state"] == "on_call"

    # Hang-up comes from the call adapter; the agent then ends the wrap-up from the API.
    env.service.handle(routing.CallEnded("c.durand", call_id, env.service.now()))
    completed, state = await drain(ws)
    assert completed["type"] == "call_completed" and completed["talk_s"] >= 0.0
    assert state["state"] == "wrap_up"
    me = await env.post("c.durand", "/api/agent/wrapup", {"resolved": True})
    assert me["state"] == "available" and me["call_id"] is None
    ended, state = await drain(ws)
    assert ended["type"] == "wrap_up_ended" and ended["call_id"] == call_id
    assert (ended["resolved"], ended["timed_out"]) == (True, False)
    assert state["state"] == "available"
    [kpi] = [d for d in env.decisions if isinstance(d, routing.WrapUpEnded)]
    assert kpi.resolved is True
    await ws.close()


async def test_reject_keeps_the_agent_available_and_the_call_goes_to_another(env: Env) -> None:
    await env.post("c.durand", "/api/agent/login")
    await env.post("b.martin", "/api/agent/login")
    durand = await env.events("c.durand")
    martin = await env.events("b.martin")
    # A repeat caller (a contact an hour ago) is served at a raised priority.
    env.queue_call("call-9", previous_contact_at=env.service.now() - 3600.0)
    offer, state = await drain(durand)  # best proficiency first
    assert (offer["type"], offer["priority"], state["state"]) == ("offer", "high", "reserved")
    assert await drain(martin) == []

    me = await env.post("c.durand", "/api/agent/offers/call-9/reject")
    assert (me["state"], me["call_id"]) == ("available", None)
    ended, state = await drain(durand)
    assert (ended["type"], ended["call_id"], ended["reason"]) == (
        "offer_ended",
        "call-9",
        "rejected",
    )
    assert state["state"] == "available"
    offer, state = await drain(martin)
    assert (offer["type"], offer["call_id"], offer["proficiency"]) == ("offer", "call-9", 3)
    assert state["state"] == "reserved"
    # Declined calls are not offered again to the same agent, even when free.
    assert await drain(durand) == []
    await env.post("b.martin", "/api/agent/offers/call-9/accept")
    assert [m["type"] for m in await drain(martin)] == ["call_answered", "state"]


async def test_ring_timeout_pushes_the_non_reponse_pause(make_env: EnvFactory) -> None:
    env = await make_env(ring_timeout_s=0.3)
    await env.post("c.durand", "/api/agent/login")
    ws = await env.events("c.durand")
    env.queue_call("call-r")
    offer = await ws.receive_json(timeout=5)
    assert offer["type"] == "offer"
    assert (await ws.receive_json(timeout=5))["state"] == "reserved"
    ended = await ws.receive_json(timeout=5)  # the router's own timer, on the event loop
    assert (ended["type"], ended["reason"]) == ("offer_ended", "ring_timeout")
    assert ended["at"] == pytest.approx(offer["ring_deadline"], abs=0.5)
    paused = await ws.receive_json(timeout=5)
    assert paused["type"] == "state"
    assert (paused["state"], paused["reason"]) == ("paused", "non réponse")
    # An accept that arrives too late is refused, and the call waits for someone else.
    data = await env.post("c.durand", "/api/agent/offers/call-r/accept", status=409)
    assert data["state"] == "paused"
    assert env.service.router.call_phase("call-r") == "waiting"


async def test_two_agents_only_see_their_own_decisions(env: Env) -> None:
    await env.post("c.durand", "/api/agent/login")
    await env.post("l.petit", "/api/agent/login")
    durand = await env.events("c.durand")
    petit = await env.events("l.petit")
    env.queue_call("call-apa", "apa")
    env.queue_call("call-accueil", "accueil_general")
    await env.post("c.durand", "/api/agent/offers/call-apa/accept")
    await env.post("l.petit", "/api/agent/offers/call-accueil/reject")
    await env.post("l.petit", "/api/agent/pause", {"reason": "réunion"})
    got_durand = await drain(durand)
    got_petit = await drain(petit)
    assert {m.get("call_id") for m in got_durand} == {"call-apa", None}
    assert [m["type"] for m in got_durand] == ["offer", "state", "call_answered", "state"]
    assert {m.get("call_id") for m in got_petit} == {"call-accueil", None}
    assert [m["type"] for m in got_petit] == ["offer", "state", "offer_ended", "state", "state"]
    assert got_petit[-1]["reason"] == "réunion"


async def test_closing_the_socket_keeps_the_agent_and_shutdown_closes_sockets(
    env: Env,
) -> None:
    await env.post("c.durand", "/api/agent/login")
    await env.post("c.durand", "/api/agent/pause", {"reason": "pause"})
    ws = await env.events("c.durand")
    await ws.close()
    await asyncio.sleep(0.1)
    assert env.service.router.agent("c.durand").state is routing.AgentState.PAUSED
    # A reload reconnects and resynchronises from the hello.
    ws = await env.client.ws_connect("/api/agent/events", headers=env.auth("c.durand"))
    hello = await ws.receive_json(timeout=5)
    assert (hello["agent"]["state"], hello["agent"]["pause_reason"]) == ("paused", "pause")

    # Stop the server only (its on_shutdown), while this client reads its socket.
    closing = asyncio.create_task(env.client.server.close())
    msg = await receive_close(ws)
    await closing
    assert msg.type is WSMsgType.CLOSE and msg.data == aiohttp.WSCloseCode.GOING_AWAY
    assert env.service.router.agent("c.durand").state is routing.AgentState.PAUSED


async def test_heartbeat_pings_and_drops_a_silent_peer(make_env: EnvFactory) -> None:
    env = await make_env(heartbeat_s=0.3)
    ws = await env.client.ws_connect(
        "/api/agent/events", headers=env.auth("c.durand"), autoping=False
    )
    assert (await ws.receive_json(timeout=5))["type"] == "hello"
    assert (await ws.receive(timeout=5)).type is WSMsgType.PING
    started = time.monotonic()
    msg = await receive_close(ws)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    assert time.monotonic() - started < 2.0


async def test_a_slow_reader_is_closed_rather_than_buffered_forever(make_env: EnvFactory) -> None:
    env = await make_env(max_backlog=3)
    await env.post("c.durand", "/api/agent/login")
    ws = await env.events("c.durand")
    # Decisions pile up with no chance for the socket to send in between.
    for _ in range(4):
        env.service.handle(routing.AgentPauseRequested("c.durand", "pause", env.service.now()))
        env.service.handle(routing.AgentReady("c.durand", env.service.now()))
    got = [await ws.receive(timeout=5) for _ in range(4)]
    assert [m.type for m in got[:3]] == [WSMsgType.TEXT] * 3
    assert got[3].type is WSMsgType.CLOSE and got[3].data == 4408
    assert env.service.router.agent("c.durand").state is routing.AgentState.AVAILABLE


# -- authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic c.durand"},
        "disabled",
    ],
)
async def test_requests_without_a_valid_token_are_401(
    env: Env, headers: dict[str, str] | str
) -> None:
    sent = env.auth("x.ancien") if headers == "disabled" else headers
    assert isinstance(sent, dict)
    for method, path in (("GET", "/api/agent/me"), ("POST", "/api/agent/login")):
        resp = await env.client.request(method, path, headers=sent)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.headers["Cache-Control"] == "no-store"
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await env.client.ws_connect("/api/agent/events", headers=sent or {"Authorization": "x"})
    assert caught.value.status == 401
    assert env.service.router.agents == {}


async def test_a_disabled_agent_is_refused_once_the_cache_expires(env: Env) -> None:
    await env.post("b.martin", "/api/agent/login")
    agents.set_active(env.store, "b.martin", False)
    await env.me("b.martin")  # cached for auth_cache_s (5 s by default)
    env.clock.now += 5.1
    resp = await env.client.get("/api/agent/me", headers=env.auth("b.martin"))
    assert resp.status == 401


async def test_websocket_auth_by_first_message(make_env: EnvFactory) -> None:
    assert AgentApiConfig().ws_auth_timeout_s == 5.0
    env = await make_env(ws_auth_timeout_s=0.3)
    ws = await env.client.ws_connect("/api/agent/events")
    await ws.send_json({"type": "auth", "token": env.tokens["l.petit"]})
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello" and hello["agent"]["login"] == "l.petit"
    await ws.close()

    for first in (
        {"type": "auth", "token": "wrong"},
        {"type": "auth", "token": env.tokens["x.ancien"]},
        {"type": "hello"},
        "not json",
    ):
        ws = await env.client.ws_connect("/api/agent/events")
        if isinstance(first, str):
            await ws.send_str(first)
        else:
            await ws.send_json(first)
        msg = await receive_close(ws)
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 4401), first

    ws = await env.client.ws_connect("/api/agent/events")
    started = time.monotonic()
    msg = await receive_close(ws)
    assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 4401, "authentication timed out")
    assert 0.25 <= time.monotonic() - started < 2.0


async def test_failed_authentications_are_rate_limited_per_address(
    make_env: EnvFactory,
) -> None:
    env = await make_env(max_auth_failures=3, auth_failure_window_s=60.0, ws_auth_timeout_s=0.2)
    # A socket that never authenticates counts as a failure.
    ws = await env.client.ws_connect("/api/agent/events")
    assert (await receive_close(ws)).data == 4401
    # One more failure, then a socket opens just before the third failure blocks the address.
    resp = await env.client.get("/api/agent/me", headers={"Authorization": "Bearer guess"})
    assert resp.status == 401
    ws = await env.client.ws_connect("/api/agent/events")
    resp = await env.client.get("/api/agent/me", headers={"Authorization": "Bearer guess"})
    assert resp.status == 401
    await ws.send_json({"type": "auth", "token": env.tokens["c.durand"]})
    msg = await receive_close(ws)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 4429)
    # Blocked now, even with a good token, on REST and before any WebSocket upgrade.
    resp = await env.client.get("/api/agent/me", headers=env.auth("c.durand"))
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "60"
    assert (await resp.json())["error"] == "too many failed authentications; retry later"
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        await env.client.ws_connect("/api/agent/events")
    assert caught.value.status == 429
    env.clock.now += 60.0
    assert (await env.me("c.durand"))["login"] == "c.durand"


async def test_an_open_socket_is_closed_when_the_agent_is_disabled(
    make_env: EnvFactory,
) -> None:
    env = await make_env(revalidate_s=0.2)
    ws = await env.events("l.petit")
    agents.set_active(env.store, "l.petit", False)
    env.clock.now += 10.0  # past the token cache
    msg = await receive_close(ws)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 4401)


async def test_unknown_paths_and_methods_under_the_prefix_are_not_cached(env: Env) -> None:
    resp = await env.client.get("/api/agent/nothing-here", headers=env.auth("c.durand"))
    assert resp.status == 404 and resp.headers["Cache-Control"] == "no-store"
    resp = await env.client.get("/api/agent/login", headers=env.auth("c.durand"))
    assert resp.status == 405 and resp.headers["Cache-Control"] == "no-store"


async def test_routes_are_added_once_and_tracking_stops_at_cleanup(store: Engine) -> None:
    service = RoutingService(config=routing.RoutingConfig.simple([routing.QueueConfig("apa")]))
    app = web.Application()
    add_agent_routes(app, routing=service, store=store)
    with pytest.raises(RuntimeError, match="already part"):
        add_agent_routes(app, routing=service, store=store)
    async with TestClient(TestServer(app, host="127.0.0.1")):
        assert len(service._global) == 1
    assert service._global == []
    service.close()


async def test_store_unavailable_is_503(tmp_path: Path) -> None:
    empty = db.make_engine(f"sqlite:///{tmp_path / 'no-schema.sqlite3'}")  # no agent table
    service = RoutingService(config=routing.RoutingConfig.simple([routing.QueueConfig("apa")]))
    app = web.Application()
    add_agent_routes(app, routing=service, store=empty)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/api/agent/me", headers={"Authorization": "Bearer t"})
        assert resp.status == 503
        assert await resp.json() == {"error": "agent store unavailable"}
    service.close()
    empty.dispose()


async def test_wired_into_the_service_app(tmp_path: Path, store: Engine) -> None:
    trail = CallTrail.from_url(f"sqlite:///{tmp_path / 'callcenter.sqlite3'}")
    health = HealthState(state="ok")
    app = make_app(trail=trail, metrics=Metrics(), health=health)
    service = RoutingService(config=routing.RoutingConfig.simple([routing.QueueConfig("apa")]))
    add_agent_routes(app, routing=service, store=store)
    _, token = agents.add_agent(store, "c.durand", "Claire Durand", skills={"apa": 4})
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/health")
        assert resp.status == 200 and "Cache-Control" not in resp.headers
        resp = await client.post("/api/agent/login", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 200 and (await resp.json())["state"] == "available"
    service.close()


# -- transfers ---------------------------------------------------------------------------------


async def test_transfer_checks_the_target_then_hands_it_to_the_call(make_env: EnvFactory) -> None:
    done: list[tuple[str, str, TransferTarget]] = []
    env: Env

    async def transfer(call_id: str, login: str, target: TransferTarget) -> None:
        if target.kind is TransferKind.NUMBER and target.value == "3114":
            raise TransferError(409, "the caller hung up")
        done.append((call_id, login, target))
        await env.service.submit(routing.CallEnded(login, call_id, env.service.now()))

    env = await make_env(
        transfer=transfer, transfer_policy=TransferPolicy(allowed_numbers=("3977", "3114"))
    )
    await env.post("c.durand", "/api/agent/transfer", {"queue": "apa"}, status=409)
    await env.post("c.durand", "/api/agent/login")
    await env.post("l.petit", "/api/agent/login")
    env.queue_call("call-1")
    await env.post("c.durand", "/api/agent/transfer", {"queue": "apa"}, status=409)  # ringing
    await env.post("c.durand", "/api/agent/offers/call-1/accept")

    bad = await env.post("c.durand", "/api/agent/transfer", {"queue": "x", "agent": "y"}, 400)
    assert bad["field"] == "body"
    assert (await env.post("c.durand", "/api/agent/transfer", {"queue": "cuisine"}, 404))[
        "field"
    ] == "queue"
    await env.post("c.durand", "/api/agent/transfer", {"agent": "b.martin"}, 404)  # offline
    await env.post("c.durand", "/api/agent/transfer", {"agent": "c.durand"}, 400)
    refused = await env.post("c.durand", "/api/agent/transfer", {"number": "0612345678"}, 403)
    assert "0612345678" not in refused["error"]
    await env.post("c.durand", "/api/agent/transfer", {"number": "3114"}, 409)
    assert done == []

    me = await env.post("c.durand", "/api/agent/transfer", {"agent": "l.petit"})
    assert me["state"] == "wrap_up"
    assert done == [("call-1", "c.durand", TransferTarget(TransferKind.AGENT, "l.petit"))]


async def test_transfer_without_a_transferrer_is_501(env: Env) -> None:
    await env.post("c.durand", "/api/agent/login")
    env.queue_call("call-1")
    await env.post("c.durand", "/api/agent/offers/call-1/accept")
    await env.post("c.durand", "/api/agent/transfer", {"queue": "apa"}, status=501)
