from __future__ import annotations

import dataclasses

import pytest

from routing import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPauseRequested,
    AgentReady,
    CallbackKept,
    CallCancelled,
    CallEnded,
    CallerHungUp,
    CallQueued,
    OfferAccepted,
    OfferRejected,
    QueueConfig,
    Router,
    RoutingConfig,
    Tick,
    WrapUpDone,
)
from routing.kpi import (
    KpiBook,
    QueueFact,
    QueueKpi,
    QueueOutcome,
    QueueOutcomes,
    within_service_levels,
)

from .helpers import T0, apa_config, at, call, office_hours


def run(router: Router, book: KpiBook, *events: object) -> None:
    for event in events:
        for decision in router.handle(event):  # type: ignore[arg-type]
            book.apply(decision)


def test_kpis_from_a_small_day() -> None:
    router, book = Router(config=apa_config(max_size=4)), KpiBook()
    run(
        router,
        book,
        AgentLoggedIn("a1", {"apa": 5}, T0),
        # c1 answered after 10 s, talks 200 s, wrap-up done (resolved) 20 s later.
        CallQueued(call("c1", joined_at=T0), T0),
        OfferAccepted("a1", "c1", T0 + 10),
        # c2 waits while a1 talks, and is answered after 50 s.
        CallQueued(call("c2", joined_at=T0 + 20), T0 + 20),
        CallEnded("a1", "c1", T0 + 210),
        WrapUpDone("a1", T0 + 230, resolved=True),
        OfferRejected("a1", "c2", T0 + 232),
        # c3 hangs up after 3 s (short abandon), c4 after 40 s.
        CallQueued(call("c3", joined_at=T0 + 240), T0 + 240),
        CallerHungUp("c3", T0 + 243),
        CallQueued(call("c4", joined_at=T0 + 250), T0 + 250),
        CallerHungUp("c4", T0 + 290),
        AgentLoggedIn("a2", {"apa": 5}, T0 + 295),
        OfferAccepted("a2", "c2", T0 + 300),
        CallEnded("a2", "c2", T0 + 400),
        Tick(T0 + 430),  # wrap-up runs out: no resolution flag
    )
    kpi = book.snapshot("apa")
    assert (kpi.offered, kpi.answered, kpi.abandoned, kpi.abandoned_short) == (4, 2, 2, 1)
    # a1 was offered c1, c2 (rejected), c3 (caller hung up while ringing), c4 (rang out: a1
    # paused "non réponse"); a2 then took c2.
    assert (kpi.offers, kpi.offers_rejected, kpi.offers_missed) == (5, 1, 1)
    assert kpi.answered_within_20s == 1 and kpi.answered_within_60s == 1
    assert kpi.ended == 3  # 2 answered + 1 abandon after 5 s
    assert kpi.service_level(20) == pytest.approx(1 / 3)
    assert kpi.service_level(60) == pytest.approx(1 / 3)
    assert kpi.asa_s == pytest.approx((10 + 280) / 2)
    assert kpi.aht_s == pytest.approx(((210 - 10 + 20) + (400 - 300 + 30)) / 2)
    assert kpi.abandonment_rate == pytest.approx(1 / 3)
    assert kpi.fcr_rate == 1.0
    assert kpi.abandoned_wait_total_s == pytest.approx(43)
    with pytest.raises(ValueError):
        kpi.service_level(30)


def test_overflow_closing_missed_offers_and_refusals() -> None:
    config = RoutingConfig.simple(
        [
            QueueConfig(
                "apa",
                max_size=1,
                max_wait_s=None,
                hours=office_hours(),
                overflow=apa_config().queues["apa"].overflow,
            ),
            QueueConfig("accueil_general"),
        ]
    )
    router, book = Router(config=config), KpiBook()
    noon = T0 + 2 * 3600  # 12:00
    run(
        router,
        book,
        CallQueued(call("c1", joined_at=noon), noon),
        CallQueued(call("c2", joined_at=noon), noon),  # full
        AgentLoggedIn("g", {"accueil_general": 3}, noon),
        Tick(noon + 180),  # overflow, offered to g
        Tick(noon + 200),  # g lets it ring: missed
        Tick(noon + 1800),  # 12:30: closed while waiting
        CallQueued(call("c3", joined_at=noon + 1900), noon + 1900),  # refused: closed
    )
    kpi = book.snapshot("apa")
    assert (kpi.offered, kpi.rejected_full, kpi.rejected_closed) == (1, 1, 1)
    assert (kpi.overflowed, kpi.offers_missed, kpi.closed_while_waiting) == (1, 1, 1)
    assert kpi.service_level(20) == 0.0
    assert book.snapshot("paiement") == QueueKpi("paiement")
    assert set(book.snapshots()) == {"apa"}
    book.record_resolution("apa", False)
    assert book.snapshot("apa").fcr_rate == 0.0


