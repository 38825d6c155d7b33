"""Authentication of the agent panel: login, sessions, CSRF, roles (issue 6).

Sessions
--------
``POST /panel/api/login`` checks the password (argon2id, :mod:`callcenter.store.panel`) and
opens a server-side session: a row in the shared database, so that every node of the service
knows it and a logout on one node ends it on all. The cookie ``cc_panel`` holds a random
256-bit id (the table holds its SHA-256), with ``HttpOnly`` (no script reads it),
``SameSite=Strict`` (no cross-site request carries it, RFC 6265bis section 5.4.7), ``Secure``
unless ``secure_cookies`` is off (development over http://127.0.0.1) and ``Path=/panel``. A new
id is issued at each login (no session fixation). A session ends after ``idle_timeout_s``
without a request (``last_seen`` is refreshed at most every 30 s, so up to 30 s later), at
``absolute_timeout_s`` after the login, at logout, when the agent's password is changed, or when
the agent is disabled.

Every request under ``/panel/api/`` (but the login) and ``/panel/ws`` needs a live session:
otherwise **401** ``{"error": "session expirée", "code": "session_expired"}``.

CSRF
----
Two independent defences (OWASP CSRF Prevention Cheat Sheet): ``SameSite=Strict`` on the
cookie, and for every state-changing request (not GET/HEAD/OPTIONS) under ``/panel/api/`` a
synchroniser token: the header ``X-CSRF-Token`` must equal the session's token (given by the
login and ``GET /panel/api/session`` answers; a page cannot read it cross-origin and a form
cannot set a header). Such requests and the WebSocket handshake (Cross-Site WebSocket
Hijacking: browsers do not apply CORS to WebSockets) must also carry no ``Origin`` or the
panel's own (RFC 6454 section 7; ``https://`` + Host is accepted too when ``secure_cookies``,
for a TLS-terminating reverse proxy). Refusals: **403** ``{"error": ..., "code": "csrf"}``.
The login is exempt from the token (there is no session yet) but not from the Origin check.

Brute force
-----------
Per account: ``max_failed_logins`` consecutive failures lock the account for ``lockout_s``
(**423** ``{"code": "locked", "retry_after_s": n}``), counted in the database so all nodes
agree. Per client address: more than ``login_rate_per_ip`` login attempts in a minute get
**429** with ``Retry-After`` (counted per node; behind a reverse proxy the address is the
proxy's: rate-limit there too). Unknown login, wrong password, disabled account and account
without a password all get the same **401** ``bad_credentials`` answer.

Roles
-----
``agent`` < ``supervisor`` < ``admin``; :func:`require_role` guards a handler (401 without a
session, 403 below the role).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hmac
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from callcenter.config import PanelConfig
from callcenter.store import panel as store_panel
from callcenter.store.agents import AgentInfo
from callcenter.web.panel.security import STATIC_PREFIX, is_panel_path, setup_panel_security

logger = logging.getLogger(__name__)

__all__ = [
    "PANEL_USER",
    "PanelConfig",
    "PanelUser",
    "Role",
    "current_user",
    "require_role",
    "setup_panel_auth",
]

Role = Literal["agent", "supervisor", "admin"]
"""Panel roles; order: agent < supervisor < admin."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

COOKIE_NAME = "cc_panel"
COOKIE_PATH = "/panel"
CSRF_HEADER = "X-CSRF-Token"
API_PREFIX = "/panel/api/"
WS_PATH = "/panel/ws"
LOGIN_PATH = "/panel/api/login"
LOGOUT_PATH = "/panel/api/logout"
SESSION_PATH = "/panel/api/session"

RATE_WINDOW_S = 60.0
"""The per-address login rate is counted over this window."""
PURGE_INTERVAL_S = 600.0
"""Ended sessions nobody came back to are deleted this often."""
LOGIN_MAX = 64
PASSWORD_MAX = store_panel.PASSWORD_MAX

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class PanelUser:
    """The agent behind a panel request."""

    login: str
    display_name: str
    role: str
    """A :data:`Role` value."""
    session_id: str
    """The session's SHA-256 (as stored): identifies it without being a credential."""
    csrf_token: str
    agent: AgentInfo
    """From the store (skills etc.)."""


