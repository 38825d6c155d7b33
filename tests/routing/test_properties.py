"""Invariants under random event sequences (hypothesis) and a seeded peak-hour simulation.

Every decision goes through ``Checker`` (tests/routing/helpers.py), which fails on:
an agent with two offers, a call offered twice or to an agent not available, an offer through
a closed queue, an offer that the rules (``choose_agent``) would not make at that instant, a
better-placed waiting call the agent could have taken (priority order), a call left waiting
while an agent qualified for it is available, a router sleeping past a rule change.
"""

from __future__ import annotations

import random
from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPauseRequested,
    AgentReady,
    AgentState,
    CallbackKept,
    CallCancelled,
    CallEnded,
    CallerHungUp,
    CallOverflowed,
    OfferAccepted,
    OfferCall,
    OfferEnded,
    OfferRejected,
    OfferTimedOut,
    Overflow,
    Priority,
    QueueConfig,
    RelaxationStep,
    RoutingConfig,
    Tick,
    WrapUpDone,
    load_routing_config,
)
from routing.queue_config import default_routing_config_path

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
