"""A stub of the panel's JSON API and WebSocket (issue 6 spec), serving the real pages.

The browser tests drive the real static pages and :func:`add_panel_pages` against this stub:
canned ``Me``/``Pop``/``Dossier`` data (with XSS payloads in every kind of field), the
spec's session cookie, CSRF header check and security headers (the strict CSP makes Chromium
refuse any inline script or style). The test pushes WebSocket messages with :meth:`push` and
reads what the page sent from :attr:`PanelStub.received` and :attr:`PanelStub.posts`.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from callcenter.web.panel.pages import add_panel_pages

COOKIE = "cc_panel"
PASSWORD = "correct horse battery"
XSS_SCRIPT = "<script>window.__xss = 1</script>"
XSS_IMG = '"><img src=x onerror="window.__xss=2">'
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "microphone=(self), camera=(), geolocation=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
MOTIFS = ["Information APA", "Information MDPH", "Suivi de dossier", "Autre"]
CALL_ID = "a84b4c76e66710@192.0.2.4/x"


@dataclass(frozen=True, slots=True)
class StubUser:
    """What the real ``PanelUser`` offers the pages and the page JS."""

    login: str
    display_name: str
    role: str
    csrf_token: str


def me(state: str = "available", call_id: str | None = None) -> dict[str, Any]:
    """A ``Me`` body (agent API docstring)."""
    return {
        "login": "agent1",
        "state": state,
        "since": None,
        "pause_reason": None,
        "pending_pause": None,
        "call_id": call_id,
        "offer": None,
        "skills": {"apa": 3},
        "pause_reasons": ["déjeuner", "formation"],
    }


def pop(call_id: str = CALL_ID) -> dict[str, Any]:
    """A screen pop of an identified caller, with hostile strings."""
    return {
        "call_id": call_id,
        "queue": "apa",
        "queue_label": "APA",
        "wait_s": 42.0,
        "priority": "normal",
        "identified": True,
        "identification": "numero+date_naissance",
        "caller_number": None,
        "usager_id": 12,
        "display_name": f"Mme Jeanne {XSS_IMG}",
        "handoff_reason": "demande_agent",
        "handoff_label": "Demande à parler à un conseiller",
        "intents": ["apa_dossier_statut"],
        "intent_labels": ["Où en est mon dossier APA"],
        "transcript": ["où en est mon dossier", XSS_SCRIPT],
        "menu_path": ["accueil", "menu_apa", "file_apa"],
    }


def dossier() -> dict[str, Any]:
    """A ``Dossier`` whose strings try HTML injection."""
    return {
        "usager_id": 12,
        "civilite": "Mme",
        "nom": XSS_IMG,
        "prenom": "Jeanne",
        "langue": "fr",
        "besoins": ["malentendant"],
        "mesure_protection": None,
        "demandes": [
            {
                "numero": "APA-2026-000123",
                "type": "APA_DOMICILE",
                "circuit": XSS_SCRIPT,
                "date_depot": "2026-09-01",
                "status": {
                    "code": "COMPLET",
                    "label": "Dossier complet",
                    "date": "2026-09-10",
                    "detail": None,
                },
                "history": [
                    {"code": "DEPOSE", "label": "Déposé", "date": "2026-09-01", "detail": None},
                    {
                        "code": "COMPLET",
                        "label": "Dossier complet",
                        "date": "2026-09-10",
                        "detail": XSS_IMG,
                    },
                ],
                "missing_documents": [
                    {
                        "piece": "Avis d'imposition",
                        "date_demande": "2026-09-02",
                        "date_relance": None,
                    }
                ],
                "decisions": [
                    {
                        "prestation": "APA",
                        "sens": "accord",
                        "date_decision": "2026-10-01",
                        "date_debut": "2026-10-01",
                        "date_fin": None,
                        "montant_cents": 45678,
                        "gir": 4,
                    }
                ],
            }
        ],
        "appointments": [
            {
                "type": "Visite à domicile",
                "debut": "2099-01-05T10:00:00+01:00",
                "lieu": XSS_SCRIPT,
                "numero": "APA-2026-000123",
            }
        ],
        "payments": [
            {
                "prestation": "APA",
                "periode": "2026-10",
                "date_paiement": "2026-11-05",
                "montant_verse_cents": 45678,
                "statut": "versé",
                "motif_ecart": None,
            }
        ],
        "carers": [
            {
                "role": "fille",
                "civilite": "Mme",
                "nom": "MARTIN",
                "prenom": XSS_IMG,
                "may_know": ["apa"],
            }
        ],
        "contacts": [
            {
                "started_at": "2026-10-02T09:30:00+02:00",
                "channel": "telephone",
                "handled_by": "agent2",
                "outcome": "resolu",
                "intents": [],
                "summary": "Question sur le plan d'aide",
                "agent_notes": XSS_SCRIPT,
                "wrapup_motif": "Information APA",
                "first_contact_resolved": True,
                "follow_up": None,
                "follow_up_due": None,
            }
        ],
    }


def supervision() -> dict[str, Any]:
    """A ``GET /panel/api/supervisor`` body."""
    return {
        "queues": [
            {
                "queue": "apa",
                "label": "APA",
                "waiting": 2,
                "longest_wait_s": 75.0,
                "agents": {"available": 1, "on_call": 2, "wrap_up": 0, "paused": 1, "reserved": 0},
            },
            {
                "queue": "mdph",
                "label": "MDPH",
                "waiting": 0,
                "longest_wait_s": 0.0,
                "agents": {"available": 0, "on_call": 1, "wrap_up": 1, "paused": 0, "reserved": 0},
            },
        ],
        "agents": [
            {
                "login": "agent1",
                "display_name": XSS_IMG,
                "state": "on_call",
                "since_s": 65.0,
                "pause_reason": None,
                "call_id": "c1",
                "queue": "apa",
            },
            {
                "login": "agent2",
                "display_name": "Paul Durand",
                "state": "paused",
                "since_s": 300.0,
                "pause_reason": "déjeuner",
                "call_id": None,
                "queue": None,
            },
        ],
        "callbacks": {"pending": 3, "overdue": 1, "next_due": "2026-11-30T09:00:00+01:00"},
        "at": "2026-11-29T10:00:00+01:00",
    }


@dataclass
class PanelStub:
    """The stub backend; ``app()`` builds its aiohttp application."""

    sessions: dict[str, StubUser] = field(default_factory=dict)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    received: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    posts: list[tuple[str, Any, str | None]] = field(default_factory=list)
    """(path, JSON body, X-CSRF-Token header) of every accepted non-GET API request."""
    gets: list[str] = field(default_factory=list)
    """path_qs of every API GET."""
    ws_connections: int = 0
    softphone: bool = True
    me: dict[str, Any] = field(default_factory=me)
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def add_session(self, role: str = "agent") -> str:
        """A session for ``agent1`` with ``role``; returns the cookie value."""
        sid = secrets.token_urlsafe(16)
        self.sessions[sid] = StubUser("agent1", "Camille Agent", role, secrets.token_hex(16))
        return sid

    async def current_user(self, request: web.Request) -> StubUser | None:
        """The ``current_user`` given to ``add_panel_pages``."""
        return self.sessions.get(request.cookies.get(COOKIE, ""))

    async def push(self, message: dict[str, Any]) -> None:
        """Send ``message`` on every open panel WebSocket."""
        for ws in list(self.sockets):
            if not ws.closed:
                await ws.send_json(message)

    async def next_message(self, kind: str) -> dict[str, Any]:
        """The next message of type ``kind`` the page sent (others are skipped), within 10 s."""
        async with asyncio.timeout(10.0):
            while True:
                message = await self.received.get()
                if message.get("type") == kind:
                    return message

    def app(self) -> web.Application:
        """The aiohttp application: real pages + stub API + stub WebSocket."""
        app = web.Application(middlewares=[self._middleware])
        add_panel_pages(app, current_user=self.current_user)
        r = app.router
        r.add_post("/panel/api/login", self._login)
        r.add_post("/panel/api/logout", self._logout)
        r.add_get("/panel/api/session", self._session)
        r.add_get("/panel/api/agent/me", self._me)
        r.add_post("/panel/api/agent/{action:.+}", self._agent_action)
        r.add_get("/panel/api/calls/{call_id}/pop", self._pop)
        r.add_get("/panel/api/calls/{call_id}/dossier", self._call_dossier)
        r.add_get("/panel/api/dossiers/search", self._search)
        r.add_get("/panel/api/dossiers/{usager_id}", self._dossier)
        r.add_get("/panel/api/wrapup/motifs", self._motifs)
        r.add_post("/panel/api/wrapup", self._wrapup)
        r.add_get("/panel/api/supervisor", self._supervisor)
        r.add_get("/panel/ws", self._ws)
        return app

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        path = request.path
        if path.startswith("/panel/api/") or path == "/panel/ws":
            user = await self.current_user(request)
            if path != "/panel/api/login":
                if user is None:
                    return web.json_response(
                        {"error": "session expirée", "code": "session_expired"}, status=401
                    )
                if request.method not in ("GET", "HEAD") and (
                    request.headers.get("X-CSRF-Token") != user.csrf_token
                ):
                    return web.json_response({"error": "jeton CSRF", "code": "csrf"}, status=403)
            if request.method == "GET" and path.startswith("/panel/api/"):
                self.gets.append(request.path_qs)
        response = await handler(request)
        if path.startswith("/panel"):
            response.headers.update(SECURITY_HEADERS)
            if not path.startswith("/panel/static/") or path.endswith(".html"):
                response.headers["Cache-Control"] = "no-store"
        return response

    async def _body(self, request: web.Request) -> Any:
        body = await request.json() if request.can_read_body else None
        self.posts.append((request.path, body, request.headers.get("X-CSRF-Token")))
        return body

    async def _login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("login") == "verrouille":
            return web.json_response(
                {"error": "Compte verrouillé.", "code": "locked", "retry_after_s": 600},
                status=423,
            )
        if body.get("login") != "agent1" or body.get("password") != PASSWORD:
            return web.json_response(
                {"error": "Identifiant ou mot de passe incorrect.", "code": "bad_credentials"},
                status=401,
            )
        sid = self.add_session("agent")
        user = self.sessions[sid]
        response = web.json_response(
            {
                "login": user.login,
                "role": user.role,
                "display_name": user.display_name,
                "csrf_token": user.csrf_token,
            }
        )
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/panel")
        return response

    async def _logout(self, request: web.Request) -> web.Response:
        await self._body(request)
        self.sessions.pop(request.cookies.get(COOKIE, ""), None)
        response = web.Response(status=204)
        response.del_cookie(COOKIE, path="/panel")
        return response

    async def _session(self, request: web.Request) -> web.Response:
        user = await self.current_user(request)
        assert user is not None
        return web.json_response(
            {
                "login": user.login,
                "role": user.role,
                "display_name": user.display_name,
                "csrf_token": user.csrf_token,
                "idle_timeout_s": 900.0,
            }
        )

    async def _me(self, request: web.Request) -> web.Response:
        return web.json_response(self.me)

    async def _agent_action(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        action = request.match_info["action"]
        state = {"login": "available", "ready": "available", "logout": "offline"}.get(action)
        if action == "pause":
            if body.get("reason") not in self.me["pause_reasons"]:
                return web.json_response(
                    {"error": "Motif de pause inconnu.", "field": "reason"}, status=400
                )
            self.me.update(state="paused", pause_reason=body["reason"])
        elif state is not None:
            self.me.update(state=state, pause_reason=None)
        return web.json_response(self.me)

    async def _pop(self, request: web.Request) -> web.Response:
        return web.json_response(pop(request.match_info["call_id"]))

    async def _call_dossier(self, request: web.Request) -> web.Response:
        return web.json_response(dossier())

    async def _search(self, request: web.Request) -> web.Response:
        if not request.query.get("reason"):
            return web.json_response({"error": "Motif de consultation obligatoire."}, status=400)
        return web.json_response(
            {
                "results": [
                    {
                        "usager_id": 12,
                        "display_name": f"Mme Jeanne {XSS_SCRIPT}",
                        "birth_year": 1941,
                        "numeros": ["APA-2026-000123"],
                    }
                ]
            }
        )

    async def _dossier(self, request: web.Request) -> web.Response:
        if not request.query.get("reason"):
            return web.json_response({"error": "Motif obligatoire."}, status=400)
        return web.json_response(dossier())

    async def _motifs(self, request: web.Request) -> web.Response:
        return web.json_response({"motifs": MOTIFS})

    async def _wrapup(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        if body.get("motif") not in MOTIFS:
            return web.json_response({"error": "Motif inconnu.", "field": "motif"}, status=400)
        self.me.update(state="available", call_id=None)
        return web.json_response(self.me)

    async def _supervisor(self, request: web.Request) -> web.Response:
        user = await self.current_user(request)
        if user is None or user.role not in ("supervisor", "admin"):
            return web.json_response(
                {"error": "Réservé aux superviseurs.", "code": "forbidden"}, status=403
            )
        return web.json_response(supervision())

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise web.HTTPForbidden()
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        self.ws_connections += 1
        self.sockets.append(ws)
        await ws.send_json(
            {"type": "hello", "agent": copy.deepcopy(self.me), "softphone": self.softphone}
        )
        self.connected.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = msg.json()
                if data.get("type") == "ping":
                    await ws.send_json({"type": "pong"})
                else:
                    self.received.put_nowait(data)
        finally:
            self.sockets.remove(ws)
        return ws
