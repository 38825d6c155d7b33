"""Property tests: any sequence of events keeps the interpreter in a sane state."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr_flows import (
    SOLIDARITES_FLOW,
    Action,
    CollectDigits,
    Command,
    Decision,
    DigitsCollected,
    EnterNode,
    Event,
    HangUp,
    InputTimedOut,
    IntentChoice,
    PlayPrompt,
    PromptFinished,
    SpeechHeard,
    SpeechTimedOut,
    Understanding,
    YesNo,
    load_flow,
    start,
    step,
)

FLOW = load_flow(SOLIDARITES_FLOW)
PROMPT_IDS = [p.prompt_id for p in FLOW.prompts()]

zones = st.sampled_from([ZoneInfo("Europe/Paris"), ZoneInfo("UTC"), ZoneInfo("America/Cayenne")])
instants = st.builds(
    lambda naive, tz: naive.replace(tzinfo=tz),
    st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2027, 12, 31)),
    zones,
)
events: st.SearchStrategy[Event] = st.one_of(
    st.builds(PromptFinished, st.sampled_from([*PROMPT_IDS, "bogus"]), st.booleans()),
    st.builds(DigitsCollected, st.text(alphabet="0123456789*#", max_size=3)),
    st.just(InputTimedOut()),
    st.builds(SpeechTimedOut, st.sampled_from(["no_input", "max_length"])),
    st.builds(
        SpeechHeard,
        st.text(max_size=5),
        st.builds(
            Understanding,
            st.sampled_from(list(Decision)),
            st.none()
            | st.builds(
                IntentChoice,
                st.just("x"),
                st.just("apa"),
                st.sampled_from(["normal", "critical"]),
                st.sampled_from(["never", "always", "recommended"]),
                st.none() | st.just("faq_x"),
                st.none() | st.just("lbl_x"),
            ),
            st.none(),
            st.none() | st.sampled_from(list(Command)),
            st.none() | st.sampled_from(list(YesNo)),
        ),
    ),
)


def check_actions(actions: list[Action]) -> None:
    known_prompts = set(PROMPT_IDS)
    for index, action in enumerate(actions):
        if isinstance(action, PlayPrompt):
            assert action.prompt_id in known_prompts
        elif isinstance(action, EnterNode):
            assert action.node_id in FLOW.nodes
        elif isinstance(action, CollectDigits):
            # Collection always starts together with the prompt it may interrupt.
            previous = actions[index - 1]
            assert isinstance(previous, PlayPrompt) and previous.interruptible
        elif isinstance(action, HangUp):
            assert index == len(actions) - 1


@settings(max_examples=300, deadline=None)
@given(now=instants, sequence=st.lists(events, max_size=40), later=st.lists(instants, max_size=40))
def test_random_events_never_raise_and_always_wait_or_finish(
    now: dt.datetime, sequence: list[Event], later: list[dt.datetime]
) -> None:
    state, actions = start(FLOW, now=now)
    check_actions(actions)
    hangups = sum(isinstance(a, HangUp) for a in actions)
    assert state.finished or state.waiting
    for index, event in enumerate(sequence):
        when = later[index] if index < len(later) else now
        state, actions = step(FLOW, state, event, now=when)
        check_actions(actions)
        hangups += sum(isinstance(a, HangUp) for a in actions)
        assert state.finished or state.waiting
        assert state.finished == (hangups == 1)
        assert hangups <= 1


@settings(max_examples=100, deadline=None)
@given(now=instants)
def test_a_silent_caller_always_reaches_the_end(now: dt.datetime) -> None:
    """Answering exactly what the flow waits for, without ever typing, ends the call."""
    state, actions = start(FLOW, now=now)
    for _ in range(60):
        if state.finished:
            break
        if state.awaiting_prompt is not None:
            event: Event = PromptFinished(state.awaiting_prompt, False)
        elif state.awaiting_speech:
            event = SpeechTimedOut("no_input")
        else:
            event = InputTimedOut()
        state, actions = step(FLOW, state, event, now=now)
    assert state.finished
    assert isinstance(actions[-1], HangUp)
    assert actions[-1].reason in {"queued", "closed"}
