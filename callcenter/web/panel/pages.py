"""The agent panel's HTML pages and static assets (issue 6).

Routes (all French pages, ``lang="fr"``, no inline script or style so that the strict CSP of
:mod:`.security` holds):

- ``GET /panel/login``: the login form (``static/login.html``), open to everyone.
- ``GET /panel`` → 302 ``/panel/``.
- ``GET /panel/``: the agent page (``static/agent.html``); 302 to ``/panel/login`` without a
  session.
- ``GET /panel/supervision``: the supervisor page (``static/supervisor.html``) for the roles
  ``supervisor`` and ``admin``; a French 403 page for an agent; 302 to the login without a
  session.
- ``/panel/static/...``: the CSS and ES modules (no build step).

The pages hold no personal data: every datum comes from the JSON API (session cookie + CSRF
header) and is inserted with ``textContent``. HTML is served with ``Cache-Control: no-store``
(a page must never come from a shared cache or the back/forward cache after logout); CSS and
JS with ``no-cache`` (the browser revalidates with ``Last-Modified``, RFC 9111 section 5.2.2.4),
so a deployment never runs a stale module against a newer API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

STATIC_DIR = Path(__file__).parent / "static"
"""The panel's static files (HTML, CSS, ES modules)."""
STATIC_PREFIX = "/panel/static/"
"""URL prefix of the static files."""
LOGIN_PATH = "/panel/login"
"""The login page."""
SUPERVISOR_ROLES = frozenset({"supervisor", "admin"})
"""Roles that may open the supervision page."""

CurrentUser = Callable[[web.Request], Awaitable[Any | None]]
"""``request -> user or None``; the user has a ``role`` attribute."""

_HTML_HEADERS = {"Cache-Control": "no-store", "Content-Type": "text/html; charset=utf-8"}


def _page(name: str, *, status: int = 200) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / name, status=status, headers=_HTML_HEADERS)


def add_panel_pages(app: web.Application, *, current_user: CurrentUser) -> None:
    """Add the panel's pages and static route to ``app``.

    Args:
        app: The aiohttp application (the panel's auth middleware, when present, also sets
            the security headers on these responses).
        current_user: Returns the request's panel user (with a ``role``), or None without a
            valid session.
    """

    async def login_page(request: web.Request) -> web.StreamResponse:
        return _page("login.html")

    async def panel_root(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/panel/")

    async def agent_page(request: web.Request) -> web.StreamResponse:
        if await current_user(request) is None:
            raise web.HTTPFound(LOGIN_PATH)
        return _page("agent.html")

    async def supervisor_page(request: web.Request) -> web.StreamResponse:
        user = await current_user(request)
        if user is None:
            raise web.HTTPFound(LOGIN_PATH)
        if getattr(user, "role", None) not in SUPERVISOR_ROLES:
            return _page("forbidden.html", status=403)
        return _page("supervisor.html")

    app.router.add_get(LOGIN_PATH, login_page)
    app.router.add_get("/panel", panel_root)
    app.router.add_get("/panel/", agent_page)
    app.router.add_get("/panel/supervision", supervisor_page)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR, name="panel_static")
    app.on_response_prepare.append(_static_cache_headers)


async def _static_cache_headers(request: web.Request, response: web.StreamResponse) -> None:
    """Cache policy of the static route: HTML never stored, CSS/JS revalidated."""
    if not request.path.startswith(STATIC_PREFIX):
        return
    if request.path.endswith(".html"):
        response.headers["Cache-Control"] = "no-store"
    elif "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-cache"
