"""Benchmark: the cost of ``GET /metrics`` with realistic label cardinality, and of the dashboards.

Builds one ``callcenter.metrics.Metrics`` as a node running the shipped configuration would have
it after a busy day: every queue of ``routing/solidarites.yaml`` with answered, abandoned,
callback and refused waits, every refusal reason, agents per queue and wrap-ups, every pause
reason, every intent of ``faq/solidarites.yaml`` decided, answered and contained, the hand-off
reasons of the flow, SIP methods and codes, DTMF, ASR engines, callbacks, panel actions, RTP.
Then it times ``Metrics.render()`` (the body of ``GET /metrics``) and prints its size in bytes
and samples (series).

With ``--prometheus`` (needs Debian's ``/usr/bin/prometheus`` and ``promtool``) it also
backfills ``--hours`` of that node's history at ``--step`` seconds (counters growing like a busy
day, written by ``promtool tsdb create-blocks-from openmetrics``), starts Prometheus on 127.0.0.1
on that TSDB with the project's rules, and times every query of the four dashboards over the
last ``--hours`` (``$__range``), as Grafana sends them when a supervisor opens a dashboard.

    .venv/bin/python bench/metrics_scrape.py
    .venv/bin/python bench/metrics_scrape.py --prometheus --hours 24 --step 60
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path: put the repository root there.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

from callcenter.metrics import (  # noqa: E402 (after the sys.path fix)
    AGENT_OFFER_RESULTS,
    BOT_DECISIONS,
    BOT_FAILURES,
    BOT_RESULTS,
    CALL_OUTCOMES,
    CALLBACK_ATTEMPT_OUTCOMES,
    CALLBACK_MODES,
    CALLBACK_RESULTS,
    DTMF_METHODS,
    PANEL_ACTIONS,
    QUEUE_REFUSALS,
    SIP_METHODS,
    Metrics,
)
from faq import default_knowledge_base_path, load_knowledge_base  # noqa: E402
from routing import load_routing_config  # noqa: E402

REPO = _HERE.parent
HANDOFF_REASONS = (
    "menu_apa",
    "menu_mdph_adulte",
    "menu_mdph_enfant",
    "menu_paiement",
    "conseiller",
    "bot",
    "no_input",
    "needs_person",
    "intent_always",
    "not_identified",
    "satisfied_non",
)
SIP_CODES = (100, 180, 183, 200, 202, 401, 403, 404, 407, 408, 480, 481, 486, 487, 488, 500, 503)


def busy_node(rng: random.Random, scale: int = 1) -> Metrics:
    """A node's metrics with every bounded label value in use (``scale`` = calls per value)."""
    m = Metrics()
    config = load_routing_config(REPO / "routing" / "solidarites.yaml")
    kb = load_knowledge_base(default_knowledge_base_path())
    intents = [intent.id for intent in kb.intents]
    m.set_queues(config.queues)
    m.set_pause_reasons(config.pause_reasons)
    m.set_intents(intents)
    m.set_queues_open(dict.fromkeys(config.queues, True))
    m.set_dependency("database", True)
    m.set_dependency("redis", True)
    m.set_registration_up(True)
    m.set_registration_configured(True)
    for _ in range(scale):
        for queue in config.queues:
            m.queue_event("joined", queue)
            m.queue_event("answered", queue, rng.expovariate(1 / 40))
            m.queue_event("abandoned", queue, rng.expovariate(1 / 90))
            m.queue_event("callback", queue, rng.uniform(30, 300))
            for reason in QUEUE_REFUSALS:
                # Refusals at the door (full, unstaffed) come without a wait, as in the service.
                waited = reason in ("closed", "max_wait")
                m.queue_event(reason, queue, rng.uniform(0, 900) if waited else None)
            m.wrap_up_ended(queue, rng.uniform(60, 900), rng.choice((True, False, None)))
        for intent in intents:
            m.bot_answer(intent)
            for decision in BOT_DECISIONS:
                m.bot_decision(intent, decision)
            for result in BOT_RESULTS:
                m.bot_intents([intent], result)
        for result in BOT_RESULTS:
            m.bot_call(result)
        for kind in BOT_FAILURES:
            m.bot_failure(kind)
        for reason in HANDOFF_REASONS:
            for priority in ("normal", "high", "critical"):
                m.handoff(reason, priority)
        for engine in ("whisper-base", "vosk-model-small-fr"):
            m.asr_result(engine, rng.uniform(0.2, 1.5), rng.uniform(0.1, 1.0))
        m.bot_replied(rng.uniform(0.4, 2.5))
        for method in sorted(SIP_METHODS):
            m.sip_request(method)
        for code in SIP_CODES:
            m.sip_response(code)
        for method in DTMF_METHODS:
            m.dtmf_digit(method)
        for outcome in CALL_OUTCOMES:
            m.call_started()
            m.call_ended(outcome, rng.uniform(10, 600))
        for result in AGENT_OFFER_RESULTS:
            m.agent_offer(result)
        for mode in CALLBACK_MODES:
            m.callback_requested(mode)
        for outcome in CALLBACK_ATTEMPT_OUTCOMES:
            m.callback_attempt(outcome)
        for result in CALLBACK_RESULTS:
            m.callback_ended(result)
        for action in PANEL_ACTIONS:
            m.panel_action(action)
        m.rtp_lost_packet(rng.randrange(3))
        m.rtp_received_packet(rng.randrange(500, 15000))
        m.rtp_late_frame(rng.randrange(3))
    m.watch_asr_errors("whisper", lambda: 2)
    m.set_callbacks(pending=3, overdue=0)
    states: list[tuple[str, str | None]] = [("available", None), ("on_call", None)] * 10
    states += [("wrap_up", None)] * 10
    states += [("paused", reason) for reason in config.pause_reasons]
    m.set_agent_states(states)
    m.set_waiting({queue: rng.randrange(5) for queue in config.queues})
    m.set_queue_agents({queue: rng.randrange(6) for queue in config.queues})
    m.watch_routing_mode(lambda: False, lambda: 2)
    return m


