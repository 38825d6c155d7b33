"""The voice bot's understanding: transcripts → FAQ decisions the flow interpreter acts on.

One :class:`VoiceBot` serves every call of the service. It holds the FAQ knowledge base, its
matcher and the prompt ids of every spoken answer and clarification question (rendered at
start-up with the flows' prompts). The flow interpreter (``ivr_flows``) stays free of speech and
matching: the call gives it ``SpeechHeard(text, bot.understand(text, grammar))``.

Prompt ids reserved by the bot: ``faq_answer_<intent>`` (the answer, département placeholders
filled) and ``faq_label_<intent>`` ("votre question concerne … ? dites oui ou tapez 1…").
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ivr_flows
from callcenter.media.tts.prompt_cache import PromptSpec
from faq.answers import fill_answer, to_spoken
from faq.commands import Command as FaqCommand
from faq.commands import YesNo as FaqYesNo
from faq.commands import classify_command, classify_yes_no, spoken_digits
from faq.loader import default_knowledge_base_path, load_knowledge_base
from faq.matcher import Decision as FaqDecision
from faq.matcher import Matcher, MatchResult
from faq.model import Intent, KnowledgeBase

logger = logging.getLogger(__name__)

ANSWER_PREFIX = "faq_answer_"
LABEL_PREFIX = "faq_label_"

_COMMANDS = {
    FaqCommand.REPEAT: ivr_flows.Command.REPEAT,
    FaqCommand.SLOWER: ivr_flows.Command.SLOWER,
    FaqCommand.AGENT: ivr_flows.Command.AGENT,
}
_YES_NO = {
    FaqYesNo.YES: ivr_flows.YesNo.YES,
    FaqYesNo.NO: ivr_flows.YesNo.NO,
    FaqYesNo.UNSURE: ivr_flows.YesNo.UNSURE,
}
_DECISIONS = {
    FaqDecision.ANSWER: ivr_flows.Decision.ANSWER,
    FaqDecision.CLARIFY: ivr_flows.Decision.CLARIFY,
    FaqDecision.MENU: ivr_flows.Decision.MENU,
    FaqDecision.HANDOVER: ivr_flows.Decision.HANDOVER,
}
_LABEL_TEMPLATE = (
    "Votre question concerne-t-elle : {label} ? Dites oui, ou tapez un. Dites non, ou tapez deux."
)


@dataclass(frozen=True, slots=True)
class Understood:
    """One utterance, understood: what the interpreter needs, and what the trail keeps."""

    understanding: ivr_flows.Understanding
    """For ``SpeechHeard``."""
    trail: dict[str, Any]
    """For the ``intent`` trail event: decision, intent, confidence, alternatives…"""


@dataclass(slots=True)
class VoiceBot:
    """Knowledge base, matcher and the prompts of the answers (immutable once built)."""

    kb: KnowledgeBase
    matcher: Matcher = field(init=False)
    _choices: dict[str, ivr_flows.IntentChoice] = field(init=False, default_factory=dict)
    _texts: dict[str, str] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.matcher = Matcher(self.kb)
        values = self.kb.departement
        for intent in self.kb.intents:
            full = fill_answer(intent, values)
            # Without the dossier (or a value known only during the call), the generic part is
            # spoken and a person follows.
            generic = self._generic_text(intent, values) if full is None else None
            answer = full if full is not None else generic
            answer_id = f"{ANSWER_PREFIX}{intent.id}" if answer is not None else None
            label_id = f"{LABEL_PREFIX}{intent.id}" if intent.label else None
            if answer is not None and answer_id is not None:
                self._texts[answer_id] = to_spoken(answer)
            if label_id is not None:
                self._texts[label_id] = to_spoken(_LABEL_TEMPLATE.format(label=intent.label))
            self._choices[intent.id] = ivr_flows.IntentChoice(
                intent=intent.id,
                skill=intent.skill,
                priority=intent.priority.value,
                handoff="always" if generic is not None else intent.handoff.value,
                needs_dossier=intent.needs_dossier,
                answer_prompt=answer_id,
                label_prompt=label_id,
            )

    @staticmethod
    def _generic_text(intent: Intent, values: Mapping[str, str]) -> str | None:
        """The intent's ``answer_generic`` with département values, if it has one."""
        if not intent.answer_generic:
            return None
        return fill_answer(dataclasses.replace(intent, answer=intent.answer_generic), values)

    def prompt_specs(self) -> list[PromptSpec]:
        """Every answer and clarification prompt, for the prompt cache."""
        return [(prompt_id, text, None) for prompt_id, text in self._texts.items()]

    def prompt_text(self, prompt_id: str) -> str | None:
        """The spoken text of a bot prompt (for tests and the trail)."""
        return self._texts.get(prompt_id)

    @property
    def intent_ids(self) -> tuple[str, ...]:
        """Every intent id (metric label values)."""
        return self.kb.ids

    def choice(self, intent_id: str) -> ivr_flows.IntentChoice:
        """What the interpreter needs to act on an intent."""
        return self._choices[intent_id]

    def understand(self, text: str, grammar: str = "open") -> Understood:
        """Understand one utterance.

        Args:
            text: Transcript (may be empty: nothing usable was heard).
            grammar: ``open`` (a question), ``yes_no`` (a closed question) or ``digits`` (a
                number said aloud); the FAQ matcher is only consulted for ``open``.

        Returns:
            The understanding and the trail data.
        """
        command = classify_command(text) if text.strip() else None
        yes_no = classify_yes_no(text) if text.strip() else None
        flow_command = _COMMANDS.get(command) if command is not None else None
        flow_yes_no = _YES_NO.get(yes_no) if yes_no is not None else None
        trail: dict[str, Any] = {
            "grammar": grammar,
            "command": flow_command.value if flow_command else None,
            "yes_no": flow_yes_no.value if flow_yes_no else None,
        }
        if not text.strip() or grammar in ("yes_no", "digits") or flow_command is not None:
            decision = ivr_flows.Decision.NONE if not text.strip() else ivr_flows.Decision.MENU
            digits = spoken_digits(text) if grammar == "digits" else None
            # What the caller said of their dossier number stays out of the trail's intent event.
            trail |= {"decision": decision.value, "intent": None, "confidence": None}
            understanding = ivr_flows.Understanding(
                decision, command=flow_command, yes_no=flow_yes_no, digits=digits
            )
            return Understood(understanding, trail)
        result = self.matcher.match(text)
        understanding = self._from_match(result, flow_command, flow_yes_no)
        trail |= {
            "decision": understanding.decision.value,
            "intent": result.intent,
            "confidence": round(result.confidence, 3),
            "alternatives": [[c.intent, round(c.confidence, 3)] for c in result.alternatives],
        }
        return Understood(understanding, trail)

    def _from_match(
        self,
        result: MatchResult,
        command: ivr_flows.Command | None,
        yes_no: ivr_flows.YesNo | None,
    ) -> ivr_flows.Understanding:
        decision = _DECISIONS[result.decision]
        top = self._choices.get(result.intent)
        second = None
        if result.decision is FaqDecision.CLARIFY and result.clarify is not None:
            top = self._choices.get(result.clarify[0])
            second = self._choices.get(result.clarify[1])
        return ivr_flows.Understanding(
            decision, top=top, second=second, command=command, yes_no=yes_no
        )


@dataclass(slots=True)
class FaqRegistry:
    """The knowledge base in service, reloaded in place; an invalid new version is refused."""

    path: Path
    bot: VoiceBot | None = None
    mtime: float | None = None

    @classmethod
    def from_setting(cls, file: str) -> FaqRegistry:
        """The registry of ``faq.file`` (empty: the shipped knowledge base)."""
        return cls(Path(file) if file else default_knowledge_base_path())

    def load(self) -> tuple[VoiceBot, float | None]:
        """Load and validate the file; raise ``faq.loader.FaqError`` without changing anything."""
        mtime = self.current_mtime()
        return VoiceBot(load_knowledge_base(self.path)), mtime

    def install(self, bot: VoiceBot, mtime: float | None) -> None:
        """Put a loaded bot in service (running calls keep the one they started with)."""
        self.bot = bot
        self.mtime = mtime

    def changed(self) -> bool:
        """Whether the file changed since the bot in service was loaded."""
        return self.current_mtime() != self.mtime

    def current_mtime(self) -> float | None:
        """The file's modification time (None if unreadable)."""
        with contextlib.suppress(OSError):
            return self.path.stat().st_mtime
        return None
