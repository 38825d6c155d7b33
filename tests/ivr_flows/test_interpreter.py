from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from ivr_flows import (
    SOLIDARITES_FLOW,
    CollectDigits,
    Decision,
    DigitsCollected,
    EnterNode,
    Flow,
    FlowState,
    HangUp,
    InputTimedOut,
    Listen,
    Phase,
    PlayPrompt,
    PromptFinished,
    QueueCall,
    SpeechHeard,
    StopPrompt,
    Understanding,
    load_flow,
    start,
    step,
)

from .helpers import BASE, OPEN_MONDAY, PARIS, load, run

NOT_UNDERSTOOD = Understanding(Decision.MENU)
MENU_PROMPT = PlayPrompt("main_menu", interruptible=True)
MENU_COLLECT = CollectDigits(1, 7.0, None, None)
SAY_COLLECT = CollectDigits(1, 0.0, None, frozenset("0"))


@pytest.fixture(scope="module")
def flow() -> Flow:
    return load_flow(SOLIDARITES_FLOW)


def at_menu(flow: Flow, now: dt.datetime = OPEN_MONDAY) -> FlowState:
    """Start a call in open hours and listen to every message up to the main menu."""
    state, actions = start(flow, now=now)
    assert actions == [
        EnterNode("check_hours", "branch"),
        EnterNode("welcome", "say"),
        PlayPrompt("welcome", interruptible=True),
        SAY_COLLECT,
    ]
    for prompt_id in ("welcome", "automated_notice", "emergency_notice"):
        state, a1 = step(flow, state, PromptFinished(prompt_id, False), now=now)
        assert a1 == []  # still waiting for the end of the "0" collection
        state, _ = step(flow, state, InputTimedOut(), now=now)
    assert state.node_id == "ask_question" and state.phase is Phase.ASKING
    # Speech the assistant does not understand, twice: the keypad menu takes over.
    for _ in range(2):
        state, _ = step(flow, state, SpeechHeard("", NOT_UNDERSTOOD), now=now)
    assert state.node_id == "main_menu" and state.phase is Phase.MENU
    return state


def test_open_call_walks_to_menu(flow: Flow) -> None:
    state, actions = start(flow, now=OPEN_MONDAY)
    state, actions = run(flow, state, [PromptFinished("welcome"), InputTimedOut()])
    assert actions == [
        EnterNode("automated_notice", "say"),
        PlayPrompt("automated_notice", interruptible=True),
        SAY_COLLECT,
    ]
    # Order of the two completion events does not matter.
    state, actions = run(flow, state, [InputTimedOut(), PromptFinished("automated_notice")])
    assert actions[0] == EnterNode("emergency_open", "say")
    state, actions = run(flow, state, [PromptFinished("emergency_notice"), InputTimedOut()])
    assert actions == [
        EnterNode("ask_question", "ask"),
        PlayPrompt("ask_question", True),
        Listen(7.0, "open", True),
        CollectDigits(1, float("inf"), None, None),
    ]
    state, actions = run(flow, state, [SpeechHeard("", NOT_UNDERSTOOD)] * 2)
    assert actions[-3:] == [EnterNode("main_menu", "menu"), MENU_PROMPT, MENU_COLLECT]
    assert state.waiting and not state.finished


