"""CallbackService with the in-memory RoutingService and a real SQLite store (fake SIP dialer)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

import routing
from callcenter.call import spoken_number, spoken_slot
from callcenter.callbacks import (
    CallbackService,
    attempt_outcome,
    dial_string,
)
from callcenter.config import load_config
from callcenter.media.tts.prompt_cache import PromptCache
from callcenter.metrics import Metrics
from callcenter.routing_service import RoutingService
from callcenter.sip import events as sip_events
from callcenter.store import callbacks as store
from callcenter.store import db
from callcenter.store.callbacks import callback_number_allowed
from callcenter.store.trail import CallTrail
from ivr_flows.hours import Schedule, TimeRange
from routing import callbacks as rules
from routing.callbacks import AttemptOutcome, CallbackStatus, Slot

PHONE = "+33612345678"


def routing_config(max_wait_s: float = 600.0, ring_timeout_s: float = 5.0) -> routing.RoutingConfig:
    return routing.RoutingConfig.simple(
        [
            routing.QueueConfig(
                "apa", ring_timeout_s=ring_timeout_s, wrap_up_s=1.0, max_wait_s=max_wait_s
            )
        ]
    )


def office_hours() -> Schedule:
    """Weekdays 9:00-12:30 and 13:30-17:00."""
    ranges = (TimeRange(9 * 60, 12 * 60 + 30), TimeRange(13 * 60 + 30, 17 * 60))
    return Schedule(
        name="bureau",
        weekly=MappingProxyType(dict.fromkeys(range(5), ranges)),
        closures=frozenset(),
    )


async def until(check: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


class FakeDialer:
    """Records the INVITEs; nothing ever answers (the unit tests stop at the agent's ring)."""

    def __init__(self) -> None:
        self.placed: list[tuple[str, str]] = []
        self.cancelled: list[str] = []
        self.handlers: dict[str, Callable[[sip_events.SipEvent], None]] = {}
        """SIP event handler of each placed call (a test answers or fails it)."""

    def place_call(
        self,
        target_uri: str,
        sdp_offer: bytes,
        *,
        from_user: str,
        from_display: str | None,
        on_event: Callable[[sip_events.SipEvent], None],
    ) -> str:
        call_id = f"out-{len(self.placed)}"
        self.placed.append((target_uri, from_display or ""))
        self.handlers[call_id] = on_event
        return call_id

    def cancel_call(self, call_id: str) -> None:
        self.cancelled.append(call_id)

    def hangup_call(self, call_id: str) -> None:
        self.cancelled.append(call_id)

    def reinvite_call(self, call_id: str, sdp_offer: bytes) -> bool:
        return False

    def answer_reinvite_call(self, call_id: str, sdp_answer: bytes | None) -> None:
        return None

    def forget_call(self, call_id: str) -> None:
        return None

    def notify_transfer_call(
        self, call_id: str, status_code: int, reason: str | None, refer_id: int
    ) -> bool:
        return False


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = db.make_engine(f"sqlite:///{tmp_path / 'cb.sqlite3'}")
    db.create_schema(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
async def trail(tmp_path: Path) -> AsyncIterator[CallTrail]:
    t = CallTrail.from_url(f"sqlite:///{tmp_path / 'cb.sqlite3'}")
    await t.start()
    try:
        yield t
    finally:
        await t.close()


def make_service(
    engine: Engine,
    trail: CallTrail,
    rs: RoutingService,
    tmp_path: Path,
    dialer: FakeDialer,
    node: str = "a",
) -> CallbackService:
    config = load_config(
        env={
            "CALLCENTER_DATA_DIR": str(tmp_path),
            "CALLCENTER_RTP_PORT_MIN": "31000",
            "CALLCENTER_RTP_PORT_MAX": "31100",
            "CALLCENTER_CALLBACKS_NODE": node,
        }
    )
    prompts = PromptCache(tmp_path / "cache", tmp_path / "rec", tts=None)  # type: ignore[arg-type]

    async def agent_uri(agent_id: str) -> str | None:
        return f"sip:{agent_id}@127.0.0.1:9"

    return CallbackService(
        config=config,
        routing_service=rs,
        engine=engine,
        dialer=dialer,
        agent_uri=agent_uri,
        trail=trail,
        metrics=Metrics(process_metrics=False),
        prompts=prompts,
    )


def queued_callback(callback_id: str, joined_at: float, entry: str | None = None) -> rules.Callback:
    call = routing.QueuedCall(entry or f"cb-{callback_id}", "apa", joined_at=joined_at)
    return dataclasses.replace(rules.keep_place(call, joined_at + 1), id=callback_id)


async def test_start_puts_queued_callbacks_back_and_schedules_waiting_ones(
    engine: Engine, trail: CallTrail, tmp_path: Path
) -> None:
    now = time.time()
    # Queued long ago (beyond the maximum wait): back in the queue, kept (no maximum wait).
    store.create(
        engine, queued_callback("old", now - 3600, "sip-1"), phone=PHONE, queue_call_id="sip-1"
    )
    slot = Slot(now + 0.3, now + 1800)
    booked = rules.book_slot(
        "slot1",
        "apa",
        slot,
        now,
        schedule=None,
        tz=ZoneInfo("UTC"),
        policy=rules.CallbackPolicy(min_lead_s=0),
    )
    store.create(engine, booked, phone=PHONE)
    rs = RoutingService(config=routing_config())
    service = make_service(engine, trail, rs, tmp_path, FakeDialer())
    assert await service.start() == 2
    try:
        assert [c.call_id for c in rs.router.waiting("apa")] == ["sip-1"]
        assert rs.router.waiting_call("sip-1").callback
        await asyncio.sleep(0.6)  # the slot starts: it enters the queue
        assert [c.call_id for c in rs.router.waiting("apa")] == ["sip-1", "cb-slot1"]
        moved = store.get(engine, "slot1")
        assert moved is not None and moved.status is CallbackStatus.QUEUED
        assert moved.queue_call_id == "cb-slot1" and moved.node == "a"
        # Well past the maximum wait: still there (kept).
        rs.handle(routing.Tick(time.time() + 1200))
        assert len(rs.router.waiting("apa")) == 2
    finally:
        await service.close()
        rs.close()


async def test_an_offer_is_claimed_by_one_node_only(
    engine: Engine, trail: CallTrail, tmp_path: Path
) -> None:
    """Two nodes (two routers, one store) are offered the same callback: one dials the agent."""
    now = time.time()
    store.create(engine, queued_callback("c1", now - 10), phone=PHONE, queue_call_id="cb-c1")
    dialers = [FakeDialer(), FakeDialer()]
    routers = [RoutingService(config=routing_config()) for _ in dialers]
    services = [
        make_service(engine, trail, rs, tmp_path, d, node=f"n{i}")
        for i, (rs, d) in enumerate(zip(routers, dialers, strict=True))
    ]
    try:
        for service in services:
            await service.start()
        for rs in routers:
            await rs.submit(routing.AgentLoggedIn("ag1", {"apa": 3}, time.time()))
        async with asyncio.timeout(5):
            while True:
                if any(d.placed for d in dialers):
                    break
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        placed = [p for d in dialers for p in d.placed]
        assert placed == [("sip:ag1@127.0.0.1:9", "SOLIDARITES rappel apa")]
        claimed = store.get(engine, "c1")
        assert claimed is not None and claimed.status is CallbackStatus.DIALING
        winner = 0 if dialers[0].placed else 1
        assert claimed.node == f"n{winner}"
        # The loser released its offer at once: its agent is not left reserved (then paused
        # "non réponse" at the ring timeout) for a phone that never rang.
        loser = routers[1 - winner].router
        assert loser.agent("ag1").state is routing.AgentState.AVAILABLE
        assert loser.call_phase("cb-c1") == "waiting"
    finally:
        for service in services:
            await service.close()
        for rs in routers:
            rs.close()


async def test_a_cancelled_callback_leaves_the_queue_when_offered(
    engine: Engine, trail: CallTrail, tmp_path: Path
) -> None:
    now = time.time()
    store.create(engine, queued_callback("c1", now - 10), phone=PHONE, queue_call_id="cb-c1")
    rs = RoutingService(config=routing_config())
    dialer = FakeDialer()
    service = make_service(engine, trail, rs, tmp_path, dialer)
    await service.start()
    try:
        store.cancel(engine, "c1", reason="the caller called again")  # e.g. the CLI
        seen: list[routing.Decision] = []
        rs.listen(seen.append)
        await rs.submit(routing.AgentLoggedIn("ag1", {"apa": 3}, time.time()))
        async with asyncio.timeout(5):
            while True:
                if any(isinstance(d, routing.CallRemoved) for d in seen):
                    break
                await asyncio.sleep(0.02)
        assert dialer.placed == []
        assert rs.router.queue_size("apa") == 0
        assert rs.router.agent("ag1").state is routing.AgentState.AVAILABLE
    finally:
        await service.close()
        rs.close()


async def test_keep_place_persists_and_keeps_the_entry(
    engine: Engine, trail: CallTrail, tmp_path: Path
) -> None:
    rs = RoutingService(config=routing_config(max_wait_s=60.0))
    service = make_service(engine, trail, rs, tmp_path, FakeDialer())
    await service.start()
    try:
        joined = time.time() - 30
        await rs.submit(
            routing.CallQueued(routing.QueuedCall("sip-9", "apa", joined_at=joined), joined)
        )
        stored = await service.keep_place("sip-9", PHONE, origin_call_id="sip-9")
        assert stored.status is CallbackStatus.QUEUED and stored.queue_call_id == "sip-9"
        assert stored.callback.joined_at == pytest.approx(joined)
        rs.handle(routing.Tick(time.time() + 600))  # far beyond the maximum wait: kept
        assert rs.router.call_phase("sip-9") == "waiting"
        with pytest.raises(routing.RoutingError):
            await service.keep_place("nope", PHONE, origin_call_id="nope")
        text = service.metrics.render()[0].decode()
        assert 'callcenter_callbacks_requested_total{mode="keep_place"} 1.0' in text
    finally:
        await service.close()
        rs.close()


def test_outcomes_numbers_and_spoken_texts() -> None:
    assert attempt_outcome(486, timed_out=False) is AttemptOutcome.BUSY
    assert attempt_outcome(600, timed_out=False) is AttemptOutcome.BUSY
    assert attempt_outcome(487, timed_out=True) is AttemptOutcome.NO_ANSWER
    assert attempt_outcome(480, timed_out=False) is AttemptOutcome.NO_ANSWER
    assert attempt_outcome(None, timed_out=False) is AttemptOutcome.NO_ANSWER
    assert attempt_outcome(404, timed_out=False) is AttemptOutcome.UNREACHABLE
    assert attempt_outcome(503, timed_out=False) is AttemptOutcome.UNREACHABLE
    assert dial_string(PHONE, "national") == "0612345678"
    assert dial_string(PHONE, "e164") == PHONE
    assert spoken_number(PHONE) == "zéro 6, 12, 34, 56, 78"
    assert spoken_number("+33142345678") == "zéro 1, 42, 34, 56, 78"
    paris = ZoneInfo("Europe/Paris")
    from datetime import datetime

    start = datetime(2026, 12, 7, 9, 0, tzinfo=paris).timestamp()
    assert spoken_slot(Slot(start, start + 3600), paris) == (
        "lundi 7 décembre entre 9 heures et 10 heures"
    )
    assert spoken_slot(Slot(start + 1800, start + 3 * 3600 + 1800), paris) == (
        "lundi 7 décembre entre 9 heures 30 et 12 heures 30"
    )


def failed(dialer: FakeDialer, index: int, status: int, reason: str) -> None:
    """The phone of the ``index``-th placed call answers ``status`` (a final failure)."""
    call_id = f"out-{index}"
    dialer.handlers[call_id](sip_events.OutboundCallFailed(call_id, status, reason))


def slow_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store takes 0.3 s to move a callback out of ``dialing`` (a loaded database)."""
    transition = store.transition

    def slow(*args: Any, **kwargs: Any) -> store.StoredCallback | None:
        if kwargs.get("expected") is CallbackStatus.DIALING:
            time.sleep(0.3)
        return transition(*args, **kwargs)

    monkeypatch.setattr(store, "transition", slow)


async def test_a_rejected_callback_rings_the_next_agent(
    engine: Engine,
    trail: CallTrail,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first agent declines (603): the callback is re-offered and the second one rung."""
    slow_release(monkeypatch)
    now = time.time()
    store.create(engine, queued_callback("c1", now - 10), phone=PHONE, queue_call_id="cb-c1")
    rs = RoutingService(config=routing_config())
    dialer = FakeDialer()
    service = make_service(engine, trail, rs, tmp_path, dialer)
    await service.start()
    try:
        await rs.submit(routing.AgentLoggedIn("ag1", {"apa": 3}, time.time()))
        await until(lambda: len(dialer.placed) == 1)
        await rs.submit(routing.AgentLoggedIn("ag2", {"apa": 3}, time.time()))
        failed(dialer, 0, 603, "Decline")
        await until(lambda: len(dialer.placed) == 2)
        assert [uri for uri, _ in dialer.placed] == [
            "sip:ag1@127.0.0.1:9",
            "sip:ag2@127.0.0.1:9",
        ]
        await asyncio.sleep(0.2)
        router = rs.router
        assert router.agent("ag1").state is routing.AgentState.AVAILABLE  # declined: no pause
        assert router.agent("ag2").state is routing.AgentState.RESERVED  # their phone rings
        assert router.agent("ag2").call_id == "cb-c1"
        claimed = store.get(engine, "c1")
        assert claimed is not None and claimed.status is CallbackStatus.DIALING
        assert claimed.callback.attempts == ()  # the agent declining is no attempt
        await trail.flush()
        # Each try has its own trail call (same attempt number: a second id, not a clash).
        assert "call trail dropped" not in caplog.text
    finally:
        await service.close()
        rs.close()


async def test_a_callback_whose_agent_did_not_answer_rings_the_next_agent(
    engine: Engine, trail: CallTrail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The router's ring timeout re-offers at once, while the first attempt is still ending."""
    slow_release(monkeypatch)
    now = time.time()
    store.create(engine, queued_callback("c1", now - 10), phone=PHONE, queue_call_id="cb-c1")
    rs = RoutingService(config=routing_config(ring_timeout_s=0.3))
    dialer = FakeDialer()
    service = make_service(engine, trail, rs, tmp_path, dialer)
    await service.start()
    try:
        await rs.submit(routing.AgentLoggedIn("ag1", {"apa": 3}, time.time()))
        await until(lambda: len(dialer.placed) == 1)
        await rs.submit(routing.AgentLoggedIn("ag2", {"apa": 3}, time.time()))
        await until(lambda: len(dialer.placed) == 2)  # ag1 rang out: ag2's phone rings
        assert dialer.placed[1][0] == "sip:ag2@127.0.0.1:9"
        assert "out-0" in dialer.cancelled
        assert rs.router.agent("ag1").state is routing.AgentState.PAUSED  # did not answer
    finally:
        await service.close()
        rs.close()


async def test_an_adopted_kept_callback_is_carried_over_at_closing(
    engine: Engine, trail: CallTrail, tmp_path: Path
) -> None:
    """A kept place asked on a node that died is unknown here: found by its entry at closing."""
    paris = ZoneInfo("Europe/Paris")
    from datetime import datetime

    def at(hour: int, minute: int) -> float:
        return datetime(2025, 6, 2, hour, minute, tzinfo=paris).timestamp()  # a Monday

    hours = office_hours()
    config = routing.RoutingConfig.simple([routing.QueueConfig("apa", hours=hours)])
    clock = [at(12, 20)]
    rs = RoutingService(config=config, clock=lambda: clock[0])
    service = make_service(engine, trail, rs, tmp_path, FakeDialer())
    await service.start()
    try:
        # The dead node's caller kept their place: its row and its router entry.
        store.create(
            engine,
            queued_callback("k1", at(12, 10), "sip-dead"),
            phone=PHONE,
            queue_call_id="sip-dead",
            node="dead",
        )
        call = routing.QueuedCall("sip-dead", "apa", joined_at=at(12, 10))
        rs.handle(routing.CallQueued(call, at(12, 10)))
        rs.handle(routing.CallbackKept("sip-dead", at(12, 11)))
        clock[0] = at(12, 30)  # the lunch break
        out = rs.handle(routing.Tick(clock[0]))
        assert [d.kept_callback for d in out if isinstance(d, routing.CallRejectedClosed)] == [True]

        def carried() -> bool:
            row = store.get(engine, "k1")
            return row is not None and row.status is CallbackStatus.WAITING

        await until(carried)
        row = store.get(engine, "k1")
        assert row is not None and row.callback.due_at == pytest.approx(at(13, 30))
        assert row.callback.attempts == ()
    finally:
        await service.close()
        rs.close()


async def test_a_place_kept_while_an_agent_rings_after_closing_is_carried_over(
    engine: Engine, trail: CallTrail, tmp_path: Path
) -> None:
    """Kept while an agent's phone rang, just after the queue closed: closed out at once, carried
    to the reopening, and no entry of it stays on this node."""
    paris = ZoneInfo("Europe/Paris")
    from datetime import datetime

    def at(hour: int, minute: int, second: int = 0) -> float:
        return datetime(2025, 6, 2, hour, minute, second, tzinfo=paris).timestamp()  # a Monday

    config = routing.RoutingConfig.simple([routing.QueueConfig("apa", hours=office_hours())])
    clock = [at(12, 29, 50)]
    rs = RoutingService(config=config, clock=lambda: clock[0])
    service = make_service(engine, trail, rs, tmp_path, FakeDialer())
    await service.start()
    try:
        rs.handle(routing.AgentLoggedIn("a1", {"apa": 5}, clock[0]))
        call = routing.QueuedCall("sip-7", "apa", joined_at=clock[0])
        rs.handle(routing.CallQueued(call, clock[0]))
        assert rs.router.call_phase("sip-7") == "offered"
        clock[0] = at(12, 30, 2)  # closed while a1's phone rings
        stored = await service.keep_place("sip-7", PHONE, origin_call_id="sip-7")
        assert rs.router.call_phase("sip-7") is None  # closed out at once

        def carried() -> bool:
            row = store.get(engine, stored.id)
            return row is not None and row.status is CallbackStatus.WAITING

        await until(carried)
        row = store.get(engine, stored.id)
        assert row is not None and row.callback.due_at == pytest.approx(at(13, 30))
        assert service._entries == {}  # noqa: SLF001 (nothing left to forget)
    finally:
        await service.close()
        rs.close()


class KeptTooLate(RoutingService):
    """The waiting call is answered (here: hangs up) while its callback is being stored."""

    async def submit(self, event: routing.Event) -> list[routing.Decision]:
        if isinstance(event, routing.CallbackKept):
            self.handle(routing.CallCancelled(event.call_id, event.at))
        return await super().submit(event)


async def test_keep_place_refused_when_the_router_did_not_keep_the_call(
    engine: Engine, trail: CallTrail, tmp_path: Path
) -> None:
    rs = KeptTooLate(config=routing_config())
    service = make_service(engine, trail, rs, tmp_path, FakeDialer())
    await service.start()
    try:
        joined = time.time() - 30
        await rs.submit(
            routing.CallQueued(routing.QueuedCall("sip-9", "apa", joined_at=joined), joined)
        )
        with pytest.raises(routing.RoutingError):
            await service.keep_place("sip-9", PHONE, origin_call_id="sip-9")
        (row,) = store.list_callbacks(engine)
        assert row.status is CallbackStatus.CANCELLED and row.cancel_reason
        assert store.open_callbacks(engine) == []
        text = service.metrics.render()[0].decode()
        assert 'callcenter_callbacks_requested_total{mode="keep_place"} 1.0' not in text
    finally:
        await service.close()
        rs.close()


@pytest.mark.parametrize(
    ("number", "allowed"),
    [
        ("+33612345678", True),  # 06 12 34 56 78
        ("+33321000000", True),  # 03 21 00 00 00
        ("+262262261234", True),  # 0262 26 12 34, La Réunion
        ("+262692123456", True),  # a Réunion mobile
        ("+590590123456", True),  # Guadeloupe
        ("+33912345678", True),  # 09 (internet box, charged as a landline)
        ("+33899123456", False),  # 0899 12 34 56, premium rate
        ("+33800123456", False),  # free phone
        ("+882123456789", False),  # international networks (revenue share)
        ("+881234567890", False),  # satellite
        ("+442079460000", False),  # London
        ("3977", False),  # short number
        ("0612345678", False),  # not E.164
        ("", False),
    ],
)
def test_callback_number_allowed(number: str, allowed: bool) -> None:
    assert callback_number_allowed(number) is allowed


async def test_a_callback_rings_the_panel_of_an_agent_who_has_it_open(
    engine: Engine, trail: CallTrail, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ag1's panel is open: the callback rings the browser (with a pop), not the phone; ag1
    declines there and the callback goes to ag2's phone."""
    from datetime import date

    from callcenter.softphone import SoftphoneHub
    from tests.store.seed import seed_apa_usager

    slow_release(monkeypatch)
    now = time.time()
    usager = seed_apa_usager(engine, deposited=date(2026, 9, 1))
    callback = dataclasses.replace(queued_callback("c1", now - 10), usager_id=str(usager))
    store.create(engine, callback, phone=PHONE, queue_call_id="cb-c1")
    rs = RoutingService(config=routing_config())
    dialer = FakeDialer()
    service = make_service(engine, trail, rs, tmp_path, dialer)
    hub = SoftphoneHub()
    service.softphones = hub
    panel: list[dict[str, Any]] = []
    hub.attach("ag1", panel.append)
    await service.start()
    try:
        await rs.submit(routing.AgentLoggedIn("ag1", {"apa": 3}, time.time()))
        await until(lambda: any(m["type"] == "ring" for m in panel))
        (ring,) = [m for m in panel if m["type"] == "ring"]
        assert ring["call_id"] == "cb-c1" and ring["pop"]["dial_out"] is True
        assert ring["pop"]["usager_id"] == usager and ring["pop"]["caller_number"] is None
        assert dialer.placed == []  # no INVITE to ag1's phone
        await rs.submit(routing.AgentLoggedIn("ag2", {"apa": 3}, time.time()))
        assert await hub.from_browser("ag1", {"type": "reject", "call_id": "cb-c1"}) is None
        await until(lambda: len(dialer.placed) == 1)
        assert dialer.placed[0][0] == "sip:ag2@127.0.0.1:9"
        assert rs.router.agent("ag1").state is routing.AgentState.AVAILABLE  # declined
    finally:
        await service.close()
        rs.close()
