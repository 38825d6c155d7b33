"""The panel's JSON API (``/panel/api/...``), behind the panel session (see :mod:`.auth`).

Agent actions are the agent API's own handlers (:data:`callcenter.web.agent_api.ACTIONS`: same
bodies, answers and errors), reached with the session instead of a bearer token:
``GET /panel/api/agent/me``, ``POST /panel/api/agent/{login,logout,ready,pause,wrapup,transfer}``.

Dossiers (every read is audited by the store, with the agent's login as actor):

- ``GET /panel/api/calls/{call_id}/pop``: the screen pop of a call rung to this agent (403
  otherwise).
- ``GET /panel/api/calls/{call_id}/dossier``: the dossier of that call's identified usager,
  while the call is the agent's (offered, in conversation or in wrap-up; 403 otherwise, 404
  when the caller was not identified). Audit reason ``appel <call id>``.
- ``GET /panel/api/dossiers/search?q=&reason=``: by phone number, numéro de dossier or name; a
  ``reason`` is required (400) — the audit log keeps it. Grants this agent the opening of the
  dossiers found for 15 minutes.
- ``GET /panel/api/dossiers/{usager_id}?reason=``: a dossier found by this agent's search, or the
  one of their current call (403 otherwise); audited with the reason.

Wrap-up: ``GET /panel/api/wrapup/motifs``; ``POST /panel/api/wrapup`` ``{"call_id", "motif",
"note", "resolved", "follow_up", "follow_up_due"}`` saves the contact's wrap-up (motif, note,
first-contact resolution, follow-up task and due date) and, when the agent is in that call's
wrap-up, ends it (``WrapUpDone``). 200 with ``Me``.

Supervision: ``GET /panel/api/supervisor`` (supervisor or admin): queues, agents, callbacks.

Every response is ``Cache-Control: no-store`` (the security middleware).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

import routing as rt
from callcenter.store import agents as agents_store
from callcenter.store import panel as panel_store
from callcenter.transfer import TransferError, TransferTarget, check_target
from callcenter.web.agent_api import ACTIONS, AGENT_API_KEY, run_action
from callcenter.web.panel.auth import PANEL_USER, PanelUser, require_role
from callcenter.web.panel.state import PANEL_STATE, PanelState

logger = logging.getLogger(__name__)

MAX_QUERY = 100
MAX_REASON = 200
MAX_NOTE = 4000
MAX_FOLLOW_UP = 200

_PanelHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_panel_api(app: web.Application) -> None:
    """Add the routes above (the panel state, the agent API and the auth must be set up)."""
    for method, path, handler in ACTIONS:
        if path.startswith("offers/"):
            continue  # the softphone answers by WebRTC; the panel never accepts by REST
        app.router.add_route(method, f"/panel/api/agent/{path}", _agent_action(handler))
    app.router.add_post("/panel/api/agent/consult", _consult_start)
    app.router.add_post("/panel/api/agent/consult/complete", _consult_complete)
    app.router.add_post("/panel/api/agent/consult/cancel", _consult_cancel)
    app.router.add_get("/panel/api/calls/{call_id:.+}/pop", _pop)
    app.router.add_get("/panel/api/calls/{call_id:.+}/dossier", _call_dossier)
    app.router.add_get("/panel/api/dossiers/search", _search)
    app.router.add_get(r"/panel/api/dossiers/{usager_id:\d+}", _dossier)
    app.router.add_get("/panel/api/wrapup/motifs", _motifs)
    app.router.add_post("/panel/api/wrapup", _wrapup)
    app.router.add_get("/panel/api/supervisor", _supervisor)


def _user(request: web.Request) -> PanelUser:
    user: PanelUser = request[PANEL_USER]
    return user


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _agent_action(handler: Any) -> _PanelHandler:
    run = run_action(handler)

    @require_role("agent")
    async def action(request: web.Request) -> web.StreamResponse:
        return await run(request, request.app[AGENT_API_KEY], _user(request).agent)

    return action


def _talking_or_wrapping(state: PanelState, login: str, call_id: str) -> bool:
    """Whether the router has ``login`` in conversation on, or wrapping up, ``call_id``."""
    agent = state.agent_api.service.router.agents.get(login)
    return (
        agent is not None
        and agent.call_id == call_id
        and agent.state in (rt.AgentState.ON_CALL, rt.AgentState.WRAP_UP)
    )


def _current_call(state: PanelState, login: str) -> str | None:
    agent = state.agent_api.service.router.agents.get(login)
    if agent is None or agent.state is rt.AgentState.OFFLINE:
        return None
    return agent.call_id


REPLICA_WAIT_S = 2.0
"""With several nodes, how long a ring may run ahead of this node's router replica."""


