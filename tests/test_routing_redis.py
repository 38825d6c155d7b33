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


def force_local(node: RedisRoutingService, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Put ``node`` in local mode, its Redis unreachable until the returned event is set."""
    reachable = asyncio.Event()
    real_ping = node._redis.ping  # noqa: SLF001

    async def ping() -> Any:
        if not reachable.is_set():
            raise redis.ConnectionError("forced down by the test")
        return await real_ping()

    monkeypatch.setattr(node._redis, "ping", ping)  # noqa: SLF001
    node._enter_local(redis.ConnectionError("forced down by the test"))  # noqa: SLF001
    return reachable


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


async def test_transferred_call_stays_owned_after_the_first_agents_wrap_up(
    nodes: Factory,
) -> None:
    # A blind transfer queues the same call id again while its first agent is in wrap-up: the
    # end of that wrap-up must not forget who owns the call (it still waits on node A).
    a = nodes("A", node_ttl_s=0.6)
    b = nodes("B", node_ttl_s=0.6)
    await a.start()
    await b.start()
    await a.submit(routing.AgentLoggedIn("a.agent", {"urgence_sociale": 3}, time.time()))
    await a.submit(queued("x", "urgence_sociale"))
    await a.submit(routing.OfferAccepted("a.agent", "x", time.time()))
    await a.submit(routing.CallEnded("a.agent", "x", time.time()))
    assert a.router.agent("a.agent").state is routing.AgentState.WRAP_UP
    await a.submit(queued("x", "accueil_general"))  # the transfer: nobody has that skill
    out = await a.submit(routing.AgentReady("a.agent", time.time()))
    assert [d.call_id for d in out if isinstance(d, routing.WrapUpEnded)] == ["x"]
    assert a._replica.owned("A")[0] == ["x"]  # noqa: SLF001
    await until(lambda: b._replica.last_id == a._replica.last_id)  # noqa: SLF001
    assert b._replica.call_owner.get("x") == "A"  # noqa: SLF001
    ended: list[routing.Decision] = []
    b.listen(ended.append)
    await a.aclose()  # node A dies: its waiting call is hung up by node B
    await until(lambda: b.router.call_phase("x") is None)
    assert any(isinstance(d, routing.CallAbandoned) and d.call_id == "x" for d in ended)


async def test_offer_made_while_the_owner_was_local_is_made_again(
    nodes: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Node A is in local mode while node B offers A's waiting call to B's agent: A's call
    # never rang that agent. Reconciling releases that offer (no penalty for the agent) and
    # queues the call again in its place, so the offer is made anew and reaches A's call.
    a, b = nodes("A"), nodes("B")
    await a.start()
    await b.start()
    on_call: list[routing.Decision] = []
    counted: list[routing.Decision] = []
    a.listen_call("x", on_call.append)
    a.listen(counted.append)
    b.listen(counted.append)
    joined = time.time() - 5
    await a.submit(routing.CallQueued(routing.QueuedCall("x", "apa", joined_at=joined), joined))
    await until(lambda: b.router.call_phase("x") == "waiting")
    reachable = force_local(a, monkeypatch)
    assert a.mode == "local"
    await asyncio.sleep(0.6)  # A's reader has stopped (one XREAD BLOCK)
    await b.submit(routing.AgentLoggedIn("b.agent", {"apa": 3}, time.time()))
    assert b.router.agent("b.agent").call_id == "x"  # offered while A does not listen
    assert not [d for d in on_call if isinstance(d, routing.OfferCall)]
    counted.clear()
    reachable.set()
    await until(lambda: a.mode == "shared")
    await until(lambda: any(isinstance(d, routing.OfferCall) for d in on_call))
    [offer] = [d for d in on_call if isinstance(d, routing.OfferCall)]
    assert offer.agent_id == "b.agent" and offer.call.joined_at == joined
    await until(lambda: b._replica.last_id == a._replica.last_id)  # noqa: SLF001
    for node in (a, b):
        agent = node.router.agent("b.agent")
        assert agent.state is routing.AgentState.RESERVED and agent.call_id == "x"
    # Not a new join nor a removal for the metrics and KPIs.
    assert not [d for d in counted if isinstance(d, routing.CallEnqueued | routing.CallRemoved)]
    await b.submit(routing.OfferAccepted("b.agent", "x", time.time()))
    await until(lambda: a.router.call_phase("x") == "connected")


async def test_reconciling_tells_listeners_nothing_they_heard_in_local_mode(
    nodes: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # While node A was local, a caller waiting in the shared state hung up and another joined:
    # A's listeners (its calls, the metrics) heard both then. Reconciling brings the shared
    # state in line (CallCancelled, CallQueued), and must not tell them again: the metrics
    # would count a removal and a second join.
    a, b = nodes("A"), nodes("B")
    await a.start()
    await b.start()
    await a.submit(queued("y"))
    await until(lambda: b.router.call_phase("y") == "waiting")
    reachable = force_local(a, monkeypatch)
    assert a.mode == "local"
    counted: list[routing.Decision] = []
    a.listen(counted.append)
    out = await a.submit(routing.CallerHungUp("y", time.time()))
    assert [type(d) for d in out] == [routing.CallAbandoned]
    out = await a.submit(queued("z"))
    assert [type(d) for d in out] == [routing.CallEnqueued]
    heard = len(counted)
    reachable.set()
    await until(lambda: a.mode == "shared")
    await until(lambda: b.router.call_phase("z") == "waiting" and b.router.call_phase("y") is None)
    await until(lambda: a._replica.last_id == b._replica.last_id)  # noqa: SLF001
    assert a.router.call_phase("z") == "waiting" and a.router.call_phase("y") is None
    again = [
        d
        for d in counted[heard:]
        if isinstance(d, routing.CallEnqueued | routing.CallRemoved | routing.CallAbandoned)
    ]
    assert not again, again


async def test_a_call_another_node_ended_meanwhile_joins_again_for_the_listeners(
    nodes: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Node A stays local longer than its heartbeat: node B reaps it and hangs up A's waiting
    # call (B's listeners count that end). The call still waits on A: reconciling queues it
    # again, and that is a join A's listeners must hear (else: one join, two outcomes).
    a = nodes("A", node_ttl_s=0.6)
    b = nodes("B", node_ttl_s=0.6)
    await a.start()
    await b.start()
    await a.submit(queued("y"))
    await until(lambda: b.router.call_phase("y") == "waiting")
    ended: list[routing.Decision] = []
    b.listen(ended.append)
    reachable = force_local(a, monkeypatch)
    await until(lambda: b.router.call_phase("y") is None)  # reaped: hung up by B
    assert any(isinstance(d, routing.CallAbandoned) and d.call_id == "y" for d in ended)
    counted: list[routing.Decision] = []
    a.listen(counted.append)
    out = await a.submit(queued("z"))  # joins in local mode: heard now, not again
    assert [type(d) for d in out] == [routing.CallEnqueued]
    heard = len(counted)
    reachable.set()
    await until(lambda: a.mode == "shared")
    await until(lambda: b.router.call_phase("y") == "waiting" == b.router.call_phase("z"))
    await until(lambda: a._replica.last_id == b._replica.last_id)  # noqa: SLF001
    joined = [d.call_id for d in counted[heard:] if isinstance(d, routing.CallEnqueued)]
    assert joined == ["y"]


async def test_offer_rung_before_local_mode_is_kept_by_reconciliation(nodes: Factory) -> None:
    # The offer was made (and rung by node A's call) before A went local: it stays as is.
    a, b = nodes("A"), nodes("B")
    await a.start()
    await b.start()
    on_call: list[routing.Decision] = []
    a.listen_call("x", on_call.append)
    await b.submit(routing.AgentLoggedIn("b.agent", {"apa": 3}, time.time()))
    await a.submit(queued("x"))
    await until(lambda: b.router.call_phase("x") == "offered")
    before = b.router.agent("b.agent")
    a._enter_local(redis.ConnectionError("forced down by the test"))  # noqa: SLF001
    await until(lambda: a.mode == "shared")
    await b.submit(routing.Tick(time.time()))  # B has read everything A appended before it
    await until(lambda: a._replica.last_id == b._replica.last_id)  # noqa: SLF001
    assert a.mode_changes == 2
    assert b.router.agent("b.agent") == before and a.router.agent("b.agent") == before
    assert [type(d) for d in on_call] == [routing.CallEnqueued, routing.OfferCall]


async def test_a_dead_reader_does_not_hang_submissions(
    nodes: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import callcenter.routing_redis as routing_redis
    from callcenter.routing_codec import decode_event as real_decode

    a = nodes("A")
    await a.start()
    failed: list[str] = []

    def decode_once_broken(payload: str) -> routing.Event:
        if not failed:
            failed.append(payload)
            raise RuntimeError("a bug, not Redis")
        return real_decode(payload)

    monkeypatch.setattr(routing_redis, "decode_event", decode_once_broken)
    out = await asyncio.wait_for(a.submit(queued("x")), 10)
    assert failed and [type(d) for d in out] == [routing.CallEnqueued]
    assert a.mode_changes >= 1  # treated as Redis down: applied locally
    await until(lambda: a.mode == "shared")
    assert a.router.call_phase("x") == "waiting"
    out = await asyncio.wait_for(a.submit(routing.CallCancelled("x", time.time())), 10)
    assert [type(d) for d in out] == [routing.CallRemoved]


async def test_an_entry_never_applied_does_not_hang_its_submission(
    nodes: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = nodes("A", op_timeout_s=0.3)
    await a.start()
    real_apply = a._apply_entry  # noqa: SLF001
    dropped: list[str] = []

    def lose_first(entry_id: str, fields: dict[str, str]) -> None:
        if not dropped:
            dropped.append(entry_id)  # the reader lives on but never applies it
            a._replica.last_id = entry_id  # noqa: SLF001
            return
        real_apply(entry_id, fields)

    monkeypatch.setattr(a, "_apply_entry", lose_first)
    started = time.monotonic()
    out = await asyncio.wait_for(a.submit(queued("x")), 10)
    assert dropped and [type(d) for d in out] == [routing.CallEnqueued]
    assert time.monotonic() - started < 5
    assert a.mode_changes >= 1
    await until(lambda: a.mode == "shared")
    assert a.router.call_phase("x") == "waiting"
