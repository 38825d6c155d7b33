"""A discrete-event simulation around the router.

Callers arrive, wait, hang up; agents answer, talk, wrap up, sometimes reject or let it ring.
Used by the property tests and the wait-estimate calibration.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from routing import (
    AgentLoggedIn,
    CallAnswered,
    CallEnded,
    CallEnqueued,
    CallerHungUp,
    CallQueued,
    Decision,
    Event,
    OfferAccepted,
    OfferCall,
    OfferRejected,
    Priority,
    QueuedCall,
    Router,
    Tick,
    WrapUpDone,
)


def lognormal(rng: random.Random, mean: float, cv: float) -> float:
    """A lognormal sample with this mean and coefficient of variation."""
    sigma2 = math.log(1 + cv * cv)
    return rng.lognormvariate(math.log(mean) - sigma2 / 2, math.sqrt(sigma2))


@dataclass
class Behaviour:
    """How simulated people behave."""

    talk_mean_s: float = 240.0
    talk_cv: float = 0.8
    ring_s: float = 4.0
    reject_p: float = 0.0
    no_answer_p: float = 0.0
    patience_mean_s: float | None = None  # exponential patience; None: nobody hangs up
    early_wrap_up_p: float = 0.0
    resolved_p: float = 0.7
    priorities: Sequence[tuple[Priority, float]] = ((Priority.NORMAL, 1.0),)


@dataclass
class Simulation:
    router: Router
    handle: Callable[[Event], list[Decision]]
    rng: random.Random
    behaviour: Behaviour = field(default_factory=Behaviour)
    on_decision: Callable[[Decision], None] | None = None
    _heap: list[tuple[float, int, Event]] = field(default_factory=list)
    _seq: int = 0
    events: int = 0

    def at(self, t: float, event: Event) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, event))

    def login(self, t: float, agent_id: str, skills: dict[str, int]) -> None:
        self.at(t, AgentLoggedIn(agent_id, skills, t))

    def poisson_calls(
        self, start: float, end: float, per_hour: float, skills: Sequence[tuple[str, float]]
    ) -> int:
        t, count = start, 0
        names = [s for s, _ in skills]
        weights = [w for _, w in skills]
        prios = [p for p, _ in self.behaviour.priorities]
        prio_w = [w for _, w in self.behaviour.priorities]
        while True:
            t += self.rng.expovariate(per_hour / 3600.0)
            if t >= end:
                return count
            count += 1
            skill = self.rng.choices(names, weights)[0]
            priority = self.rng.choices(prios, prio_w)[0]
            call = QueuedCall(f"call{count}", skill, priority=priority, joined_at=t)
            self.at(t, CallQueued(call, t))

    def run(self, until: float) -> None:
        b = self.behaviour
        while True:
            timer = self.router.get_timer()
            nxt = self._heap[0][0] if self._heap else None
            if timer is not None and (nxt is None or timer <= nxt) and timer <= until:
                decisions = self.handle(Tick(timer))
            elif nxt is not None and nxt <= until:
                _, _, event = heapq.heappop(self._heap)
                if isinstance(event, CallerHungUp) and self.router.call_phase(
                    event.call_id
                ) not in ("waiting", "offered"):
                    continue  # patience ran out after the answer: nothing to abandon
                decisions = self.handle(event)
            else:
                return
            self.events += 1
            for d in decisions:
                if self.on_decision is not None:
                    self.on_decision(d)
                if isinstance(d, CallEnqueued) and b.patience_mean_s is not None:
                    patience = self.rng.expovariate(1 / b.patience_mean_s)
                    self.at(d.at + patience, CallerHungUp(d.call_id, d.at + patience))
                elif isinstance(d, OfferCall):
                    roll = self.rng.random()
                    t = d.at + self.rng.uniform(0.5, 2 * b.ring_s)
                    if roll < b.reject_p:
                        self.at(t, OfferRejected(d.agent_id, d.call.call_id, t))
                    elif roll < b.reject_p + b.no_answer_p:
                        pass  # lets it ring out
                    else:
                        self.at(t, OfferAccepted(d.agent_id, d.call.call_id, t))
                elif isinstance(d, CallAnswered):
                    t = d.at + lognormal(self.rng, b.talk_mean_s, b.talk_cv)
                    self.at(t, CallEnded(d.agent_id, d.call_id, t))
                    if self.rng.random() < b.early_wrap_up_p:
                        done = t + self.rng.uniform(1, 20)
                        resolved = self.rng.random() < b.resolved_p
                        self.at(done, WrapUpDone(d.agent_id, done, resolved))
