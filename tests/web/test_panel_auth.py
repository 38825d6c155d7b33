"""Panel login, sessions, CSRF and roles over real loopback HTTP with a real SQLite store."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine, select

from callcenter.store import agents, db
from callcenter.store import panel as store_panel
from callcenter.web.panel.auth import (
    PANEL_USER,
    PanelConfig,
    PanelUser,
    current_user,
    require_role,
    setup_panel_auth,
)

Client = TestClient[web.Request, web.Application]
PASSWORDS = {
    "c.durand": "mot de passe de Claire",
    "s.chef": "mot de passe du chef !",
    "a.admin": "mot de passe admin 123",
}
BASE = PanelConfig(secure_cookies=False)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'callcenter.sqlite3'}")
    db.create_schema(engine)
    for (login, password), role in zip(
        PASSWORDS.items(), ("agent", "supervisor", "admin"), strict=True
    ):
        agents.add_agent(engine, login, login.title(), skills={"apa": 3})
        store_panel.set_password(engine, login, password, role=role)
    agents.add_agent(engine, "x.sanspass", "Sans Mot De Passe")
    yield engine
    engine.dispose()


@dataclass
class Env:
    client: Client
    clock: FakeClock
    store: Engine

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.client.port}"

    async def login(
        self,
        login: str,
        password: str | None = None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> tuple[aiohttp.ClientResponse, dict[str, Any]]:
        secret = PASSWORDS.get(login, "") if password is None else password
        resp = await self.client.post(
            "/panel/api/login", json={"login": login, "password": secret}, headers=headers
        )
        body: dict[str, Any] = await resp.json()
        assert resp.status == status, body
        return resp, body


EnvFactory = Callable[..., Awaitable[Env]]


async def _echo(request: web.Request) -> web.Response:
    user = request[PANEL_USER]  # the middleware required a session
    assert isinstance(user, PanelUser)
    return web.json_response({"login": user.login, "skills": dict(user.agent.skills)})


@require_role("supervisor")
async def _supervisor(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@require_role("admin")
async def _admin(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _page(request: web.Request) -> web.Response:
    user = await current_user(request)
    if user is None:
        raise web.HTTPFound("/panel/login")
    return web.Response(text=f"bonjour {user.display_name}", content_type="text/html")


def _login_of(request: web.Request) -> str:
    return request[PANEL_USER].login


async def _ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_json({"type": "hello", "login": _login_of(request)})
    await ws.close()
    return ws


@pytest.fixture
async def make_env(store: Engine) -> AsyncIterator[EnvFactory]:
    clients: list[Client] = []

    async def factory(**config: Any) -> Env:
        clock = FakeClock()
        app = web.Application()
        setup_panel_auth(app, store=store, config=replace(BASE, **config), clock=clock)
        app.router.add_get("/panel/api/echo", _echo)
        app.router.add_post("/panel/api/echo", _echo)
        app.router.add_get("/panel/api/supervisor", _supervisor)
        app.router.add_get("/panel/api/admin", _admin)
        app.router.add_get("/panel/", _page)
        app.router.add_get("/panel/ws", _ws)
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return Env(client, clock, store)

    yield factory
    for client in clients:
        await client.close()


@pytest.fixture
async def env(make_env: EnvFactory) -> Env:
    return await make_env()


def _set_cookie(resp: aiohttp.ClientResponse) -> str:
    [header] = resp.headers.getall("Set-Cookie")
    return header


async def test_login_sets_a_strict_http_only_cookie_and_opens_a_session(env: Env) -> None:
    resp, body = await env.login("c.durand")
    assert set(body) == {"login", "role", "display_name", "csrf_token"}
    assert (body["login"], body["role"], body["display_name"]) == ("c.durand", "agent", "C.Durand")
    cookie = _set_cookie(resp)
    assert cookie.startswith("cc_panel=")
    attributes = {a.strip().split("=")[0].lower(): a for a in cookie.split(";")[1:]}
    assert attributes.keys() == {"httponly", "path", "samesite"}
    assert attributes["path"].strip() == "Path=/panel"
    assert attributes["samesite"].strip() == "SameSite=Strict"
    raw = resp.cookies["cc_panel"].value
    assert len(raw) >= 43 and raw not in (body["csrf_token"],)

    echo = await env.client.get("/panel/api/echo")
    assert echo.status == 200 and await echo.json() == {"login": "c.durand", "skills": {"apa": 3}}
    session = await env.client.get("/panel/api/session")
    assert await session.json() == {**body, "idle_timeout_s": 900.0}
    page = await env.client.get("/panel/")
    assert page.status == 200 and await page.text() == "bonjour C.Durand"
    # Only the cookie's hash is stored.
    with env.store.connect() as conn:
        stored = conn.execute(select(store_panel.SESSION.c.session_hash)).scalars().all()
    assert stored == [store_panel.hash_session_id(raw)]


async def test_secure_cookie_when_configured(make_env: EnvFactory) -> None:
    env = await make_env(secure_cookies=True)
    resp, _ = await env.login("c.durand")
    assert "Secure" in [a.strip() for a in _set_cookie(resp).split(";")]


async def test_bad_credentials_are_all_answered_alike(env: Env) -> None:
    expected = {"error": "Identifiant ou mot de passe incorrect.", "code": "bad_credentials"}
    for login, password in (
        ("c.durand", "mauvais mot de passe"),
        ("inconnu", "mauvais mot de passe"),
        ("x.sanspass", "mauvais mot de passe"),
        ("c.durand", ""),
    ):
        resp, body = await env.login(login, password, status=401)
        assert body == expected and "Set-Cookie" not in resp.headers
    agents.set_active(env.store, "s.chef", False)
    _, body = await env.login("s.chef", status=401)
    assert body == expected
    for bad in ({"login": "c.durand"}, ["c.durand"], {"login": 1, "password": "x"}):
        resp = await env.client.post("/panel/api/login", json=bad)
        assert resp.status == 400
    resp = await env.client.post("/panel/api/login", data=b"{not json")
    assert resp.status == 400
    resp = await env.client.get("/panel/api/echo")
    assert resp.status == 401
    assert await resp.json() == {"error": "session expirée", "code": "session_expired"}


async def test_account_lockout_then_unlock(make_env: EnvFactory) -> None:
    env = await make_env(max_failed_logins=3, lockout_s=300.0)
    for _ in range(3):
        await env.login("c.durand", "mauvais mot de passe", status=401)
    resp, body = await env.login("c.durand", status=423)  # even the right password
    assert body["code"] == "locked" and body["retry_after_s"] == 300
    assert resp.headers["Retry-After"] == "300"
    env.clock.now += 120
    _, body = await env.login("c.durand", status=423)
    assert body["retry_after_s"] == 180
    env.clock.now += 181
    await env.login("c.durand")


async def test_login_rate_limit_per_address(make_env: EnvFactory) -> None:
    env = await make_env(login_rate_per_ip=3)
    await env.login("c.durand", "mauvais mot de passe", status=401)
    await env.login("inconnu", "x", status=401)
    await env.login("c.durand")
    resp, body = await env.login("c.durand", status=429)
    assert body["code"] == "rate_limited" and resp.headers["Retry-After"] == "60"
    env.clock.now += 30
    resp, _ = await env.login("s.chef", status=429)
    assert resp.headers["Retry-After"] == "30"
    env.clock.now += 31
    await env.login("s.chef")


async def test_a_new_session_id_at_each_login(env: Env) -> None:
    first, _ = await env.login("c.durand")
    old = first.cookies["cc_panel"].value
    second, _ = await env.login("c.durand")
    new = second.cookies["cc_panel"].value
    assert new != old
    # The session the browser held before logging in again is ended (fixation).
    assert store_panel.session_for(env.store, old, datetime.now(UTC), 900, 3600) is None
    env.client.session.cookie_jar.clear()
    resp = await env.client.get("/panel/api/echo", headers={"Cookie": f"cc_panel={old}"})
    assert resp.status == 401
    # A cookie id planted by an attacker is never adopted.
    env.client.session.cookie_jar.clear()
    planted = "A" * 43
    resp, _ = await env.login("c.durand", headers={"Cookie": f"cc_panel={planted}"})
    assert resp.cookies["cc_panel"].value != planted


async def test_csrf_token_and_origin_on_state_changing_requests(env: Env) -> None:
    _, body = await env.login("c.durand")
    token = body["csrf_token"]
    resp = await env.client.post("/panel/api/echo")
    assert resp.status == 403 and (await resp.json())["code"] == "csrf"
    resp = await env.client.post("/panel/api/echo", headers={"X-CSRF-Token": "faux"})
    assert resp.status == 403 and (await resp.json())["code"] == "csrf"
    resp = await env.client.post(
        "/panel/api/echo", headers={"X-CSRF-Token": token, "Origin": "http://evil.example"}
    )
    assert resp.status == 403 and (await resp.json())["code"] == "csrf"
    resp = await env.client.post(
        "/panel/api/echo", headers={"X-CSRF-Token": token, "Origin": "null"}
    )
    assert resp.status == 403
    ok = {"X-CSRF-Token": token, "Origin": env.origin}
    resp = await env.client.post("/panel/api/echo", headers=ok)
    assert resp.status == 200
    resp = await env.client.post("/panel/api/echo", headers={"X-CSRF-Token": token})
    assert resp.status == 200  # no Origin (older clients): the token suffices
    # GET needs no token; logout does.
    assert (await env.client.get("/panel/api/echo")).status == 200
    assert (await env.client.post("/panel/api/logout")).status == 403
    # The login refuses a cross-origin Origin too (login CSRF).
    await env.login("s.chef", status=403, headers={"Origin": "http://evil.example"})
    await env.login("s.chef", headers={"Origin": env.origin})


async def test_websocket_needs_a_session_and_the_panel_origin(env: Env) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await env.client.ws_connect("/panel/ws", origin=env.origin)
    assert refused.value.status == 401
    await env.login("c.durand")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await env.client.ws_connect("/panel/ws", origin="http://evil.example")
    assert refused.value.status == 403
    ws = await env.client.ws_connect("/panel/ws", origin=env.origin)
    assert await ws.receive_json(timeout=5) == {"type": "hello", "login": "c.durand"}
    await ws.close()


async def test_idle_and_absolute_expiry(make_env: EnvFactory) -> None:
    env = await make_env(idle_timeout_s=600.0, absolute_timeout_s=1800.0)
    await env.login("c.durand")
    for _ in range(3):
        env.clock.now += 500
        assert (await env.client.get("/panel/api/echo")).status == 200
    env.clock.now += 301  # 1801 s after the login
    resp = await env.client.get("/panel/api/echo")
    assert resp.status == 401 and (await resp.json())["code"] == "session_expired"
    assert "cc_panel=" in resp.headers["Set-Cookie"]  # cleared
    await env.login("c.durand")
    env.clock.now += 631  # idle for longer than 600 s (+ the 30 s touch interval)
    resp = await env.client.get("/panel/api/echo")
    assert resp.status == 401
    page = await env.client.get("/panel/", allow_redirects=False)
    assert page.status == 302 and page.headers["Location"] == "/panel/login"


async def test_logout_revokes_the_session(env: Env) -> None:
    resp, body = await env.login("c.durand")
    raw = resp.cookies["cc_panel"].value
    resp = await env.client.post("/panel/api/logout", headers={"X-CSRF-Token": body["csrf_token"]})
    assert resp.status == 204
    cleared = _set_cookie(resp)
    assert cleared.startswith('cc_panel=""') and "Path=/panel" in cleared
    assert "Max-Age=0" in cleared
    # The old cookie replayed: refused (the session row is gone on every node).
    env.client.session.cookie_jar.clear()
    resp = await env.client.get("/panel/api/echo", headers={"Cookie": f"cc_panel={raw}"})
    assert resp.status == 401
    # Disabling the agent ends a live session at once.
    await env.login("c.durand")
    agents.set_active(env.store, "c.durand", False)
    assert (await env.client.get("/panel/api/echo")).status == 401


async def test_roles(env: Env) -> None:
    assert (await env.client.get("/panel/api/supervisor")).status == 401
    await env.login("c.durand")
    resp = await env.client.get("/panel/api/supervisor")
    assert resp.status == 403 and (await resp.json())["code"] == "forbidden"
    await env.login("s.chef")
    assert (await env.client.get("/panel/api/supervisor")).status == 200
    assert (await env.client.get("/panel/api/admin")).status == 403
    await env.login("a.admin")
    assert (await env.client.get("/panel/api/supervisor")).status == 200
    assert (await env.client.get("/panel/api/admin")).status == 200
    with pytest.raises(ValueError, match="unknown role 'root'"):
        require_role("root")


async def test_no_password_in_logs_and_only_hashes_stored(
    make_env: EnvFactory, caplog: pytest.LogCaptureFixture
) -> None:
    env = await make_env(max_failed_logins=2)
    caplog.set_level(logging.DEBUG)
    await env.login("c.durand", "un mauvais secret 1", status=401)
    await env.login("c.durand", "un mauvais secret 2", status=401)
    await env.login("c.durand", status=423)
    await env.login("s.chef")
    assert "panel: s.chef logged in" in caplog.text
    assert "c.durand locked" in caplog.text
    for secret in ("un mauvais secret", *PASSWORDS.values()):
        assert secret not in caplog.text
    with env.store.connect() as conn:
        hashes = conn.execute(select(agents.AGENT.c.password_hash)).scalars().all()
    assert all(h is None or h.startswith("$argon2id$") for h in hashes)
    assert not any(p in str(hashes) for p in PASSWORDS.values())
