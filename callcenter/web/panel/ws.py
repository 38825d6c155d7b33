"""The panel's WebSocket ``/panel/ws``: routing events and softphone signalling, one socket.

Authentication is the panel session (its cookie; the WebSocket handshake carries it) and, as a
cross-site WebSocket hijacking guard, an ``Origin`` equal to the panel's own origin (browsers
always send it on WebSockets), both checked by the panel's middleware before the upgrade.

An open socket keeps its session alive while the agent is logged in to routing (an agent
waiting for calls clicks nothing for long stretches): every :data:`SESSION_CHECK_S` it renews
the session in the store, and closes with 4401 once the session is gone (logout elsewhere,
account disabled, absolute expiry). Logged out of routing, the socket does not renew it: after
the idle timeout without a softphone action it closes with 4401 and the page goes to login.

Server → browser: ``hello`` (``{"type": "hello", "agent": Me, "softphone": true,
"ice_servers": [...]}``, again after each reconnection), the routing events of the agent API
(:func:`callcenter.web.agent_api.event_message`: ``state``, ``offer``, ``offer_ended``,
``call_answered``, ``call_completed``, ``wrap_up_ended``, ``event_ignored``), and the softphone's
messages from the call's leg (:mod:`callcenter.webrtc.leg`: ``ring`` with the screen pop,
``answer_sdp``, ``call_state``, ``caller_dtmf``). Browser → server: the softphone's ``answer``
(its SDP offer), ``reject``, ``hangup``, ``dtmf``, ``hold``, ``resume``, ``mute``, and ``ping``.

The socket attaches the agent's softphone to the node's :class:`~callcenter.softphone.SoftphoneHub`
while it is open: calls offered to the agent then ring the browser, not the SIP phone. Closing
the socket never logs the agent out of routing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web
from sqlalchemy.exc import SQLAlchemyError

import routing as rt
from callcenter.store import panel as store_panel
from callcenter.web.agent_api import Backlog, event_message, stop_pump
from callcenter.web.panel.auth import COOKIE_NAME, PanelUser, current_user
from callcenter.web.panel.state import PANEL_STATE, PanelState

logger = logging.getLogger(__name__)

WS_TOO_SLOW = 4408
"""Close code: the browser did not read its messages fast enough."""
WS_SESSION_ENDED = 4401
"""Close code: the panel session expired or was revoked."""
SESSION_CHECK_S = 60.0
"""How often an open socket renews (or re-checks) its session."""


async def panel_socket(request: web.Request) -> web.StreamResponse:
    """``GET /panel/ws``."""
    state = request.app[PANEL_STATE]
    user = await current_user(request)
    if user is None:  # the middleware answered already; kept for direct mounts
        return web.json_response(
            {"error": "session expirée", "code": "session_expired"}, status=401
        )
    ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=256 * 1024)
    await ws.prepare(request)
    state.sockets.add(ws)
    try:
        await _serve(ws, state, user, request.cookies.get(COOKIE_NAME, ""))
    finally:
        state.sockets.discard(ws)
    return ws


async def _serve(
    ws: web.WebSocketResponse, state: PanelState, user: PanelUser, cookie: str
) -> None:
    login = user.login
    loop = asyncio.get_running_loop()
    activity = [loop.time()]
    api = state.agent_api
    api.ensure_tracked(login)
    backlog = Backlog(state.max_backlog)
    push = backlog.push

    def on_decision(decision: rt.Decision) -> None:
        if isinstance(decision, rt.CallAnswered) and decision.agent_id == login:
            state.mark_answered(login, decision.call_id)
        message = event_message(decision, api.service.config)
        if message is not None:
            push(message)

    def on_softphone(message: dict[str, Any]) -> None:
        if message.get("type") == "ring":
            message = state.remember_ring(login, message)
        push(message)

    stop_events = api.service.listen_agent(login, on_decision)
    detach = state.hub.attach(login, on_softphone)
    pump = asyncio.create_task(
        _pump(ws, state, user, backlog.queue, cookie, activity), name="panel-ws-pump"
    )
    try:
        async for msg in ws:
            if msg.type is not WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                push({"type": "error", "error": "message illisible"})
                continue
            kind = data.get("type")
            if kind == "ping":
                push({"type": "pong"})
                continue
            activity[0] = loop.time()
            refused = await state.hub.from_browser(login, data)
            if refused is not None:
                push({"type": "error", "error": refused, "call_id": data.get("call_id")})
            elif kind in ("hold", "resume", "mute", "hangup", "reject", "answer"):
                state.record_action(login, str(kind))
    finally:
        detach()
        stop_events()
        await stop_pump(pump, "panel socket")


async def _pump(
    ws: web.WebSocketResponse,
    state: PanelState,
    user: PanelUser,
    backlog: asyncio.Queue[dict[str, Any] | None],
    cookie: str,
    activity: list[float],
) -> None:
    api = state.agent_api
    loop = asyncio.get_running_loop()
    try:
        await ws.send_json(
            {
                "type": "hello",
                "agent": api.me(user.agent),
                "softphone": True,
                "softphone_calls": state.hub.calls_of(user.login),
                "ice_servers": state.browser_ice_servers(),
            }
        )
        next_check = loop.time() + SESSION_CHECK_S
        while not ws.closed:
            try:
                async with asyncio.timeout_at(next_check):
                    message = await backlog.get()
            except TimeoutError:
                next_check = loop.time() + SESSION_CHECK_S
                if not await _session_alive(state, user, cookie, loop.time() - activity[0]):
                    await ws.close(code=WS_SESSION_ENDED, message=b"session ended")
                    return
                continue
            if message is None:
                await ws.close(code=WS_TOO_SLOW, message=b"too many pending messages")
                return
            await ws.send_json(message)
    except ConnectionError:
        return


async def _session_alive(state: PanelState, user: PanelUser, cookie: str, idle_s: float) -> bool:
    """Renew the session while the agent works; otherwise let the idle timeout run."""
    agent = state.agent_api.service.router.agents.get(user.login)
    if agent is None or agent.state is rt.AgentState.OFFLINE:
        return idle_s <= state.config.idle_timeout_s
    try:
        info = await asyncio.to_thread(
            store_panel.session_for,
            state.store,
            cookie,
            datetime.now(UTC),
            state.config.idle_timeout_s,
            state.config.absolute_timeout_s,
        )
    except SQLAlchemyError:
        return True  # a store outage must not cut every agent's panel
    return info is not None