def test_empty_kpis_have_no_rates() -> None:
    kpi = QueueKpi("apa")
    assert kpi.asa_s is None and kpi.aht_s is None and kpi.fcr_rate is None
    assert kpi.service_level(20) is None and kpi.abandonment_rate is None


def test_service_level_flags_of_one_call() -> None:
    assert within_service_levels(20.0) == (True, True)
    assert within_service_levels(20.5) == (False, True)
    assert within_service_levels(60.5) == (False, False)


def test_kept_callbacks_are_not_answers_and_retries_are_not_new_calls() -> None:
    router, book = Router(config=apa_config()), KpiBook()
    run(
        router,
        book,
        AgentLoggedIn("a1", {"apa": 5}, T0),
        CallQueued(call("c1", joined_at=T0), T0),  # offered to a1 at once
        OfferAccepted("a1", "c1", T0 + 5),
        CallQueued(call("c2", joined_at=T0 + 10), T0 + 10),
        CallbackKept("c2", T0 + 20),
        CallQueued(call("c3", joined_at=T0 + 30), T0 + 30),
        CallbackKept("c3", T0 + 40),
        CallCancelled("c3", T0 + 50),  # the callback is cancelled
        CallEnded("a1", "c1", T0 + 105),
        WrapUpDone("a1", T0 + 115, resolved=True),  # a1 is offered c2: dial out
        OfferAccepted("a1", "c2", T0 + 120),
        CallEnded("a1", "c2", T0 + 150),  # nobody answered the outbound call
        Tick(T0 + 180),  # wrap-up runs out
        # The retry enters the queue with the same id (routing.callbacks.enter_queue).
        CallQueued(call("c2", joined_at=T0 + 1000, callback=True), T0 + 1000),
        OfferAccepted("a1", "c2", T0 + 1002),
        CallEnded("a1", "c2", T0 + 1100),
        Tick(T0 + 1130),
    )
    book.record_callback_outcome("apa", True, call_id="c2")
    kpi = book.snapshot("apa")
    assert (kpi.offered, kpi.answered, kpi.callback_entries) == (3, 1, 1)
    assert (kpi.callbacks_requested, kpi.callbacks_cancelled, kpi.callbacks_dialled) == (2, 1, 2)
    assert (kpi.callbacks_completed, kpi.callbacks_failed) == (1, 0)
    assert kpi.unresolved == 0 and kpi.ended == 3 and kpi.lost == 0
    assert kpi.asa_s == 5.0  # the callback's wait is not an answer time
    assert kpi.service_level(20) == pytest.approx(1 / 3)
    assert kpi.service_level(20, live_only=True) == 1.0
    assert kpi.handled == 3 and kpi.wrap_ups_timed_out == 2
    assert kpi.wrap_up_total_s == pytest.approx(10 + 30 + 30)
    assert kpi.longest_wait_s == 5.0
    agent = book.agent_snapshot("a1")
    assert (agent.offers, agent.answered, agent.handled) == (3, 3, 3)
    # A failed callback counts as lost.
    book.record_callback_outcome("apa", False)
    assert book.snapshot("apa").lost == 1


def test_closing_time_waits_transfers_and_the_total() -> None:
    config = RoutingConfig.simple(
        [
            QueueConfig("apa", max_wait_s=None, hours=office_hours()),
            QueueConfig("accueil_general", max_wait_s=60.0),
        ]
    )
    router, book = Router(config=config), KpiBook()
    noon = T0 + 2 * 3600  # 12:00; apa closes at 12:30
    run(
        router,
        book,
        CallQueued(call("c1", joined_at=noon), noon),
        CallbackKept("c1", noon + 10),
        CallQueued(call("c2", joined_at=noon + 20), noon + 20),
        CallQueued(call("g1", "accueil_general", joined_at=noon + 30), noon + 30),
        Tick(noon + 1800),  # g1 left at its maximum wait; then apa closed
    )
    apa = book.snapshot("apa")
    # The kept callback is carried over to the next opening, the waiting caller is not.
    assert (apa.callbacks_closed, apa.closed_while_waiting) == (1, 1)
    assert apa.left_wait_total_s == pytest.approx(1780)
    assert apa.longest_wait_s == pytest.approx(1780)
    general = book.snapshot("accueil_general")
    assert general.max_wait_reached == 1 and general.left_wait_total_s == pytest.approx(60)
    book.record_transfer("apa", "queue")
    book.record_transfer("apa", "agent")
    book.record_transfer("accueil_general", "external")
    with pytest.raises(ValueError):
        book.record_transfer("apa", "sideways")
    assert (book.snapshot("apa").transfers_queue, book.snapshot("apa").transfers) == (1, 2)
    total = book.total()
    assert total.queue == "all"
    assert (total.offered, total.transfers, total.max_wait_reached) == (3, 3, 1)
    assert total.longest_wait_s == pytest.approx(1780)
    assert total.unresolved == 0


