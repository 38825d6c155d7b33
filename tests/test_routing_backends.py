"""One behavioural suite for both routing state backends: in memory, and Redis (real server).

Each test gets a fresh service through the ``backend`` fixture; on Redis, a unique key prefix
that is deleted afterwards. Time is the test's: events carry their ``at`` and the test submits
``Tick(at)`` to move the router's clock (the same on both backends).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import pytest
import redis

import routing
from callcenter.routing_redis import RedisRoutingConfig, RedisRoutingService
from callcenter.routing_service import Listener, RoutingService

T0 = 1_767_600_000.0  # a Monday


class Backend(Protocol):
    config: routing.RoutingConfig

    @property
    def router(self) -> routing.Router: ...

    def listen(self, listener: Listener) -> Callable[[], None]: ...

    def listen_call(self, call_id: str, listener: Listener) -> Callable[[], None]: ...

    def listen_agent(self, agent_id: str, listener: Listener) -> Callable[[], None]: ...

    async def submit(self, event: routing.Event) -> list[routing.Decision]: ...

    async def aclose(self) -> None: ...


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def private_redis(tmp: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server of our own on a free loopback port (no persistence)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield url, proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's Redis at 127.0.0.1:6379, or a private one when it is not running."""
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1).ping()
    except redis.ConnectionError:
        with private_redis(tmp_path_factory.mktemp("redis")) as (url, _proc):
            yield url
        return
    yield "redis://127.0.0.1:6379/0"


def drop_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    prefix = f"test:routing:{uuid.uuid4().hex}"
    yield prefix
    drop_prefix(redis_url, prefix)


def config() -> routing.RoutingConfig:
    return routing.RoutingConfig.simple(
        [
            routing.QueueConfig(
                "apa",
                ring_timeout_s=20.0,
                wrap_up_s=30.0,
                max_wait_s=600.0,
                overflow=routing.Overflow(60.0, "accueil_general"),
            ),
            routing.QueueConfig("accueil_general", max_wait_s=600.0, wrap_up_s=30.0),
        ]
    )


MakeBackend = Callable[[], Awaitable[Backend]]


