"""Benchmark of the call event trail writer on SQLite.

Prints JSON with:

- ``throughput``: events/s the background writer sustains when flooded (events queued in
  chunks as fast as the loop allows for ``--duration`` seconds, then flushed; rate = events
  written / time until the final flush returned), and the largest queue seen.
- ``loop_lag``: event-loop lateness (a 1 ms sleeper measuring how late it wakes) p50/p99/max
  in ms, at rest and while ``--calls`` simulated calls each record ``--events-per-second``
  events (paced like a call's tasks) — the p99 difference is the latency the trail adds.
- ``record_call_us``: mean cost of one synchronous ``CallTrail.record`` call.

Usage: ``.venv/bin/python bench/trail_writes.py [--duration 5] [--calls 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from callcenter.store import CallTrail


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _probe(stop: asyncio.Event, lags: list[float], period: float = 0.001) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        expected = loop.time() + period
        await asyncio.sleep(period)
        lags.append(max(0.0, loop.time() - expected) * 1000)


def _lag_summary(lags: list[float]) -> dict[str, float]:
    return {
        "samples": len(lags),
        "p50_ms": round(_percentile(lags, 0.50), 3),
        "p99_ms": round(_percentile(lags, 0.99), 3),
        "max_ms": round(max(lags, default=0.0), 3),
    }


async def _measure_lag(seconds: float) -> list[float]:
    stop = asyncio.Event()
    lags: list[float] = []
    task = asyncio.create_task(_probe(stop, lags), name="lag-probe")
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return lags


async def _throughput(url: str, duration: float) -> dict[str, float]:
    trail = CallTrail.from_url(url)
    await trail.start()
    now = datetime.now(UTC)
    calls = 200
    chunk = 2000  # per 5 ms: far more than the writer can take, so the writer is the limit
    for n in range(calls):
        trail.call_started(f"flood-{n}", dialled="3975", caller=None, flow_id="f", at=now)
    queued = 0
    max_pending = 0
    start = time.perf_counter()
    while time.perf_counter() - start < duration:
        # Keep the writer saturated without overflowing its queue (which would drop events).
        if trail.pending < 50_000:
            for i in range(chunk):
                trail.record(f"flood-{i % calls}", "dtmf", {"digit": "5", "method": "rfc4733"}, now)
            queued += chunk
        max_pending = max(max_pending, trail.pending)
        await asyncio.sleep(0.005)
    ok = await trail.flush()
    elapsed = time.perf_counter() - start
    written = trail.stats.written - calls
    await trail.close()
    return {
        "events_queued": queued,
        "events_written": written,
        "seconds": round(elapsed, 3),
        "events_per_second": round(written / elapsed),
        "max_pending": max_pending,
        "flush_ok": ok,
    }


async def _call(trail: CallTrail, call_id: str, rate: float, stop: asyncio.Event) -> None:
    trail.call_started(
        call_id, dialled="3975", caller="+33100000000", flow_id="f", at=datetime.now(UTC)
    )
    period = 1.0 / rate
    n = 0
    while not stop.is_set():
        await asyncio.sleep(period)
        trail.record(
            call_id, "flow_node", {"node_id": f"n{n}", "node_type": "say"}, datetime.now(UTC)
        )
        n += 1
    trail.call_ended(call_id, outcome="completed", cause="bye", side="caller", at=datetime.now(UTC))


async def _loop_lag(url: str, duration: float, calls: int, rate: float) -> dict[str, object]:
    at_rest = await _measure_lag(min(duration, 2.0))
    trail = CallTrail.from_url(url)
    await trail.start()
    stop = asyncio.Event()
    callers = [
        asyncio.create_task(_call(trail, f"paced-{n}", rate, stop), name=f"call-{n}")
        for n in range(calls)
    ]
    under_load = await _measure_lag(duration)
    stop.set()
    await asyncio.gather(*callers)
    await trail.flush()
    written = trail.stats.written
    await trail.close()
    rest, load = _lag_summary(at_rest), _lag_summary(under_load)
    return {
        "calls": calls,
        "events_per_second_offered": calls * rate,
        "operations_written": written,
        "at_rest": rest,
        "under_load": load,
        "p99_added_ms": round(load["p99_ms"] - rest["p99_ms"], 3),
    }


def _record_cost(url: str) -> float:
    async def run() -> float:
        trail = CallTrail.from_url(url)  # not started: only the sync path is timed
        now = datetime.now(UTC)
        trail.call_started("cost", dialled="3975", caller=None, flow_id=None, at=now)
        n = 20_000
        start = time.perf_counter()
        for _ in range(n):
            trail.record("cost", "dtmf", {"digit": "1", "method": "info"}, now)
        cost = (time.perf_counter() - start) / n * 1e6
        trail.stats.dropped += trail.pending  # discarded on purpose
        await trail.close()
        return cost

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per phase")
    parser.add_argument("--calls", type=int, default=100, help="simulated concurrent calls")
    parser.add_argument(
        "--events-per-second", type=float, default=10.0, help="events per simulated call"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="trail-bench-") as tmp:
        base = Path(tmp)
        result = {
            "database": "sqlite (WAL, synchronous=NORMAL)",
            "throughput": asyncio.run(
                _throughput(f"sqlite:///{base / 't.sqlite3'}", args.duration)
            ),
            "loop_lag": asyncio.run(
                _loop_lag(
                    f"sqlite:///{base / 'l.sqlite3'}",
                    args.duration,
                    args.calls,
                    args.events_per_second,
                )
            ),
            "record_call_us": round(_record_cost(f"sqlite:///{base / 'c.sqlite3'}"), 2),
        }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
