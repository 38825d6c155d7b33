"""The service's HTTP API (aiohttp): health, Prometheus metrics and the call event trail.

Routes:

- ``GET /health``: 200 ``{"status": "ok", "active_calls": n}``; 503 ``{"status": "starting"}``
  before the service accepts calls and ``{"status": "draining", "active_calls": n}`` after
  SIGTERM (so a load balancer stops sending calls here).
- ``GET /metrics``: Prometheus text exposition.
- ``GET /api/calls?limit=N``: the latest calls, newest first (1 <= N <= 500, default 50;
  400 otherwise), without events and **without the caller's number**.
- ``GET /api/calls/{sip_call_id}``: one call's trail with its events in order, **including the
  caller's number** (404 if unknown). The Call-ID may contain ``/``: percent-encode it.
- ``GET /api/usagers/{id}/contacts?reason=WHY&limit=N``: a usager's contact history, newest
  first (1 <= N <= 500, default 100). It reads a dossier, so it needs a bearer token from
  ``http.api_tokens`` (401 otherwise) and a ``reason`` (400 without); every read is written to
  the audit log with the token's name as actor, the reason and ``via=api``. 404 for an unknown
  usager (not audited: nothing was read).

When the listener is reachable beyond the machine (``http.host`` not loopback) the call trail
routes need a bearer token too (``trail_requires_token``); TLS belongs to a reverse proxy.

Privacy choice: a list of calls is an overview (dashboards, screenshots, exports), so it
leaves out the caller's number; the number is part of one call's own trail, which an operator
opens on purpose. Trail responses carry ``Cache-Control: no-store``. There is no
authentication on the call trail yet: the server binds to the configured host only (default
``127.0.0.1``), and must not be exposed beyond it until the agent panel adds authentication.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from callcenter.metrics import Metrics
from callcenter.store import dossiers
from callcenter.store.agents import hash_token
from callcenter.store.trail import CallTrail

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
"""Default bind address: loopback only."""
DEFAULT_PORT = 8080
"""Default HTTP port."""
DEFAULT_LIMIT = 50
"""Calls returned by ``GET /api/calls`` without ``limit``."""
MAX_LIMIT = 500
"""Largest ``limit`` accepted by ``GET /api/calls``."""

MAX_ID = 2**31 - 1
"""Largest id an ``integer`` column holds (PostgreSQL); larger ids are unknown."""
MAX_REASON = 200
"""Longest audit reason accepted from an API client."""
DEFAULT_CONTACTS = 100
"""Contacts returned by ``GET /api/usagers/{id}/contacts`` without ``limit``."""

HealthStatus = Literal["starting", "ok", "draining"]


@dataclass(slots=True)
class HealthState:
    """Service state shown by ``GET /health``; the composition root updates it in place."""

    state: HealthStatus = "starting"
    """``starting`` until calls are accepted, ``ok``, then ``draining`` after SIGTERM."""
    active_calls: int = 0
    """Calls in progress."""


TRAIL_KEY = web.AppKey("trail", CallTrail)
METRICS_KEY = web.AppKey("metrics", Metrics)
HEALTH_KEY = web.AppKey("health", HealthState)


@dataclass(frozen=True, slots=True)
class DossierApi:
    """What the dossier routes need: the store and the clients allowed to read it."""

    store: Engine
    """The dossier store (synchronous engine, used from a worker thread)."""
    tokens: Mapping[str, str]
    """Client name -> SHA-256 hex of its bearer token."""

    def client(self, authorization: str | None) -> str | None:
        """The name of the client presenting ``Authorization: Bearer <token>``, or None."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        # RFC 7235 section 2.1: the scheme is case-insensitive.
        if scheme.lower() != "bearer" or not token.strip():
            return None
        digest = hash_token(token.strip())
        found = None
        for name, expected in self.tokens.items():
            # Compare against every entry, in constant time, whatever matches first.
            if hmac.compare_digest(digest, expected):
                found = name
        return found


DOSSIER_API_KEY = web.AppKey("dossier_api", DossierApi)

_NO_STORE = {"Cache-Control": "no-store"}


def make_app(
    *,
    trail: CallTrail,
    metrics: Metrics,
    health: HealthState,
    dossier_api: DossierApi | None = None,
    trail_requires_token: bool = False,
) -> web.Application:
    """Build the HTTP application.

    Args:
        trail: The call event trail to read calls from.
        metrics: The metrics to expose on ``/metrics``.
        health: The state shown by ``/health``, updated by the caller.
        dossier_api: The dossier store and its API clients (None: no dossier routes).
        trail_requires_token: The call trail routes (``/api/calls*``, which show callers'
            numbers) also need a bearer token of ``dossier_api`` — set when the HTTP listener
            is reachable beyond the machine.

    Returns:
        The aiohttp application (serve it with :func:`start_http`).
    """
    app = web.Application(middlewares=[_trail_guard(dossier_api)] if trail_requires_token else [])
    app[TRAIL_KEY] = trail
    app[METRICS_KEY] = metrics
    app[HEALTH_KEY] = health
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/calls", _list_calls)
    # Call-IDs may contain "/" (RFC 3261 section 25.1 "word"): match the rest of the path.
    app.router.add_get("/api/calls/{sip_call_id:.+}", _get_call)
    if dossier_api is not None:
        app[DOSSIER_API_KEY] = dossier_api
        app.router.add_get(r"/api/usagers/{usager_id:\d+}/contacts", _usager_contacts)
    return app