PANEL_USER: web.RequestKey[PanelUser] = web.RequestKey("panel_user")
"""``request[PANEL_USER]``: the :class:`PanelUser`, set by the middleware when the request has a
live session (always under ``/panel/api/`` but the login, and on ``/panel/ws``).

A :class:`aiohttp.web.RequestKey` rather than the string ``"panel_user"``: aiohttp 3.14 warns
(``NotAppKeyWarning``) on string keys, and the tests turn warnings into errors.
"""
_LOOKED_UP: web.RequestKey[bool] = web.RequestKey("panel_session_looked_up")


def _error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, "code": code, **extra}, status=status)


def session_expired() -> web.Response:
    """The 401 answer of a request without a live session."""
    return _error(401, "session_expired", "session expirée")


def forbidden() -> web.Response:
    """The 403 answer of a request below the handler's role."""
    return _error(403, "forbidden", "Accès réservé.")


def _csrf_refused(message: str) -> web.Response:
    return _error(403, "csrf", message)


def _unavailable() -> web.Response:
    return _error(503, "unavailable", "Service momentanément indisponible.")


@dataclass
class _LoginRate:
    """Login attempts per client address over the last minute (this node's)."""

    limit: int
    attempts: collections.OrderedDict[str, collections.deque[float]] = field(
        default_factory=collections.OrderedDict
    )

    def check(self, remote: str, now: float) -> float | None:
        """Count one attempt; return the seconds to wait when over the limit, else None."""
        window = self.attempts.pop(remote, None) or collections.deque()
        while window and window[0] <= now - RATE_WINDOW_S:
            window.popleft()
        self.attempts[remote] = window  # re-inserted: oldest activity first
        if len(window) >= self.limit:
            return max(1.0, window[0] + RATE_WINDOW_S - now)
        window.append(now)
        # Forget addresses idle for a minute, oldest first (bounded memory).
        while self.attempts:
            oldest = next(iter(self.attempts.values()))
            if oldest and oldest[-1] > now - RATE_WINDOW_S:
                break
            self.attempts.popitem(last=False)
        return None


@dataclass
class _AuthState:
    store: Engine
    config: PanelConfig
    clock: Callable[[], float]
    rate: _LoginRate
    hashing: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(max(1, os.cpu_count() or 1))
    )
    """Password checks at once: each argon2id check holds 64 MiB; a shift-start login storm
    then queues (same throughput: the checks are CPU-bound) instead of multiplying memory."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)


_STATE = web.AppKey("panel_auth_state", _AuthState)


def _own_origins(request: web.Request, config: PanelConfig) -> set[str]:
    own = {f"{request.scheme}://{request.host}"}
    if config.secure_cookies:
        own.add(f"https://{request.host}")
    return own


def _origin_ok(request: web.Request, config: PanelConfig) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin in _own_origins(request, config)


async def _lookup(request: web.Request, state: _AuthState) -> PanelUser | None:
    raw = request.cookies.get(COOKIE_NAME, "")
    if not raw:
        return None
    info = await asyncio.to_thread(
        store_panel.session_for,
        state.store,
        raw,
        state.now(),
        state.config.idle_timeout_s,
        state.config.absolute_timeout_s,
    )
    if info is None:
        return None
    return PanelUser(
        login=info.agent.login,
        display_name=info.agent.display_name,
        role=info.role,
        session_id=info.session_hash,
        csrf_token=info.csrf_token,
        agent=info.agent,
    )


async def current_user(request: web.Request) -> PanelUser | None:
    """The request's panel user, or None (no, expired or revoked session).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store is unavailable (pages answer 503).
    """
    if request.get(_LOOKED_UP):
        return request.get(PANEL_USER)
    user = await _lookup(request, request.config_dict[_STATE])
    request[_LOOKED_UP] = True
    if user is not None:
        request[PANEL_USER] = user
    return user


def require_role(role: str) -> Callable[[Handler], Handler]:
    """Guard a handler: 401 without a session, 403 when the user's role is below ``role``.

    Raises:
        ValueError: ``role`` is not a panel role.
    """
    rank = store_panel.role_rank(role)
    if rank < 0:
        raise ValueError(f"require_role: unknown role {role!r}")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                user = await current_user(request)
            except SQLAlchemyError as exc:
                logger.error("panel: session store unavailable: %s", type(exc).__name__)
                return _unavailable()
            if user is None:
                return session_expired()
            if store_panel.role_rank(user.role) < rank:
                return forbidden()
            return await handler(request)

        return guarded

    return decorate


@web.middleware
async def panel_auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions, expiry and CSRF for ``/panel/`` (see the module docstring)."""
    path = request.path
    if not is_panel_path(path) or path.startswith(STATIC_PREFIX):
        return await handler(request)
    state = request.config_dict[_STATE]
    guarded = path.startswith(API_PREFIX) or path == WS_PATH
    unsafe = request.method not in _SAFE_METHODS
    if (path == WS_PATH or (guarded and unsafe)) and not _origin_ok(request, state.config):
        return _csrf_refused("Origine de la requête refusée.")
    if path == LOGIN_PATH:
        return await handler(request)
    try:
        user = await current_user(request)
    except SQLAlchemyError as exc:
        logger.error("panel: session store unavailable: %s", type(exc).__name__)
        return _unavailable()
    if not guarded:
        return await handler(request)  # pages decide (redirect to the login page)
    if user is None:
        response = session_expired()
        if COOKIE_NAME in request.cookies:
            _clear_cookie(response, state.config)
        return response
    if unsafe and path != WS_PATH:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), user.csrf_token.encode()):
            return _csrf_refused("Jeton de sécurité absent ou invalide : rechargez la page.")
    return await handler(request)


