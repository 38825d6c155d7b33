"""The routing engine: a sans-IO state machine from events to decisions.

``Router.handle(event)`` returns the decisions the event leads to; ``get_timer()`` gives the
next instant something changes by itself (ring timeout, relaxation step, overflow, maximum
wait, wrap-up end, a queue opening or closing) and ``handle(Tick(at))`` fires it. The adapter
only calls ``loop.call_at`` — as with ``callcenter/sip/engine.py``. Nothing here reads a clock.

Rules this file owns:

Rule 1 (call order). Calls are served by effective priority (highest first), then by
``joined_at`` (longest waiting first), then by arrival order.

Rule 2 (who qualifies). A call's *wait* is ``now - joined_at``. The call may be served through
its own queue and, once the wait reaches an overflow step, through the overflow queue (and that
queue's own overflow, and so on), but only through queues open at ``now``. Through queue ``q``,
an available agent qualifies when their proficiency in ``q`` is at least
``q.min_proficiency_at(wait)`` and they have not rejected this call.

Rule 3 (which agent). Among qualified agents, the call's own queue comes first, then overflow
queues in chain order; within a queue, highest proficiency, then longest idle (earliest
``Agent.idle_since``), then agent id.

Rule 4 (greedy dispatch). After every change, the first call in Rule 1 order that has a
qualified agent is offered to its Rule 3 agent; repeat until no call has one. So no call waits
while an agent qualified for it is available, and one agent never holds two offers.

Rule 5 (time). Before an event at ``at`` is applied, every timer due at or before ``at`` fires,
each at its own deadline, in deadline order: decisions do not depend on how often the adapter
ticks. Events earlier than the router's clock are applied at the router's clock.

Rule 6 (hours). No offer through a closed queue. A call for a closed queue is refused; calls
still waiting when their own queue closes leave it (``CallRejectedClosed``).
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import heapq
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

from .events import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPauseRequested,
    AgentReady,
    AgentSkillsChanged,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallbackKept,
    CallCancelled,
    CallCompleted,
    CallEnded,
    CallEnqueued,
    CallerHungUp,
    CallKeptForCallback,
    CallMaxWaitReached,
    CallOverflowed,
    CallQueued,
    CallRejectedClosed,
    CallRejectedQueueFull,
    CallRemoved,
    Closed,
    Decision,
    Event,
    EventIgnored,
    MaxWaitReached,
    Offer,
    OfferAccepted,
    OfferCall,
    OfferEnded,
    OfferEndReason,
    OfferRejected,
    OfferTimedOut,
    RoutingDecision,
    Tick,
    Wait,
    WrapUpDone,
    WrapUpEnded,
)
from .hours import OpenState, next_opening, open_state
from .model import STAFFED_STATES, Agent, AgentState, QueuedCall, check_skills
from .queue_config import QueueConfig, RoutingConfig

_INF = float("inf")
WAIT_EPSILON = 1e-6
"""Added to every wait so that a step due at ``joined_at + after`` applies at that very
deadline despite float rounding (POSIX times have ~2e-7 s resolution)."""


class RoutingError(ValueError):
    """An event the router cannot apply (a bug in the caller, not a race)."""


class UnknownQueueError(RoutingError):
    """The call names a queue that is not configured."""


class UnknownAgentError(RoutingError):
    """The agent never logged in."""


class UnknownCallError(RoutingError, KeyError):
    """The router does not hold this call (also a ``KeyError``, as a mapping lookup)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class AgentStateError(RoutingError):
    """The agent's state does not allow this event (e.g. a pause while logged out)."""


def wait_of(call: QueuedCall, now: float) -> float:
    """Return the call's wait at ``now`` as the rules see it (see :data:`WAIT_EPSILON`).

    Args:
        call: The call.
        now: POSIX seconds.

    Returns:
        Seconds since ``joined_at``.
    """
    return now - call.joined_at + WAIT_EPSILON


def _elapsed(call: QueuedCall, now: float) -> float:
    return max(0.0, now - call.joined_at)


def overflow_chain(config: RoutingConfig, queue: str) -> tuple[tuple[str, float], ...]:
    """Return the queues that may serve a call of ``queue`` and the wait from which each may.

    Args:
        config: Routing configuration.
        queue: The call's own queue.

    Returns:
        ``((queue, 0.0), (overflow, after), (its overflow, max(after, after2)), ...)``.
    """
    chain = [(queue, 0.0)]
    seen = {queue}
    reach = 0.0
    current = config.queues[queue]
    while current.overflow is not None and current.overflow.to_queue not in seen:
        reach = max(reach, current.overflow.after_s)
        target = current.overflow.to_queue
        chain.append((target, reach))
        seen.add(target)
        current = config.queues[target]
    return tuple(chain)


def _agent_key(agent: Agent, queue: str) -> tuple[int, float, str]:
    return (-agent.proficiency(queue), agent.idle_since, agent.id)


