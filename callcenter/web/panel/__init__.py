"""The agent panel (issue 6): login, browser softphone, screen pop, wrap-up, supervision.

- :mod:`.auth`: sessions, passwords, CSRF, roles; :mod:`.security`: security headers.
- :mod:`.pages`: the HTML pages and static assets (``static/``).
- :mod:`.api`: the panel's JSON API (agent actions, screen pop, dossiers, wrap-up, supervision).
- :mod:`.ws`: the panel's WebSocket (routing events and softphone signalling).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from aiohttp import WSCloseCode, web
from sqlalchemy import Engine

from callcenter.config import PanelConfig, WebRtcConfig
from callcenter.metrics import Metrics
from callcenter.softphone import SoftphoneHub
from callcenter.web.agent_api import AGENT_API_KEY
from callcenter.web.panel.state import Consulter


def mount_panel(
    app: web.Application,
    *,
    store: Engine,
    hub: SoftphoneHub,
    config: PanelConfig,
    webrtc: WebRtcConfig,
    metrics: Metrics,
    today: Callable[[], date],
    intent_labels: Callable[[], Mapping[str, str]] = dict,
    callbacks_view: Callable[[], Any] | None = None,
    consult: Consulter | None = None,
) -> None:
    """Add the whole panel to ``app`` (after the agent API: it serves the same actions)."""
    from callcenter.web.panel.api import add_panel_api
    from callcenter.web.panel.auth import current_user, setup_panel_auth
    from callcenter.web.panel.pages import add_panel_pages
    from callcenter.web.panel.state import PANEL_STATE, PanelState
    from callcenter.web.panel.ws import panel_socket

    state = PanelState(
        agent_api=app[AGENT_API_KEY],
        hub=hub,
        store=store,
        config=config,
        webrtc=webrtc,
        metrics=metrics,
        today=today,
        intent_labels=intent_labels,
        callbacks_view=callbacks_view,
        consult=consult,
    )
    app[PANEL_STATE] = state
    setup_panel_auth(app, store=store, config=config)
    add_panel_pages(app, current_user=current_user)
    add_panel_api(app)
    app.router.add_get("/panel/ws", panel_socket)

    async def start_hub(app: web.Application) -> None:
        await hub.start()

    async def close_sockets(app: web.Application) -> None:
        for ws in list(state.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    app.on_startup.append(start_hub)
    app.on_shutdown.append(close_sockets)
