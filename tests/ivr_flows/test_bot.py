"""Dialogue tests of the bot nodes (``ask``, ``confirm``) with scripted understanding.

The driver's speech recognition and FAQ matching are replaced by hand-written ``Understanding``
values: these tests pin the dialogue, not the recogniser.
"""

from __future__ import annotations

import pytest

from ivr_flows import (
    Action,
    AnswerGiven,
    CollectDigits,
    Command,
    Decision,
    DigitsCollected,
    Event,
    Flow,
    FlowState,
    InputTimedOut,
    IntentChoice,
    Listen,
    Phase,
    PlayPrompt,
    PromptFinished,
    QueueCall,
    SlowDown,
    SpeechHeard,
    SpeechTimedOut,
    StopListening,
    StopPrompt,
    Understanding,
    YesNo,
    start,
    step,
)

from .helpers import OPEN_MONDAY, issues, load

BOT = """\
flow: bot
start: ask
defaults:
  human: human
  fallback: menu
  no_input_prompt: {id: no_input, text: "Je ne vous ai pas entendu."}
  no_match_prompt: {id: no_match, text: "Je n'ai pas bien compris."}
nodes:
  ask:
    type: ask
    prompt: {id: ask_q, text: "Quelle est votre question ?"}
    answered: helped
    handover: intent_queue
    recommended: offer_agent
    keypad: menu
  helped:
    type: confirm
    prompt: {id: helped_q, text: "Cela répond-il à votre question ?"}
    yes: another
    no: intent_queue
    repeat_answer: true
  another:
    type: confirm
    prompt: {id: another_q, text: "Avez-vous une autre question ?"}
    yes: ask
    no: bye
  offer_agent:
    type: confirm
    prompt: {id: offer_q, text: "Voulez-vous parler à un conseiller ?"}
    yes: intent_queue
    no: another
  menu:
    type: menu
    prompt: {id: menu_q, text: "Pour l'A P A, tapez un."}
    choices:
      "1": queue_apa
  queue_apa:
    type: queue
    skill: apa
    prompt: {id: hold_apa, text: "Un instant."}
  intent_queue:
    type: queue
    skill: accueil_general
    from_intent: true
    reason: bot
    prompt: {id: hold_intent, text: "Je vous passe un conseiller."}
  human:
    type: queue
    skill: accueil_general
    reason: conseiller
    prompt: {id: hold_human, text: "Un conseiller va vous répondre."}
  bye:
    type: hangup
    reason: satisfied
    prompt: {id: bye, text: "Au revoir."}
"""

APA = IntentChoice("demande_apa_domicile", "apa", answer_prompt="faq_apa", label_prompt="label_apa")
PCH = IntentChoice("demande_pch", "mdph_adulte", answer_prompt="faq_pch", label_prompt="label_pch")
DISTRESS = IntentChoice(
    "urgence_detresse_suicidaire",
    "urgence_sociale",
    priority="critical",
    handoff="always",
    answer_prompt="faq_3114",
)
RECOMMENDED = IntentChoice(
    "signaler_maltraitance_proche", "apa", handoff="recommended", answer_prompt="faq_reco"
)
DOSSIER = IntentChoice("suivi_dossier_apa", "apa", handoff="if_unresolved", answer_prompt=None)


