"""The agent API: REST actions and a WebSocket of routing events, with token auth (issue 5).

An agent is whoever holds an agent API token (``callcenter agents add`` / ``token``); the
routing agent id is the agent's ``login``. Agents on a SIP endpoint accept a call by answering
their phone (the call adapter sends ``OfferAccepted``); the REST accept/reject below serves the
browser softphone (issue 6) and scripts, against the same router.

Authentication
--------------
Every request carries ``Authorization: Bearer <agent token>``; the token is looked up in the
store (:func:`callcenter.store.agents.agent_for_token`, in a worker thread; a hit is cached for
``AgentApiConfig.auth_cache_s``). Missing, wrong or disabled → **401** with
``WWW-Authenticate: Bearer``. Browsers cannot set headers on a WebSocket, so the events
endpoint also takes the token as its first message, ``{"type": "auth", "token": "..."}``,
within ``ws_auth_timeout_s`` (5 s); otherwise the socket is closed with code **4401**. An open
socket re-checks its token every ``revalidate_s`` and is closed with 4401 once the agent is
disabled or the token rotated. After ``max_auth_failures`` failed attempts from one remote
address within ``auth_failure_window_s`` (a WebSocket that never authenticates counts as one),
that address gets **429** with ``Retry-After`` (on a WebSocket: 429 before the upgrade, 4429 if
it was blocked meanwhile) until the window has passed, whatever token it presents. (Behind a
reverse proxy the remote address is the proxy's: rate-limit there too.)

Every response under ``/api/agent/`` has ``Cache-Control: no-store``. Responses hold the
agent's login, routing state and call ids only: no caller number, name, usager id or intent.

REST (JSON bodies; unknown fields are refused)
----------------------------------------------
- ``GET /api/agent/me``: the agent's state (``Me`` below).
- ``POST /api/agent/login`` ``{"pause_reason"?: str}``: log in with the store's skills,
  available, or paused with that reason.
- ``POST /api/agent/logout``: log out (an offer ringing them goes to the next agent).
- ``POST /api/agent/ready``: available, from a pause or ending the wrap-up early (in a call:
  cancels a pending pause).
- ``POST /api/agent/pause`` ``{"reason": str}``: pause now, or after the wrap-up in a call.
- ``POST /api/agent/offers/{call_id}/accept``: take the call being offered to the agent.
- ``POST /api/agent/offers/{call_id}/reject``: decline it (it is not offered to them again).
- ``POST /api/agent/wrapup`` ``{"resolved"?: bool|null}``: end the wrap-up, saying whether the
  request was resolved at first contact (null or absent: not said).
- ``POST /api/agent/transfer`` ``{"queue": str}`` | ``{"agent": str}`` | ``{"number": str}``
  (exactly one): blind transfer of the caller the agent is talking to, to another queue, a
  logged-in colleague, or an external number on the operator's list (others: 403); the agent
  goes to wrap-up (see :mod:`callcenter.transfer`). 501 where the service has no transfers.

Successful actions answer 200 with ``Me``. Errors are ``{"error": "<message>", ...}``:
400 bad body (``"field"`` names the field; e.g. a pause ``reason`` not in the routing
configuration's ``pause_reasons``), 401, 404 unknown call (``"call_id"``), 409 the action does
not apply in the agent's state (``"state"`` is the current state), 429, 503 store unavailable.
A Call-ID may contain ``/``: percent-encode it.

``Me``::

    {"login": str, "state": "offline"|"available"|"reserved"|"on_call"|"wrap_up"|"paused",
     "since": float|null,            # POSIX seconds (routing clock) the state began
     "pause_reason": str|null, "pending_pause": str|null,
     "call_id": str|null,            # offered (reserved), in conversation, or being wrapped up
     "offer": Offer|null,            # while reserved: the offer (same fields as the "offer" event)
     "skills": {skill: 1..5},        # the router's when logged in, else the store's
     "pause_reasons": [str, ...]}    # the reasons ``pause`` accepts

WebSocket ``GET /api/agent/events``
-----------------------------------
Server → client, one JSON text message each; ``at``, ``since``, ``ring_deadline`` are POSIX
seconds (float) on the routing clock, durations are seconds:

- ``{"type": "hello", "agent": Me}``: first message after authentication, then on each reconnect
  (a panel resynchronises from it; events that follow it at once may repeat what it shows).
- ``{"type": "state", "state": str, "reason": str|null, "pending_pause": str|null, "at": float}``:
  the agent's state, pause reason or pending pause changed (e.g. ``paused``/``"non réponse"``
  after a ring timeout).
- ``{"type": "offer", "call_id": str, "queue": str, "priority": "low"|"normal"|"high"|"critical",
  "proficiency": int, "wait_s": float, "ring_deadline": float, "dial_out": bool, "at": float}``:
  ring the agent; ``queue`` is the queue through which they qualified; ``priority`` is the one
  the call is served with (repeat callers and callbacks raised); ``dial_out`` means a callback
  (nobody is on the line yet).
- ``{"type": "offer_ended", "call_id": str, "reason": "rejected"|"ring_timeout"|
  "caller_hung_up"|"call_cancelled"|"agent_logged_out"|"agent_paused", "at": float}``.
- ``{"type": "call_answered", "call_id": str, "queue": str, "via_queue": str, "wait_s": float,
  "at": float}``.
- ``{"type": "call_completed", "call_id": str, "queue": str, "talk_s": float, "at": float}``:
  the conversation ended; the wrap-up starts.
- ``{"type": "wrap_up_ended", "call_id": str, "queue": str, "handle_s": float,
  "resolved": bool|null, "timed_out": bool, "at": float}``.
- ``{"type": "event_ignored", "event": str, "call_id": str|null, "reason": str, "at": float}``:
  an action about this agent came too late (e.g. an accept after the ring timeout).
- ``{"type": "pong"}``: answer to a client ``{"type": "ping"}``.
- ``{"type": "error", "error": str}``: a client message was not understood (socket stays open).

Client → server: ``{"type": "auth", "token": str}`` (first message, when no header was sent) and
``{"type": "ping"}`` (optional application heartbeat). The server also sends WebSocket pings
every ``heartbeat_s`` and drops a peer that does not answer. Close codes: 4401 authentication
failed, timed out or revoked; 4429 too many failed authentications; 4408 the client reads too
slowly (its backlog passed ``max_backlog``: reconnect and resynchronise from ``hello``); 1001
server shutdown. Closing the socket never logs the agent out: a browser reload keeps the agent
in their state, and ``POST /api/agent/logout`` is the only way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

import routing as rt
from callcenter.routing_service import RoutingBackend
from callcenter.store import agents
from callcenter.store.agents import AgentInfo
from callcenter.transfer import TransferError, TransferPolicy, TransferTarget, check_target

logger = logging.getLogger(__name__)

WS_AUTH_FAILED = 4401
"""Close code: authentication failed, timed out, or the token stopped working."""
WS_TOO_SLOW = 4408
"""Close code: the client did not read its events fast enough."""
WS_RATE_LIMITED = 4429
"""Close code: too many failed authentications from this address."""

Transferrer = Callable[[str, str, TransferTarget], Awaitable[None]]
"""``(call_id, agent login, target)``: transfers the caller of ``call_id`` away from that agent;
raises :class:`~callcenter.transfer.TransferError` when it cannot."""

_NO_STORE = {"Cache-Control": "no-store"}
_PREFIX = "/api/agent/"


@dataclass(frozen=True, slots=True)
class AgentApiConfig:
    """Tunables of the agent API (defaults suit production; tests shorten them)."""

    auth_cache_s: float = 5.0
    """How long a successful token lookup is reused (a disabled agent is refused after it)."""
    ws_auth_timeout_s: float = 5.0
    """Time a WebSocket without an ``Authorization`` header has to send its auth message."""
    heartbeat_s: float = 20.0
    """Interval of WebSocket pings; a peer silent for half of it after a ping is dropped."""
    revalidate_s: float = 60.0
    """How often an open WebSocket re-checks its token."""
    max_auth_failures: int = 10
    """Failed authentications from one address tolerated within the window."""
    auth_failure_window_s: float = 60.0
    """Sliding window of the failed-authentication limit."""
    max_backlog: int = 256
    """Events queued for one WebSocket before it is closed as too slow (4408)."""
    max_tracked_addresses: int = 10_000
    """Addresses remembered by the rate limiter (the oldest are forgotten beyond)."""


class _AuthError(Exception):
    """Authentication refused; ``status`` is 401, 429 or 503."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(slots=True)
