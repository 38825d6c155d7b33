"""Security headers of the panel's responses, over real loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import Engine

from callcenter.store import db
from callcenter.web.panel.auth import PanelConfig, setup_panel_auth
from callcenter.web.panel.security import setup_panel_security

Client = TestClient[web.Request, web.Application]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
ALWAYS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'callcenter.sqlite3'}")
    db.create_schema(engine)
    yield engine
    engine.dispose()


async def _page(request: web.Request) -> web.Response:
    return web.Response(text="<h1>Connexion</h1>", content_type="text/html")


ClientFactory = Callable[[bool], Awaitable[Client]]


@pytest.fixture
async def make_client(store: Engine, tmp_path: Path) -> AsyncIterator[ClientFactory]:
    static = tmp_path / "static"
    static.mkdir()
    (static / "login.js").write_text("export {};\n")
    clients: list[Client] = []

    async def factory(secure: bool) -> Client:
        app = web.Application()
        setup_panel_auth(app, store=store, config=PanelConfig(secure_cookies=secure))
        setup_panel_security(app, hsts=secure)  # idempotent: headers set once
        app.router.add_get("/panel/login", _page)
        app.router.add_static("/panel/static/", static)
        app.router.add_get("/health", _page)
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/panel/login", 200),
        ("/panel/api/session", 401),  # refused by the auth middleware: headers all the same
        ("/panel/nulle-part", 404),  # aiohttp's own error page
    ],
)
async def test_headers_on_pages_api_and_errors(
    make_client: ClientFactory, path: str, status: int
) -> None:
    client = await make_client(False)
    resp = await client.get(path)
    assert resp.status == status
    for name, value in ALWAYS.items():
        assert resp.headers.getall(name) == [value], name
    assert resp.headers["Cache-Control"] == "no-store"
    assert "Strict-Transport-Security" not in resp.headers  # plain http (development)


async def test_static_assets_may_be_cached_and_other_paths_are_untouched(
    make_client: ClientFactory,
) -> None:
    client = await make_client(True)
    resp = await client.get("/panel/static/login.js")
    assert resp.status == 200 and resp.headers["Content-Security-Policy"] == CSP
    assert "no-store" not in resp.headers.get("Cache-Control", "")
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    resp = await client.get("/panel/login")
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    outside = await client.get("/health")
    assert outside.status == 200
    assert not {*ALWAYS, "Strict-Transport-Security"} & set(outside.headers)
    login = await client.post("/panel/api/login", json={"login": "x", "password": "y"})
    assert login.status == 401 and login.headers["Cache-Control"] == "no-store"
    assert login.headers["X-Frame-Options"] == "DENY"