@pytest.fixture(params=["memory", "redis"])
async def make_backend(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[MakeBackend]:
    made: list[Backend] = []

    async def make() -> Backend:
        service: Backend
        clock = lambda: T0  # noqa: E731 -- time only moves by the events' ``at``
        if request.param == "memory":
            service = RoutingService(config=config(), clock=clock)
        else:
            redis_service = RedisRoutingService(
                config=config(),
                redis_config=RedisRoutingConfig(
                    url=redis_url, prefix=redis_prefix, node_id=f"n{len(made)}"
                ),
                clock=clock,
            )
            await redis_service.start()
            service = redis_service
        made.append(service)
        return service

    yield make
    for service in made:
        await service.aclose()


@pytest.fixture
async def backend(make_backend: MakeBackend) -> Backend:
    return await make_backend()


D = TypeVar("D")


def of(kind: type[D], decisions: list[routing.Decision]) -> list[D]:
    return [d for d in decisions if isinstance(d, kind)]


def call(call_id: str, at: float = T0, **kwargs: object) -> routing.CallQueued:
    return routing.CallQueued(routing.QueuedCall(call_id, "apa", joined_at=at, **kwargs), at)  # type: ignore[arg-type]


async def test_login_ready_pause(backend: Backend) -> None:
    out = await backend.submit(routing.AgentLoggedIn("a", {"apa": 4}, T0, pause_reason="réunion"))
    [changed] = of(routing.AgentStateChanged, out)
    assert changed.state is routing.AgentState.PAUSED and changed.reason == "réunion"
    await backend.submit(routing.AgentReady("a", T0 + 1))
    assert backend.router.agent("a").state is routing.AgentState.AVAILABLE
    await backend.submit(routing.AgentPauseRequested("a", "pause", T0 + 2))
    assert backend.router.agent("a").pause_reason == "pause"
    with pytest.raises(routing.RoutingError, match="unknown pause reason"):
        await backend.submit(routing.AgentPauseRequested("a", "sieste", T0 + 3))
    with pytest.raises(routing.UnknownAgentError):
        await backend.submit(routing.AgentReady("nobody", T0 + 3))
    await backend.submit(routing.AgentLoggedOut("a", T0 + 4))
    assert backend.router.agent("a").state is routing.AgentState.OFFLINE


async def test_queue_offer_accept_end_wrap_up(backend: Backend) -> None:
    await backend.submit(routing.AgentLoggedIn("a", {"apa": 4}, T0))
    out = await backend.submit(call("c1", T0 + 1))
    assert [type(d).__name__ for d in out] == ["CallEnqueued", "OfferCall", "AgentStateChanged"]
    [offer] = of(routing.OfferCall, out)
    assert offer.agent_id == "a"
    assert offer.ring_deadline == T0 + 21
    out = await backend.submit(routing.OfferAccepted("a", "c1", T0 + 5))
    [answered] = of(routing.CallAnswered, out)
    assert answered.wait_s == 4.0
    out = await backend.submit(routing.CallEnded("a", "c1", T0 + 65))
    [completed] = of(routing.CallCompleted, out)
    assert completed.talk_s == 60.0
    assert backend.router.agent("a").state is routing.AgentState.WRAP_UP
    out = await backend.submit(routing.Tick(T0 + 95))
    [ended] = of(routing.WrapUpEnded, out)
    assert ended.timed_out and ended.handle_s == 90.0
    assert backend.router.agent("a").state is routing.AgentState.AVAILABLE


async def test_ring_timeout_offers_the_next_agent_and_pauses(backend: Backend) -> None:
    await backend.submit(routing.AgentLoggedIn("best", {"apa": 5}, T0))
    await backend.submit(routing.AgentLoggedIn("next", {"apa": 3}, T0))
    out = await backend.submit(call("c1", T0 + 1))
    assert [d.agent_id for d in of(routing.OfferCall, out)] == ["best"]
    out = await backend.submit(routing.Tick(T0 + 30))
    [ended] = of(routing.OfferEnded, out)
    assert ended.reason is routing.OfferEndReason.RING_TIMEOUT and ended.at == T0 + 21
    assert [d.agent_id for d in of(routing.OfferCall, out)] == ["next"]
    best = backend.router.agent("best")
    assert best.state is routing.AgentState.PAUSED and best.pause_reason == "non réponse"


async def test_priorities(backend: Backend) -> None:
    await backend.submit(call("normal", T0))
    await backend.submit(call("urgent", T0 + 5, priority=routing.Priority.CRITICAL))
    assert [c.call_id for c in backend.router.waiting("apa")] == ["urgent", "normal"]
    out = await backend.submit(routing.AgentLoggedIn("a", {"apa": 1}, T0 + 10))
    [offer] = of(routing.OfferCall, out)
    assert offer.call.call_id == "urgent"


async def test_overflow_over_time(backend: Backend) -> None:
    await backend.submit(routing.AgentLoggedIn("généraliste", {"accueil_general": 3}, T0))
    out = await backend.submit(call("c1", T0))
    assert not of(routing.OfferCall, out)
    out = await backend.submit(routing.Tick(T0 + 59))
    assert out == []
    out = await backend.submit(routing.Tick(T0 + 61))
    assert [type(d).__name__ for d in out][:2] == ["CallOverflowed", "OfferCall"]
    offer = out[1]
    assert isinstance(offer, routing.OfferCall)
    assert offer.queue == "accueil_general" and offer.at == T0 + 60 and offer.wait_s == 60.0


async def test_kept_callbacks_survive_the_maximum_wait(backend: Backend) -> None:
    await backend.submit(call("kept", T0))
    await backend.submit(call("gone", T0 + 1))
    out = await backend.submit(routing.CallbackKept("kept", T0 + 2))
    assert of(routing.CallKeptForCallback, out)
    out = await backend.submit(routing.Tick(T0 + 700))
    assert [d.call_id for d in of(routing.CallMaxWaitReached, out)] == ["gone"]
    assert backend.router.position("kept") == 1
    out = await backend.submit(routing.AgentLoggedIn("a", {"apa": 2}, T0 + 800))
    [offer] = of(routing.OfferCall, out)
    assert offer.call.call_id == "kept" and offer.dial_out


async def test_listeners_per_call_per_agent_and_global(backend: Backend) -> None:
    everything: list[routing.Decision] = []
    for_call: list[routing.Decision] = []
    for_agent: list[routing.Decision] = []
    backend.listen(everything.append)
    stop_call = backend.listen_call("c1", for_call.append)
    backend.listen_agent("a", for_agent.append)
    await backend.submit(routing.AgentLoggedIn("a", {"apa": 3}, T0))
    await backend.submit(routing.AgentLoggedIn("b", {"accueil_general": 3}, T0))
    out = await backend.submit(call("c1", T0 + 1))
    assert [type(d) for d in for_call] == [routing.CallEnqueued, routing.OfferCall]
    assert [type(d) for d in for_agent] == [
        routing.AgentStateChanged,
        routing.OfferCall,
        routing.AgentStateChanged,
    ]
    assert everything[-3:] == out and len(everything) == 5
    assert not [d for d in for_agent if getattr(d, "agent_id", None) == "b"]
    stop_call()
    await backend.submit(routing.OfferAccepted("a", "c1", T0 + 2))
    assert len(for_call) == 2 and isinstance(for_agent[-1], routing.AgentStateChanged)
    assert isinstance(everything[-2], routing.CallAnswered)


def test_both_backends_satisfy_the_protocol() -> None:
    from callcenter.routing_service import RoutingBackend

    def accepts(backend: RoutingBackend) -> None:
        assert backend.config is not None

    accepts(RoutingService(config=config()))
    accepts(RedisRoutingService(config=config(), redis_config=RedisRoutingConfig(node_id="typing")))
