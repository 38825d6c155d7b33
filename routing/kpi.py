"""Queue and agent KPIs accumulated from the router's decisions (pure; metrics export them).

Feed every decision to :meth:`KpiBook.apply`; read :meth:`KpiBook.snapshot` per queue,
:meth:`KpiBook.total` for the whole service and :meth:`KpiBook.agent_snapshot` per agent. What
the router does not decide is fed through small counter methods: transfers
(:meth:`KpiBook.record_transfer`), callback outcomes (:meth:`KpiBook.record_callback_outcome`)
and first-contact resolution given after the wrap-up (:meth:`KpiBook.record_resolution`).

All counts belong to the call's **own** queue (an overflowed call answered by a general agent
counts for its specialised queue, with ``answered_via_overflow``). Definitions:

- *offered*: calls that entered the queue (``CallEnqueued``); refusals (queue full, closed)
  are counted apart and are not offered, and a kept-place callback entering the queue again
  after a failed attempt (same call id) is a ``callback_entries``, not a new offered call.
- Every offered call *ends in the queue* once: answered by an agent with the caller on the line,
  abandoned, maximum wait reached, closed while waiting, removed on request, or turned into a
  kept-place callback (``callbacks_requested``). So, once nothing waits,
  ``offered = answered + abandoned + max_wait_reached + closed_while_waiting + removed +
  callbacks_requested`` (:attr:`QueueKpi.unresolved` is the difference) — as long as no chosen
  slot was recorded (:meth:`KpiBook.record_callback_request` adds to ``callbacks_requested`` a
  request that was never an offered call).
- A callback an agent takes (kept place or chosen slot) is ``callbacks_dialled`` (the outbound
  call is placed), not ``answered``: nobody was waiting on the line, and its wait is not an
  answer time. A callback entering the queue (a slot at its time, a retry) is a
  ``callback_entries``, not a new offered call; the request itself was counted when it was made
  (``CallKeptForCallback``, :meth:`KpiBook.record_callback_request`).
  ``callbacks_completed`` / ``callbacks_failed`` come from the callback's final outcome.
- Which of these a decision is, is told by :class:`QueueOutcomes` alone: the book and the
  service's Prometheus counters (``callcenter.metrics.QueueMetrics``) both count from it, so
  they cannot drift apart.
- *service level within T*: answered within T seconds / calls that ended in the queue, short
  abandons (within ``short_abandon_s``, 5 s or less by default: misdials, people who hang up on
  hearing the queue) excluded from both sides. A caller who took a callback was not answered
  within T.
- *ASA*: mean wait of answered calls. *AHT*: mean handle time (talk + wrap-up) of wrap-ups,
  dial-outs included (agent time). *Abandonment rate*: abandoned (not short) / ended (minus
  short). *First-contact resolution*: wrap-ups flagged resolved / wrap-ups flagged either way.
- Agents: offers, answers, rejections, missed offers (rang out), wrap-ups, and the time spent
  available, busy (ringing, in conversation, in wrap-up) and paused; *occupancy* = busy /
  (busy + available).

Only queue names, opaque agent ids and counts: no caller data, so the figures can become metric
labels as is.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from .events import (
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallCompleted,
    CallEnqueued,
    CallKeptForCallback,
    CallMaxWaitReached,
    CallOverflowed,
    CallRejectedClosed,
    CallRejectedQueueFull,
    CallRemoved,
    Decision,
    OfferCall,
    OfferEnded,
    OfferEndReason,
    WrapUpEnded,
)
from .model import AgentState

SERVICE_LEVEL_THRESHOLDS_S = (20.0, 60.0)
"""Answer-time thresholds of the service levels."""

TRANSFER_KINDS = ("queue", "agent", "external")
"""Kinds of blind transfer an agent can make (:meth:`KpiBook.record_transfer`)."""

_BUSY_STATES = frozenset({AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP})


def within_service_levels(wait_s: float) -> tuple[bool, bool]:
    """Return the per-call service-level flags of an answered call.

    Args:
        wait_s: Time from joining the queue to the answer.

    Returns:
        ``(answered within 20 s, answered within 60 s)``.
    """
    return wait_s <= SERVICE_LEVEL_THRESHOLDS_S[0], wait_s <= SERVICE_LEVEL_THRESHOLDS_S[1]


class QueueOutcome(enum.Enum):
    """What a router decision means for a call's place in its queue."""

    JOINED = "joined"
    """A call entered its queue: offered."""
    CALLBACK_ENTRY = "callback_entry"
    """A callback (a slot at its time, a retry) entered the queue: not a new offered call."""
    ANSWERED = "answered"
    """An agent took a call with the caller on the line (``wait_s``: the answer time)."""
    CALLBACK_DIALLED = "callback_dialled"
    """An agent took a callback: the outbound call is placed (nobody waited on the line)."""
    ABANDONED = "abandoned"
    """The caller hung up while waiting."""
    CALLBACK_CANCELLED = "callback_cancelled"
    """A queued callback was taken out of the queue (cancelled)."""
    REMOVED = "removed"
    """Taken out of the queue on request (transfer, the caller chose another way)."""
    MAX_WAIT = "max_wait"
    """Left at the queue's maximum wait."""
    CLOSED_AT_DOOR = "closed_at_door"
    """Refused because the queue was closed: it never waited."""
    CLOSED_WHILE_WAITING = "closed_while_waiting"
    """Left the queue at closing time."""
    CALLBACK_CLOSED = "callback_closed"
    """A queued callback at closing time: carried over to the next opening."""
    REJECTED_FULL = "rejected_full"
    """Refused because the queue was full."""
    CALLBACK_KEPT = "callback_kept"
    """The caller hung up keeping their place for a callback: their wait ended there."""


