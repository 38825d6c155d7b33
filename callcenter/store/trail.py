"""The call event trail: what every call did, written to the store without blocking calls.

The call controller calls three synchronous, non-blocking methods on :class:`CallTrail`
(``call_started``, ``record``, ``call_ended``). They only append to an in-memory queue; one
background writer task sends the queue to the database in batches (every ``batch_interval`` or
as soon as ``batch_size`` operations are waiting), in a dedicated thread so the event loop
never waits on the database.

Rules this module owns:

1. Order. Operations reach the database in the order they were made; each event gets its
   ``seq`` (0, 1, 2... within its call) when it is recorded, not when it is written.
2. Resilience. A transient database error (connection lost, locked, read-only...) is logged
   and the unwritten operations stay queued for a retry with backoff. A permanent error (a
   constraint violation...) drops only the offending operations. Nothing raises into callers.
3. Privacy. Logs carry the SIP Call-ID and error class, never a caller number or statement
   parameters (the engine is created with ``hide_parameters``).

Reads (``list_calls``, ``get_call``, :func:`show_call`) return JSON-ready dicts: datetimes are
ISO 8601 strings in UTC.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self, TypeAlias

import phonenumbers
from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc

from callcenter.store import db, models
from callcenter.store.dossiers import normalize_phone

logger = logging.getLogger(__name__)

JsonValue: TypeAlias = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]

_CALL = models.Call.__table__  # type: ignore[attr-defined]
_EVENT = models.CallEvent.__table__  # type: ignore[attr-defined]

# Errors after which the same write may succeed later: keep the operations and retry.
_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
)


@dataclass(frozen=True, slots=True)
class TrailConfig:
    """Batching and retry settings of the trail writer."""

    batch_interval: float = 0.1
    """Seconds to wait for more operations before writing a batch."""
    batch_size: int = 200
    """Write at once when this many operations are waiting."""
    max_batch: int = 2000
    """Most operations written in one transaction."""
    retry_initial: float = 0.5
    """First delay after a failed write, in seconds; it doubles up to ``retry_max``."""
    retry_max: float = 30.0
    """Longest delay between retries, in seconds."""
    max_pending: int = 200_000
    """Operations kept in memory while the database is down; newer ones are dropped beyond."""
    close_timeout: float = 10.0
    """Seconds ``close()`` waits for the last writes before giving up (and logging the loss)."""


@dataclass(frozen=True, slots=True)
class _CallStarted:
    sip_call_id: str
    at: datetime
    dialled: str
    caller: str | None
    flow_id: str | None


@dataclass(frozen=True, slots=True)
class _EventRecorded:
    sip_call_id: str
    at: datetime
    seq: int
    type: str
    data: dict[str, JsonValue]


@dataclass(frozen=True, slots=True)
class _CallEnded:
    sip_call_id: str
    at: datetime
    outcome: str
    cause: str | None
    side: str | None


_MAX_REFUSED_CALLS = 10_000

_Op: TypeAlias = _CallStarted | _EventRecorded | _CallEnded


@dataclass(slots=True)
class _WriteResult:
    done: int
    """Operations handled (written or dropped) from the start of the batch."""
    dropped: int = 0
    """Operations among ``done`` that were rejected for good."""
    error: str | None = None
    """Description of the transient error that stopped the batch, if any."""


@dataclass(slots=True)
class TrailStats:
    """Counters of the trail writer, for metrics and tests."""

    written: int = 0
    """Operations written to the database."""
    dropped: int = 0
    """Operations lost: rejected by the database, queue overflow, or unwritten at close."""
    write_failures: int = 0
    """Write attempts that failed with a transient error (and were retried)."""
    rejected: dict[str, int] = field(default_factory=dict)
    """Calls to the sync API ignored, by reason (``unknown_call``, ``duplicate_call``...)."""


class CallTrail:
    """Batched, non-blocking writer and reader of the call event trail.

    Example::

        trail = CallTrail.from_url(db.resolve_database_url(data_dir))
        await trail.start()
        trail.call_started(call_id, dialled="3975", caller="+33...", flow_id="solidarites", at=now)
        trail.record(call_id, "answered", {}, now)
        trail.call_ended(call_id, outcome="completed", cause="bye", side="caller", at=now)
        await trail.close()
    """

    def __init__(
        self, *, engine: Engine, config: TrailConfig | None = None, owns_engine: bool = False
    ) -> None:
        """Create a trail on ``engine``; call :meth:`start` before use.

        Args:
            engine: Engine from :func:`callcenter.store.db.make_engine`.
            config: Batching and retry settings.
            owns_engine: Dispose of the engine on :meth:`close`.
        """
        self._engine = engine
        self._config = config or TrailConfig()
        self._owns_engine = owns_engine
        self._pending: deque[_Op] = deque()
        self._seq: dict[str, int] = {}
        self._has_data = asyncio.Event()
        self._kick = asyncio.Event()
        self._lock = asyncio.Lock()
        self._stopping = False
        self._closed = False
        self._schema_ready = False
        self._overflowing = False
        self._writer: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="call-trail-writer"
        )
        self.stats = TrailStats()
        # Call-IDs whose row the database refused (writer thread only), oldest first.
        self._refused_calls: dict[str, None] = {}

    @classmethod
    def from_url(cls, url: str, *, config: TrailConfig | None = None) -> Self:
        """Create a trail with its own engine for ``url`` (disposed on close)."""
        return cls(engine=db.make_engine(url), config=config, owns_engine=True)

    @property
    def engine(self) -> Engine:
        """The engine the trail writes to."""
        return self._engine

    @property
    def pending(self) -> int:
        """Operations waiting to be written."""
        return len(self._pending)

    async def start(self) -> None:
        """Create the tables if needed and start the writer task.

        A database that is unreachable at start is logged, not raised: calls are still answered,
        and the writer creates the tables once the database is back.
        """
        if self._writer is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._ensure_schema)
        except sa_exc.SQLAlchemyError as exc:
            logger.error(
                "call trail store %s unavailable at start (%s); will retry",
                db.safe_url(str(self._engine.url)),
                _describe(exc),
            )
        self._writer = asyncio.create_task(self._run(), name="call-trail-writer")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- sync API for the call controller (never blocks, never raises) --------------------------

    def call_started(
        self,
        sip_call_id: str,
        *,
        dialled: str,
        caller: str | None,
        flow_id: str | None,
        at: datetime,
    ) -> None:
        """Record a new call (creates its ``call`` row).

        Args:
            sip_call_id: The SIP Call-ID of the dialog; unique per call.
            dialled: The number the caller dialled (the service's number).
            caller: The caller's number (personal data: stored only in ``call.caller``).
            flow_id: The IVR flow the call runs.
            at: When the INVITE arrived (naive datetimes are taken as UTC).
        """
        if self._refuse(sip_call_id):
            return
        if sip_call_id in self._seq:
            self._reject("duplicate_call", sip_call_id)
            return
        self._seq[sip_call_id] = 0
        self._enqueue(
            _CallStarted(
                sip_call_id=sip_call_id,
                at=_utc(at),
                dialled=dialled,
                caller=caller,
                flow_id=flow_id,
            )
        )

    def record(
        self,
        sip_call_id: str,
        type: str,  # shadows the builtin on purpose: the name is the event's column name
        data: Mapping[str, Any],
        at: datetime,
    ) -> None:
        """Record one event of a call started with :meth:`call_started`.

        Args:
            sip_call_id: The call's SIP Call-ID.
            type: An :class:`~callcenter.store.models.EventType` value or another short name.
            data: Event details (copied; values made JSON-safe). Never put a phone number here.
            at: When the event happened (naive datetimes are taken as UTC).
        """
        if self._refuse(sip_call_id):
            return
        seq = self._seq.get(sip_call_id)
        if seq is None:
            self._reject("unknown_call", sip_call_id)
            return
        self._seq[sip_call_id] = seq + 1
        self._enqueue(
            _EventRecorded(
                sip_call_id=sip_call_id,
                at=_utc(at),
                seq=seq,
                type=str(type),
                data={str(k): _jsonable(v) for k, v in data.items()},
            )
        )

    def call_ended(
        self,
        sip_call_id: str,
        *,
        outcome: models.CallOutcome | str,
        cause: str | None,
        side: models.HangupSide | str | None,
        at: datetime,
    ) -> None:
        """Record the end of a call; later events for it are ignored.

        Args:
            sip_call_id: The call's SIP Call-ID.
            outcome: A :class:`~callcenter.store.models.CallOutcome` value.
            cause: Why the call ended (``bye``, ``cancel``, ``rtp_timeout``, ``flow_end``...).
            side: A :class:`~callcenter.store.models.HangupSide` value, or None if unknown.
            at: When the call ended (naive datetimes are taken as UTC).
        """
        if self._refuse(sip_call_id):
            return
        if self._seq.pop(sip_call_id, None) is None:
            self._reject("unknown_call", sip_call_id)
            return
        self._enqueue(
            _CallEnded(
                sip_call_id=sip_call_id,
                at=_utc(at),
                outcome=str(outcome),
                cause=cause,
                side=None if side is None else str(side),
            )
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def flush(self) -> bool:
        """Write everything queued so far, now.

        Returns:
            True if the queue was fully written; False if the database failed (the unwritten
            operations stay queued and the background writer retries them).
        """
        async with self._lock:
            return await self._drain()

    async def close(self) -> None:
        """Flush, then stop the writer. Operations still unwritten after the timeout are lost."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        self._kick.set()
        self._has_data.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.close_timeout
        ok = False
        try:
            if self._writer is not None:
                done, _ = await asyncio.wait({self._writer}, timeout=self._config.close_timeout)
                if not done:
                    self._writer.cancel()
                    await asyncio.wait({self._writer})
            async with asyncio.timeout_at(deadline):
                ok = await self.flush()
        except TimeoutError:
            ok = False
        finally:
            if self._pending:
                logger.error(
                    "call trail closed with %d operations possibly unwritten (database down)",
                    len(self._pending),
                )
                self.stats.dropped += len(self._pending)
                self._pending.clear()
            self._executor.shutdown(wait=False)
            if self._owns_engine:
                await asyncio.to_thread(self._engine.dispose)
        if not ok:
            logger.warning("call trail: last flush before close failed")

    # -- read API --------------------------------------------------------------------------------

    async def list_calls(self, limit: int = 50) -> list[dict[str, Any]]:
        """Return the latest calls, newest first, with their event count but no events.

        The caller's number is left out of lists (see :func:`read_calls`).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The database is unavailable.
        """
        return await asyncio.to_thread(read_calls, self._engine, limit)

    async def purge_transcripts(self, before: datetime) -> int:
        """Erase the text of transcripts recorded before ``before`` (retention, GDPR).

        The events stay (engine, confidence, latency are not personal data) with ``text``
        removed and ``purged: true``.

        Returns:
            How many transcripts were erased.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The database is unavailable.
        """
        return await asyncio.to_thread(purge_transcripts, self._engine, before)

    async def apply_retention(self, *, numbers_before: datetime, calls_before: datetime) -> int:
        """Erase caller numbers, then delete whole calls, older than the given instants.

        Returns:
            How many calls were deleted.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The database is unavailable.
        """
        await asyncio.to_thread(erase_caller_numbers, self._engine, numbers_before)
        return await asyncio.to_thread(purge_calls, self._engine, calls_before)

    async def get_call(self, sip_call_id: str) -> dict[str, Any] | None:
        """Return one call with its caller number and its events in order, or None.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The database is unavailable.
        """
        return await asyncio.to_thread(read_call, self._engine, sip_call_id)

    async def last_call_from(
        self, caller_e164: str, *, since: datetime, exclude_sip_call_id: str | None = None
    ) -> datetime | None:
        """Return when the latest other call from ``caller_e164`` started after ``since``.

        Runs in a worker thread (see :func:`last_call_from`).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: The database is unavailable.
        """
        return await asyncio.to_thread(
            last_call_from,
            self._engine,
            caller_e164,
            since=since,
            exclude_sip_call_id=exclude_sip_call_id,
        )

    # -- internals -------------------------------------------------------------------------------

    def _refuse(self, sip_call_id: str) -> bool:
        if self._closed:
            self._reject("closed", sip_call_id)
            return True
        return False

    def _reject(self, reason: str, sip_call_id: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        logger.warning("[%s] call trail: operation ignored (%s)", sip_call_id, reason)

    def _enqueue(self, op: _Op) -> None:
        if len(self._pending) >= self._config.max_pending:
            # Dropping the newest keeps the queue a consistent prefix (a call row before its
            # events); the database has been down for a long time anyway.
            self.stats.dropped += 1
            if not self._overflowing:
                self._overflowing = True
                logger.error("call trail queue full (%d): dropping events", len(self._pending))
            return
        self._overflowing = False
        self._pending.append(op)
        self._has_data.set()
        if len(self._pending) >= self._config.batch_size:
            self._kick.set()

    def _should_stop(self) -> bool:
        return self._stopping

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when a batch fills up or on close."""
        if self._stopping:
            return
        self._kick.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._kick.wait()
        except TimeoutError:
            pass

    async def _run(self) -> None:
        delay = self._config.retry_initial
        while True:
            await self._has_data.wait()
            if self._should_stop():
                return
            if len(self._pending) < self._config.batch_size:
                await self._sleep(self._config.batch_interval)
                if self._should_stop():
                    return
            try:
                ok = await self.flush()
            except Exception:
                # A bug, not a database error: keep the writer alive for the next batches.
                logger.exception("call trail writer error")
                ok = False
            if ok:
                delay = self._config.retry_initial
            else:
                await self._sleep(delay)
                delay = min(delay * 2, self._config.retry_max)

    async def _drain(self) -> bool:
        """Write the queue in chunks; the caller holds ``self._lock``."""
        loop = asyncio.get_running_loop()
        while self._pending:
            count = min(len(self._pending), self._config.max_batch)
            batch = [self._pending[i] for i in range(count)]
            result = await loop.run_in_executor(self._executor, self._write, batch)
            for _ in range(result.done):
                self._pending.popleft()
            self.stats.written += result.done - result.dropped
            self.stats.dropped += result.dropped
            if result.error is not None:
                self.stats.write_failures += 1
                logger.error(
                    "call trail write failed (%s); %d operations kept for retry",
                    result.error,
                    len(self._pending),
                )
                return False
        self._has_data.clear()
        return True

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            db.create_schema(self._engine)
            self._schema_ready = True

    def _write(self, batch: Sequence[_Op]) -> _WriteResult:
        """Write ``batch`` (runs in the writer thread)."""
        try:
            self._ensure_schema()
            if not any(op.sip_call_id in self._refused_calls for op in batch):
                with self._engine.begin() as conn:
                    dropped = _apply(conn, batch)
                return _WriteResult(done=len(batch), dropped=dropped)
        except _TRANSIENT_ERRORS as exc:
            return _WriteResult(done=0, error=_describe(exc))
        except sa_exc.SQLAlchemyError as exc:
            logger.warning("call trail batch rejected (%s); writing one by one", _describe(exc))
        # Isolate the operations the database refuses; keep the rest.
        dropped = 0
        for done, op in enumerate(batch):
            if op.sip_call_id in self._refused_calls and not isinstance(op, _CallStarted):
                # Its call row was refused (e.g. a Call-ID already in the store): do not attach
                # this call's events to another call's row.
                dropped += 1
                continue
            try:
                with self._engine.begin() as conn:
                    dropped += _apply(conn, [op])
            except _TRANSIENT_ERRORS as exc:
                return _WriteResult(done=done, dropped=dropped, error=_describe(exc))
            except sa_exc.SQLAlchemyError as exc:
                dropped += 1
                if isinstance(op, _CallStarted):
                    self._refused_calls[op.sip_call_id] = None
                    if len(self._refused_calls) > _MAX_REFUSED_CALLS:
                        del self._refused_calls[next(iter(self._refused_calls))]
                logger.error(
                    "[%s] call trail dropped a %s (%s)",
                    op.sip_call_id,
                    type(op).__name__.lstrip("_"),
                    _describe(exc),
                )
        return _WriteResult(done=len(batch), dropped=dropped)


def _apply(conn: Connection, batch: Sequence[_Op]) -> int:
    """Write ``batch`` in the current transaction; return how many operations were dropped.

    Grouping by kind keeps the order that matters: a call's row is queued before its events
    and its end, and nothing is queued for a call after its end.
    """
    started = [op for op in batch if isinstance(op, _CallStarted)]
    events = [op for op in batch if isinstance(op, _EventRecorded)]
    ended = [op for op in batch if isinstance(op, _CallEnded)]
    if started:
        conn.execute(
            insert(_CALL),
            [
                {
                    "sip_call_id": op.sip_call_id,
                    "started_at": op.at,
                    "dialled": op.dialled,
                    "caller": op.caller,
                    "flow_id": op.flow_id,
                }
                for op in started
            ],
        )
    dropped = 0
    if events:
        ids = _call_ids(conn, {op.sip_call_id for op in events})
        rows = []
        for op in events:
            call_id = ids.get(op.sip_call_id)
            if call_id is None:
                # Its call row was rejected earlier: nothing to attach the event to.
                dropped += 1
                continue
            rows.append(
                {"call_id": call_id, "seq": op.seq, "ts": op.at, "type": op.type, "data": op.data}
            )
        if rows:
            conn.execute(insert(_EVENT), rows)
        answered = [
            {"b_sip_call_id": op.sip_call_id, "b_at": op.at}
            for op in events
            if op.type == models.EventType.ANSWERED
        ]
        if answered:
            conn.execute(
                update(_CALL)
                .where(_CALL.c.sip_call_id == bindparam("b_sip_call_id"))
                .where(_CALL.c.answered_at.is_(None))
                .values(answered_at=bindparam("b_at")),
                answered,
            )
    if ended:
        conn.execute(
            update(_CALL)
            .where(_CALL.c.sip_call_id == bindparam("b_sip_call_id"))
            .values(
                ended_at=bindparam("b_at"),
                outcome=bindparam("b_outcome"),
                hangup_cause=bindparam("b_cause"),
                hangup_side=bindparam("b_side"),
            ),
            [
                {
                    "b_sip_call_id": op.sip_call_id,
                    "b_at": op.at,
                    "b_outcome": op.outcome,
                    "b_cause": op.cause,
                    "b_side": op.side,
                }
                for op in ended
            ],
        )
    return dropped


def _call_ids(conn: Connection, sip_call_ids: Iterable[str]) -> dict[str, int]:
    stmt = select(_CALL.c.sip_call_id, _CALL.c.id).where(_CALL.c.sip_call_id.in_(sip_call_ids))
    return {row.sip_call_id: row.id for row in conn.execute(stmt)}


# -- reads (blocking; shared by CallTrail and the CLI) --------------------------------------------

_SUMMARY_COLUMNS = (
    "sip_call_id",
    "started_at",
    "answered_at",
    "ended_at",
    "dialled",
    "flow_id",
    "outcome",
    "hangup_cause",
    "hangup_side",
)


def read_calls(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """Return the latest ``limit`` calls, newest first, each with ``event_count`` (blocking).

    The caller's number is deliberately left out: a list is an overview that ends up in
    dashboards and screenshots; the number belongs to one call's own trail (:func:`read_call`).
    """
    event_count = (
        select(func.count(_EVENT.c.id)).where(_EVENT.c.call_id == _CALL.c.id).scalar_subquery()
    )
    stmt = (
        select(*(_CALL.c[name] for name in _SUMMARY_COLUMNS), event_count.label("event_count"))
        .order_by(_CALL.c.started_at.desc(), _CALL.c.id.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [
            _summary(row) | {"event_count": row["event_count"]}
            for row in conn.execute(stmt).mappings()
        ]


def purge_transcripts(engine: Engine, before: datetime, *, chunk: int = 500) -> int:
    """Erase transcript texts recorded before ``before`` (blocking); see the async method."""
    erased = 0
    cutoff = _utc(before)
    last_id = 0
    while True:
        with engine.begin() as conn:
            rows = conn.execute(
                select(_EVENT.c.id, _EVENT.c.data)
                .where(
                    _EVENT.c.type == models.EventType.TRANSCRIPT.value,
                    _EVENT.c.ts < cutoff,
                    _EVENT.c.id > last_id,
                )
                .order_by(_EVENT.c.id)
                .limit(chunk)
            ).all()
            for row in rows:
                data = row.data or {}
                if "text" in data:
                    kept = {k: v for k, v in data.items() if k != "text"} | {"purged": True}
                    conn.execute(update(_EVENT).where(_EVENT.c.id == row.id).values(data=kept))
                    erased += 1
        if len(rows) < chunk:
            return erased
        last_id = rows[-1].id


def erase_caller_numbers(engine: Engine, before: datetime) -> int:
    """Erase the caller number of calls started before ``before`` (blocking); count them.

    The number serves the repeat-caller window (hours) and a callback's read-back; the call's
    timings, path and outcome stay for the statistics until :func:`purge_calls`.
    """
    with engine.begin() as conn:
        result = conn.execute(
            update(_CALL)
            .where(_CALL.c.started_at < _utc(before), _CALL.c.caller.is_not(None))
            .values(caller=None)
        )
    return int(result.rowcount or 0)


def purge_calls(engine: Engine, before: datetime, *, chunk: int = 500) -> int:
    """Delete calls started before ``before`` with their events (blocking); count the calls.

    In chunks, each in its own transaction, so that a year of calls does not hold a long lock
    on SQLite or a huge transaction on PostgreSQL.
    """
    cutoff = _utc(before)
    deleted = 0
    while True:
        with engine.begin() as conn:
            ids = [
                row.id
                for row in conn.execute(
                    select(_CALL.c.id)
                    .where(_CALL.c.started_at < cutoff)
                    .order_by(_CALL.c.id)
                    .limit(chunk)
                )
            ]
            if ids:
                # Events first: the foreign key cascades on PostgreSQL, but an SQLite connection
                # without ``PRAGMA foreign_keys`` would leave them behind.
                conn.execute(delete(_EVENT).where(_EVENT.c.call_id.in_(ids)))
                conn.execute(delete(_CALL).where(_CALL.c.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < chunk:
            return deleted


def read_call(engine: Engine, sip_call_id: str) -> dict[str, Any] | None:
    """Return one call (with ``caller``) and its ``events`` ordered by ``seq``, or None."""
    with engine.connect() as conn:
        row = (
            conn.execute(select(_CALL).where(_CALL.c.sip_call_id == sip_call_id)).mappings().first()
        )
        if row is None:
            return None
        events = conn.execute(
            select(_EVENT.c.seq, _EVENT.c.ts, _EVENT.c.type, _EVENT.c.data)
            .where(_EVENT.c.call_id == row["id"])
            .order_by(_EVENT.c.seq)
        ).mappings()
        return _summary(row) | {
            "caller": row["caller"],
            "events": [
                {"seq": ev["seq"], "ts": _iso(ev["ts"]), "type": ev["type"], "data": ev["data"]}
                for ev in events
            ],
        }


def caller_forms(caller_e164: str) -> tuple[str, ...]:
    """The forms a number may take in ``call.caller`` (the SIP user part as the trunk sent it).

    ``+33612345678`` → itself, ``33612345678``, ``0033612345678`` and the national
    ``0612345678``. Anything that is not E.164 gives no form (it matches no call).
    """
    if not caller_e164.startswith("+") or not caller_e164[1:].isdigit():
        return ()
    digits = caller_e164[1:]
    forms = [caller_e164, digits, f"00{digits}"]
    try:
        number = phonenumbers.parse(caller_e164, None)
    except phonenumbers.NumberParseException:
        return tuple(forms)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    forms.append("".join(ch for ch in national if ch.isdigit() or ch == "+"))
    return tuple(dict.fromkeys(forms))


def last_call_from(
    engine: Engine,
    caller_e164: str,
    *,
    since: datetime,
    exclude_sip_call_id: str | None = None,
) -> datetime | None:
    """Return the start of the latest call from ``caller_e164`` since ``since`` (blocking).

    The scan is bounded by the ``call.started_at`` index (the window); ``caller`` is compared
    with every stored form of the number (:func:`caller_forms`), and each candidate is checked
    again as E.164, so ``06 12...`` and ``+336 12...`` are the same caller.

    Args:
        engine: The store.
        caller_e164: The number, E.164 (``callcenter.store.dossiers.normalize_phone``).
        since: Start of the window (naive datetimes are taken as UTC).
        exclude_sip_call_id: The call asking (its own row does not count).

    Returns:
        The latest matching ``started_at`` (UTC), or None.
    """
    forms = caller_forms(caller_e164)
    if not forms:
        return None
    stmt = (
        select(_CALL.c.caller, _CALL.c.started_at)
        .where(_CALL.c.started_at >= _utc(since), _CALL.c.caller.in_(forms))
        .order_by(_CALL.c.started_at.desc())
        .limit(20)
    )
    if exclude_sip_call_id is not None:
        stmt = stmt.where(_CALL.c.sip_call_id != exclude_sip_call_id)
    with engine.connect() as conn:
        for row in conn.execute(stmt):
            if row.caller is not None and normalize_phone(row.caller) == caller_e164:
                return _utc(row.started_at)
    return None


async def show_call(database_url: str, sip_call_id: str) -> dict[str, Any] | None:
    """Read one call's trail without a running service (for ``callcenter calls show``).

    Args:
        database_url: The store URL (see :func:`callcenter.store.db.resolve_database_url`).
        sip_call_id: The call's SIP Call-ID.

    Returns:
        The JSON-ready trail as :meth:`CallTrail.get_call` returns it, or None if the call (or
        the store itself) does not exist.
    """

    def _read() -> dict[str, Any] | None:
        engine = db.make_engine(database_url)
        try:
            if not db.has_schema(engine):
                return None
            return read_call(engine, sip_call_id)
        finally:
            engine.dispose()

    return await asyncio.to_thread(_read)


async def show_calls(database_url: str, limit: int = 50) -> list[dict[str, Any]]:
    """Read the latest calls without a running service (for ``callcenter calls list``)."""

    def _read() -> list[dict[str, Any]]:
        engine = db.make_engine(database_url)
        try:
            if not db.has_schema(engine):
                return []
            return read_calls(engine, limit)
        finally:
            engine.dispose()

    return await asyncio.to_thread(_read)


def _summary(row: RowMapping) -> dict[str, Any]:
    return {
        name: _iso(row[name]) if isinstance(row[name], datetime) else row[name]
        for name in _SUMMARY_COLUMNS
    }


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    # SQLite gives back naive datetimes: everything is stored in UTC.
    return None if value is None else _utc(value).isoformat()


def _jsonable(value: object) -> JsonValue:
    """Make ``value`` storable as JSON on SQLite and PostgreSQL (JSONB refuses NaN)."""
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return str(value)


def _describe(exc: BaseException) -> str:
    """Describe a database error without statement parameters (they may hold personal data)."""
    if isinstance(exc, sa_exc.DBAPIError):
        lines = str(exc.orig).strip().splitlines()
        return f"{type(exc.orig).__name__}: {lines[0][:200] if lines else ''}"
    return type(exc).__name__