async def _soon(check: Callable[[], bool]) -> bool:
    """Whether ``check()`` holds now or within :data:`REPLICA_WAIT_S`.

    With several nodes the routing ``offer`` (the routing stream) and the ``ring`` (Redis
    pub/sub) of one call may reach this node in either order, a moment apart.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REPLICA_WAIT_S
    while not check():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def _rung_pop(state: PanelState, login: str, call_id: str) -> dict[str, Any] | None:
    """The pop of the ring of ``call_id`` (waited for while the call is the agent's)."""
    await _soon(
        lambda: state.pop_for(login, call_id) is not None or _current_call(state, login) != call_id
    )
    return state.pop_for(login, call_id)


async def _is_current_call(state: PanelState, login: str, call_id: str) -> bool:
    """Whether ``call_id`` is the agent's call (offered, in conversation or in wrap-up)."""
    return await _soon(lambda: _current_call(state, login) == call_id)


# -- consult, then transfer ---------------------------------------------------------------------


async def _consult(request: web.Request, action: str) -> web.StreamResponse:
    state = request.app[PANEL_STATE]
    user = _user(request)
    api = state.agent_api
    if state.consult is None:
        return _error(501, "consultation indisponible sur ce service")
    target: TransferTarget | None = None
    if action == "start":
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "corps JSON attendu", field="body")
        kinds = [k for k in ("agent", "number", "queue") if isinstance(body, dict) and k in body]
        if not isinstance(body, dict) or len(kinds) != 1 or len(body) != 1:
            return _error(400, "indiquez un conseiller ou un numéro", field="body")
        kind = kinds[0]
        if kind == "queue":
            return _error(400, "on consulte un conseiller ou un numéro, pas une file", field=kind)
        try:
            target = check_target(
                kind,
                body[kind],
                queues=api.service.config.queues,
                agent_exists=api.service.router.is_logged_in,
                policy=api.transfer_policy,
                from_agent=user.login,
            )
        except TransferError as exc:
            return _error(exc.status, exc.message, field=exc.field or kind)
    call_id = _current_call(state, user.login)
    if call_id is None:
        return _error(409, "aucun appel en cours", state=api.me(user.agent)["state"])
    try:
        await state.consult(call_id, user.login, action, target)
    except TransferError as exc:
        return _error(exc.status, exc.message, field=exc.field)
    return web.json_response(api.me(user.agent))


@require_role("agent")
async def _consult_start(request: web.Request) -> web.StreamResponse:
    return await _consult(request, "start")


@require_role("agent")
async def _consult_complete(request: web.Request) -> web.StreamResponse:
    return await _consult(request, "complete")


@require_role("agent")
async def _consult_cancel(request: web.Request) -> web.StreamResponse:
    return await _consult(request, "cancel")


# -- screen pop and dossiers ---------------------------------------------------------------------


@require_role("agent")
async def _pop(request: web.Request) -> web.StreamResponse:
    state = request.app[PANEL_STATE]
    user = _user(request)
    pop = state.pop_for(user.login, request.match_info["call_id"])
    if pop is None:
        return _error(403, "cet appel ne vous a pas été présenté")
    return web.json_response({k: v for k, v in pop.items() if not k.startswith("_")})


@require_role("agent")
async def _call_dossier(request: web.Request) -> web.StreamResponse:
    state = request.app[PANEL_STATE]
    user = _user(request)
    call_id = request.match_info["call_id"]
    pop = await _rung_pop(state, user.login, call_id)
    if pop is None or not await _is_current_call(state, user.login, call_id):
        return _error(403, "ce dossier n'est lisible que pendant votre appel")
    usager_id = pop.get("usager_id")
    verified = isinstance(usager_id, int)
    reason = f"appel {call_id}"[:MAX_REASON]
    if not isinstance(usager_id, int):
        # Not identified by the bot: the caller's number may still belong to one dossier (the
        # usager's own phone or a declared carer's). Shown as "numéro reconnu, identité non
        # vérifiée": the agent checks who is calling before saying anything of it.
        number = pop.get("caller_number")
        if not isinstance(number, str) or not number:
            return _error(404, "appelant non identifié")
        try:
            found = await asyncio.to_thread(
                panel_store.search_dossiers,
                state.store,
                number,
                actor=user.login,
                reason=f"{reason} : numéro de l'appelant"[:MAX_REASON],
            )
        except SQLAlchemyError as exc:
            logger.error("caller lookup failed (%s)", type(exc).__name__)
            return _error(503, "dossiers indisponibles")
        if len(found) != 1:
            return _error(404, "appelant non identifié", matches=len(found))
        usager_id = found[0].usager_id
    response = await _read_dossier(state, user, usager_id, reason, via="call", verified=verified)
    if response.status == 200:
        pop["_dossier_id"] = usager_id  # the wrap-up links the contact to the dossier shown
        started = pop.get("_rung_at")
        if isinstance(started, float):
            state.metrics.screen_pop_seconds.observe(max(0.0, time.monotonic() - started))
    return response


