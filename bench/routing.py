"""Benchmark: the pure routing engine (routing.Router) under a loaded call centre.

Eight queues with the shipped relaxation/overflow rules and opening hours, agents with one to
three skills (proficiency 1-5). The router is first filled: every agent busy, ``--calls``
callers waiting. Then a steady state is driven for ``--events`` events, in rounds of four: a
new caller joins, an agent's conversation ends (wrap-up starts), the agent ends the wrap-up
(the router picks the best waiting call for them: an OfferCall decision), the agent accepts.
Time advances 0.25 s per event, so relaxation and overflow timers fire along the way.

Each ``handle()`` is timed with ``perf_counter_ns``. Printed (one JSON object per scenario):
decisions per second (every decision the router returns), offers per second, and the cost of
one event (p50/p99/max, µs) — all events, and the events that produced an offer ("decision
latency") — in wall time and in the thread's CPU time (which excludes preemption when the
machine is shared), with the load average. Default scenarios: 200 agents / 1 000 waiting
calls (the brief) and 1 000 agents / 2 000 waiting calls (issue 5, target p99 ≤ 1 ms).

``--simulate`` runs the peak-hour discrete-event simulation instead (routing/simulation.py:
the real router, the shipped configuration, 14 agents): the seed's busiest hour (100 calls)
and the stressed variant (150 calls), each without and with keep-place callbacks, averaged
over ``--seeds`` seeds (the same callers for both policies). Printed: service level 20 s /
60 s (all callers, and callers who stayed on the line), abandonment, lost callers, ASA, AHT,
longest wait, callbacks requested / completed / failed, agent occupancy.

    .venv/bin/python bench/routing.py                   # both scenarios
    .venv/bin/python bench/routing.py --agents 200 --calls 1000 --events 20000
    .venv/bin/python bench/routing.py --simulate        # the peak-hour simulation
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

# Run as a script, this file's directory comes first on sys.path and "routing" would import
# this file: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from routing import (  # noqa: E402 (after the sys.path fix)
    AgentLoggedIn,
    CallEnded,
    CallQueued,
    Decision,
    Event,
    OfferAccepted,
    OfferCall,
    Priority,
    QueueConfig,
    QueuedCall,
    Router,
    RoutingConfig,
    WrapUpDone,
    load_routing_config,
)
from routing.queue_config import default_routing_config_path  # noqa: E402
from routing.simulation import (  # noqa: E402
    DEFAULT_SCENARIO,
    STRESSED_SCENARIO,
    compare_policies,
)

MIX = {
    "accueil_general": 25,
    "apa": 22,
    "mdph_adulte": 18,
    "mdph_enfant": 8,
    "paiement": 12,
    "aide_sociale_hebergement": 6,
    "urgence_sociale": 3,
    "reclamation": 6,
}


def bench_config() -> RoutingConfig:
    """The shipped rules, with no size or wait limit so that the queues stay long."""
    shipped = load_routing_config(default_routing_config_path())
    queues = [
        QueueConfig(
            name=q.name,
            min_proficiency=q.min_proficiency,
            relaxation=q.relaxation,
            overflow=q.overflow,
            wrap_up_s=q.wrap_up_s,
            ring_timeout_s=q.ring_timeout_s,
            max_wait_s=None,
            max_size=None,
            hours=q.hours,
        )
        for q in shipped.queues.values()
    ]
    return RoutingConfig.simple(queues, skills=shipped.skills, timezone=shipped.timezone)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(agents: int, calls: int, events: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    config = bench_config()
    router = Router(config=config)
    names, weights = list(MIX), list(MIX.values())
    # Monday 2 June 2025, 09:00 in Paris: the queues are open for 3.5 hours.
    now = dt.datetime(2025, 6, 2, 9, 0, tzinfo=ZoneInfo("Europe/Paris")).timestamp()
    on_call: list[tuple[str, str]] = []
    seq = 0

    def apply(event: Event) -> list[Decision]:
        out = router.handle(event)
        for d in out:
            if isinstance(d, OfferCall):
                accepted = router.handle(OfferAccepted(d.agent_id, d.call.call_id, d.at))
                assert not [x for x in accepted if isinstance(x, OfferCall)]
                on_call.append((d.agent_id, d.call.call_id))
        return out

    def new_call(t: float, joined_at: float) -> CallQueued:
        nonlocal seq
        seq += 1
        priority = Priority.HIGH if rng.random() < 0.05 else Priority.NORMAL
        skill = rng.choices(names, weights)[0]
        return CallQueued(QueuedCall(f"c{seq}", skill, priority, joined_at=joined_at), t)

    def waiting() -> int:
        # Offers are accepted at once, so every call counted in its queue is waiting.
        return sum(router.queue_size(q) for q in config.queues)

    for index in range(agents):
        skills = {s: rng.randint(1, 5) for s in rng.sample(names, rng.randint(1, 3))}
        apply(AgentLoggedIn(f"a{index}", skills, now))
    # Fill: agents busy, then `calls` callers waiting, who joined over the last 10 minutes (so
    # that their relaxation and overflow steps are spread in time).
    while waiting() < calls and seq < 20 * (agents + calls):
        apply(new_call(now, now - rng.uniform(0, 600)))
    waiting_at_start = waiting()

    costs: list[float] = []
    cpu_costs: list[float] = []
    offer_costs: list[float] = []
    offer_cpu_costs: list[float] = []
    decisions = offers = 0

    def timed(event: Event) -> list[Decision]:
        nonlocal decisions
        cpu = time.thread_time_ns()
        start = time.perf_counter_ns()
        out = router.handle(event)
        costs.append((time.perf_counter_ns() - start) / 1000)
        cpu_costs.append((time.thread_time_ns() - cpu) / 1000)
        decisions += len(out)
        return out

    t0 = time.perf_counter()
    while len(costs) < events:
        # A caller joins; an agent ends a conversation, then the wrap-up: the router offers
        # them the best waiting call, which they accept.
        now += 0.25
        timed(new_call(now, now))
        agent_id, call_id = on_call.pop(rng.randrange(len(on_call)))
        now += 0.25
        timed(CallEnded(agent_id, call_id, now))
        now += 0.25
        out = timed(WrapUpDone(agent_id, now, resolved=True))
        made = [d for d in out if isinstance(d, OfferCall)]
        if made:
            offer_costs.append(costs[-1])
            offer_cpu_costs.append(cpu_costs[-1])
            offers += len(made)
        for d in made:
            timed(OfferAccepted(d.agent_id, d.call.call_id, now))
            on_call.append((d.agent_id, d.call.call_id))
    elapsed = time.perf_counter() - t0
    handled = sum(costs) / 1e6
    return {
        "agents": agents,
        "queues": len(config.queues),
        "waiting_calls_at_start": waiting_at_start,
        "waiting_calls_at_end": waiting(),
        "events": len(costs),
        "decisions": decisions,
        "offers": offers,
        "seconds_in_router": round(handled, 3),
        "seconds_wall": round(elapsed, 3),
        "decisions_per_s": round(decisions / handled),
        "offers_per_s": round(offers / sum(offer_costs) * 1e6) if offer_costs else 0,
        "event_us_p50": round(statistics.median(costs), 1),
        "event_us_p99": round(percentile(costs, 0.99), 1),
        "event_us_max": round(max(costs), 1),
        "offer_event_us_p50": round(statistics.median(offer_costs), 1) if offer_costs else None,
        "offer_event_us_p99": round(percentile(offer_costs, 0.99), 1) if offer_costs else None,
        # CPU time of the thread: the same figures without preemption by other processes.
        "event_cpu_us_p50": round(statistics.median(cpu_costs), 1),
        "event_cpu_us_p99": round(percentile(cpu_costs, 0.99), 1),
        "offer_event_cpu_us_p99": (
            round(percentile(offer_cpu_costs, 0.99), 1) if offer_cpu_costs else None
        ),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


def simulate(seeds: int) -> dict[str, object]:
    """The peak-hour simulation: both scenarios, both policies, ``seeds`` seeds each."""
    config = load_routing_config(default_routing_config_path())
    start = time.perf_counter()
    scenarios = []
    for scenario in (DEFAULT_SCENARIO, STRESSED_SCENARIO):
        report = compare_policies(scenario, seeds=range(1, seeds + 1), config=config)
        report["seeds"] = f"1-{seeds}"
        scenarios.append(report)
    return {"simulation": scenarios, "seconds_wall": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, help="one scenario with this many agents")
    parser.add_argument("--calls", type=int, default=1000, help="waiting calls to keep")
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--simulate", action="store_true", help="run the peak-hour simulation instead"
    )
    parser.add_argument("--seeds", type=int, default=20, help="simulation runs per policy")
    args = parser.parse_args()
    if args.simulate:
        print(json.dumps(simulate(args.seeds), indent=2))
        return
    scenarios = [(args.agents, args.calls)] if args.agents else [(200, 1000), (1000, 2000)]
    results = [run(agents, calls, args.events, args.seed) for agents, calls in scenarios]
    print(json.dumps(results if len(results) > 1 else results[0], indent=2))


if __name__ == "__main__":
    main()
