from __future__ import annotations

import datetime as dt

import pytest

from routing import (
    AgentLoggedIn,
    CallbackKept,
    CallQueued,
    CallRejectedClosed,
    OfferCall,
    Priority,
    QueueConfig,
    Router,
    RoutingConfig,
    Tick,
)
from routing.callbacks import (
    AttemptOutcome,
    Callback,
    CallbackError,
    CallbackMode,
    CallbackPolicy,
    CallbackStatus,
    Slot,
    attempt_finished,
    book_slot,
    cancel,
    check_slot,
    dialing,
    enter_queue,
    is_due,
    keep_place,
    next_call_time,
    offer_slots,
    queue_closed,
)
from routing.hours import is_open, local_time

from .helpers import PARIS, T0, apa_config, at, call, of_type, office_hours, queued

POLICY = CallbackPolicy()
HOURS = office_hours()


def finish(
    cb: Callback, outcome: AttemptOutcome, now: float, policy: CallbackPolicy = POLICY
) -> Callback:
    return attempt_finished(cb, outcome, now, schedule=HOURS, tz=PARIS, policy=policy)


def test_offered_slots_are_inside_opening_hours_and_skip_holidays() -> None:
    friday_evening = at(2025, 6, 6, 16, 0)
    slots = offer_slots(HOURS, PARIS, friday_evening, POLICY, count=5)
    # 16:00 + 15 min lead -> 16:30 (aligned on 13:30); then Tuesday (Whit Monday is a holiday).
    assert slots == [
        Slot(at(2025, 6, 6, 16, 30), at(2025, 6, 6, 17, 0)),
        Slot(at(2025, 6, 10, 9, 0), at(2025, 6, 10, 9, 30)),
        Slot(at(2025, 6, 10, 9, 30), at(2025, 6, 10, 10, 0)),
        Slot(at(2025, 6, 10, 10, 0), at(2025, 6, 10, 10, 30)),
        Slot(at(2025, 6, 10, 10, 30), at(2025, 6, 10, 11, 0)),
    ]
    # Over the Christmas fortnight: every slot is bookable, none on 25 December or 1 January.
    start = at(2025, 12, 20, 10, 0)
    many = offer_slots(HOURS, PARIS, start, POLICY, count=500)
    assert 100 < len(many) < 500  # bounded by the 14-day horizon
    for slot in many:
        assert is_open(HOURS, PARIS, slot.start) and is_open(HOURS, PARIS, slot.end - 1)
        check_slot(slot, HOURS, PARIS, start, POLICY)
    days = {local_time(s.start, PARIS).date() for s in many}
    assert days.isdisjoint({dt.date(2025, 12, 25), dt.date(2026, 1, 1)})


@pytest.mark.parametrize(
    ("slot", "message"),
    [
        (Slot(at(2025, 6, 9, 10, 0), at(2025, 6, 9, 10, 30)), "2025-06-09 is a public holiday"),
        (Slot(at(2025, 6, 3, 12, 15), at(2025, 6, 3, 12, 45)), "not inside opening hours"),
        (Slot(at(2025, 6, 7, 10, 0), at(2025, 6, 7, 10, 30)), "not inside opening hours"),
        (Slot(at(2025, 6, 1, 10, 0), at(2025, 6, 1, 10, 30)), "in the past"),
        (Slot(at(2025, 8, 1, 10, 0), at(2025, 8, 1, 10, 30)), "more than 14 days ahead"),
    ],
)
def test_bad_slots_are_refused(slot: Slot, message: str) -> None:
    with pytest.raises(CallbackError, match=message):
        book_slot("cb1", "apa", slot, T0, schedule=HOURS, tz=PARIS, policy=POLICY)


def test_closure_day_is_refused() -> None:
    hours = office_hours(closures=frozenset({dt.date(2025, 6, 4)}))
    with pytest.raises(CallbackError, match="closed on 2025-06-04"):
        check_slot(Slot(at(2025, 6, 4, 10), at(2025, 6, 4, 10, 30)), hours, PARIS, T0, POLICY)
    slots = offer_slots(hours, PARIS, T0, POLICY, count=30)
    assert all(local_time(s.start, PARIS).date() != dt.date(2025, 6, 4) for s in slots)


def test_slot_callback_enters_the_queue_with_raised_priority() -> None:
    slot = offer_slots(HOURS, PARIS, T0, POLICY)[0]
    cb = book_slot("cb1", "apa", slot, T0, schedule=HOURS, tz=PARIS, policy=POLICY, usager_id="u42")
    assert cb.status is CallbackStatus.WAITING and cb.due_at == slot.start
    assert not is_due(cb, slot.start - 1) and is_due(cb, slot.start)
    cb, queued_call = enter_queue(cb, slot.start)
    assert cb.status is CallbackStatus.QUEUED
    assert queued_call.callback and queued_call.usager_id == "u42"
    router = Router(config=apa_config())
    router.handle(AgentLoggedIn("a1", {"apa": 5}, slot.start))
    out = router.handle(CallQueued(queued_call, slot.start))
    (offer,) = of_type(out, OfferCall)
    assert offer.dial_out and offer.call.call_id == "cb1"
    assert router.config.priorities.effective(queued_call) is Priority.HIGH


