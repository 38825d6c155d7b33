"""The Redis routing backend with several nodes: one log, replicas that agree, dead nodes,
Redis outages. Real redis-server (the machine's, or a private one this file starts and stops).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis

import routing
from callcenter.routing_redis import RedisRoutingConfig, RedisRoutingService
from tests.test_routing_backends import (  # noqa: F401 -- fixtures
    private_redis,
    redis_prefix,
    redis_url,
)

Factory = Callable[..., RedisRoutingService]


def config() -> routing.RoutingConfig:
    return routing.RoutingConfig.simple(
        [
            routing.QueueConfig("apa", ring_timeout_s=30.0, wrap_up_s=0.0, max_wait_s=None),
            routing.QueueConfig("accueil_general", wrap_up_s=0.0, max_wait_s=None),
            routing.QueueConfig("urgence_sociale", max_wait_s=None),
        ]
    )


@pytest.fixture
async def nodes(redis_url: str, redis_prefix: str) -> AsyncIterator[Factory]:  # noqa: F811
    made: list[RedisRoutingService] = []

    def make(node_id: str, url: str = redis_url, **kwargs: float) -> RedisRoutingService:
        service = RedisRoutingService(
            config=config(),
            redis_config=RedisRoutingConfig(
                url=url,
                prefix=redis_prefix,
                node_id=node_id,
                **kwargs,  # type: ignore[arg-type]
            ),
        )
        made.append(service)
        return service

    yield make
    for service in made:
        await service.aclose()


async def until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def queued(call_id: str, skill: str = "apa", **kwargs: object) -> routing.CallQueued:
    now = time.time()
    return routing.CallQueued(routing.QueuedCall(call_id, skill, joined_at=now, **kwargs), now)  # type: ignore[arg-type]


async def test_call_on_node_a_is_offered_to_an_agent_on_node_b(nodes: Factory) -> None:
    a, b = nodes("A"), nodes("B")
    await a.start()
    await b.start()
    on_b: list[routing.Decision] = []
    b.listen_agent("b.agent", on_b.append)
    metrics_a: list[routing.Decision] = []
    metrics_b: list[routing.Decision] = []
    a.listen(metrics_a.append)
    b.listen(metrics_b.append)
    await b.submit(routing.AgentLoggedIn("b.agent", {"apa": 3}, time.time()))
    out = await a.submit(queued("call-a"))
    [offer] = [d for d in out if isinstance(d, routing.OfferCall)]
    assert offer.agent_id == "b.agent"
    await until(lambda: any(isinstance(d, routing.OfferCall) for d in on_b))
    assert b.router.agent("b.agent").call_id == "call-a"
    assert a.router.agent("b.agent").call_id == "call-a"
    # Global listeners: the offer is the call's (node A's), the agent state is node B's.
    assert [type(d) for d in metrics_a] == [routing.CallEnqueued, routing.OfferCall]
    assert {type(d) for d in metrics_b} == {routing.AgentStateChanged}
    await b.submit(routing.OfferAccepted("b.agent", "call-a", time.time()))
    await until(lambda: a.router.call_phase("call-a") == "connected")


async def test_concurrent_submissions_never_give_an_agent_two_calls(nodes: Factory) -> None:
    a, b = nodes("A"), nodes("B")
    await a.start()
    await b.start()
    agents = [f"agent-{i}" for i in range(20)]
    seen: dict[str, dict[str, list[routing.Decision]]] = {"A": {}, "B": {}}
    counted: list[routing.Decision] = []
    for name, node in (("A", a), ("B", b)):
        node.listen(counted.append)
        for agent in agents:
            node.listen_agent(agent, seen[name].setdefault(agent, []).append)
    await asyncio.gather(
        *(
            (a if i % 2 else b).submit(
                routing.AgentLoggedIn(agent, {"apa": 1 + i % 5}, time.time())
            )
            for i, agent in enumerate(agents)
        ),
        *((a if i % 3 else b).submit(queued(f"c{i}")) for i in range(60)),
    )

    async def work(node: RedisRoutingService, agent: str) -> None:
        # Each agent answers whatever it is offered, until the queue is empty.
        while True:
            current = node.router.agent(agent)
            if current.state is routing.AgentState.RESERVED and current.call_id:
                call_id = current.call_id
                await node.submit(routing.OfferAccepted(agent, call_id, time.time()))
                await node.submit(routing.CallEnded(agent, call_id, time.time()))
            elif not node.router.waiting("apa"):
                return
            else:
                await asyncio.sleep(0.005)

    await asyncio.gather(*(work(a if i % 2 else b, agent) for i, agent in enumerate(agents)))
    await until(lambda: a._replica.last_id == b._replica.last_id)  # noqa: SLF001
    for name in ("A", "B"):
        for agent, decisions in seen[name].items():
            holding: str | None = None
            for d in decisions:
                if isinstance(d, routing.OfferCall):
                    assert holding is None, f"{name}: {agent} offered {d.call.call_id} on {holding}"
                    holding = d.call.call_id
                elif isinstance(d, routing.OfferEnded | routing.CallCompleted):
                    holding = None
    assert seen["A"] == seen["B"]
    offers = [d for ds in seen["A"].values() for d in ds if isinstance(d, routing.OfferCall)]
    answered = {d.call.call_id for d in offers}
    assert answered == {f"c{i}" for i in range(60)}
    # Each decision reached exactly one node's global listeners.
    assert sorted(d.call.call_id for d in counted if isinstance(d, routing.OfferCall)) == sorted(
        d.call.call_id for d in offers
    )
    for agent in agents:
        assert a.router.agent(agent) == b.router.agent(agent)


async def test_dead_node_agents_freed_calls_ended_callbacks_adopted(nodes: Factory) -> None:
    a = nodes("A", node_ttl_s=0.6)
    b = nodes("B", node_ttl_s=0.6)
    await a.start()
    await b.start()
    await a.submit(routing.AgentLoggedIn("a.agent", {"accueil_general": 3}, time.time()))
    await a.submit(queued("waiting", "urgence_sociale"))
    await a.submit(queued("kept", "urgence_sociale"))
    await a.submit(routing.CallbackKept("kept", time.time()))
    await a.submit(queued("scheduled", "urgence_sociale", callback=True))
    ended: list[routing.Decision] = []
    b.listen(ended.append)
    await a.aclose()  # no logout: the heartbeat key expires
    await until(lambda: b.router.agent("a.agent").state is routing.AgentState.OFFLINE)
    await until(lambda: b.router.call_phase("waiting") is None)
    assert b.router.call_phase("kept") == "waiting"
    assert b.router.call_phase("scheduled") == "waiting"
    assert b._replica.call_owner["kept"] == "B"  # noqa: SLF001
    assert any(isinstance(d, routing.CallAbandoned) and d.call_id == "waiting" for d in ended)
    # The adopted callback is offered, from node B, when an agent appears.
    out = await b.submit(routing.AgentLoggedIn("b.agent", {"urgence_sociale": 2}, time.time()))
    [offer] = [d for d in out if isinstance(d, routing.OfferCall)]
    assert offer.dial_out and offer.call.call_id in ("kept", "scheduled")


async def test_redis_down_local_mode_then_reconcile(nodes: Factory, tmp_path: Path) -> None:
    with private_redis(tmp_path) as (url, proc):
        a = nodes("A", url=url, op_timeout_s=0.3, node_ttl_s=3.0)
        b = nodes("B", url=url, op_timeout_s=0.3, node_ttl_s=3.0)
        await a.start()
        await b.start()
        await a.submit(routing.AgentLoggedIn("a.agent", {"apa": 3}, time.time()))
        await b.submit(routing.AgentLoggedIn("b.agent", {"accueil_general": 3}, time.time()))
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            out = await a.submit(queued("during-outage"))
            assert a.mode == "local"
            [offer] = [d for d in out if isinstance(d, routing.OfferCall)]
            assert offer.agent_id == "a.agent"
            await a.submit(routing.OfferAccepted("a.agent", "during-outage", time.time()))
            out = await a.submit(queued("still-waiting", "accueil_general"))
            assert not [d for d in out if isinstance(d, routing.OfferCall)]  # b.agent is B's
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        await until(lambda: a.mode == "shared" and b.mode == "shared")
        # Node B now sees node A's truth: the call waiting during the outage reaches its agent.
        await until(lambda: b.router.agent("b.agent").call_id == "still-waiting")
        assert b.router.call_phase("during-outage") is None  # answered locally, not re-queued
        assert b.router.agent("a.agent").state is routing.AgentState.OFFLINE  # busy on node A
        await a.submit(routing.CallEnded("a.agent", "during-outage", time.time()))
        await until(lambda: b.router.agent("a.agent").state is routing.AgentState.AVAILABLE)
        assert a.mode_changes == 2


async def test_timers_fire_through_ticks_appended_by_one_node(
    redis_url: str,  # noqa: F811
    redis_prefix: str,  # noqa: F811
) -> None:
    quick = routing.RoutingConfig.simple(
        [routing.QueueConfig("apa", ring_timeout_s=0.3, max_wait_s=None)]
    )
    services = [
        RedisRoutingService(
            config=quick,
            redis_config=RedisRoutingConfig(url=redis_url, prefix=redis_prefix, node_id=node),
        )
        for node in ("A", "B")
    ]
    a, b = services
    try:
        for service in services:
            await service.start()
        ended: list[routing.Decision] = []
        b.listen_call("c", ended.append)
        await a.submit(routing.AgentLoggedIn("x", {"apa": 2}, time.time()))
        await a.submit(queued("c"))
        await until(lambda: any(isinstance(d, routing.OfferEnded) for d in ended), within=5)
        assert a.router.agent("x").pause_reason == "non réponse"
        await until(lambda: a._replica.last_id == b._replica.last_id)  # noqa: SLF001
        assert a.router.agent("x") == b.router.agent("x")
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        entries: Any = client.xrange(f"{redis_prefix}:events")
        client.close()
        ticks = [f for _id, f in entries if '"type":"Tick"' in f["p"]]
        assert 1 <= len(ticks) <= 2 and {f["n"] for f in ticks} <= {"A", "B"}
    finally:
        for service in services:
            await service.aclose()
