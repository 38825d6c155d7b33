"""Days and weeks of the line (routing/simulation.py, ``simulate_period``): volumes spread over
weekdays and half hours from the configuration's opening hours, the four policies, determinism
and conservation of calls."""

from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
from pathlib import Path

import pytest

from routing import load_routing_config
from routing.queue_config import RoutingConfig, default_routing_config_path
from routing.simulation import (
    DEFAULT_BOT_CONTAINMENT,
    DEFAULT_SCENARIO,
    DEFAULT_TEAMS,
    LOST_OUTCOMES,
    POLICIES,
    Caller,
    HourFigures,
    PeriodResult,
    PeriodScenario,
    Policy,
    apply_bot,
    compare_period_policies,
    draw_callers,
    period_scenario,
    scaled_teams,
    simulate_period,
)

from .test_simulation import check_conservation

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_routing_config(default_routing_config_path())
BASELINE, CALLBACKS, BOT, BOTH = POLICIES
ONE_DAY = PeriodScenario(days=1)


def slot_calls(scenario_rates: tuple[float, ...], peak: float) -> list[float]:
    """Expected calls per half-hour slot."""
    return [factor * peak / 2.0 for factor in scenario_rates]


def test_volumes_follow_the_year_the_weekdays_and_the_hours_of_the_configuration() -> None:
    week = PeriodScenario(days=5)
    scenario = period_scenario(week, CONFIG)
    calls = slot_calls(scenario.profile, scenario.peak_calls_per_hour)
    per_day = 100_000 / 251
    # Slot 0 is Monday 09:00 local; one day is 48 half hours.
    days = [sum(calls[d * 48 : (d + 1) * 48]) for d in range(5)]
    assert days == pytest.approx([per_day * f for f in (1.25, 1.05, 0.95, 0.9, 0.85)])
    monday = calls[:48]
    # Open 09:00-12:30 and 13:30-17:00 (routing/solidarites.yaml): 14 half hours with calls.
    assert [i for i, c in enumerate(monday) if c > 0] == [*range(0, 7), *range(9, 16)]
    # The opening peak: the first hour holds 20 % of the day, the busiest half hour is the
    # first, and the first hour of a Monday is the seed's ~100 calls.
    assert sum(monday[:2]) == pytest.approx(0.2 * days[0])
    assert max(monday) == monday[0]
    assert sum(monday[:2]) == pytest.approx(99.6, abs=0.1)
    assert (
        scenario.start_time(CONFIG.timezone)
        == dt.datetime(2025, 9, 1, 9, 0, tzinfo=CONFIG.timezone).timestamp()
    )


def test_the_opening_hours_come_from_the_configuration() -> None:
    # A line open 08:00-12:00 only: the profile's afternoon half hours are dropped and the
    # day's calls are spread over the morning ones (renormalised).
    mornings = dataclasses.replace(
        CONFIG.queues["accueil_general"],
        hours=dataclasses.replace(
            CONFIG.queues["accueil_general"].hours,  # type: ignore[type-var]
            weekly={d: (_range(8 * 60, 12 * 60),) for d in range(5)},
        ),
    )
    config = dataclasses.replace(CONFIG, queues={**CONFIG.queues, "accueil_general": mornings})
    scenario = period_scenario(ONE_DAY, config)
    calls = slot_calls(scenario.profile, scenario.peak_calls_per_hour)
    assert [i for i, c in enumerate(calls) if c > 0] == list(range(6))  # 09:00-11:30 slots
    assert sum(calls) == pytest.approx(100_000 / 251 * 1.25)


def _range(start: int, end: int) -> object:
    hours = CONFIG.queues["accueil_general"].hours
    assert hours is not None
    sample = next(iter(hours.weekly.values()))[0]
    return dataclasses.replace(sample, start_minutes=start, end_minutes=end)


def test_closed_days_are_skipped() -> None:
    # From Friday 7 November 2025: the weekend and Tuesday 11 November (a public holiday,
    # `public_holidays: FR` in the configuration) have no calls.
    period = PeriodScenario(first_day=dt.date(2025, 11, 7), days=3)
    result = simulate_period(period, policy=BASELINE, seed=1, config=CONFIG)
    days = {
        dt.datetime.fromtimestamp(h.start, CONFIG.timezone).date() for h in result.hours if h.calls
    }
    assert days == {dt.date(2025, 11, 7), dt.date(2025, 11, 10), dt.date(2025, 11, 12)}
    assert result.open_s == 3 * 7 * 3600


