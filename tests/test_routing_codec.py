"""The routing events' JSON codec (the Redis backend's stream entries): exact round trips."""

from __future__ import annotations

import typing

import pytest

import routing
from callcenter.routing_codec import (
    CodecError,
    decode_event,
    decode_queued_call,
    encode_event,
    encode_queued_call,
)

AT = 1_767_254_400.123456789  # a float that needs every digit

FULL_CALL = routing.QueuedCall(
    "call-1@127.0.0.1",
    "mdph_enfant",
    priority=routing.Priority.CRITICAL,
    joined_at=AT - 12.5,
    previous_contact_at=AT - 3600.25,
    callback=True,
    usager_id="u-42",
    intent="mdph_suivi_dossier",
    target_agent="b.petit",
)

EVENTS: list[routing.Event] = [
    routing.CallQueued(FULL_CALL, AT),
    routing.CallQueued(routing.QueuedCall("c2", "apa"), AT),
    routing.CallerHungUp("c2", AT),
    routing.CallCancelled("c2", AT),
    routing.CallbackKept("c2", AT),
    routing.AgentLoggedIn("a.martin", {"apa": 5, "paiement": 1}, AT),
    routing.AgentLoggedIn("a.martin", {}, AT, pause_reason="réunion"),
    routing.AgentLoggedOut("a.martin", AT),
    routing.AgentSkillsChanged("a.martin", {"accueil_general": 3}, AT),
    routing.AgentReady("a.martin", AT),
    routing.AgentPauseRequested("a.martin", "non réponse", AT),
    routing.OfferAccepted("a.martin", "c2", AT),
    routing.OfferRejected("a.martin", "c2", AT),
    routing.OfferTimedOut("a.martin", "c2", AT),
    routing.CallEnded("a.martin", "c2", AT),
    routing.WrapUpDone("a.martin", AT),
    routing.WrapUpDone("a.martin", AT, resolved=True),
    routing.WrapUpDone("a.martin", AT, resolved=False),
    routing.Tick(AT),
    routing.Tick(0.0),
]


def test_every_event_type_is_covered() -> None:
    names = {cls.__name__ for cls in typing.get_args(routing.Event)}
    assert names == {type(e).__name__ for e in EVENTS}


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_event_round_trip(event: routing.Event) -> None:
    text = encode_event(event)
    back = decode_event(text)
    assert back == event and type(back) is type(event)
    assert encode_event(back) == text  # stable: every replica reads the same bytes
    assert decode_event(text.encode()) == event


@pytest.mark.parametrize("priority", list(routing.Priority))
def test_queued_call_round_trip(priority: routing.Priority) -> None:
    call = routing.QueuedCall("c", "apa", priority=priority, joined_at=AT)
    assert decode_queued_call(encode_queued_call(call)) == call
    assert decode_queued_call(encode_queued_call(FULL_CALL)) == FULL_CALL


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nope", "not JSON"),
        ("[]", "event: expected a JSON object"),
        ('{"type": "Pickle", "at": 1}', "event: unknown type 'Pickle'"),
        ('{"type": "Tick"}', "Tick: missing field(s) at"),
        ('{"type": "Tick", "at": 1, "x": 2}', "Tick: unexpected field(s) x"),
        ('{"type": "Tick", "at": "1"}', "Tick.at: expected a number, got str"),
        ('{"type": "Tick", "at": true}', "Tick.at: expected a number, got bool"),
        (
            '{"type": "AgentReady", "agent_id": 3, "at": 1}',
            "AgentReady.agent_id: expected a string",
        ),
        (
            '{"type": "AgentLoggedIn", "agent_id": "a", "skills": {"apa": "5"}, "at": 1}',
            "AgentLoggedIn.skills.apa: expected an integer proficiency",
        ),
        (
            '{"type": "WrapUpDone", "agent_id": "a", "at": 1, "resolved": 1}',
            "WrapUpDone.resolved: expected true/false, got int",
        ),
        ('{"type": "CallQueued", "call": {}, "at": 1}', "call: missing field(s) call_id, skill"),
    ],
)
def test_bad_entries_are_refused_precisely(text: str, message: str) -> None:
    with pytest.raises(CodecError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        decode_event(text)


def test_bad_priority_and_non_events() -> None:
    data = encode_queued_call(FULL_CALL).replace('"critical"', '"urgent"')
    with pytest.raises(CodecError, match="call.priority: unknown priority 'urgent'"):
        decode_queued_call(data)
    with pytest.raises(CodecError, match="not a routing event: QueuedCall"):
        encode_event(FULL_CALL)  # type: ignore[arg-type]


def test_every_queued_call_field_has_a_reader() -> None:
    import dataclasses

    from callcenter.routing_codec import _CALL_READERS

    assert set(_CALL_READERS) == {f.name for f in dataclasses.fields(routing.QueuedCall)}
