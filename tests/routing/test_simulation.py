"""The peak-hour simulation (routing/simulation.py): determinism, conservation, the callback
policy's effect, and KPIs checked against a scenario small enough to compute by hand."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from routing import Priority, QueueConfig, RoutingConfig
from routing.kpi import QueueKpi
from routing.simulation import (
    DEFAULT_SCENARIO,
    STRESSED_SCENARIO,
    Caller,
    Scenario,
    SimulationResult,
    Team,
    compare_policies,
    draw_callers,
    simulate,
)

ROOT = Path(__file__).resolve().parents[2]


def check_conservation(result: SimulationResult) -> None:
    """Every caller ended exactly one way, and the KPI book agrees with the callers."""
    assert sum(result.outcomes.values()) == result.callers
    kpis: list[QueueKpi] = [*result.queues.values(), result.total]
    for kpi in kpis:
        assert kpi.unresolved == 0, kpi
        assert kpi.offered == (
            kpi.answered
            + kpi.abandoned
            + kpi.max_wait_reached
            + kpi.closed_while_waiting
            + kpi.removed
            + kpi.callbacks_requested
        )
        # Every kept callback ended completed or failed.
        assert kpi.callbacks_completed + kpi.callbacks_failed == kpi.callbacks_requested
        # Every conversation and every callback attempt was wrapped up.
        assert kpi.handled == kpi.answered + kpi.callbacks_dialled
        # A completed callback needed at least one attempt, a failed one three.
        assert kpi.callbacks_dialled >= kpi.callbacks_completed + 3 * kpi.callbacks_failed
    total, outcomes = result.total, result.outcomes
    assert total.offered == result.callers - outcomes.get("refused_full", 0) - outcomes.get(
        "refused_closed", 0
    )
    assert total.answered == outcomes.get("answered", 0)
    assert total.abandoned == outcomes.get("abandoned", 0)
    assert total.max_wait_reached == outcomes.get("max_wait", 0)
    assert total.closed_while_waiting == outcomes.get("closed", 0)
    assert total.callbacks_completed == outcomes.get("callback_completed", 0)
    assert total.callbacks_failed == outcomes.get("callback_failed", 0)


# -- the seed's scenarios ------------------------------------------------------------------


def test_the_default_scenario_has_the_seeds_peak_volume() -> None:
    """~100 calls in the busiest hour (the arithmetic of the module docstring)."""
    start = DEFAULT_SCENARIO.start_time(RoutingConfig.simple([QueueConfig("apa")]).timezone)
    first_hours = [
        sum(1 for c in draw_callers(DEFAULT_SCENARIO, seed, start) if c.arrival < start + 3600)
        for seed in range(1, 41)
    ]
    assert 95 <= statistics.fmean(first_hours) <= 105
    callers = draw_callers(STRESSED_SCENARIO, 1, start)
    assert all(start <= c.arrival < start + 2 * 3600 for c in callers)
    queues = {c.queue for c in callers}
    assert queues == {queue for queue, _ in DEFAULT_SCENARIO.mix}
    assert all(c.priority is Priority.CRITICAL for c in callers if c.queue == "urgence_sociale")
    assert any(c.previous_contact_at is not None for c in callers)


def test_same_seed_same_result_other_seed_other_result() -> None:
    first = simulate(STRESSED_SCENARIO, callbacks=True, seed=7)
    again = simulate(STRESSED_SCENARIO, callbacks=True, seed=7)
    assert first == again
    assert first.summary() == again.summary()
    other = simulate(STRESSED_SCENARIO, callbacks=True, seed=8)
    assert other.summary() != first.summary()


def test_results_do_not_depend_on_the_hash_seed() -> None:
    """No set or dict-of-hash iteration leaks into the decisions (PYTHONHASHSEED varies)."""
    code = (
        "import json; from routing.simulation import simulate, STRESSED_SCENARIO;"
        "print(json.dumps(simulate(STRESSED_SCENARIO, callbacks=True, seed=3).summary()))"
    )
    outputs = []
    for hash_seed in ("0", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, check=True
        )
        outputs.append(json.loads(done.stdout))
    assert outputs[0] == outputs[1]
    assert outputs[0]["overall"]["callbacks_requested"] > 0


@pytest.mark.parametrize("scenario", [DEFAULT_SCENARIO, STRESSED_SCENARIO], ids=lambda s: s.name)
@pytest.mark.parametrize("callbacks", [False, True])
def test_conservation(scenario: Scenario, callbacks: bool) -> None:
    for seed in (1, 2):
        result = simulate(scenario, callbacks=callbacks, seed=seed)
        check_conservation(result)
        assert result.occupancy is not None and 0.2 < result.occupancy < 1.0
        assert (result.total.callbacks_requested > 0) is callbacks
        assert set(result.queues) <= {queue for queue, _ in scenario.mix}


def test_offering_callbacks_nobody_takes_changes_nothing() -> None:
    """Control: announcements alone do not change routing; the policy's effect is the callbacks."""
    nobody = dataclasses.replace(STRESSED_SCENARIO, callback_accept_p=0.0)
    for seed in (1, 2):
        offered = simulate(nobody, callbacks=True, seed=seed)
        plain = simulate(STRESSED_SCENARIO, callbacks=False, seed=seed)
        assert offered.total == plain.total
        assert offered.queues == plain.queues


