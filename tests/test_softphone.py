"""The softphone hub: signalling between a call's browser leg and the agent's panel.

One node (local delivery) and two nodes sharing a real Redis (the call on node A, the agent's
panel on node B): rings reach the panel, the panel's answer reaches the leg, another agent's
messages are refused, presence follows the panel socket.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from callcenter.softphone import SoftphoneHub
from tests.test_routing_backends import redis_url

__all__ = ["redis_url"]  # the fixture: the machine's Redis, or a private one


async def test_local_ring_answer_and_ownership() -> None:
    hub = SoftphoneHub()
    await hub.start()
    seen: list[dict[str, Any]] = []
    got: list[dict[str, Any]] = []
    assert not await hub.is_present("alice")
    detach = hub.attach("alice", seen.append)
    assert await hub.is_present("alice")
    hub.register_leg("call-1", "alice", got.append)
    await hub.to_agent("alice", {"type": "ring", "call_id": "call-1", "pop": {}})
    assert seen[0]["type"] == "ring" and seen[0]["node"] == "local"
    assert (
        await hub.from_browser("alice", {"type": "answer", "call_id": "call-1", "sdp": "x"}) is None
    )
    assert got == [{"type": "answer", "call_id": "call-1", "sdp": "x"}]
    # Another agent cannot signal alice's call; unknown messages and calls are refused.
    assert await hub.from_browser("bob", {"type": "hangup", "call_id": "call-1"}) is not None
    assert await hub.from_browser("alice", {"type": "transfer", "call_id": "call-1"}) is not None
    assert await hub.from_browser("alice", {"type": "hangup", "call_id": "nope"}) is not None
    assert len(got) == 1
    detach()
    assert not await hub.is_present("alice")
    await hub.aclose()


async def _until(predicate: Any, within: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await _check(predicate):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def _check(predicate: Any) -> bool:
    value = predicate()
    return bool(await value) if asyncio.iscoroutine(value) else bool(value)


@pytest.mark.loopback
async def test_two_nodes_relay_through_redis(redis_url: str) -> None:
    prefix = f"test-softphone-{uuid.uuid4().hex[:8]}"
    node_a = SoftphoneHub(node_id="a", redis_url=redis_url, prefix=prefix)
    node_b = SoftphoneHub(node_id="b", redis_url=redis_url, prefix=prefix)
    await node_a.start()
    await node_b.start()
    try:
        panel: list[dict[str, Any]] = []
        leg: list[dict[str, Any]] = []
        detach = node_b.attach("alice", panel.append)  # alice's panel is on node B
        await _until(lambda: node_a.is_present("alice"))
        node_a.register_leg("call-9", "alice", leg.append)  # the call is on node A
        await asyncio.sleep(0.1)  # node B's subscription is active
        await node_a.to_agent("alice", {"type": "ring", "call_id": "call-9", "pop": {"q": 1}})
        await _until(lambda: any(m["type"] == "ring" for m in panel))
        assert panel[0]["node"] == "a"
        # The panel's answer, sent to node B, reaches the leg on node A.
        assert (
            await node_b.from_browser("alice", {"type": "answer", "call_id": "call-9", "sdp": "o"})
            is None
        )
        await _until(lambda: bool(leg))
        assert leg == [{"type": "answer", "call_id": "call-9", "sdp": "o"}]
        # Bob, on node B too, cannot drive alice's call through the relay (node A checks).
        await node_b.from_browser("bob", {"type": "hangup", "call_id": "call-9"})
        await asyncio.sleep(0.2)
        assert len(leg) == 1
        detach()
        await _until(lambda: _absent(node_a, "alice"))
    finally:
        await node_a.aclose()
        await node_b.aclose()


async def _absent(hub: SoftphoneHub, login: str) -> bool:
    return not await hub.is_present(login)


async def test_redis_down_the_node_still_starts_and_rings_its_own_panels() -> None:
    hub = SoftphoneHub(node_id="a", redis_url="redis://127.0.0.1:1/0", prefix="test-down")
    await hub.start()  # refused at once: logged, retried in the background
    try:
        seen: list[dict[str, Any]] = []
        hub.attach("alice", seen.append)
        assert await hub.is_present("alice")  # attached here
        assert not await hub.is_present("bob")  # elsewhere: unknown while Redis is down
        await hub.to_agent("alice", {"type": "ring", "call_id": "c", "pop": {}})
        assert [m["type"] for m in seen] == ["ring"]
    finally:
        await hub.aclose()


@pytest.mark.loopback
async def test_a_request_runs_on_the_node_holding_the_call(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callcenter import softphone

    prefix = f"test-softphone-{uuid.uuid4().hex[:8]}"
    ran: list[tuple[str, dict[str, Any]]] = []

    async def run(operation: str, arguments: dict[str, Any]) -> tuple[int, str]:
        ran.append((operation, arguments))
        return (200, "done") if arguments.get("value") == "apa" else (404, "unknown queue")

    node_a = SoftphoneHub(node_id="a", redis_url=redis_url, prefix=prefix, requests=run)
    node_b = SoftphoneHub(node_id="b", redis_url=redis_url, prefix=prefix)
    await node_a.start()
    await node_b.start()
    try:
        node_b.attach("alice", lambda m: None)
        await _until(lambda: node_a.is_present("alice"))
        await asyncio.sleep(0.1)
        await node_a.to_agent("alice", {"type": "ring", "call_id": "call-9", "pop": {}})
        await _until(lambda: node_b.node_of("call-9") == "a")
        assert node_a.node_of("call-9") is None  # its own call: nothing to relay
        args = {"call_id": "call-9", "agent": "alice", "kind": "queue", "value": "apa"}
        assert await node_b.request("a", "transfer", args) == (200, "done")
        assert ran == [("transfer", args)]
        bad = {**args, "value": "nope"}
        assert await node_b.request("a", "transfer", bad) == (404, "unknown queue")
        # A node that does not answer: 503 after the timeout, nothing left waiting.
        monkeypatch.setattr(softphone, "REQUEST_TIMEOUT_S", 0.3)
        status, _ = await node_b.request("gone", "transfer", args)
        assert status == 503 and not node_b._waiting
    finally:
        await node_a.aclose()
        await node_b.aclose()


async def test_a_handed_over_call_keeps_its_routes_under_its_new_id() -> None:
    hub = SoftphoneHub()
    await hub.start()
    try:
        hub.attach("alice", lambda m: None)
        hub.attach("bob", lambda m: None)
        await hub.to_agent("alice", {"type": "ring", "call_id": "X", "pop": {}})
        await hub.to_agent("bob", {"type": "ring", "call_id": "X~consult", "pop": {}})
        await hub.to_agent("bob", {"type": "call_renamed", "call_id": "X", "from": "X~consult"})
        assert hub.calls_of("bob") == ["X"]
        # alice's leg of X ends (she handed the caller over): bob's route to X stays.
        await hub.to_agent("alice", {"type": "call_state", "call_id": "X", "state": "ended"})
        assert hub.calls_of("bob") == ["X"] and hub.calls_of("alice") == []
        await hub.to_agent("bob", {"type": "call_state", "call_id": "X", "state": "ended"})
        assert hub.calls_of("bob") == []
    finally:
        await hub.aclose()
