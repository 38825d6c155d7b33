"""The panel's JSON API and WebSocket over real loopback HTTP, a real SQLite store, a real router.

RBAC on dossiers (the current call's, or an audited search's), the screen pop from a ``ring``,
the wrap-up saved in the contact history, the supervisor's view, the panel WebSocket's events.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine, select
from sqlmodel import SQLModel

import routing
from callcenter.config import PanelConfig, WebRtcConfig
from callcenter.metrics import Metrics
from callcenter.routing_service import RoutingService
from callcenter.softphone import SoftphoneHub
from callcenter.store import agents, db
from callcenter.store import dossiers as repo
from callcenter.store import panel as store_panel
from callcenter.store.audit import AUDIT, Via
from callcenter.web.agent_api import add_agent_routes
from callcenter.web.panel import mount_panel
from tests.store.seed import seed_apa_usager

Client = TestClient[web.Request, web.Application]
PASSWORD = "mot de passe de test"
TODAY = date(2026, 12, 7)
XSS = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'callcenter.sqlite3'}")
    db.create_schema(engine)
    for login, role in (("ag1", "agent"), ("ag2", "agent"), ("chef", "supervisor")):
        agents.add_agent(engine, login, f"Agent {login}", skills={"apa": 3})
        store_panel.set_password(engine, login, PASSWORD, role=role)
    yield engine
    engine.dispose()


@dataclass
class Env:
    client: Client
    service: RoutingService
    hub: SoftphoneHub
    store: Engine
    martin: int
    other: int

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.client.port}"

    async def session(self, login: str) -> tuple[aiohttp.ClientSession, str]:
        http = aiohttp.ClientSession(self.origin, cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with http.post(
            "/panel/api/login",
            json={"login": login, "password": PASSWORD},
            headers={"Origin": self.origin},
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        http.headers.update({"X-CSRF-Token": body["csrf_token"], "Origin": self.origin})
        return http, str(body["csrf_token"])

    def offer(self, call_id: str, login: str) -> None:
        """A call queued in ``apa``, offered to ``login`` (the only available agent)."""
        now = self.service.now()
        self.service.handle(
            routing.CallQueued(routing.QueuedCall(call_id, "apa", joined_at=now), now)
        )
        agent = self.service.router.agent(login)
        assert agent.state is routing.AgentState.RESERVED and agent.call_id == call_id


@pytest.fixture
async def env(store: Engine) -> AsyncIterator[Env]:
    martin = seed_apa_usager(store, deposited=date(2026, 9, 1))
    other = repo.upsert_usager(
        store,
        repo.UsagerRecord(
            external_id="U2",
            nom=XSS,
            prenom="Paul",
            date_naissance=date(1950, 1, 2),
            phones=("0147000000",),
        ),
    )
    config = routing.RoutingConfig.simple([routing.QueueConfig("apa", wrap_up_s=600.0)])
    service = RoutingService(config=config)
    hub = SoftphoneHub()
    app = web.Application()
    add_agent_routes(app, routing=service, store=store)
    mount_panel(
        app,
        store=store,
        hub=hub,
        config=PanelConfig(secure_cookies=False),
        webrtc=WebRtcConfig(ice_servers=("stun:stun.example.org:3478", "turn:u:p@t.example:3478")),
        metrics=Metrics(),
        today=lambda: TODAY,
        intent_labels=lambda: {"suivi_dossier_apa": "Où en est mon dossier APA"},
    )
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield Env(client, service, hub, store, martin, other)
    finally:
        await client.close()
        service.close()


def audit_rows(store: Engine, actor: str) -> list[dict[str, Any]]:
    with store.connect() as conn:
        rows = conn.execute(select(AUDIT).where(AUDIT.c.actor == actor)).mappings().all()
    return [dict(r) for r in rows]


async def test_an_unrelated_dossier_needs_an_audited_search(env: Env) -> None:
    http, _ = await env.session("ag1")
    async with http:
        async with http.get(f"/panel/api/dossiers/{env.other}") as resp:
            assert resp.status == 403, await resp.text()
        assert audit_rows(env.store, "ag1") == []  # nothing was read
        async with http.get("/panel/api/dossiers/search", params={"q": "Paul"}) as resp:
            assert resp.status == 400 and (await resp.json())["field"] == "reason"
        async with http.get(
            "/panel/api/dossiers/search", params={"q": "01 47 00 00 00", "reason": "courrier reçu"}
        ) as resp:
            found = (await resp.json())["results"]
            assert resp.status == 200
        assert [r["usager_id"] for r in found] == [env.other]
        async with http.get(
            f"/panel/api/dossiers/{env.other}", params={"reason": "courrier reçu"}
        ) as resp:
            dossier = await resp.json()
            assert resp.status == 200, dossier
        # Fields come back verbatim (the front end inserts them as text only).
        assert dossier["nom"] == XSS and dossier["verified"] is None
        # The other agent did not search: still refused.
        http2, _ = await env.session("ag2")
        async with http2, http2.get(f"/panel/api/dossiers/{env.other}?reason=x") as resp:
            assert resp.status == 403
    rows = audit_rows(env.store, "ag1")
    assert rows and all(r["via"] == Via.PANEL.value for r in rows)
    assert {r["reason"] for r in rows} == {"courrier reçu"}
    assert any(r["usager_id"] == env.other for r in rows)
    assert XSS not in json.dumps([r["detail"] for r in rows], default=str)


async def test_the_call_dossier_and_pop_only_while_the_call_is_theirs(env: Env) -> None:
    http, _ = await env.session("ag1")
    async with http, http.ws_connect("/panel/ws") as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["type"] == "hello" and hello["softphone"] is True
        assert hello["ice_servers"] == [{"urls": "stun:stun.example.org:3478"}]  # no TURN secret
        async with http.post("/panel/api/agent/login", json={}) as resp:
            assert resp.status == 200
        assert env.hub.present_here("ag1")
        env.offer("call-1", "ag1")
        pop = {
            "call_id": "call-1",
            "queue": "apa",
            "identified": True,
            "usager_id": env.martin,
            "intents": ["suivi_dossier_apa"],
            "handoff_reason": "conseiller",
            "transcript": ["où en est mon dossier"],
        }
        await env.hub.to_agent("ag1", {"type": "ring", "call_id": "call-1", "pop": pop})
        ring = None
        while ring is None:
            message = await ws.receive_json(timeout=5)
            if message["type"] == "ring":
                ring = message
        assert ring["pop"]["intent_labels"] == ["Où en est mon dossier APA"]
        assert ring["pop"]["handoff_label"] == "Demande à parler à un conseiller"
        async with http.get("/panel/api/calls/call-1/pop") as resp:
            assert resp.status == 200 and (await resp.json())["usager_id"] == env.martin
        async with http.get("/panel/api/calls/call-1/dossier") as resp:
            dossier = await resp.json()
            assert resp.status == 200, dossier
        assert dossier["nom"] == "Martin" and dossier["verified"] is True
        assert dossier["demandes"][0]["status"]["code"] == "COMPLET"
        # Another agent: no pop, no dossier of that call.
        http2, _ = await env.session("ag2")
        async with http2:
            async with http2.get("/panel/api/calls/call-1/pop") as resp:
                assert resp.status == 403
            async with http2.get("/panel/api/calls/call-1/dossier") as resp:
                assert resp.status == 403
        # The conversation ends, the wrap-up is saved: the dossier is no longer open to ag1.
        now = env.service.now()
        env.service.handle(routing.OfferAccepted("ag1", "call-1", now))
        env.service.handle(routing.CallEnded("ag1", "call-1", now))
        async with http.post(
            "/panel/api/wrapup", json={"call_id": "call-1", "motif": "Pas un motif"}
        ) as resp:
            assert resp.status == 400 and (await resp.json())["field"] == "motif"
        async with http.post(
            "/panel/api/wrapup",
            json={
                "call_id": "call-1",
                "motif": "Suivi de dossier",
                "note": XSS,
                "resolved": False,
                "follow_up": "Relancer la pièce manquante",
                "follow_up_due": "2026-12-14",
            },
        ) as resp:
            me = await resp.json()
            assert resp.status == 200, me
        assert me["state"] == "available"
        async with http.get("/panel/api/calls/call-1/dossier") as resp:
            assert resp.status == 403
    (contact,) = repo.contacts_for(env.store, env.martin, actor="test", reason="test", via=Via.CLI)
    assert contact.sip_call_id == "call-1" and contact.handled_by == "ag1"
    assert contact.agent_notes == XSS and contact.follow_up == "Relancer la pièce manquante"


async def test_a_wrap_up_for_a_call_that_was_not_theirs_is_refused(env: Env) -> None:
    http, _ = await env.session("ag1")
    async with (
        http,
        http.post("/panel/api/wrapup", json={"call_id": "someone-else", "motif": "Autre"}) as resp,
    ):
        assert resp.status == 403


async def test_supervisor_view_needs_the_supervisor_role(env: Env) -> None:
    http, _ = await env.session("ag1")
    async with http:
        async with http.post("/panel/api/agent/login", json={}) as resp:
            assert resp.status == 200
        async with http.get("/panel/api/supervisor") as resp:
            assert resp.status == 403
    env.service.handle(
        routing.CallQueued(
            routing.QueuedCall("call-w", "apa", joined_at=env.service.now()), env.service.now()
        )
    )
    chef, _ = await env.session("chef")
    async with chef, chef.get("/panel/api/supervisor") as resp:
        view = await resp.json()
        assert resp.status == 200, view
    (apa,) = view["queues"]
    assert apa["queue"] == "apa" and apa["agents"]["reserved"] == 1
    (agent,) = view["agents"]
    assert agent["login"] == "ag1" and agent["display_name"] == "Agent ag1"
    assert agent["state"] == "reserved" and agent["call_id"] == "call-w"
    assert view["callbacks"] == {"pending": 0, "overdue": 0, "next_due": None}


async def test_agent_actions_need_the_csrf_token(env: Env) -> None:
    http, _ = await env.session("ag1")
    async with http:
        del http.headers["X-CSRF-Token"]
        async with http.post("/panel/api/agent/login", json={}) as resp:
            assert resp.status == 403
        assert not env.service.router.is_logged_in("ag1")


async def test_a_wrap_up_of_a_call_rung_but_not_taken_is_refused(env: Env) -> None:
    http, _ = await env.session("ag1")
    async with http, http.ws_connect("/panel/ws") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        async with http.post("/panel/api/agent/login", json={}) as resp:
            assert resp.status == 200
        env.offer("call-2", "ag1")
        pop = {"call_id": "call-2", "queue": "apa", "usager_id": env.martin, "identified": True}
        await env.hub.to_agent("ag1", {"type": "ring", "call_id": "call-2", "pop": pop})
        while (await ws.receive_json(timeout=5))["type"] != "ring":
            pass
        env.service.handle(routing.OfferRejected("ag1", "call-2", env.service.now()))
        async with http.post(
            "/panel/api/wrapup", json={"call_id": "call-2", "motif": "Autre", "note": "x"}
        ) as resp:
            assert resp.status == 403, await resp.text()
    assert repo.contacts_for(env.store, env.martin, actor="t", reason="t", via=Via.CLI) == []


def test_two_agents_wrapping_up_one_call_keep_both_notes(store: Engine) -> None:
    now = datetime.now(UTC)
    for login, motif, note in (("ag1", "Autre", "consulté ag2"), ("ag2", "Paiement", "réglé")):
        store_panel.save_wrapup(
            store,
            sip_call_id="c-1",
            agent_login=login,
            motif=motif,
            note=note,
            resolved=None,
            follow_up=None,
            follow_up_due=None,
            now=now,
        )
    contact_table = SQLModel.metadata.tables["contact"]
    with store.connect() as conn:
        query = select(contact_table).where(contact_table.c.sip_call_id == "c-1")
        row = conn.execute(query).mappings().one()
    assert row["handled_by"] == "ag2" and row["wrapup_motif"] == "Paiement"
    assert row["agent_notes"] == "réglé\n\nag1 : consulté ag2"