@require_role("agent")
async def _search(request: web.Request) -> web.StreamResponse:
    state = request.app[PANEL_STATE]
    user = _user(request)
    query = request.query.get("q", "").strip()
    reason = request.query.get("reason", "").strip()
    if not query or len(query) > MAX_QUERY:
        return _error(400, "saisissez un numéro, un n° de dossier ou un nom", field="q")
    if not reason and state.config.search_reasons_required:
        return _error(400, "le motif de la consultation est obligatoire", field="reason")
    if len(reason) > MAX_REASON:
        return _error(400, f"motif trop long (max. {MAX_REASON})", field="reason")
    try:
        results = await asyncio.to_thread(
            panel_store.search_dossiers,
            state.store,
            query,
            actor=user.login,
            reason=reason or "recherche",
        )
    except SQLAlchemyError as exc:
        logger.error("dossier search failed (%s)", type(exc).__name__)
        return _error(503, "dossiers indisponibles")
    state.grant_search(user.login, [r.usager_id for r in results])
    return web.json_response({"results": [r.as_json() for r in results]})


@require_role("agent")
async def _dossier(request: web.Request) -> web.StreamResponse:
    state = request.app[PANEL_STATE]
    user = _user(request)
    usager_id = int(request.match_info["usager_id"])
    reason = request.query.get("reason", "").strip()
    current = _current_call(state, user.login)
    pop = state.pop_for(user.login, current) if current is not None else None
    if pop is not None and pop.get("usager_id") == usager_id:
        return await _read_dossier(state, user, usager_id, f"appel {current}", via="call")
    if not state.may_open_searched(user.login, usager_id):
        return _error(403, "recherchez d'abord ce dossier, avec le motif de la consultation")
    if not reason and state.config.search_reasons_required:
        return _error(400, "le motif de la consultation est obligatoire", field="reason")
    return await _read_dossier(state, user, usager_id, reason[:MAX_REASON], via="search")


async def _read_dossier(
    state: PanelState,
    user: PanelUser,
    usager_id: int,
    reason: str,
    *,
    via: str,
    verified: bool | None = None,
) -> web.Response:
    try:
        dossier = await asyncio.to_thread(
            panel_store.agent_dossier,
            state.store,
            usager_id,
            actor=user.login,
            reason=reason,
            today=state.today(),
        )
    except SQLAlchemyError as exc:
        logger.error("dossier read failed (%s)", type(exc).__name__)
        return _error(503, "dossiers indisponibles")
    if dossier is None:
        return _error(404, "dossier introuvable")
    state.metrics.panel_dossier_view(via)
    # verified: the bot checked the caller's identity (True), only their number matched (False),
    # or the dossier was opened by a search (None).
    return web.json_response({**dossier, "verified": verified})


# -- wrap-up ------------------------------------------------------------------------------------


@require_role("agent")
async def _motifs(request: web.Request) -> web.StreamResponse:
    state = request.app[PANEL_STATE]
    return web.json_response({"motifs": list(state.config.wrapup_motifs)})


