"""Benchmark: assignments per second through the Redis routing backend (state machine replication).

``--nodes`` RedisRoutingService instances in one process share one Redis (a key prefix of their
own, deleted afterwards). ``--agents`` agents log in, spread over the nodes; then ``--calls``
calls are queued, spread over the nodes, ``--inflight`` submissions at a time per node. Every
agent answers at once: on its OfferCall its node submits OfferAccepted then CallEnded (no
wrap-up), so the agent is free for the next call. Each assignment thus costs three stream
entries (CallQueued, OfferAccepted, CallEnded), each XADDed once and applied by every node.

Printed (JSON): OfferCall decisions per second end to end (first queued call to the last offer
applied by node 0), stream entries per second, and the latency of ``submit()`` (XADD until the
submitter's replica applied the entry) p50/p99/max in ms. Issue 5 target: >= 2 000
assignments/s.

    .venv/bin/python bench/routing_redis.py                       # 2 nodes, 200 agents, 5 000 calls
    .venv/bin/python bench/routing_redis.py --nodes 1 --calls 20000 --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

# Run as a script, this file's directory comes first on sys.path: put the repository root there.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import redis.asyncio as aioredis  # noqa: E402 (after the sys.path fix)

import routing  # noqa: E402
from callcenter.routing_redis import RedisRoutingConfig, RedisRoutingService  # noqa: E402


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(url: str, nodes: int, agents: int, calls: int, inflight: int) -> dict[str, object]:
    prefix = f"bench:routing:{uuid.uuid4().hex}"
    config = routing.RoutingConfig.simple(
        [routing.QueueConfig("apa", wrap_up_s=0.0, max_wait_s=None, ring_timeout_s=600.0)]
    )
    services = [
        RedisRoutingService(
            config=config,
            redis_config=RedisRoutingConfig(url=url, prefix=prefix, node_id=f"node{i}"),
        )
        for i in range(nodes)
    ]
    for service in services:
        await service.start()
    latencies: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    offers = 0
    done = asyncio.Event()

    async def timed(service: RedisRoutingService, event: routing.Event) -> None:
        start = time.perf_counter()
        await service.submit(event)
        latencies.append(time.perf_counter() - start)

    async def answer(service: RedisRoutingService, offer: routing.OfferCall) -> None:
        await timed(service, routing.OfferAccepted(offer.agent_id, offer.call.call_id, time.time()))
        await timed(service, routing.CallEnded(offer.agent_id, offer.call.call_id, time.time()))

    def on_offer(service: RedisRoutingService, decision: routing.Decision) -> None:
        if isinstance(decision, routing.OfferCall):
            task = asyncio.get_running_loop().create_task(
                answer(service, decision), name=f"answer-{decision.call.call_id}"
            )
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def count(decision: routing.Decision) -> None:
        nonlocal offers
        if isinstance(decision, routing.OfferCall):
            offers += 1
            if offers == calls:
                done.set()

    for i in range(agents):
        owner = services[i % nodes]
        agent_id = f"agent-{i}"
        owner.listen_agent(agent_id, functools.partial(on_offer, owner))
        services[0].listen_agent(agent_id, count)
        await owner.submit(routing.AgentLoggedIn(agent_id, {"apa": 1 + i % 5}, time.time()))
    latencies.clear()

    async def feed(index: int, service: RedisRoutingService) -> None:
        gate = asyncio.Semaphore(inflight)

        async def one(n: int) -> None:
            async with gate:
                now = time.time()
                call = routing.QueuedCall(f"call-{n}", "apa", joined_at=now)
                await timed(service, routing.CallQueued(call, now))

        await asyncio.gather(*(one(n) for n in range(index, calls, nodes)))

    start = time.perf_counter()
    first_id = services[0]._replica.last_id  # noqa: SLF001 -- bench introspection
    await asyncio.gather(*(feed(i, s) for i, s in enumerate(services)))
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed = time.perf_counter() - start
    await asyncio.gather(*tasks)
    client = aioredis.Redis.from_url(url)
    entries = await client.xlen(f"{prefix}:events")
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    for service in services:
        await service.aclose()
    if keys:
        await client.delete(*keys)
    await client.aclose()
    del first_id
    return {
        "scenario": f"{nodes} node(s), {agents} agents, {calls} calls through Redis",
        "assignments_per_s": round(calls / elapsed, 1),
        "stream_entries_per_s": round((3 * calls) / elapsed, 1),
        "stream_entries": entries,
        "elapsed_s": round(elapsed, 3),
        "submit_latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 3),
            "p99": round(_percentile(latencies, 0.99) * 1000, 3),
            "max": round(max(latencies) * 1000, 3),
            "count": len(latencies),
        },
        "inflight_per_node": inflight,
        "loadavg": os.getloadavg(),
        "target_assignments_per_s": 2000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--inflight", type=int, default=50)
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.nodes, args.agents, args.calls, args.inflight))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