def choose_agent(
    call: QueuedCall,
    agents: Iterable[Agent],
    now: float,
    config: RoutingConfig,
    *,
    declined: Iterable[str] = (),
    kept: bool = False,
) -> RoutingDecision:
    """Decide what to do with one call, given the agents, at ``now`` (Rules 2, 3 and 6).

    This is the router's rule for a single call, without the other waiting calls: the
    :class:`Router` makes the same choice for the first call in its order.

    Args:
        call: The waiting call.
        agents: Agents as they are now (only ``available`` ones are considered).
        now: POSIX seconds.
        config: Routing configuration.
        declined: Ids of agents who already rejected this call.
        kept: The call keeps its place as a callback (no maximum wait).

    Returns:
        ``Offer``, ``Wait``, ``Closed`` or ``MaxWaitReached``.

    Raises:
        UnknownQueueError: If the call's queue is not configured.
    """
    if call.skill not in config.queues:
        raise UnknownQueueError(f"unknown queue {call.skill!r} for call {call.call_id}")
    own = config.queues[call.skill]
    tz = config.timezone
    state = open_state(own.hours, tz, now)
    if not state.open:
        return Closed(next_opening(own.hours, tz, now))
    wait = wait_of(call, now)
    if not kept and own.max_wait_s is not None and wait >= own.max_wait_s:
        return MaxWaitReached(_elapsed(call, now))
    refused = frozenset(declined)
    available = [a for a in agents if a.state is AgentState.AVAILABLE and a.id not in refused]
    required: dict[str, int] = {}
    for queue, reach in overflow_chain(config, call.skill):
        if wait < reach:
            break
        queue_config = config.queues[queue]
        if not open_state(queue_config.hours, tz, now).open:
            continue
        level = queue_config.min_proficiency_at(wait)
        required[queue] = level
        qualified = [a for a in available if a.proficiency(queue) >= level]
        if qualified:
            best = min(qualified, key=lambda a: _agent_key(a, queue))
            return Offer(best.id, queue, best.proficiency(queue))
    changes = [c for c in _call_deadlines(config, call, now, kept=kept) if c > now]
    return Wait(MappingProxyType(required), min(changes) if changes else None)


def _call_deadlines(
    config: RoutingConfig, call: QueuedCall, now: float, *, kept: bool
) -> list[float]:
    """Instants at which the rules for this call change (relaxation, overflow, max wait)."""
    wait = wait_of(call, now)
    out: list[float] = []
    for queue, reach in overflow_chain(config, call.skill):
        if wait < reach:
            out.append(call.joined_at + reach)
            break
        step = config.queues[queue].next_relaxation_after(wait)
        if step is not None:
            out.append(call.joined_at + step)
    max_wait = config.queues[call.skill].max_wait_s
    if not kept and max_wait is not None:
        out.append(call.joined_at + max_wait)
    return out


class _CallPhase(enum.Enum):
    WAITING = "waiting"
    OFFERED = "offered"
    CONNECTED = "connected"


class _Call:
    """The router's mutable record of one call."""

    __slots__ = (
        "answered_at",
        "agent_id",
        "call",
        "declined",
        "key",
        "kept",
        "listed",
        "overflowed",
        "phase",
        "version",
        "via",
    )

    def __init__(self, call: QueuedCall, key: tuple[int, float, int, str]) -> None:
        self.call = call
        self.key = key
        self.phase = _CallPhase.WAITING
        self.listed: list[str] = []
        self.overflowed: set[str] = set()
        self.declined: set[str] = set()
        self.kept = False
        self.version = 0
        self.agent_id: str | None = None
        self.via: str = call.skill
        self.answered_at: float | None = None


# Timer kinds, in the order they fire when due at the same instant: a queue closing first
# (no offer after closing time), then offers ringing out, wrap-ups ending, call steps.
_QUEUE = 0
_RING = 1
_WRAP = 2
_CALL = 3