class _Invalid(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def _text(body: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise _Invalid(name, f"{name} : obligatoire")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _Invalid(name, f"{name} : texte de {limit} caractères au plus")
    return value.strip() or None


@require_role("agent")
async def _wrapup(request: web.Request) -> web.StreamResponse:
    state = request.app[PANEL_STATE]
    user = _user(request)
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "corps JSON attendu", field="body")
    if not isinstance(body, dict):
        return _error(400, "corps JSON attendu", field="body")
    allowed = {"call_id", "motif", "note", "resolved", "follow_up", "follow_up_due"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        return _error(400, f"champ inconnu : {unknown[0]}", field=unknown[0])
    try:
        call_id = _text(body, "call_id", 255, required=True)
        motif = _text(body, "motif", 64, required=True)
        if motif not in state.config.wrapup_motifs:
            raise _Invalid("motif", "motif : choisissez un motif de la liste")
        note = _text(body, "note", MAX_NOTE)
        follow_up = _text(body, "follow_up", MAX_FOLLOW_UP)
        resolved = body.get("resolved")
        if resolved is not None and not isinstance(resolved, bool):
            raise _Invalid("resolved", "resolved : oui, non ou non renseigné")
        due_text = _text(body, "follow_up_due", 10)
        due: date | None = None
        if due_text is not None:
            try:
                due = date.fromisoformat(due_text)
            except ValueError:
                raise _Invalid("follow_up_due", "date d'échéance : AAAA-MM-JJ") from None
            if follow_up is None:
                raise _Invalid("follow_up", "suivi : décrivez la tâche de l'échéance")
    except _Invalid as exc:
        return _error(400, exc.message, field=exc.field)
    assert call_id is not None and motif is not None
    pop = state.pop_for(user.login, call_id)
    if not state.has_answered(user.login, call_id) and not _talking_or_wrapping(
        state, user.login, call_id
    ):
        # Rung but not taken (rejected, missed): the wrap-up belongs to who took the call.
        return _error(403, "cet appel n'est pas le vôtre")
    usager_id = pop.get("_dossier_id", pop.get("usager_id")) if pop is not None else None
    try:
        await asyncio.to_thread(
            panel_store.save_wrapup,
            state.store,
            sip_call_id=call_id,
            agent_login=user.login,
            motif=motif,
            note=note,
            resolved=resolved,
            follow_up=follow_up,
            follow_up_due=due,
            now=datetime.now(UTC),
            usager_id=usager_id if isinstance(usager_id, int) else None,
        )
    except SQLAlchemyError as exc:
        logger.error("wrap-up not saved (%s)", type(exc).__name__)
        return _error(503, "fin d'appel non enregistrée, réessayez")
    api = state.agent_api
    agent = api.service.router.agents.get(user.login)
    if agent is not None and agent.state is rt.AgentState.WRAP_UP and agent.call_id == call_id:
        try:
            await api.service.submit(rt.WrapUpDone(user.login, api.service.now(), resolved))
        except rt.RoutingError as exc:
            logger.info("wrap-up end refused: %s", exc)
    return web.json_response(api.me(user.agent))


# -- supervision --------------------------------------------------------------------------------


@require_role("supervisor")
async def _supervisor(request: web.Request) -> web.StreamResponse:
    state = request.app[PANEL_STATE]
    service = state.agent_api.service
    router = service.router
    now = service.now()
    queues = []
    for name in service.config.queues:
        waiting = router.waiting(name)
        counts = {s: 0 for s in ("available", "reserved", "on_call", "wrap_up", "paused")}
        for agent in router.agents.values():
            if name in agent.skills and agent.state.value in counts:
                counts[agent.state.value] += 1
        longest = max((now - c.joined_at for c in waiting), default=0.0)
        queues.append(
            {
                "queue": name,
                "label": state.queue_label(name),
                "waiting": len(waiting),
                "longest_wait_s": round(max(0.0, longest), 1),
                "agents": counts,
            }
        )
    names = await _display_names(state)
    agents = []
    for agent in sorted(router.agents.values(), key=lambda a: a.id):
        if agent.state is rt.AgentState.OFFLINE:
            continue
        queue = None
        if agent.call_id is not None:
            pop = state.pop_for(agent.id, agent.call_id)
            queue = pop.get("queue") if pop is not None else None
        agents.append(
            {
                "login": agent.id,
                "display_name": names.get(agent.id, agent.id),
                "state": agent.state.value,
                "since_s": round(max(0.0, now - agent.since), 1) if agent.since else None,
                "pause_reason": agent.pause_reason,
                "call_id": agent.call_id,
                "queue": queue,
            }
        )
    callbacks: dict[str, Any] = {"pending": 0, "overdue": 0, "next_due": None}
    if state.callbacks_view is not None:
        try:
            callbacks = await state.callbacks_view()
        except SQLAlchemyError as exc:
            logger.warning("callbacks not read (%s)", type(exc).__name__)
    return web.json_response(
        {
            "queues": queues,
            "agents": agents,
            "callbacks": callbacks,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    )


async def _display_names(state: PanelState) -> dict[str, str]:
    if not state.display_names:
        try:
            listed = await asyncio.to_thread(agents_store.list_agents, state.store)
        except SQLAlchemyError:
            return {}
        state.display_names.update({a.login: a.display_name for a in listed})
    return state.display_names
