"""The routing adapter: decisions reach the call's and the agent's listeners; timers fire."""

from __future__ import annotations

import asyncio
import time

import pytest

import routing
from callcenter.routing_service import RoutingService


def config(ring_timeout_s: float = 0.2, wrap_up_s: float = 0.2) -> routing.RoutingConfig:
    return routing.RoutingConfig.simple(
        [
            routing.QueueConfig(
                "apa", ring_timeout_s=ring_timeout_s, wrap_up_s=wrap_up_s, max_wait_s=600.0
            ),
            routing.QueueConfig("accueil_general", max_wait_s=600.0),
        ]
    )


async def test_offer_ring_timeout_and_wrap_up_fire_on_the_loop() -> None:
    service = RoutingService(config=config())
    seen: list[routing.Decision] = []
    by_call: list[routing.Decision] = []
    by_agent: list[routing.Decision] = []
    service.listen(seen.append)
    service.listen_call("call-1", by_call.append)
    stop_agent = service.listen_agent("c.durand", by_agent.append)

    now = time.time()
    service.handle(routing.AgentLoggedIn("c.durand", {"apa": 4}, now))
    service.handle(routing.AgentReady("c.durand", now))
    service.handle(routing.CallQueued(routing.QueuedCall("call-1", "apa", joined_at=now), now))
    [offer] = [d for d in by_call if isinstance(d, routing.OfferCall)]
    assert offer.agent_id == "c.durand" and offer in by_agent

    # Nobody answers: the router's own ring timeout fires through the asyncio timer.
    await asyncio.sleep(0.4)
    ended = [d for d in by_call if isinstance(d, routing.OfferEnded)]
    assert ended and ended[0].reason is routing.OfferEndReason.RING_TIMEOUT
    paused = [d for d in by_agent if isinstance(d, routing.AgentStateChanged)]
    assert paused[-1].state is routing.AgentState.PAUSED

    # Ready again: offered again, answered, ended, and the wrap-up ends by itself.
    stop_agent()
    service.handle(routing.AgentReady("c.durand", time.time()))
    offer = [d for d in seen if isinstance(d, routing.OfferCall)][-1]
    assert offer.call.call_id == "call-1" and offer.agent_id == "c.durand"
    service.handle(routing.OfferAccepted("c.durand", "call-1", time.time()))
    assert any(isinstance(d, routing.CallAnswered) for d in by_call)
    service.handle(routing.CallEnded("c.durand", "call-1", time.time()))
    await asyncio.sleep(0.4)
    assert any(isinstance(d, routing.WrapUpEnded) for d in seen)
    assert service.router.agent("c.durand").state is routing.AgentState.AVAILABLE
    assert not [d for d in by_agent if isinstance(d, routing.WrapUpEnded)]  # listener removed
    service.close()


async def test_a_failing_listener_does_not_stop_routing(caplog: pytest.LogCaptureFixture) -> None:
    service = RoutingService(config=config())
    got: list[routing.Decision] = []

    def broken(decision: routing.Decision) -> None:
        raise RuntimeError("websocket gone")

    service.listen(broken)
    service.listen(got.append)
    now = time.time()
    service.handle(routing.CallQueued(routing.QueuedCall("call-2", "apa", joined_at=now), now))
    assert any(isinstance(d, routing.CallEnqueued) for d in got)
    assert "routing listener failed" in caplog.text
    with pytest.raises(routing.RoutingError):
        service.handle(routing.CallQueued(routing.QueuedCall("c3", "nope", joined_at=now), now))
    service.close()
