"""Callback ("rappel") scheduling: pure functions from a callback and a time to the next one.

A caller who does not want to wait gets a :class:`Callback` in one of two modes:

- ``KEEP_PLACE``: the entry stays in the router's queue (``CallbackKept``) and keeps its
  place; when an agent is offered it (``OfferCall.dial_out``) the service dials the caller.
- ``SLOT``: the caller picks a slot from :func:`offer_slots` (inside opening hours, never on a
  public holiday or closure day); at the slot start the callback enters the queue
  (:func:`enter_queue`) as a ``QueuedCall`` with ``callback=True`` (raised priority).

Each attempt ends with an :class:`AttemptOutcome`. A failed attempt is retried after a back-off
(``first_retry_s``, times ``backoff_factor`` each time, at most ``max_retry_s``), moved inside
opening hours, until ``max_attempts``; then the callback is ``FAILED``. The outcome goes to the
contact history. Nothing here holds a phone number: ``contact_ref`` is an opaque reference to
the number the store keeps.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ivr_flows.hours import Schedule

from .hours import local_time, open_intervals
from .model import Priority, QueuedCall


class CallbackError(ValueError):
    """A callback request or transition that cannot be accepted."""


class CallbackMode(enum.Enum):
    """How the caller is to be called back."""

    KEEP_PLACE = "keep_place"
    SLOT = "slot"


class CallbackStatus(enum.Enum):
    """Where a callback stands."""

    WAITING = "waiting"
    """Waiting for its slot or its next attempt (``due_at``)."""
    QUEUED = "queued"
    """In the router's queue, waiting for an agent."""
    DIALING = "dialing"
    """An agent was offered it; the outbound call is being placed."""
    COMPLETED = "completed"
    """The caller was reached and connected to an agent."""
    FAILED = "failed"
    """Every attempt failed."""
    CANCELLED = "cancelled"
    """Cancelled by the caller or an agent."""


TERMINAL_STATUSES = frozenset(
    {CallbackStatus.COMPLETED, CallbackStatus.FAILED, CallbackStatus.CANCELLED}
)
"""Statuses a callback never leaves."""


class AttemptOutcome(enum.Enum):
    """How one outbound attempt ended."""

    CONNECTED = "connected"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    UNREACHABLE = "unreachable"
    """Network or number error (SIP 4xx/5xx other than busy)."""
    AGENT_UNAVAILABLE = "agent_unavailable"
    """The agent did not take the offer: no attempt was made on the caller (not counted)."""


@dataclass(frozen=True, slots=True)
class CallbackPolicy:
    """Rules for callbacks (per service)."""

    max_attempts: int = 3
    """Outbound attempts before giving up."""
    first_retry_s: float = 900.0
    """Delay before the second attempt."""
    backoff_factor: float = 2.0
    """Each further delay is this much longer."""
    max_retry_s: float = 4 * 3600.0
    """Longest delay between attempts."""
    slot_s: float = 1800.0
    """Length of a slot the caller may choose."""
    min_lead_s: float = 900.0
    """Earliest slot start after the request."""
    closing_margin_s: float = 600.0
    """No attempt starts later than this before closing time."""
    horizon_days: int = 14
    """How far ahead slots are offered."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise CallbackError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.backoff_factor < 1:
            raise CallbackError(f"backoff_factor must be >= 1, got {self.backoff_factor}")
        if self.slot_s <= 0 or self.first_retry_s < 0 or self.closing_margin_s < 0:
            raise CallbackError("slot_s must be > 0, first_retry_s and closing_margin_s >= 0")

    def retry_delay(self, failed_attempts: int) -> float:
        """Return the delay after ``failed_attempts`` failed attempts (1 for the first).

        Args:
            failed_attempts: Attempts failed so far (at least 1).

        Returns:
            Seconds.
        """
        delay = self.first_retry_s * self.backoff_factor ** max(0, failed_attempts - 1)
        return min(delay, self.max_retry_s)


@dataclass(frozen=True, slots=True)
class Slot:
    """A time window for a callback, ``[start, end)`` in POSIX seconds."""

    start: float
    """Start."""
    end: float
    """End."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One outbound attempt."""

    at: float
    """When it ended."""
    outcome: AttemptOutcome
    """How."""