def test_same_seed_same_result_other_seed_other_result() -> None:
    first = simulate_period(ONE_DAY, policy=BOTH, seed=4, config=CONFIG)
    again = simulate_period(ONE_DAY, policy=BOTH, seed=4, config=CONFIG)
    other = simulate_period(ONE_DAY, policy=BOTH, seed=5, config=CONFIG)
    assert first.summary() == again.summary()
    assert first.hours == again.hours
    assert first.run.records == again.run.records
    assert first.summary() != other.summary()


def check_period(result: PeriodResult) -> None:
    """Every call to the line ends once: the bot, a conversation, a callback, or lost."""
    check_conservation(result.run)
    records = result.run.records
    bot = sum(result.bot_ended.values())
    assert result.calls == bot + len(records)
    outcomes = [r.outcome for r in records]
    answered = outcomes.count("answered")
    completed = outcomes.count("callback_completed")
    assert answered + completed + result.lost + result.short_abandoned == len(records)
    assert result.lost == sum(1 for r in records if r.outcome in LOST_OUTCOMES) - (
        result.short_abandoned
    )
    # The hours add up to the totals.
    assert sum(h.calls for h in result.hours) == result.calls
    assert sum(h.bot_ended for h in result.hours) == bot
    assert sum(h.answered for h in result.hours) == answered
    assert sum(h.lost for h in result.hours) == result.lost
    assert all(h.answered_20s <= h.answered_60s <= h.answered for h in result.hours)
    summary = result.summary()
    refused = sum(1 for r in records if r.outcome in ("refused_full", "refused_closed"))
    assert summary["offered"] + summary["bot_ended"] + refused == result.calls
    if result.run.total.offered:
        assert summary["service_level_20s"] <= summary["service_level_60s"]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_conservation_over_a_week(policy: Policy) -> None:
    result = simulate_period(PeriodScenario(days=5), policy=policy, seed=2, config=CONFIG)
    check_period(result)
    assert result.calls > 1800  # ~2 000 calls in the week
    assert result.open_s == 5 * 7 * 3600
    assert result.occupancy is not None and 0.1 < result.occupancy < 1.0
    assert result.run.agents == 14


def test_all_policies_see_the_same_callers() -> None:
    results = compare_period_policies(ONE_DAY, seed=3, config=CONFIG)
    assert [r.policy for r in results] == list(POLICIES)
    assert len({r.calls for r in results}) == 1
    assert [h.calls for h in results[0].hours] == [h.calls for h in results[3].hours]
    assert results[0].bot_ended == {} and results[1].bot_ended == {}
    assert results[2].bot_ended == results[3].bot_ended  # the bot's draws do not depend on
    # the callbacks


def test_the_bot_ends_its_share_and_delays_the_others() -> None:
    scenario = period_scenario(PeriodScenario(days=5), CONFIG)
    start = scenario.start_time(CONFIG.timezone)
    callers = draw_callers(scenario, 1, start)
    reached, ended = apply_bot(callers, dict(DEFAULT_BOT_CONTAINMENT), 45.0, 1)
    assert len(reached) + sum(ended.values()) == len(callers)
    assert "urgence_sociale" not in ended  # distress always reaches a person
    share = sum(ended.values()) / len(callers)
    mix = dict(DEFAULT_SCENARIO.mix)
    expected = sum(mix[q] * c for q, c in DEFAULT_BOT_CONTAINMENT) / sum(mix.values())
    assert expected == pytest.approx(0.274, abs=0.001)
    assert share == pytest.approx(expected, abs=0.03)
    by_id: dict[str, Caller] = {c.call_id: c for c in callers}
    for caller in reached:
        before = by_id[caller.call_id]
        assert caller.arrival == before.arrival + 45.0
        assert (caller.talk_s, caller.patience_s, caller.queue) == (
            before.talk_s,
            before.patience_s,
            before.queue,
        )
    # Nobody contained: the same callers, only later.
    none, nothing = apply_bot(callers, {}, 0.0, 1)
    assert none == callers and nothing == {}