class AgentApi:
    """State of the agent API in one application (see :func:`add_agent_routes`)."""

    service: RoutingBackend
    """The router the actions go to and the events come from."""
    store: Engine
    """The store holding agents and their hashed tokens."""
    config: AgentApiConfig
    """Tunables."""
    clock: Callable[[], float]
    """Monotonic seconds, for the auth cache and the rate limit only."""
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    """Open event sockets (closed on shutdown)."""
    offers: dict[str, rt.OfferCall] = field(default_factory=dict)
    """Agent login -> the offer ringing them now (for ``Me.offer``)."""
    transfer: Transferrer | None = None
    """Performs a blind transfer of a call in conversation (None: transfers answer 501)."""
    transfer_policy: TransferPolicy = field(default_factory=TransferPolicy)
    """External numbers agents may transfer to."""
    _cache: dict[str, tuple[AgentInfo, float]] = field(default_factory=dict)
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _stop_tracking: Callable[[], None] | None = None
    _tracked: dict[str, Callable[[], None]] = field(default_factory=dict)

    # -- authentication ----------------------------------------------------------------------
    def check_rate(self, remote: str) -> None:
        """Raise a 429 :class:`_AuthError` while ``remote`` is over its failure limit."""
        failures = self._failures.get(remote)
        if failures is None:
            return
        now = self.clock()
        window = self.config.auth_failure_window_s
        while failures and failures[0] <= now - window:
            failures.popleft()
        if not failures:
            del self._failures[remote]
            return
        if len(failures) >= self.config.max_auth_failures:
            retry = max(1, math.ceil(failures[0] + window - now))
            raise _AuthError(429, "too many failed authentications; retry later", retry)

    def record_failure(self, remote: str) -> None:
        """Count one failed authentication from ``remote``."""
        failures = self._failures.pop(remote, None) or deque()
        failures.append(self.clock())
        self._failures[remote] = failures  # re-inserted: the dict is ordered by last failure
        while len(self._failures) > self.config.max_tracked_addresses:
            del self._failures[next(iter(self._failures))]
        if len(failures) == self.config.max_auth_failures:
            logger.warning("agent API: failed authentications rate-limited for %s", remote)

    async def lookup(self, token: str) -> AgentInfo | None:
        """The active agent holding ``token`` (cached briefly), or None.

        Raises:
            SQLAlchemyError: the store cannot be read.
        """
        if not token:
            return None
        key = agents.hash_token(token)
        now = self.clock()
        cached = self._cache.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        info = await asyncio.to_thread(agents.agent_for_token, self.store, token)
        now = self.clock()
        for stale in [k for k, (_, until) in self._cache.items() if until <= now]:
            del self._cache[stale]
        if info is None:
            self._cache.pop(key, None)
        else:
            self._cache[key] = (info, now + self.config.auth_cache_s)
        return info

    async def authenticate(self, token: str, remote: str) -> AgentInfo:
        """Check the rate limit, then the token.

        Raises:
            _AuthError: 429 rate-limited, 401 refused, 503 store unavailable.
        """
        self.check_rate(remote)
        try:
            info = await self.lookup(token)
        except SQLAlchemyError as exc:
            logger.error("agent store read failed (%s)", type(exc).__name__)
            raise _AuthError(503, "agent store unavailable") from None
        if info is None:
            self.record_failure(remote)
            raise _AuthError(401, "a valid agent token is required")
        self.ensure_tracked(info.login)
        return info

    # -- tracking the current offers ---------------------------------------------------------
    def ensure_tracked(self, login: str) -> None:
        """Follow this agent's decisions on this node.

        With several nodes, the offer of a call held by another node reaches the global
        listeners of that node only; the agent's own listener gets it on every node.
        """
        if login not in self._tracked:
            self._tracked[login] = self.service.listen_agent(login, self.track)

    def track(self, decision: rt.Decision) -> None:
        """Global routing listener: remember which offer rings which agent."""
        if isinstance(decision, rt.OfferCall):
            self.offers[decision.agent_id] = decision
        elif isinstance(decision, rt.AgentStateChanged):
            if decision.state is not rt.AgentState.RESERVED:
                self.offers.pop(decision.agent_id, None)

    # -- views ---------------------------------------------------------------------------------
    def me(self, info: AgentInfo) -> dict[str, Any]:
        """The ``Me`` body for this agent."""
        agent = self.service.router.agents.get(info.login)
        offer = self.offers.get(info.login)
        if agent is None:
            state, since, reason, pending, call_id = "offline", None, None, None, None
            skills: Mapping[str, int] = info.skills
        else:
            state, since = agent.state.value, agent.since
            reason, pending, call_id = agent.pause_reason, agent.pending_pause, agent.call_id
            skills = agent.skills if agent.state is not rt.AgentState.OFFLINE else info.skills
        if agent is None or agent.state is not rt.AgentState.RESERVED:
            offer = None
        return {
            "login": info.login,
            "state": state,
            "since": since,
            "pause_reason": reason,
            "pending_pause": pending,
            "call_id": call_id,
            "offer": None if offer is None else _offer_body(offer, self.service.config),
            "skills": dict(skills),
            "pause_reasons": list(self.service.config.pause_reasons),
        }


