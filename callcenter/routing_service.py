"""The routing engine in the running service: one :class:`routing.Router`, its timer, listeners.

The router is pure (``routing/engine.py``): events with a POSIX time in, decisions out, and
``get_timer()`` for the next instant something changes by itself. This adapter owns the clock
and the one asyncio timer, applies events in the order they arrive on the event loop (so the
router is never entered twice at once), and hands each decision to whoever listens for it:

- the :class:`~callcenter.call.Call` of the decision's ``call_id`` (waiting announcements, the
  agent leg, the bridge);
- the agent of its ``agent_id`` (the agent API's WebSocket);
- every global listener (trail, metrics, KPIs).

A listener that raises is logged and skipped: one broken WebSocket must not stop routing. This
is the in-memory, single-node state backend; the Redis backend (several nodes) keeps the same
interface.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

import routing

logger = logging.getLogger(__name__)

Listener = Callable[[routing.Decision], None]


class RoutingBackend(Protocol):
    """What calls and the agent API use, whatever the state backend (memory or Redis)."""

    config: routing.RoutingConfig

    @property
    def router(self) -> routing.Router:
        """The router to read (never to feed: use :meth:`submit`)."""
        ...

    def now(self) -> float:
        """The routing clock (POSIX seconds)."""
        ...

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Receive decisions (this node's, on Redis); returns a function that stops it."""
        ...

    def listen_call(self, call_id: str, listener: Listener) -> Callable[[], None]:
        """Receive the decisions about one call."""
        ...

    def listen_agent(self, agent_id: str, listener: Listener) -> Callable[[], None]:
        """Receive the decisions about one agent."""
        ...

    async def submit(self, event: routing.Event) -> list[routing.Decision]:
        """Apply one event in the backend's order; return its decisions."""
        ...

    async def start(self) -> None:
        """Start (replay the shared state, background tasks)."""
        ...

    async def aclose(self) -> None:
        """Stop."""
        ...


class Listeners:
    """Who listens to routing decisions: per call, per agent, and globally.

    Shared by the state backends (:class:`RoutingService`, the Redis one).
    """

    def __init__(self) -> None:
        self._by_call: dict[str, list[Listener]] = defaultdict(list)
        self._by_agent: dict[str, list[Listener]] = defaultdict(list)
        self._global: list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Receive every decision; returns a function that stops it."""
        self._global.append(listener)
        return lambda: self._global.remove(listener) if listener in self._global else None

    def listen_call(self, call_id: str, listener: Listener) -> Callable[[], None]:
        """Receive the decisions about one call; returns a function that stops it."""
        return self._add(self._by_call, call_id, listener)

    def listen_agent(self, agent_id: str, listener: Listener) -> Callable[[], None]:
        """Receive the decisions about one agent; returns a function that stops it."""
        return self._add(self._by_agent, agent_id, listener)

    @staticmethod
    def _add(table: dict[str, list[Listener]], key: str, listener: Listener) -> Callable[[], None]:
        table[key].append(listener)

        def remove() -> None:
            listeners = table.get(key)
            if listeners is not None and listener in listeners:
                listeners.remove(listener)
                if not listeners:
                    del table[key]

        return remove

    def dispatch(
        self,
        decisions: list[routing.Decision],
        to_global: Callable[[routing.Decision], bool] | None = None,
    ) -> None:
        """Hand each decision to its call's, its agent's and the global listeners.

        Args:
            decisions: The decisions, in order.
            to_global: Whether a decision goes to the global listeners (all when None).
        """
        for decision in decisions:
            targets = list(self._global) if to_global is None or to_global(decision) else []
            call_id = decision_call_id(decision)
            if call_id is not None:
                targets.extend(self._by_call.get(call_id, ()))
            agent_id = getattr(decision, "agent_id", None)
            if agent_id is not None:
                targets.extend(self._by_agent.get(agent_id, ()))
            for listener in targets:
                try:
                    listener(decision)
                except Exception:
                    logger.exception("routing listener failed on %s", type(decision).__name__)


def decision_call_id(decision: routing.Decision) -> str | None:
    """Return the call a decision is about, if any."""
    call_id: str | None = getattr(decision, "call_id", None)
    call = getattr(decision, "call", None)
    if call_id is None and call is not None:
        call_id = call.call_id
    return call_id


class RoutingService:
    """Drives one :class:`routing.Router` on the event loop.

    Args:
        config: The queues, skills and rules.
        clock: POSIX time in seconds (``time.time``; tests and the demo pass their own).
    """

    def __init__(
        self, *, config: routing.RoutingConfig, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.router = routing.Router(config=config)
        self._clock = clock
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._listeners = Listeners()
        self._closed = False

    def now(self) -> float:
        """The routing clock (POSIX seconds)."""
        return self._clock()

    # -- listeners ---------------------------------------------------------------------------
    @property
    def _global(self) -> list[Listener]:
        # tests/web/test_agent_api.py counts the global listeners through this name.
        return self._listeners._global

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Receive every decision; returns a function that stops it."""
        return self._listeners.listen(listener)

    def listen_call(self, call_id: str, listener: Listener) -> Callable[[], None]:
        """Receive the decisions about one call; returns a function that stops it."""
        return self._listeners.listen_call(call_id, listener)

    def listen_agent(self, agent_id: str, listener: Listener) -> Callable[[], None]:
        """Receive the decisions about one agent; returns a function that stops it."""
        return self._listeners.listen_agent(agent_id, listener)

    # -- events ------------------------------------------------------------------------------
    async def submit(self, event: routing.Event) -> list[routing.Decision]:
        """Apply one event in the backend's order; return the decisions it produced.

        This is the interface the calls and the agent API use, whatever the backend: here the
        event is applied at once (:meth:`handle`); the Redis backend appends it to the shared
        log and returns when this node has applied it.

        Raises:
            routing.RoutingError: the event is invalid; the router is unchanged.
        """
        return self.handle(event)

    def handle(self, event: routing.Event) -> list[routing.Decision]:
        """Apply one event now-ish (its own ``at``), dispatch the decisions, re-arm the timer.

        Raises:
            routing.RoutingError: the event is invalid (unknown queue or agent...); the router
                is unchanged.
        """
        decisions = self.router.handle(event)
        self._dispatch(decisions)
        self._arm()
        return decisions

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        decisions = self.router.handle_timer(self._clock())
        self._dispatch(decisions)
        self._arm()

    def _arm(self) -> None:
        if self._closed:
            return
        deadline = self.router.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            delay = max(0.0, deadline - self._clock())
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _dispatch(self, decisions: list[routing.Decision]) -> None:
        self._listeners.dispatch(decisions)

    def close(self) -> None:
        """Stop the timer; later events are still applied but nothing fires by itself."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None

    async def start(self) -> None:
        """Nothing to start in memory (the Redis backend replays its stream here)."""

    async def aclose(self) -> None:
        """Same as :meth:`close` (the Redis backend also stops its tasks and connections)."""
        self.close()
