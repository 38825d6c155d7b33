"""Callbacks repository: persist, claim atomically, list, cancel, erase numbers (issue 5).

The pure rules (which status follows which, back-off, slots) live in :mod:`routing.callbacks`;
this module stores their :class:`~routing.callbacks.Callback` values with what routing must not
see (the number to call) and makes every transition a compare-and-set: one ``UPDATE ... WHERE
id = :id AND status = :expected``. A node that loses the race gets ``None`` back and leaves the
callback to the winner, so two nodes never enqueue or dial the same callback.

Functions are blocking (call them from a worker thread when an event loop runs) and take an
engine (own transaction) or a connection (the caller's).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import phonenumbers
from sqlalchemy import Connection, Engine, Table, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlmodel import SQLModel

from callcenter.store import callback_models
from callcenter.store.audit import transaction
from routing import Priority
from routing.callbacks import (
    TERMINAL_STATUSES,
    Attempt,
    AttemptOutcome,
    Callback,
    CallbackMode,
    CallbackStatus,
    Slot,
)

_ = callback_models  # the table is registered on import
CALLBACK: Table = SQLModel.metadata.tables["callback"]

OPEN_STATUSES: tuple[CallbackStatus, ...] = tuple(
    s for s in CallbackStatus if s not in TERMINAL_STATUSES
)
"""Statuses of callbacks that still have work to do."""


class CallbackStoreError(ValueError):
    """An invalid or impossible callback operation; the message says which and why."""


@dataclass(frozen=True, slots=True)
class StoredCallback:
    """A callback as stored: the routing value plus what only the store keeps."""

    callback: Callback
    """The pure value (status, times, attempts)."""
    phone: str | None
    """E.164 number to call (None once erased after retention)."""
    created_at: float
    """When it was requested (routing clock)."""
    origin_call_id: str | None
    """SIP Call-ID of the call that asked."""
    queue_call_id: str | None
    """The router's id of its queue entry."""
    node: str | None
    """The node that claimed it last."""
    last_outcome: str | None
    """Outcome of the latest attempt."""
    cancel_reason: str | None
    """Why it was cancelled."""

    @property
    def id(self) -> str:
        """The callback's id."""
        return self.callback.id

    @property
    def status(self) -> CallbackStatus:
        """Its status."""
        return self.callback.status

    def masked_phone(self) -> str:
        """The number with all but its last two digits hidden (for listings)."""
        if not self.phone:
            return "(effacé)"
        return "•" * max(0, len(self.phone) - 3) + self.phone[-2:]


def new_id() -> str:
    """A new opaque callback id (16 hex characters)."""
    return secrets.token_hex(8)


CALLBACK_REGIONS: frozenset[str] = frozenset(
    {"FR", "GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF", "WF", "PF", "NC"}
)
"""Regions a callback may call: metropolitan France and the French overseas regions."""
_CALLBACK_TYPES = frozenset(
    {
        phonenumbers.PhoneNumberType.FIXED_LINE,
        phonenumbers.PhoneNumberType.MOBILE,
        phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE,
    }
)


def callback_number_allowed(e164: str) -> bool:
    """Whether the service may call ``e164`` back through the trunk (toll-fraud guard).

    Only ordinary French numbers are called: a fixed line or a mobile (``libphonenumber``'s
    number type) of metropolitan France or a French overseas region (:data:`CALLBACK_REGIONS`),
    plus the metropolitan ``09`` numbers (internet boxes: typed VoIP by ``libphonenumber``, but
    charged as a landline). Premium rate (``08 9x``), shared cost and free phone numbers, short
    numbers (``3977``), international revenue-share (``+882``, satellite) and every other
    country are refused: a caller could otherwise make the service dial them at its cost.

    Args:
        e164: The number, E.164 (``+33612345678``); anything else is refused.

    Returns:
        True when it may be dialled.
    """
    try:
        number = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return False
    if not phonenumbers.is_valid_number(number):
        return False
    region = phonenumbers.region_code_for_number(number)
    if region not in CALLBACK_REGIONS:
        return False
    kind = phonenumbers.number_type(number)
    return kind in _CALLBACK_TYPES or (region == "FR" and kind == phonenumbers.PhoneNumberType.VOIP)


