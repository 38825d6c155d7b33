from __future__ import annotations

import asyncio
import enum
import logging
import sqlite3
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, event

from callcenter.store import (
    CallOutcome,
    CallTrail,
    EventType,
    HangupSide,
    TrailConfig,
    make_engine,
    show_call,
    show_calls,
)
from callcenter.store.trail import purge_calls, purge_transcripts
from tests.store.conftest import FAST

CALLER = "+33612345678"
T0 = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def full_call(trail: CallTrail, call_id: str, start: float = 0.0) -> None:
    trail.call_started(call_id, dialled="3975", caller=CALLER, flow_id="solidarites", at=at(start))
    trail.record(call_id, EventType.ANSWERED, {}, at(start + 0.5))
    trail.record(call_id, "flow_node", {"node_id": "welcome", "node_type": "say"}, at(start + 0.6))
    trail.record(
        call_id,
        EventType.PROMPT_PLAYED,
        {"prompt_id": "welcome", "interrupted": True},
        at(start + 4),
    )
    trail.record(call_id, EventType.DTMF, {"digit": "1", "method": "rfc4733"}, at(start + 4))
    trail.record(call_id, "reinvite", {"hold": True}, at(start + 5))
    trail.record(call_id, EventType.QUEUED, {"skill": "apa", "reason": "menu"}, at(start + 6))
    trail.record(call_id, EventType.HANGUP, {"cause": "bye", "side": "caller"}, at(start + 9))
    trail.call_ended(
        call_id, outcome=CallOutcome.QUEUED, cause="bye", side=HangupSide.CALLER, at=at(start + 9)
    )


async def test_round_trip(trail: CallTrail) -> None:
    full_call(trail, "a84b4c76e66710@pc33.example.org")
    assert await trail.flush() is True
    call = await trail.get_call("a84b4c76e66710@pc33.example.org")
    assert call is not None
    events = call.pop("events")
    assert call == {
        "sip_call_id": "a84b4c76e66710@pc33.example.org",
        "started_at": "2025-03-14T09:26:53.589793+00:00",
        "answered_at": "2025-03-14T09:26:54.089793+00:00",
        "ended_at": "2025-03-14T09:27:02.589793+00:00",
        "dialled": "3975",
        "flow_id": "solidarites",
        "caller": CALLER,
        "outcome": "queued",
        "hangup_cause": "bye",
        "hangup_side": "caller",
    }
    assert [(e["seq"], e["type"]) for e in events] == [
        (0, "answered"),
        (1, "flow_node"),
        (2, "prompt_played"),
        (3, "dtmf"),
        (4, "reinvite"),
        (5, "queued"),
        (6, "hangup"),
    ]
    assert events[2]["data"] == {"prompt_id": "welcome", "interrupted": True}
    assert events[3]["data"] == {"digit": "1", "method": "rfc4733"}
    assert events[3]["ts"] == "2025-03-14T09:26:57.589793+00:00"
    assert events[6]["data"] == {"cause": "bye", "side": "caller"}
    assert trail.stats.written == 9
    assert trail.stats.dropped == 0


async def test_list_calls_newest_first_without_caller(trail: CallTrail) -> None:
    # Inserted out of chronological order: the list follows started_at, not insertion.
    for call_id, start in [("b", 20.0), ("a", 10.0), ("d", 40.0), ("c", 30.0)]:
        full_call(trail, call_id, start)
    trail.call_started("e", dialled="3975", caller=CALLER, flow_id=None, at=at(50))
    assert await trail.flush()
    calls = await trail.list_calls(limit=10)
    assert [c["sip_call_id"] for c in calls] == ["e", "d", "c", "b", "a"]
    assert all("caller" not in c and "events" not in c for c in calls)
    assert CALLER not in repr(calls)
    assert calls[0]["event_count"] == 0
    assert calls[0]["outcome"] is None and calls[0]["ended_at"] is None
    assert calls[1]["event_count"] == 7
    assert [c["sip_call_id"] for c in await trail.list_calls(limit=2)] == ["e", "d"]


async def test_get_unknown_call(trail: CallTrail) -> None:
    assert await trail.get_call("nope") is None


async def test_background_writer_without_flush(database_url: str) -> None:
    trail = CallTrail.from_url(database_url, config=TrailConfig(batch_interval=0.05))
    await trail.start()
    try:
        full_call(trail, "bg")
        assert trail.pending == 9
        call = None
        for _ in range(150):
            call = await trail.get_call("bg")
            if call is not None and call["outcome"] is not None:
                break
            await asyncio.sleep(0.02)
        assert call is not None and call["outcome"] == "queued"
        assert trail.pending == 0
        assert len(call["events"]) == 7
    finally:
        await trail.close()