@pytest.mark.parametrize(
    ("digit", "skill", "reason", "hold"),
    [
        ("1", "apa", "menu_apa", "hold_apa"),
        ("2", "mdph_adulte", "menu_mdph_adulte", "hold_mdph_adulte"),
        ("3", "mdph_enfant", "menu_mdph_enfant", "hold_mdph_enfant"),
        ("4", "paiement", "menu_paiement", "hold_paiement"),
        ("0", "accueil_general", "conseiller", "hold_accueil"),
    ],
)
def test_menu_choice_queues_then_hangs_up_politely(
    flow: Flow, digit: str, skill: str, reason: str, hold: str
) -> None:
    state = at_menu(flow)
    state, actions = step(flow, state, DigitsCollected(digit), now=OPEN_MONDAY)
    assert actions[0] == StopPrompt()  # barge-in: the menu prompt may still be playing
    assert actions[2:] == [QueueCall(skill, reason), PlayPrompt(hold, False)]
    assert isinstance(actions[1], EnterNode) and actions[1].node_type == "queue"
    state, actions = step(flow, state, PromptFinished(hold), now=OPEN_MONDAY)
    assert actions == [
        EnterNode("goodbye_queued", "hangup"),
        PlayPrompt("goodbye_queued", interruptible=False),
    ]
    state, actions = step(flow, state, PromptFinished("goodbye_queued"), now=OPEN_MONDAY)
    assert actions == [HangUp("queued")]
    assert state.finished and state.hangup_reason == "queued"
    # After the end, everything is ignored.
    assert step(flow, state, DigitsCollected("1"), now=OPEN_MONDAY) == (state, [])


def test_menu_choice_after_prompt_finished_has_no_stop(flow: Flow) -> None:
    state = at_menu(flow)
    state, actions = step(flow, state, PromptFinished("main_menu"), now=OPEN_MONDAY)
    assert actions == [] and state.waiting
    state, actions = step(flow, state, DigitsCollected("2"), now=OPEN_MONDAY)
    assert StopPrompt() not in actions
    assert QueueCall("mdph_adulte", "menu_mdph_adulte") in actions


def test_invalid_digit_then_retry(flow: Flow) -> None:
    state = at_menu(flow)
    state, actions = run(flow, state, [PromptFinished("main_menu"), DigitsCollected("7")])
    assert actions == [PlayPrompt("invalid_choice", True), CollectDigits(1, 0.0, None, None)]
    assert state.failures == 1 and state.phase is Phase.MENU_FEEDBACK
    state, actions = run(flow, state, [PromptFinished("invalid_choice"), InputTimedOut()])
    assert actions == [MENU_PROMPT, MENU_COLLECT]  # the menu again, no new EnterNode
    state, actions = step(flow, state, DigitsCollected("1"), now=OPEN_MONDAY)
    assert QueueCall("apa", "menu_apa") in actions


def test_digit_during_feedback_answers_the_menu(flow: Flow) -> None:
    state = at_menu(flow)
    state, _ = run(flow, state, [PromptFinished("main_menu"), DigitsCollected("9")])
    state, actions = step(flow, state, DigitsCollected("3"), now=OPEN_MONDAY)
    assert actions[0] == StopPrompt()
    assert QueueCall("mdph_enfant", "menu_mdph_enfant") in actions
    # The stale end of the interrupted feedback prompt is ignored.
    state2, actions = step(flow, state, PromptFinished("invalid_choice", True), now=OPEN_MONDAY)
    assert actions == [] and state2.awaiting_prompt == "hold_mdph_enfant"


def test_no_input_n_times_goes_to_fallback(flow: Flow) -> None:
    state = at_menu(flow)
    for attempt in (1, 2):
        state, actions = run(flow, state, [PromptFinished("main_menu"), InputTimedOut()])
        assert actions == [PlayPrompt("no_input", True), CollectDigits(1, 0.0, None, None)]
        assert state.failures == attempt
        state, actions = run(flow, state, [PromptFinished("no_input"), InputTimedOut()])
        assert actions == [MENU_PROMPT, MENU_COLLECT]
    state, actions = run(flow, state, [PromptFinished("main_menu"), InputTimedOut()])
    assert actions == [
        EnterNode("queue_accueil", "queue"),
        QueueCall("accueil_general", "conseiller"),
        PlayPrompt("hold_accueil", False),
    ]