def _set_cookie(response: web.StreamResponse, raw_id: str, config: PanelConfig) -> None:
    # No Max-Age: a browser-session cookie; the server enforces idle and absolute expiry.
    response.set_cookie(
        COOKIE_NAME,
        raw_id,
        path=COOKIE_PATH,
        secure=config.secure_cookies,
        httponly=True,
        samesite="Strict",
    )


def _clear_cookie(response: web.StreamResponse, config: PanelConfig) -> None:
    response.del_cookie(
        COOKIE_NAME,
        path=COOKIE_PATH,
        secure=config.secure_cookies,
        httponly=True,
        samesite="Strict",
    )


def _user_json(user: PanelUser) -> dict[str, Any]:
    return {
        "login": user.login,
        "role": user.role,
        "display_name": user.display_name,
        "csrf_token": user.csrf_token,
    }


async def _login(request: web.Request) -> web.StreamResponse:
    state = request.config_dict[_STATE]
    config = state.config
    retry = state.rate.check(request.remote or "?", state.clock())
    if retry is not None:
        return web.json_response(
            {
                "error": "Trop de tentatives de connexion. Réessayez dans une minute.",
                "code": "rate_limited",
                "retry_after_s": math.ceil(retry),
            },
            status=429,
            headers={"Retry-After": str(math.ceil(retry))},
        )
    try:
        body = await request.json()
    except ValueError:
        body = None
    login = body.get("login") if isinstance(body, dict) else None
    password = body.get("password") if isinstance(body, dict) else None
    if not isinstance(login, str) or not isinstance(password, str):
        return _error(400, "bad_request", "Identifiant et mot de passe requis.")
    login = login.strip().lower()
    bad = _error(401, "bad_credentials", "Identifiant ou mot de passe incorrect.")
    if not login or len(login) > LOGIN_MAX or not password or len(password) > PASSWORD_MAX:
        return bad
    try:
        async with state.hashing:
            result = await asyncio.to_thread(
                store_panel.authenticate,
                state.store,
                login,
                password,
                state.now(),
                max_failed=config.max_failed_logins,
                lockout_s=config.lockout_s,
            )
        if result.status == "locked":
            wait = math.ceil(result.retry_after_s)
            return web.json_response(
                {
                    "error": "Compte verrouillé après trop d'échecs. Réessayez plus tard.",
                    "code": "locked",
                    "retry_after_s": wait,
                },
                status=423,
                headers={"Retry-After": str(wait)},
            )
        if result.status == "bad":
            if result.locked_now:
                logger.warning("panel: account %s locked after failed logins", login)
            else:
                logger.info("panel: login refused")
            return bad
        old = request.cookies.get(COOKIE_NAME)
        if old:
            await asyncio.to_thread(store_panel.delete_session, state.store, old)
        new = await asyncio.to_thread(
            store_panel.create_session,
            state.store,
            login,
            now=state.now(),
            absolute_s=config.absolute_timeout_s,
        )
        info = await asyncio.to_thread(
            store_panel.session_for,
            state.store,
            new.raw_id,
            state.now(),
            config.idle_timeout_s,
            config.absolute_timeout_s,
        )
    except SQLAlchemyError as exc:
        logger.error("panel: login store unavailable: %s", type(exc).__name__)
        return _unavailable()
    if info is None:  # pragma: no cover - disabled in the instant between the two
        return bad
    logger.info("panel: %s logged in", login)
    response = web.json_response(
        {
            "login": info.agent.login,
            "role": info.role,
            "display_name": info.agent.display_name,
            "csrf_token": info.csrf_token,
        }
    )
    _set_cookie(response, new.raw_id, config)
    return response


