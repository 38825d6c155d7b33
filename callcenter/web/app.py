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

Privacy choice: a list of calls is an overview (dashboards, screenshots, exports), so it
leaves out the caller's number; the number is part of one call's own trail, which an operator
opens on purpose. Trail responses carry ``Cache-Control: no-store``. There is no
authentication in this issue: the server binds to the configured host only (default
``127.0.0.1``), and must not be exposed beyond it until the agent panel adds authentication.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from callcenter.metrics import Metrics
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

_NO_STORE = {"Cache-Control": "no-store"}


def make_app(*, trail: CallTrail, metrics: Metrics, health: HealthState) -> web.Application:
    """Build the HTTP application.

    Args:
        trail: The call event trail to read calls from.
        metrics: The metrics to expose on ``/metrics``.
        health: The state shown by ``/health``, updated by the caller.

    Returns:
        The aiohttp application (serve it with :func:`start_http`).
    """
    app = web.Application()
    app[TRAIL_KEY] = trail
    app[METRICS_KEY] = metrics
    app[HEALTH_KEY] = health
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/api/calls", _list_calls)
    # Call-IDs may contain "/" (RFC 3261 section 25.1 "word"): match the rest of the path.
    app.router.add_get("/api/calls/{sip_call_id:.+}", _get_call)
    return app


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


def _error(status: int, message: str, **extra: str) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=_NO_STORE)


async def _list_calls(request: web.Request) -> web.Response:
    raw = request.query.get("limit")
    limit = DEFAULT_LIMIT
    if raw is not None:
        try:
            limit = int(raw, 10)
        except ValueError:
            return _error(400, f"limit must be an integer between 1 and {MAX_LIMIT}")
        if not 1 <= limit <= MAX_LIMIT:
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