@dataclass(frozen=True, slots=True)
class Callback:
    """A callback request and its progress."""

    id: str
    """Opaque identifier (also the router's call id while it is queued)."""
    skill: str
    """Queue that calls back."""
    mode: CallbackMode
    """Keep the place, or a chosen slot."""
    requested_at: float
    """When the caller asked."""
    joined_at: float
    """For ``KEEP_PLACE``: when the caller first joined the queue (the place kept)."""
    priority: Priority = Priority.NORMAL
    """Priority of the original call."""
    status: CallbackStatus = CallbackStatus.WAITING
    """Current status."""
    due_at: float | None = None
    """When it next enters the queue (``WAITING``)."""
    slot: Slot | None = None
    """The chosen slot (``SLOT`` mode)."""
    attempts: tuple[Attempt, ...] = ()
    """Attempts so far (those that reached the caller's line)."""
    contact_ref: str | None = None
    """Opaque reference of the number to call in the store (never the number itself)."""
    usager_id: str | None = None
    """Opaque id of the identified usager, if any."""
    intent: str | None = None
    """The caller's question, as an intent id."""
    updated_at: float = 0.0
    """Last transition."""

    @property
    def failed_attempts(self) -> int:
        """Attempts that did not reach the caller."""
        return sum(1 for a in self.attempts if a.outcome is not AttemptOutcome.CONNECTED)


# -- hours -------------------------------------------------------------------------------


def next_call_time(
    schedule: Schedule | None, tz: ZoneInfo, after: float, policy: CallbackPolicy
) -> float | None:
    """Return the first instant at or after ``after`` when an attempt may start.

    That is inside opening hours, at least ``closing_margin_s`` before closing, never on a
    public holiday or closure day.

    Args:
        schedule: The queue's hours (None: always open).
        tz: Timezone.
        after: Earliest instant (POSIX seconds).
        policy: Callback policy.

    Returns:
        The instant, or None if none within ``horizon_days``.
    """
    if schedule is None:
        return after
    end = after + policy.horizon_days * 86400.0
    for opening, closing in open_intervals(schedule, tz, after, end):
        start = max(opening, after)
        if start + policy.closing_margin_s <= closing and start < end:
            return start
    return None


def offer_slots(
    schedule: Schedule | None,
    tz: ZoneInfo,
    now: float,
    policy: CallbackPolicy,
    *,
    count: int = 3,
) -> list[Slot]:
    """Return the next ``count`` slots a caller may choose.

    Slots are ``slot_s`` long, aligned on the opening time of each opening range, start at
    least ``min_lead_s`` after ``now`` and end before closing; holidays and closure days have
    none.

    Args:
        schedule: The queue's hours (None: always open).
        tz: Timezone.
        now: POSIX seconds.
        policy: Callback policy.
        count: How many slots.

    Returns:
        Up to ``count`` slots, earliest first.
    """
    earliest = now + policy.min_lead_s
    end = now + policy.horizon_days * 86400.0
    slots: list[Slot] = []
    if schedule is None:
        start = math.ceil(earliest / policy.slot_s) * policy.slot_s
        while len(slots) < count and start < end:
            slots.append(Slot(start, start + policy.slot_s))
            start += policy.slot_s
        return slots
    for opening, closing in open_intervals(schedule, tz, earliest, end):
        steps = max(0, math.ceil((earliest - opening) / policy.slot_s))
        start = opening + steps * policy.slot_s
        while start + policy.slot_s <= closing and len(slots) < count:
            slots.append(Slot(start, start + policy.slot_s))
            start += policy.slot_s
        if len(slots) >= count:
            break
    return slots


def check_slot(
    slot: Slot, schedule: Schedule | None, tz: ZoneInfo, now: float, policy: CallbackPolicy
) -> None:
    """Check that a slot can be booked.

    Args:
        slot: The slot.
        schedule: The queue's hours (None: always open).
        tz: Timezone.
        now: POSIX seconds.
        policy: Callback policy.

    Raises:
        CallbackError: Naming why (past, too far, holiday or closure day, outside the hours).
    """
    if slot.end <= slot.start:
        raise CallbackError("the slot ends before it starts")
    if slot.start < now:
        raise CallbackError("the slot is in the past")
    if slot.start > now + policy.horizon_days * 86400.0:
        raise CallbackError(f"the slot is more than {policy.horizon_days} days ahead")
    if schedule is None:
        return
    day = local_time(slot.start, tz).date()
    if schedule.is_public_holiday(day):
        raise CallbackError(f"{day.isoformat()} is a public holiday")
    if schedule.is_closed_day(day):
        raise CallbackError(f"the service is closed on {day.isoformat()}")
    for opening, closing in open_intervals(schedule, tz, slot.start, slot.end):
        if opening <= slot.start and slot.end <= closing:
            return
    raise CallbackError("the slot is not inside opening hours")


