"""Transfers to a named agent (``QueuedCall.target_agent``): offered at once, else queued."""

from __future__ import annotations

from routing import (
    AgentLoggedIn,
    AgentState,
    CallAnswered,
    CallEnqueued,
    OfferAccepted,
    OfferCall,
    OfferRejected,
    Router,
    Tick,
)

from .helpers import T0, apa_config, of_type, queued


def _router() -> Router:
    router = Router(config=apa_config())
    router.handle(AgentLoggedIn("expert", {"apa": 5}, T0))
    router.handle(AgentLoggedIn("colleague", {"accueil_general": 1}, T0 + 1))
    return router


def test_an_available_target_is_offered_first_whatever_their_skills() -> None:
    router = _router()
    out = router.handle(queued("c1", at_=T0 + 10, target_agent="colleague"))
    assert [(d.agent_id, d.queue) for d in of_type(out, OfferCall)] == [("colleague", "apa")]
    assert of_type(out, CallEnqueued)[0].position == 0
    assert router.agent("colleague").state is AgentState.RESERVED
    # The expert, who would have been chosen by the queue rules, stays free.
    assert router.agent("expert").state is AgentState.AVAILABLE
    answered = router.handle(OfferAccepted("colleague", "c1", T0 + 12))
    assert of_type(answered, CallAnswered)[0].agent_id == "colleague"


def test_a_busy_target_means_the_call_waits_in_its_queue() -> None:
    router = _router()
    router.handle(queued("c0", at_=T0 + 2, target_agent="colleague"))  # colleague now ringing
    out = router.handle(queued("c1", at_=T0 + 10, target_agent="colleague"))
    assert [(d.agent_id, d.call.call_id) for d in of_type(out, OfferCall)] == [("expert", "c1")]


def test_a_refused_transfer_goes_back_to_the_queue() -> None:
    router = Router(config=apa_config())
    router.handle(AgentLoggedIn("colleague", {"accueil_general": 1}, T0))
    router.handle(queued("c1", at_=T0 + 10, target_agent="colleague"))
    out = router.handle(OfferRejected("colleague", "c1", T0 + 11))
    assert of_type(out, OfferCall) == []
    assert router.position("c1") == 1
    out = router.handle(AgentLoggedIn("expert", {"apa": 5}, T0 + 20))
    assert [d.agent_id for d in of_type(out, OfferCall)] == ["expert"]


def test_an_unknown_or_offline_target_is_ignored() -> None:
    router = _router()
    out = router.handle(queued("c1", at_=T0 + 10, target_agent="nobody"))
    assert [d.agent_id for d in of_type(out, OfferCall)] == ["expert"]
    assert router.handle(Tick(T0 + 11)) == []