@dataclass(frozen=True, slots=True)
class QueueFact:
    """One decision, classified (:class:`QueueOutcomes`)."""

    outcome: QueueOutcome
    """What happened."""
    queue: str
    """The call's own queue."""
    wait_s: float = 0.0
    """Time spent in the queue until then (0 where the call never waited)."""
    via_overflow: bool = False
    """``ANSWERED`` by an agent of an overflow queue."""


class QueueOutcomes:
    """Tells what each router decision means for a call's place in its queue.

    The one place that knows which calls are callbacks (a kept place, a slot, a retry: their
    later decisions are callback facts, not queue answers or abandons). Feed it every decision
    in order; it keeps only the ids of callbacks in progress, each forgotten once the callback
    leaves the queue (dialled, cancelled, closed out: a retry enters again flagged
    ``callback``).
    """

    def __init__(self) -> None:
        self._kept: set[str] = set()
        self._dial_out: set[str] = set()

    def classify(self, decision: Decision) -> QueueFact | None:  # noqa: C901 (one case per kind)
        """Return what ``decision`` means for its call's place in the queue, or None.

        Args:
            decision: A decision from :meth:`routing.engine.Router.handle`, in order.

        Returns:
            The fact, None for a decision that ends or starts no place in a queue (offers,
            overflow steps, talk, wrap-up, agents' states...).
        """
        kept = self._kept
        match decision:
            case CallEnqueued(call_id=call_id, queue=queue, callback=callback):
                if callback or call_id in kept:
                    kept.add(call_id)
                    return QueueFact(QueueOutcome.CALLBACK_ENTRY, queue)
                return QueueFact(QueueOutcome.JOINED, queue)
            case CallRejectedQueueFull(queue=queue):
                return QueueFact(QueueOutcome.REJECTED_FULL, queue)
            case CallRejectedClosed(
                call_id=call_id, queue=queue, wait_s=wait, kept_callback=kept_callback
            ):
                if kept_callback or call_id in kept:
                    kept.discard(call_id)  # placed at the reopening, flagged ``callback``
                    return QueueFact(QueueOutcome.CALLBACK_CLOSED, queue)
                if wait > 0:
                    return QueueFact(QueueOutcome.CLOSED_WHILE_WAITING, queue, wait)
                return QueueFact(QueueOutcome.CLOSED_AT_DOOR, queue)
            case OfferCall(call=call, dial_out=True):
                self._dial_out.add(call.call_id)
            case OfferEnded(call_id=call_id) | CallCompleted(call_id=call_id):
                self._dial_out.discard(call_id)
            case CallAnswered(call_id=call_id, queue=queue, via_queue=via, wait_s=wait):
                if call_id in kept or call_id in self._dial_out:
                    kept.discard(call_id)
                    self._dial_out.discard(call_id)
                    return QueueFact(QueueOutcome.CALLBACK_DIALLED, queue, wait)
                return QueueFact(QueueOutcome.ANSWERED, queue, wait, via_overflow=via != queue)
            case CallAbandoned(call_id=call_id, queue=queue, wait_s=wait):
                if call_id in kept:
                    kept.discard(call_id)
                    return QueueFact(QueueOutcome.CALLBACK_CANCELLED, queue, wait)
                return QueueFact(QueueOutcome.ABANDONED, queue, wait)
            case CallRemoved(call_id=call_id, queue=queue, wait_s=wait):
                if call_id in kept:
                    kept.discard(call_id)
                    return QueueFact(QueueOutcome.CALLBACK_CANCELLED, queue, wait)
                return QueueFact(QueueOutcome.REMOVED, queue, wait)
            case CallMaxWaitReached(queue=queue, wait_s=wait):
                return QueueFact(QueueOutcome.MAX_WAIT, queue, wait)
            case CallKeptForCallback(call_id=call_id, queue=queue, wait_s=wait):
                if call_id not in kept:
                    kept.add(call_id)
                    return QueueFact(QueueOutcome.CALLBACK_KEPT, queue, wait)
            case _:
                pass
        return None

    def forget(self, call_id: str) -> None:
        """Forget a callback that ended (its id may come back as a new call)."""
        self._kept.discard(call_id)
        self._dial_out.discard(call_id)

    @property
    def tracked(self) -> int:
        """Callbacks in progress known (bounded by the callbacks queued or being dialled)."""
        return len(self._kept | self._dial_out)