async def _logout(request: web.Request) -> web.StreamResponse:
    state = request.config_dict[_STATE]
    user = await current_user(request)
    raw = request.cookies.get(COOKIE_NAME, "")
    try:
        if raw:
            await asyncio.to_thread(store_panel.delete_session, state.store, raw)
    except SQLAlchemyError as exc:
        logger.error("panel: logout store unavailable: %s", type(exc).__name__)
        return _unavailable()
    if user is not None:
        logger.info("panel: %s logged out", user.login)
    response = web.Response(status=204)
    _clear_cookie(response, state.config)
    return response


async def _session(request: web.Request) -> web.StreamResponse:
    state = request.config_dict[_STATE]
    user = await current_user(request)
    if user is None:  # pragma: no cover - the middleware answered 401
        return session_expired()
    return web.json_response({**_user_json(user), "idle_timeout_s": state.config.idle_timeout_s})


async def _purge_sessions(app: web.Application) -> AsyncIterator[None]:
    state = app[_STATE]

    async def loop() -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL_S)
            try:
                count = await asyncio.to_thread(
                    store_panel.purge_expired_sessions,
                    state.store,
                    state.now(),
                    idle_s=state.config.idle_timeout_s,
                )
            except SQLAlchemyError as exc:
                logger.warning("panel: session purge failed: %s", type(exc).__name__)
            else:
                if count:
                    logger.info("panel: %d ended sessions purged", count)

    task = asyncio.create_task(loop(), name="panel-session-purge")
    try:
        yield
    finally:
        task.cancel()
        # Waits for the task without re-raising its cancellation (ours would still propagate).
        await asyncio.wait([task])


def setup_panel_auth(
    app: web.Application,
    *,
    store: Engine,
    config: PanelConfig,
    clock: Callable[[], float] = time.time,
) -> None:
    """Add the panel's authentication to ``app`` (before it starts).

    The session/CSRF middleware, ``POST /panel/api/login``, ``POST /panel/api/logout``,
    ``GET /panel/api/session``, the security headers of :mod:`.security`, and a background
    purge of ended sessions.

    Args:
        app: The application serving ``/panel/``.
        store: The store's engine (sessions and agents).
        config: The ``[panel]`` configuration.
        clock: POSIX time (seconds), for session expiry and the login rate.
    """
    app[_STATE] = _AuthState(store, config, clock, _LoginRate(config.login_rate_per_ip))
    app.middlewares.append(panel_auth_middleware)
    setup_panel_security(app, hsts=config.secure_cookies)
    app.router.add_post(LOGIN_PATH, _login)
    app.router.add_post(LOGOUT_PATH, _logout)
    app.router.add_get(SESSION_PATH, _session)
    app.cleanup_ctx.append(_purge_sessions)
