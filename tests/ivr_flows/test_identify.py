"""Identification (``identify``) and dossier answers (``dossier_answer``): scripted driver."""

from __future__ import annotations

import pytest

from ivr_flows import (
    Action,
    AnswerGiven,
    CallerLookedUp,
    CollectDigits,
    Command,
    Decision,
    DigitsCollected,
    DossierAnswerReady,
    Event,
    IdentityChecked,
    InputTimedOut,
    IntentChoice,
    Listen,
    LookupCaller,
    Phase,
    PlayPrompt,
    PrepareDossierAnswer,
    PromptFinished,
    QueueCall,
    SpeechHeard,
    SpeechTimedOut,
    Understanding,
    VerifyIdentity,
    YesNo,
    start,
    step,
)

from .helpers import OPEN_MONDAY, issues, load

FLOW = """\
flow: ident
start: ask
defaults:
  human: human
  fallback: human
nodes:
  ask:
    type: ask
    prompt: {id: ask_q, text: "Votre question ?"}
    answered: bye
    handover: intent_queue
    dossier: identify
  identify:
    type: identify
    number_prompt: {id: id_number, text: "Tapez votre numéro de dossier, puis dièse."}
    birth_date_prompt: {id: id_birth, text: "Tapez votre date de naissance."}
    readback_prompt: {id: id_readback, text: "Vous avez indiqué :"}
    confirm_prompt: {id: id_confirm, text: "Est-ce exact ? Tapez un ou deux."}
    retry_prompt: {id: id_retry, text: "Ces informations ne correspondent pas."}
    identified: answer
    failed: intent_queue
  answer:
    type: dossier_answer
    next: bye
    handover: intent_queue
  intent_queue:
    type: queue
    skill: accueil_general
    from_intent: true
    prompt: {id: hold, text: "Un conseiller."}
  human:
    type: queue
    skill: accueil_general
    reason: conseiller
    prompt: {id: hold_human, text: "Une personne."}
  bye:
    type: hangup
    reason: satisfied
    prompt: {id: bye, text: "Au revoir."}
"""

STATUS = IntentChoice("suivi_dossier_apa", "apa", answer_prompt="faq_generic", needs_dossier=True)


class Driver:
    def __init__(self) -> None:
        self.flow = load(FLOW)
        self.state, actions = start(self.flow, now=OPEN_MONDAY)
        self.log: list[Action] = list(actions)

    def send(self, event: Event) -> list[Action]:
        self.state, actions = step(self.flow, self.state, event, now=OPEN_MONDAY)
        self.log.extend(actions)
        return actions

    def ask_status(self) -> list[Action]:
        return self.send(
            SpeechHeard("où en est mon dossier", Understanding(Decision.ANSWER, STATUS))
        )

    @property
    def queued(self) -> list[QueueCall]:
        return [a for a in self.log if isinstance(a, QueueCall)]


def played(actions: list[Action]) -> list[str]:
    return [a.prompt_id for a in actions if isinstance(a, PlayPrompt)]


@pytest.fixture
def call() -> Driver:
    return Driver()


def test_full_identification_then_dossier_answer(call: Driver) -> None:
    actions = call.ask_status()
    assert LookupCaller() in actions and call.state.phase is Phase.ID_LOOKUP
    assert call.state.waiting
    actions = call.send(CallerLookedUp(known=False))
    assert played(actions) == ["id_number"]
    assert Listen(10.0, "digits", True) in actions
    assert CollectDigits(14, 10.0, "#", None) in actions
    actions = call.send(DigitsCollected("20250456"))
    assert played(actions) == [
        "id_readback", "digit_2", "digit_0", "digit_2", "digit_5", "digit_0", "digit_4",
        "digit_5", "digit_6", "id_confirm",
    ]  # fmt: skip
    actions = call.send(DigitsCollected("1"))
    assert played(actions) == ["id_birth"] and CollectDigits(8, 10.0, "#", None) in actions
    actions = call.send(DigitsCollected("05031942"))
    assert actions == [VerifyIdentity("20250456", "05031942")]
    actions = call.send(IdentityChecked("ok", role="usager"))
    assert PrepareDossierAnswer("suivi_dossier_apa") in actions
    assert call.state.variables["identified"] == "yes"
    actions = call.send(DossierAnswerReady("dossier_1"))
    assert AnswerGiven("suivi_dossier_apa", "dossier_1") in actions
    assert played(actions) == ["dossier_1"]
    call.send(PromptFinished("dossier_1"))
    actions = call.send(InputTimedOut())
    assert played(actions) == ["bye"] and call.queued == []