@dataclass(frozen=True, slots=True)
class QueueKpi:
    """A queue's KPIs since the book was created."""

    queue: str
    """Queue name."""
    offered: int = 0
    """Calls that entered the queue."""
    answered: int = 0
    """Calls an agent took with the caller on the line."""
    answered_within_20s: int = 0
    """Answered within 20 s of joining."""
    answered_within_60s: int = 0
    """Answered within 60 s of joining."""
    answered_via_overflow: int = 0
    """Answered by an agent of an overflow queue."""
    answer_wait_total_s: float = 0.0
    """Sum of the waits of answered calls."""
    abandoned: int = 0
    """Callers who hung up while waiting (short abandons included)."""
    abandoned_short: int = 0
    """Of which within ``short_abandon_s``."""
    abandoned_wait_total_s: float = 0.0
    """Sum of the waits of abandoned calls."""
    max_wait_reached: int = 0
    """Calls that left at the maximum wait."""
    closed_while_waiting: int = 0
    """Calls that left because the queue closed."""
    removed: int = 0
    """Calls taken out of the queue on request (transfer, the caller chose another way)."""
    left_wait_total_s: float = 0.0
    """Sum of the waits of calls that left at the maximum wait, at closing or on request."""
    longest_wait_s: float = 0.0
    """Longest wait of a call that ended in the queue (any way but a callback)."""
    rejected_full: int = 0
    """Calls refused because the queue was full."""
    rejected_closed: int = 0
    """Calls refused because the queue was closed."""
    overflowed: int = 0
    """Overflow steps taken (a call may overflow more than once)."""
    offers: int = 0
    """Offers made to agents (dial-outs included)."""
    offers_rejected: int = 0
    """Offers the agent declined."""
    offers_missed: int = 0
    """Offers that rang out (agent paused "non réponse")."""
    handled: int = 0
    """Wrap-ups ended."""
    talk_total_s: float = 0.0
    """Sum of conversation times."""
    handle_total_s: float = 0.0
    """Sum of handle times (talk + wrap-up)."""
    wrap_up_total_s: float = 0.0
    """Sum of wrap-up times."""
    wrap_ups_timed_out: int = 0
    """Wrap-ups ended by the queue's wrap-up time rather than by the agent."""
    resolution_flagged: int = 0
    """Wrap-ups where the agent said whether the request was resolved."""
    resolved: int = 0
    """Of which resolved at first contact."""
    callbacks_requested: int = 0
    """Callbacks asked for: a caller keeping their place (and hanging up), or a chosen slot
    (:meth:`KpiBook.record_callback_request`)."""
    callbacks_dialled: int = 0
    """Kept-place or scheduled callbacks an agent took: the outbound call was placed."""
    callback_entries: int = 0
    """A callback entering the queue: a chosen slot at its time, or another attempt."""
    callbacks_closed: int = 0
    """Callbacks still queued at closing time (carried over to the next opening)."""
    callbacks_cancelled: int = 0
    """Callbacks taken out of the queue (cancelled)."""
    callbacks_completed: int = 0
    """Callbacks that reached the caller and connected them to an agent."""
    callbacks_failed: int = 0
    """Callbacks given up after their last attempt."""
    transfers_queue: int = 0
    """Blind transfers by an agent to another queue."""
    transfers_agent: int = 0
    """Blind transfers by an agent to a named colleague."""
    transfers_external: int = 0
    """Blind transfers by an agent to an outside number."""

    @property
    def ended(self) -> int:
        """Calls whose wait ended in the queue, short abandons excluded."""
        return (
            self.answered
            + self.abandoned
            - self.abandoned_short
            + self.max_wait_reached
            + self.closed_while_waiting
            + self.callbacks_requested
        )

    @property
    def unresolved(self) -> int:
        """Offered calls that have not ended in the queue yet (waiting or ringing)."""
        return self.offered - (
            self.answered
            + self.abandoned
            + self.max_wait_reached
            + self.closed_while_waiting
            + self.removed
            + self.callbacks_requested
        )

    @property
    def lost(self) -> int:
        """Callers the service did not serve.

        Abandoned (not short), maximum wait reached, closed while waiting, callbacks failed.
        """
        return (
            self.abandoned
            - self.abandoned_short
            + self.max_wait_reached
            + self.closed_while_waiting
            + self.callbacks_failed
        )

    @property
    def transfers(self) -> int:
        """Blind transfers of every kind."""
        return self.transfers_queue + self.transfers_agent + self.transfers_external

    def service_level(self, threshold_s: float, *, live_only: bool = False) -> float | None:
        """Return the share of calls answered within 20 s or 60 s.

        Args:
            threshold_s: 20 or 60.
            live_only: Leave out the callers who took a kept-place callback (the service
                level of the callers who stayed on the line).

        Returns:
            A ratio in [0, 1], None before any call ended.

        Raises:
            ValueError: For another threshold.
        """
        if threshold_s == 20.0:
            within = self.answered_within_20s
        elif threshold_s == 60.0:
            within = self.answered_within_60s
        else:
            raise ValueError(f"service level is kept for 20 s and 60 s, not {threshold_s}")
        ended = self.ended - self.callbacks_requested if live_only else self.ended
        return within / ended if ended else None

    @property
    def asa_s(self) -> float | None:
        """Average speed of answer (seconds), None before any answer."""
        return self.answer_wait_total_s / self.answered if self.answered else None

    @property
    def aht_s(self) -> float | None:
        """Average handle time (seconds), None before any wrap-up."""
        return self.handle_total_s / self.handled if self.handled else None

    @property
    def abandonment_rate(self) -> float | None:
        """Abandoned (not short) / calls that ended in the queue, None before any."""
        if not self.ended:
            return None
        return (self.abandoned - self.abandoned_short) / self.ended

    @property
    def fcr_rate(self) -> float | None:
        """First-contact resolution rate among flagged wrap-ups, None before any."""
        return self.resolved / self.resolution_flagged if self.resolution_flagged else None


