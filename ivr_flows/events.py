"""What the call sends into the interpreter (events) and what it gets back (actions).

Protocol between the interpreter and its driver (the call):

* ``PlayPrompt(p, interruptible)`` — play prompt ``p`` (queued after any prompt still playing);
  when it ends or is stopped, send ``PromptFinished(p, interrupted)``.
* ``CollectDigits(...)`` — start collecting keypad digits now. While an *interruptible* prompt
  plays, a digit in ``allowed`` stops it (barge-in) and counts; the no-input / inter-digit
  timeout starts when the prompt ends. ``timeout_s == 0`` means "collect only while the prompt
  plays": the collection ends with ``InputTimedOut()`` as soon as the prompt ends without a
  digit. The result comes back as ``DigitsCollected(digits)`` or ``InputTimedOut()``. Digits
  outside ``allowed`` are ignored (no barge-in, not collected).
* ``StopPrompt()`` — stop the current prompt, if any, and drop queued ones (idempotent).
* ``EnterNode``, ``QueueCall`` — record in the call's event trail (``QueueCall`` is the hand-off
  to a skill queue; until routing exists, the flow goes on to hang up politely).
* ``HangUp(reason)`` — the flow is over: hang up once the actions before it are done.
* ``Listen(no_input_s, grammar, barge_in)`` — recognise the caller's speech (``ask`` and
  ``confirm`` nodes). It always comes with a ``CollectDigits`` whose ``timeout_s`` is infinite:
  the speech side owns the no-input timer, counted from the end of the prompt, and reports
  ``SpeechTimedOut("no_input")``. Speech during an interruptible prompt stops it (barge-in).
  The driver turns a transcript into ``SpeechHeard(text, understanding)`` (FAQ decision, dialogue
  command, yes/no). Whichever comes first — speech, digits or the timeout — the interpreter
  answers with ``StopListening`` when it no longer wants speech. A driver without speech
  recognition reports ``SpeechTimedOut("no_input")`` after ``no_input_s`` of silence from the
  end of the prompt, so flows stay usable by keypad.
* ``SlowDown()`` — from now on, play prompts at the slow speech rate ("plus lentement").
* ``AnswerGiven(intent, prompt_id)`` — for the trail: the bot starts speaking an FAQ answer.
* ``LookupCaller()`` — look the caller's number up in the dossiers; answer ``CallerLookedUp``.
* ``VerifyIdentity(number, birth_date)`` — check a dossier number (None: the caller's number)
  and a birth date (JJMMAAAA), throttling guesses; answer ``IdentityChecked``.
* ``PrepareDossierAnswer(intent)`` — build (and render) the spoken answer to ``intent`` from the
  identified caller's dossier; answer ``DossierAnswerReady``.

Events that do not match what the interpreter waits for (stale or duplicated) are ignored.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# -- events (driver → interpreter) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """A prompt started by :class:`PlayPrompt` stopped playing."""

    prompt_id: str
    """Id of the prompt."""
    interrupted: bool = False
    """True if it was cut short (barge-in or :class:`StopPrompt`)."""


@dataclass(frozen=True, slots=True)
class DigitsCollected:
    """A collection started by :class:`CollectDigits` ended with digits."""

    digits: str
    """The digits typed (without the terminator)."""


@dataclass(frozen=True, slots=True)
class InputTimedOut:
    """A collection started by :class:`CollectDigits` ended without any digit."""


class Command(enum.Enum):
    """Dialogue words a caller may say at any step of the bot."""

    REPEAT = "repeat"
    """"répéter", "pardon ?"."""
    SLOWER = "slower"
    """"plus lentement"."""
    AGENT = "agent"
    """"conseiller", "parler à quelqu'un"."""


class YesNo(enum.Enum):
    """A yes/no answer."""

    YES = "yes"
    NO = "no"
    UNSURE = "unsure"


class Decision(enum.Enum):
    """What the FAQ matcher decided for an utterance (see ``faq.matcher``)."""

    ANSWER = "answer"
    CLARIFY = "clarify"
    MENU = "menu"
    HANDOVER = "handover"
    NONE = "none"
    """Nothing usable was heard (empty or unintelligible transcript)."""


@dataclass(frozen=True, slots=True)
class IntentChoice:
    """An intent the caller may mean, with what the bot needs to act on it."""

    intent: str
    """Intent id."""
    skill: str
    """Skill queue of the intent."""
    priority: str = "normal"
    """Queue priority (``low``, ``normal``, ``high``, ``critical``)."""
    handoff: str = "never"
    """Hand-off policy: never, on_request, if_unresolved, recommended or always."""
    answer_prompt: str | None = None
    """Prompt id of the spoken answer, or None when the bot cannot answer (e.g. needs a dossier)."""
    needs_dossier: bool = False
    """The full answer reads the caller's dossier (an ``ask`` node's ``dossier`` path)."""
    label_prompt: str | None = None
    """Prompt id of "votre question concerne … ? dites oui ou tapez 1…" (for clarification)."""


@dataclass(frozen=True, slots=True)
class Understanding:
    """What the driver understood of one utterance."""

    decision: Decision
    """The FAQ decision."""
    top: IntentChoice | None = None
    """Best intent (ANSWER, CLARIFY, HANDOVER)."""
    second: IntentChoice | None = None
    """Runner-up (CLARIFY)."""
    command: Command | None = None
    """A dialogue command, when the utterance is essentially one."""
    yes_no: YesNo | None = None
    """A yes/no answer, when the utterance is essentially one."""
    digits: str | None = None
    """The digits said ("un deux trois" → ``123``), when the utterance is a number."""


@dataclass(frozen=True, slots=True)
class SpeechHeard:
    """The caller said something (end of turn), transcribed and understood."""

    text: str
    """Transcript."""
    understanding: Understanding
    """What it means for the bot."""


@dataclass(frozen=True, slots=True)
class SpeechTimedOut:
    """Listening ended without a usable utterance."""

    reason: str = "no_input"
    """``no_input`` (silence) or ``max_length`` (the caller spoke too long without a pause)."""


@dataclass(frozen=True, slots=True)
class CallerLookedUp:
    """Answer to ``LookupCaller``."""

    known: bool
    """Whether the caller's number belongs to exactly one dossier's usager or declared contact."""


@dataclass(frozen=True, slots=True)
class IdentityChecked:
    """Answer to ``VerifyIdentity``."""

    result: str
    """``ok``, ``mismatch`` or ``throttled`` (too many guesses from a number or on a dossier)."""
    role: str | None = None
    """Who the caller is for the dossier when ``ok``: ``usager``, ``aidant``, ``mandataire``…"""


@dataclass(frozen=True, slots=True)
class DossierAnswerReady:
    """Answer to ``PrepareDossierAnswer``."""

    prompt_id: str | None
    """The rendered answer, or None when nothing can be said."""
    handover: bool = False
    """Whether a person must take over after it."""
    reason: str = ""
    """Why a person must take over (``suspended``, ``inconsistent``, ``no_dossier``…)."""


Event = (
    PromptFinished
    | DigitsCollected
    | InputTimedOut
    | SpeechHeard
    | SpeechTimedOut
    | CallerLookedUp
    | IdentityChecked
    | DossierAnswerReady
)


# -- actions (interpreter → driver) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    """Play a prompt of the flow (see ``Flow.prompts()``)."""

    prompt_id: str
    """Id of the prompt; its audio is the recording ``<prompt_id>.wav`` or the rendered TTS."""
    interruptible: bool
    """Whether a collected digit stops it (barge-in)."""


@dataclass(frozen=True, slots=True)
class CollectDigits:
    """Start collecting keypad digits (see the module docstring for the timing rules)."""

    max_digits: int
    """Collection ends as soon as this many digits were typed."""
    timeout_s: float
    """No-input / inter-digit timeout, started when the prompt ends; 0 = only during it."""
    terminator: str | None
    """Key that ends the collection early (not included in the digits), or ``None``."""
    allowed: frozenset[str] | None
    """Keys that are collected (and barge in); ``None`` means every key."""


@dataclass(frozen=True, slots=True)
class StopPrompt:
    """Stop the prompt being played, if any."""


@dataclass(frozen=True, slots=True)
class EnterNode:
    """The flow entered a node (for the call event trail)."""

    node_id: str
    """Id of the node."""
    node_type: str
    """Its type: ``say``, ``menu``, ``goto``, ``set``, ``branch``, ``queue`` or ``hangup``."""


@dataclass(frozen=True, slots=True)
class QueueCall:
    """Hand the call over to a skill queue."""

    skill: str
    """Skill of the queue (``apa``, ``mdph_adulte``, ``accueil_general``…)."""
    reason: str
    """Why (the queue node's ``reason``, or the bot's: ``agent_request``, ``no_input``…)."""
    priority: str = "normal"
    """Queue priority (``critical`` for distress and abuse)."""
    intent: str | None = None
    """The intent the bot recognised, if any."""
    transcript: str | None = None
    """The caller's last question, for the agent."""