def time_render(m: Metrics, rounds: int) -> dict[str, Any]:
    body, _ = m.render()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        m.render()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    samples = [line for line in body.decode().splitlines() if line and not line.startswith("#")]
    families = [line for line in body.decode().splitlines() if line.startswith("# TYPE ")]
    return {
        "render_ms_p50": round(statistics.median(times), 3),
        "render_ms_p99": round(times[min(len(times) - 1, int(len(times) * 0.99))], 3),
        "render_ms_mean": round(statistics.fmean(times), 3),
        "bytes": len(body),
        "samples": len(samples),
        "created_samples": len([s for s in samples if "_created" in s.split(" ")[0]]),
        "families": len(families),
        "rounds": rounds,
    }


# --- optional: Prometheus over a backfilled day ------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$")


def openmetrics_history(hours: float, step: int, end: float, rng: random.Random) -> str:
    """``hours`` of a busy node's scrapes as one OpenMetrics text (families kept together)."""
    m = busy_node(rng)
    order: list[str] = []
    headers: dict[str, list[str]] = {}
    samples: dict[str, list[str]] = {}
    points = int(hours * 3600 / step)
    for i in range(points):
        ts = end - (points - 1 - i) * step
        # A few calls per step: counters and histograms grow, gauges move.
        for _ in range(rng.randrange(1, 4)):
            m.call_started()
            m.call_ended(rng.choice(("completed", "queued", "abandoned")), rng.uniform(20, 400))
        m.queue_event("answered", rng.choice(("apa", "paiement")), rng.expovariate(1 / 40))
        if rng.random() < 0.1:
            m.queue_event("abandoned", "apa", rng.expovariate(1 / 90))
        if rng.random() < 0.05:
            m.queue_event("callback", "apa", rng.uniform(60, 300))
        if rng.random() < 0.05:
            m.queue_event(rng.choice(("full", "unstaffed")), "paiement")
        m.rtp_received_packet(rng.randrange(1000, 10000))
        m.rtp_lost_packet(rng.randrange(0, 20))
        m.set_waiting({"apa": rng.randrange(4), "paiement": rng.randrange(3)})
        family = ""
        for line in m.render()[0].decode().splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                family = line.split()[2]
                if family not in headers:
                    order.append(family)
                    headers[family] = []
                    samples[family] = []
                if i == 0:
                    headers[family].append(line)
                continue
            if _SAMPLE.match(line) is None:
                continue
            samples[family].append(f"{line} {ts:.3f}")
    out: list[str] = []
    for family in order:
        name = _om_name(family, headers[family])
        out += [h.replace(f" {family} ", f" {name} ", 1) for h in headers[family]]
        out += sorted(samples[family], key=_series_key)
    return "\n".join(out) + "\n# EOF\n"


