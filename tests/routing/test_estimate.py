from __future__ import annotations

import math
import random

import pytest

from routing import (
    Agent,
    AgentState,
    CallAnswered,
    CallEnqueued,
    Decision,
    Priority,
    QueueConfig,
    Router,
    RoutingConfig,
    WrapUpEnded,
)
from routing.estimate import (
    SPOKEN_BUCKETS,
    HandleTimes,
    WaitEstimate,
    effective_servers,
    erlang_quantile,
    estimate_wait,
    spoken_bucket,
)

from .helpers import T0
from .sim import Behaviour, Simulation


@pytest.mark.parametrize(
    ("high", "words"),
    [
        (0.0, "moins de 2 minutes"),
        (119.9, "moins de 2 minutes"),
        (120.0, "moins de 2 minutes"),
        (120.1, "2 à 5 minutes"),
        (300.0, "2 à 5 minutes"),
        (301.0, "5 à 10 minutes"),
        (600.0, "5 à 10 minutes"),
        (600.5, "plus de 10 minutes"),
        (None, "plus de 10 minutes"),
    ],
)
def test_spoken_bucket_never_below_the_upper_bound(high: float | None, words: str) -> None:
    said, limit = spoken_bucket(high)
    assert said == words
    assert limit >= (math.inf if high is None else high)
    assert (limit, said) in SPOKEN_BUCKETS


def test_erlang_quantile_against_known_values_and_sampling() -> None:
    assert erlang_quantile(1, 1.0, 0.95) == pytest.approx(-math.log(0.05))
    assert erlang_quantile(5, 1.0, 0.95) == pytest.approx(9.1535, abs=1e-3)  # chi2(10)/2
    assert erlang_quantile(5, 2.0, 0.95) == pytest.approx(9.1535 / 2, abs=1e-3)
    assert erlang_quantile(100, 1.0, 0.95) == pytest.approx(117.0, rel=5e-3)
    rng = random.Random(7)
    for k in (2, 10, 61, 150):
        q = erlang_quantile(k, 1.0, 0.9)
        samples = [sum(rng.expovariate(1.0) for _ in range(k)) for _ in range(4000)]
        below = sum(s <= q for s in samples) / len(samples)
        assert below == pytest.approx(0.9, abs=0.02), k
    with pytest.raises(ValueError):
        erlang_quantile(0, 1.0, 0.5)


def test_estimate_shapes() -> None:
    samples = [300.0] * 50
    one = estimate_wait(1, 5, samples)
    assert one.expected_s == pytest.approx(60.0)
    assert one.low_s < one.expected_s < (one.high_s or 0)
    assert one.bucket == spoken_bucket(one.high_s)[0]
    # Further back waits longer; more agents wait less.
    assert (estimate_wait(10, 5, samples).high_s or 0) > (one.high_s or 0)
    assert (estimate_wait(10, 10, samples).high_s or 0) < (
        estimate_wait(10, 5, samples).high_s or 0
    )
    # Nobody staffed: no bound, and the caller hears "plus de 10 minutes".
    nobody = estimate_wait(1, 0, samples)
    assert nobody.high_s is None and nobody.bucket == "plus de 10 minutes"
    # Few samples: the prior weighs in.
    assert estimate_wait(1, 1, [60.0], default_handle_s=600).handle_s == pytest.approx(
        (60 + 19 * 600) / 20
    )
    with pytest.raises(ValueError):
        estimate_wait(0, 1, samples)


def test_effective_servers_shares_multi_skilled_agents() -> None:
    agents = [
        Agent("apa_only", {"apa": 3}, AgentState.ON_CALL),
        Agent("both", {"apa": 3, "paiement": 2}, AgentState.AVAILABLE),
        Agent("paused", {"apa": 5}, AgentState.PAUSED),
        Agent("off", {"apa": 5}, AgentState.OFFLINE),
        Agent("other", {"paiement": 5}, AgentState.WRAP_UP),
    ]
    assert effective_servers(agents, "apa", {"apa"}) == 2.0
    assert effective_servers(agents, "apa", {"apa", "paiement"}) == 1.5


def test_handle_times_keeps_recent_samples() -> None:
    times = HandleTimes(maxlen=3)
    times.extend([1.0, 2.0, -5.0, 3.0, 4.0])
    assert times.samples == (2.0, 3.0, 4.0)
    assert len(times) == 3