# -- transitions -------------------------------------------------------------------------


def keep_place(call: QueuedCall, now: float, *, contact_ref: str | None = None) -> Callback:
    """Turn a waiting call into a callback that keeps its place in the queue.

    The router keeps the entry (send it ``CallbackKept``); the callback id is the call id.

    Args:
        call: The waiting call.
        now: POSIX seconds.
        contact_ref: Opaque reference of the confirmed number.

    Returns:
        The callback, ``QUEUED``.
    """
    return Callback(
        id=call.call_id,
        skill=call.skill,
        mode=CallbackMode.KEEP_PLACE,
        requested_at=now,
        joined_at=call.joined_at,
        priority=call.priority,
        status=CallbackStatus.QUEUED,
        contact_ref=contact_ref,
        usager_id=call.usager_id,
        intent=call.intent,
        updated_at=now,
    )


def book_slot(
    callback_id: str,
    skill: str,
    slot: Slot,
    now: float,
    *,
    schedule: Schedule | None,
    tz: ZoneInfo,
    policy: CallbackPolicy,
    priority: Priority = Priority.NORMAL,
    contact_ref: str | None = None,
    usager_id: str | None = None,
    intent: str | None = None,
) -> Callback:
    """Book a callback in a slot chosen by the caller.

    Args:
        callback_id: New opaque id.
        skill: Queue that calls back.
        slot: The chosen slot (see :func:`offer_slots`).
        now: POSIX seconds.
        schedule: The queue's hours.
        tz: Timezone.
        policy: Callback policy.
        priority: Priority of the original call.
        contact_ref: Opaque reference of the confirmed number.
        usager_id: Opaque id of the identified usager.
        intent: The caller's question.

    Returns:
        The callback, ``WAITING`` until the slot start.

    Raises:
        CallbackError: If the slot cannot be booked (see :func:`check_slot`).
    """
    check_slot(slot, schedule, tz, now, policy)
    return Callback(
        id=callback_id,
        skill=skill,
        mode=CallbackMode.SLOT,
        requested_at=now,
        joined_at=now,
        priority=priority,
        status=CallbackStatus.WAITING,
        due_at=slot.start,
        slot=slot,
        contact_ref=contact_ref,
        usager_id=usager_id,
        intent=intent,
        updated_at=now,
    )


def is_due(callback: Callback, now: float) -> bool:
    """Tell whether a waiting callback should enter its queue now.

    Args:
        callback: The callback.
        now: POSIX seconds.

    Returns:
        True when ``WAITING`` and ``due_at <= now``.
    """
    return (
        callback.status is CallbackStatus.WAITING
        and callback.due_at is not None
        and callback.due_at <= now
    )


def _require(callback: Callback, *statuses: CallbackStatus) -> None:
    if callback.status not in statuses:
        expected = " or ".join(s.value for s in statuses)
        raise CallbackError(
            f"callback {callback.id} is {callback.status.value}, expected {expected}"
        )


def enter_queue(callback: Callback, now: float) -> tuple[Callback, QueuedCall]:
    """Put a due callback in its queue.

    Args:
        callback: A ``WAITING`` callback.
        now: POSIX seconds.

    Returns:
        The ``QUEUED`` callback and the call to give the router (``CallQueued``): a scheduled
        callback (``callback=True``, raised priority) joining now.

    Raises:
        CallbackError: If the callback is not waiting.
    """
    _require(callback, CallbackStatus.WAITING)
    call = QueuedCall(
        call_id=callback.id,
        skill=callback.skill,
        priority=callback.priority,
        joined_at=now,
        callback=True,
        usager_id=callback.usager_id,
        intent=callback.intent,
    )
    return dataclasses.replace(
        callback, status=CallbackStatus.QUEUED, due_at=None, updated_at=now
    ), call


