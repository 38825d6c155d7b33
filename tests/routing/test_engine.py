"""The router's rules, one by one, with a controlled clock (every event goes through Checker)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from routing import (
    AgentLoggedIn,
    AgentLoggedOut,
    AgentPauseRequested,
    AgentReady,
    AgentSkillsChanged,
    AgentState,
    AgentStateChanged,
    AgentStateError,
    CallAbandoned,
    CallAnswered,
    CallbackKept,
    CallCancelled,
    CallCompleted,
    CallEnded,
    CallEnqueued,
    CallerHungUp,
    CallKeptForCallback,
    CallMaxWaitReached,
    CallOverflowed,
    CallQueued,
    CallRejectedClosed,
    CallRejectedQueueFull,
    CallRemoved,
    Closed,
    EventIgnored,
    MaxWaitReached,
    Offer,
    OfferAccepted,
    OfferCall,
    OfferEnded,
    OfferEndReason,
    OfferRejected,
    OfferTimedOut,
    Priority,
    QueueConfig,
    Router,
    RoutingConfig,
    RoutingError,
    Tick,
    UnknownAgentError,
    UnknownQueueError,
    Wait,
    WrapUpDone,
    WrapUpEnded,
    choose_agent,
)

from .helpers import T0, Checker, apa_config, at, call, of_type, office_hours, queued

APA_EXPERT = {"apa": 5}
APA_BEGINNER = {"apa": 1}
GENERALIST = {"accueil_general": 3}


@pytest.fixture
def checker() -> Checker:
    return Checker(apa_config())


def login(ck: Checker, agent: str, skills: dict[str, int], t: float = T0) -> None:
    ck.handle(AgentLoggedIn(agent, skills, t))


def offers(decisions: Sequence[object]) -> list[tuple[str, str]]:
    return [(d.agent_id, d.call.call_id) for d in decisions if isinstance(d, OfferCall)]


# -- offers and agent choice (Rules 2, 3) ------------------------------------------------


def test_call_is_offered_at_once_to_an_available_qualified_agent(checker: Checker) -> None:
    login(checker, "a1", {"apa": 4})
    out = checker.handle(queued("c1", at_=T0 + 5))
    enqueued = of_type(out, CallEnqueued)
    assert enqueued == [CallEnqueued("c1", "apa", Priority.NORMAL, 1, T0 + 5)]
    (offer,) = of_type(out, OfferCall)
    assert (offer.agent_id, offer.queue, offer.proficiency) == ("a1", "apa", 4)
    assert offer.ring_deadline == T0 + 5 + 20.0
    assert offer.dial_out is False
    assert checker.router.agent("a1").state is AgentState.RESERVED
    assert checker.router.agent("a1").call_id == "c1"


def test_best_proficiency_wins(checker: Checker) -> None:
    login(checker, "good", {"apa": 3})
    login(checker, "best", {"apa": 5})
    login(checker, "other", {"apa": 4})
    out = checker.handle(queued("c1", at_=T0 + 1))
    assert offers(out) == [("best", "c1")]


def test_longest_idle_breaks_ties(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT, T0)
    login(checker, "a2", APA_EXPERT, T0 + 1)
    # a1 takes a call and finishes it later than a2's login: a2 has been idle longer.
    checker.handle(queued("c1", at_=T0 + 2))
    checker.handle(OfferAccepted("a1", "c1", T0 + 3))
    checker.handle(CallEnded("a1", "c1", T0 + 60))
    checker.handle(WrapUpDone("a1", T0 + 70, resolved=True))
    out = checker.handle(queued("c2", at_=T0 + 80))
    assert offers(out) == [("a2", "c2")]
    checker.handle(OfferAccepted("a2", "c2", T0 + 81))
    checker.handle(CallEnded("a2", "c2", T0 + 100))
    checker.handle(WrapUpDone("a2", T0 + 101))
    # Now a1 (idle since T0+70) beats a2 (idle since T0+101).
    assert offers(checker.handle(queued("c3", at_=T0 + 110))) == [("a1", "c3")]


def test_agent_without_the_skill_is_never_offered(checker: Checker) -> None:
    login(checker, "g", GENERALIST)
    out = checker.handle(queued("c1", at_=T0 + 1))
    assert offers(out) == []
    assert checker.router.position("c1") == 1


def test_one_agent_never_gets_two_offers(checker: Checker) -> None:
    checker.handle(queued("c1", at_=T0))
    checker.handle(queued("c2", at_=T0 + 1))
    out = checker.handle(AgentLoggedIn("a1", APA_EXPERT, T0 + 2))
    assert offers(out) == [("a1", "c1")]
    assert checker.router.position("c2") == 1
    assert checker.router.call_phase("c1") == "offered"


# -- call order (Rule 1) and priorities ----------------------------------------------------


def test_higher_priority_first_then_longest_waiting(checker: Checker) -> None:
    checker.handle(queued("old", at_=T0))
    checker.handle(queued("young", at_=T0 + 10))
    checker.handle(queued("urgent", at_=T0 + 20, priority=Priority.HIGH))
    checker.handle(queued("low", at_=T0 - 5, priority=Priority.LOW))
    assert [c.call_id for c in checker.router.waiting("apa")] == ["urgent", "old", "young", "low"]
    assert checker.router.position("young") == 3
    served = []
    for index in range(4):
        out = checker.handle(AgentLoggedIn(f"a{index}", APA_EXPERT, T0 + 30 + index))
        served += [call_id for _, call_id in offers(out)]
    assert served == ["urgent", "old", "young", "low"]


def test_critical_call_in_another_queue_goes_first_to_a_shared_agent(checker: Checker) -> None:
    checker.handle(queued("apa1", at_=T0))
    checker.handle(queued("sos", "urgence_sociale", T0 + 30, priority=Priority.CRITICAL))
    out = checker.handle(AgentLoggedIn("both", {"apa": 5, "urgence_sociale": 5}, T0 + 40))
    assert offers(out) == [("both", "sos")]


@pytest.mark.parametrize(
    ("base", "previous", "callback", "expected"),
    [
        (Priority.NORMAL, None, False, Priority.NORMAL),
        (Priority.NORMAL, T0 - 47 * 3600, False, Priority.HIGH),  # repeat caller within 48 h
        (Priority.NORMAL, T0 - 49 * 3600, False, Priority.NORMAL),  # too long ago
        (Priority.NORMAL, None, True, Priority.HIGH),  # scheduled callback
        (Priority.LOW, T0 - 3600, True, Priority.HIGH),  # two raises
        (Priority.HIGH, T0 - 3600, True, Priority.HIGH),  # raises stop below critical
        (Priority.CRITICAL, None, False, Priority.CRITICAL),
    ],
)
def test_priority_raises(
    checker: Checker, base: Priority, previous: float | None, callback: bool, expected: Priority
) -> None:
    out = checker.handle(
        queued("c1", at_=T0, priority=base, previous_contact_at=previous, callback=callback)
    )
    assert of_type(out, CallEnqueued)[0].priority is expected


def test_repeat_caller_overtakes_a_normal_call(checker: Checker) -> None:
    checker.handle(queued("first", at_=T0))
    checker.handle(queued("again", at_=T0 + 5, previous_contact_at=T0 - 3600))
    assert checker.router.position("again") == 1


# -- relaxation and overflow (Rule 2, Rule 5) ----------------------------------------------


def test_relaxation_steps_apply_at_their_exact_times(checker: Checker) -> None:
    login(checker, "beginner", APA_BEGINNER)
    checker.handle(queued("c1", at_=T0 + 1))
    assert checker.router.get_timer() == T0 + 61  # first step: proficiency 2
    assert offers(checker.handle(Tick(T0 + 61))) == []
    assert checker.router.get_timer() == T0 + 121  # second step: proficiency 1
    out = checker.handle(Tick(T0 + 121))
    assert offers(out) == [("beginner", "c1")]
    assert of_type(out, OfferCall)[0].at == T0 + 121


def test_a_late_tick_still_applies_steps_at_their_time(checker: Checker) -> None:
    login(checker, "beginner", APA_BEGINNER)
    checker.handle(queued("c1", at_=T0))
    out = checker.handle(Tick(T0 + 500))  # the adapter slept long: rules fire at their time
    (offer,) = of_type(out, OfferCall)
    assert offer.at == T0 + 120
    # It then rang out at T0 + 140 and nobody else can take it: the agent is paused.
    (ended,) = of_type(out, OfferEnded)
    assert (ended.reason, ended.at) == (OfferEndReason.RING_TIMEOUT, T0 + 140)
    assert checker.router.agent("beginner").pause_reason == "non réponse"


def test_intermediate_step(checker: Checker) -> None:
    login(checker, "mid", {"apa": 2})
    checker.handle(queued("c1", at_=T0))
    out = checker.handle(Tick(T0 + 59.9))
    assert offers(out) == []
    out = checker.handle(Tick(T0 + 60))
    assert offers(out) == [("mid", "c1")]


def test_overflow_after_its_delay(checker: Checker) -> None:
    login(checker, "g", GENERALIST)
    checker.handle(queued("c1", at_=T0))
    assert offers(checker.handle(Tick(T0 + 179))) == []
    out = checker.handle(Tick(T0 + 180))
    assert of_type(out, CallOverflowed) == [
        CallOverflowed("c1", "apa", "accueil_general", 180.0, T0 + 180)
    ]
    (offer,) = of_type(out, OfferCall)
    assert (offer.agent_id, offer.queue, offer.proficiency) == ("g", "accueil_general", 3)
    checker.handle(OfferAccepted("g", "c1", T0 + 185))
    answered = of_type(checker.decisions, CallAnswered)[0]
    assert (answered.queue, answered.via_queue, answered.wait_s) == ("apa", "accueil_general", 185)


def test_overflowed_call_stays_reachable_by_its_own_queue_first(checker: Checker) -> None:
    checker.handle(queued("c1", at_=T0))
    checker.handle(Tick(T0 + 200))
    assert [c.call_id for c in checker.router.waiting("accueil_general")] == ["c1"]
    assert checker.router.position("c1") == 1
    out = checker.handle(AgentLoggedIn("g", GENERALIST, T0 + 210))
    assert offers(out) == [("g", "c1")]
    checker.handle(OfferRejected("g", "c1", T0 + 211))
    # Both a generalist and an APA beginner free: the call's own queue comes first.
    checker.handle(AgentLoggedIn("g2", GENERALIST, T0 + 212))
    assert checker.router.agent("g2").state is AgentState.RESERVED
    checker.handle(OfferRejected("g2", "c1", T0 + 213))
    checker.handle(AgentPauseRequested("g", "pause", T0 + 214))
    checker.handle(AgentPauseRequested("g2", "pause", T0 + 214))
    checker.handle(AgentLoggedIn("g3", GENERALIST, T0 + 215))
    checker.handle(AgentPauseRequested("g3", "pause", T0 + 215))
    checker.handle(queued("filler", "accueil_general", T0 + 216))
    both = checker.handle(AgentLoggedIn("b", APA_BEGINNER, T0 + 220))
    assert offers(both) == [("b", "c1")]
    assert of_type(both, OfferCall)[0].queue == "apa"


def test_overflow_waits_for_the_target_queue_to_open() -> None:
    hours = office_hours()
    config = RoutingConfig.simple(
        [
            QueueConfig(
                "apa",
                max_wait_s=None,
                overflow=apa_config().queues["apa"].overflow,
            ),
            QueueConfig("accueil_general", hours=hours),
        ]
    )
    ck = Checker(config)
    lunch = at(2025, 6, 2, 12, 40)
    ck.handle(queued("c1", at_=lunch))
    ck.handle(AgentLoggedIn("g", GENERALIST, lunch))
    out = ck.handle(Tick(lunch + 600))
    assert of_type(out, CallOverflowed) == []
    reopening = at(2025, 6, 2, 13, 30)
    assert ck.router.get_timer() == reopening
    out = ck.handle(Tick(reopening))
    assert [d.to_queue for d in of_type(out, CallOverflowed)] == ["accueil_general"]
    assert offers(out) == [("g", "c1")]


# -- ring timeout, reject, accept (the offer cycle) -----------------------------------------


def test_ring_timeout_pauses_the_agent_and_goes_to_the_next(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT, T0)
    login(checker, "a2", {"apa": 4}, T0)
    checker.handle(queued("c1", at_=T0 + 1))
    assert checker.router.get_timer() == T0 + 21
    out = checker.handle(Tick(T0 + 21))
    assert of_type(out, OfferEnded) == [
        OfferEnded("a1", "c1", OfferEndReason.RING_TIMEOUT, T0 + 21)
    ]
    assert AgentStateChanged("a1", AgentState.PAUSED, "non réponse", None, T0 + 21) in out
    assert offers(out) == [("a2", "c1")]


def test_phone_side_timeout_has_the_same_effect(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0 + 1))
    out = checker.handle(OfferTimedOut("a1", "c1", T0 + 4))
    assert of_type(out, OfferEnded)[0].reason is OfferEndReason.RING_TIMEOUT
    assert checker.router.agent("a1").state is AgentState.PAUSED
    assert checker.router.position("c1") == 1
    # The stale ring timer does not fire any more.
    assert checker.router.get_timer() == T0 + 61


def test_rejected_call_is_not_offered_again_to_that_agent(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0 + 1))
    out = checker.handle(OfferRejected("a1", "c1", T0 + 2))
    assert of_type(out, OfferEnded)[0].reason is OfferEndReason.REJECTED
    assert checker.router.agent("a1").state is AgentState.AVAILABLE
    assert offers(out) == []
    # ...but the agent takes the next call,
    assert offers(checker.handle(queued("c2", at_=T0 + 3))) == [("a1", "c2")]
    # and another agent takes the rejected one.
    assert offers(checker.handle(AgentLoggedIn("a2", APA_EXPERT, T0 + 4))) == [("a2", "c1")]


def test_accept_talk_wrap_up_cycle(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0))
    out = checker.handle(OfferAccepted("a1", "c1", T0 + 8))
    assert of_type(out, CallAnswered) == [CallAnswered("a1", "c1", "apa", "apa", 8.0, T0 + 8)]
    assert checker.router.agent("a1").state is AgentState.ON_CALL
    out = checker.handle(CallEnded("a1", "c1", T0 + 308))
    assert of_type(out, CallCompleted) == [CallCompleted("a1", "c1", "apa", 300.0, T0 + 308)]
    assert checker.router.agent("a1").state is AgentState.WRAP_UP
    # A call arriving during wrap-up waits for its end (30 s for apa).
    checker.handle(queued("c2", at_=T0 + 320))
    assert checker.router.get_timer() == T0 + 338
    out = checker.handle(Tick(T0 + 338))
    assert of_type(out, WrapUpEnded) == [
        WrapUpEnded("a1", "c1", "apa", 330.0, None, True, T0 + 338)
    ]
    assert offers(out) == [("a1", "c2")]
    assert checker.router.agent("a1").last_call_ended_at == T0 + 338


def test_wrap_up_done_early_with_resolution(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0))
    checker.handle(OfferAccepted("a1", "c1", T0 + 1))
    checker.handle(CallEnded("a1", "c1", T0 + 61))
    out = checker.handle(WrapUpDone("a1", T0 + 70, resolved=True))
    assert of_type(out, WrapUpEnded) == [WrapUpEnded("a1", "c1", "apa", 69.0, True, False, T0 + 70)]
    assert checker.router.agent("a1").state is AgentState.AVAILABLE
    # The wrap-up timer was cancelled.
    assert checker.router.get_timer() is None


def test_no_wrap_up_time() -> None:
    ck = Checker(apa_config(wrap_up_s=0.0))
    ck.handle(AgentLoggedIn("a1", APA_EXPERT, T0))
    ck.handle(queued("c1", at_=T0))
    ck.handle(queued("c2", at_=T0 + 1))
    ck.handle(OfferAccepted("a1", "c1", T0 + 2))
    out = ck.handle(CallEnded("a1", "c1", T0 + 30))
    assert [type(d).__name__ for d in out if not isinstance(d, AgentStateChanged)] == [
        "CallCompleted",
        "WrapUpEnded",
        "OfferCall",
    ]


def test_accept_after_timeout_is_ignored(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0))
    out = checker.handle(OfferAccepted("a1", "c1", T0 + 25))  # the ring timeout fired at +20
    assert of_type(out, OfferEnded)[0].at == T0 + 20
    assert of_type(out, EventIgnored) == [
        EventIgnored("OfferAccepted", "a1", "c1", "no such offer", T0 + 25)
    ]
    assert checker.router.agent("a1").state is AgentState.PAUSED


# -- pauses, logout, skills ----------------------------------------------------------------


def test_pause_and_ready(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    out = checker.handle(AgentPauseRequested("a1", "formation", T0 + 1))
    assert out == [AgentStateChanged("a1", AgentState.PAUSED, "formation", None, T0 + 1)]
    assert offers(checker.handle(queued("c1", at_=T0 + 2))) == []
    out = checker.handle(AgentReady("a1", T0 + 3))
    assert offers(out) == [("a1", "c1")]


def test_pause_requested_during_a_call_starts_after_the_wrap_up(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0))
    checker.handle(OfferAccepted("a1", "c1", T0 + 1))
    out = checker.handle(AgentPauseRequested("a1", "déjeuner", T0 + 5))
    assert out == [AgentStateChanged("a1", AgentState.ON_CALL, None, "déjeuner", T0 + 5)]
    checker.handle(queued("c2", at_=T0 + 6))
    checker.handle(CallEnded("a1", "c1", T0 + 50))
    out = checker.handle(WrapUpDone("a1", T0 + 55))
    assert checker.router.agent("a1").state is AgentState.PAUSED
    assert checker.router.agent("a1").pause_reason == "déjeuner"
    assert offers(out) == []


def test_pause_while_ringing_withdraws_the_offer(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    login(checker, "a2", APA_EXPERT, T0 + 1)
    checker.handle(queued("c1", at_=T0 + 2))
    out = checker.handle(AgentPauseRequested("a1", "pause", T0 + 3))
    assert of_type(out, OfferEnded)[0].reason is OfferEndReason.AGENT_PAUSED
    assert offers(out) == [("a2", "c1")]


def test_logout_while_ringing_gives_the_call_to_the_next(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0 + 1))
    out = checker.handle(AgentLoggedOut("a1", T0 + 2))
    assert of_type(out, OfferEnded)[0].reason is OfferEndReason.AGENT_LOGGED_OUT
    assert checker.router.agent("a1").state is AgentState.OFFLINE
    assert checker.router.position("c1") == 1


def test_logout_during_a_call(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0))
    checker.handle(OfferAccepted("a1", "c1", T0 + 1))
    checker.handle(AgentLoggedOut("a1", T0 + 2))
    out = checker.handle(CallEnded("a1", "c1", T0 + 30))
    assert of_type(out, CallCompleted)
    assert checker.router.agent("a1").state is AgentState.OFFLINE


def test_skills_change_while_available(checker: Checker) -> None:
    login(checker, "a1", GENERALIST)
    checker.handle(queued("c1", at_=T0 + 1))
    out = checker.handle(AgentSkillsChanged("a1", {"apa": 4, "accueil_general": 3}, T0 + 2))
    assert offers(out) == [("a1", "c1")]


def test_login_paused() -> None:
    router = Router(config=apa_config())
    out = router.handle(AgentLoggedIn("a1", APA_EXPERT, T0, pause_reason="réunion"))
    assert out == [AgentStateChanged("a1", AgentState.PAUSED, "réunion", None, T0)]


# -- errors: bugs raise, races are ignored --------------------------------------------------


def test_errors_leave_the_router_unchanged() -> None:
    router = Router(config=apa_config())
    router.handle(AgentLoggedIn("a1", APA_EXPERT, T0))
    router.handle(queued("c1", at_=T0))
    with pytest.raises(RoutingError, match="unknown pause reason 'sieste'"):
        router.handle(AgentPauseRequested("a1", "sieste", T0 + 30))
    # The ring timeout due at T0+20 did not fire either: nothing is lost.
    assert router.agent("a1").state is AgentState.RESERVED
    assert router.now == T0
    with pytest.raises(UnknownQueueError, match="unknown queue 'jardinage'"):
        router.handle(queued("c2", "jardinage", T0))
    with pytest.raises(RoutingError, match="already queued"):
        router.handle(queued("c1", at_=T0))
    with pytest.raises(AgentStateError, match="already logged in"):
        router.handle(AgentLoggedIn("a1", APA_EXPERT, T0))
    with pytest.raises(UnknownAgentError):
        router.handle(AgentReady("nobody", T0))
    with pytest.raises(ValueError, match="proficiency of 'apa' must be 1-5, got 6"):
        router.handle(AgentLoggedIn("a2", {"apa": 6}, T0))
    router.handle(AgentLoggedOut("a1", T0 + 1))
    with pytest.raises(AgentStateError, match="logged out"):
        router.handle(AgentPauseRequested("a1", "pause", T0 + 2))


def test_stale_events_are_reported_not_raised(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    out = checker.handle(OfferRejected("a1", "ghost", T0 + 1))
    assert of_type(out, EventIgnored)[0].reason == "no such offer"
    out = checker.handle(CallEnded("a1", "ghost", T0 + 1))
    assert of_type(out, EventIgnored)[0].event == "CallEnded"
    out = checker.handle(WrapUpDone("a1", T0 + 1))
    assert of_type(out, EventIgnored)[0].reason == "agent not in wrap-up"
    assert checker.handle(CallerHungUp("ghost", T0 + 1)) == []


def test_events_from_the_past_are_applied_at_the_router_clock(checker: Checker) -> None:
    checker.handle(Tick(T0 + 100))
    out = checker.handle(queued("late", at_=T0 + 50))
    assert of_type(out, CallEnqueued)[0].at == T0 + 100


# -- leaving the queue -----------------------------------------------------------------------


def test_caller_hangs_up_while_waiting(checker: Checker) -> None:
    checker.handle(queued("c1", at_=T0))
    out = checker.handle(CallerHungUp("c1", T0 + 42))
    assert out == [CallAbandoned("c1", "apa", 42.0, False, T0 + 42)]
    assert checker.router.position("c1") is None
    assert checker.router.queue_size("apa") == 0


def test_caller_hangs_up_while_ringing_frees_the_agent(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0))
    checker.handle(queued("c2", at_=T0 + 1))
    out = checker.handle(CallerHungUp("c1", T0 + 5))
    assert of_type(out, OfferEnded)[0].reason is OfferEndReason.CALLER_HUNG_UP
    assert of_type(out, CallAbandoned) == [CallAbandoned("c1", "apa", 5.0, True, T0 + 5)]
    assert offers(out) == [("a1", "c2")]


def test_caller_hangs_up_during_the_conversation(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0))
    checker.handle(OfferAccepted("a1", "c1", T0 + 1))
    out = checker.handle(CallerHungUp("c1", T0 + 90))
    assert of_type(out, CallCompleted) == [CallCompleted("a1", "c1", "apa", 89.0, T0 + 90)]


def test_max_wait(checker: Checker) -> None:
    checker.handle(queued("c1", at_=T0))
    out = checker.handle(Tick(T0 + 1000))
    assert of_type(out, CallMaxWaitReached) == [CallMaxWaitReached("c1", "apa", 900.0, T0 + 900)]
    assert checker.router.queue_size("apa") == 0


def test_kept_callback_keeps_its_place_and_has_no_max_wait(checker: Checker) -> None:
    checker.handle(queued("c1", at_=T0))
    checker.handle(queued("c2", at_=T0 + 10))
    out = checker.handle(CallbackKept("c1", T0 + 30))
    assert out == [CallKeptForCallback("c1", "apa", 1, T0 + 30, 30.0)]
    out = checker.handle(Tick(T0 + 2000))
    assert [d.call_id for d in of_type(out, CallMaxWaitReached)] == ["c2"]
    out = checker.handle(AgentLoggedIn("a1", APA_EXPERT, T0 + 2001))
    (offer,) = of_type(out, OfferCall)
    assert (offer.call.call_id, offer.dial_out) == ("c1", True)


def test_a_callback_entering_the_queue_has_no_max_wait(checker: Checker) -> None:
    # A slot, a retry or a callback restored after a restart, joined long ago: nobody is on
    # the line, so the maximum wait does not remove it, and it keeps its place.
    checker.handle(CallQueued(call("cb-1", joined_at=T0, callback=True), T0 + 1000))
    checker.handle(CallQueued(call("c2", joined_at=T0 + 999), T0 + 1000))
    out = checker.handle(Tick(T0 + 2000))
    assert [d.call_id for d in of_type(out, CallMaxWaitReached)] == ["c2"]
    out = checker.handle(AgentLoggedIn("a1", APA_EXPERT, T0 + 2001))
    (offer,) = of_type(out, OfferCall)
    assert (offer.call.call_id, offer.dial_out) == ("cb-1", True)


def test_cancelled_call_is_removed(checker: Checker) -> None:
    checker.handle(queued("c1", at_=T0))
    out = checker.handle(CallCancelled("c1", T0 + 12))
    assert out == [CallRemoved("c1", "apa", 12.0, T0 + 12)]


def test_queue_full() -> None:
    ck = Checker(apa_config(max_size=2))
    ck.handle(queued("c1", at_=T0))
    ck.handle(queued("c2", at_=T0))
    out = ck.handle(queued("c3", at_=T0))
    assert out == [CallRejectedQueueFull("c3", "apa", T0)]
    # Calls being offered still count; an answered one frees a place.
    ck.handle(AgentLoggedIn("a1", APA_EXPERT, T0 + 1))
    assert ck.router.queue_size("apa") == 2
    assert of_type(ck.handle(queued("c4", at_=T0 + 2)), CallRejectedQueueFull)
    ck.handle(OfferAccepted("a1", "c1", T0 + 3))
    assert of_type(ck.handle(queued("c5", at_=T0 + 4)), CallEnqueued)


# -- opening hours (Rule 6) ------------------------------------------------------------------


def hours_config() -> RoutingConfig:
    return RoutingConfig.simple([QueueConfig("apa", hours=office_hours(), max_wait_s=None)])


def test_closed_queue_refuses_calls_and_offers_nothing() -> None:
    ck = Checker(hours_config())
    evening = at(2025, 6, 2, 18, 0)
    ck.handle(AgentLoggedIn("a1", APA_EXPERT, evening))
    out = ck.handle(queued("c1", at_=evening))
    assert out == [CallRejectedClosed("c1", "apa", 0.0, False, evening)]


@pytest.mark.parametrize(
    "day",
    [(2025, 5, 1), (2025, 7, 14), (2025, 4, 21), (2025, 11, 11), (2025, 12, 25)],
    ids=["1er-mai", "14-juillet", "lundi-de-paques", "11-novembre", "noel"],
)
def test_public_holidays_are_closed(day: tuple[int, int, int]) -> None:
    ck = Checker(hours_config())
    t = at(*day, 10, 0)
    out = ck.handle(queued("c1", at_=t))
    assert of_type(out, CallRejectedClosed)


def test_local_closure_day() -> None:
    import datetime as dt

    config = RoutingConfig.simple(
        [QueueConfig("apa", hours=office_hours(closures=frozenset({dt.date(2025, 6, 3)})))]
    )
    ck = Checker(config)
    assert of_type(ck.handle(queued("c1", at_=at(2025, 6, 3, 10))), CallRejectedClosed)
    assert of_type(ck.handle(queued("c2", at_=at(2025, 6, 4, 10))), CallEnqueued)


def test_calls_waiting_at_closing_time_leave_the_queue() -> None:
    ck = Checker(hours_config())
    t = at(2025, 6, 2, 12, 20)
    ck.handle(queued("c1", at_=t))
    ck.handle(queued("kept", at_=t + 1))
    ck.handle(CallbackKept("kept", t + 2))
    closing = at(2025, 6, 2, 12, 30)
    assert ck.router.get_timer() == closing
    out = ck.handle(Tick(closing + 5))
    assert out == [
        CallRejectedClosed("c1", "apa", 600.0, False, closing),
        CallRejectedClosed("kept", "apa", 599.0, True, closing),
    ]
    # An agent logging in during lunch gets nothing; the queue reopens at 13:30.
    out = ck.handle(AgentLoggedIn("a1", APA_EXPERT, closing + 60))
    assert offers(out) == []
    assert ck.router.get_timer() == at(2025, 6, 2, 13, 30)


def test_no_offer_after_closing_even_to_a_ringing_requeue() -> None:
    ck = Checker(hours_config())
    t = at(2025, 6, 2, 16, 59, 50)
    ck.handle(AgentLoggedIn("a1", APA_EXPERT, t))
    ck.handle(AgentLoggedIn("a2", {"apa": 4}, t))
    ck.handle(queued("c1", at_=t))
    # a1 rejects after closing time: the call is not offered to a2, it leaves the queue.
    out = ck.handle(OfferRejected("a1", "c1", at(2025, 6, 2, 17, 0, 5)))
    assert offers(out) == []
    assert of_type(out, CallRejectedClosed)[0].wait_s == 15.0


# -- the function form -----------------------------------------------------------------------


def test_choose_agent_decisions() -> None:
    from routing import Agent

    config = apa_config()
    beginner = Agent("b", {"apa": 1}, AgentState.AVAILABLE, logged_in_at=T0)
    expert = Agent("e", {"apa": 5}, AgentState.ON_CALL, logged_in_at=T0)
    c = call("c1", joined_at=T0)
    decision = choose_agent(c, [beginner, expert], T0 + 10, config)
    assert decision == Wait({"apa": 3}, T0 + 60)
    assert choose_agent(c, [beginner], T0 + 120, config) == Offer("b", "apa", 1)
    assert choose_agent(c, [beginner], T0 + 120, config, declined=["b"]) == Wait(
        {"apa": 1}, T0 + 180
    )
    assert choose_agent(c, [], T0 + 900, config) == MaxWaitReached(900.0)
    closed = RoutingConfig.simple([QueueConfig("apa", hours=office_hours())])
    evening = at(2025, 6, 6, 18, 0)  # a Friday; Monday 9 June 2025 is Whit Monday (holiday)
    assert choose_agent(call("c2", joined_at=evening), [beginner], evening, closed) == Closed(
        at(2025, 6, 10, 9, 0)
    )
    with pytest.raises(UnknownQueueError):
        choose_agent(call("c3", "x"), [], T0, config)


def test_logout_during_wrap_up_cancels_its_timer(checker: Checker) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0))
    checker.handle(OfferAccepted("a1", "c1", T0 + 1))
    checker.handle(CallEnded("a1", "c1", T0 + 10))
    checker.handle(AgentLoggedOut("a1", T0 + 12))
    assert checker.router.get_timer() is None
    assert checker.handle(Tick(T0 + 100)) == []


def test_callback_kept_while_an_agent_rings_frees_the_agent_and_keeps_the_place(
    checker: Checker,
) -> None:
    login(checker, "a1", APA_EXPERT)
    checker.handle(queued("c1", at_=T0 + 1))  # a1 rings for the live call
    out = checker.handle(CallbackKept("c1", T0 + 5))
    assert of_type(out, OfferEnded) == [
        OfferEnded("a1", "c1", OfferEndReason.CALL_CANCELLED, T0 + 5)
    ]
    assert of_type(out, CallKeptForCallback)
    # Offered again at once, this time to dial the caller out; a1 was not paused.
    (offer,) = of_type(out, OfferCall)
    assert (offer.agent_id, offer.call.call_id, offer.dial_out) == ("a1", "c1", True)
    assert checker.router.agent("a1").state is AgentState.RESERVED