def test_mixed_failures_count_together(flow: Flow) -> None:
    state = at_menu(flow)
    state, _ = run(flow, state, [DigitsCollected("8")])
    state, _ = run(flow, state, [PromptFinished("invalid_choice"), InputTimedOut()])
    state, _ = run(flow, state, [PromptFinished("main_menu"), InputTimedOut()])
    state, _ = run(flow, state, [PromptFinished("no_input"), InputTimedOut()])
    state, actions = run(flow, state, [DigitsCollected("#")])
    assert QueueCall("accueil_general", "conseiller") in actions


def test_star_repeats_without_counting(flow: Flow) -> None:
    state = at_menu(flow)
    for _ in range(5):
        state, actions = step(flow, state, DigitsCollected("*"), now=OPEN_MONDAY)
        assert actions == [StopPrompt(), MENU_PROMPT, MENU_COLLECT]
        assert state.failures == 0 and state.node_id == "main_menu"


def test_star_keeps_failure_count(flow: Flow) -> None:
    state = at_menu(flow)
    state, _ = run(flow, state, [DigitsCollected("5")])
    state, _ = run(flow, state, [DigitsCollected("*")])
    assert state.failures == 1 and state.phase is Phase.MENU


def test_zero_during_a_message_reaches_a_person(flow: Flow) -> None:
    state, _ = start(flow, now=OPEN_MONDAY)
    state, _ = run(flow, state, [PromptFinished("welcome"), InputTimedOut()])
    state, actions = step(flow, state, DigitsCollected("0"), now=OPEN_MONDAY)
    assert actions == [
        StopPrompt(),
        EnterNode("queue_accueil", "queue"),
        QueueCall("accueil_general", "conseiller"),
        PlayPrompt("hold_accueil", False),
    ]
    # The interrupted notice reports its end afterwards: ignored.
    state, actions = step(flow, state, PromptFinished("automated_notice", True), now=OPEN_MONDAY)
    assert actions == [] and state.awaiting_prompt == "hold_accueil"


def test_barge_in_semantics(flow: Flow) -> None:
    """Digit collection is always started together with the interruptible prompt it may cut."""
    state = at_menu(flow)
    _, actions = step(flow, state, DigitsCollected("*"), now=OPEN_MONDAY)
    play = actions.index(MENU_PROMPT)
    assert actions[play + 1] == MENU_COLLECT
    _, first = start(flow, now=OPEN_MONDAY)
    assert first[-2:] == [PlayPrompt("welcome", True), SAY_COLLECT]


def test_stale_and_unexpected_events_are_ignored(flow: Flow) -> None:
    state = at_menu(flow)
    for event in (PromptFinished("welcome"), PromptFinished("nope", True)):
        state, actions = step(flow, state, event, now=OPEN_MONDAY)
        assert actions == [] and state.phase is Phase.MENU
    state, _ = step(flow, state, DigitsCollected("1"), now=OPEN_MONDAY)
    # The hold prompt plays without a collection: digits and timeouts are ignored.
    for event2 in (DigitsCollected("2"), InputTimedOut()):
        state2, actions = step(flow, state, event2, now=OPEN_MONDAY)
        assert (state2, actions) == (state, [])


@pytest.mark.parametrize(
    ("when", "welcome_node", "message"),
    [
        (dt.datetime(2025, 6, 7, 10, 0, tzinfo=PARIS), "welcome_closed", "closed_hours"),
        (dt.datetime(2025, 6, 2, 12, 45, tzinfo=PARIS), "welcome_closed", "closed_hours"),
        (dt.datetime(2025, 5, 1, 10, 0, tzinfo=PARIS), "welcome_holiday", "holiday_closed"),
        (dt.datetime(2025, 7, 14, 10, 0, tzinfo=PARIS), "welcome_holiday", "holiday_closed"),
        (dt.datetime(2025, 4, 21, 10, 0, tzinfo=PARIS), "welcome_holiday", "holiday_closed"),
    ],
)
def test_closed_paths(flow: Flow, when: dt.datetime, welcome_node: str, message: str) -> None:
    state, actions = start(flow, now=when)
    # Closed: messages are not interruptible, and nobody would answer a "0".
    assert actions == [
        EnterNode("check_hours", "branch"),
        EnterNode(welcome_node, "say"),
        PlayPrompt("welcome", interruptible=False),
    ]
    state, actions = step(flow, state, DigitsCollected("0"), now=when)
    assert actions == []
    played: list[str] = ["welcome"]
    while not state.finished:
        assert state.awaiting_prompt is not None and not state.awaiting_digits
        state, actions = step(flow, state, PromptFinished(state.awaiting_prompt), now=when)
        played += [a.prompt_id for a in actions if isinstance(a, PlayPrompt)]
    assert played == ["welcome", message, "emergency_notice", "goodbye_closed"]
    assert actions[-1] == HangUp("closed")