def test_agent_kpis_and_occupancy() -> None:
    router, book = Router(config=apa_config()), KpiBook()
    run(
        router,
        book,
        AgentLoggedIn("a1", {"apa": 5}, T0),  # available
        CallQueued(call("c1", joined_at=T0 + 10), T0 + 10),  # reserved
        OfferAccepted("a1", "c1", T0 + 15),  # on call
        CallEnded("a1", "c1", T0 + 115),  # wrap-up
        WrapUpDone("a1", T0 + 125, resolved=False),  # available
        AgentPauseRequested("a1", "pause", T0 + 200),
        AgentReady("a1", T0 + 260),
        CallQueued(call("c2", joined_at=T0 + 300), T0 + 300),  # reserved
        Tick(T0 + 350),  # rang out at 320: paused "non réponse"
    )
    now = book.agent_snapshot("a1", now=T0 + 350)
    assert now.paused_s == pytest.approx(60 + 30)
    run(router, book, AgentLoggedOut("a1", T0 + 400))
    agent = book.agent_snapshot("a1")
    assert (agent.offers, agent.answered, agent.missed, agent.rejected) == (2, 1, 1, 0)
    assert (agent.handled, agent.talk_total_s, agent.wrap_up_total_s) == (1, 100.0, 10.0)
    assert agent.available_s == pytest.approx(10 + 75 + 40)
    assert agent.busy_s == pytest.approx(115 + 20)
    assert agent.paused_s == pytest.approx(60 + 80)
    assert agent.occupancy == pytest.approx(135 / 260)
    assert book.occupancy() == pytest.approx(135 / 260)
    assert book.agent_snapshot("a1", now=T0 + 9999) == agent  # offline: nothing accrues
    assert set(book.agent_snapshots()) == {"a1"}
    assert book.agent_snapshot("nobody").occupancy is None
    assert book.snapshot("apa").fcr_rate == 0.0


def test_a_slot_callback_entering_under_its_own_id_is_not_a_new_offered_call() -> None:
    router, book = Router(config=apa_config()), KpiBook()
    book.record_callback_request("apa")
    run(
        router,
        book,
        CallQueued(call("cb-7", joined_at=T0, callback=True), T0),
        AgentLoggedIn("a1", {"apa": 5}, T0 + 5),
    )
    kpi = book.snapshot("apa")
    assert (kpi.offered, kpi.callback_entries, kpi.callbacks_requested) == (0, 1, 1)
    book.record_callback_outcome("apa", True, call_id="cb-7")
    assert book.snapshot("apa").callbacks_completed == 1


def test_queue_outcomes_tell_callbacks_from_answers_and_forget_them() -> None:
    """The classification both the book and the Prometheus counters count from."""
    router, outcomes = Router(config=apa_config()), QueueOutcomes()
    facts: list[tuple[QueueOutcome, float]] = []
    for event in (
        AgentLoggedIn("a1", {"apa": 5}, T0),
        CallQueued(call("c1", joined_at=T0), T0),
        OfferAccepted("a1", "c1", T0 + 5),
        CallQueued(call("c2", joined_at=T0 + 10), T0 + 10),
        CallbackKept("c2", T0 + 20),
        CallQueued(call("c3", joined_at=T0 + 30), T0 + 30),
        CallbackKept("c3", T0 + 40),
        CallCancelled("c3", T0 + 50),
        CallEnded("a1", "c1", T0 + 105),
        WrapUpDone("a1", T0 + 115),  # a1 is offered c2: dial out
        OfferAccepted("a1", "c2", T0 + 120),
        CallEnded("a1", "c2", T0 + 150),
        Tick(T0 + 180),
        CallQueued(call("c2", joined_at=T0 + 1000, callback=True), T0 + 1000),  # the retry
        OfferAccepted("a1", "c2", T0 + 1002),
        CallEnded("a1", "c2", T0 + 1100),
        Tick(T0 + 1130),
    ):
        for decision in router.handle(event):
            fact = outcomes.classify(decision)
            if fact is not None:
                assert fact.queue == "apa"
                facts.append((fact.outcome, fact.wait_s))
    assert facts == [
        (QueueOutcome.JOINED, 0.0),
        (QueueOutcome.ANSWERED, 5.0),
        (QueueOutcome.JOINED, 0.0),
        (QueueOutcome.CALLBACK_KEPT, 10.0),
        (QueueOutcome.JOINED, 0.0),
        (QueueOutcome.CALLBACK_KEPT, 10.0),
        (QueueOutcome.CALLBACK_CANCELLED, 20.0),
        (QueueOutcome.CALLBACK_DIALLED, 110.0),
        (QueueOutcome.CALLBACK_ENTRY, 0.0),
        (QueueOutcome.CALLBACK_DIALLED, 2.0),
    ]
    # Nothing is left to remember once the callbacks left the queue (a long-running node's
    # exporter never calls forget), and a reused id is a new call again.
    assert outcomes.tracked == 0
    (fact,) = [
        f
        for d in router.handle(CallQueued(call("c2", joined_at=T0 + 2000), T0 + 2000))
        if (f := outcomes.classify(d)) is not None
    ]
    assert fact.outcome is QueueOutcome.JOINED


