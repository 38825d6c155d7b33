"""Test helpers: a clock origin, configurations, and an invariant checker for the router.

The :class:`Checker` replays the router's decision stream on a shadow state (waiting calls,
agents, declines) and checks every offer against :func:`routing.choose_agent` — an
independent, one-call statement of the rules — at the instant it was made.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType
from typing import TypeVar
from zoneinfo import ZoneInfo

from ivr_flows.hours import Schedule, TimeRange
from routing import (
    Agent,
    AgentLoggedIn,
    AgentSkillsChanged,
    AgentState,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallEnqueued,
    CallKeptForCallback,
    CallMaxWaitReached,
    CallQueued,
    CallRejectedClosed,
    CallRemoved,
    Decision,
    Event,
    EventIgnored,
    Offer,
    OfferCall,
    OfferEnded,
    OfferEndReason,
    Overflow,
    QueueConfig,
    QueuedCall,
    RelaxationStep,
    Router,
    RoutingConfig,
    Tick,
    WrapUpEnded,
    choose_agent,
)
from routing.hours import is_open

PARIS = ZoneInfo("Europe/Paris")
T0 = dt.datetime(2025, 6, 2, 10, 0, tzinfo=PARIS).timestamp()
"""Monday 2 June 2025, 10:00 in Paris: the office is open."""


def at(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=PARIS).timestamp()


def office_hours(
    *, public_holidays: str | None = "FR", closures: frozenset[dt.date] = frozenset()
) -> Schedule:
    ranges = (TimeRange(9 * 60, 12 * 60 + 30), TimeRange(13 * 60 + 30, 17 * 60))
    return Schedule(
        name="bureau",
        weekly=MappingProxyType({day: ranges for day in range(5)}),
        closures=closures,
        public_holidays=public_holidays,
    )


def apa_config(**apa: object) -> RoutingConfig:
    """apa (3 → 2 after 60 s → 1 after 120 s, overflow to accueil_general after 180 s)."""
    fields: dict[str, object] = {
        "min_proficiency": 3,
        "relaxation": (RelaxationStep(60.0, 2), RelaxationStep(120.0, 1)),
        "overflow": Overflow(180.0, "accueil_general"),
        "wrap_up_s": 30.0,
        "ring_timeout_s": 20.0,
        "max_wait_s": 900.0,
    }
    fields.update(apa)
    return RoutingConfig.simple(
        [
            QueueConfig("apa", **fields),  # type: ignore[arg-type]
            QueueConfig("accueil_general", wrap_up_s=30.0, max_wait_s=1200.0),
            QueueConfig("urgence_sociale", wrap_up_s=60.0, ring_timeout_s=15.0, max_wait_s=300.0),
        ]
    )


def call(call_id: str, skill: str = "apa", joined_at: float = T0, **kwargs: object) -> QueuedCall:
    return QueuedCall(call_id, skill, joined_at=joined_at, **kwargs)  # type: ignore[arg-type]


def queued(call_id: str, skill: str = "apa", at_: float = T0, **kwargs: object) -> CallQueued:
    return CallQueued(call(call_id, skill, at_, **kwargs), at_)


D = TypeVar("D")


def of_type(decisions: list[Decision], kind: type[D]) -> list[D]:
    return [d for d in decisions if isinstance(d, kind)]


class InvariantError(AssertionError):
    pass


class Checker:
    """Feeds events to a router and checks the routing invariants on every decision."""

    def __init__(self, config: RoutingConfig) -> None:
        self.config = config
        self.router = Router(config=config)
        self.skills: dict[str, Mapping[str, int]] = {}
        self.agents: dict[str, Agent] = {}
        self.waiting: dict[str, QueuedCall] = {}
        self.offered: dict[str, str] = {}  # call id -> agent id
        self.declined: dict[str, set[str]] = {}
        self.enqueued: set[str] = set()
        self.ended: dict[str, str] = {}  # call id -> outcome
        self.decisions: list[Decision] = []
        self.offers = 0
        self.calls: dict[str, QueuedCall] = {}
        self.kept: set[str] = set()

    # -- driving -------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Decision]:
        if isinstance(event, CallQueued):
            self.calls[event.call.call_id] = event.call
            if event.call.callback:  # a callback entering the queue: no maximum wait
                self.kept.add(event.call.call_id)
        if isinstance(event, AgentLoggedIn | AgentSkillsChanged):
            self.skills[event.agent_id] = dict(event.skills)
            if isinstance(event, AgentSkillsChanged) and event.agent_id in self.agents:
                self.agents[event.agent_id] = dataclasses.replace(
                    self.agents[event.agent_id], skills=MappingProxyType(dict(event.skills))
                )
        decisions = self.router.handle(event)
        for decision in decisions:
            self._apply(decision)
        now = self.router.now
        assert now is not None
        self._check_settled(now)
        self.decisions.extend(decisions)
        return decisions

    def run_timers(self, until: float) -> None:
        """Fire every router timer up to ``until``, exactly at its deadline."""
        while (timer := self.router.get_timer()) is not None and timer <= until:
            self.handle(Tick(timer))

    # -- shadow state --------------------------------------------------------------------

    def _apply(self, d: Decision) -> None:
        match d:
            case CallEnqueued():
                if d.call_id in self.enqueued:
                    raise InvariantError(f"{d.call_id} enqueued twice")
                self.enqueued.add(d.call_id)
                self.waiting[d.call_id] = self.calls[d.call_id]
            case OfferCall():
                self._check_offer(d)
                self.offers += 1
                self.waiting.pop(d.call.call_id)
                self.offered[d.call.call_id] = d.agent_id
            case OfferEnded():
                agent = self.offered.pop(d.call_id, None)
                if agent != d.agent_id:
                    raise InvariantError(f"offer end for {d.call_id}/{d.agent_id} unknown")
                if d.reason is OfferEndReason.REJECTED:
                    self.declined.setdefault(d.call_id, set()).add(d.agent_id)
                self.waiting[d.call_id] = self.calls[d.call_id]
            case CallAnswered():
                if self.offered.pop(d.call_id, None) != d.agent_id:
                    raise InvariantError(f"{d.call_id} answered by {d.agent_id} without offer")
                self._end(d.call_id, "answered")
            case CallAbandoned():
                self.waiting.pop(d.call_id, None)
                self._end(d.call_id, "abandoned")
            case CallMaxWaitReached():
                self.waiting.pop(d.call_id)
                self._end(d.call_id, "max_wait")
            case CallRejectedClosed():
                if d.call_id in self.enqueued:
                    self.waiting.pop(d.call_id)
                    self._end(d.call_id, "closed")
            case CallKeptForCallback():
                self.kept.add(d.call_id)
            case CallRemoved():
                self.waiting.pop(d.call_id, None)
                self._end(d.call_id, "removed")
            case AgentStateChanged():
                previous = self.agents.get(d.agent_id)
                skills = MappingProxyType(dict(self.skills.get(d.agent_id, {})))
                if previous is None or previous.state is AgentState.OFFLINE:
                    previous = Agent(d.agent_id, skills, logged_in_at=d.at)
                self.agents[d.agent_id] = dataclasses.replace(
                    previous, state=d.state, since=d.at, pause_reason=d.reason, skills=skills
                )
            case EventIgnored():
                if not d.event:
                    raise InvariantError(f"a timer produced {d}")
            case WrapUpEnded():
                wrapped = self.agents[d.agent_id]
                self.agents[d.agent_id] = dataclasses.replace(wrapped, last_call_ended_at=d.at)
            case _:
                pass

    def _end(self, call_id: str, outcome: str) -> None:
        if call_id in self.ended:
            raise InvariantError(f"{call_id} ended twice: {self.ended[call_id]} then {outcome}")
        self.ended[call_id] = outcome
        self.declined.pop(call_id, None)

    # -- checks --------------------------------------------------------------------------

    def _available(self) -> list[Agent]:
        return [a for a in self.agents.values() if a.state is AgentState.AVAILABLE]

    def _check_offer(self, d: OfferCall) -> None:
        c = d.call
        if c != self.calls[c.call_id]:
            raise InvariantError(f"offer carries {c}, queued {self.calls[c.call_id]}")
        if c.call_id not in self.waiting:
            raise InvariantError(f"{c.call_id} offered but not waiting (double offer?)")
        agent = self.agents.get(d.agent_id)
        if agent is None or agent.state is not AgentState.AVAILABLE:
            raise InvariantError(f"{d.agent_id} offered {c.call_id} while {agent and agent.state}")
        if d.agent_id in self.declined.get(c.call_id, set()):
            raise InvariantError(f"{c.call_id} offered again to {d.agent_id} who rejected it")
        tz = self.config.timezone
        if not is_open(self.config.queues[d.queue].hours, tz, d.at):
            raise InvariantError(f"offer through closed queue {d.queue} at {d.at}")
        if not is_open(self.config.queues[c.skill].hours, tz, d.at):
            raise InvariantError(f"offer of {c.call_id} while its queue {c.skill} is closed")
        # Rule 2/3: the agent is the one choose_agent picks among available agents.
        expected = choose_agent(
            c,
            self._available(),
            d.at,
            self.config,
            declined=self.declined.get(c.call_id, ()),
            kept=c.call_id in self.kept,
        )
        if not isinstance(expected, Offer) or expected.agent_id != d.agent_id:
            raise InvariantError(f"offer {c.call_id}->{d.agent_id} at {d.at}, rules say {expected}")
        # Rule 1/4: no better-placed waiting call could have been given to this agent.
        key = self._key(c)
        for other in self.waiting.values():
            if other.call_id == c.call_id or self._key(other) >= key:
                continue
            choice = choose_agent(
                other,
                [agent],
                d.at,
                self.config,
                declined=self.declined.get(other.call_id, ()),
                kept=other.call_id in self.kept,
            )
            if isinstance(choice, Offer):
                raise InvariantError(
                    f"{c.call_id} offered to {d.agent_id} before better-placed {other.call_id}"
                )

    def _key(self, c: QueuedCall) -> tuple[int, float]:
        return (-int(self.config.priorities.effective(c)), c.joined_at)

    def _check_settled(self, now: float) -> None:
        """After an event: the shadow matches the router, and no call waits for nothing."""
        router_waiting = {c.call_id for q in self.config.queues for c in self.router.waiting(q)}
        own_waiting = {
            c.call_id for q in self.config.queues for c in self.router.waiting(q) if c.skill == q
        }
        for call_id in self.waiting:
            if call_id not in router_waiting and self.router.call_phase(call_id) != "waiting":
                raise InvariantError(f"shadow has {call_id} waiting, router does not")
        if own_waiting != set(self.waiting):
            raise InvariantError(f"waiting mismatch {own_waiting ^ set(self.waiting)}")
        available = self._available()
        for state in (AgentState.RESERVED,):
            reserved = [a.id for a in self.router.agents.values() if a.state is state]
            holders = list(self.offered.values())
            if sorted(reserved) != sorted(holders) or len(set(holders)) != len(holders):
                raise InvariantError(f"reserved agents {reserved} vs offers {self.offered}")
        for c in self.waiting.values():
            choice = choose_agent(
                c,
                available,
                now,
                self.config,
                declined=self.declined.get(c.call_id, ()),
                kept=c.call_id in self.kept,
            )
            if isinstance(choice, Offer):
                raise InvariantError(f"{c.call_id} waits at {now} while {choice} is possible")
            next_change = getattr(choice, "next_change", None)
            timer = self.router.get_timer()
            if next_change is not None and (timer is None or timer > next_change + 1e-6):
                raise InvariantError(
                    f"router sleeps until {timer}, {c.call_id} changes at {next_change}"
                )