def test_retries_back_off_inside_opening_hours_then_fail() -> None:
    policy = CallbackPolicy(max_attempts=3, first_retry_s=900, backoff_factor=4)
    cb = keep_place(call("c1", joined_at=T0), T0 + 60)
    assert cb.mode is CallbackMode.KEEP_PLACE and cb.joined_at == T0
    cb = dialing(cb, at(2025, 6, 2, 12, 9))
    cb = finish(cb, AttemptOutcome.NO_ANSWER, at(2025, 6, 2, 12, 10), policy)
    # 12:25 would leave less than 10 minutes before 12:30: the next start is 13:30.
    assert cb.status is CallbackStatus.WAITING and cb.due_at == at(2025, 6, 2, 13, 30)
    cb, _ = enter_queue(cb, at(2025, 6, 2, 13, 30))
    cb = dialing(cb, at(2025, 6, 2, 13, 31))
    cb = finish(cb, AttemptOutcome.BUSY, at(2025, 6, 2, 13, 32), policy)
    assert cb.due_at == at(2025, 6, 2, 14, 32)  # 15 min x 4
    cb, _ = enter_queue(cb, at(2025, 6, 2, 14, 32))
    cb = dialing(cb, at(2025, 6, 2, 14, 33))
    cb = finish(cb, AttemptOutcome.UNREACHABLE, at(2025, 6, 2, 14, 40), policy)
    assert cb.status is CallbackStatus.FAILED
    assert [a.outcome for a in cb.attempts] == [
        AttemptOutcome.NO_ANSWER,
        AttemptOutcome.BUSY,
        AttemptOutcome.UNREACHABLE,
    ]
    with pytest.raises(CallbackError, match="already ended"):
        cancel(cb, T0)


def test_connected_completes_and_agent_unavailable_is_not_an_attempt() -> None:
    cb = dialing(keep_place(call("c1", joined_at=T0), T0), T0 + 10)
    again = finish(cb, AttemptOutcome.AGENT_UNAVAILABLE, T0 + 20)
    assert again.status is CallbackStatus.QUEUED and again.attempts == ()
    done = finish(dialing(again, T0 + 30), AttemptOutcome.CONNECTED, T0 + 40)
    assert done.status is CallbackStatus.COMPLETED and done.failed_attempts == 0
    with pytest.raises(CallbackError, match="is completed, expected dialing"):
        finish(done, AttemptOutcome.NO_ANSWER, T0 + 50)
    assert cancel(keep_place(call("c2"), T0), T0).status is CallbackStatus.CANCELLED


def test_kept_callback_carried_over_when_the_queue_closes() -> None:
    t = at(2025, 6, 2, 12, 20)
    router = Router(config=RoutingConfig.simple([QueueConfig("apa", hours=HOURS)]))
    router.handle(queued("c1", at_=t))
    cb = keep_place(call("c1", joined_at=t), t + 5)
    router.handle(CallbackKept("c1", t + 5))
    out = router.handle(Tick(at(2025, 6, 2, 12, 30)))
    assert of_type(out, CallRejectedClosed)[0].kept_callback
    cb = queue_closed(cb, at(2025, 6, 2, 12, 30), schedule=HOURS, tz=PARIS, policy=POLICY)
    assert cb.status is CallbackStatus.WAITING and cb.due_at == at(2025, 6, 2, 13, 30)
    assert cb.attempts == ()


def test_next_call_time() -> None:
    assert next_call_time(None, PARIS, T0, POLICY) == T0
    assert next_call_time(HOURS, PARIS, at(2025, 6, 2, 16, 55), POLICY) == at(2025, 6, 3, 9, 0)
    assert next_call_time(HOURS, PARIS, at(2025, 6, 2, 16, 45), POLICY) == at(2025, 6, 2, 16, 45)


def test_policy_validation_and_back_off() -> None:
    policy = CallbackPolicy(first_retry_s=600, backoff_factor=2, max_retry_s=2000)
    assert [policy.retry_delay(n) for n in (1, 2, 3, 4)] == [600, 1200, 2000, 2000]
    with pytest.raises(CallbackError):
        CallbackPolicy(max_attempts=0)
    with pytest.raises(CallbackError):
        CallbackPolicy(backoff_factor=0.5)