async def test_batching_many_events_few_transactions(trail: CallTrail) -> None:
    commits = 0

    def on_commit(_conn: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(trail.engine, "commit", on_commit)
    for n in range(10):
        trail.call_started(f"call-{n}", dialled="3975", caller=CALLER, flow_id="f", at=at(n))
    for i in range(1000):
        trail.record(f"call-{i % 10}", "dtmf", {"digit": str(i % 10), "method": "info"}, at(i))
    assert await trail.flush()
    # 1010 operations in at most a handful of transactions (the writer may have taken a first
    # batch before the flush), never one per event.
    assert 1 <= commits <= 3
    call = await trail.get_call("call-3")
    assert call is not None
    assert [e["seq"] for e in call["events"]] == list(range(100))
    assert all(e["data"]["digit"] == "3" for e in call["events"])


async def test_sync_api_never_raises_on_misuse(trail: CallTrail) -> None:
    trail.record("ghost", "dtmf", {"digit": "1"}, at(0))
    trail.call_ended("ghost", outcome="failed", cause=None, side=None, at=at(0))
    trail.call_started("dup", dialled="3975", caller=None, flow_id=None, at=at(0))
    trail.call_started("dup", dialled="3975", caller=None, flow_id=None, at=at(1))
    trail.call_ended("dup", outcome="completed", cause="bye", side="caller", at=at(2))
    trail.record("dup", "late", {}, at(3))
    assert trail.stats.rejected == {"unknown_call": 3, "duplicate_call": 1}
    assert await trail.flush()
    call = await trail.get_call("dup")
    assert call is not None and call["events"] == [] and call["outcome"] == "completed"


async def test_json_safe_data_and_time_zones(trail: CallTrail) -> None:
    class Colour(enum.Enum):
        RED = "red"

    paris = timezone(timedelta(hours=1))
    trail.call_started("tz", dialled="3975", caller=None, flow_id=None, at=datetime(2025, 1, 1, 12))
    trail.record(
        "tz",
        "odd",
        {
            "e": Colour.RED,
            "nan": float("nan"),
            "when": datetime(2025, 1, 1, 13, tzinfo=paris),
            "t": (1, 2),
            "nested": {"k": [b"x"]},
        },
        datetime(2025, 1, 1, 13, 0, 1, tzinfo=paris),
    )
    assert await trail.flush()
    call = await trail.get_call("tz")
    assert call is not None
    # Naive datetimes are taken as UTC; aware ones are converted to UTC.
    assert call["started_at"] == "2025-01-01T12:00:00+00:00"
    (ev,) = call["events"]
    assert ev["ts"] == "2025-01-01T12:00:01+00:00"
    assert ev["data"] == {
        "e": "red",
        "nan": "nan",
        "when": "2025-01-01T12:00:00+00:00",
        "t": [1, 2],
        "nested": {"k": ["b'x'"]},
    }


async def test_duplicate_call_id_in_store_is_isolated(database_url: str) -> None:
    first = CallTrail.from_url(database_url, config=FAST)
    await first.start()
    full_call(first, "same-id")
    await first.close()

    second = CallTrail.from_url(database_url, config=FAST)
    await second.start()
    try:
        # The same Call-ID again (e.g. after a restart) and a good call in the same batch.
        second.call_started("same-id", dialled="0800", caller=None, flow_id=None, at=at(100))
        second.record("same-id", "dtmf", {"digit": "9"}, at(101))
        full_call(second, "good", start=100)
        second.call_ended("same-id", outcome="failed", cause="x", side="service", at=at(102))
        assert await second.flush()
        assert second.stats.dropped == 3
        assert second.stats.written == 9
        good = await second.get_call("good")
        assert good is not None and len(good["events"]) == 7
        old = await second.get_call("same-id")
        assert old is not None
        # The first call's trail is untouched by the second call's operations.
        assert old["dialled"] == "3975" and old["outcome"] == "queued"
        assert [e["type"] for e in old["events"]][-1] == "hangup"
        assert len(old["events"]) == 7
    finally:
        await second.close()


async def test_locked_sqlite_is_retried_and_never_blocks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "callcenter.sqlite3"
    engine: Engine = make_engine(f"sqlite:///{path}", busy_timeout=0.05)
    trail = CallTrail(engine=engine, config=FAST, owns_engine=True)
    await trail.start()
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        caplog.set_level(logging.DEBUG)
        started = time.perf_counter()
        for n in range(50):
            full_call(trail, f"locked-{n}", start=n)
        # 450 sync calls while the database is locked: they only queue.
        assert time.perf_counter() - started < 0.5
        assert await trail.flush() is False
        assert trail.stats.write_failures >= 1
        assert trail.pending == 450
        await asyncio.sleep(0.2)  # the background writer retries and fails too, quietly
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    try:
        assert await trail.flush() is True
        assert trail.pending == 0
        call = await trail.get_call("locked-7")
        assert call is not None and [e["seq"] for e in call["events"]] == list(range(7))
        assert len(await trail.list_calls(100)) == 50
    finally:
        await trail.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("write failed" in m and "locked" in m for m in messages)
    assert not any(CALLER in m or CALLER[1:] in m for m in messages)


async def test_unreachable_database(caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on port 1 of loopback: connections are refused at once.
    trail = CallTrail.from_url(
        "postgresql://postgres@127.0.0.1:1/test",
        config=TrailConfig(batch_interval=0.01, retry_initial=0.01, close_timeout=1.0),
    )
    caplog.set_level(logging.INFO)
    await trail.start()  # logs, does not raise
    full_call(trail, "lost")
    assert await trail.flush() is False
    await asyncio.sleep(0.05)
    await trail.close()
    assert trail.pending == 0
    assert trail.stats.dropped == 9
    assert trail.stats.written == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("unavailable at start" in m for m in messages)
    assert any("possibly unwritten" in m for m in messages)
    assert not any(CALLER in m for m in messages)
    # After close, the sync API still does not raise.
    trail.call_started("after", dialled="1", caller=CALLER, flow_id=None, at=at(0))
    assert trail.stats.rejected["closed"] == 1


async def test_show_call_without_service(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh' / 'callcenter.sqlite3'}"
    assert await show_call(url, "x") is None  # no store yet
    assert await show_calls(url) == []
    async with CallTrail.from_url(url, config=FAST) as trail:
        full_call(trail, "shown")
    call = await show_call(url, "shown")
    assert call is not None and call["caller"] == CALLER and len(call["events"]) == 7
    assert await show_call(url, "other") is None
    assert [c["sip_call_id"] for c in await show_calls(url)] == ["shown"]


async def test_postgresql_round_trip_uses_jsonb(pg_schema_url: str) -> None:
    async with CallTrail.from_url(pg_schema_url, config=FAST) as trail:
        full_call(trail, "pg")
        assert await trail.flush()
        with trail.engine.connect() as conn:
            kind = conn.exec_driver_sql(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'call_event' AND column_name = 'data' "
                "AND table_schema = current_schema()"
            ).scalar_one()
        assert kind == "jsonb"


async def test_transcripts_are_purged_after_retention(trail: CallTrail) -> None:
    """Old transcript texts are erased (GDPR retention); recent ones and metadata stay."""
    trail.call_started("old", dialled="3975", caller=CALLER, flow_id="solidarites", at=at(0))
    trail.call_started("new", dialled="3975", caller=CALLER, flow_id="solidarites", at=at(0))
    for index in range(7):  # more than one chunk below
        trail.record(
            "old",
            EventType.TRANSCRIPT,
            {"text": f"ma mère ne peut plus {index}", "engine": "whisper", "confidence": 0.8},
            at(index),
        )
    trail.record("old", EventType.INTENT, {"decision": "answer", "intent": "x"}, at(10))
    trail.record("new", EventType.TRANSCRIPT, {"text": "récent", "engine": "whisper"}, at(100_000))
    assert await trail.flush() is True
    cutoff = at(50_000)
    assert await trail.purge_transcripts(cutoff) == 7
    old = await trail.get_call("old")
    new = await trail.get_call("new")
    assert old is not None and new is not None
    transcripts = [e["data"] for e in old["events"] if e["type"] == "transcript"]
    assert transcripts == [{"engine": "whisper", "confidence": 0.8, "purged": True}] * 7
    assert [e["data"] for e in old["events"] if e["type"] == "intent"] == [
        {"decision": "answer", "intent": "x"}
    ]
    assert new["events"][0]["data"] == {"text": "récent", "engine": "whisper"}
    # Idempotent, and paging over purged rows still finds nothing more.
    assert await trail.purge_transcripts(cutoff) == 0
    assert purge_transcripts(trail.engine, at(200_000), chunk=2) == 1


async def test_caller_numbers_then_whole_calls_go_after_their_retention(trail: CallTrail) -> None:
    """Numbers are erased first (the statistics stay), then calls and events are deleted."""
    for index in range(5):  # more than one chunk below
        full_call(trail, f"old-{index}", start=index)
    full_call(trail, "middle", start=100_000)
    full_call(trail, "new", start=300_000)
    assert await trail.flush() is True
    deleted = await trail.apply_retention(numbers_before=at(200_000), calls_before=at(50_000))
    assert deleted == 5
    assert await trail.get_call("old-0") is None
    middle = await trail.get_call("middle")
    new = await trail.get_call("new")
    assert middle is not None and new is not None
    assert middle["caller"] is None and middle["outcome"] == "queued"  # the call stays
    assert len(middle["events"]) == 7
    assert new["caller"] == CALLER
    with trail.engine.connect() as conn:
        orphans = conn.exec_driver_sql(
            "SELECT count(*) FROM call_event WHERE call_id NOT IN (SELECT id FROM call)"
        ).scalar_one()
    assert orphans == 0
    # Idempotent; chunked deletion finds the rest.
    assert await trail.apply_retention(numbers_before=at(0), calls_before=at(50_000)) == 0
    assert purge_calls(trail.engine, at(400_000), chunk=1) == 2
    assert await trail.list_calls() == []