@dataclass(frozen=True, slots=True)
class HangUp:
    """End of the flow: hang up after the preceding actions."""

    reason: str
    """Why (``flow_end``, ``queued``, ``closed``, ``flow_loop``, ``flow_changed``…)."""


@dataclass(frozen=True, slots=True)
class Listen:
    """Start recognising speech (see the module docstring)."""

    no_input_s: float
    """Silence allowed after the prompt ends."""
    grammar: str = "open"
    """``open`` (a question) or ``yes_no`` (a closed question: engines may use a grammar)."""
    barge_in: bool = True
    """Whether speech stops the prompt playing."""


@dataclass(frozen=True, slots=True)
class StopListening:
    """Stop recognising speech (idempotent)."""


@dataclass(frozen=True, slots=True)
class SlowDown:
    """Play every later prompt at the slow speech rate."""


@dataclass(frozen=True, slots=True)
class AnswerGiven:
    """The bot answers an FAQ intent (for the trail and metrics)."""

    intent: str
    """Intent answered."""
    prompt_id: str
    """Prompt of the answer."""


@dataclass(frozen=True, slots=True)
class LookupCaller:
    """Look the caller's number up in the dossiers (see ``CallerLookedUp``)."""


@dataclass(frozen=True, slots=True)
class VerifyIdentity:
    """Check what the caller gave (see ``IdentityChecked``)."""

    number: str | None
    """Dossier number typed or said, or None to use the caller's number."""
    birth_date: str
    """Birth date as typed, ``JJMMAAAA`` (already checked to be a real date)."""


@dataclass(frozen=True, slots=True)
class PrepareDossierAnswer:
    """Build the spoken dossier answer to an intent (see ``DossierAnswerReady``)."""

    intent: str
    """The intent the caller asked about."""


Action = (
    PlayPrompt
    | CollectDigits
    | StopPrompt
    | EnterNode
    | QueueCall
    | HangUp
    | Listen
    | StopListening
    | SlowDown
    | AnswerGiven
    | LookupCaller
    | VerifyIdentity
    | PrepareDossierAnswer
)