def check_phone(phone: str) -> str:
    """Return ``phone`` if it is a valid E.164 number the service may call back.

    Raises:
        CallbackStoreError: It is not E.164, or not allowed (:func:`callback_number_allowed`);
            the number itself is not quoted in the message.
    """
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        raise CallbackStoreError("phone: not an E.164 number") from None
    if not phonenumbers.is_valid_number(number) or (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) != phone
    ):
        raise CallbackStoreError("phone: not a valid E.164 number")
    if not callback_number_allowed(phone):
        raise CallbackStoreError(
            "phone: not a French fixed line or mobile number (not called back)"
        )
    return phone


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive datetimes (stored as UTC)
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _history(callback: Callback) -> list[dict[str, Any]]:
    return [
        {"at": datetime.fromtimestamp(a.at, UTC).isoformat(), "outcome": a.outcome.value}
        for a in callback.attempts
    ]


def _values(callback: Callback) -> dict[str, Any]:
    """The columns a transition may change."""
    last = callback.attempts[-1].outcome.value if callback.attempts else None
    return {
        "updated_at": _dt(callback.updated_at),
        "status": callback.status.value,
        "due_at": _dt(callback.due_at),
        "attempts": len(callback.attempts),
        "last_outcome": last,
        "history": _history(callback),
    }


def _from_row(row: RowMapping) -> StoredCallback:
    attempts = tuple(
        Attempt(datetime.fromisoformat(item["at"]).timestamp(), AttemptOutcome(item["outcome"]))
        for item in row["history"] or ()
    )
    slot = None
    if row["slot_start"] is not None and row["slot_end"] is not None:
        slot = Slot(_ts(row["slot_start"]) or 0.0, _ts(row["slot_end"]) or 0.0)
    created = _ts(row["created_at"]) or 0.0
    callback = Callback(
        id=row["id"],
        skill=row["skill"],
        mode=CallbackMode(row["mode"]),
        requested_at=created,
        joined_at=_ts(row["joined_at"]) or created,
        priority=Priority(row["priority"]),
        status=CallbackStatus(row["status"]),
        due_at=_ts(row["due_at"]),
        slot=slot,
        attempts=attempts,
        contact_ref=row["id"],
        usager_id=None if row["usager_id"] is None else str(row["usager_id"]),
        intent=row["intent"],
        updated_at=_ts(row["updated_at"]) or created,
    )
    return StoredCallback(
        callback=callback,
        phone=row["phone"],
        created_at=created,
        origin_call_id=row["origin_call_id"],
        queue_call_id=row["queue_call_id"],
        node=row["node"],
        last_outcome=row["last_outcome"],
        cancel_reason=row["cancel_reason"],
    )


def create(
    bind: Engine | Connection,
    callback: Callback,
    *,
    phone: str,
    origin_call_id: str | None = None,
    queue_call_id: str | None = None,
    node: str | None = None,
) -> StoredCallback:
    """Store a new callback.

    Args:
        bind: Engine or connection.
        callback: The pure value (its ``id`` is the row's id: see :func:`new_id`).
        phone: The number to call, E.164.
        origin_call_id: SIP Call-ID of the call that asked.
        queue_call_id: The router's id of its queue entry, when queued.
        node: The node that owns it now.

    Returns:
        The stored callback.

    Raises:
        CallbackStoreError: The number is not E.164, or the usager id is not an integer.
    """
    check_phone(phone)
    usager: int | None = None
    if callback.usager_id is not None:
        if not callback.usager_id.isdigit():
            raise CallbackStoreError("usager_id: expected the usager's numeric id")
        usager = int(callback.usager_id)
    row = {
        "id": callback.id,
        "created_at": _dt(callback.requested_at),
        "skill": callback.skill,
        "priority": int(callback.priority),
        "mode": callback.mode.value,
        "slot_start": _dt(callback.slot.start) if callback.slot else None,
        "slot_end": _dt(callback.slot.end) if callback.slot else None,
        "joined_at": _dt(callback.joined_at),
        "origin_call_id": origin_call_id,
        "queue_call_id": queue_call_id,
        "usager_id": usager,
        "intent": callback.intent,
        "phone": phone,
        "node": node,
        "claimed_at": _dt(callback.updated_at) if node else None,
        **_values(callback),
    }
    with transaction(bind) as conn:
        conn.execute(insert(CALLBACK).values(**row))
        stored = conn.execute(select(CALLBACK).where(CALLBACK.c.id == callback.id)).mappings()
        return _from_row(stored.one())


def get(bind: Engine | Connection, callback_id: str) -> StoredCallback | None:
    """The callback with this id, or None."""
    with transaction(bind) as conn:
        row = conn.execute(select(CALLBACK).where(CALLBACK.c.id == callback_id)).mappings()
        found = row.first()
    return None if found is None else _from_row(found)


