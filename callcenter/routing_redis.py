"""The Redis routing backend: several nodes, one routing state, by state machine replication.

Why it is correct
-----------------
:class:`routing.Router` is a deterministic state machine: its decisions depend only on the
ordered list of events it was given (every event carries its own ``at``; the router's clock is
``max(event.at, previous now)``; nothing reads a clock). So if every node applies **the same
events in the same order**, every node holds the same state and takes the same decisions. This
is state machine replication (Lamport, "Time, Clocks, and the Ordering of Events in a
Distributed System", 1978; Schneider, "Implementing Fault-Tolerant Services Using the State
Machine Approach: A Tutorial", ACM Computing Surveys 22(4), 1990), with one Redis Stream as the
totally ordered log:

- every event of every node is appended with one ``XADD`` to ``{prefix}:events`` (the entry
  holds the node id and the JSON of the event, see :mod:`callcenter.routing_codec`);
- each node runs one reader task (``XREAD BLOCK`` from its last id) that applies the entries in
  stream order to its local replica router, and hands the decisions to its local listeners;
- :meth:`RedisRoutingService.submit` appends and returns the decisions of *its* entry once the
  reader has applied it (a :class:`routing.RoutingError` of the replica is raised to it). The
  wait is bounded: a reader that stops (a bug, a cancellation) or an entry not applied within
  ``4 × op_timeout_s`` (checked by a watchdog task) counts as Redis unavailable (local mode,
  below), which applies the waiting submissions locally.

Atomic assignment follows: an offer is a decision, and decisions are a function of the log
prefix. Two nodes cannot give one agent two calls, because there is only one sequence of
events and the router never offers a reserved agent a second call (engine Rule 4); every
replica agrees on which agent got which call (``tests/test_routing_redis.py`` checks both
replicas' decision streams under concurrent submissions). No lock, no Lua, no compare-and-set:
the order Redis gives the ``XADD`` commands is the only coordination.

Timers: when a replica's ``get_timer()`` is due, the node holding a short ``ticker`` lease
(``SET NX PX``) appends ``Tick(now)``; others retry later and take the lease when its holder
stops renewing it. Duplicated ticks are harmless: a tick at or before the router's clock fires
nothing, and timers fire at their own deadline whatever the tick's time (engine Rule 5).

Ownership: the node that appended a ``CallQueued`` owns the call, the node that appended an
``AgentLoggedIn`` owns the agent; an explicit ``own`` entry moves items to its node (adoption
of a dead node's callbacks, reconciliation). Global listeners (metrics, trail, KPIs) only get
the decisions owned locally (about a call: its owner; else about an agent: its owner; else the
node that appended the entry), so a counter is not multiplied by the number of nodes. A call's
owner is forgotten after its last decision (``WrapUpEnded``, ``CallAbandoned``...) only if the
router no longer holds the call: a blind transfer queues the same call id again while its first
agent is still in wrap-up.

Node liveness: each node refreshes ``{prefix}:node:{id}`` (TTL ``node_ttl_s``) every third of
the TTL. A node that sees the key of an item owner gone, and wins ``SET NX`` on
``{prefix}:reaped:{id}``, adopts the dead node's items (an ``own`` entry), then appends
``AgentLoggedOut`` for its agents and ``CallerHungUp`` for its calls — except calls kept for a
callback (``CallbackKept``, or entries with ``callback=True``), which stay queued, now owned
by the reaper. A node starting with an id that still owns items (a restart) reaps its previous
incarnation the same way. Callback entries are also kept in the hash ``{prefix}:callbacks``
(call id to the QueuedCall JSON), written by the owner on ``CallbackKept`` or a callback
``CallQueued`` and removed when the call leaves the queue; when the stream was trimmed
(``XINFO STREAM`` says more entries were added than it holds) a starting node re-queues those
the replay did not restore.

Limits (honest): the stream is capped by ``XADD MAXLEN ~ max_events``. A node replays the whole
stream at start-up, so start-up time grows with the stream (about 100 000 entries/s), and once
trimmed, a starting node misses what happened before the oldest entry (agents logged in before
it are unknown until they log in again; callbacks come back from the hash). A reader that falls
more than ``max_events`` behind diverges. A snapshot entry would lift both limits; not done.

Redis unavailable (connection error or timeout on any operation): the node switches to *local
mode*: a fresh local router rebuilt from what it owns (its logged-in agents, available or
paused; agents in a call are logged in again when that call ends; its waiting and ringing calls
re-queued with their original ``joined_at`` and kept-callback flag), and goes on routing its own
calls to its own agents; :meth:`submit` applies locally. A background task retries Redis with
back-off; on success it *reconciles*: it replays the shared stream into a fresh replica, appends
what brings the shared state in line with its local truth for its own items (agent log-outs and
log-ins, ``CallQueued`` for its local waiting calls the shared state lacks, ``CallCancelled``
or ``CallerHungUp`` for shared calls of this node that ended locally, an ``own`` entry for the
rest), then follows the stream again. Other nodes may have offered this node's waiting calls
meanwhile (its calls never rang those agents, who would be paused "non réponse" at the ring
timeout): each such offer, unless it was already there at the switch, is withdrawn
(``CallCancelled``: the agent is freed without penalty) and the call queued again with its
original ``QueuedCall`` (same ``joined_at``, so the same place); the new offer is read by this
node, so its call rings it. Reconciliation entries are marked ``r=1``: their ``CallRemoved``/
``CallEnqueued``/``CallKeptForCallback`` are not handed to listeners (a re-offered call neither
left nor joined; the node's listeners heard its calls join, leave or keep their place in local
mode, and its metrics would count them twice) — except the return of a call another node ended
meanwhile (having reaped this node), which is a join again. A node only reaps
others after a full TTL of continuous connection, so nodes coming back from the same Redis
outage do not reap each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

import routing
from callcenter.routing_codec import (
    CodecError,
    decode_event,
    decode_queued_call,
    encode_event,
    encode_queued_call,
)
from callcenter.routing_service import Listener, Listeners, decision_call_id

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_REDIS_DOWN = (RedisError, OSError, TimeoutError)
"""What "Redis is unavailable" looks like (connection refused or reset, timeouts)."""

_TERMINAL = (
    routing.CallAbandoned,
    routing.CallRemoved,
    routing.CallRejectedClosed,
    routing.CallRejectedQueueFull,
    routing.CallMaxWaitReached,
    routing.WrapUpEnded,
)
"""Decisions after which nothing more is said about a call (its owner can be forgotten)."""

_CALLBACK_GONE = (
    routing.CallAnswered,
    routing.CallAbandoned,
    routing.CallRemoved,
    routing.CallRejectedClosed,
    routing.CallRejectedQueueFull,
    routing.CallMaxWaitReached,
)
"""Decisions after which a callback entry is no longer in the queue."""

_REOFFER_QUIET = (routing.CallRemoved, routing.CallEnqueued, routing.CallKeptForCallback)
"""Decisions of a reconciliation entry (see ``_reconcile``) not handed to listeners: the call
neither left nor joined the queue (it was only offered again), or this node's listeners heard it
join, leave or keep its place in local mode already."""

_REOFFER_FIELD = "r"
"""Stream entry field marking a reconciliation entry (value ``"1"``); older readers ignore it."""

_MAX_CALL_OWNERS = 200_000
"""Call owners remembered (oldest forgotten first): a bound for calls whose end was missed."""


def _heard_locally(event: routing.Event, loud: set[str]) -> bool:
    """Whether a node's listeners heard in local mode what a reconciliation ``event`` tells.

    All but the return of a call another node ended meanwhile (``loud``: it reaped this node,
    and counted that end): its ``CallQueued`` and ``CallbackKept`` are a join again.
    """
    if isinstance(event, routing.CallQueued):
        return event.call.call_id not in loud
    if isinstance(event, routing.CallbackKept):
        return event.call_id not in loud
    return True


def _as_kept(call: routing.QueuedCall) -> routing.QueuedCall:
    """A kept place queued again: as a callback entry, so that no maximum wait drops it."""
    return call if call.callback else dataclasses.replace(call, callback=True)


@dataclass(frozen=True, slots=True)
class RedisRoutingConfig:
    """Where and how the nodes share their routing state."""

    url: str = "redis://127.0.0.1:6379/0"
    """Redis URL (``redis://host:port/db``)."""
    prefix: str = "callcenter:routing"
    """Prefix of every key (one prefix per service; tests use one per test)."""
    node_id: str = ""
    """This node's id, unique among the nodes sharing the prefix; empty: a random one."""
    node_ttl_s: float = 15.0
    """A node whose heartbeat key is older than this is dead: its agents are logged out."""
    max_events: int = 1_000_000
    """Approximate cap of the stream (``XADD MAXLEN ~``); see the module's limits."""
    op_timeout_s: float = 1.0
    """Timeout of one Redis operation; beyond it the node switches to local mode."""
    tick_lease_s: float = 2.0
    """Lease of the node that appends timer ticks."""
    read_count: int = 1000
    """Entries read at most per ``XREAD``."""
    max_backoff_s: float = 5.0
    """Longest wait between two reconnection attempts in local mode."""
    max_connections: int = 16
    """Connections to Redis (the reader holds one; submits wait for a free one)."""


class _Mode:
    SHARED = "shared"
    LOCAL = "local"


@dataclass(slots=True)
class _Pending:
    event: routing.Event
    future: asyncio.Future[list[routing.Decision]]
    since: float = 0.0
    """``time.monotonic()`` when submitted (the watchdog's bound, see ``_watch_loop``)."""


class _Replica:
    """One router fed by the stream, and who owns what (derived from the same entries)."""

    def __init__(self, config: routing.RoutingConfig) -> None:
        self.router = routing.Router(config=config)
        self.call_owner: OrderedDict[str, str] = OrderedDict()
        self.agent_owner: dict[str, str] = {}
        self.kept: set[str] = set()
        self.last_id = "0-0"

    def apply(
        self, node: str, kind: str, payload: str
    ) -> tuple[list[routing.Decision], routing.Event | None]:
        """Apply one stream entry; raises RoutingError/CodecError for an entry that is a no-op."""
        if kind == "own":
            data = json.loads(payload)
            for call_id in data.get("calls", ()):
                self.call_owner[call_id] = node
            for agent_id in data.get("agents", ()):
                self.agent_owner[agent_id] = node
            return [], None
        event = decode_event(payload)
        decisions = self.router.handle(event)
        if isinstance(event, routing.CallQueued):
            self.call_owner[event.call.call_id] = node
            self.call_owner.move_to_end(event.call.call_id)
            while len(self.call_owner) > _MAX_CALL_OWNERS:
                self.call_owner.popitem(last=False)
        elif isinstance(event, routing.AgentLoggedIn):
            self.agent_owner[event.agent_id] = node
        for decision in decisions:
            if isinstance(decision, routing.CallKeptForCallback):
                self.kept.add(decision.call_id)
            elif isinstance(decision, _CALLBACK_GONE):
                self.kept.discard(decision.call_id)
        return decisions, event

    def owner(self, decision: routing.Decision, entry_node: str) -> str:
        call_id = decision_call_id(decision)
        if call_id is not None and call_id in self.call_owner:
            return self.call_owner[call_id]
        agent_id = getattr(decision, "agent_id", None)
        if agent_id is not None and agent_id in self.agent_owner:
            return self.agent_owner[agent_id]
        return entry_node

    def forget(self, decisions: list[routing.Decision]) -> None:
        """Forget the owner of calls that ended, unless the router holds the call again.

        A blind transfer queues the same call id again while its first agent is in wrap-up:
        the end of that wrap-up (``WrapUpEnded``) must not forget the waiting call's owner.
        """
        for decision in decisions:
            if isinstance(decision, _TERMINAL) and self.router.call_phase(decision.call_id) is None:
                self.call_owner.pop(decision.call_id, None)

    def is_callback(self, call_id: str) -> bool:
        if call_id in self.kept:
            return True
        try:
            return self.router.waiting_call(call_id).callback
        except KeyError:
            return False

    def owned(self, node: str) -> tuple[list[str], list[str]]:
        """Return the live calls and logged-in agents this node owns."""
        calls = [c for c, n in self.call_owner.items() if n == node and self.router.call_phase(c)]
        agents = [
            a
            for a, n in self.agent_owner.items()
            if n == node
            and a in self.router.agents
            and self.router.agents[a].state is not routing.AgentState.OFFLINE
        ]
        return calls, agents


class RedisRoutingService:
    """Routing shared by several nodes through one Redis; same interface as RoutingService.

    Args:
        config: The queues, skills and rules (identical on every node).
        redis_config: Where the shared state lives and this node's id.
        clock: POSIX time in seconds.
    """

    def __init__(
        self,
        *,
        config: routing.RoutingConfig,
        redis_config: RedisRoutingConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.redis_config = redis_config
        self.node_id = redis_config.node_id or uuid.uuid4().hex[:12]
        self._clock = clock
        self._listeners = Listeners()
        prefix = redis_config.prefix
        self._stream = f"{prefix}:events"
        self._node_key = f"{prefix}:node:{self.node_id}"
        self._ticker_key = f"{prefix}:ticker"
        self._callbacks_key = f"{prefix}:callbacks"
        timeout = redis_config.op_timeout_s
        self._block_ms = max(10, int(timeout * 500))
        # How long a submission may wait for its entry to be sent and applied by the reader;
        # beyond it the stream is taken as unusable (as if Redis were down): local mode.
        self._apply_limit_s = 4 * timeout
        # A bounded pool where a command waits for a free connection (up to the op timeout):
        # many concurrent submits must queue, not fail as if Redis were down.
        pool = aioredis.BlockingConnectionPool.from_url(
            redis_config.url,
            max_connections=redis_config.max_connections,
            timeout=timeout,
            decode_responses=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        self._replica = _Replica(config)
        self._local: routing.Router | None = None
        self._mode = _Mode.SHARED
        self._pending: dict[str, _Pending] = {}
        self._token_prefix = uuid.uuid4().hex[:8]
        self._token_seq = 0
        self._deferred_login: dict[str, routing.AgentLoggedIn] = {}
        self._offers_at_switch: dict[str, tuple[str, float]] = {}
        self._local_calls: set[str] = set()
        self._local_kept: set[str] = set()
        self._calls_at_switch: set[str] = set()
        """This node's calls the shared state held when it went local (see ``_reconcile``)."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._ticking = False
        self._connected_since = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._tick_task: asyncio.Task[None] | None = None
        self._writes: asyncio.Queue[tuple[str, str, str | None]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._switched = asyncio.Event()
        self._switched.set()
        self._outbox: list[dict[Any, Any]] = []
        self._outbox_ready = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False
        self._generation = 0
        self._stopping = asyncio.Event()
        self.mode_changes = 0
        """How many times the node switched between shared and local mode (tests, metrics)."""

    # -- public interface --------------------------------------------------------------------

    @property
    def router(self) -> routing.Router:
        """The router to read (the shared replica, or the local one in local mode)."""
        return self._local if self._local is not None else self._replica.router

    @property
    def mode(self) -> str:
        """``"shared"`` or ``"local"``."""
        return self._mode

    def now(self) -> float:
        """The routing clock (POSIX seconds)."""
        return self._clock()

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Receive the decisions owned by this node; returns a function that stops it."""
        return self._listeners.listen(listener)

    def listen_call(self, call_id: str, listener: Listener) -> Callable[[], None]:
        """Receive the decisions about one call; returns a function that stops it."""
        return self._listeners.listen_call(call_id, listener)

    def listen_agent(self, agent_id: str, listener: Listener) -> Callable[[], None]:
        """Receive the decisions about one agent; returns a function that stops it."""
        return self._listeners.listen_agent(agent_id, listener)

    async def start(self) -> None:
        """Replay the shared stream, reap a previous incarnation of this node, then follow.

        If Redis is unreachable the node starts in local mode (empty) and keeps retrying.
        """
        self._writer = self._spawn(self._write_loop(), "routing-redis-writer")
        self._sender = self._spawn(self._send_loop(), "routing-redis-sender")
        self._watchdog = self._spawn(self._watch_loop(), "routing-redis-watchdog")
        try:
            await self._op(self._redis.set(self._node_key, "1", px=self._ttl_ms()))
            self._replica = await self._replay()
            await self._restore_callbacks()
            await self._reap(self.node_id, self.node_id)
        except _REDIS_DOWN as exc:
            self._enter_local(exc)
            return
        self._connected_since = time.monotonic()
        self._follow()

    async def submit(self, event: routing.Event) -> list[routing.Decision]:
        """Append one event to the shared log; return its decisions once applied here.

        In local mode the event is applied at once to the local router.

        Raises:
            routing.RoutingError: the event is invalid; no router changed.
        """
        await self._switched.wait()
        if self._mode == _Mode.LOCAL:
            return self._submit_local(event)
        before = self._deferred_logins_for(event)
        if before is not None:
            await self._submit_shared(before)
        return await self._submit_shared(event)

    def close(self) -> None:
        """Stop the timer and the tasks (without waiting; prefer :meth:`aclose`)."""
        self._closed = True
        self._stopping.set()
        self._cancel_timer()
        for task in list(self._tasks):
            if task is not self._reader and task is not self._heartbeat:
                task.cancel()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(ConnectionError("routing service closed"))
        self._pending.clear()
        self._outbox = []

    async def aclose(self) -> None:
        """Stop everything and close the connections.

        The node's heartbeat key is left to expire: the other nodes then reap it after the
        TTL, as for a crash (an orderly shutdown logs its agents out first).
        """
        self.close()
        tasks = list(self._tasks)
        if tasks:
            limit = self.redis_config.op_timeout_s + self._block_ms / 1000
            _done, stuck = await asyncio.wait(tasks, timeout=limit)
            for task in stuck:
                task.cancel()
        with contextlib.suppress(*_REDIS_DOWN):
            await asyncio.wait_for(
                self._redis.aclose(close_connection_pool=True), self.redis_config.op_timeout_s
            )

    # -- shared mode ------------------------------------------------------------------------

    async def _submit_shared(self, event: routing.Event) -> list[routing.Decision]:
        """Append one event; return its decisions once the reader applied it.

        The wait is bounded: a send error switches to local mode (the sender does), which
        applies the pending events locally; an entry not applied within ``4 × op_timeout_s``
        (a reader or sender that died of a bug, an entry that never comes back) does too
        (the reader's end and the watchdog).
        """
        self._token_seq += 1
        token = f"{self._token_prefix}:{self._token_seq}"
        future: asyncio.Future[list[routing.Decision]] = asyncio.get_running_loop().create_future()
        self._pending[token] = _Pending(event, future, time.monotonic())
        self._outbox.append({"n": self.node_id, "k": "e", "t": token, "p": encode_event(event)})
        self._outbox_ready.set()
        return await future

    async def _send_loop(self) -> None:
        """Send the queued submissions: one XADD each, all waiting ones in one pipeline.

        Concurrent submits share a round trip instead of each waiting for a connection; a
        node's own submissions keep their order in the stream. A failure switches to local
        mode, unless the mode changed meanwhile (the batch is then already applied locally).
        """
        while not self._closed:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            batch, self._outbox = self._outbox, []
            if not batch:
                continue
            changes = self.mode_changes
            pipe = self._redis.pipeline(transaction=False)
            for fields in batch:
                _ = pipe.xadd(
                    self._stream, fields, maxlen=self.redis_config.max_events, approximate=True
                )
            try:
                await self._op(pipe.execute())
            except _REDIS_DOWN as exc:
                if self.mode_changes == changes:
                    self._enter_local(exc)

    async def _watch_loop(self) -> None:
        """Switch to local mode when the oldest pending submission waited too long."""
        period = self.redis_config.op_timeout_s
        while not self._closed:
            await asyncio.sleep(period)
            if self._mode != _Mode.SHARED or not self._pending:
                continue
            oldest = next(iter(self._pending.values()))
            if time.monotonic() - oldest.since > self._apply_limit_s:
                self._enter_local(TimeoutError("routing: stream entry not applied in time"))

    def _xadd(self, fields: dict[Any, Any]) -> Awaitable[Any]:
        return self._redis.xadd(
            self._stream, fields, maxlen=self.redis_config.max_events, approximate=True
        )

    def _follow(self) -> None:
        self._generation += 1
        generation = self._generation
        self._stopping = asyncio.Event()
        if self._sender is None or self._sender.done():
            self._sender = self._spawn(self._send_loop(), "routing-redis-sender")
        if self._writer is None or self._writer.done():
            self._writer = self._spawn(self._write_loop(), "routing-redis-writer")
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = self._spawn(self._watch_loop(), "routing-redis-watchdog")
        self._reader = self._spawn(self._read_loop(generation), "routing-redis-reader")
        self._reader.add_done_callback(lambda task: self._reader_ended(task, generation))
        self._heartbeat = self._spawn(
            self._heartbeat_loop(self._generation), "routing-redis-heartbeat"
        )
        self._arm()

    def _reader_ended(self, task: asyncio.Task[None], generation: int) -> None:
        """A reader that stops while still current (it failed, or was cancelled): local mode.

        Without a reader no submission would ever get its entry applied.
        """
        if self._closed or generation != self._generation:
            return  # stopped on purpose (mode change, close)
        if task.cancelled():
            self._enter_local(ConnectionError("routing reader cancelled"))
            return
        exc = task.exception()
        self._enter_local(exc if exc is not None else ConnectionError("routing reader stopped"))

    async def _read_loop(self, generation: int) -> None:
        # Not cancelled from outside: it stops by itself within one XREAD BLOCK when the mode
        # changes or the service closes (cancelling redis-py mid-read can leave the task stuck).
        try:
            while self._generation == generation and not self._closed:
                replies: Any = await self._redis.xread(
                    {self._stream: self._replica.last_id},
                    count=self.redis_config.read_count,
                    block=self._block_ms,
                )
                if self._generation != generation or self._closed:
                    return
                if isinstance(replies, dict):  # RESP3
                    replies = list(replies.items())
                for _stream, entries in replies or ():
                    for entry_id, fields in entries:
                        self._apply_entry(entry_id, fields)
                self._arm()
        except _REDIS_DOWN as exc:
            self._enter_local(exc)

    def _apply_entry(self, entry_id: str, fields: dict[str, str]) -> None:
        replica = self._replica
        replica.last_id = entry_id
        node = fields.get("n", "")
        token = fields.get("t", "")
        pending = self._pending.pop(token, None) if node == self.node_id else None
        try:
            decisions, _event = replica.apply(node, fields.get("k", "e"), fields.get("p", ""))
        except (routing.RoutingError, CodecError, ValueError) as exc:
            if pending is not None:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            elif not isinstance(exc, routing.RoutingError):
                logger.warning("routing: skipped a bad stream entry %s: %s", entry_id, exc)
            return
        except BaseException:
            # The reader dies with this (see _reader_ended): the submission stays pending, so
            # the switch to local mode applies it locally instead of leaving it unanswered.
            if pending is not None:
                self._pending[token] = pending
            raise
        mine = self.node_id

        def owned(decision: routing.Decision) -> bool:
            return replica.owner(decision, node) == mine

        visible = decisions
        if fields.get(_REOFFER_FIELD) == "1":
            visible = [d for d in decisions if not isinstance(d, _REOFFER_QUIET)]
        try:
            self._listeners.dispatch(visible, owned)
            self._persist_callbacks(decisions, owned)
            replica.forget(decisions)
        finally:
            if pending is not None and not pending.future.done():
                pending.future.set_result(decisions)  # applied: its decisions stand

    def _persist_callbacks(
        self, decisions: list[routing.Decision], owned: Callable[[routing.Decision], bool]
    ) -> None:
        router = self._replica.router
        for decision in decisions:
            if not owned(decision):
                continue
            if isinstance(decision, routing.CallKeptForCallback) or (
                isinstance(decision, routing.CallEnqueued)
                and self._replica.is_callback(decision.call_id)
            ):
                try:
                    call = router.waiting_call(decision.call_id)
                except KeyError:
                    continue
                self._writes.put_nowait(("hset", decision.call_id, encode_queued_call(call)))
            elif isinstance(decision, _CALLBACK_GONE):
                self._writes.put_nowait(("hdel", decision.call_id, None))

    async def _write_loop(self) -> None:
        """Callback hash writes, off the submit path; lost writes are logged, not retried."""
        while True:
            op, call_id, value = await self._writes.get()
            try:
                if op == "hset" and value is not None:
                    await self._op(self._redis.hset(self._callbacks_key, call_id, value))
                else:
                    await self._op(self._redis.hdel(self._callbacks_key, call_id))
            except _REDIS_DOWN as exc:
                logger.warning("routing: callback hash %s failed: %s", op, type(exc).__name__)

    async def _replay(self) -> _Replica:
        """Read the whole stream (pages of XRANGE) into a fresh replica, without dispatching."""
        replica = _Replica(self.config)
        start = "-"
        while True:
            page: Any = await self._op(self._redis.xrange(self._stream, min=start, count=5000))
            if not page:
                break
            for entry_id, fields in page:
                replica.last_id = entry_id
                try:
                    decisions, _ = replica.apply(
                        fields.get("n", ""), fields.get("k", "e"), fields.get("p", "")
                    )
                except (routing.RoutingError, CodecError, ValueError):
                    continue
                except Exception as exc:
                    # Every node skips the same entry the same way: replicas stay identical.
                    logger.warning("routing: replay skipped entry %s: %r", entry_id, exc)
                    continue
                replica.forget(decisions)
            start = "(" + page[-1][0]
        return replica

    async def _restore_callbacks(self) -> None:
        """Re-queue the persisted callbacks a trimmed stream lost (see the module docstring)."""
        if not await self._op(self._redis.exists(self._stream)):
            return
        info = await self._op(self._redis.xinfo_stream(self._stream))
        if int(info.get("entries-added", 0)) <= int(info.get("length", 0)):
            return
        stored: Any = await self._op(self._redis.hgetall(self._callbacks_key))
        now = self._clock()
        for call_id, text in stored.items():
            if self._replica.router.call_phase(call_id) is not None:
                continue
            try:
                call = decode_queued_call(text)
            except CodecError:
                continue
            await self._append(routing.CallQueued(_as_kept(call), now))
            await self._append(routing.CallbackKept(call_id, now))

    async def _append(self, event: routing.Event) -> None:
        fields = {"n": self.node_id, "k": "e", "p": encode_event(event)}
        await self._op(self._xadd(fields))

    async def _append_own(self, calls: list[str], agents: list[str]) -> None:
        if calls or agents:
            payload = json.dumps({"calls": calls, "agents": agents})
            await self._op(self._xadd({"n": self.node_id, "k": "own", "p": payload}))

    # -- liveness --------------------------------------------------------------------------

    def _ttl_ms(self) -> int:
        return max(1, int(self.redis_config.node_ttl_s * 1000))

    async def _heartbeat_loop(self, generation: int) -> None:
        period = self.redis_config.node_ttl_s / 3
        try:
            while self._generation == generation and not self._closed:
                await self._op(self._redis.set(self._node_key, "1", px=self._ttl_ms()))
                if time.monotonic() - self._connected_since >= self.redis_config.node_ttl_s:
                    await self._reap_dead()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), period)
        except _REDIS_DOWN as exc:
            self._enter_local(exc)

    async def _reap_dead(self) -> None:
        if self._mode != _Mode.SHARED:
            return
        replica = self._replica
        candidates = {
            owner
            for call_id, owner in replica.call_owner.items()
            if owner != self.node_id and replica.router.call_phase(call_id) is not None
        }
        candidates.update(
            owner
            for agent_id, owner in replica.agent_owner.items()
            if owner != self.node_id
            and replica.router.agents[agent_id].state is not routing.AgentState.OFFLINE
        )
        for node in sorted(candidates):
            if not await self._op(self._redis.exists(f"{self.redis_config.prefix}:node:{node}")):
                await self._reap(node, self.node_id)

    async def _reap(self, dead: str, by: str) -> None:
        """Adopt a dead node's items, log its agents out, hang up its calls but callbacks."""
        calls, agents = self._replica.owned(dead)
        if not calls and not agents:
            return
        if dead != self.node_id:
            key = f"{self.redis_config.prefix}:reaped:{dead}"
            if not await self._op(self._redis.set(key, by, nx=True, px=2 * self._ttl_ms())):
                return
        logger.warning(
            "routing: node %s is gone; %d agent(s) logged out, %d call(s) adopted or ended",
            dead,
            len(agents),
            len(calls),
        )
        now = self._clock()
        await self._append_own(calls, agents)
        for agent_id in agents:
            await self._append(routing.AgentLoggedOut(agent_id, now))
        for call_id in calls:
            if not self._replica.is_callback(call_id):
                await self._append(routing.CallerHungUp(call_id, now))

    # -- timers ------------------------------------------------------------------------------

    def _arm(self) -> None:
        if self._closed:
            return
        deadline = self.router.get_timer()
        if deadline == self._timer_at and self._timer is not None:
            return
        self._cancel_timer()
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _arm_retry(self, delay: float) -> None:
        self._cancel_timer()
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        if self._local is not None:
            decisions = self._local.handle_timer(self._clock())
            self._listeners.dispatch(decisions)
            self._arm()
        elif not self._ticking:
            self._ticking = True
            self._tick_task = self._spawn(self._tick(), "routing-redis-tick")

    _LEASE_SCRIPT = """
    local holder = redis.call('GET', KEYS[1])
    if (not holder) or holder == ARGV[1] then
        redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        return 1
    end
    return 0
    """

    async def _tick(self) -> None:
        lease = self.redis_config.tick_lease_s
        try:
            holder = await self._op(
                self._redis.eval(
                    self._LEASE_SCRIPT, 1, self._ticker_key, self.node_id, int(lease * 1000)
                )
            )
            if holder:
                await self._append(routing.Tick(self._clock()))
        except _REDIS_DOWN as exc:
            self._ticking = False
            self._enter_local(exc)
            return
        self._ticking = False
        due = self.router.get_timer()
        if due is not None and due <= self._clock():
            # Not applied yet (or another node ticks): look again; the reader re-arms sooner
            # when it applies a tick.
            self._arm_retry(lease / 2)
        else:
            self._arm()

    # -- local mode --------------------------------------------------------------------------

    def _enter_local(self, exc: BaseException) -> None:
        """Switch to a local router rebuilt from this node's items (idempotent)."""
        if self._mode == _Mode.LOCAL or self._closed:
            return
        self._mode = _Mode.LOCAL
        self.mode_changes += 1
        logger.warning("routing: Redis unavailable (%s): local mode", type(exc).__name__)
        self._generation += 1  # the reader and the heartbeat stop by themselves
        self._stopping.set()
        shared = self._replica
        local = routing.Router(config=self.config)
        now = max(self._clock(), shared.router.now or 0.0)
        calls, agents = shared.owned(self.node_id)
        self._deferred_login = {}
        for agent_id in agents:
            agent = shared.router.agents[agent_id]
            login = routing.AgentLoggedIn(
                agent_id,
                dict(agent.skills),
                now,
                agent.pause_reason if agent.state is routing.AgentState.PAUSED else None,
            )
            if agent.state in (routing.AgentState.AVAILABLE, routing.AgentState.PAUSED):
                local.handle(login)
            else:
                self._deferred_login[agent_id] = login
        self._local_calls = set()
        self._local_kept = set()
        self._calls_at_switch = set(calls)
        # The offers of this node's calls known now (its calls ring them): reconciling keeps
        # these, and makes again those the other nodes made meanwhile (see _reconcile).
        self._offers_at_switch = {}
        for call_id in calls:
            offer = _offer_of(shared.router, call_id)
            if offer is not None:
                self._offers_at_switch[call_id] = offer
        rebuilt: list[routing.Decision] = []
        for call_id in calls:
            if shared.router.call_phase(call_id) == "connected":
                continue
            call = shared.router.waiting_call(call_id)
            if call_id in shared.kept:
                call = _as_kept(call)
            rebuilt.extend(local.handle(routing.CallQueued(call, now)))
            self._local_calls.add(call_id)
            if call_id in shared.kept:
                local.handle(routing.CallbackKept(call_id, now))
                self._local_kept.add(call_id)
        self._local = local
        # A rebuilt call is not a new join: only what changed (offers) goes out.
        self._listeners.dispatch(
            [
                d
                for d in rebuilt
                if not isinstance(d, routing.CallEnqueued | routing.AgentStateChanged)
            ]
        )
        self._outbox = []  # applied locally below: these must never reach the stream
        for token, pending in list(self._pending.items()):
            del self._pending[token]
            if pending.future.done():
                continue
            try:
                pending.future.set_result(self._submit_local(pending.event))
            except routing.RoutingError as error:
                pending.future.set_exception(error)
        self._arm()
        self._reconnector = self._spawn(self._reconnect_loop(), "routing-redis-reconnect")

    def _submit_local(self, event: routing.Event) -> list[routing.Decision]:
        assert self._local is not None
        local = self._local
        before = self._deferred_logins_for(event)
        decisions: list[routing.Decision] = []
        if before is not None:
            decisions.extend(local.handle(before))
        if isinstance(event, routing.AgentLoggedOut) and event.agent_id not in local.agents:
            return decisions
        out = local.handle(event)
        decisions.extend(out)
        if isinstance(event, routing.CallQueued):
            self._local_calls.add(event.call.call_id)
        for decision in out:
            if isinstance(decision, routing.CallKeptForCallback):
                self._local_kept.add(decision.call_id)
        self._listeners.dispatch(decisions)
        self._arm()
        return decisions

    def _deferred_logins_for(self, event: routing.Event) -> routing.AgentLoggedIn | None:
        """An agent who was in a call when the mode changed is logged in when it ends."""
        agent_id = getattr(event, "agent_id", None)
        if agent_id is None or agent_id not in self._deferred_login:
            return None
        login = self._deferred_login.pop(agent_id)
        if isinstance(event, routing.AgentLoggedIn | routing.AgentLoggedOut):
            return None
        return dataclasses.replace(login, at=event.at)

    async def _reconnect_loop(self) -> None:
        delay = min(0.2, self.redis_config.max_backoff_s)
        while True:
            await asyncio.sleep(delay)
            try:
                await self._op(self._redis.ping())
                await self._reconcile()
                return
            except _REDIS_DOWN as exc:
                logger.info("routing: Redis still unavailable (%s)", type(exc).__name__)
                self._switched.set()
                delay = min(delay * 2, self.redis_config.max_backoff_s)
            except Exception:
                # A bug must not leave submissions waiting for a switch that never comes.
                logger.exception("routing: reconciliation failed; retrying")
                self._switched.set()
                delay = min(delay * 2, self.redis_config.max_backoff_s)

    async def _reconcile(self) -> None:
        """Bring the shared state in line with this node's local truth, then follow it."""
        local = self._local
        assert local is not None
        self._switched.clear()  # submits wait until the switch (they then go to the stream)
        await self._op(self._redis.set(self._node_key, "1", px=self._ttl_ms()))
        shared = await self._replay()
        now = max(self._clock(), shared.router.now or 0.0)
        offline = routing.AgentState.OFFLINE
        busy = (routing.AgentState.RESERVED, routing.AgentState.ON_CALL, routing.AgentState.WRAP_UP)
        events: list[routing.Event] = []
        claim_calls: list[str] = []
        claim_agents: list[str] = []
        # Agents first: logging out a shared agent that is in a call leaves no wrap-up behind.
        known = set(local.agents) | set(self._deferred_login)
        for agent_id, owner in shared.agent_owner.items():
            if owner == self.node_id:
                known.add(agent_id)
        for agent_id in sorted(known):
            theirs = shared.router.agents.get(agent_id)
            theirs_on = theirs is not None and theirs.state is not offline
            if theirs_on and shared.agent_owner.get(agent_id) not in (self.node_id, None):
                continue  # logged in on another node since
            mine = local.agents.get(agent_id)
            if agent_id in self._deferred_login:
                if theirs_on:
                    events.append(routing.AgentLoggedOut(agent_id, now))
                continue
            if mine is None or mine.state is offline:
                if theirs_on:
                    events.append(routing.AgentLoggedOut(agent_id, now))
                continue
            reason = mine.pause_reason if mine.state is routing.AgentState.PAUSED else None
            login = routing.AgentLoggedIn(agent_id, dict(mine.skills), now, reason)
            if mine.state in busy:
                self._deferred_login[agent_id] = login
                if theirs_on:
                    events.append(routing.AgentLoggedOut(agent_id, now))
                continue
            same = (
                theirs is not None
                and theirs.state is mine.state
                and theirs.pause_reason == mine.pause_reason
                and dict(theirs.skills) == dict(mine.skills)
            )
            if same:
                claim_agents.append(agent_id)
                continue
            if theirs_on:
                events.append(routing.AgentLoggedOut(agent_id, now))
            events.append(login)
        # Calls: this node's local waiting calls, and shared calls of this node it no longer has.
        # Told again to listeners: a call the shared state held at the switch and another node
        # ended meanwhile (it reaped this node): its end was counted there, so its return is a
        # join; a call that joined in local mode was heard then.
        loud: set[str] = set()
        for call_id in sorted(self._local_calls):
            phase = local.call_phase(call_id)
            theirs_phase = shared.router.call_phase(call_id)
            if phase in ("waiting", "offered"):
                if theirs_phase is None:
                    if call_id in self._calls_at_switch:
                        loud.add(call_id)
                    call = local.waiting_call(call_id)
                    if call_id in self._local_kept:
                        call = _as_kept(call)
                    events.append(routing.CallQueued(call, now))
                    if call_id in self._local_kept:
                        events.append(routing.CallbackKept(call_id, now))
                else:
                    claim_calls.append(call_id)
            elif theirs_phase in ("waiting", "offered"):
                events.append(routing.CallCancelled(call_id, now))
        mine_calls, _ = shared.owned(self.node_id)
        for call_id in mine_calls:
            if call_id in self._local_calls:
                continue
            if shared.router.call_phase(call_id) == "connected":
                events.append(routing.CallerHungUp(call_id, now))
            else:
                events.append(routing.CallCancelled(call_id, now))
        # Offers of this node's calls made by other nodes while it was local: its calls never
        # rang them, and the agent would be paused "non réponse" at the ring timeout. Withdraw
        # each (CallCancelled frees the agent without penalty) and queue the call again in its
        # place (its original QueuedCall, hence joined_at): the offer is made anew, read by
        # this node's reader, hence rung. The entries are marked so that listeners do not see
        # a removal and a new join. An agent logged out above releases its offer by itself.
        logged_out = {e.agent_id for e in events if isinstance(e, routing.AgentLoggedOut)}
        reoffers: list[routing.Event] = []
        for call_id in claim_calls:
            offer = _offer_of(shared.router, call_id)
            if offer is None or offer[0] in logged_out:
                continue
            if self._offers_at_switch.get(call_id) == offer:
                continue  # made before the switch: this node's call rings it
            reoffers.append(routing.CallCancelled(call_id, now))
            again = shared.router.waiting_call(call_id)
            if call_id in shared.kept or call_id in self._local_kept:
                again = _as_kept(again)
            reoffers.append(routing.CallQueued(again, now))
            if call_id in shared.kept or call_id in self._local_kept:
                reoffers.append(routing.CallbackKept(call_id, now))
        await self._append_own(claim_calls, claim_agents)
        if events or reoffers:
            pipe = self._redis.pipeline(transaction=False)
            # Quiet: what this node's listeners heard in local mode (a call that joined, left
            # or kept its place), and the re-offers (the call neither left nor joined).
            entries = [(e, _heard_locally(e, loud)) for e in events] + [(e, True) for e in reoffers]
            for event, quiet in entries:
                fields: dict[Any, Any] = {"n": self.node_id, "k": "e", "p": encode_event(event)}
                if quiet:
                    fields[_REOFFER_FIELD] = "1"
                _ = pipe.xadd(
                    self._stream,
                    fields,
                    maxlen=self.redis_config.max_events,
                    approximate=True,
                )
            await self._op(pipe.execute())
        # Switch: from now on the stream is the truth again.
        self._replica = shared
        self._local = None
        self._local_calls = set()
        self._local_kept = set()
        self._calls_at_switch = set()
        self._offers_at_switch = {}
        self._mode = _Mode.SHARED
        self.mode_changes += 1
        self._connected_since = time.monotonic()
        logger.warning(
            "routing: Redis back; reconciled with %d event(s), %d offer(s) made again",
            len(events),
            sum(isinstance(e, routing.CallCancelled) for e in reoffers),
        )
        self._cancel_timer()
        self._follow()
        self._switched.set()

    # -- helpers ---------------------------------------------------------------------------

    async def _op(self, awaitable: Awaitable[_T]) -> _T:
        return await asyncio.wait_for(awaitable, self.redis_config.op_timeout_s)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("routing: task %s failed", task.get_name(), exc_info=task.exception())


def _offer_of(router: routing.Router, call_id: str) -> tuple[str, float] | None:
    """Return the agent ringing for a call and since when, None if the call is not offered."""
    if router.call_phase(call_id) != "offered":
        return None
    for agent in router.agents.values():
        if agent.state is routing.AgentState.RESERVED and agent.call_id == call_id:
            return agent.id, agent.since
    return None
