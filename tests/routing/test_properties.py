"""Invariants under random event sequences (hypothesis) and seeded peak-hour simulations.

Every decision goes through ``Checker`` (tests/routing/helpers.py), which fails on:
an agent with two offers, a call offered twice or to an agent not available, an offer through
a closed queue, an offer that the rules (``choose_agent``) would not make at that instant, a
better-placed waiting call the agent could have taken (priority order), a call left waiting
while an agent qualified for it is available, a router sleeping past a rule change.

``PropertyChecker`` (below) states issue 5's two properties on their own — "no agent ever has
two calls", "no call waits while a qualified agent is available (once the router has processed
an event)" — and checks them after every event of random sequences (callbacks kept and
re-entering, transfers, skill changes, pauses, logouts, ring timeouts, relaxation and overflow
over time, opening hours) and of the stressed peak-hour simulation.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPauseRequested,
    AgentReady,
    AgentSkillsChanged,
    AgentState,
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallbackKept,
    CallCancelled,
    CallCompleted,
    CallEnded,
    CallEnqueued,
    CallerHungUp,
    CallMaxWaitReached,
    CallOverflowed,
    CallQueued,
    CallRejectedClosed,
    CallRemoved,
    Decision,
    Event,
    OfferAccepted,
    OfferCall,
    OfferEnded,
    OfferEndReason,
    OfferRejected,
    OfferTimedOut,
    Overflow,
    Priority,
    QueueConfig,
    QueuedCall,
    RelaxationStep,
    Router,
    RoutingConfig,
    Tick,
    WrapUpDone,
    WrapUpEnded,
    load_routing_config,
)
from routing.hours import is_open
from routing.queue_config import default_routing_config_path
from routing.simulation import STRESSED_SCENARIO, simulate

from .helpers import T0, Checker, at, office_hours, queued
from .sim import Behaviour, Simulation

SKILLS = ("apa", "accueil_general", "urgence_sociale")
SKILL_SETS = (
    {"apa": 5},
    {"apa": 2},
    {"apa": 1, "accueil_general": 4},
    {"accueil_general": 2},
    {"urgence_sociale": 5, "apa": 3},
    {"urgence_sociale": 2, "accueil_general": 5},
)


def random_config(hours: bool) -> RoutingConfig:
    schedule = office_hours() if hours else None
    return RoutingConfig.simple(
        [
            QueueConfig(
                "apa",
                min_proficiency=3,
                relaxation=(RelaxationStep(40.0, 2), RelaxationStep(90.0, 1)),
                overflow=Overflow(150.0, "accueil_general"),
                wrap_up_s=20.0,
                ring_timeout_s=15.0,
                max_wait_s=600.0,
                max_size=6,
                hours=schedule,
            ),
            QueueConfig("accueil_general", wrap_up_s=10.0, max_wait_s=900.0, hours=schedule),
            QueueConfig(
                "urgence_sociale",
                min_proficiency=4,
                relaxation=(RelaxationStep(30.0, 2),),
                overflow=Overflow(60.0, "accueil_general"),
                wrap_up_s=0.0,
                ring_timeout_s=10.0,
                max_wait_s=None,
            ),
        ]
    )


OPS = st.tuples(
    st.sampled_from(
        [
            "call",
            "call",
            "call",
            "login",
            "logout",
            "pause",
            "ready",
            "accept",
            "accept",
            "reject",
            "timeout",
            "end",
            "wrapdone",
            "hangup",
            "keep",
            "cancel",
            "tick",
        ]
    ),
    st.integers(0, 5),  # agent / skill-set / call index
    st.integers(0, 3),  # priority / reason / queue choice
    st.floats(0, 120, allow_nan=False),  # time step
)


def drive(ck: Checker, ops: list[tuple[str, int, int, float]], start: float) -> float:
    t = start
    calls: list[str] = []
    for kind, index, choice, step in ops:
        t += step
        router = ck.router
        agent_id = f"a{index}"
        agent = router.agents.get(agent_id)
        state = agent.state if agent else AgentState.OFFLINE
        if kind == "call":
            call_id = f"c{len(calls)}"
            calls.append(call_id)
            priority = list(Priority)[choice]
            previous = t - 3600 if index == 5 else None
            ck.handle(
                queued(
                    call_id, SKILLS[index % 3], t, priority=priority, previous_contact_at=previous
                )
            )
        elif kind == "login" and state is AgentState.OFFLINE:
            ck.handle(AgentLoggedIn(agent_id, SKILL_SETS[index], t))
        elif kind == "logout" and agent is not None:
            ck.handle(AgentLoggedOut(agent_id, t))
        elif kind == "pause" and state is not AgentState.OFFLINE:
            ck.handle(
                AgentPauseRequested(agent_id, ("pause", "formation", "réunion")[choice % 3], t)
            )
        elif kind == "ready" and state is not AgentState.OFFLINE:
            ck.handle(AgentReady(agent_id, t))
        elif kind in ("accept", "reject", "timeout") and agent and agent.call_id:
            if kind == "accept":
                ck.handle(OfferAccepted(agent_id, agent.call_id, t))
            elif kind == "reject":
                ck.handle(OfferRejected(agent_id, agent.call_id, t))
            else:
                ck.handle(OfferTimedOut(agent_id, agent.call_id, t))
        elif kind == "end" and agent and agent.call_id and state is AgentState.ON_CALL:
            ck.handle(CallEnded(agent_id, agent.call_id, t))
        elif kind == "wrapdone" and state is not AgentState.OFFLINE:
            ck.handle(WrapUpDone(agent_id, t, resolved=bool(choice % 2)))
        elif kind in ("hangup", "keep", "cancel") and calls:
            call_id = calls[(index * 7 + choice) % len(calls)]
            if kind == "hangup":
                ck.handle(CallerHungUp(call_id, t))
            elif router.call_phase(call_id) in ("waiting", "offered") and kind == "keep":
                ck.handle(CallbackKept(call_id, t))
            elif router.call_phase(call_id) in ("waiting", "offered"):
                ck.handle(CallCancelled(call_id, t))
        else:
            ck.handle(Tick(t))
    return t


def drain(ck: Checker, t: float) -> None:
    """Staff every queue with experts who answer everything, until every call has ended."""
    for index, skills in enumerate(({"apa": 5, "accueil_general": 5, "urgence_sociale": 5},) * 3):
        ck.handle(AgentLoggedIn(f"drain{index}", skills, t))
    for agent_id, agent in list(ck.router.agents.items()):
        if agent.state is AgentState.PAUSED:
            ck.handle(AgentReady(agent_id, t))
    deadline = t + 14 * 86400
    while (
        ck.waiting
        or ck.offered
        or any(a.state is AgentState.ON_CALL for a in ck.router.agents.values())
    ):
        t += 1
        assert t < deadline, "the queues never drained"
        for agent_id, agent in list(ck.router.agents.items()):
            if agent.state is AgentState.RESERVED and agent.call_id:
                ck.handle(OfferAccepted(agent_id, agent.call_id, t))
            elif agent.state is AgentState.ON_CALL and agent.call_id:
                ck.handle(CallEnded(agent_id, agent.call_id, t))
        timer = ck.router.get_timer()
        if timer is not None:
            t = max(t, timer)
            ck.handle(Tick(t))
            for agent_id, agent in list(ck.router.agents.items()):
                if agent.state is AgentState.PAUSED:
                    ck.handle(AgentReady(agent_id, t))


def assert_every_call_ended(ck: Checker) -> None:
    assert set(ck.ended) == ck.enqueued, ck.enqueued - set(ck.ended)
    assert not ck.waiting and not ck.offered
    for queue in ck.config.queues:
        assert ck.router.queue_size(queue) == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, min_size=10, max_size=150), st.booleans())
def test_random_event_sequences_keep_the_invariants(
    ops: list[tuple[str, int, int, float]], hours: bool
) -> None:
    ck = Checker(random_config(hours))
    # Start shortly before the lunch break so that closing and reopening happen.
    start = at(2025, 6, 2, 12, 20) if hours else T0
    t = drive(ck, ops, start)
    drain(ck, t)
    assert_every_call_ended(ck)


def test_seeded_peak_hour_with_the_shipped_configuration() -> None:
    config = load_routing_config(default_routing_config_path())
    ck = Checker(config)
    rng = random.Random(20250602)
    sim = Simulation(
        ck.router,
        ck.handle,
        rng,
        Behaviour(
            talk_mean_s=300,
            reject_p=0.03,
            no_answer_p=0.03,
            patience_mean_s=400,
            early_wrap_up_p=0.5,
            priorities=((Priority.NORMAL, 0.9), (Priority.HIGH, 0.08), (Priority.CRITICAL, 0.02)),
        ),
    )
    start = at(2025, 6, 2, 9, 0)
    teams = [
        ({"accueil_general": 4, "apa": 2}, 4),
        ({"apa": 5}, 3),
        ({"apa": 3, "paiement": 2}, 2),
        ({"mdph_adulte": 5, "mdph_enfant": 2}, 3),
        ({"mdph_enfant": 4}, 2),
        ({"paiement": 4, "aide_sociale_hebergement": 3}, 2),
        ({"urgence_sociale": 5, "accueil_general": 3}, 2),
        ({"reclamation": 4, "accueil_general": 2}, 1),
    ]
    count = 0
    for skills, n in teams:
        for _ in range(n):
            count += 1
            sim.login(start + rng.uniform(0, 120), f"agent{count}", dict(skills))
    mix = [
        ("accueil_general", 25),
        ("apa", 22),
        ("mdph_adulte", 18),
        ("mdph_enfant", 8),
        ("paiement", 12),
        ("aide_sociale_hebergement", 6),
        ("urgence_sociale", 3),
        ("reclamation", 6),
    ]
    # 09:00-12:25 at 130 calls/hour (a busy morning), then the lunch closing empties the queues.
    calls = sim.poisson_calls(start, at(2025, 6, 2, 12, 25), 130, mix)
    sim.run(at(2025, 6, 2, 13, 0))
    assert calls > 350
    outcomes = Counter(ck.ended.values())
    # Every outcome happened: answered, abandoned, maximum wait, closed at lunch time.
    assert outcomes["answered"] > 250
    assert outcomes["abandoned"] > 0 and outcomes["max_wait"] > 0 and outcomes["closed"] > 0
    # Everything enqueued before lunch ended one way or another by 13:00.
    assert set(ck.ended) == ck.enqueued
    assert not ck.waiting and not ck.offered
    # The peak made calls overflow, and some were answered through the overflow queue.
    assert sum(1 for d in ck.decisions if isinstance(d, CallOverflowed)) > 20
    assert any(isinstance(d, OfferCall) and d.queue != d.call.skill for d in ck.decisions)
    # Agents rejected or let ring some offers, and those calls went on to other agents.
    assert any(isinstance(d, OfferEnded) for d in ck.decisions)


# -- the two properties of issue 5, checked on the router's own public view ------------------
#
# Independent of helpers.Checker (which compares every offer with choose_agent): here the
# stream of decisions and router.agents / router.waiting() are checked against the plain
# statement of each property, after every event. The driver adds what the one above lacks:
# skill changes, transfers to a named agent, kept callbacks re-entering the queue with the
# same id (routing.callbacks.enter_queue), and ticks exactly at the router's next timer
# (ring timeouts, relaxation and overflow steps, wrap-up ends, opening changes).

_HOLDING_ENDS = frozenset({AgentState.OFFLINE, AgentState.AVAILABLE, AgentState.PAUSED})
_TOLERANCE_S = 1e-3


class PropertyChecker:
    """Feeds a router and checks the two properties after every event.

    "No agent ever has two calls" and "no call waits while a qualified agent is available".
    """

    def __init__(self, config: RoutingConfig) -> None:
        self.config = config
        self.router = Router(config=config)
        self.holding: dict[str, str] = {}  # agent -> the call offered, connected or wrapped up
        self.held_by: dict[str, str] = {}  # call -> the agent offered it or talking to them
        self.declined: dict[str, set[str]] = {}
        self.outcomes: dict[str, list[str]] = {}  # call -> how each of its entries ended
        self.offers = 0
        self.waits_checked = 0

    def handle(self, event: Event) -> list[Decision]:
        decisions = self.router.handle(event)
        self.after(self.router, decisions)
        return decisions

    def after(self, router: Router, decisions: Sequence[Decision]) -> None:
        """Check the properties once ``router`` has processed an event (its decisions)."""
        self.router = router
        for decision in decisions:
            self._track(decision)
        self._no_agent_has_two_calls()
        self._no_call_waits_for_an_available_agent()

    def fire_next_timer(self) -> None:
        timer = self.router.get_timer()
        if timer is not None:
            self.handle(Tick(timer))

    def _track(self, d: Decision) -> None:
        match d:
            case CallEnqueued(call_id=call_id):
                self.declined[call_id] = set()
                self.outcomes.setdefault(call_id, []).append("waiting")
            case OfferCall(agent_id=agent_id, call=call):
                self.offers += 1
                assert agent_id not in self.holding, (
                    f"{agent_id} offered {call.call_id} while holding {self.holding[agent_id]}"
                )
                assert call.call_id not in self.held_by, (
                    f"{call.call_id} offered to {agent_id}, held by {self.held_by[call.call_id]}"
                )
                self.holding[agent_id] = call.call_id
                self.held_by[call.call_id] = agent_id
            case OfferEnded(agent_id=agent_id, call_id=call_id, reason=reason):
                assert self.holding.get(agent_id) == call_id
                del self.holding[agent_id]
                del self.held_by[call_id]
                if reason is OfferEndReason.REJECTED:
                    self.declined[call_id].add(agent_id)
            case CallAnswered(agent_id=agent_id, call_id=call_id):
                assert self.holding.get(agent_id) == call_id
                self._end(call_id, "answered")
            case CallCompleted(call_id=call_id):
                self.held_by.pop(call_id, None)  # the agent stays busy until the wrap-up ends
            case WrapUpEnded(agent_id=agent_id):
                self.holding.pop(agent_id, None)
            case AgentStateChanged(agent_id=agent_id, state=state) if state in _HOLDING_ENDS:
                held = self.holding.pop(agent_id, "")
                if self.held_by.get(held) == agent_id:
                    del self.held_by[held]  # logged out during a conversation
            case CallAbandoned(call_id=call_id):
                self._end(call_id, "abandoned")
            case CallMaxWaitReached(call_id=call_id):
                self._end(call_id, "max_wait")
            case CallRemoved(call_id=call_id):
                self._end(call_id, "removed")
            case CallRejectedClosed(call_id=call_id, wait_s=wait) if wait > 0:
                self._end(call_id, "closed")
            case _:
                pass

    def _end(self, call_id: str, outcome: str) -> None:
        entries = self.outcomes[call_id]
        assert entries[-1] == "waiting", f"{call_id} ended twice: {entries} then {outcome}"
        entries[-1] = outcome

    def _no_agent_has_two_calls(self) -> None:
        """Each reserved or talking agent holds the call the decisions gave them, only one."""
        busy: dict[str, str] = {}
        for agent in self.router.agents.values():
            if agent.state in (AgentState.RESERVED, AgentState.ON_CALL):
                assert agent.call_id is not None
                assert self.holding.get(agent.id) == agent.call_id, (agent, self.holding)
                assert agent.call_id not in busy, (
                    f"{agent.call_id} held by {busy.get(agent.call_id)} and {agent.id}"
                )
                busy[agent.call_id] = agent.id
            elif agent.state is AgentState.WRAP_UP:
                assert agent.id in self.holding
            else:
                assert agent.id not in self.holding, (agent, self.holding)

    def _no_call_waits_for_an_available_agent(self) -> None:
        """No waiting call has an available agent who qualifies for it now (Rule 2)."""
        now = self.router.now
        assert now is not None
        tz = self.config.timezone
        available = [a for a in self.router.agents.values() if a.state is AgentState.AVAILABLE]
        for queue in self.config.queues:
            for call in self.router.waiting(queue):
                if call.skill != queue:
                    continue  # listed again in an overflow queue: checked from its own
                self.waits_checked += 1
                wait = now - call.joined_at - _TOLERANCE_S
                for serving, reach in self._chain(call.skill):
                    if reach > 0 and wait < reach:
                        break
                    hours = self.config.queues[serving].hours
                    if not (is_open(hours, tz, now) and is_open(hours, tz, now - _TOLERANCE_S)):
                        continue
                    level = self.config.queues[serving].min_proficiency_at(wait)
                    for agent in available:
                        qualified = agent.proficiency(serving) >= level
                        if qualified and agent.id not in self.declined.get(call.call_id, ()):
                            raise AssertionError(
                                f"{call.call_id} waits {wait:.1f} s in {queue} at {now} while "
                                f"{agent.id} (proficiency {agent.proficiency(serving)} in "
                                f"{serving}, {level} needed) is available"
                            )

    def _chain(self, queue: str) -> list[tuple[str, float]]:
        chain, reach, seen = [(queue, 0.0)], 0.0, {queue}
        overflow = self.config.queues[queue].overflow
        while overflow is not None and overflow.to_queue not in seen:
            reach = max(reach, overflow.after_s)
            chain.append((overflow.to_queue, reach))
            seen.add(overflow.to_queue)
            overflow = self.config.queues[overflow.to_queue].overflow
        return chain


PROPERTY_KINDS = (
    *("call", "call", "call", "transfer", "requeue"),
    *("login", "login", "logout", "pause", "ready", "skills"),
    *("accept", "accept", "accept", "reject", "timeout", "end", "wrapdone"),
    *("hangup", "keep", "keep", "cancel"),
    *("timer", "timer", "tick"),
)
PROPERTY_OPS = st.tuples(
    st.sampled_from(PROPERTY_KINDS),
    st.integers(0, 5),  # agent / skill-set / call index
    st.integers(0, 3),  # priority / reason / target choice
    # Time step: often within a ring timeout, sometimes past relaxation and overflow steps.
    st.one_of(st.floats(0, 4, allow_nan=False), st.floats(0, 120, allow_nan=False)),
)


def drive_properties(ck: PropertyChecker, ops: list[tuple[str, int, int, float]], t: float) -> None:
    calls: list[str] = []
    skills = [s for s in SKILLS if s in ck.config.queues]
    for kind, index, choice, step in ops:
        t = max(t + step, ck.router.now or t)
        router = ck.router
        agent_id = f"a{index}"
        agent = router.agents.get(agent_id)
        state = agent.state if agent else AgentState.OFFLINE
        if kind in ("call", "transfer"):
            call_id = f"c{len(calls)}"
            calls.append(call_id)
            target = f"a{(index + choice) % 6}" if kind == "transfer" else None
            call = QueuedCall(
                call_id,
                skills[index % len(skills)],
                priority=list(Priority)[choice],
                joined_at=t,
                previous_contact_at=t - 3600 if index == 5 else None,
                target_agent=target,
            )
            ck.handle(CallQueued(call, t))
        elif kind == "requeue" and calls:
            # A kept callback's next attempt: the same id enters again (callback=True).
            call_id = calls[(index * 5 + choice) % len(calls)]
            if router.call_phase(call_id) is None:
                skill = skills[(index + choice) % len(skills)]
                ck.handle(CallQueued(QueuedCall(call_id, skill, joined_at=t, callback=True), t))
        elif kind == "login" and state is AgentState.OFFLINE:
            ck.handle(AgentLoggedIn(agent_id, SKILL_SETS[(index + choice) % 6], t))
        elif kind == "logout" and agent is not None:
            ck.handle(AgentLoggedOut(agent_id, t))
        elif kind == "skills" and state is not AgentState.OFFLINE:
            ck.handle(AgentSkillsChanged(agent_id, SKILL_SETS[(index + choice + 1) % 6], t))
        elif kind == "pause" and state is not AgentState.OFFLINE:
            reason = ("pause", "formation", "réunion")[choice % 3]
            ck.handle(AgentPauseRequested(agent_id, reason, t))
        elif kind == "ready" and state is not AgentState.OFFLINE:
            ck.handle(AgentReady(agent_id, t))
        elif kind in ("accept", "reject", "timeout", "end", "wrapdone"):
            # Act on one of the agents in the state the operation needs (the index picks which).
            needs = {"end": AgentState.ON_CALL, "wrapdone": AgentState.WRAP_UP}
            wanted = needs.get(kind, AgentState.RESERVED)
            ready = sorted(a.id for a in router.agents.values() if a.state is wanted)
            if not ready:
                ck.handle(Tick(t))
                continue
            actor = router.agents[ready[index % len(ready)]]
            call_id = actor.call_id or ""
            if kind == "accept":
                ck.handle(OfferAccepted(actor.id, call_id, t))
            elif kind == "reject":
                ck.handle(OfferRejected(actor.id, call_id, t))
            elif kind == "timeout":
                ck.handle(OfferTimedOut(actor.id, call_id, t))
            elif kind == "end":
                ck.handle(CallEnded(actor.id, call_id, t))
            else:
                ck.handle(WrapUpDone(actor.id, t, resolved=bool(choice % 2)))
        elif kind in ("hangup", "keep", "cancel") and calls:
            # Mostly recent calls: those are the ones still waiting or ringing.
            call_id = calls[max(0, len(calls) - 1 - (index * 4 + choice) % 8)]
            phase = router.call_phase(call_id)
            if kind == "hangup":
                ck.handle(CallerHungUp(call_id, t))
            elif phase in ("waiting", "offered") and kind == "keep":
                ck.handle(CallbackKept(call_id, t))
            elif phase in ("waiting", "offered"):
                ck.handle(CallCancelled(call_id, t))
        elif kind == "timer":
            ck.fire_next_timer()
        else:
            ck.handle(Tick(t))


CONFIGS = st.sampled_from(["plain", "hours", "shipped"])


def property_config(name: str) -> tuple[RoutingConfig, float]:
    if name == "shipped":
        # Monday 12:20: the lunch closing and the reopening happen during the run.
        return load_routing_config(default_routing_config_path()), at(2025, 6, 2, 12, 20)
    if name == "hours":
        return random_config(True), at(2025, 6, 2, 12, 20)
    return random_config(False), T0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(PROPERTY_OPS, min_size=10, max_size=200), CONFIGS)
def test_no_agent_ever_has_two_calls_and_no_call_waits_for_an_available_agent(
    ops: list[tuple[str, int, int, float]], config_name: str
) -> None:
    config, start = property_config(config_name)
    ck = PropertyChecker(config)
    drive_properties(ck, ops, start)
    # Then let time run: every timer fires at its deadline, the properties still hold.
    for _ in range(50):
        ck.fire_next_timer()


def test_the_property_driver_reaches_every_outcome() -> None:
    """The random operations do exercise the router (fixed seeds, the three configurations)."""
    outcomes: Counter[str] = Counter()
    offers = 0
    for seed in range(30):
        rng = random.Random(seed)
        ops = [
            (
                rng.choice(PROPERTY_KINDS),
                rng.randrange(6),
                rng.randrange(4),
                rng.uniform(0, 4) if rng.random() < 0.5 else rng.uniform(0, 120),
            )
            for _ in range(150)
        ]
        ck = PropertyChecker(property_config(("plain", "hours", "shipped")[seed % 3])[0])
        drive_properties(ck, ops, property_config(("plain", "hours", "shipped")[seed % 3])[1])
        offers += ck.offers
        outcomes.update(o for entries in ck.outcomes.values() for o in entries)
    assert offers > 200
    for outcome in ("answered", "abandoned", "max_wait", "removed", "closed"):
        assert outcomes[outcome] > 5, outcomes


def test_the_property_checker_catches_a_violation() -> None:
    """The checks can fail: a router that forgets to dispatch leaves a call waiting."""

    class LazyRouter(Router):
        def _dispatch(self, now: float, out: list[Decision]) -> None:
            return None

    ck = PropertyChecker(random_config(False))
    ck.router = LazyRouter(config=ck.config)
    ck.handle(AgentLoggedIn("a0", {"apa": 5}, T0))
    try:
        ck.handle(CallQueued(QueuedCall("c0", "apa", joined_at=T0), T0))
    except AssertionError as exc:
        assert "c0 waits" in str(exc)
    else:
        raise AssertionError("the lazy router was not caught")
    # A second offer to an agent who already holds one.
    ck = PropertyChecker(random_config(False))
    first = OfferCall("a0", QueuedCall("c1", "apa"), "apa", 5, 0.0, T0 + 20, False, T0)
    second = dataclasses.replace(first, call=QueuedCall("c2", "apa"))
    try:
        ck.after(ck.router, [first, second])
    except AssertionError as exc:
        assert "a0 offered c2 while holding c1" in str(exc)
    else:
        raise AssertionError("the double offer was not caught")


def test_the_properties_hold_in_the_stressed_peak_hour_simulation() -> None:
    """Realistic traffic: the stressed peak hour of routing.simulation, with callbacks.

    Kept callbacks re-entering after failed attempts, ring timeouts and "non réponse" pauses,
    relaxation and overflow: every event checked.
    """
    config = load_routing_config(default_routing_config_path())
    ck = PropertyChecker(config)
    result = simulate(STRESSED_SCENARIO, callbacks=True, seed=5, config=config, observer=ck.after)
    assert ck.offers > 200 and ck.waits_checked > 1000
    assert result.total.callbacks_requested > 10 and result.total.offers_missed > 0
    assert result.total.overflowed > 0