def test_known_caller_number_only_needs_the_birth_date(call: Driver) -> None:
    call.ask_status()
    actions = call.send(CallerLookedUp(known=True))
    assert played(actions) == ["id_birth"]
    assert call.send(DigitsCollected("29021944")) == [VerifyIdentity(None, "29021944")]


def test_spoken_number_is_read_back(call: Driver) -> None:
    call.ask_status()
    call.send(CallerLookedUp(known=False))
    said = Understanding(Decision.NONE, digits="123456")
    actions = call.send(SpeechHeard("un deux trois quatre cinq six", said))
    assert played(actions)[0] == "id_readback" and len(played(actions)) == 8
    actions = call.send(SpeechHeard("non", Understanding(Decision.NONE, yes_no=YesNo.NO)))
    assert played(actions) == ["id_number"] and call.state.failures == 0


def test_three_mismatches_hand_over(call: Driver) -> None:
    call.ask_status()
    call.send(CallerLookedUp(known=False))
    for attempt in range(3):
        call.send(DigitsCollected("99990000"))
        call.send(DigitsCollected("1"))
        call.send(DigitsCollected("01011950"))
        actions = call.send(IdentityChecked("mismatch"))
        if attempt < 2:
            assert played(actions) == ["id_retry", "id_number"], attempt
    [queued] = call.queued
    assert queued.reason == "identification_failed" and queued.skill == "apa"


def test_invalid_entries_count_as_attempts(call: Driver) -> None:
    call.ask_status()
    call.send(CallerLookedUp(known=False))
    call.send(DigitsCollected("12"))  # too short
    call.send(SpeechTimedOut())
    assert call.state.failures == 2
    call.send(DigitsCollected("12345678"))
    call.send(DigitsCollected("1"))
    call.send(DigitsCollected("31021950"))  # 31 February
    assert [q.reason for q in call.queued] == ["identification_failed"]


def test_throttled_hands_over_at_once(call: Driver) -> None:
    call.ask_status()
    call.send(CallerLookedUp(known=True))
    call.send(DigitsCollected("01011950"))
    call.send(IdentityChecked("throttled"))
    assert [q.reason for q in call.queued] == ["identification_throttled"]


@pytest.mark.parametrize("how", ["key", "speech"])
def test_agent_at_any_step_of_identification(call: Driver, how: str) -> None:
    call.ask_status()
    call.send(CallerLookedUp(known=False))
    if how == "key":
        call.send(DigitsCollected("0"))
    else:
        call.send(SpeechHeard("conseiller", Understanding(Decision.NONE, command=Command.AGENT)))
    assert [q.reason for q in call.queued] == ["agent_request"]


def test_dossier_answer_that_needs_a_person(call: Driver) -> None:
    call.ask_status()
    call.send(CallerLookedUp(known=True))
    call.send(DigitsCollected("01011950"))
    call.send(IdentityChecked("ok"))
    call.send(DossierAnswerReady("dossier_2", handover=True, reason="suspended"))
    call.send(PromptFinished("dossier_2"))
    call.send(InputTimedOut())
    [queued] = call.queued
    assert queued.reason == "suspended" and queued.skill == "apa"


def test_nothing_to_say_hands_over(call: Driver) -> None:
    call.ask_status()
    call.send(CallerLookedUp(known=True))
    call.send(DigitsCollected("01011950"))
    call.send(IdentityChecked("ok"))
    call.send(DossierAnswerReady(None, reason="no_dossier"))
    assert [q.reason for q in call.queued] == ["no_dossier"]


def test_second_dossier_question_skips_identification(call: Driver) -> None:
    call.ask_status()
    call.send(CallerLookedUp(known=True))
    call.send(DigitsCollected("01011950"))
    call.send(IdentityChecked("ok"))
    # Back in the flow later with the same variables: identify goes straight through.
    state = call.state
    flow = call.flow
    node = flow.nodes["identify"]
    assert state.variables["identified"] == "yes" and node.node_id == "identify"


def test_identify_validation() -> None:
    found = {(i.node_id, i.field) for i in issues(FLOW.replace("    failed: intent_queue\n", ""))}
    assert ("identify", "failed") in found
    bad = FLOW.replace(
        "    handover: intent_queue\n  intent_queue:", "    handover: bye\n  intent_queue:"
    )
    assert ("answer", "handover") in {(i.node_id, i.field) for i in issues(bad)}


def test_digit_prompts_are_rendered_for_identify_flows() -> None:
    ids = {p.prompt_id for p in load(FLOW).prompts()}
    assert {f"digit_{d}" for d in range(10)} <= ids