def dialing(callback: Callback, now: float) -> Callback:
    """Record that an agent was offered the callback and the caller is being dialled.

    Args:
        callback: A ``QUEUED`` callback.
        now: POSIX seconds.

    Returns:
        The ``DIALING`` callback.

    Raises:
        CallbackError: If it was not queued.
    """
    _require(callback, CallbackStatus.QUEUED)
    return dataclasses.replace(callback, status=CallbackStatus.DIALING, updated_at=now)


def attempt_finished(
    callback: Callback,
    outcome: AttemptOutcome,
    now: float,
    *,
    schedule: Schedule | None,
    tz: ZoneInfo,
    policy: CallbackPolicy,
) -> Callback:
    """Record how an attempt ended and decide what comes next.

    Args:
        callback: A ``DIALING`` (or ``QUEUED``, for ``AGENT_UNAVAILABLE``) callback.
        outcome: How it ended.
        now: POSIX seconds.
        schedule: The queue's hours.
        tz: Timezone.
        policy: Callback policy.

    Returns:
        ``COMPLETED`` when connected; ``QUEUED`` again when the agent did not take it (the
        router re-queues the entry itself); ``WAITING`` with the next ``due_at`` after a back-off
        inside opening hours; ``FAILED`` after ``max_attempts`` or when no opening is left
        within the horizon.

    Raises:
        CallbackError: If no attempt was in progress.
    """
    if outcome is AttemptOutcome.AGENT_UNAVAILABLE:
        _require(callback, CallbackStatus.DIALING, CallbackStatus.QUEUED)
        return dataclasses.replace(callback, status=CallbackStatus.QUEUED, updated_at=now)
    _require(callback, CallbackStatus.DIALING)
    attempts = (*callback.attempts, Attempt(now, outcome))
    if outcome is AttemptOutcome.CONNECTED:
        return dataclasses.replace(
            callback, status=CallbackStatus.COMPLETED, attempts=attempts, updated_at=now
        )
    failed = sum(1 for a in attempts if a.outcome is not AttemptOutcome.CONNECTED)
    if failed >= policy.max_attempts:
        return dataclasses.replace(
            callback, status=CallbackStatus.FAILED, attempts=attempts, updated_at=now
        )
    due = next_call_time(schedule, tz, now + policy.retry_delay(failed), policy)
    if due is None:
        return dataclasses.replace(
            callback, status=CallbackStatus.FAILED, attempts=attempts, updated_at=now
        )
    return dataclasses.replace(
        callback, status=CallbackStatus.WAITING, attempts=attempts, due_at=due, updated_at=now
    )


def queue_closed(
    callback: Callback,
    now: float,
    *,
    schedule: Schedule | None,
    tz: ZoneInfo,
    policy: CallbackPolicy,
) -> Callback:
    """Carry a queued callback over to the next opening (``CallRejectedClosed``).

    No attempt is counted: nobody was dialled.

    Args:
        callback: A ``QUEUED`` callback.
        now: POSIX seconds.
        schedule: The queue's hours.
        tz: Timezone.
        policy: Callback policy.

    Returns:
        ``WAITING`` until the next time an attempt may start, or ``FAILED`` if none is left.

    Raises:
        CallbackError: If it was not queued.
    """
    _require(callback, CallbackStatus.QUEUED)
    due = next_call_time(schedule, tz, now, policy)
    if due is None:
        return dataclasses.replace(callback, status=CallbackStatus.FAILED, updated_at=now)
    return dataclasses.replace(callback, status=CallbackStatus.WAITING, due_at=due, updated_at=now)


def cancel(callback: Callback, now: float) -> Callback:
    """Cancel a callback that has not ended.

    Args:
        callback: The callback.
        now: POSIX seconds.

    Returns:
        The ``CANCELLED`` callback.

    Raises:
        CallbackError: If it already ended.
    """
    if callback.status in TERMINAL_STATUSES:
        raise CallbackError(f"callback {callback.id} already ended ({callback.status.value})")
    return dataclasses.replace(
        callback, status=CallbackStatus.CANCELLED, due_at=None, updated_at=now
    )