def _om_name(family: str, header: list[str]) -> str:
    # OpenMetrics names a counter family without ``_total`` (its samples keep it).
    is_counter = any(h.startswith("# TYPE ") and h.endswith(" counter") for h in header)
    return family.removesuffix("_total") if is_counter else family


def _series_key(line: str) -> tuple[str, float]:
    head, _, ts = line.rpartition(" ")
    return head.rpartition(" ")[0], float(ts)


def time_dashboards(hours: float, step: int) -> dict[str, Any]:
    from tests.dashboards.prometheus import (
        PROMTOOL,
        dashboard_exprs,
        grafana_to_promql,
        run_prometheus,
    )

    rng = random.Random(7)
    end = time.time() - 120
    with tempfile.TemporaryDirectory(prefix="bench-prom-") as tmp:
        workdir = Path(tmp)
        history = workdir / "history.om"
        start = time.perf_counter()
        history.write_text(openmetrics_history(hours, step, end, rng))
        generated_s = time.perf_counter() - start
        start = time.perf_counter()
        subprocess.run(
            [
                PROMTOOL,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                str(history),
                str(workdir / "tsdb"),
            ],
            check=True,
            capture_output=True,
            timeout=600,
        )
        backfill_s = time.perf_counter() - start
        with run_prometheus(
            workdir, ["127.0.0.1:9"], interval="15s", retention=f"{int(hours) + 2}h"
        ) as prom:
            # The TSDB directory given to run_prometheus is workdir/tsdb: the backfilled blocks.
            range_ = f"{int(hours * 3600)}s"
            timings = []
            errors = []
            with_data = 0
            for where, expr in dashboard_exprs():
                query = grafana_to_promql(expr, range_)
                t0 = time.perf_counter()
                try:
                    with_data += bool(prom.query(query))
                except Exception as exc:  # noqa: BLE001 (report, do not stop the benchmark)
                    errors.append(f"{where}: {exc}")
                timings.append((time.perf_counter() - t0) * 1000)
            over_range = sum(1 for _, expr in dashboard_exprs() if "$__range" in expr)
        timings.sort()
        return {
            "history_hours": hours,
            "history_step_s": step,
            "history_bytes": history.stat().st_size,
            "generate_s": round(generated_s, 2),
            "backfill_s": round(backfill_s, 2),
            "queries": len(timings),
            "queries_over_range": over_range,
            "queries_with_data": with_data,
            "query_ms_p50": round(statistics.median(timings), 2),
            "query_ms_max": round(timings[-1], 2),
            "query_ms_total": round(sum(timings), 1),
            "errors": errors,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=500, help="renders timed")
    parser.add_argument("--prometheus", action="store_true", help="also time the dashboards")
    parser.add_argument("--hours", type=float, default=24.0, help="history backfilled")
    parser.add_argument("--step", type=int, default=60, help="seconds between backfilled scrapes")
    args = parser.parse_args()
    m = busy_node(random.Random(1))
    result: dict[str, Any] = {"benchmark": "metrics_scrape", "render": time_render(m, args.rounds)}
    if args.prometheus:
        result["dashboards"] = time_dashboards(args.hours, args.step)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