def test_naive_now_is_rejected(flow: Flow) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        start(flow, now=dt.datetime(2025, 6, 2, 10, 0))


def test_variables_set_and_branch() -> None:
    text = BASE.replace("start: menu", "start: init") + (
        "  init:\n    type: set\n    variables: {lang: fr}\n    next: check\n"
        "  check:\n    type: branch\n    conditions:\n"
        "      - variable: lang\n        equals: en\n        next: one\n"
        "      - variable: caller\n        equals: vip\n        next: human\n"
        "      - open: office\n        next: menu\n"
        "    else: one\n"
    )
    flow = load(text)
    state, actions = start(flow, now=OPEN_MONDAY)
    assert [a for a in actions if isinstance(a, EnterNode)][-1] == EnterNode("menu", "menu")
    assert state.variables == {"lang": "fr"}
    state, actions = start(flow, now=OPEN_MONDAY, variables={"caller": "vip"})
    assert QueueCall("accueil_general", "human") in actions
    assert state.variables == {"caller": "vip", "lang": "fr"}
    sunday = dt.datetime(2025, 6, 8, 10, 0, tzinfo=PARIS)
    state, actions = start(flow, now=sunday)
    assert actions[-1] == PlayPrompt("bye", False)
    state, actions = step(flow, state, PromptFinished("bye"), now=sunday)
    assert actions == [HangUp("flow_end")]


def test_queue_without_next_hangs_up_after_holding() -> None:
    flow = load(BASE.replace('"1": one', '"1": human'))
    state, _ = start(flow, now=OPEN_MONDAY)
    state, actions = step(flow, state, DigitsCollected("1"), now=OPEN_MONDAY)
    assert actions[-2:] == [QueueCall("accueil_general", "human"), PlayPrompt("hold", False)]
    state, actions = step(flow, state, PromptFinished("hold"), now=OPEN_MONDAY)
    assert actions == [HangUp("queued")] and state.finished


def test_hangup_without_prompt() -> None:
    flow = load(BASE.replace('    prompt: {id: bye, text: "Au revoir."}\n', "    reason: done\n"))
    state, _ = start(flow, now=OPEN_MONDAY)
    state, actions = step(flow, state, DigitsCollected("1"), now=OPEN_MONDAY)
    assert actions == [StopPrompt(), EnterNode("one", "hangup"), HangUp("done")]
    assert state.finished and not state.waiting


def test_state_from_another_flow_version_ends_cleanly(flow: Flow) -> None:
    state = dataclasses.replace(at_menu(flow), node_id="gone")
    state, actions = step(flow, state, DigitsCollected("1"), now=OPEN_MONDAY)
    assert actions == [HangUp("flow_changed")] and state.finished


def test_menu_with_explicit_zero_choice() -> None:
    text = BASE.replace('      "1": one\n', '      "1": one\n      "0": one\n')
    flow = load(text)
    state, _ = start(flow, now=OPEN_MONDAY)
    _, actions = step(flow, state, DigitsCollected("0"), now=OPEN_MONDAY)
    assert EnterNode("one", "hangup") in actions