def by_queue_call_id(bind: Engine | Connection, queue_call_id: str) -> StoredCallback | None:
    """The open callback whose router entry is ``queue_call_id`` (e.g. a kept place), or None."""
    query = (
        select(CALLBACK)
        .where(CALLBACK.c.queue_call_id == queue_call_id)
        .where(CALLBACK.c.status.in_([s.value for s in OPEN_STATUSES]))
        .order_by(CALLBACK.c.created_at.desc())
        .limit(1)
    )
    with transaction(bind) as conn:
        found = conn.execute(query).mappings().first()
    return None if found is None else _from_row(found)


def list_callbacks(
    bind: Engine | Connection,
    *,
    statuses: Iterable[CallbackStatus] | None = None,
    limit: int = 200,
) -> list[StoredCallback]:
    """Callbacks, newest first, optionally only those with these statuses."""
    query = select(CALLBACK).order_by(CALLBACK.c.created_at.desc(), CALLBACK.c.id).limit(limit)
    if statuses is not None:
        query = query.where(CALLBACK.c.status.in_([s.value for s in statuses]))
    with transaction(bind) as conn:
        rows = conn.execute(query).mappings().all()
    return [_from_row(r) for r in rows]


def open_callbacks(bind: Engine | Connection) -> list[StoredCallback]:
    """Every callback that has not ended (loaded by the service at start)."""
    return list_callbacks(bind, statuses=OPEN_STATUSES, limit=100_000)


def transition(
    bind: Engine | Connection,
    callback: Callback,
    *,
    expected: CallbackStatus,
    node: str | None = None,
    queue_call_id: str | None = None,
) -> StoredCallback | None:
    """Store ``callback``'s new state if the stored status is still ``expected``.

    The compare-and-set is one ``UPDATE ... WHERE id = :id AND status = :expected``: of two
    nodes making the same transition, exactly one gets the row back.

    Args:
        bind: Engine or connection.
        callback: The new value (same id).
        expected: The status the caller read.
        node: Claim it for this node (also stamps ``claimed_at``).
        queue_call_id: The router's id of its entry, when it changes.

    Returns:
        The stored callback, or None when another transition came first (or no such id).
    """
    values = _values(callback)
    if node is not None:
        values["node"] = node
        values["claimed_at"] = _dt(callback.updated_at)
    if queue_call_id is not None:
        values["queue_call_id"] = queue_call_id
    with transaction(bind) as conn:
        result = conn.execute(
            update(CALLBACK)
            .where(CALLBACK.c.id == callback.id, CALLBACK.c.status == expected.value)
            .values(**values)
        )
        if result.rowcount != 1:
            return None
        row = conn.execute(select(CALLBACK).where(CALLBACK.c.id == callback.id)).mappings()
        return _from_row(row.one())


def cancel(
    bind: Engine | Connection, callback_id: str, *, reason: str, now: datetime | None = None
) -> StoredCallback:
    """Cancel a callback that has not ended.

    Args:
        bind: Engine or connection.
        callback_id: Its id.
        reason: Why (required, kept with it).
        now: When (defaults to now, UTC).

    Returns:
        The cancelled callback.

    Raises:
        CallbackStoreError: No such callback, it already ended, or no reason given.
    """
    if not reason.strip():
        raise CallbackStoreError("reason: required")
    at = now or datetime.now(UTC)
    for _ in range(5):  # a running node may move it meanwhile: read again and retry
        current = get(bind, callback_id)
        if current is None:
            raise CallbackStoreError(f"id: no callback {callback_id!r}")
        if current.status in TERMINAL_STATUSES:
            raise CallbackStoreError(
                f"callback {callback_id} already ended ({current.status.value})"
            )
        with transaction(bind) as conn:
            result = conn.execute(
                update(CALLBACK)
                .where(CALLBACK.c.id == callback_id, CALLBACK.c.status == current.status.value)
                .values(
                    status=CallbackStatus.CANCELLED.value,
                    due_at=None,
                    updated_at=at,
                    cancel_reason=reason.strip()[:200],
                )
            )
        if result.rowcount == 1:
            done = get(bind, callback_id)
            assert done is not None
            return done
    raise CallbackStoreError(f"callback {callback_id} keeps changing; try again")


def erase_phones(bind: Engine | Connection, before: datetime) -> int:
    """Erase the number of callbacks that ended before ``before``; return how many.

    The callback itself (when, queue, attempts, outcomes) stays for the statistics.
    """
    with transaction(bind) as conn:
        result = conn.execute(
            update(CALLBACK)
            .where(
                CALLBACK.c.status.in_([s.value for s in TERMINAL_STATUSES]),
                CALLBACK.c.updated_at < before,
                CALLBACK.c.phone.is_not(None),
            )
            .values(phone=None)
        )
    return int(result.rowcount or 0)