def _trail_guard(api: DossierApi | None) -> Any:
    """Middleware: ``/api/calls*`` answers only a client with a valid bearer token."""

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/api/calls"):
            if api is None or api.client(request.headers.get("Authorization")) is None:
                return _unauthorized()
        response: web.StreamResponse = await handler(request)
        return response

    return guard


def _unauthorized() -> web.Response:
    return web.json_response(
        {"error": "a valid bearer token is required"},
        status=401,
        headers={**_NO_STORE, "WWW-Authenticate": 'Bearer realm="callcenter"'},
    )


async def start_http(
    app: web.Application, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` only.

    Args:
        app: The application from :func:`make_app`.
        host: Address to bind (only this one; default loopback).
        port: TCP port; 0 picks a free one.

    Returns:
        The runner (call ``await runner.cleanup()`` to stop) and the bound port.
    """
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host=host, port=port)
    await site.start()
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return runner, bound


async def _health(request: web.Request) -> web.Response:
    health = request.app[HEALTH_KEY]
    if health.state == "ok":
        return web.json_response({"status": "ok", "active_calls": health.active_calls})
    if health.state == "draining":
        body = {"status": "draining", "active_calls": health.active_calls}
        return web.json_response(body, status=503)
    return web.json_response({"status": health.state}, status=503)


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = request.app[METRICS_KEY].render()
    # content_type carries parameters (version, charset) that aiohttp's content_type= rejects.
    return web.Response(body=body, headers={"Content-Type": content_type})


def _limit(request: web.Request, default: int) -> int | None:
    """The ``limit`` query parameter (``default`` when absent), or None if not 1..MAX_LIMIT."""
    raw = request.query.get("limit")
    if raw is None:
        return default
    try:
        limit = int(raw, 10)
    except ValueError:
        return None
    return limit if 1 <= limit <= MAX_LIMIT else None


def _error(status: int, message: str, **extra: str) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=_NO_STORE)


async def _list_calls(request: web.Request) -> web.Response:
    limit = _limit(request, DEFAULT_LIMIT)
    if limit is None:
        return _error(400, f"limit must be an integer between 1 and {MAX_LIMIT}")
    try:
        calls = await request.app[TRAIL_KEY].list_calls(limit)
    except SQLAlchemyError as exc:
        logger.error("call trail read failed (%s)", type(exc).__name__)
        return _error(503, "call store unavailable")
    return web.json_response(calls, headers=_NO_STORE)


async def _get_call(request: web.Request) -> web.Response:
    sip_call_id = request.match_info["sip_call_id"]
    try:
        call = await request.app[TRAIL_KEY].get_call(sip_call_id)
    except SQLAlchemyError as exc:
        logger.error("call trail read failed (%s)", type(exc).__name__)
        return _error(503, "call store unavailable")
    if call is None:
        return _error(404, "call not found", sip_call_id=sip_call_id)
    return web.json_response(call, headers=_NO_STORE)


def _contact_json(contact: dossiers.ContactInfo) -> dict[str, Any]:
    return {
        "id": contact.id,
        "usager_id": contact.usager_id,
        "tiers_id": contact.tiers_id,
        "sip_call_id": contact.sip_call_id,
        "channel": contact.channel,
        "started_at": contact.started_at.isoformat(),
        "ended_at": None if contact.ended_at is None else contact.ended_at.isoformat(),
        "handled_by": contact.handled_by,
        "bot_path": list(contact.bot_path),
        "intents": list(contact.intents),
        "summary": contact.summary,
        "outcome": contact.outcome,
        "agent_notes": contact.agent_notes,
        "follow_up": contact.follow_up,
    }


async def _usager_contacts(request: web.Request) -> web.Response:
    api = request.app[DOSSIER_API_KEY]
    actor = api.client(request.headers.get("Authorization"))
    if actor is None:
        return _unauthorized()
    reason = request.query.get("reason", "").strip()
    if not reason or len(reason) > MAX_REASON:
        return _error(
            400, f"reason is required (why the dossier is read, {MAX_REASON} characters at most)"
        )
    limit = _limit(request, DEFAULT_CONTACTS)
    if limit is None:
        return _error(400, f"limit must be an integer between 1 and {MAX_LIMIT}")
    usager_id = int(request.match_info["usager_id"])
    if usager_id > MAX_ID:  # beyond the column's range: the same 404 on both databases
        return _error(404, "usager not found")

    def read() -> list[dossiers.ContactInfo] | None:
        if not dossiers.usager_exists(api.store, usager_id):
            return None
        return dossiers.contacts_for(
            api.store, usager_id, actor=actor, reason=reason, via=dossiers.Via.API, limit=limit
        )

    try:
        contacts = await asyncio.to_thread(read)
    except SQLAlchemyError as exc:
        logger.error("dossier store read failed (%s)", type(exc).__name__)
        return _error(503, "dossier store unavailable")
    if contacts is None:
        return _error(404, "usager not found")
    body = {"usager_id": usager_id, "contacts": [_contact_json(c) for c in contacts]}
    return web.json_response(body, headers=_NO_STORE)
