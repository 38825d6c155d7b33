"""Benchmark: ``callcenter plan`` — Erlang C / Erlang A staffing tables and the week simulation.

Printed (one JSON object):

- ``erlang``: the time to compute a staffing table (Erlang C and Erlang A per number of agents,
  plus the smallest staffing for 80 % in 20 s) for the seed's busiest hour (100 calls/h,
  320 s) and for a large centre (1 500 calls/h, 300 s), median of ``--repeat`` runs; and the
  recommended agents.
- ``simulation``: for each policy (without bot or callbacks, callbacks, bot, bot + callbacks),
  one week (5 working days, the seed's 100 000 calls/year, 14 agents, the real router and
  ``routing/solidarites.yaml``) per seed: wall and CPU time per simulated week, router events,
  and the headlines averaged over the seeds (calls, ended by the bot, offered, answered, lost,
  abandonment, service level 20 s / 60 s, ASA, p90 wait, callbacks, occupancy).

    .venv/bin/python bench/plan.py                 # seeds 1-5
    .venv/bin/python bench/plan.py --seeds 1 2 3 --days 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path and "routing" would import
# bench/routing.py: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from routing import load_routing_config  # noqa: E402 (after the sys.path fix)
from routing.queue_config import default_routing_config_path  # noqa: E402
from routing.simulation import POLICIES, PeriodScenario, simulate_period  # noqa: E402
from routing.staffing import StaffingTarget, required_agents, staffing_table  # noqa: E402


def bench_erlang(calls_per_hour: float, aht_s: float, repeat: int) -> dict[str, Any]:
    target = StaffingTarget(0.8, 20.0)

    def once() -> tuple[int, int, int]:
        c = required_agents(calls_per_hour, aht_s, target)
        a = required_agents(calls_per_hour, aht_s, target, patience_s=180.0)
        low, high = max(1, a.agents - 2), c.agents + 6
        rows = staffing_table(calls_per_hour, aht_s, 20.0, range(low, high), patience_s=180.0)
        return c.agents, a.agents, len(rows)

    c_agents, a_agents, rows = once()
    times: list[float] = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        once()
        times.append(time.perf_counter() - t0)
    return {
        "calls_per_hour": calls_per_hour,
        "aht_s": aht_s,
        "rows": rows,
        "table_ms_median": round(statistics.median(times) * 1000, 2),
        "erlang_c_agents": c_agents,
        "erlang_a_agents_patience_180s": a_agents,
    }


def bench_week(days: int, seeds: list[int]) -> dict[str, Any]:
    config = load_routing_config(default_routing_config_path())
    period = PeriodScenario(days=days)
    out: dict[str, Any] = {}
    for policy in POLICIES:
        walls: list[float] = []
        cpus: list[float] = []
        summaries: list[dict[str, Any]] = []
        events: list[int] = []
        for seed in seeds:
            w0, c0 = time.perf_counter(), time.process_time()
            result = simulate_period(period, policy=policy, seed=seed, config=config)
            walls.append(time.perf_counter() - w0)
            cpus.append(time.process_time() - c0)
            summaries.append(result.summary())
            events.append(result.elapsed_events)
        keys = [
            "calls",
            "bot_ended",
            "offered",
            "answered",
            "lost",
            "lost_rate",
            "abandoned_rate",
            "service_level_20s",
            "service_level_60s",
            "asa_s",
            "wait_p90_s",
            "callbacks_requested",
            "callbacks_completed",
            "callbacks_failed",
            "occupancy",
        ]
        mean: dict[str, Any] = {
            key: round(statistics.fmean(s[key] for s in summaries if s[key] is not None), 3)
            for key in keys
        }
        mean["lost_min_max"] = [
            min(s["lost"] for s in summaries),
            max(s["lost"] for s in summaries),
        ]
        out[policy.name] = {
            "wall_s_per_run_median": round(statistics.median(walls), 3),
            "cpu_s_per_run_median": round(statistics.median(cpus), 3),
            "router_events_mean": round(statistics.fmean(events)),
            "mean_over_seeds": mean,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    report = {
        "bench": "plan",
        "erlang": [
            bench_erlang(100.0, 320.0, args.repeat),
            bench_erlang(1500.0, 300.0, max(1, args.repeat // 4)),
        ],
        "simulation": {
            "days": args.days,
            "seeds": args.seeds,
            "agents": 14,
            "calls_per_year": PeriodScenario().calls_per_year,
            "policies": bench_week(args.days, args.seeds),
        },
        "load_average_1min": round(os.getloadavg()[0], 2),
        "python": sys.version.split()[0],
    }
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
