"""Staffing formulas (routing/staffing.py): Erlang B and C against published figures, Erlang A
against Erlang C in the limit, against its own two derivations and against a simulation."""

from __future__ import annotations

import heapq
import math
import random

import pytest

from routing.staffing import (
    StaffingTarget,
    erlang_a_figures,
    erlang_b,
    erlang_c,
    erlang_c_figures,
    offered_load,
    required_agents,
    scheduled_agents,
    staffing_table,
)

# -- Erlang B and C: published values ---------------------------------------------------------


def test_erlang_b_matches_the_tables() -> None:
    # Erlang B tables (e.g. ITU-D "Teletraffic Engineering Handbook", Iversen, 2005, and every
    # traffic table): 10 circuits offered 10 Erlangs block 21.46 % of calls, 5 Erlangs 1.84 %.
    assert erlang_b(10, 10.0) == pytest.approx(0.2146, abs=5e-5)
    assert erlang_b(10, 5.0) == pytest.approx(0.0184, abs=5e-5)
    assert erlang_b(0, 3.0) == 1.0
    assert erlang_b(1, 1.0) == pytest.approx(0.5)


def test_erlang_c_matches_the_published_worked_example() -> None:
    # Call Centre Helper, "Erlang C Formula - Made Simple With an Easy Worked Example": 100
    # calls in 30 minutes, 3 minutes average handle time, target 80 % in 20 s. Traffic
    # intensity A = 10 Erlangs; with 11 agents the probability of waiting is 68.21 %; with 14
    # agents it is 17.41 %, service level 88.8 %, occupancy 71.4 %: 14 is the staffing found.
    assert offered_load(200.0, 180.0) == pytest.approx(10.0)
    assert erlang_c(11, 10.0) == pytest.approx(0.6821, abs=5e-5)
    figures = erlang_c_figures(14, 200.0, 180.0, 20.0)
    assert figures.p_wait == pytest.approx(0.1741, abs=5e-5)
    assert figures.service_level == pytest.approx(0.888, abs=5e-4)
    assert figures.occupancy == pytest.approx(0.714, abs=5e-4)
    assert figures.asa_s == pytest.approx(0.1741 * 180.0 / 4.0, abs=0.01)
    best = required_agents(200.0, 180.0, StaffingTarget(0.8, 20.0))
    assert best.agents == 14
    assert erlang_c_figures(13, 200.0, 180.0, 20.0).service_level < 0.8


def test_erlang_c_agrees_with_the_closed_formula_and_stays_finite_for_large_teams() -> None:
    def closed(n: int, a: float) -> float:
        # sum_{k<n} a^k/k! and a^n/n! * n/(n-a), in logs (an independent derivation).
        top = math.exp(n * math.log(a) - math.lgamma(n + 1)) * n / (n - a)
        below = sum(math.exp(k * math.log(a) - math.lgamma(k + 1)) for k in range(n))
        return top / (below + top)

    for n, a in [(3, 2.0), (20, 15.5), (50, 45.0), (120, 100.0)]:
        assert erlang_c(n, a) == pytest.approx(closed(n, a), rel=1e-9)
    huge = erlang_c(5000, 4950.0)  # a factorial formula overflows here
    assert 0.0 < huge < 1.0 and math.isfinite(huge)
    assert erlang_c(10, 10.0) == 1.0
    unstable = erlang_c_figures(5, 200.0, 180.0, 20.0)
    assert not unstable.stable and unstable.service_level == 0.0