AGENT_API_KEY = web.AppKey("agent_api", AgentApi)
"""The agent API's state in the application."""


def add_agent_routes(
    app: web.Application,
    *,
    routing: RoutingBackend,
    store: Engine,
    clock: Callable[[], float] = time.monotonic,
    config: AgentApiConfig | None = None,
    transfer: Transferrer | None = None,
    transfer_policy: TransferPolicy | None = None,
) -> None:
    """Add the agent API (``/api/agent/...``) to ``app``; see the module docstring.

    Args:
        app: The application (not yet started).
        routing: The routing service the agents' actions go to.
        store: The store holding agents and their token hashes (synchronous engine).
        clock: Monotonic seconds for the token cache and the failed-auth rate limit (events
            are stamped with ``routing.now()``, the router's own clock).
        config: Tunables (timeouts, limits); defaults otherwise.
        transfer: Performs blind transfers (the application's); None: 501.
        transfer_policy: External numbers agents may transfer to (none by default).

    Raises:
        RuntimeError: the routes were already added to ``app``.
    """
    if AGENT_API_KEY in app:
        raise RuntimeError("the agent API is already part of this application")
    api = AgentApi(
        service=routing,
        store=store,
        config=config or AgentApiConfig(),
        clock=clock,
        transfer=transfer,
        transfer_policy=transfer_policy or TransferPolicy(),
    )
    app[AGENT_API_KEY] = api
    api._stop_tracking = routing.listen(api.track)
    for method, path, handler in ACTIONS:
        app.router.add_route(method, f"/api/agent/{path}", _authenticated(handler))
    app.router.add_get("/api/agent/events", _events)
    app.on_response_prepare.append(_no_store)
    app.on_shutdown.append(_close_sockets)
    app.on_cleanup.append(_stop_tracking)