def test_a_place_kept_while_ringing_as_the_queue_closes_is_not_remembered() -> None:
    """The caller keeps their place while an agent rings, just after closing time: the kept
    place is closed out at once (carried to the reopening), and nothing stays tracked."""
    router, outcomes = Router(config=apa_config(hours=office_hours())), QueueOutcomes()
    closing = at(2025, 6, 2, 12, 30)
    facts: list[QueueOutcome] = []
    for event in (
        AgentLoggedIn("a1", {"apa": 5}, closing - 100),
        CallQueued(call("c1", joined_at=closing - 10), closing - 10),  # a1 rings at once
        Tick(closing),
        CallbackKept("c1", closing + 2),
    ):
        for decision in router.handle(event):
            if (fact := outcomes.classify(decision)) is not None:
                facts.append(fact.outcome)
    assert facts == [
        QueueOutcome.JOINED,
        QueueOutcome.CALLBACK_KEPT,
        QueueOutcome.CALLBACK_CLOSED,
    ]
    assert router.call_phase("c1") is None and outcomes.tracked == 0


# What each outcome adds to a queue's figures (a wait of 30 s; short abandons are 5 s or less).
_BOOK_FIELDS = {
    QueueOutcome.JOINED: {"offered": 1},
    QueueOutcome.CALLBACK_ENTRY: {"callback_entries": 1},
    QueueOutcome.ANSWERED: {
        "answered": 1,
        "answer_wait_total_s": 30.0,
        "answered_within_60s": 1,
        "longest_wait_s": 30.0,
    },
    QueueOutcome.CALLBACK_DIALLED: {"callbacks_dialled": 1},
    QueueOutcome.ABANDONED: {
        "abandoned": 1,
        "abandoned_wait_total_s": 30.0,
        "longest_wait_s": 30.0,
    },
    QueueOutcome.CALLBACK_CANCELLED: {"callbacks_cancelled": 1},
    QueueOutcome.REMOVED: {"removed": 1, "left_wait_total_s": 30.0, "longest_wait_s": 30.0},
    QueueOutcome.MAX_WAIT: {
        "max_wait_reached": 1,
        "left_wait_total_s": 30.0,
        "longest_wait_s": 30.0,
    },
    QueueOutcome.CLOSED_AT_DOOR: {"rejected_closed": 1},
    QueueOutcome.CLOSED_WHILE_WAITING: {
        "closed_while_waiting": 1,
        "left_wait_total_s": 30.0,
        "longest_wait_s": 30.0,
    },
    QueueOutcome.CALLBACK_CLOSED: {"callbacks_closed": 1},
    QueueOutcome.REJECTED_FULL: {"rejected_full": 1},
    QueueOutcome.CALLBACK_KEPT: {"callbacks_requested": 1},
}


@pytest.mark.parametrize("outcome", list(QueueOutcome))
def test_each_queue_outcome_adds_to_its_own_fields(outcome: QueueOutcome) -> None:
    book = KpiBook()
    book._count(QueueFact(outcome, "apa", 30.0))
    kpi = book.snapshot("apa")
    changed = {
        f.name: getattr(kpi, f.name)
        for f in dataclasses.fields(kpi)
        if f.name != "queue" and getattr(kpi, f.name)
    }
    assert changed == _BOOK_FIELDS[outcome]


@pytest.mark.parametrize(("wait", "short"), [(4.9, 1), (5.0, 1), (5.1, 0)])
def test_a_short_abandon_is_five_seconds_or_less_as_prometheus_counts_it(
    wait: float, short: int
) -> None:
    book = KpiBook()
    book._count(QueueFact(QueueOutcome.ABANDONED, "apa", wait))
    assert book.snapshot("apa").abandoned_short == short