def test_callbacks_lower_abandonment_and_lost_calls_under_stress() -> None:
    """Stressed peak (+50 %), same callers for both policies, five fixed seeds.

    Not a tautology: callers who take a callback still hold their place and load the agents
    (every attempt costs agent time, 20 % of attempts fail, failed callbacks are lost), so
    the callers who stay could have abandoned more.
    """
    seeds = (1, 2, 3, 4, 5)
    without = [simulate(STRESSED_SCENARIO, callbacks=False, seed=s).total for s in seeds]
    with_cb = [simulate(STRESSED_SCENARIO, callbacks=True, seed=s).total for s in seeds]

    def abandoned(kpis: list[QueueKpi]) -> int:
        return sum(k.abandoned - k.abandoned_short for k in kpis)

    assert sum(k.callbacks_requested for k in with_cb) > 100
    assert abandoned(with_cb) <= 0.9 * abandoned(without)
    assert sum(k.lost for k in with_cb) <= 0.9 * sum(k.lost for k in without)
    # Callers who stayed on the line were answered within 20 s more often.
    live = statistics.fmean(k.service_level(20.0, live_only=True) or 0.0 for k in with_cb)
    plain = statistics.fmean(k.service_level(20.0) or 0.0 for k in without)
    assert live > plain


def test_compare_policies_reports_both_policies() -> None:
    report = compare_policies(DEFAULT_SCENARIO, seeds=(1, 2))
    assert report["seeds"] == [1, 2] and report["agents"] == DEFAULT_SCENARIO.agent_count
    for policy in ("without_callbacks", "with_callbacks"):
        figures = report[policy]
        for key in ("service_level_20s", "service_level_60s", "abandonment_rate", "occupancy"):
            assert 0.0 <= figures[key] <= 1.0
    assert report["without_callbacks"]["callbacks_requested"] == 0
    assert report["with_callbacks"]["callbacks_requested"] > 0
    json.dumps(report)  # plain data


# -- a scenario computed by hand -----------------------------------------------------------

SOLO = Scenario(
    name="solo",
    profile=(1.0,),
    slot_s=600.0,
    teams=(Team("solo", (("accueil_general", 3),), 1),),
    ring_s=(2.0, 2.0),
    ring_no_answer_p=0.0,
    early_wrap_up_p=0.0,
    outbound_ring_s=(10.0, 10.0),
)


def solo_config() -> RoutingConfig:
    return RoutingConfig.simple(
        [QueueConfig("accueil_general", wrap_up_s=10.0, ring_timeout_s=20.0, max_wait_s=None)]
    )


def caller(
    call_id: str,
    offset: float,
    *,
    talk: float = 60.0,
    patience: float = 1000.0,
    accept: float = 0.9,
    attempts: tuple[float, ...] = (0.0, 0.0, 0.0),
) -> Caller:
    start = SOLO.start_time(solo_config().timezone)
    return Caller(
        call_id=call_id,
        queue="accueil_general",
        arrival=start + offset,
        priority=Priority.NORMAL,
        previous_contact_at=None,
        patience_s=patience,
        talk_s=talk,
        accept_draw=accept,
        attempt_draws=attempts,
    )


