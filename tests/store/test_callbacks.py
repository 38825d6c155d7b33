"""Callbacks repository on SQLite and PostgreSQL: create, compare-and-set claims, cancel, erase."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from callcenter.store import callbacks, db
from callcenter.store.callbacks import CALLBACK, CallbackStoreError
from routing import Priority, QueuedCall
from routing import callbacks as rules
from routing.callbacks import AttemptOutcome, CallbackPolicy, CallbackStatus, Slot

T0 = datetime(2026, 12, 7, 9, 30, tzinfo=UTC).timestamp()
PHONE = "+33612345678"
PARIS = ZoneInfo("Europe/Paris")
POLICY = CallbackPolicy(max_attempts=2, first_retry_s=60.0)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = db.make_engine(database_url)
    db.create_schema(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def _kept(callback_id: str = "c1") -> rules.Callback:
    call = QueuedCall("sip-call-1", "apa", Priority.HIGH, joined_at=T0 - 120, intent="apa_info")
    return dataclasses.replace(rules.keep_place(call, T0), id=callback_id)


def test_create_and_read_back(engine: Engine) -> None:
    stored = callbacks.create(
        engine, _kept(), phone=PHONE, origin_call_id="sip-call-1", queue_call_id="sip-call-1"
    )
    assert stored.status is CallbackStatus.QUEUED
    again = callbacks.get(engine, "c1")
    assert again == stored
    cb = again.callback
    assert (cb.skill, cb.priority, cb.mode, cb.intent) == (
        "apa",
        Priority.HIGH,
        rules.CallbackMode.KEEP_PLACE,
        "apa_info",
    )
    assert cb.joined_at == pytest.approx(T0 - 120)  # the place kept
    assert again.phone == PHONE and again.masked_phone().endswith("78")
    assert PHONE not in again.masked_phone()
    assert callbacks.get(engine, "nope") is None
    slot = Slot(T0 + 3600, T0 + 7200)
    booked = rules.book_slot("c2", "apa", slot, T0, schedule=None, tz=PARIS, policy=POLICY)
    stored2 = callbacks.create(engine, booked, phone=PHONE)
    assert stored2.callback.slot == slot and stored2.callback.due_at == pytest.approx(T0 + 3600)
    assert {s.id for s in callbacks.open_callbacks(engine)} == {"c1", "c2"}


@pytest.mark.parametrize("bad", ["0612345678", "+3361234", "+33 6 12 34 56 78", "abc", "3977"])
def test_only_e164_numbers_are_stored(engine: Engine, bad: str) -> None:
    with pytest.raises(CallbackStoreError, match="phone") as info:
        callbacks.create(engine, _kept(), phone=bad)
    assert bad not in str(info.value)  # never the number in a message


@pytest.mark.parametrize(
    "ok",
    ["+33612345678", "+33321000000", "+262262261234"],  # 06..., 03 21..., 0262 (La Réunion)
)
def test_french_fixed_and_mobile_numbers_are_stored(engine: Engine, ok: str) -> None:
    assert callbacks.create(engine, _kept(), phone=ok).phone == ok


@pytest.mark.parametrize(
    "toll",
    [
        "+33899123456",  # 0899 12 34 56: premium rate
        "+882123456789",  # international networks (revenue share)
        "+442079460000",  # London
        "+33800123456",  # free phone
    ],
)
def test_numbers_that_cost_the_service_are_refused(engine: Engine, toll: str) -> None:
    """Toll fraud: a caller must not make the trunk dial a premium or foreign number."""
    with pytest.raises(CallbackStoreError, match="phone") as info:
        callbacks.create(engine, _kept(), phone=toll)
    assert toll not in str(info.value)
    assert callbacks.get(engine, "c1") is None


def test_transition_is_a_compare_and_set(engine: Engine) -> None:
    stored = callbacks.create(engine, _kept(), phone=PHONE)
    dialing = rules.dialing(stored.callback, T0 + 10)
    won = callbacks.transition(engine, dialing, expected=CallbackStatus.QUEUED, node="a")
    assert won is not None and won.status is CallbackStatus.DIALING and won.node == "a"
    # The second node read "queued" too: it loses.
    assert callbacks.transition(engine, dialing, expected=CallbackStatus.QUEUED, node="b") is None
    assert callbacks.get(engine, "c1").node == "a"  # type: ignore[union-attr]
    busy = rules.attempt_finished(
        won.callback,
        AttemptOutcome.BUSY,
        T0 + 20,
        schedule=None,
        tz=PARIS,
        policy=POLICY,
    )
    saved = callbacks.transition(engine, busy, expected=CallbackStatus.DIALING)
    assert saved is not None and saved.status is CallbackStatus.WAITING
    assert saved.last_outcome == "busy" and len(saved.callback.attempts) == 1
    assert saved.callback.attempts[0].outcome is AttemptOutcome.BUSY
    assert saved.callback.due_at == pytest.approx(T0 + 80)  # first_retry_s after the attempt


def test_claim_race_between_threads(engine: Engine) -> None:
    stored = callbacks.create(engine, _kept(), phone=PHONE)
    dialing = rules.dialing(stored.callback, T0 + 10)
    barrier = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def claim(node: str) -> None:
        barrier.wait()
        won = callbacks.transition(engine, dialing, expected=CallbackStatus.QUEUED, node=node)
        with lock:
            results.append(won is not None)

    threads = [threading.Thread(target=claim, args=(f"n{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]


def test_cancel_and_listing(engine: Engine) -> None:
    callbacks.create(engine, _kept(), phone=PHONE)
    with pytest.raises(CallbackStoreError, match="reason"):
        callbacks.cancel(engine, "c1", reason=" ")
    done = callbacks.cancel(engine, "c1", reason="doublon")
    assert done.status is CallbackStatus.CANCELLED and done.cancel_reason == "doublon"
    with pytest.raises(CallbackStoreError, match="already ended"):
        callbacks.cancel(engine, "c1", reason="again")
    with pytest.raises(CallbackStoreError, match="no callback"):
        callbacks.cancel(engine, "zz", reason="x")
    assert callbacks.open_callbacks(engine) == []
    assert [s.id for s in callbacks.list_callbacks(engine)] == ["c1"]
    # A cancelled callback cannot be claimed any more.
    dialing = rules.dialing(_kept(), T0 + 10)
    assert callbacks.transition(engine, dialing, expected=CallbackStatus.QUEUED) is None


def test_numbers_of_ended_callbacks_are_erased_after_retention(engine: Engine) -> None:
    callbacks.create(engine, _kept("old"), phone=PHONE)
    callbacks.create(engine, _kept("live"), phone=PHONE)
    callbacks.cancel(engine, "old", reason="x", now=datetime.now(UTC) - timedelta(days=40))
    assert callbacks.erase_phones(engine, datetime.now(UTC) - timedelta(days=30)) == 1
    with engine.connect() as conn:
        phones = dict(conn.execute(select(CALLBACK.c.id, CALLBACK.c.phone)).all())
    assert phones == {"old": None, "live": PHONE}  # the open one keeps its number
    assert callbacks.get(engine, "old").masked_phone() == "(effacé)"  # type: ignore[union-attr]