class Router:
    """Skills-based routing for one service: queues, agents, offers, timers.

    Args:
        config: The routing configuration.
    """

    def __init__(self, *, config: RoutingConfig) -> None:
        self.config = config
        self._now: float | None = None
        self._agents: dict[str, Agent] = {}
        self._calls: dict[str, _Call] = {}
        self._waiting: dict[str, list[tuple[int, float, int, str]]] = {q: [] for q in config.queues}
        self._available: dict[str, list[tuple[int, float, str]]] = {q: [] for q in config.queues}
        self._size: dict[str, int] = dict.fromkeys(config.queues, 0)
        self._chains = {q: overflow_chain(config, q) for q in config.queues}
        self._open: dict[str, OpenState] = {}
        self._timers: list[tuple[float, int, int, str, int]] = []  # deadline, kind, seq, key, token
        self._seq = 0
        self._offer_tokens: dict[str, int] = {}
        self._wrap_tokens: dict[str, int] = {}
        self._queue_versions: dict[str, int] = dict.fromkeys(config.queues, 0)
        self._wrap_call: dict[str, tuple[str, str, float]] = {}

    # -- inspection --------------------------------------------------------------------------

    @property
    def now(self) -> float | None:
        """The router's clock: the time of the last event or timer applied."""
        return self._now

    @property
    def agents(self) -> Mapping[str, Agent]:
        """Every agent seen since start, by id (read-only view)."""
        return MappingProxyType(self._agents)

    def is_logged_in(self, agent_id: str) -> bool:
        """Tell whether this agent is logged in now (any state but offline)."""
        agent = self._agents.get(agent_id)
        return agent is not None and agent.state is not AgentState.OFFLINE

    def agent(self, agent_id: str) -> Agent:
        """Return an agent.

        Args:
            agent_id: The agent.

        Returns:
            Their current record.

        Raises:
            UnknownAgentError: If they never logged in.
        """
        try:
            return self._agents[agent_id]
        except KeyError:
            raise UnknownAgentError(f"unknown agent {agent_id!r}") from None

    def waiting(self, queue: str) -> list[QueuedCall]:
        """Return the calls waiting in a queue, in the order they will be served.

        Calls that overflowed from other queues are included; calls being offered are not.

        Args:
            queue: Queue name.

        Returns:
            The calls.
        """
        return [self._calls[entry[3]].call for entry in self._waiting[queue]]

    def position(self, call_id: str) -> int | None:
        """Return the 1-based position of a waiting call in its own queue.

        Args:
            call_id: The call.

        Returns:
            The position, or None if the call is not waiting (unknown, ringing, answered).
        """
        record = self._calls.get(call_id)
        if record is None or record.phase is not _CallPhase.WAITING:
            return None
        entries = self._waiting[record.call.skill]
        index = bisect.bisect_left(entries, record.key)
        if index < len(entries) and entries[index] == record.key:
            return index + 1
        return None

    def waiting_call(self, call_id: str) -> QueuedCall:
        """Return a call the router holds (waiting, ringing or connected).

        Args:
            call_id: The call.

        Returns:
            The call as queued.

        Raises:
            UnknownCallError: If the router does not hold it.
        """
        record = self._calls.get(call_id)
        if record is None:
            raise UnknownCallError(f"unknown call {call_id}")
        return record.call

    def queue_size(self, queue: str) -> int:
        """Return the number of calls of this queue waiting or ringing (for ``max_size``)."""
        return self._size[queue]

    def call_phase(self, call_id: str) -> str | None:
        """Return ``"waiting"``, ``"offered"`` or ``"connected"``, None if unknown or gone."""
        record = self._calls.get(call_id)
        return None if record is None else record.phase.value

    def staffed_agents(self, queue: str) -> list[Agent]:
        """Return the logged-in, unpaused agents who have the queue's skill.

        Args:
            queue: Queue name.

        Returns:
            Agents in ``available``, ``reserved``, ``on_call`` or ``wrap_up``.
        """
        return [
            agent
            for agent in self._agents.values()
            if agent.proficiency(queue) > 0 and agent.state in STAFFED_STATES
        ]

    def is_open(self, queue: str, now: float) -> bool:
        """Tell whether a queue is open at ``now``.

        Args:
            queue: Queue name.
            now: POSIX seconds.

        Returns:
            True when open.
        """
        return open_state(self.config.queues[queue].hours, self.config.timezone, now).open

    # -- timers ----------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """Return the next instant at which the router changes by itself, or None."""
        timers = self._timers
        while timers:
            deadline, kind, _seq, key, token = timers[0]
            if self._timer_valid(kind, key, token):
                return deadline
            heapq.heappop(timers)
        return None

    def handle_timer(self, now: float) -> list[Decision]:
        """Fire the timers due at ``now`` (same as ``handle(Tick(now))``).

        Args:
            now: POSIX seconds.

        Returns:
            The decisions.
        """
        return self.handle(Tick(now))

    # -- events ----------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Decision]:
        """Apply one event and return what the router decides.

        Args:
            event: The event.

        Returns:
            Decisions, in the order they were taken.

        Raises:
            RoutingError: If the event cannot apply (unknown queue or agent, a duplicate call,
                an unknown pause reason, a pause or ready while logged out). The router is
                unchanged in that case, apart from timers due before the event.
        """
        self._validate(event)
        out: list[Decision] = []
        now = event.at if self._now is None else max(event.at, self._now)
        self._advance(now, out)
        self._now = now
        match event:
            case Tick():
                pass
            case CallQueued():
                self._call_queued(event.call, now, out)
            case CallerHungUp():
                self._caller_hung_up(event.call_id, now, out)
            case CallCancelled():
                self._call_cancelled(event.call_id, now, out)
            case CallbackKept():
                self._callback_kept(event.call_id, now, out)
            case AgentLoggedIn():
                self._login(event, now, out)
            case AgentLoggedOut():
                self._logout(event.agent_id, now, out)
            case AgentSkillsChanged():
                self._skills_changed(event.agent_id, event.skills, now, out)
            case AgentReady():
                self._ready(event.agent_id, now, out)
            case AgentPauseRequested():
                self._pause(event.agent_id, event.reason, now, out)
            case OfferAccepted():
                self._accepted(event.agent_id, event.call_id, now, out)
            case OfferRejected():
                self._offer_failed(event, OfferEndReason.REJECTED, now, out)
            case OfferTimedOut():
                self._offer_failed(event, OfferEndReason.RING_TIMEOUT, now, out)
            case CallEnded():
                self._call_ended(event.agent_id, event.call_id, now, out)
            case WrapUpDone():
                self._wrap_up_done(
                    event.agent_id, event.resolved, now, out, event_name="WrapUpDone"
                )
        self._dispatch(now, out)
        return out

    def _validate(self, event: Event) -> None:
        """Raise for events that cannot apply, before anything changes (timers included).

        Timers never log agents in or out, so these checks still hold once due timers fired.
        """
        match event:
            case CallQueued(call=call):
                if call.skill not in self.config.queues:
                    raise UnknownQueueError(f"unknown queue {call.skill!r} for call {call.call_id}")
                if call.call_id in self._calls:
                    raise RoutingError(f"call {call.call_id} is already queued")
            case AgentLoggedIn():
                previous = self._agents.get(event.agent_id)
                if previous is not None and previous.state is not AgentState.OFFLINE:
                    raise AgentStateError(f"agent {event.agent_id!r} is already logged in")
                check_skills(event.skills)
                if event.pause_reason is not None:
                    self._check_reason(event.pause_reason)
            case AgentLoggedOut():
                self.agent(event.agent_id)
            case AgentSkillsChanged():
                self.agent(event.agent_id)
                check_skills(event.skills)
            case AgentReady():
                if self.agent(event.agent_id).state is AgentState.OFFLINE:
                    raise AgentStateError(f"agent {event.agent_id!r} is logged out")
            case AgentPauseRequested():
                self._check_reason(event.reason)
                if self.agent(event.agent_id).state is AgentState.OFFLINE:
                    raise AgentStateError(f"agent {event.agent_id!r} is logged out")
            case _:
                pass

    # -- event handlers ------------------------------------------------------------------

    def _call_queued(self, call: QueuedCall, now: float, out: list[Decision]) -> None:
        queue = self.config.queues[call.skill]
        if not self._open_at(call.skill, now):
            out.append(CallRejectedClosed(call.call_id, call.skill, 0.0, call.callback, now))
            return
        if queue.max_size is not None and self._size[call.skill] >= queue.max_size:
            out.append(CallRejectedQueueFull(call.call_id, call.skill, now))
            return
        priority = self.config.priorities.effective(call)
        self._seq += 1
        record = _Call(call, (-int(priority), call.joined_at, self._seq, call.call_id))
        # A callback entering the queue (slot, retry, restored after a restart) has nobody on
        # the line: like a kept place, the maximum wait does not apply to it.
        record.kept = call.callback
        self._calls[call.call_id] = record
        self._size[call.skill] += 1
        target = self._agents.get(call.target_agent) if call.target_agent else None
        if target is not None and target.state is AgentState.AVAILABLE:
            # A transfer to a named colleague: offered at once, outside the queue order; a
            # refusal or no answer puts it back in its queue (``_requeue``).
            out.append(CallEnqueued(call.call_id, call.skill, priority, 0, now, call.callback))
            self._offer(record, target, call.skill, now, out)
            return
        self._sync(record, now, out, announce=False)
        position = self.position(call.call_id) or 0
        out.append(CallEnqueued(call.call_id, call.skill, priority, position, now, call.callback))
        self._announce_overflows(record, now, out)
        if self._check_max_wait(record, now, out):
            return
        self._schedule_call(record, now)

    def _caller_hung_up(self, call_id: str, now: float, out: list[Decision]) -> None:
        record = self._calls.get(call_id)
        if record is None:
            return
        if record.phase is _CallPhase.CONNECTED:
            assert record.agent_id is not None
            self._call_ended(record.agent_id, call_id, now, out)
            return
        ringing = record.phase is _CallPhase.OFFERED
        if ringing:
            self._withdraw_offer(record, OfferEndReason.CALLER_HUNG_UP, now, out)
        self._remove(record)
        out.append(
            CallAbandoned(call_id, record.call.skill, _elapsed(record.call, now), ringing, now)
        )

    def _call_cancelled(self, call_id: str, now: float, out: list[Decision]) -> None:
        record = self._calls.get(call_id)
        if record is None or record.phase is _CallPhase.CONNECTED:
            out.append(EventIgnored("CallCancelled", None, call_id, "call not waiting", now))
            return
        if record.phase is _CallPhase.OFFERED:
            self._withdraw_offer(record, OfferEndReason.CALL_CANCELLED, now, out)
        self._remove(record)
        out.append(CallRemoved(call_id, record.call.skill, _elapsed(record.call, now), now))

    def _callback_kept(self, call_id: str, now: float, out: list[Decision]) -> None:
        record = self._calls.get(call_id)
        if record is None or record.phase is _CallPhase.CONNECTED:
            out.append(EventIgnored("CallbackKept", None, call_id, "call not waiting", now))
            return
        record.kept = True
        waited = _elapsed(record.call, now)
        if record.phase is _CallPhase.OFFERED:
            # The caller asked while an agent's phone was being rung for the live call, and is
            # hanging up: that offer rings for nobody. The agent is free again (not penalised),
            # and the entry, back in its place, will be offered to dial out. The place is kept
            # before it is requeued: requeuing may already close it out (its queue closed while
            # it rang), and listeners must see the callback kept before it leaves the queue.
            self._withdraw_offer(record, OfferEndReason.CALL_CANCELLED, now, out)
            out.append(CallKeptForCallback(call_id, record.call.skill, None, now, waited))
            self._requeue(record, now, out)
            return
        out.append(
            CallKeptForCallback(call_id, record.call.skill, self.position(call_id), now, waited)
        )
        if record.phase is _CallPhase.WAITING:
            record.version += 1
            self._schedule_call(record, now)

    def _login(self, event: AgentLoggedIn, now: float, out: list[Decision]) -> None:
        skills = check_skills(event.skills)
        agent = Agent(
            id=event.agent_id,
            skills=MappingProxyType(skills),
            state=AgentState.PAUSED if event.pause_reason else AgentState.AVAILABLE,
            since=now,
            pause_reason=event.pause_reason,
            logged_in_at=now,
        )
        self._set_agent(agent, now, out)

    def _logout(self, agent_id: str, now: float, out: list[Decision]) -> None:
        agent = self.agent(agent_id)
        if agent.state is AgentState.OFFLINE:
            return
        if agent.state is AgentState.RESERVED:
            record = self._calls[agent.call_id] if agent.call_id else None
            if record is not None:
                self._withdraw_offer(record, OfferEndReason.AGENT_LOGGED_OUT, now, out)
                self._requeue(record, now, out)
                agent = self._agents[agent_id]
        self._wrap_call.pop(agent_id, None)
        self._wrap_tokens.pop(agent_id, None)
        self._offer_tokens.pop(agent_id, None)
        self._set_agent(
            dataclasses.replace(
                agent,
                state=AgentState.OFFLINE,
                since=now,
                pause_reason=None,
                pending_pause=None,
                call_id=None,
                logged_in_at=None,
            ),
            now,
            out,
        )

    def _skills_changed(
        self, agent_id: str, skills: Mapping[str, int], now: float, out: list[Decision]
    ) -> None:
        agent = self.agent(agent_id)
        checked = check_skills(skills)
        self._unlist_agent(agent)
        agent = dataclasses.replace(agent, skills=MappingProxyType(checked))
        self._agents[agent_id] = agent
        if agent.state is AgentState.AVAILABLE:
            self._list_agent(agent)

    def _ready(self, agent_id: str, now: float, out: list[Decision]) -> None:
        agent = self.agent(agent_id)
        if agent.state is AgentState.PAUSED:
            self._set_agent(
                dataclasses.replace(
                    agent, state=AgentState.AVAILABLE, since=now, pause_reason=None
                ),
                now,
                out,
            )
        elif agent.state is AgentState.WRAP_UP:
            self._wrap_up_done(agent_id, None, now, out, event_name="AgentReady", ready=True)
        elif agent.pending_pause is not None:
            self._set_agent(dataclasses.replace(agent, pending_pause=None), now, out)

    def _pause(self, agent_id: str, reason: str, now: float, out: list[Decision]) -> None:
        agent = self.agent(agent_id)
        if agent.state in (AgentState.ON_CALL, AgentState.WRAP_UP):
            self._set_agent(dataclasses.replace(agent, pending_pause=reason), now, out)
            return
        if agent.state is AgentState.RESERVED and agent.call_id is not None:
            record = self._calls[agent.call_id]
            self._withdraw_offer(record, OfferEndReason.AGENT_PAUSED, now, out)
            self._requeue(record, now, out)
            agent = self._agents[agent_id]
        self._set_agent(
            dataclasses.replace(
                agent, state=AgentState.PAUSED, since=now, pause_reason=reason, call_id=None
            ),
            now,
            out,
        )

    def _accepted(self, agent_id: str, call_id: str, now: float, out: list[Decision]) -> None:
        agent = self._agents.get(agent_id)
        record = self._calls.get(call_id)
        if (
            agent is None
            or record is None
            or agent.state is not AgentState.RESERVED
            or agent.call_id != call_id
            or record.phase is not _CallPhase.OFFERED
        ):
            out.append(EventIgnored("OfferAccepted", agent_id, call_id, "no such offer", now))
            return
        record.phase = _CallPhase.CONNECTED
        record.answered_at = now
        record.version += 1
        self._offer_tokens.pop(agent_id, None)
        self._size[record.call.skill] -= 1
        wait = _elapsed(record.call, now)
        out.append(CallAnswered(agent_id, call_id, record.call.skill, record.via, wait, now))
        self._set_agent(dataclasses.replace(agent, state=AgentState.ON_CALL, since=now), now, out)

    def _offer_failed(
        self,
        event: OfferRejected | OfferTimedOut,
        reason: OfferEndReason,
        now: float,
        out: list[Decision],
    ) -> None:
        agent = self._agents.get(event.agent_id)
        record = self._calls.get(event.call_id)
        if (
            agent is None
            or record is None
            or agent.state is not AgentState.RESERVED
            or agent.call_id != event.call_id
        ):
            name = type(event).__name__
            out.append(EventIgnored(name, event.agent_id, event.call_id, "no such offer", now))
            return
        self._fail_offer(agent, record, reason, now, out)

    def _fail_offer(
        self,
        agent: Agent,
        record: _Call,
        reason: OfferEndReason,
        now: float,
        out: list[Decision],
    ) -> None:
        out.append(OfferEnded(agent.id, record.call.call_id, reason, now))
        self._offer_tokens.pop(agent.id, None)
        if reason is OfferEndReason.REJECTED:
            record.declined.add(agent.id)
            new = dataclasses.replace(agent, state=AgentState.AVAILABLE, since=now, call_id=None)
        else:
            new = dataclasses.replace(
                agent,
                state=AgentState.PAUSED,
                since=now,
                call_id=None,
                pause_reason=self.config.no_answer_reason,
                pending_pause=None,
            )
        self._set_agent(new, now, out)
        self._requeue(record, now, out)

    def _call_ended(self, agent_id: str, call_id: str, now: float, out: list[Decision]) -> None:
        record = self._calls.get(call_id)
        if record is None or record.phase is not _CallPhase.CONNECTED:
            out.append(EventIgnored("CallEnded", agent_id, call_id, "call not connected", now))
            return
        agent_id = record.agent_id or agent_id
        del self._calls[call_id]
        answered = record.answered_at if record.answered_at is not None else now
        talk = now - answered
        queue = self.config.queues[record.call.skill]
        out.append(CallCompleted(agent_id, call_id, record.call.skill, talk, now))
        agent = self._agents.get(agent_id)
        if agent is None or agent.state is not AgentState.ON_CALL or agent.call_id != call_id:
            return  # the agent logged out during the call
        self._wrap_call[agent_id] = (call_id, record.call.skill, answered)
        self._set_agent(dataclasses.replace(agent, state=AgentState.WRAP_UP, since=now), now, out)
        self._seq += 1
        self._wrap_tokens[agent_id] = self._seq
        if queue.wrap_up_s <= 0:
            self._wrap_up_done(agent_id, None, now, out, event_name="", timed_out=True)
        else:
            self._push(now + queue.wrap_up_s, _WRAP, agent_id, self._seq)

    def _wrap_up_done(
        self,
        agent_id: str,
        resolved: bool | None,
        now: float,
        out: list[Decision],
        *,
        event_name: str,
        timed_out: bool = False,
        ready: bool = False,
    ) -> None:
        agent = self._agents.get(agent_id)
        if agent is None or agent.state is not AgentState.WRAP_UP:
            out.append(EventIgnored(event_name, agent_id, None, "agent not in wrap-up", now))
            return
        self._wrap_tokens.pop(agent_id, None)
        call_id, queue, answered = self._wrap_call.pop(agent_id, (agent.call_id or "", "", now))
        out.append(WrapUpEnded(agent_id, call_id, queue, now - answered, resolved, timed_out, now))
        pending = None if ready else agent.pending_pause
        if pending is not None:
            new = dataclasses.replace(
                agent,
                state=AgentState.PAUSED,
                since=now,
                pause_reason=pending,
                pending_pause=None,
                call_id=None,
                last_call_ended_at=now,
            )
        else:
            new = dataclasses.replace(
                agent,
                state=AgentState.AVAILABLE,
                since=now,
                pause_reason=None,
                pending_pause=None,
                call_id=None,
                last_call_ended_at=now,
            )
        self._set_agent(new, now, out)

    # -- timers ----------------------------------------------------------------------------

    def _push(self, deadline: float, kind: int, key: str, token: int) -> None:
        self._seq += 1
        heapq.heappush(self._timers, (deadline, kind, self._seq, key, token))

    def _timer_valid(self, kind: int, key: str, token: int) -> bool:
        if kind == _RING:
            return self._offer_tokens.get(key) == token
        if kind == _WRAP:
            return self._wrap_tokens.get(key) == token
        if kind == _CALL:
            record = self._calls.get(key)
            return (
                record is not None
                and record.phase is _CallPhase.WAITING
                and record.version == token
            )
        return self._queue_versions.get(key) == token

    def _advance(self, until: float, out: list[Decision]) -> None:
        timers = self._timers
        while timers and timers[0][0] <= until:
            deadline = timers[0][0]
            fired = False
            while timers and timers[0][0] == deadline:
                _, kind, _, key, token = heapq.heappop(timers)
                if not self._timer_valid(kind, key, token):
                    continue
                self._now = deadline
                fired = True
                self._fire(kind, key, deadline, out)
            if fired:
                self._dispatch(deadline, out)

    def _fire(self, kind: int, key: str, now: float, out: list[Decision]) -> None:
        if kind == _RING:
            agent = self._agents[key]
            assert agent.call_id is not None
            self._fail_offer(
                agent, self._calls[agent.call_id], OfferEndReason.RING_TIMEOUT, now, out
            )
        elif kind == _WRAP:
            self._wrap_up_done(key, None, now, out, event_name="", timed_out=True)
        elif kind == _CALL:
            record = self._calls[key]
            self._sync(record, now, out)
            if not self._check_max_wait(record, now, out):
                record.version += 1
                self._schedule_call(record, now)
        else:
            self._refresh_hours(now, out)

    def _schedule_call(self, record: _Call, now: float) -> None:
        deadlines = [
            d for d in _call_deadlines(self.config, record.call, now, kept=record.kept) if d > now
        ]
        if deadlines:
            self._push(min(deadlines), _CALL, record.call.call_id, record.version)

    def _check_max_wait(self, record: _Call, now: float, out: list[Decision]) -> bool:
        max_wait = self.config.queues[record.call.skill].max_wait_s
        if record.kept or max_wait is None or wait_of(record.call, now) < max_wait:
            return False
        self._remove(record)
        wait = _elapsed(record.call, now)
        out.append(CallMaxWaitReached(record.call.call_id, record.call.skill, wait, now))
        return True

    # -- opening hours ---------------------------------------------------------------------

    def _open_at(self, queue: str, now: float) -> bool:
        state = self._open.get(queue)
        if state is None:
            state = self._compute_open(queue, now)
        elif not state.valid_at(now):
            # Queue timers fire first at their instant and refresh every queue (see
            # _refresh_hours): reading a state past its end would mean a timer was lost.
            raise AssertionError(f"opening state of {queue!r} read after it changed")
        return state.open

    def _compute_open(self, queue: str, now: float) -> OpenState:
        state = open_state(self.config.queues[queue].hours, self.config.timezone, now)
        self._open[queue] = state
        self._queue_versions[queue] += 1
        if state.until is not None:
            self._push(state.until, _QUEUE, queue, self._queue_versions[queue])
        return state

    def _refresh_hours(self, now: float, out: list[Decision]) -> None:
        """Handle a queue opening or closing (Rule 6).

        Refresh every queue that changed at this instant, close out the calls of queues now
        closed, and re-list the others.
        """
        closed: set[str] = set()
        for queue, state in list(self._open.items()):
            if not state.valid_at(now) and not self._compute_open(queue, now).open:
                closed.add(queue)
        for record in list(self._calls.values()):
            if record.phase is not _CallPhase.WAITING:
                continue
            if record.call.skill in closed:
                self._remove(record)
                wait = _elapsed(record.call, now)
                out.append(
                    CallRejectedClosed(
                        record.call.call_id, record.call.skill, wait, record.kept, now
                    )
                )
            else:
                self._sync(record, now, out)

    # -- membership ------------------------------------------------------------------------

    def _sync(
        self, record: _Call, now: float, out: list[Decision], *, announce: bool = True
    ) -> None:
        """Put a waiting call in the lists of exactly the queues that may serve it now."""
        wait = wait_of(record.call, now)
        wanted = [
            queue
            for queue, reach in self._chains[record.call.skill]
            if wait >= reach and self._open_at(queue, now)
        ]
        if wanted == record.listed:
            return
        for queue in record.listed:
            if queue not in wanted:
                entries = self._waiting[queue]
                del entries[bisect.bisect_left(entries, record.key)]
        for queue in wanted:
            if queue not in record.listed:
                bisect.insort(self._waiting[queue], record.key)
        record.listed = wanted
        if announce:
            self._announce_overflows(record, now, out)

    def _announce_overflows(self, record: _Call, now: float, out: list[Decision]) -> None:
        for queue in record.listed:
            if queue != record.call.skill and queue not in record.overflowed:
                record.overflowed.add(queue)
                wait = _elapsed(record.call, now)
                out.append(CallOverflowed(record.call.call_id, record.call.skill, queue, wait, now))

    def _unsync(self, record: _Call) -> None:
        for queue in record.listed:
            entries = self._waiting[queue]
            del entries[bisect.bisect_left(entries, record.key)]
        record.listed = []

    def _remove(self, record: _Call) -> None:
        """Forget a call that is waiting or offered (not connected)."""
        self._unsync(record)
        record.version += 1
        del self._calls[record.call.call_id]
        self._size[record.call.skill] -= 1

    def _requeue(self, record: _Call, now: float, out: list[Decision]) -> None:
        """Put an offered call back in its queues, keeping its place."""
        record.phase = _CallPhase.WAITING
        record.agent_id = None
        record.version += 1
        if not self._open_at(record.call.skill, now):
            self._close_out(record, now, out)
            return
        self._sync(record, now, out)
        if not self._check_max_wait(record, now, out):
            self._schedule_call(record, now)

    def _close_out(self, record: _Call, now: float, out: list[Decision]) -> None:
        self._remove(record)
        call = record.call
        out.append(
            CallRejectedClosed(call.call_id, call.skill, _elapsed(call, now), record.kept, now)
        )

    def _withdraw_offer(
        self, record: _Call, reason: OfferEndReason, now: float, out: list[Decision]
    ) -> None:
        """End a ringing offer from the call's side; the agent becomes available."""
        agent_id = record.agent_id
        assert agent_id is not None
        self._offer_tokens.pop(agent_id, None)
        out.append(OfferEnded(agent_id, record.call.call_id, reason, now))
        agent = self._agents[agent_id]
        record.agent_id = None
        if reason in (OfferEndReason.CALLER_HUNG_UP, OfferEndReason.CALL_CANCELLED):
            self._set_agent(
                dataclasses.replace(agent, state=AgentState.AVAILABLE, since=now, call_id=None),
                now,
                out,
            )

    # -- agents ----------------------------------------------------------------------------

    def _check_reason(self, reason: str) -> None:
        if reason not in self.config.pause_reasons:
            known = ", ".join(self.config.pause_reasons)
            raise RoutingError(f"unknown pause reason {reason!r} (known: {known})")

    def _list_agent(self, agent: Agent) -> None:
        for skill in agent.skills:
            entries = self._available.get(skill)
            if entries is not None:
                bisect.insort(entries, _agent_key(agent, skill))

    def _unlist_agent(self, agent: Agent) -> None:
        if agent.state is not AgentState.AVAILABLE:
            return
        for skill in agent.skills:
            entries = self._available.get(skill)
            if entries is not None:
                key = _agent_key(agent, skill)
                index = bisect.bisect_left(entries, key)
                if index < len(entries) and entries[index] == key:
                    del entries[index]

    def _set_agent(self, agent: Agent, now: float, out: list[Decision]) -> None:
        previous = self._agents.get(agent.id)
        if previous is not None:
            self._unlist_agent(previous)
        self._agents[agent.id] = agent
        if agent.state is AgentState.AVAILABLE:
            self._list_agent(agent)
        if (
            previous is None
            or previous.state is not agent.state
            or previous.pause_reason != agent.pause_reason
            or previous.pending_pause != agent.pending_pause
        ):
            out.append(
                AgentStateChanged(
                    agent.id, agent.state, agent.pause_reason, agent.pending_pause, now
                )
            )

    # -- dispatch (Rule 4) -----------------------------------------------------------------

    def _dispatch(self, now: float, out: list[Decision]) -> None:
        while True:
            best: tuple[tuple[int, float, int, str], _Call, Agent, str] | None = None
            for queue, agents in self._available.items():
                if not agents or not self._waiting[queue]:
                    continue
                found = self._first_match(queue, -agents[0][0], now, best[0] if best else None)
                if found is not None:
                    best = found
            if best is None:
                return
            self._offer(best[1], best[2], best[3], now, out)

    def _first_match(
        self,
        queue: str,
        top_proficiency: int,
        now: float,
        bound: tuple[int, float, int, str] | None,
    ) -> tuple[tuple[int, float, int, str], _Call, Agent, str] | None:
        """Return the first call listed in ``queue`` (Rule 1) with a qualified agent.

        Only a call ordered before ``bound`` counts (the best found in other queues).
        """
        entries = self._waiting[queue]
        config = self.config.queues[queue]
        index, count = 0, len(entries)
        while index < count:
            key = entries[index]
            if bound is not None and key >= bound:
                return None
            wait = now - key[1] + WAIT_EPSILON
            if config.min_proficiency_at(wait) > top_proficiency:
                # Within a priority level, later calls waited less: none qualifies either.
                index = bisect.bisect_left(entries, (key[0] + 1, -_INF, 0, ""), index)
                continue
            record = self._calls[key[3]]
            choice = self._best_agent(record, now)
            if choice is not None:
                return key, record, choice[0], choice[1]
            index += 1
        return None

    def _best_agent(self, record: _Call, now: float) -> tuple[Agent, str] | None:
        """Rule 3 for one call: (agent, queue) or None."""
        wait = wait_of(record.call, now)
        for queue in record.listed:
            level = self.config.queues[queue].min_proficiency_at(wait)
            for key in self._available[queue]:
                if -key[0] < level:
                    break
                if key[2] not in record.declined:
                    return self._agents[key[2]], queue
        return None

    def _offer(
        self, record: _Call, agent: Agent, queue: str, now: float, out: list[Decision]
    ) -> None:
        self._unsync(record)
        record.phase = _CallPhase.OFFERED
        record.agent_id = agent.id
        record.via = queue
        record.version += 1
        own: QueueConfig = self.config.queues[record.call.skill]
        deadline = now + own.ring_timeout_s
        self._seq += 1
        token = self._seq
        self._offer_tokens[agent.id] = token
        self._push(deadline, _RING, agent.id, token)
        out.append(
            OfferCall(
                agent.id,
                record.call,
                queue,
                agent.proficiency(queue),
                _elapsed(record.call, now),
                deadline,
                record.kept or record.call.callback,
                now,
            )
        )
        self._set_agent(
            dataclasses.replace(
                agent, state=AgentState.RESERVED, since=now, call_id=record.call.call_id
            ),
            now,
            out,
        )


def replay(config: RoutingConfig, events: Sequence[Event]) -> tuple[Router, list[Decision]]:
    """Apply events to a new router (tests, simulations, rebuilding state from a trail).

    Args:
        config: Routing configuration.
        events: Events in time order.

    Returns:
        The router and every decision taken.
    """
    router = Router(config=config)
    decisions: list[Decision] = []
    for event in events:
        decisions.extend(router.handle(event))
    return router, decisions