def test_hand_computed_scenario_without_callbacks() -> None:
    # One agent. c1 at 0 s: answered at 2 s (ring), talks 100 s, wrap-up to 112 s.
    # c2 at 10 s hangs up at 60 s. c3 at 20 s: offered at 112 s, answered at 114 s (wait 94 s),
    # talks 60 s, wrap-up to 184 s.
    callers = [
        caller("c1", 0, talk=100),
        caller("c2", 10, patience=50),
        caller("c3", 20, talk=60, patience=500),
    ]
    result = simulate(SOLO, callbacks=False, config=solo_config(), callers=callers)
    check_conservation(result)
    kpi = result.total
    assert (kpi.offered, kpi.answered, kpi.abandoned, kpi.abandoned_short) == (3, 2, 1, 0)
    assert kpi.ended == 3
    assert kpi.service_level(20.0) == pytest.approx(1 / 3)
    assert kpi.service_level(60.0) == pytest.approx(1 / 3)
    assert kpi.asa_s == pytest.approx((2 + 94) / 2)
    assert kpi.aht_s == pytest.approx(((100 + 10) + (60 + 10)) / 2)
    assert kpi.wrap_up_total_s == pytest.approx(20)
    assert kpi.abandonment_rate == pytest.approx(1 / 3)
    assert kpi.abandoned_wait_total_s == pytest.approx(50)
    assert kpi.longest_wait_s == pytest.approx(94)
    assert (kpi.callbacks_requested, kpi.lost) == (0, 1)
    # Busy 2 + 100 + 10 + 2 + 60 + 10 = 184 s of the 600 s window.
    assert result.occupancy == pytest.approx(184 / 600)
    assert dict(result.outcomes) == {"answered": 2, "abandoned": 1}
    assert result.last_outcome_s == pytest.approx(114)


def test_hand_computed_scenario_with_a_kept_callback() -> None:
    # c2 joins at 10 s behind c1's conversation: the estimate (one agent, no handle time yet:
    # the 300 s prior) is far above 120 s, c2 takes the callback keeping their place. c3
    # (joined at 20 s) hears it too, declines, and waits behind c2. The agent is free at 112 s:
    # c2 is dialled (offer at 112, taken at 114), rings 10 s, talks 40 s: ends at 164, wrap-up
    # to 174. c3 is offered at 174, answered at 176 (wait 156 s), talks 60 s, wrap-up to 246.
    callers = [
        caller("c1", 0, talk=100),
        caller("c2", 10, talk=40, patience=50, accept=0.0),
        caller("c3", 20, talk=60, patience=500),
    ]
    result = simulate(SOLO, callbacks=True, config=solo_config(), callers=callers)
    check_conservation(result)
    kpi = result.total
    assert (kpi.offered, kpi.answered, kpi.abandoned) == (3, 2, 0)
    assert (kpi.callbacks_requested, kpi.callbacks_dialled, kpi.callbacks_completed) == (1, 1, 1)
    assert kpi.callback_entries == 0 and kpi.lost == 0
    assert kpi.service_level(20.0) == pytest.approx(1 / 3)
    assert kpi.service_level(20.0, live_only=True) == pytest.approx(1 / 2)
    assert kpi.asa_s == pytest.approx((2 + 156) / 2)
    assert kpi.aht_s == pytest.approx((110 + (10 + 40 + 10) + 70) / 3)
    assert kpi.longest_wait_s == pytest.approx(156)
    assert result.occupancy == pytest.approx((112 + 62 + 72) / 600)
    assert dict(result.outcomes) == {"answered": 2, "callback_completed": 1}


def test_a_callback_that_never_reaches_the_caller_is_retried_then_lost() -> None:
    # c2's three attempts fail: dialled at 114 s, again after 15 min, again after 30 min.
    callers = [
        caller("c1", 0, talk=100),
        caller("c2", 10, accept=0.0, attempts=(0.9, 0.9, 0.9)),
    ]
    result = simulate(SOLO, callbacks=True, config=solo_config(), callers=callers)
    check_conservation(result)
    kpi = result.total
    assert (kpi.callbacks_requested, kpi.callbacks_dialled, kpi.callback_entries) == (1, 3, 2)
    assert (kpi.callbacks_completed, kpi.callbacks_failed, kpi.lost) == (0, 1, 1)
    assert dict(result.outcomes) == {"answered": 1, "callback_failed": 1}
    # Third attempt: 114 + 30 (failed attempt) + 900 (back-off), then + 30 + 1800, + 30.
    assert result.last_outcome_s == pytest.approx(114 + 30 + 900 + 2 + 30 + 1800 + 2 + 30)
