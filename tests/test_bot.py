"""The bot's understanding: transcripts → what the flow interpreter acts on (real matcher)."""

from __future__ import annotations

from pathlib import Path

import pytest

import ivr_flows
from callcenter.bot import ANSWER_PREFIX, LABEL_PREFIX, FaqRegistry, VoiceBot
from faq.loader import FaqError, default_knowledge_base_path, load_knowledge_base


@pytest.fixture(scope="module")
def bot() -> VoiceBot:
    return VoiceBot(load_knowledge_base(default_knowledge_base_path()))


def test_every_intent_has_a_label_and_most_an_answer(bot: VoiceBot) -> None:
    ids = {spec[0] for spec in bot.prompt_specs()}
    for intent in bot.intent_ids:
        assert f"{LABEL_PREFIX}{intent}" in ids, intent
    answers = {i for i in ids if i.startswith(ANSWER_PREFIX)}
    # hors_sujet has no answer (the flow re-asks, then offers the keypad menu).
    assert len(answers) >= len(bot.intent_ids) - 1
    for prompt_id, text, recording in bot.prompt_specs():
        assert recording is None and text and "{" not in text, prompt_id


def test_answers_are_written_for_the_voice(bot: VoiceBot) -> None:
    text = bot.prompt_text(f"{ANSWER_PREFIX}demande_apa_domicile") or ""
    assert "A P A" in text and "APA" not in text
    label = bot.prompt_text(f"{LABEL_PREFIX}demande_pch") or ""
    assert "tapez un" in label and "tapez deux" in label


def test_dossier_intents_give_the_generic_part_then_a_person(bot: VoiceBot) -> None:
    choice = bot.choice("suivi_dossier_apa")
    assert choice.answer_prompt is not None and choice.handoff == "always"
    text = bot.prompt_text(choice.answer_prompt) or ""
    assert "deux mois" in text and "en relation" in text


def test_distress_is_handed_over_at_critical_priority(bot: VoiceBot) -> None:
    understood = bot.understand("je n'en peux plus je veux mourir")
    u = understood.understanding
    assert u.decision is ivr_flows.Decision.HANDOVER, understood.trail
    assert u.top is not None and u.top.priority == "critical"
    assert u.top.skill == "urgence_sociale"
    text = bot.prompt_text(u.top.answer_prompt or "") or ""
    assert "trente et un" in text or "3114" in text or "31 14" in text, text


def test_open_question_answer_with_trail(bot: VoiceBot) -> None:
    understood = bot.understand("ma mère ne peut plus faire sa toilette toute seule")
    u = understood.understanding
    assert u.decision is ivr_flows.Decision.ANSWER
    assert u.top is not None and u.top.intent == "demande_apa_domicile"
    trail = understood.trail
    assert trail["intent"] == "demande_apa_domicile" and 0 < trail["confidence"] <= 1
    assert trail["alternatives"] and trail["grammar"] == "open"


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("vous pouvez répéter", ivr_flows.Command.REPEAT),
        ("plus lentement s'il vous plaît", ivr_flows.Command.SLOWER),
        ("je voudrais parler à un conseiller", ivr_flows.Command.AGENT),
    ],
)
def test_commands_skip_the_matcher(bot: VoiceBot, text: str, command: ivr_flows.Command) -> None:
    understood = bot.understand(text)
    assert understood.understanding.command is command
    assert understood.trail["intent"] is None


def test_yes_no_grammar_and_empty_text(bot: VoiceBot) -> None:
    yes = bot.understand("oui merci beaucoup", "yes_no").understanding
    assert yes.yes_no is ivr_flows.YesNo.YES and yes.top is None
    no = bot.understand("non pas vraiment", "yes_no").understanding
    assert no.yes_no is ivr_flows.YesNo.NO
    empty = bot.understand("   ").understanding
    assert empty.decision is ivr_flows.Decision.NONE


def test_registry_reload_refuses_an_invalid_file(tmp_path: Path) -> None:
    path = tmp_path / "kb.yaml"
    path.write_text(default_knowledge_base_path().read_text())
    registry = FaqRegistry(path)
    bot, mtime = registry.load()
    registry.install(bot, mtime)
    assert not registry.changed()
    path.write_text("intents: [\n")
    with pytest.raises(FaqError) as info:
        registry.load()
    assert "kb.yaml" in str(info.value)
    assert registry.bot is bot  # the last good version stays