class Call:
    """Threads the flow state through events, keeping every action."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.state, self.actions = start(flow, now=OPEN_MONDAY)
        self.log: list[Action] = list(self.actions)

    def send(self, event: Event) -> list[Action]:
        self.state, self.actions = step(self.flow, self.state, event, now=OPEN_MONDAY)
        self.log.extend(self.actions)
        return self.actions

    def say(self, text: str, understanding: Understanding) -> list[Action]:
        return self.send(SpeechHeard(text, understanding))

    def finish_prompt(self, prompt_id: str) -> list[Action]:
        actions = self.send(PromptFinished(prompt_id))
        # A collection limited to the prompt's duration ends with it (what the driver reports).
        if self.state.awaiting_digits and not self.state.awaiting_speech:
            actions += self.send(InputTimedOut())
        return actions

    @property
    def queued(self) -> QueueCall:
        calls = [a for a in self.log if isinstance(a, QueueCall)]
        assert len(calls) == 1, calls
        return calls[0]


def answer(choice: IntentChoice) -> Understanding:
    return Understanding(Decision.ANSWER, top=choice)


YES = Understanding(Decision.MENU, yes_no=YesNo.YES)
NO = Understanding(Decision.MENU, yes_no=YesNo.NO)
UNSURE = Understanding(Decision.MENU, yes_no=YesNo.UNSURE)
NOTHING = Understanding(Decision.NONE)


def played(actions: list[Action]) -> list[str]:
    return [a.prompt_id for a in actions if isinstance(a, PlayPrompt)]


@pytest.fixture
def call() -> Call:
    return Call(load(BOT))


def test_question_opens_listening_with_keys(call: Call) -> None:
    assert played(call.actions) == ["ask_q"]
    listen = [a for a in call.actions if isinstance(a, Listen)]
    assert listen == [Listen(6.0, "open", barge_in=True)]
    collect = [a for a in call.actions if isinstance(a, CollectDigits)]
    assert collect[0].timeout_s == float("inf") and collect[0].allowed is None
    assert call.state.phase is Phase.ASKING and call.state.waiting


def test_answered_then_satisfied_ends_the_call(call: Call) -> None:
    actions = call.say("ma mère ne peut plus faire sa toilette", answer(APA))
    assert StopListening() in actions
    assert AnswerGiven("demande_apa_domicile", "faq_apa") in actions
    assert played(actions) == ["faq_apa"]
    # Speech does not cut an answer; only 0 and * do.
    collect = [a for a in actions if isinstance(a, CollectDigits)]
    assert collect[-1].allowed == frozenset("0*") and collect[-1].timeout_s == 0.0
    assert not any(isinstance(a, Listen) for a in actions)
    actions = call.finish_prompt("faq_apa")
    assert played(actions) == ["helped_q"]
    assert [a for a in actions if isinstance(a, Listen)] == [Listen(6.0, "yes_no", True)]
    actions = call.say("oui merci", YES)
    assert played(actions) == ["another_q"]
    actions = call.say("non c'est tout", NO)
    assert played(actions) == ["bye"]
    call.finish_prompt("bye")
    assert call.state.finished and call.state.hangup_reason == "satisfied"
    assert not any(isinstance(a, QueueCall) for a in call.log)


def test_not_helped_hands_over_to_the_intent_skill_with_the_transcript(call: Call) -> None:
    call.say("ma mère ne peut plus se laver", answer(APA))
    call.finish_prompt("faq_apa")
    call.say("non pas vraiment", NO)
    queued = call.queued
    assert queued.skill == "apa" and queued.reason == "helped_no"
    assert queued.intent == "demande_apa_domicile"
    assert queued.transcript == "ma mère ne peut plus se laver"
    assert queued.priority == "normal"


def test_unsure_counts_as_no(call: Call) -> None:
    call.say("question", answer(PCH))
    call.finish_prompt("faq_pch")
    call.say("je sais pas", UNSURE)
    assert call.queued.skill == "mdph_adulte" and call.queued.reason == "helped_unsure"


def test_confirm_by_keypad(call: Call) -> None:
    call.say("question", answer(APA))
    call.finish_prompt("faq_apa")
    actions = call.send(DigitsCollected("1"))
    assert played(actions) == ["another_q"]
    actions = call.send(DigitsCollected("2"))
    assert played(actions) == ["bye"]


def test_another_question_goes_back_to_the_open_question(call: Call) -> None:
    call.say("question", answer(APA))
    call.finish_prompt("faq_apa")
    call.say("oui", YES)
    actions = call.say("oui", YES)
    assert played(actions) == ["ask_q"] and call.state.phase is Phase.ASKING
    actions = call.say("et la p c h", answer(PCH))
    assert played(actions) == ["faq_pch"]


@pytest.mark.parametrize("how", ["speech", "key"])
def test_repeat_replays_the_question(call: Call, how: str) -> None:
    if how == "speech":
        actions = call.say(
            "vous pouvez répéter", Understanding(Decision.NONE, command=Command.REPEAT)
        )
    else:
        actions = call.send(DigitsCollected("*"))
    assert played(actions) == ["ask_q"]
    assert StopPrompt() in actions and StopListening() in actions
    assert call.state.failures == 0


def test_slower_slows_down_then_repeats(call: Call) -> None:
    actions = call.say("plus lentement", Understanding(Decision.NONE, command=Command.SLOWER))
    assert SlowDown() in actions
    assert actions.index(SlowDown()) < actions.index(PlayPrompt("ask_q", True))


def test_repeat_in_confirm_replays_the_answer_first(call: Call) -> None:
    call.say("question", answer(APA))
    call.finish_prompt("faq_apa")
    actions = call.say("répétez", Understanding(Decision.NONE, command=Command.REPEAT))
    assert played(actions) == ["faq_apa", "helped_q"]
    actions = call.send(DigitsCollected("*"))
    assert played(actions) == ["faq_apa", "helped_q"]


@pytest.mark.parametrize("how", ["speech", "key"])
def test_agent_request_hands_over_at_every_step(call: Call, how: str) -> None:
    call.say("question", answer(APA))
    call.finish_prompt("faq_apa")
    if how == "speech":
        call.say("je veux un conseiller", Understanding(Decision.MENU, command=Command.AGENT))
    else:
        call.send(DigitsCollected("0"))
    queued = call.queued
    assert queued.reason == "agent_request" and queued.skill == "accueil_general"
    assert queued.intent == "demande_apa_domicile"


def test_zero_and_star_during_an_answer(call: Call) -> None:
    call.say("question", answer(APA))
    actions = call.send(DigitsCollected("*"))
    assert played(actions) == ["faq_apa"] and StopPrompt() in actions
    call.send(DigitsCollected("0"))
    assert call.queued.reason == "agent_request"


def test_silence_twice_hands_over(call: Call) -> None:
    actions = call.send(SpeechTimedOut("no_input"))
    assert played(actions) == ["no_input", "ask_q"]
    assert any(isinstance(a, Listen) for a in actions)
    call.send(SpeechTimedOut("no_input"))
    assert call.queued.reason == "no_input" and call.queued.skill == "accueil_general"


def test_not_understood_twice_falls_back_to_the_keypad_menu(call: Call) -> None:
    hors_sujet = Understanding(Decision.MENU)
    actions = call.say("allume la lumière", hors_sujet)
    assert played(actions) == ["no_match", "ask_q"]
    actions = call.say("la lumière du salon", hors_sujet)
    assert played(actions) == ["menu_q"]
    call.send(DigitsCollected("1"))
    # The menu's own reason, with what the caller tried to say for the agent.
    assert call.queued.skill == "apa" and call.queued.reason == "queue_apa"
    assert call.queued.transcript == "la lumière du salon"


def test_unusable_speech_counts_as_no_match(call: Call) -> None:
    call.say("", NOTHING)
    call.send(SpeechTimedOut("max_length"))
    assert call.queued.reason == "no_match"


def test_keypad_shortcut_during_the_question(call: Call) -> None:
    actions = call.send(DigitsCollected("1"))
    assert StopListening() in actions
    assert call.queued.skill == "apa"


def test_invalid_key_is_a_failure(call: Call) -> None:
    actions = call.send(DigitsCollected("7"))
    assert played(actions) == ["no_match", "ask_q"] and call.state.failures == 1


def test_clarify_yes_answers_the_first(call: Call) -> None:
    actions = call.say("la pêche", Understanding(Decision.CLARIFY, top=PCH, second=APA))
    assert played(actions) == ["label_pch"]
    assert [a for a in actions if isinstance(a, Listen)] == [Listen(6.0, "yes_no", True)]
    actions = call.say("oui", YES)
    assert played(actions) == ["faq_pch"]


def test_clarify_no_then_yes_answers_the_second(call: Call) -> None:
    call.say("la pêche", Understanding(Decision.CLARIFY, top=PCH, second=APA))
    actions = call.send(DigitsCollected("2"))
    assert played(actions) == ["label_apa"]
    actions = call.send(DigitsCollected("1"))
    assert played(actions) == ["faq_apa"]
    assert AnswerGiven("demande_apa_domicile", "faq_apa") in actions


def test_clarify_no_twice_asks_again(call: Call) -> None:
    call.say("la pêche", Understanding(Decision.CLARIFY, top=PCH, second=APA))
    call.say("non", NO)
    actions = call.say("non", NO)
    assert played(actions) == ["no_match", "ask_q"]
    assert call.state.phase is Phase.ASKING and call.state.failures == 1


def test_clarify_restated_question_is_understood(call: Call) -> None:
    call.say("la pêche", Understanding(Decision.CLARIFY, top=PCH, second=APA))
    actions = call.say("non l'allocation pour ma mère", answer(APA))
    assert played(actions) == ["faq_apa"]


def test_distress_gives_the_numbers_then_hands_over_at_critical_priority(call: Call) -> None:
    actions = call.say("je veux en finir", Understanding(Decision.HANDOVER, top=DISTRESS))
    assert played(actions) == ["faq_3114"]
    # Emergency numbers are heard in full: only 0 (a person) can cut them.
    call.finish_prompt("faq_3114")
    queued = call.queued
    assert queued.priority == "critical" and queued.skill == "urgence_sociale"
    assert queued.reason == "intent_always"


def test_recommended_offers_an_agent(call: Call) -> None:
    call.say("question", answer(RECOMMENDED))
    actions = call.finish_prompt("faq_reco")
    assert played(actions) == ["offer_q"]
    call.say("oui", YES)
    assert call.queued.reason == "offer_agent_yes" and call.queued.skill == "apa"


def test_intent_without_answer_hands_over(call: Call) -> None:
    actions = call.say("où en est mon dossier", answer(DOSSIER))
    assert not any(isinstance(a, AnswerGiven) for a in actions)
    assert call.queued.skill == "apa" and call.queued.reason == "needs_person"


def test_stale_speech_is_ignored(call: Call) -> None:
    call.say("question", answer(APA))
    before: FlowState = call.state
    assert call.say("oui", YES) == [] and call.state == before
    assert call.send(SpeechTimedOut()) == []


def test_bot_node_validation() -> None:
    text = BOT.replace("handover: intent_queue\n", "handover: helped\n").replace(
        "keypad: menu", "keypad: bye"
    )
    found = {(i.node_id, i.field, i.message) for i in issues(text)}
    assert ("ask", "handover", "must name a 'queue' node") in found
    assert ("ask", "keypad", "must name a 'menu' node") in found
    missing = issues(BOT.replace("    yes: another\n", "", 1))
    assert [(i.node_id, i.field) for i in missing] == [("helped", "yes")]


def test_flow_lists_bot_prompts() -> None:
    ids = {p.prompt_id for p in load(BOT).prompts()}
    assert {"ask_q", "helped_q", "another_q", "no_input", "no_match"} <= ids