# -- plumbing ----------------------------------------------------------------------------------


async def _no_store(request: web.Request, response: web.StreamResponse) -> None:
    # Also covers aiohttp's own 404/405 pages and the WebSocket handshake under the prefix.
    if request.path.startswith(_PREFIX):
        response.headers["Cache-Control"] = "no-store"


async def _close_sockets(app: web.Application) -> None:
    # Concurrently: each close waits for the peer's closing frame (up to the socket's timeout).
    sockets = list(app[AGENT_API_KEY].sockets)
    await asyncio.gather(
        *(ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown") for ws in sockets)
    )


async def _stop_tracking(app: web.Application) -> None:
    api = app[AGENT_API_KEY]
    if api._stop_tracking is not None:
        api._stop_tracking()
        api._stop_tracking = None
    for stop in api._tracked.values():
        stop()
    api._tracked.clear()


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, headers=_NO_STORE)


def _auth_response(exc: _AuthError) -> web.Response:
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="callcenter-agent"'
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return web.json_response({"error": exc.message}, status=exc.status, headers=headers)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _remote(request: web.Request) -> str:
    return request.remote or "unknown"


class _BadRequest(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


async def _body(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest("body", "body: not valid JSON") from None
    if not isinstance(data, dict):
        raise _BadRequest("body", "body: expected a JSON object")
    for key in data:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise _BadRequest(key, f"{key}: unknown field (accepted: {known})")
    return data


Handler = Callable[[web.Request, AgentApi, AgentInfo], Awaitable[web.Response]]
"""An agent action: the request, the API's state and the authenticated agent."""


def _authenticated(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def wrapper(request: web.Request) -> web.Response:
        api = request.app[AGENT_API_KEY]
        try:
            info = await api.authenticate(_bearer(request) or "", _remote(request))
        except _AuthError as exc:
            return _auth_response(exc)
        try:
            return await handler(request, api, info)
        except _BadRequest as exc:
            return _error(400, exc.message, field=exc.field)

    return functools.wraps(handler)(wrapper)


def _conflict(api: AgentApi, info: AgentInfo, message: str) -> web.Response:
    return _error(409, message, state=api.me(info)["state"])


async def _apply(api: AgentApi, info: AgentInfo, event: rt.Event) -> web.Response:
    """Send ``event`` to the router; 200 with ``Me``, or 409 when it does not apply."""
    try:
        decisions = await api.service.submit(event)
    except rt.UnknownAgentError:
        return _conflict(api, info, f"agent {info.login!r} is not logged in")
    except rt.RoutingError as exc:
        return _conflict(api, info, str(exc))
    for decision in decisions:
        if isinstance(decision, rt.EventIgnored) and decision.agent_id == info.login:
            return _conflict(api, info, f"{decision.event} ignored: {decision.reason}")
    return web.json_response(api.me(info), headers=_NO_STORE)


def _logged_in(api: AgentApi, info: AgentInfo) -> rt.Agent | None:
    agent = api.service.router.agents.get(info.login)
    if agent is None or agent.state is rt.AgentState.OFFLINE:
        return None
    return agent


# -- REST handlers -----------------------------------------------------------------------------


async def _me(request: web.Request, api: AgentApi, info: AgentInfo) -> web.Response:
    return web.json_response(api.me(info), headers=_NO_STORE)


async def _login(request: web.Request, api: AgentApi, info: AgentInfo) -> web.Response:
    body = await _body(request, frozenset({"pause_reason"}))
    reason = body.get("pause_reason")
    if reason is not None:
        _check_reason(api, reason, "pause_reason")
    if _logged_in(api, info) is not None:
        return _conflict(api, info, f"agent {info.login!r} is already logged in")
    event = rt.AgentLoggedIn(info.login, dict(info.skills), api.service.now(), reason)
    response = await _apply(api, info, event)
    if response.status == 200:
        logger.info("agent %s logged in through the API", info.login)
    return response


async def _logout(request: web.Request, api: AgentApi, info: AgentInfo) -> web.Response:
    await _body(request, frozenset())
    if _logged_in(api, info) is None:
        return _conflict(api, info, f"agent {info.login!r} is not logged in")
    response = await _apply(api, info, rt.AgentLoggedOut(info.login, api.service.now()))
    if response.status == 200:
        logger.info("agent %s logged out through the API", info.login)
    return response


async def _ready(request: web.Request, api: AgentApi, info: AgentInfo) -> web.Response:
    await _body(request, frozenset())
    if _logged_in(api, info) is None:
        return _conflict(api, info, f"agent {info.login!r} is not logged in")
    return await _apply(api, info, rt.AgentReady(info.login, api.service.now()))


def _check_reason(api: AgentApi, reason: object, name: str) -> str:
    known = api.service.config.pause_reasons
    if not isinstance(reason, str) or reason not in known:
        raise _BadRequest(
            name, f"{name}: {reason!r} is not a pause reason (one of: {', '.join(known)})"
        )
    return reason


async def _pause(request: web.Request, api: AgentApi, info: AgentInfo) -> web.Response:
    body = await _body(request, frozenset({"reason"}))
    if "reason" not in body:
        raise _BadRequest("reason", "reason: required")
    reason = _check_reason(api, body["reason"], "reason")
    if _logged_in(api, info) is None:
        return _conflict(api, info, f"agent {info.login!r} is not logged in")
    return await _apply(api, info, rt.AgentPauseRequested(info.login, reason, api.service.now()))


async def _offer_action(
    request: web.Request, api: AgentApi, info: AgentInfo, *, accept: bool
) -> web.Response:
    await _body(request, frozenset())
    call_id = request.match_info["call_id"]
    router = api.service.router
    if router.call_phase(call_id) is None:
        return _error(404, "unknown call", call_id=call_id)
    agent = _logged_in(api, info)
    if agent is None:
        return _conflict(api, info, f"agent {info.login!r} is not logged in")
    if agent.state is not rt.AgentState.RESERVED or agent.call_id != call_id:
        return _conflict(api, info, f"call {call_id} is not being offered to {info.login!r}")
    now = api.service.now()
    event: rt.Event = (
        rt.OfferAccepted(info.login, call_id, now)
        if accept
        else rt.OfferRejected(info.login, call_id, now)
    )
    return await _apply(api, info, event)


async def _accept(request: web.Request, api: AgentApi, info: AgentInfo) -> web.Response:
    return await _offer_action(request, api, info, accept=True)


async def _reject(request: web.Request, api: AgentApi, info: AgentInfo) -> web.Response:
    return await _offer_action(request, api, info, accept=False)


async def _wrapup(request: web.Request, api: AgentApi, info: AgentInfo) -> web.Response:
    body = await _body(request, frozenset({"resolved"}))
    resolved = body.get("resolved")
    if resolved is not None and not isinstance(resolved, bool):
        raise _BadRequest("resolved", f"resolved: expected true, false or null, got {resolved!r}")
    agent = _logged_in(api, info)
    if agent is None:
        return _conflict(api, info, f"agent {info.login!r} is not logged in")
    if agent.state is not rt.AgentState.WRAP_UP:
        return _conflict(api, info, f"agent {info.login!r} is not in wrap-up")
    return await _apply(api, info, rt.WrapUpDone(info.login, api.service.now(), resolved))


_TRANSFER_KINDS = ("queue", "agent", "number")


async def _transfer(request: web.Request, api: AgentApi, info: AgentInfo) -> web.Response:
    body = await _body(request, frozenset(_TRANSFER_KINDS))
    given = [kind for kind in _TRANSFER_KINDS if kind in body]
    if len(given) != 1:
        raise _BadRequest("body", "body: exactly one of queue, agent or number is required")
    kind = given[0]
    if api.transfer is None:
        return _error(501, "transfers are not available on this service")
    agent = _logged_in(api, info)
    if agent is None:
        return _conflict(api, info, f"agent {info.login!r} is not logged in")
    if agent.state is not rt.AgentState.ON_CALL or agent.call_id is None:
        return _conflict(api, info, f"agent {info.login!r} is not in a conversation")
    try:
        target = check_target(
            kind,
            body[kind],
            queues=api.service.config.queues,
            agent_exists=api.service.router.is_logged_in,
            policy=api.transfer_policy,
            from_agent=info.login,
        )
        await api.transfer(agent.call_id, info.login, target)
    except TransferError as exc:
        if exc.status == 409:
            return _conflict(api, info, exc.message)
        return _error(exc.status, exc.message, field=exc.field or kind)
    logger.info("agent %s transferred a call to %s", info.login, target.kind.value)
    return web.json_response(api.me(info), headers=_NO_STORE)


ACTIONS: tuple[tuple[str, str, Handler], ...] = (
    ("GET", "me", _me),
    ("POST", "login", _login),
    ("POST", "logout", _logout),
    ("POST", "ready", _ready),
    ("POST", "pause", _pause),
    # Call-IDs may contain "/" (RFC 3261 section 25.1 "word"): match up to the last segment.
    ("POST", "offers/{call_id:.+}/accept", _accept),
    ("POST", "offers/{call_id:.+}/reject", _reject),
    ("POST", "wrapup", _wrapup),
    ("POST", "transfer", _transfer),
)
"""The agent's actions: ``(method, path under the API's prefix, handler)``. The agent panel
(:mod:`callcenter.web.panel.api`) serves the same handlers behind its session login."""


def run_action(
    handler: Handler,
) -> Callable[[web.Request, AgentApi, AgentInfo], Awaitable[web.Response]]:
    """``handler`` with the agent API's request errors answered (400 with the field)."""

    async def run(request: web.Request, api: AgentApi, info: AgentInfo) -> web.Response:
        api.ensure_tracked(info.login)
        try:
            return await handler(request, api, info)
        except _BadRequest as exc:
            return _error(400, exc.message, field=exc.field)

    return run


# -- events over WebSocket ---------------------------------------------------------------------


def _offer_body(offer: rt.OfferCall, config: rt.RoutingConfig) -> dict[str, Any]:
    return {
        "call_id": offer.call.call_id,
        "queue": offer.queue,
        "priority": config.priorities.effective(offer.call).label,
        "proficiency": offer.proficiency,
        "wait_s": offer.wait_s,
        "ring_deadline": offer.ring_deadline,
        "dial_out": offer.dial_out,
        "at": offer.at,
    }


def event_message(decision: rt.Decision, config: rt.RoutingConfig) -> dict[str, Any] | None:
    """The WebSocket message for one routing decision about an agent, None if not pushed.

    Args:
        decision: A decision the router dispatched to the agent.
        config: The routing configuration (for the effective priority of an offer).

    Returns:
        The JSON-ready message (see the module docstring), or None.
    """
    match decision:
        case rt.AgentStateChanged():
            return {
                "type": "state",
                "state": decision.state.value,
                "reason": decision.reason,
                "pending_pause": decision.pending_pause,
                "at": decision.at,
            }
        case rt.OfferCall():
            return {"type": "offer", **_offer_body(decision, config)}
        case rt.OfferEnded():
            return {
                "type": "offer_ended",
                "call_id": decision.call_id,
                "reason": decision.reason.value,
                "at": decision.at,
            }
        case rt.CallAnswered():
            return {
                "type": "call_answered",
                "call_id": decision.call_id,
                "queue": decision.queue,
                "via_queue": decision.via_queue,
                "wait_s": decision.wait_s,
                "at": decision.at,
            }
        case rt.CallCompleted():
            return {
                "type": "call_completed",
                "call_id": decision.call_id,
                "queue": decision.queue,
                "talk_s": decision.talk_s,
                "at": decision.at,
            }
        case rt.WrapUpEnded():
            return {
                "type": "wrap_up_ended",
                "call_id": decision.call_id,
                "queue": decision.queue,
                "handle_s": decision.handle_s,
                "resolved": decision.resolved,
                "timed_out": decision.timed_out,
                "at": decision.at,
            }
        case rt.EventIgnored():
            return {
                "type": "event_ignored",
                "event": decision.event,
                "call_id": decision.call_id,
                "reason": decision.reason,
                "at": decision.at,
            }
        case _:
            return None


async def _first_message_auth(
    ws: web.WebSocketResponse, api: AgentApi, remote: str
) -> tuple[AgentInfo, str] | None:
    """Wait for ``{"type": "auth", "token"}``; close the socket and return None on failure."""
    try:
        msg = await ws.receive(timeout=api.config.ws_auth_timeout_s)
    except TimeoutError:
        api.record_failure(remote)  # idle unauthenticated sockets count against the address
        await ws.close(code=WS_AUTH_FAILED, message=b"authentication timed out")
        return None
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
        return None
    token = ""
    if msg.type is WSMsgType.TEXT:
        with contextlib.suppress(ValueError):
            data = json.loads(msg.data)
            if isinstance(data, dict) and data.get("type") == "auth":
                value = data.get("token")
                token = value if isinstance(value, str) else ""
    try:
        info = await api.authenticate(token, remote)
    except _AuthError as exc:
        code = {429: WS_RATE_LIMITED, 503: WSCloseCode.TRY_AGAIN_LATER}.get(
            exc.status, WS_AUTH_FAILED
        )
        await ws.close(code=code, message=exc.message.encode())
        return None
    return info, token


async def _events(request: web.Request) -> web.StreamResponse:
    api = request.app[AGENT_API_KEY]
    remote = _remote(request)
    header_token = _bearer(request)
    info: AgentInfo | None = None
    try:
        api.check_rate(remote)  # a blocked address gets no WebSocket at all
    except _AuthError as exc:
        return _auth_response(exc)
    if header_token is not None:
        # A client that can set headers gets a plain HTTP error before the upgrade.
        try:
            info = await api.authenticate(header_token, remote)
        except _AuthError as exc:
            return _auth_response(exc)
    ws = web.WebSocketResponse(heartbeat=api.config.heartbeat_s, max_msg_size=64 * 1024)
    await ws.prepare(request)
    api.sockets.add(ws)
    try:
        token = header_token or ""
        if info is None:
            found = await _first_message_auth(ws, api, remote)
            if found is None:
                return ws
            info, token = found
        await _serve_events(ws, api, info, token, remote)
    finally:
        api.sockets.discard(ws)
    return ws


async def _serve_events(
    ws: web.WebSocketResponse, api: AgentApi, info: AgentInfo, token: str, remote: str
) -> None:
    """Push the agent's decisions until either side closes; never logs the agent out."""
    backlog = Backlog(api.config.max_backlog)

    def listener(decision: rt.Decision) -> None:
        message = event_message(decision, api.service.config)
        if message is not None:
            backlog.push(message)

    # Subscribe before the snapshot so that nothing falls between them.
    stop = api.service.listen_agent(info.login, listener)
    pump = asyncio.create_task(_pump(ws, api, info, token, backlog.queue), name="agent-events-pump")
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                data = None
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "ping":
                backlog.push({"type": "pong"})
            elif kind != "auth":  # a repeated auth message is harmless
                backlog.push({"type": "error", "error": "unknown message (expected ping)"})
    finally:
        stop()
        await stop_pump(pump, "agent events")


class Backlog:
    """Messages waiting for one WebSocket; past ``limit`` the socket is to be closed (None)."""

    def __init__(self, limit: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.limit = limit
        self.overflowed = False

    def push(self, message: dict[str, Any]) -> None:
        """Queue a message; once over the limit, queue the closing None and drop the rest."""
        if self.overflowed:
            return
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(message)


async def stop_pump(pump: asyncio.Task[None], what: str) -> None:
    """Cancel a socket's sending task and log how it failed, if it did."""
    pump.cancel()
    await asyncio.wait({pump})
    error = None if pump.cancelled() else pump.exception()
    if error is not None:
        logger.error("%s pump failed (%s)", what, type(error).__name__)


async def _pump(
    ws: web.WebSocketResponse,
    api: AgentApi,
    info: AgentInfo,
    token: str,
    backlog: asyncio.Queue[dict[str, Any] | None],
) -> None:
    """Send the hello, then the backlog; re-check the token now and then."""
    loop = asyncio.get_running_loop()
    try:
        await ws.send_json({"type": "hello", "agent": api.me(info)})
        next_check = loop.time() + api.config.revalidate_s
        while not ws.closed:
            try:
                async with asyncio.timeout_at(next_check):
                    message = await backlog.get()
            except TimeoutError:
                next_check = loop.time() + api.config.revalidate_s
                try:
                    still = await api.lookup(token)
                except SQLAlchemyError:
                    continue  # a store outage must not drop every agent's socket
                if still is None or still.login != info.login:
                    await ws.close(code=WS_AUTH_FAILED, message=b"token no longer valid")
                    return
                continue
            if message is None:
                await ws.close(code=WS_TOO_SLOW, message=b"too many pending events")
                return
            await ws.send_json(message)
    except ConnectionError:
        return  # the peer went away; the handler's loop ends on its own
