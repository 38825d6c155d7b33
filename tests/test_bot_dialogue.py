"""Whole dialogues on the shipped SOLIDARITÉS flow: the real FAQ matcher, scripted transcripts.

The recogniser is replaced by the text the caller "said"; everything after it is the production
code: ``VoiceBot.understand`` (matcher, commands, yes/no) and the flow interpreter.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

import ivr_flows
from callcenter.bot import VoiceBot
from faq.loader import default_knowledge_base_path, load_knowledge_base

MONDAY_10 = dt.datetime(2025, 6, 2, 10, 0, tzinfo=ZoneInfo("Europe/Paris"))


class Caller:
    """Drives one call: plays every prompt to its end, says scripted sentences, presses keys."""

    def __init__(self, bot: VoiceBot) -> None:
        self.bot = bot
        self.flow = ivr_flows.load_flow(ivr_flows.SOLIDARITES_FLOW)
        self.state, actions = ivr_flows.start(self.flow, now=MONDAY_10)
        self.log: list[ivr_flows.Action] = []
        self.grammar = "open"
        self._absorb(actions)

    def _absorb(self, actions: list[ivr_flows.Action]) -> None:
        self.log.extend(actions)
        for action in actions:
            if isinstance(action, ivr_flows.Listen):
                self.grammar = action.grammar

    def send(self, event: ivr_flows.Event) -> None:
        self.state, actions = ivr_flows.step(self.flow, self.state, event, now=MONDAY_10)
        self._absorb(actions)

    def listen_until_question(self) -> None:
        """Let prompts play to their end until the flow listens (or ends)."""
        for _ in range(20):
            if self.state.finished or self.state.awaiting_speech:
                return
            if self.state.awaiting_prompt is not None:
                self.send(ivr_flows.PromptFinished(self.state.awaiting_prompt))
            if self.state.awaiting_digits and not self.state.awaiting_speech:
                self.send(ivr_flows.InputTimedOut())
        raise AssertionError(self.state)

    def say(self, text: str) -> None:
        self.listen_until_question()
        assert self.state.awaiting_speech, self.state
        understood = self.bot.understand(text, self.grammar)
        self.send(ivr_flows.SpeechHeard(text, understood.understanding))

    def press(self, digit: str) -> None:
        self.listen_until_question()
        self.send(ivr_flows.DigitsCollected(digit))

    def answers(self) -> list[str]:
        return [a.intent for a in self.log if isinstance(a, ivr_flows.AnswerGiven)]

    def queued(self) -> list[ivr_flows.QueueCall]:
        return [a for a in self.log if isinstance(a, ivr_flows.QueueCall)]


@pytest.fixture(scope="module")
def bot() -> VoiceBot:
    return VoiceBot(load_knowledge_base(default_knowledge_base_path()))


def test_answered_and_satisfied(bot: VoiceBot) -> None:
    caller = Caller(bot)
    caller.say("ma mère ne peut plus faire sa toilette toute seule")
    assert caller.answers() == ["demande_apa_domicile"]
    caller.say("oui merci")  # cela répond-il à votre question ?
    caller.say("non c'est tout")  # avez-vous une autre question ?
    caller.listen_until_question()
    assert caller.state.finished and caller.state.hangup_reason == "satisfied"
    assert caller.queued() == []


def test_not_helped_goes_to_the_skill_with_the_question(bot: VoiceBot) -> None:
    caller = Caller(bot)
    caller.say("la carte de stationnement de mon mari a été volée")
    assert caller.answers() == ["cmi_perdue_volee"]
    caller.press("2")
    [queued] = caller.queued()
    assert queued.skill == "mdph_adulte" and queued.reason == "did_it_help_no"
    assert queued.transcript == "la carte de stationnement de mon mari a été volée"


def test_two_questions_in_one_call(bot: VoiceBot) -> None:
    caller = Caller(bot)
    caller.say("comment on demande la p c h")
    # Moderately confident (the acronym alone): the bot confirms before answering.
    caller.say("oui")  # votre question concerne-t-elle la P C H ?
    caller.say("oui")  # cela répond-il à votre question ?
    caller.say("oui")  # another question
    caller.say("et pour la carte mobilité inclusion")
    assert caller.answers() == ["demande_pch", "demande_cmi"]
    plays = [a.prompt_id for a in caller.log if isinstance(a, ivr_flows.PlayPrompt)]
    assert plays.count("faq_label_demande_pch") == 1


def test_dossier_question_identifies_the_caller_first(bot: VoiceBot) -> None:
    caller = Caller(bot)
    caller.say("je voudrais savoir où en est mon dossier d'a p a")
    assert ivr_flows.LookupCaller() in caller.log
    assert caller.answers() == []  # the dossier is read once the caller is identified
    caller.send(ivr_flows.CallerLookedUp(known=False))
    plays = [a.prompt_id for a in caller.log if isinstance(a, ivr_flows.PlayPrompt)]
    assert plays[-1] == "id_number"
    assert caller.state.variables["intent"] == "suivi_dossier_apa"


def test_distress_numbers_then_critical_hand_over(bot: VoiceBot) -> None:
    caller = Caller(bot)
    caller.say("je n'en peux plus je veux mourir")
    caller.listen_until_question()
    [queued] = caller.queued()
    assert queued.priority == "critical" and queued.skill == "urgence_sociale"


def test_words_at_every_step(bot: VoiceBot) -> None:
    caller = Caller(bot)
    caller.say("vous pouvez répéter")
    caller.say("plus lentement s'il vous plaît")
    assert any(isinstance(a, ivr_flows.SlowDown) for a in caller.log)
    plays = [a.prompt_id for a in caller.log if isinstance(a, ivr_flows.PlayPrompt)]
    assert plays.count("ask_question") == 3
    caller.say("je veux parler à un conseiller")
    [queued] = caller.queued()
    assert queued.reason == "agent_request"


def test_out_of_scope_twice_offers_the_keypad_menu(bot: VoiceBot) -> None:
    caller = Caller(bot)
    caller.say("je voudrais refaire ma carte grise")
    caller.say("c'est pour ma carte grise je vous dis")
    assert caller.state.node_id == "main_menu"
    caller.send(ivr_flows.DigitsCollected("4"))
    assert [q.skill for q in caller.queued()] == ["paiement"]
