"""The validated, immutable form of an IVR flow (what :mod:`ivr_flows.loader` produces)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from .errors import FlowIssue
from .hours import Schedule


@dataclass(frozen=True, slots=True)
class Prompt:
    """Something the flow can say: a text rendered by TTS, or a recording, or both."""

    prompt_id: str
    """Unique id, ``[a-z0-9_]+``; a recorded WAV named ``<prompt_id>.wav`` overrides the TTS."""
    text: str | None
    """French text written for TTS (placeholders such as ``{hours.x}`` already expanded)."""
    recording: str | None = None
    """Optional path of a recording, relative to the flow file."""


class NodeType(enum.Enum):
    """The kinds of node of the flow language."""

    SAY = "say"
    MENU = "menu"
    GOTO = "goto"
    SET = "set"
    BRANCH = "branch"
    QUEUE = "queue"
    HANGUP = "hangup"
    ASK = "ask"
    CONFIRM = "confirm"
    IDENTIFY = "identify"
    DOSSIER_ANSWER = "dossier_answer"


@dataclass(frozen=True, slots=True)
class SayNode:
    """Play a prompt, then continue with ``next``."""

    node_id: str
    """Id of the node."""
    prompt: Prompt
    """What to say."""
    next: str
    """Node to continue with once the prompt has been played."""
    interruptible: bool = True
    """When True and the flow has a human node, pressing 0 during the prompt reaches a person."""
    line: int = 0
    """Line of the node in the flow file."""
    node_type: NodeType = NodeType.SAY


@dataclass(frozen=True, slots=True)
class MenuNode:
    """Play a prompt and collect one keypad digit.

    ``*`` repeats the prompt, ``0`` (unless it is an explicit choice) goes to ``human``; any other
    key outside ``choices`` or a silence counts as a failure; after ``retries`` failures have
    been re-prompted, the next one goes to ``fallback``.
    """

    node_id: str
    """Id of the node."""
    prompt: Prompt
    """The menu prompt (played interruptibly, with digit collection started at once)."""
    choices: Mapping[str, str]
    """Digit (``0``-``9`` or ``#``) → node id."""
    timeout_s: float
    """No-input timeout, counted from the end of the prompt."""
    retries: int
    """How many times the menu is offered again after an invalid key or a silence."""
    fallback: str
    """Node reached when the caller fails more than ``retries`` times."""
    human: str | None
    """Node reached with ``0`` when ``0`` is not an explicit choice."""
    invalid_prompt: Prompt | None = None
    """Said after an invalid key, before the menu is offered again."""
    no_input_prompt: Prompt | None = None
    """Said after a silence, before the menu is offered again."""
    line: int = 0
    """Line of the node in the flow file."""
    node_type: NodeType = NodeType.MENU


@dataclass(frozen=True, slots=True)
class GotoNode:
    """Continue with another node."""

    node_id: str
    """Id of the node."""
    next: str
    """Node to continue with."""
    line: int = 0
    """Line of the node in the flow file."""
    node_type: NodeType = NodeType.GOTO


@dataclass(frozen=True, slots=True)
class SetNode:
    """Set call variables, then continue with ``next``."""

    node_id: str
    """Id of the node."""
    variables: Mapping[str, str]
    """Variables to set (name → value)."""
    next: str
    """Node to continue with."""
    line: int = 0
    """Line of the node in the flow file."""
    node_type: NodeType = NodeType.SET


class ConditionKind(enum.Enum):
    """What a branch condition tests."""

    OPEN = "open"
    """The named schedule is open now."""
    HOLIDAY = "holiday"
    """Today (local date) is a public holiday of the named schedule's calendar."""
    VARIABLE = "variable"
    """A call variable equals a value."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One arm of a branch node."""

    kind: ConditionKind
    """What is tested."""
    subject: str
    """Schedule name (OPEN/HOLIDAY) or variable name (VARIABLE)."""
    next: str
    """Node reached when the condition holds."""
    equals: str | None = None
    """Value compared with the variable (VARIABLE only)."""


@dataclass(frozen=True, slots=True)
class BranchNode:
    """Go to the ``next`` of the first condition that holds, else to ``otherwise``."""

    node_id: str
    """Id of the node."""
    conditions: tuple[Condition, ...]
    """Conditions, tested in order; first match wins."""
    otherwise: str
    """Node reached when no condition holds (YAML key ``else``)."""
    line: int = 0
    """Line of the node in the flow file."""
    node_type: NodeType = NodeType.BRANCH


@dataclass(frozen=True, slots=True)
class QueueNode:
    """Hand the call to a skill queue.

    Until routing exists the interpreter emits ``QueueCall``, plays the holding prompt, then
    continues with ``next`` (or hangs up if there is none).
    """

    node_id: str
    """Id of the node."""
    skill: str
    """Skill of the queue (see the skills of ``intents.yaml``)."""
    prompt: Prompt
    """Holding message."""
    reason: str
    """Reason recorded with the hand-off."""
    next: str | None = None
    """Node to continue with after the holding message, or ``None`` to hang up."""
    line: int = 0
    """Line of the node in the flow file."""
    from_intent: bool = False
    """Use the skill of the intent the bot recognised (call variable ``intent_skill``), if any."""
    node_type: NodeType = NodeType.QUEUE


@dataclass(frozen=True, slots=True)
class HangupNode:
    """Say an optional goodbye, then end the call."""

    node_id: str
    """Id of the node."""
    prompt: Prompt | None
    """Optional goodbye message (not interruptible)."""
    reason: str
    """Reason given in the ``HangUp`` action."""
    line: int = 0
    """Line of the node in the flow file."""
    node_type: NodeType = NodeType.HANGUP


@dataclass(frozen=True, slots=True)
class AskNode:
    """Ask an open question: speech goes to the FAQ, keys stay possible.

    While the question plays and afterwards, the caller may speak (recognised, then understood by
    the driver's FAQ matcher) or press a key: ``0`` reaches a person, ``*`` repeats, another key
    of the ``keypad`` menu jumps straight to that choice. An understood question is answered (the
    answer prompt comes with the event), then the call goes on to ``answered`` (or ``recommended``
    / ``handover``, by the intent's hand-off policy). When two intents are close, the caller is
    asked to confirm the first, then the second. "répéter" / ``*`` repeat, "plus lentement" slows
    the voice down, "conseiller" / ``0`` hand over. A silence or a non-understood answer is a
    failure: after ``retries`` failures have been re-prompted, the next one goes to ``human``
    (silence, unusable audio) or ``fallback`` (speech that was not understood).
    """

    node_id: str
    """Id of the node."""
    prompt: Prompt
    """The open question."""
    no_input_s: float
    """Silence allowed after the question before it counts as no input."""
    retries: int
    """Failures re-prompted before giving up."""
    answered: str
    """Node after an answer (e.g. a ``confirm`` "cela répond-il à votre question ?")."""
    handover: str
    """Queue node for hand-offs decided from an intent (usually ``from_intent: true``)."""
    human: str
    """Node for "conseiller", ``0`` and repeated silences."""
    fallback: str
    """Node after repeated non-understood speech (the keypad menu)."""
    recommended: str | None = None
    """Node after an answer whose intent recommends a person (default ``answered``)."""
    keypad: str | None = None
    """Menu whose keys are accepted as shortcuts during the question."""
    dossier: str | None = None
    """Node for intents whose answer needs the caller's dossier (identification first);
    without it they get their generic answer, then a person."""
    no_input_prompt: Prompt | None = None
    """Said after a silence, before listening again."""
    no_match_prompt: Prompt | None = None
    """Said after speech that was not understood, before listening again."""
    line: int = 0
    """Line of the node in the flow file."""
    node_type: NodeType = NodeType.ASK


@dataclass(frozen=True, slots=True)
class ConfirmNode:
    """A yes/no question, answered by speech ("oui", "non") or keys (``1`` yes, ``2`` no).

    "répéter" / ``*`` repeat the question (after the last answer when ``repeat_answer``), "plus
    lentement" slows the voice, "conseiller" / ``0`` hand over. After ``retries`` failures have
    been re-prompted, the next one goes to ``human``.
    """

    node_id: str
    """Id of the node."""
    prompt: Prompt
    """The question; it should say "dites oui ou tapez 1, dites non ou tapez 2"."""
    yes: str
    """Node after yes."""
    no: str
    """Node after no."""
    unsure: str
    """Node after "je ne sais pas" (default: ``no``)."""
    no_input_s: float
    """Silence allowed after the question."""
    retries: int
    """Failures re-prompted before handing over."""
    human: str
    """Node for "conseiller", ``0`` and repeated failures."""
    repeat_answer: bool = False
    """"répéter" replays the last answer given before the question."""
    no_input_prompt: Prompt | None = None
    """Said after a silence, before the question is asked again."""
    no_match_prompt: Prompt | None = None
    """Said after an answer that was neither yes nor no."""
    line: int = 0
    """Line of the node in the flow file."""
    node_type: NodeType = NodeType.CONFIRM


DIGIT_WORDS = ("zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf")
DIGIT_PROMPTS = tuple(Prompt(f"digit_{d}", word) for d, word in enumerate(DIGIT_WORDS))
"""One prompt per digit, to read a typed number back (flows with an ``identify`` node)."""


@dataclass(frozen=True, slots=True)
class IdentifyNode:
    """Identify the caller: dossier number (keys or speech, read back) and birth date (keys).

    The driver first looks the caller's number up (``LookupCaller``); when ``caller_id`` is
    allowed and the number is known, only the birth date is asked. The driver checks what was
    given (``VerifyIdentity``) and throttles guesses; after ``attempts`` mismatches, or when
    throttled, the call goes to ``failed``. ``0`` / "conseiller" reach ``human`` at any time.
    """

    node_id: str
    """Id of the node."""
    number_prompt: Prompt
    """Asks for the dossier number ("… puis la touche dièse")."""
    birth_date_prompt: Prompt
    """Asks for the birth date as 8 keys (JJMMAAAA)."""
    readback_prompt: Prompt
    """Said before the digits read back ("Vous avez indiqué le numéro :")."""
    confirm_prompt: Prompt
    """Asked after the read-back ("Est-ce exact ? … tapez un … tapez deux")."""
    retry_prompt: Prompt
    """Said after a mismatch or an invalid entry, before trying again."""
    identified: str
    """Node once identified."""
    failed: str
    """Node after too many failures or when throttled (a person)."""
    human: str
    """Node for ``0`` / "conseiller"."""
    attempts: int = 3
    """Identification attempts."""
    max_digits: int = 14
    """Longest dossier number, in digits."""
    timeout_s: float = 10.0
    """Time allowed after a prompt, and between keys."""
    caller_id: bool = True
    """Whether a known caller number plus the birth date is enough."""
    line: int = 0
    """Line of the node in the flow file."""
    node_type: NodeType = NodeType.IDENTIFY


@dataclass(frozen=True, slots=True)
class DossierAnswerNode:
    """Speak the identified caller's dossier for the intent the bot recognised.

    The driver builds the spoken answer from the dossier (``PrepareDossierAnswer``); when it
    says a person must follow (suspended payment, refusal, inconsistent data) or nothing can be
    said, the call goes to ``handover``, else to ``next``.
    """

    node_id: str
    """Id of the node."""
    next: str
    """Node after the answer (e.g. "cela répond-il à votre question ?")."""
    handover: str
    """Queue node when a person must take over."""
    line: int = 0
    """Line of the node in the flow file."""
    node_type: NodeType = NodeType.DOSSIER_ANSWER


Node = (
    SayNode
    | MenuNode
    | GotoNode
    | SetNode
    | BranchNode
    | QueueNode
    | HangupNode
    | AskNode
    | ConfirmNode
    | IdentifyNode
    | DossierAnswerNode
)


@dataclass(frozen=True, slots=True)
class Defaults:
    """Flow-wide defaults (YAML section ``defaults``)."""

    menu_timeout_s: float = 6.0
    """Default no-input timeout of menus, in seconds."""
    menu_retries: int = 2
    """Default number of times a menu is offered again after a failure."""
    human: str | None = None
    """Node reached with ``0`` from any menu and during interruptible ``say`` prompts."""
    fallback: str | None = None
    """Default node reached when a menu's retries are exhausted."""
    invalid_prompt: Prompt | None = None
    """Default prompt after an invalid key."""
    no_input_prompt: Prompt | None = None
    """Default prompt after a silence."""
    tts_voice: str = "fr"
    """espeak-ng voice used to render prompt texts."""
    tts_rate: int = 140
    """espeak-ng speed in words per minute (its default, 175, is too fast on the phone)."""
    ask_no_input_s: float = 6.0
    """Default silence allowed after an ``ask`` or ``confirm`` question."""
    ask_retries: int = 1
    """Default failures re-prompted by ``ask``/``confirm`` nodes (1: the second one hands over)."""
    no_match_prompt: Prompt | None = None
    """Default prompt after speech that was not understood."""


@dataclass(frozen=True, slots=True)
class Flow:
    """A validated flow, immutable; build it with :func:`ivr_flows.load_flow`."""

    flow_id: str
    """Id of the flow (YAML key ``flow``)."""
    timezone: ZoneInfo
    """Timezone in which opening hours are evaluated."""
    start_node: str
    """Id of the first node."""
    defaults: Defaults
    """Flow-wide defaults."""
    schedules: Mapping[str, Schedule]
    """Named opening-hour schedules."""
    nodes: Mapping[str, Node]
    """All nodes by id, in file order."""
    source: str = "<string>"
    """File the flow was loaded from."""
    warnings: tuple[FlowIssue, ...] = field(default=())
    """Non-fatal issues found at load time (e.g. unreachable nodes)."""
    description: str | None = None
    """Free text from the YAML ``description`` key."""

    def prompts(self) -> list[Prompt]:
        """List every prompt the flow can play, each once, in file order.

        Returns:
            The prompts, for TTS pre-rendering at start-up.
        """
        seen: dict[str, Prompt] = {}

        def add(prompt: Prompt | None) -> None:
            if prompt is not None and prompt.prompt_id not in seen:
                seen[prompt.prompt_id] = prompt

        add(self.defaults.invalid_prompt)
        add(self.defaults.no_input_prompt)
        for node in self.nodes.values():
            if isinstance(node, SayNode | QueueNode | HangupNode):
                add(node.prompt)
            elif isinstance(node, MenuNode):
                add(node.prompt)
                add(node.invalid_prompt)
                add(node.no_input_prompt)
            elif isinstance(node, AskNode | ConfirmNode):
                add(node.prompt)
                add(node.no_input_prompt)
                add(node.no_match_prompt)
            elif isinstance(node, IdentifyNode):
                for prompt in (
                    node.number_prompt,
                    node.birth_date_prompt,
                    node.readback_prompt,
                    node.confirm_prompt,
                    node.retry_prompt,
                    *DIGIT_PROMPTS,
                ):
                    add(prompt)
        return list(seen.values())
