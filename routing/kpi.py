"""Queue KPIs accumulated from the router's decisions (pure; the metrics layer exports them).

Feed every decision to :meth:`KpiBook.apply`; read :meth:`KpiBook.snapshot` per queue. All
counts belong to the call's **own** queue (an overflowed call answered by a general agent
counts for its specialised queue, with ``answered_via_overflow``). Definitions:

- *offered*: calls that entered the queue (``CallEnqueued``); refusals (queue full, closed)
  are counted apart and are not offered.
- *service level within T*: answered within T seconds / calls that ended in the queue
  (answered + abandoned + maximum wait reached + closed while waiting), short abandons
  (under ``short_abandon_s``, 5 s by default: misdials, people who hang up on hearing the queue)
  excluded from both sides.
- *ASA*: mean wait of answered calls. *AHT*: mean handle time (talk + wrap-up) of wrap-ups.
- *abandonment rate*: abandoned (not short) / calls that ended in the queue (minus short).
- *first-contact resolution*: wrap-ups flagged resolved / wrap-ups flagged either way.

Only queue names and counts: no caller data, so the figures can become metric labels as is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .events import (
    CallAbandoned,
    CallAnswered,
    CallCompleted,
    CallEnqueued,
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

SERVICE_LEVEL_THRESHOLDS_S = (20.0, 60.0)
"""Answer-time thresholds of the service levels."""


@dataclass(frozen=True, slots=True)
class QueueKpi:
    """A queue's KPIs since the book was created."""

    queue: str
    """Queue name."""
    offered: int = 0
    """Calls that entered the queue."""
    answered: int = 0
    """Calls an agent took."""
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
    """Calls taken out of the queue on request (callback cancelled, transfer)."""
    rejected_full: int = 0
    """Calls refused because the queue was full."""
    rejected_closed: int = 0
    """Calls refused because the queue was closed."""
    overflowed: int = 0
    """Overflow steps taken (a call may overflow more than once)."""
    offers: int = 0
    """Offers made to agents."""
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
    resolution_flagged: int = 0
    """Wrap-ups where the agent said whether the request was resolved."""
    resolved: int = 0
    """Of which resolved at first contact."""

    @property
    def ended(self) -> int:
        """Calls whose wait ended in the queue, short abandons excluded."""
        return (
            self.answered
            + self.abandoned
            - self.abandoned_short
            + self.max_wait_reached
            + self.closed_while_waiting
        )

    def service_level(self, threshold_s: float) -> float | None:
        """Return the share of calls answered within 20 s or 60 s.

        Args:
            threshold_s: 20 or 60.

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
        return within / self.ended if self.ended else None

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


class KpiBook:
    """Per-queue KPI accumulators fed with router decisions.

    Args:
        short_abandon_s: Abandons before this wait are "short" (excluded from rates).
    """

    def __init__(self, *, short_abandon_s: float = 5.0) -> None:
        self.short_abandon_s = short_abandon_s
        self._queues: dict[str, QueueKpi] = {}
        self._offer_queue: dict[str, str] = {}

    def _add(self, queue: str, **deltas: float) -> None:
        current = self._queues.get(queue) or QueueKpi(queue)
        changes: dict[str, Any] = {name: getattr(current, name) + d for name, d in deltas.items()}
        self._queues[queue] = dataclasses.replace(current, **changes)

    def apply(self, decision: Decision) -> None:
        """Account for one decision (others are ignored).

        Args:
            decision: A decision from :meth:`routing.engine.Router.handle`.
        """
        match decision:
            case CallEnqueued(queue=queue):
                self._add(queue, offered=1)
            case CallRejectedQueueFull(queue=queue):
                self._add(queue, rejected_full=1)
            case CallRejectedClosed(queue=queue, wait_s=wait):
                # Refused at the door (never queued), or left the queue at closing time.
                if wait > 0:
                    self._add(queue, closed_while_waiting=1)
                else:
                    self._add(queue, rejected_closed=1)
            case OfferCall(call=call, agent_id=agent_id):
                self._add(call.skill, offers=1)
                self._offer_queue[agent_id] = call.skill
            case OfferEnded(agent_id=agent_id, reason=reason):
                offered_in = self._offer_queue.pop(agent_id, None)
                if offered_in is not None and reason is OfferEndReason.REJECTED:
                    self._add(offered_in, offers_rejected=1)
                elif offered_in is not None and reason is OfferEndReason.RING_TIMEOUT:
                    self._add(offered_in, offers_missed=1)
            case CallAnswered(agent_id=agent_id, queue=queue, via_queue=via, wait_s=wait):
                self._offer_queue.pop(agent_id, None)
                self._add(
                    queue,
                    answered=1,
                    answer_wait_total_s=wait,
                    answered_within_20s=int(wait <= 20.0),
                    answered_within_60s=int(wait <= 60.0),
                    answered_via_overflow=int(via != queue),
                )
            case CallAbandoned(queue=queue, wait_s=wait):
                self._add(
                    queue,
                    abandoned=1,
                    abandoned_wait_total_s=wait,
                    abandoned_short=int(wait < self.short_abandon_s),
                )
            case CallMaxWaitReached(queue=queue):
                self._add(queue, max_wait_reached=1)
            case CallRemoved(queue=queue):
                self._add(queue, removed=1)
            case CallOverflowed(from_queue=queue):
                self._add(queue, overflowed=1)
            case CallCompleted(queue=queue, talk_s=talk):
                self._add(queue, talk_total_s=talk)
            case WrapUpEnded(queue=queue, handle_s=handle, resolved=resolved) if queue:
                self._add(queue, handled=1, handle_total_s=handle)
                if resolved is not None:
                    self.record_resolution(queue, resolved)
            case _:
                pass

    def record_resolution(self, queue: str, resolved: bool) -> None:
        """Record a first-contact-resolution flag given after the wrap-up ended.

        Args:
            queue: The call's queue.
            resolved: Whether the request was resolved.
        """
        self._add(queue, resolution_flagged=1, resolved=int(resolved))

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