@dataclass(frozen=True, slots=True)
class AgentKpi:
    """An agent's KPIs since the book was created."""

    agent_id: str
    """Opaque agent id."""
    offers: int = 0
    """Calls offered (their phone rang)."""
    answered: int = 0
    """Offers taken."""
    rejected: int = 0
    """Offers declined."""
    missed: int = 0
    """Offers that rang out."""
    handled: int = 0
    """Wrap-ups ended."""
    talk_total_s: float = 0.0
    """Sum of conversation times."""
    wrap_up_total_s: float = 0.0
    """Sum of wrap-up times."""
    available_s: float = 0.0
    """Time spent available."""
    busy_s: float = 0.0
    """Time spent ringing, in conversation or in wrap-up."""
    paused_s: float = 0.0
    """Time spent paused (any reason)."""

    @property
    def occupancy(self) -> float | None:
        """Busy / (busy + available), None before any staffed time."""
        staffed = self.busy_s + self.available_s
        return self.busy_s / staffed if staffed > 0 else None


_COUNTED = {
    QueueOutcome.JOINED: "offered",
    QueueOutcome.CALLBACK_ENTRY: "callback_entries",
    QueueOutcome.REJECTED_FULL: "rejected_full",
    QueueOutcome.CLOSED_AT_DOOR: "rejected_closed",
    QueueOutcome.CALLBACK_CLOSED: "callbacks_closed",
    QueueOutcome.CALLBACK_DIALLED: "callbacks_dialled",
    QueueOutcome.CALLBACK_CANCELLED: "callbacks_cancelled",
    QueueOutcome.CALLBACK_KEPT: "callbacks_requested",
}
"""Outcomes the book only counts (the :class:`QueueKpi` field each adds one to)."""