def test_the_bot_lowers_the_load_on_agents() -> None:
    base, with_bot = (
        simulate_period(PeriodScenario(days=2), policy=p, seed=6, config=CONFIG)
        for p in (BASELINE, BOT)
    )
    assert with_bot.calls == base.calls
    assert with_bot.run.total.offered < 0.8 * base.run.total.offered
    assert with_bot.run.busy_s < 0.85 * base.run.busy_s
    assert with_bot.lost < base.lost


def test_callbacks_lower_abandonment_at_a_peak() -> None:
    # A Monday at 1.5 × the seed's volume (the first hour ~150 calls, 14 agents): over three
    # seeds, keep-place callbacks cut the abandons and the lost calls, with and without bot.
    stressed = PeriodScenario(days=1, calls_per_year=150_000)
    lost: dict[str, list[int]] = {p.name: [] for p in POLICIES}
    abandoned: dict[str, list[int]] = {p.name: [] for p in POLICIES}
    for seed in (1, 2, 3):
        for result in compare_period_policies(stressed, seed=seed, config=CONFIG):
            check_period(result)
            lost[result.policy.name].append(result.lost)
            total = result.run.total
            abandoned[result.policy.name].append(total.abandoned - total.abandoned_short)
            if result.policy.callbacks:
                assert total.callbacks_requested > 0
    assert statistics.fmean(abandoned["callbacks"]) < 0.8 * statistics.fmean(abandoned["baseline"])
    assert statistics.fmean(lost["callbacks"]) < 0.8 * statistics.fmean(lost["baseline"])
    assert statistics.fmean(lost["bot+callbacks"]) < statistics.fmean(lost["bot"])


def test_the_opening_peak_shows_in_the_hours() -> None:
    stressed = PeriodScenario(days=1, calls_per_year=150_000)
    result = simulate_period(stressed, policy=BASELINE, seed=1, config=CONFIG)
    hours = result.hours
    local = [dt.datetime.fromtimestamp(h.start, CONFIG.timezone).hour for h in hours]
    assert local == [9, 10, 11, 12, 13, 14, 15, 16]
    assert hours[0].calls == max(h.calls for h in hours)
    # The lunch closure: the 12:00 hour has the half hour 12:00-12:30 only.
    assert hours[3].calls < hours[2].calls / 1.5
    # The morning peak (and its backlog) holds most of the lost calls and the worst
    # service levels of the day.
    assert hours[0].lost + hours[1].lost > result.lost / 2

    def level(h: HourFigures) -> float:
        return h.answered_60s / h.reached_queue

    assert max(level(h) for h in hours[:2]) < min(level(h) for h in hours[4:])


def test_scaled_teams_keep_the_proportions() -> None:
    assert sum(t.count for t in scaled_teams(DEFAULT_TEAMS, 14)) == 14
    assert scaled_teams(DEFAULT_TEAMS, 14) == DEFAULT_TEAMS
    doubled = scaled_teams(DEFAULT_TEAMS, 28)
    assert [t.count for t in doubled] == [2 * t.count for t in DEFAULT_TEAMS]
    small = scaled_teams(DEFAULT_TEAMS, 6)
    assert sum(t.count for t in small) == 6 and all(t.count >= 1 for t in small)
    with pytest.raises(ValueError, match="agents"):
        scaled_teams(DEFAULT_TEAMS, 0)
    period = PeriodScenario(
        days=1, base=dataclasses.replace(DEFAULT_SCENARIO, teams=scaled_teams(DEFAULT_TEAMS, 20))
    )
    result = simulate_period(period, policy=BASELINE, seed=1, config=CONFIG)
    assert result.run.agents == 20


def test_bad_periods_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown queue"):
        period_scenario(PeriodScenario(hours_queue="nope"), CONFIG)
    with pytest.raises(ValueError, match="7 values"):
        period_scenario(PeriodScenario(weekday_factors=(1.0,) * 5), CONFIG)
    with pytest.raises(ValueError, match="no calls"):
        period_scenario(PeriodScenario(calls_per_year=0.0), CONFIG)


def test_the_peak_hour_api_is_unchanged() -> None:
    # The busiest-hour scenario keeps its one-day horizon and its results carry the records.
    assert DEFAULT_SCENARIO.horizon_s is None
    config: RoutingConfig = CONFIG
    from routing.simulation import simulate

    result = simulate(DEFAULT_SCENARIO, callbacks=False, seed=1, config=config)
    assert len(result.records) == result.callers
    assert sum(1 for r in result.records if r.outcome == "answered") == result.outcomes["answered"]
    assert result.busy_s > 0