def test_staffing_with_an_occupancy_cap_and_shrinkage() -> None:
    capped = required_agents(200.0, 180.0, StaffingTarget(0.8, 20.0, max_occupancy=0.7))
    assert capped.agents == 15  # 10/14 = 0.714 > 0.7
    assert scheduled_agents(11, 0.3) == 16  # 11 / 0.7 = 15.7
    assert scheduled_agents(14, 0.0) == 14
    assert scheduled_agents(7, 0.3) == 10
    with pytest.raises(ValueError, match="shrinkage"):
        scheduled_agents(10, 1.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: erlang_c(0, 1.0), "at least one agent"),
        (lambda: erlang_b(-1, 1.0), "agents >= 0"),
        (lambda: offered_load(-5.0, 180.0), "calls per hour"),
        (lambda: offered_load(5.0, 0.0), "handle time"),
        (lambda: erlang_c_figures(3, 10.0, 180.0, -1.0), "threshold"),
        (lambda: erlang_a_figures(3, 10.0, 180.0, 20.0, 0.0), "patience"),
        (lambda: required_agents(10.0, 180.0, StaffingTarget(1.0, 20.0)), "service level"),
    ],
)
def test_bad_arguments_are_refused(call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(ValueError, match=message):
        call()


# -- Erlang A -------------------------------------------------------------------------------


def test_erlang_a_tends_to_erlang_c_as_patience_grows() -> None:
    c = erlang_c_figures(14, 200.0, 180.0, 20.0)
    gaps = [
        abs(erlang_a_figures(14, 200.0, 180.0, 20.0, patience).p_wait - c.p_wait)
        for patience in (1e3, 1e4, 1e6)
    ]
    assert gaps == sorted(gaps, reverse=True)
    a = erlang_a_figures(14, 200.0, 180.0, 20.0, 1e6)
    assert a.p_wait == pytest.approx(c.p_wait, abs=1e-4)
    assert a.service_level == pytest.approx(c.service_level, abs=1e-4)
    assert a.asa_s == pytest.approx(c.asa_s, rel=1e-3)
    assert a.p_abandon < 1e-5


def test_erlang_a_two_derivations_agree() -> None:
    # 1 - P(abandon) comes from the state law (rate balance θ·E[queue] = λ·P(abandon));
    # the service level with an unbounded threshold comes from the tagged-caller argument.
    for n, rate, aht, patience in [(10, 100.0, 300.0, 180.0), (8, 150.0, 240.0, 60.0)]:
        a = erlang_a_figures(n, rate, aht, 1e6, patience)
        assert a.service_level == pytest.approx(1.0 - a.p_abandon, abs=1e-9)
        # Little's law on the agents: answered calls × handle time = busy agents.
        assert a.occupancy * n == pytest.approx(rate / 3600 * (1 - a.p_abandon) * aht, rel=1e-9)


def test_erlang_a_handles_overload() -> None:
    # 20 Erlangs on 10 agents: Erlang C has no steady state; Erlang A does (callers hang up).
    a = erlang_a_figures(10, 400.0, 180.0, 20.0, 120.0)
    assert 0.4 < a.p_abandon < 0.6
    assert a.occupancy == pytest.approx(1.0, abs=0.01)
    assert math.isfinite(a.asa_s)


def _simulate_mmn_m(
    agents: int, rate: float, aht: float, patience: float, target: float, calls: int, seed: int
) -> dict[str, float]:
    """M/M/n+M, FCFS, by offered waits: a caller is answered when the earliest free agent is
    free, unless their patience runs out first (then they take no agent's time)."""
    rng = random.Random(seed)
    free = [0.0] * agents
    t = 0.0
    waited = abandoned = within = 0
    answered_wait = 0.0
    for _ in range(calls):
        t += rng.expovariate(rate / 3600.0)
        wait = max(0.0, free[0] - t)
        waited += wait > 0
        if rng.expovariate(1.0 / patience) < wait:
            abandoned += 1
            continue
        within += wait <= target
        answered_wait += wait
        heapq.heapreplace(free, t + wait + rng.expovariate(1.0 / aht))
    return {
        "p_wait": waited / calls,
        "p_abandon": abandoned / calls,
        "service_level": within / calls,
        "asa_s": answered_wait / (calls - abandoned),
    }


@pytest.mark.parametrize(
    ("agents", "rate", "aht", "patience", "target"),
    [(10, 100.0, 300.0, 180.0, 60.0), (12, 200.0, 240.0, 90.0, 20.0)],
)
def test_erlang_a_matches_a_simulation(
    agents: int, rate: float, aht: float, patience: float, target: float
) -> None:
    sim = _simulate_mmn_m(agents, rate, aht, patience, target, 200_000, seed=7)
    a = erlang_a_figures(agents, rate, aht, target, patience)
    # 200 000 callers: standard errors of these proportions are ~0.002 (autocorrelated: a
    # few times more); the tolerances are ~3 of those, far below the Erlang C differences.
    assert sim["p_wait"] == pytest.approx(a.p_wait, abs=0.012)
    assert sim["p_abandon"] == pytest.approx(a.p_abandon, abs=0.008)
    assert sim["service_level"] == pytest.approx(a.service_level, abs=0.012)
    assert sim["asa_s"] == pytest.approx(a.asa_s, rel=0.06)
    c = erlang_c_figures(agents, rate, aht, target)
    assert abs(c.service_level - a.service_level) > 0.03  # the check can tell them apart


def test_erlang_a_staffing_respects_the_abandonment_cap() -> None:
    target = StaffingTarget(0.8, 60.0)
    plain = required_agents(100.0, 300.0, target, patience_s=180.0)
    assert plain.service_level >= 0.8
    below = erlang_a_figures(plain.agents - 1, 100.0, 300.0, 60.0, 180.0)
    assert below.service_level < 0.8
    capped = required_agents(
        100.0, 300.0, StaffingTarget(0.8, 60.0, max_abandon=0.02), patience_s=180.0
    )
    assert (
        capped.p_abandon
        <= 0.02
        < erlang_a_figures(capped.agents - 1, 100.0, 300.0, 60.0, 180.0).p_abandon
    )
    # Callers who hang up free the queue: Erlang A never needs more agents than Erlang C.
    assert plain.agents <= required_agents(100.0, 300.0, target).agents


def test_staffing_table_rows() -> None:
    rows = staffing_table(200.0, 180.0, 20.0, range(11, 16), patience_s=180.0)
    assert [c.agents for c, _ in rows] == [11, 12, 13, 14, 15]
    levels = [c.service_level for c, _ in rows]
    assert levels == sorted(levels)
    assert all(a is not None and a.service_level >= c.service_level for c, a in rows)
    assert all(a is None for _, a in staffing_table(200.0, 180.0, 20.0, range(11, 13)))
