from __future__ import annotations

import pytest

from routing import (
    AgentLoggedIn,
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
from routing.kpi import KpiBook, QueueKpi

from .helpers import T0, apa_config, call, office_hours


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