# -- calibration by simulation ------------------------------------------------------------


def simulate(
    agents: int,
    talk_cv: float,
    load: float,
    seed: int,
    *,
    priorities: tuple[tuple[Priority, float], ...] = ((Priority.NORMAL, 1.0),),
    talk_mean_s: float = 240.0,
) -> list[tuple[WaitEstimate, float]]:
    """Run a queue for 6 hours; return (announcement at join, actual wait) per answered call."""
    config = RoutingConfig.simple(
        [QueueConfig("apa", wrap_up_s=30.0, max_wait_s=None, ring_timeout_s=30.0)]
    )
    router = Router(config=config)
    handle = HandleTimes()
    announced: dict[str, WaitEstimate] = {}
    waited: dict[str, float] = {}

    def record(d: Decision) -> None:
        if isinstance(d, CallEnqueued):
            position = router.position(d.call_id)
            if position is not None:  # None: offered at once, nothing to announce
                servers = effective_servers(router.agents.values(), "apa", {"apa"})
                announced[d.call_id] = estimate_wait(position, servers, handle.samples)
        elif isinstance(d, CallAnswered):
            waited[d.call_id] = d.wait_s
        elif isinstance(d, WrapUpEnded):
            handle.add(d.handle_s)

    behaviour = Behaviour(
        talk_mean_s=talk_mean_s, talk_cv=talk_cv, ring_s=3.0, priorities=priorities
    )
    sim = Simulation(router, router.handle, random.Random(seed), behaviour, on_decision=record)
    for index in range(agents):
        sim.login(T0, f"a{index}", {"apa": 3})
    per_hour = load * agents * 3600 / (talk_mean_s + 30 + 3)
    sim.poisson_calls(T0, T0 + 6 * 3600, per_hour, [("apa", 1.0)])
    sim.run(T0 + 20 * 3600)
    return [(announced[c], waited[c]) for c in announced if c in waited]


@pytest.mark.parametrize(
    ("agents", "talk_cv", "load", "priorities"),
    [
        (2, 0.5, 0.9, ((Priority.NORMAL, 1.0),)),
        (5, 1.0, 0.9, ((Priority.NORMAL, 1.0),)),
        (10, 1.0, 0.92, ((Priority.NORMAL, 0.8), (Priority.HIGH, 0.2))),
        (20, 1.3, 0.95, ((Priority.NORMAL, 0.8), (Priority.HIGH, 0.2))),
        (40, 0.8, 0.95, ((Priority.NORMAL, 1.0),)),
    ],
    ids=["2-agents", "5-agents", "10-agents-priorities", "20-agents-cv1.3", "40-agents"],
)
def test_announced_bound_is_rarely_exceeded(
    agents: int, talk_cv: float, load: float, priorities: tuple[tuple[Priority, float], ...]
) -> None:
    results = simulate(agents, talk_cv, load, seed=agents, priorities=priorities)
    assert len(results) > 50, "the queue should be busy enough to announce waits"
    over_bucket = sum(wait > est.bucket_limit_s for est, wait in results) / len(results)
    over_high = sum(est.high_s is None or wait > est.high_s for est, wait in results) / len(results)
    assert over_bucket < 0.10
    assert over_high < 0.10
    if agents >= 10:
        # Not trivially safe: large teams hear precise buckets, rarely "plus de 10 minutes".
        vague = sum(est.bucket == "plus de 10 minutes" for est, _ in results) / len(results)
        assert vague < 0.2
        assert any(est.bucket == "moins de 2 minutes" for est, _ in results)


def test_estimate_for_a_call_in_the_router() -> None:
    from routing import AgentLoggedIn, OfferAccepted
    from routing.estimate import estimate_for_call

    from .helpers import apa_config, queued

    router = Router(config=apa_config())
    router.handle(AgentLoggedIn("a1", {"apa": 5}, T0))
    router.handle(queued("c1", at_=T0))
    router.handle(OfferAccepted("a1", "c1", T0 + 1))
    router.handle(queued("c2", at_=T0 + 2))
    router.handle(queued("c3", at_=T0 + 3))
    assert estimate_for_call(router, "c1", []) is None  # answered
    second = estimate_for_call(router, "c3", [200.0] * 30)
    assert second is not None and (second.position, second.servers) == (2, 1.0)
    assert second == estimate_wait(2, 1.0, [200.0] * 30)