_LEFT = {
    QueueOutcome.CLOSED_WHILE_WAITING: "closed_while_waiting",
    QueueOutcome.MAX_WAIT: "max_wait_reached",
    QueueOutcome.REMOVED: "removed",
}
"""Outcomes of a call that left the queue without an agent: counted, their wait summed."""


def _merge(name: str, items: list[QueueKpi]) -> QueueKpi:
    """Sum queue KPIs (the longest wait is the maximum)."""
    totals: dict[str, Any] = {}
    for item in items:
        for spec in dataclasses.fields(QueueKpi):
            if spec.name == "queue":
                continue
            value = getattr(item, spec.name)
            if spec.name == "longest_wait_s":
                totals[spec.name] = max(totals.get(spec.name, 0.0), value)
            else:
                totals[spec.name] = totals.get(spec.name, 0) + value
    return QueueKpi(name, **totals)


class KpiBook:
    """Per-queue and per-agent KPI accumulators fed with router decisions.

    Args:
        short_abandon_s: Abandons within this wait (or at it) are "short" (excluded from rates),
            as Prometheus's ``le="5.0"`` bucket counts them.
    """

    def __init__(self, *, short_abandon_s: float = 5.0) -> None:
        self.short_abandon_s = short_abandon_s
        self._queues: dict[str, QueueKpi] = {}
        self._agents: dict[str, AgentKpi] = {}
        self._offer_queue: dict[str, str] = {}
        self._agent_state: dict[str, tuple[AgentState, float]] = {}
        self._talk: dict[str, float] = {}
        self._outcomes = QueueOutcomes()

    def is_short_abandon(self, wait_s: float) -> bool:
        """Whether an abandon after ``wait_s`` is short (bound included, as ``le="5.0"``)."""
        return wait_s <= self.short_abandon_s

    def _add(self, queue: str, **deltas: float) -> None:
        current = self._queues.get(queue) or QueueKpi(queue)
        changes: dict[str, Any] = {name: getattr(current, name) + d for name, d in deltas.items()}
        self._queues[queue] = dataclasses.replace(current, **changes)

    def _add_agent(self, agent_id: str, **deltas: float) -> None:
        current = self._agents.get(agent_id) or AgentKpi(agent_id)
        changes: dict[str, Any] = {name: getattr(current, name) + d for name, d in deltas.items()}
        self._agents[agent_id] = dataclasses.replace(current, **changes)

    def _waited(self, queue: str, wait: float) -> None:
        current = self._queues.get(queue) or QueueKpi(queue)
        if wait > current.longest_wait_s:
            self._queues[queue] = dataclasses.replace(current, longest_wait_s=wait)

    def apply(self, decision: Decision) -> None:
        """Account for one decision (others are ignored).

        Args:
            decision: A decision from :meth:`routing.engine.Router.handle`.
        """
        fact = self._outcomes.classify(decision)
        if fact is not None:
            self._count(fact)
        match decision:
            case OfferCall(call=call, agent_id=agent_id):
                self._add(call.skill, offers=1)
                self._add_agent(agent_id, offers=1)
                self._offer_queue[agent_id] = call.skill
            case OfferEnded(agent_id=agent_id, reason=reason):
                offered_in = self._offer_queue.pop(agent_id, None)
                if reason is OfferEndReason.REJECTED:
                    self._add_agent(agent_id, rejected=1)
                    if offered_in is not None:
                        self._add(offered_in, offers_rejected=1)
                elif reason is OfferEndReason.RING_TIMEOUT:
                    self._add_agent(agent_id, missed=1)
                    if offered_in is not None:
                        self._add(offered_in, offers_missed=1)
            case CallAnswered(agent_id=agent_id):
                self._offer_queue.pop(agent_id, None)
                self._add_agent(agent_id, answered=1)
            case CallOverflowed(from_queue=queue):
                self._add(queue, overflowed=1)
            case CallCompleted(agent_id=agent_id, queue=queue, talk_s=talk):
                self._talk[agent_id] = talk
                self._add(queue, talk_total_s=talk)
                self._add_agent(agent_id, talk_total_s=talk)
            case WrapUpEnded(
                agent_id=agent_id, queue=queue, handle_s=handle, resolved=resolved, timed_out=out
            ) if queue:
                wrap = max(0.0, handle - self._talk.pop(agent_id, handle))
                self._add(
                    queue,
                    handled=1,
                    handle_total_s=handle,
                    wrap_up_total_s=wrap,
                    wrap_ups_timed_out=int(out),
                )
                self._add_agent(agent_id, handled=1, wrap_up_total_s=wrap)
                if resolved is not None:
                    self.record_resolution(queue, resolved)
            case AgentStateChanged(agent_id=agent_id, state=state, at=at):
                self._close_interval(agent_id, at)
                self._agent_state[agent_id] = (state, at)
            case _:
                pass

    def _count(self, fact: QueueFact) -> None:
        queue, wait, outcome = fact.queue, fact.wait_s, fact.outcome
        if (counter := _COUNTED.get(outcome)) is not None:
            self._add(queue, **{counter: 1})
            return
        if (counter := _LEFT.get(outcome)) is not None:
            self._add(queue, **{counter: 1}, left_wait_total_s=wait)
        elif outcome is QueueOutcome.ANSWERED:
            within_20, within_60 = within_service_levels(wait)
            self._add(
                queue,
                answered=1,
                answer_wait_total_s=wait,
                answered_within_20s=int(within_20),
                answered_within_60s=int(within_60),
                answered_via_overflow=int(fact.via_overflow),
            )
        elif outcome is QueueOutcome.ABANDONED:
            self._add(
                queue,
                abandoned=1,
                abandoned_wait_total_s=wait,
                abandoned_short=int(self.is_short_abandon(wait)),
            )
        else:  # pragma: no cover (every outcome is in a table or a branch above)
            raise AssertionError(f"queue outcome not counted: {outcome}")
        self._waited(queue, wait)

    def _close_interval(self, agent_id: str, now: float) -> None:
        previous = self._agent_state.get(agent_id)
        if previous is None:
            return
        state, since = previous
        spent = max(0.0, now - since)
        if state is AgentState.AVAILABLE:
            self._add_agent(agent_id, available_s=spent)
        elif state in _BUSY_STATES:
            self._add_agent(agent_id, busy_s=spent)
        elif state is AgentState.PAUSED:
            self._add_agent(agent_id, paused_s=spent)
        self._agent_state[agent_id] = (state, max(since, now))

    def record_resolution(self, queue: str, resolved: bool) -> None:
        """Record a first-contact-resolution flag given after the wrap-up ended.

        Args:
            queue: The call's queue.
            resolved: Whether the request was resolved.
        """
        self._add(queue, resolution_flagged=1, resolved=int(resolved))

    def record_transfer(self, queue: str, kind: str) -> None:
        """Record a blind transfer made by an agent (the router does not see transfers).

        Args:
            queue: The transferred call's own queue.
            kind: ``"queue"``, ``"agent"`` or ``"external"`` (:data:`TRANSFER_KINDS`).

        Raises:
            ValueError: For another kind.
        """
        if kind not in TRANSFER_KINDS:
            raise ValueError(f"transfer kind must be one of {TRANSFER_KINDS}, got {kind!r}")
        self._add(queue, **{f"transfers_{kind}": 1})

    def record_callback_request(self, queue: str) -> None:
        """Record a callback asked for a chosen slot (a kept place is seen by the router).

        Args:
            queue: The callback's queue.
        """
        self._add(queue, callbacks_requested=1)

    def record_callback_outcome(
        self, queue: str, completed: bool, *, call_id: str | None = None
    ) -> None:
        """Record how a callback ended (from :mod:`routing.callbacks`; the router cannot tell).

        Args:
            queue: The callback's queue.
            completed: True when the caller was reached (``COMPLETED``), False when every attempt
                failed (``FAILED``).
            call_id: The callback's id, to forget it (a later call may reuse the id).
        """
        if call_id is not None:
            self._outcomes.forget(call_id)
        if completed:
            self._add(queue, callbacks_completed=1)
        else:
            self._add(queue, callbacks_failed=1)

    def snapshot(self, queue: str) -> QueueKpi:
        """Return a queue's KPIs (all zero for a queue never seen).

        Args:
            queue: Queue name.

        Returns:
            The figures.
        """
        return self._queues.get(queue) or QueueKpi(queue)

    def snapshots(self) -> dict[str, QueueKpi]:
        """Return the KPIs of every queue seen, by name."""
        return dict(sorted(self._queues.items()))

    def total(self, name: str = "all") -> QueueKpi:
        """Return the KPIs of every queue together.

        Args:
            name: The ``queue`` field of the result.

        Returns:
            Counts and sums added up, the longest wait of all queues.
        """
        return _merge(name, list(self._queues.values()))

    def agent_snapshot(self, agent_id: str, now: float | None = None) -> AgentKpi:
        """Return an agent's KPIs (all zero for an agent never seen).

        Args:
            agent_id: The agent.
            now: Count the agent's current state up to this instant (else up to their last
                state change).

        Returns:
            The figures.
        """
        kpi = self._agents.get(agent_id) or AgentKpi(agent_id)
        current = self._agent_state.get(agent_id)
        if now is None or current is None:
            return kpi
        state, since = current
        spent = max(0.0, now - since)
        if state is AgentState.AVAILABLE:
            return dataclasses.replace(kpi, available_s=kpi.available_s + spent)
        if state in _BUSY_STATES:
            return dataclasses.replace(kpi, busy_s=kpi.busy_s + spent)
        if state is AgentState.PAUSED:
            return dataclasses.replace(kpi, paused_s=kpi.paused_s + spent)
        return kpi

    def agent_snapshots(self, now: float | None = None) -> dict[str, AgentKpi]:
        """Return the KPIs of every agent seen, by id (see :meth:`agent_snapshot`)."""
        ids = sorted(set(self._agents) | set(self._agent_state))
        return {agent_id: self.agent_snapshot(agent_id, now) for agent_id in ids}

    def occupancy(self, now: float | None = None) -> float | None:
        """Return the occupancy of all agents: busy / (busy + available).

        Args:
            now: Count current states up to this instant (see :meth:`agent_snapshot`).

        Returns:
            A ratio in [0, 1], None before any staffed time.
        """
        busy = available = 0.0
        for kpi in self.agent_snapshots(now).values():
            busy += kpi.busy_s
            available += kpi.available_s
        return busy / (busy + available) if busy + available > 0 else None
