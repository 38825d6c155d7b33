"""What the panel keeps in one node's memory: sockets, the calls rung to each agent, searches.

The screen pop of a call arrives with its ``ring`` (from this node's call, or relayed through
Redis from the node holding it) and is kept per agent, for ``GET /panel/api/calls/{id}/pop`` and
for the right to open that call's dossier (see :mod:`callcenter.web.panel.api`). Dossiers found
by an agent's search may be opened by that agent for :data:`SEARCH_GRANT_S`.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from aiohttp import web
from sqlalchemy import Engine

from callcenter.config import PanelConfig, WebRtcConfig
from callcenter.metrics import Metrics
from callcenter.softphone import SoftphoneHub
from callcenter.transfer import TransferTarget
from callcenter.web.agent_api import AgentApi

Consulter = Callable[[str, str, str, TransferTarget | None], Awaitable[None]]
"""``(call_id, agent login, action, target)``: consult, complete or cancel; raises TransferError."""

POPS_PER_AGENT = 5
"""Screen pops kept per agent (the current call and a few before, for the wrap-up)."""
SEARCH_GRANT_S = 900.0
"""How long a dossier found by an agent's search may be opened by that agent."""

HANDOFF_LABELS: Mapping[str, str] = {
    "conseiller": "Demande à parler à un conseiller",
    "agent_request": "Demande à parler à un conseiller",
    "no_match": "Question non comprise par le serveur vocal",
    "not_understood": "Question non comprise par le serveur vocal",
    "not_identified": "Identification impossible",
    "no_dossier_answer": "Dossier sans réponse automatique",
    "tts_failed": "Réponse vocale indisponible",
    "emergency": "Urgence ou détresse",
    "urgence": "Urgence ou détresse",
    "bot": "Réponse du serveur vocal insuffisante",
    "queued": "Mise en relation demandée",
    "rappel": "Rappel demandé par l’usager",
}
"""French labels of common hand-off reasons (flow identifiers; others are shown as they are)."""


@dataclass(slots=True)
class PanelState:
    """The panel's state in one application."""

    agent_api: AgentApi
    """The agent API (routing actions and events), shared with ``/api/agent/``."""
    hub: SoftphoneHub
    """Softphone signalling."""
    store: Engine
    """Dossiers, agents, sessions, audit."""
    config: PanelConfig
    """Panel settings."""
    webrtc: WebRtcConfig
    """Media settings (the ICE servers are given to browsers too)."""
    metrics: Metrics
    """Counters of panel actions."""
    today: Callable[[], date]
    """The service's date (dossier snapshots split payments and rendez-vous around it)."""
    intent_labels: Callable[[], Mapping[str, str]] = lambda: {}
    """Intent id → French label, from the FAQ in service."""
    callbacks_view: Callable[[], Any] | None = None
    """Async: the callbacks summary for supervisors (None: no callbacks)."""
    consult: Consulter | None = None
    """Consult-then-transfer on this node's calls (None: 501)."""
    max_backlog: int = 256
    """Messages queued for one socket before it is closed as too slow."""
    clock: Callable[[], float] = time.monotonic
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    pops: dict[str, OrderedDict[str, dict[str, Any]]] = field(default_factory=dict)
    searched: dict[str, dict[int, float]] = field(default_factory=dict)
    display_names: dict[str, str] = field(default_factory=dict)
    answered: dict[str, OrderedDict[str, None]] = field(default_factory=dict)

    def remember_ring(self, login: str, message: dict[str, Any]) -> dict[str, Any]:
        """Keep the ring's pop for ``login``; return the message with French labels added."""
        pop = message.get("pop")
        call_id = message.get("call_id")
        if not isinstance(pop, dict) or not isinstance(call_id, str):
            return message
        labels = self.intent_labels()
        reason = pop.get("handoff_reason")
        pop = {
            **pop,
            "queue_label": self.queue_label(str(pop.get("queue") or "")),
            "intent_labels": [labels.get(i, i) for i in pop.get("intents") or ()],
            "handoff_label": HANDOFF_LABELS.get(str(reason), reason) if reason else None,
        }
        kept = self.pops.setdefault(login, OrderedDict())
        kept[call_id] = {**pop, "_rung_at": time.monotonic()}
        kept.move_to_end(call_id)
        while len(kept) > POPS_PER_AGENT:
            kept.popitem(last=False)
        return {**message, "pop": pop}

    def mark_answered(self, login: str, call_id: str) -> None:
        """``login`` took ``call_id`` (its wrap-up may then be saved by them)."""
        kept = self.answered.setdefault(login, OrderedDict())
        kept[call_id] = None
        kept.move_to_end(call_id)
        while len(kept) > POPS_PER_AGENT:
            kept.popitem(last=False)

    def has_answered(self, login: str, call_id: str) -> bool:
        """Whether ``login`` took ``call_id`` lately (on this node's panel)."""
        return call_id in self.answered.get(login, {})

    def pop_for(self, login: str, call_id: str) -> dict[str, Any] | None:
        """The pop of a call rung to ``login`` (None: it never rang them here)."""
        kept = self.pops.get(login)
        return kept.get(call_id) if kept is not None else None

    def queue_label(self, queue: str) -> str:
        """A queue's name for people (the skill id, tidied)."""
        return queue.replace("_", " ").upper() if len(queue) <= 4 else queue.replace("_", " ")

    def grant_search(self, login: str, usager_ids: list[int]) -> None:
        """Let ``login`` open these dossiers for :data:`SEARCH_GRANT_S`."""
        now = self.clock()
        grants = self.searched.setdefault(login, {})
        for stale in [u for u, at in grants.items() if now - at > SEARCH_GRANT_S]:
            del grants[stale]
        for usager_id in usager_ids:
            grants[usager_id] = now

    def may_open_searched(self, login: str, usager_id: int) -> bool:
        """Whether ``login`` found this dossier by a search lately."""
        at = self.searched.get(login, {}).get(usager_id)
        return at is not None and self.clock() - at <= SEARCH_GRANT_S

    def record_action(self, login: str, action: str) -> None:
        """Count a softphone action (no login in the labels)."""
        self.metrics.panel_action(action)

    def browser_ice_servers(self) -> list[dict[str, Any]]:
        """The ICE servers for ``RTCPeerConnection`` (STUN only: TURN credentials stay here)."""
        return [{"urls": s} for s in self.webrtc.ice_servers if s.startswith(("stun:", "stuns:"))]


PANEL_STATE = web.AppKey("panel_state", PanelState)
"""The panel's state in the application."""
