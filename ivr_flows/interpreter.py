"""The flow interpreter: ``start``/``step`` turn events into actions, without any IO.

Rules this file owns:

1. Each step ends either waiting for something (a prompt to finish and/or digits) or finished.
2. ``goto``, ``set`` and ``branch`` are traversed within the step that reaches them.
3. Time comes in as ``now`` (timezone-aware); opening hours use the flow's timezone.
4. Events that do not match what the state waits for are ignored (they are stale).
5. The bot nodes (``ask``, ``confirm``) listen and collect keys at once; speech comes in already
   understood (``SpeechHeard``), so this module stays free of recognition and matching. What the
   bot learnt is kept in call variables: ``intent``, ``intent_skill``, ``priority``,
   ``transcript``, ``last_answer`` and ``handoff_reason`` (read by ``queue`` nodes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .events import (
    Action,
    AnswerGiven,
    CallerLookedUp,
    CollectDigits,
    Command,
    Decision,
    DigitsCollected,
    DossierAnswerReady,
    EnterNode,
    Event,
    HangUp,
    IdentityChecked,
    InputTimedOut,
    IntentChoice,
    Listen,
    LookupCaller,
    PlayPrompt,
    PrepareDossierAnswer,
    PromptFinished,
    QueueCall,
    SlowDown,
    SpeechHeard,
    SpeechTimedOut,
    StopListening,
    StopPrompt,
    Understanding,
    VerifyIdentity,
    YesNo,
)
from .model import (
    AskNode,
    BranchNode,
    Condition,
    ConditionKind,
    ConfirmNode,
    DossierAnswerNode,
    Flow,
    GotoNode,
    HangupNode,
    IdentifyNode,
    MenuNode,
    Node,
    Prompt,
    QueueNode,
    SayNode,
    SetNode,
)

MAX_HOPS = 64
"""Bound on nodes entered in one step (the loader already rejects prompt-less loops)."""

_HUMAN_KEY = "0"
_REPEAT_KEY = "*"
_YES_KEY = "1"
_NO_KEY = "2"
_ANSWER_KEYS = frozenset({_HUMAN_KEY, _REPEAT_KEY})
_NO_TIMEOUT = float("inf")
"""Digit collections that run alongside speech recognition have no timer of their own."""


class Phase(enum.Enum):
    """What the current node is doing."""

    SAYING = "saying"
    """A ``say`` prompt plays (``0`` may be collected meanwhile)."""
    MENU = "menu"
    """A menu waits for a digit."""
    MENU_FEEDBACK = "menu_feedback"
    """An invalid-key / no-input prompt plays; a digit typed meanwhile answers the menu."""
    HOLDING = "holding"
    """The holding prompt of a ``queue`` node plays."""
    GOODBYE = "goodbye"
    """The goodbye prompt of a ``hangup`` node plays."""
    FINISHED = "finished"
    """``HangUp`` was emitted; every later event is ignored."""
    ASKING = "asking"
    """An ``ask`` node listens for a question (speech or keys)."""
    CLARIFYING = "clarifying"
    """An ``ask`` node asks whether the caller meant one of two close intents."""
    ANSWERING = "answering"
    """An ``ask`` node speaks an FAQ answer (``0`` and ``*`` work meanwhile)."""
    CONFIRMING = "confirming"
    """A ``confirm`` node waits for yes or no."""
    ID_LOOKUP = "id_lookup"
    """An ``identify`` node waits for the caller-number lookup."""
    ID_NUMBER = "id_number"
    """An ``identify`` node waits for the dossier number (keys or speech)."""
    ID_READBACK = "id_readback"
    """The number is read back; yes/1 or no/2."""
    ID_BIRTH = "id_birth"
    """An ``identify`` node waits for the birth date (8 keys)."""
    ID_CHECK = "id_check"
    """An ``identify`` node waits for the driver's check."""
    DOSSIER_WAIT = "dossier_wait"
    """A ``dossier_answer`` node waits for the driver's answer."""
    DOSSIER_SPEAKING = "dossier_speaking"
    """The dossier answer plays (``0`` and ``*`` work)."""


def _frozen(variables: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(variables))


@dataclass(frozen=True, slots=True)
class FlowState:
    """Where a call is in its flow; opaque to the driver, which only passes it back."""

    node_id: str
    """Current node."""
    phase: Phase
    """What the current node is doing."""
    awaiting_prompt: str | None = None
    """Prompt whose ``PromptFinished`` the node waits for."""
    awaiting_digits: bool = False
    """Whether a ``CollectDigits`` is pending."""
    prompt_playing: str | None = None
    """Last prompt started and not reported finished (stopped when the node is left)."""
    failures: int = 0
    """Invalid keys and silences in the current menu, ask or confirm visit."""
    awaiting_speech: bool = False
    """Whether a ``Listen`` is pending."""
    listen_prompt: str | None = None
    """The question a listening phase asks (what "répéter" plays again)."""
    choices: tuple[IntentChoice, ...] = ()
    """Intents still to offer while clarifying; the intent being answered while answering."""
    awaiting_driver: bool = False
    """Whether a lookup, check or dossier answer is pending in the driver."""
    variables: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Call variables (from ``start`` and ``set`` nodes)."""
    hangup_reason: str | None = None
    """Reason of the ``HangUp`` once finished."""

    @property
    def finished(self) -> bool:
        """Whether the flow has ended (``HangUp`` emitted)."""
        return self.phase is Phase.FINISHED

    @property
    def waiting(self) -> bool:
        """Whether the state waits for an event (a prompt to finish, digits or speech)."""
        return (
            self.awaiting_prompt is not None
            or self.awaiting_digits
            or self.awaiting_speech
            or self.awaiting_driver
        )


_NO_VARIABLES: Mapping[str, str] = MappingProxyType({})


def start(
    flow: Flow, *, now: dt.datetime, variables: Mapping[str, str] = _NO_VARIABLES
) -> tuple[FlowState, list[Action]]:
    """Start a flow for a new call.

    Args:
        flow: The validated flow.
        now: Current time, timezone-aware.
        variables: Initial call variables (e.g. the dialled number).

    Returns:
        The initial state and the first actions.

    Raises:
        ValueError: If ``now`` is naive.
    """
    _check_now(now)
    actions: list[Action] = []
    state = _enter(flow, flow.start_node, _frozen(variables), now, actions)
    return state, actions


def step(
    flow: Flow, state: FlowState, event: Event, *, now: dt.datetime
) -> tuple[FlowState, list[Action]]:
    """Advance a call's flow with one event.

    Args:
        flow: The flow the call started with.
        state: The state returned by the previous ``start``/``step``.
        event: What happened.
        now: Current time, timezone-aware.

    Returns:
        The new state and the actions to perform, in order.

    Raises:
        ValueError: If ``now`` is naive.
    """
    _check_now(now)
    if state.finished:
        return state, []
    node = flow.nodes.get(state.node_id)
    if node is None:
        # The state comes from another version of the flow: end the call cleanly.
        return _finish(state, [], "flow_changed")
    actions: list[Action] = []
    if isinstance(node, IdentifyNode) and state.phase in _IDENTIFYING:
        handled = _identify_input(flow, node, state, event, now, actions)
        if handled is not None:
            return handled, actions
    if isinstance(node, DossierAnswerNode):
        handled = _dossier_input(flow, node, state, event, now, actions)
        if handled is not None:
            return handled, actions
    if isinstance(event, CallerLookedUp | IdentityChecked | DossierAnswerReady):
        return state, []
    if isinstance(node, AskNode | ConfirmNode) and state.phase in _LISTENING:
        if isinstance(event, SpeechHeard | SpeechTimedOut | DigitsCollected):
            return _bot_input(flow, node, state, event, now, actions), actions
    if isinstance(event, SpeechHeard | SpeechTimedOut):
        return state, []
    if isinstance(event, PromptFinished):
        playing = None if event.prompt_id == state.prompt_playing else state.prompt_playing
        state = dataclasses.replace(state, prompt_playing=playing)
        if event.prompt_id != state.awaiting_prompt:
            return state, []
        state = dataclasses.replace(state, awaiting_prompt=None)
        if state.awaiting_digits:
            return state, []
        return _complete(flow, node, state, now, actions), actions
    if not state.awaiting_digits:
        return state, []
    if isinstance(event, DigitsCollected):
        if state.phase in (Phase.MENU, Phase.MENU_FEEDBACK) and isinstance(node, MenuNode):
            return _menu_input(flow, node, state, event.digits, now, actions), actions
        if state.phase is Phase.SAYING and event.digits == _HUMAN_KEY and flow.defaults.human:
            _stop(state, actions)
            return _enter(flow, flow.defaults.human, state.variables, now, actions), actions
        if state.phase is Phase.ANSWERING and isinstance(node, AskNode):
            answering = _answer_keys(flow, node, state, event.digits, now, actions)
            if answering is not None:
                return answering, actions
    if (
        isinstance(event, InputTimedOut)
        and state.phase is Phase.MENU
        and isinstance(node, MenuNode)
    ):
        return _menu_failure(flow, node, state, timed_out=True, now=now, actions=actions), actions
    # The collection that ran alongside a prompt is over; move on once the prompt is too.
    state = dataclasses.replace(state, awaiting_digits=False)
    if state.awaiting_prompt is not None:
        return state, []
    return _complete(flow, node, state, now, actions), actions


def _check_now(now: dt.datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")


def _finish(state: FlowState, actions: list[Action], reason: str) -> tuple[FlowState, list[Action]]:
    actions.append(HangUp(reason))
    finished = FlowState(
        node_id=state.node_id,
        phase=Phase.FINISHED,
        variables=state.variables,
        hangup_reason=reason,
    )
    return finished, actions


def _stop(state: FlowState, actions: list[Action]) -> None:
    if state.prompt_playing is not None:
        actions.append(StopPrompt())


def _complete(
    flow: Flow, node: Node, state: FlowState, now: dt.datetime, actions: list[Action]
) -> FlowState:
    """The current node has nothing left to wait for: move on."""
    if isinstance(node, SayNode):
        return _enter(flow, node.next, state.variables, now, actions)
    if isinstance(node, MenuNode):
        return _present_menu(node, state, actions)
    if isinstance(node, QueueNode) and node.next is not None:
        return _enter(flow, node.next, state.variables, now, actions)
    if isinstance(node, HangupNode):
        return _finish(state, actions, node.reason)[0]
    if isinstance(node, AskNode) and state.phase is Phase.ANSWERING:
        return _after_answer(flow, node, state, now, actions)
    if isinstance(node, AskNode | ConfirmNode):  # pragma: no cover - listening phases wait
        return _listen_again(node, state, actions)
    return _finish(state, actions, "queued")[0]


def _enter(
    flow: Flow,
    node_id: str,
    variables: Mapping[str, str],
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    for _ in range(MAX_HOPS):
        node = flow.nodes[node_id]
        actions.append(EnterNode(node_id, node.node_type.value))
        base = FlowState(node_id=node_id, phase=Phase.SAYING, variables=variables)
        if isinstance(node, SayNode):
            collect = node.interruptible and flow.defaults.human is not None
            return _play(base, node.prompt, actions, collect=collect, allowed=frozenset("0"))
        if isinstance(node, MenuNode):
            return _present_menu(node, dataclasses.replace(base, phase=Phase.MENU), actions)
        if isinstance(node, QueueNode):
            actions.append(_queue_call(node, variables))
            # The reason belongs to this hand-off only.
            variables = _frozen({k: v for k, v in variables.items() if k != "handoff_reason"})
            base = dataclasses.replace(base, variables=variables)
            state = dataclasses.replace(base, phase=Phase.HOLDING)
            return _play(state, node.prompt, actions, collect=False)
        if isinstance(node, AskNode):
            state = dataclasses.replace(base, phase=Phase.ASKING)
            return _listen(state, node.prompt.prompt_id, node.no_input_s, "open", actions)
        if isinstance(node, ConfirmNode):
            state = dataclasses.replace(base, phase=Phase.CONFIRMING)
            return _listen(state, node.prompt.prompt_id, node.no_input_s, "yes_no", actions)
        if isinstance(node, IdentifyNode):
            if variables.get("identified") == "yes":
                node_id = node.identified
                continue
            actions.append(LookupCaller())
            return dataclasses.replace(base, phase=Phase.ID_LOOKUP, awaiting_driver=True)
        if isinstance(node, DossierAnswerNode):
            intent = variables.get("intent")
            if variables.get("identified") != "yes" or not intent:
                variables = _frozen({**variables, "handoff_reason": "not_identified"})
                node_id = node.handover
                continue
            actions.append(PrepareDossierAnswer(intent))
            return dataclasses.replace(base, phase=Phase.DOSSIER_WAIT, awaiting_driver=True)
        if isinstance(node, HangupNode):
            if node.prompt is None:
                return _finish(base, actions, node.reason)[0]
            state = dataclasses.replace(base, phase=Phase.GOODBYE)
            return _play(state, node.prompt, actions, collect=False)
        if isinstance(node, SetNode):
            variables = _frozen({**variables, **node.variables})
            node_id = node.next
        elif isinstance(node, GotoNode):
            node_id = node.next
        elif isinstance(node, BranchNode):
            node_id = _branch(flow, node, variables, now)
    return _finish(FlowState(node_id, Phase.SAYING, variables=variables), actions, "flow_loop")[0]


def _play(
    state: FlowState,
    prompt: Prompt,
    actions: list[Action],
    *,
    collect: bool,
    allowed: frozenset[str] | None = None,
) -> FlowState:
    """Play a prompt; with ``collect``, digits typed during it barge in and are reported."""
    actions.append(PlayPrompt(prompt.prompt_id, interruptible=collect))
    if collect:
        actions.append(CollectDigits(1, 0.0, None, allowed))
    return dataclasses.replace(
        state,
        awaiting_prompt=prompt.prompt_id,
        awaiting_digits=collect,
        prompt_playing=prompt.prompt_id,
    )


def _branch(flow: Flow, node: BranchNode, variables: Mapping[str, str], now: dt.datetime) -> str:
    for condition in node.conditions:
        if _holds(flow, condition, variables, now):
            return condition.next
    return node.otherwise


def _holds(
    flow: Flow, condition: Condition, variables: Mapping[str, str], now: dt.datetime
) -> bool:
    if condition.kind is ConditionKind.VARIABLE:
        return variables.get(condition.subject) == condition.equals
    # zoneinfo applies the DST rules of the flow's timezone to this instant.
    local = now.astimezone(flow.timezone)
    schedule = flow.schedules[condition.subject]
    if condition.kind is ConditionKind.OPEN:
        return schedule.is_open(local)
    return schedule.is_public_holiday(local.date())


def _present_menu(node: MenuNode, state: FlowState, actions: list[Action]) -> FlowState:
    actions.append(PlayPrompt(node.prompt.prompt_id, interruptible=True))
    actions.append(CollectDigits(1, node.timeout_s, None, None))
    return dataclasses.replace(
        state,
        phase=Phase.MENU,
        awaiting_prompt=None,  # the digit (or the timeout) decides, not the end of the prompt
        awaiting_digits=True,
        prompt_playing=node.prompt.prompt_id,
    )


def _menu_input(
    flow: Flow,
    node: MenuNode,
    state: FlowState,
    digits: str,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    if digits == _REPEAT_KEY:
        _stop(state, actions)
        return _present_menu(node, state, actions)
    target = node.choices.get(digits)
    if target is None and digits == _HUMAN_KEY:
        target = node.human
    if target is None:
        return _menu_failure(flow, node, state, timed_out=False, now=now, actions=actions)
    _stop(state, actions)
    return _enter(flow, target, state.variables, now, actions)


def _menu_failure(
    flow: Flow,
    node: MenuNode,
    state: FlowState,
    *,
    timed_out: bool,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    _stop(state, actions)
    failures = state.failures + 1
    if failures > node.retries:
        return _enter(flow, node.fallback, state.variables, now, actions)
    state = dataclasses.replace(state, failures=failures)
    feedback = node.no_input_prompt if timed_out else node.invalid_prompt
    if feedback is None:
        return _present_menu(node, state, actions)
    # A key typed during the feedback prompt answers the menu at once.
    state = dataclasses.replace(state, phase=Phase.MENU_FEEDBACK)
    return _play(state, feedback, actions, collect=True, allowed=None)


# -- the bot: ask and confirm nodes ------------------------------------------------------------

_LISTENING = frozenset({Phase.ASKING, Phase.CLARIFYING, Phase.CONFIRMING})


def _queue_call(node: QueueNode, variables: Mapping[str, str]) -> QueueCall:
    skill = node.skill
    if node.from_intent and variables.get("intent_skill"):
        skill = variables["intent_skill"]
    return QueueCall(
        skill=skill,
        reason=variables.get("handoff_reason") or node.reason,
        priority=variables.get("priority") or "normal",
        intent=variables.get("intent") or None,
        transcript=variables.get("transcript") or None,
    )


def _listen(
    state: FlowState,
    prompt_id: str,
    no_input_s: float,
    grammar: str,
    actions: list[Action],
    *,
    choices: tuple[IntentChoice, ...] | None = None,
) -> FlowState:
    """Play a question and listen for speech and keys at once."""
    actions.append(PlayPrompt(prompt_id, interruptible=True))
    actions.append(Listen(no_input_s, grammar, barge_in=True))
    actions.append(CollectDigits(1, _NO_TIMEOUT, None, None))
    return dataclasses.replace(
        state,
        awaiting_prompt=None,  # speech, a key or the no-input timeout decides
        awaiting_digits=True,
        awaiting_speech=True,
        prompt_playing=prompt_id,
        listen_prompt=prompt_id,
        choices=state.choices if choices is None else choices,
    )


def _listen_again(
    node: AskNode | ConfirmNode, state: FlowState, actions: list[Action]
) -> FlowState:
    grammar = "yes_no" if state.phase is not Phase.ASKING else "open"
    question = state.listen_prompt or node.prompt.prompt_id
    return _listen(state, question, node.no_input_s, grammar, actions)


def _with(state: FlowState, **variables: str) -> FlowState:
    return dataclasses.replace(state, variables=_frozen({**state.variables, **variables}))


def _stop_listening(state: FlowState, actions: list[Action]) -> FlowState:
    _stop(state, actions)
    if state.awaiting_speech:
        actions.append(StopListening())
    return dataclasses.replace(state, awaiting_speech=False, awaiting_digits=False)


def _hand_over(
    flow: Flow,
    target: str,
    state: FlowState,
    reason: str,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    state = _stop_listening(state, actions)
    if isinstance(flow.nodes.get(target), QueueNode):
        state = _with(state, handoff_reason=reason)
    return _enter(flow, target, state.variables, now, actions)


def _bot_input(
    flow: Flow,
    node: AskNode | ConfirmNode,
    state: FlowState,
    event: SpeechHeard | SpeechTimedOut | DigitsCollected,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    if isinstance(event, DigitsCollected):
        return _bot_keys(flow, node, state, event.digits, now, actions)
    if isinstance(event, SpeechTimedOut):
        kind = "no_input" if event.reason == "no_input" else "no_match"
        return _bot_failure(flow, node, state, kind, now, actions)
    understanding = event.understanding
    command = understanding.command
    if command is Command.AGENT:
        return _hand_over(flow, node.human, state, "agent_request", now, actions)
    if command is Command.REPEAT or command is Command.SLOWER:
        if command is Command.SLOWER:
            actions.append(SlowDown())
        return _repeat(node, state, actions)
    if isinstance(node, ConfirmNode):
        answer = understanding.yes_no
        if answer is None:
            return _bot_failure(flow, node, state, "no_match", now, actions)
        return _confirmed(flow, node, state, answer, now, actions)
    if state.phase is Phase.CLARIFYING:
        if understanding.yes_no is YesNo.YES:
            return _choose(flow, node, state, state.choices[0], event.text, now, actions)
        if understanding.yes_no in (YesNo.NO, YesNo.UNSURE):
            return _next_clarification(flow, node, state, now, actions)
        # The caller restated the question instead of answering yes or no: start over with it.
    if event.text:
        state = _with(state, transcript=event.text)
    return _understood(flow, node, state, event.text, understanding, now, actions)


def _understood(
    flow: Flow,
    node: AskNode,
    state: FlowState,
    text: str,
    understanding: Understanding,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    top = understanding.top
    decision = understanding.decision
    if decision in (Decision.ANSWER, Decision.HANDOVER) and top is not None:
        return _choose(flow, node, state, top, text, now, actions)
    if decision is Decision.CLARIFY and top is not None:
        offered = tuple(c for c in (top, understanding.second) if c is not None and c.label_prompt)
        if offered:
            state = _stop_listening(state, actions)
            state = dataclasses.replace(state, phase=Phase.CLARIFYING)
            label = offered[0].label_prompt
            assert label is not None
            return _listen(state, label, node.no_input_s, "yes_no", actions, choices=offered)
        return _choose(flow, node, state, top, text, now, actions)
    kind = "not_understood" if decision is Decision.MENU else "no_match"
    return _bot_failure(flow, node, state, kind, now, actions)


def _next_clarification(
    flow: Flow, node: AskNode, state: FlowState, now: dt.datetime, actions: list[Action]
) -> FlowState:
    remaining = state.choices[1:]
    if not remaining:
        return _bot_failure(flow, node, state, "not_understood", now, actions)
    state = _stop_listening(state, actions)
    label = remaining[0].label_prompt
    assert label is not None
    return _listen(state, label, node.no_input_s, "yes_no", actions, choices=remaining)


def _choose(
    flow: Flow,
    node: AskNode,
    state: FlowState,
    choice: IntentChoice,
    text: str,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    """The caller's intent is known: answer it (when the bot can), then follow its policy."""
    state = _stop_listening(state, actions)
    state = _with(state, intent=choice.intent, intent_skill=choice.skill, priority=choice.priority)
    if choice.needs_dossier and node.dossier is not None:
        return _enter(flow, node.dossier, state.variables, now, actions)
    if choice.answer_prompt is None:
        reason = "intent_" + choice.handoff if choice.handoff == "always" else "needs_person"
        return _hand_over(flow, node.handover, state, reason, now, actions)
    state = _with(state, last_answer=choice.answer_prompt)
    actions.append(AnswerGiven(choice.intent, choice.answer_prompt))
    return _play_answer(state, choice, actions)


def _play_answer(state: FlowState, choice: IntentChoice, actions: list[Action]) -> FlowState:
    assert choice.answer_prompt is not None
    state = dataclasses.replace(
        state, phase=Phase.ANSWERING, choices=(choice,), failures=0, listen_prompt=None
    )
    # Answers are not cut by speech (callers say "oui, oui" while listening); keys still work.
    return _play(
        state, Prompt(choice.answer_prompt, None), actions, collect=True, allowed=_ANSWER_KEYS
    )


def _answer_keys(
    flow: Flow,
    node: AskNode,
    state: FlowState,
    digits: str,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState | None:
    if digits == _HUMAN_KEY:
        return _hand_over(flow, node.human, state, "agent_request", now, actions)
    if digits == _REPEAT_KEY and state.choices:
        _stop(state, actions)
        return _play_answer(state, state.choices[0], actions)
    return None


def _after_answer(
    flow: Flow, node: AskNode, state: FlowState, now: dt.datetime, actions: list[Action]
) -> FlowState:
    choice = state.choices[0] if state.choices else None
    if choice is not None and (choice.handoff == "always" or choice.priority == "critical"):
        return _hand_over(flow, node.handover, state, "intent_" + choice.handoff, now, actions)
    if choice is not None and choice.handoff == "recommended" and node.recommended:
        return _enter(flow, node.recommended, state.variables, now, actions)
    return _enter(flow, node.answered, state.variables, now, actions)


def _bot_keys(
    flow: Flow,
    node: AskNode | ConfirmNode,
    state: FlowState,
    digits: str,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    if digits == _HUMAN_KEY:
        return _hand_over(flow, node.human, state, "agent_request", now, actions)
    if digits == _REPEAT_KEY:
        return _repeat(node, state, actions)
    if isinstance(node, ConfirmNode) or state.phase is Phase.CLARIFYING:
        answer = {_YES_KEY: YesNo.YES, _NO_KEY: YesNo.NO}.get(digits)
        if answer is None:
            return _bot_failure(flow, node, state, "invalid_key", now, actions)
        if isinstance(node, ConfirmNode):
            return _confirmed(flow, node, state, answer, now, actions)
        if answer is YesNo.YES:
            return _choose(flow, node, state, state.choices[0], "", now, actions)
        return _next_clarification(flow, node, state, now, actions)
    keypad = flow.nodes.get(node.keypad) if node.keypad else None
    if isinstance(keypad, MenuNode) and digits in keypad.choices:
        # A caller who knows the menu keys is not made to speak.
        state = _stop_listening(state, actions)
        return _enter(flow, keypad.choices[digits], state.variables, now, actions)
    return _bot_failure(flow, node, state, "invalid_key", now, actions)


def _confirmed(
    flow: Flow,
    node: ConfirmNode,
    state: FlowState,
    answer: YesNo,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    target = {YesNo.YES: node.yes, YesNo.NO: node.no, YesNo.UNSURE: node.unsure}[answer]
    state = _stop_listening(state, actions)
    if isinstance(flow.nodes.get(target), QueueNode):
        state = _with(state, handoff_reason=f"{node.node_id}_{answer.value}")
    return _enter(flow, target, state.variables, now, actions)


def _repeat(node: AskNode | ConfirmNode, state: FlowState, actions: list[Action]) -> FlowState:
    state = _stop_listening(state, actions)
    question = state.listen_prompt or node.prompt.prompt_id
    last_answer = state.variables.get("last_answer")
    if isinstance(node, ConfirmNode) and node.repeat_answer and last_answer:
        actions.append(PlayPrompt(last_answer, interruptible=True))
    return _listen_again(node, dataclasses.replace(state, listen_prompt=question), actions)


def _bot_failure(
    flow: Flow,
    node: AskNode | ConfirmNode,
    state: FlowState,
    kind: str,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    """A silence, an invalid key or an utterance that was not understood."""
    failures = state.failures + 1
    if failures > node.retries:
        if isinstance(node, AskNode) and kind == "not_understood":
            # Speech we could not match: the keypad menu still lets the caller choose a service.
            return _hand_over(flow, node.fallback, state, kind, now, actions)
        return _hand_over(flow, node.human, state, kind, now, actions)
    state = _stop_listening(state, actions)
    if state.phase is Phase.CLARIFYING:
        # Back to the open question, asked again.
        state = dataclasses.replace(state, phase=Phase.ASKING, choices=(), listen_prompt=None)
    state = dataclasses.replace(state, failures=failures)
    feedback = node.no_input_prompt if kind == "no_input" else node.no_match_prompt
    if feedback is None:
        return _listen_again(node, state, actions)
    # The feedback prompt leads back into the question; listening starts at once.
    actions.append(PlayPrompt(feedback.prompt_id, interruptible=True))
    return _listen_again(node, state, actions)


# -- identification and dossier answers ---------------------------------------------------------

_IDENTIFYING = frozenset(
    {Phase.ID_LOOKUP, Phase.ID_NUMBER, Phase.ID_READBACK, Phase.ID_BIRTH, Phase.ID_CHECK}
)
_MIN_NUMBER_DIGITS = 4


def _ask_number(node: IdentifyNode, state: FlowState, actions: list[Action]) -> FlowState:
    actions.append(PlayPrompt(node.number_prompt.prompt_id, interruptible=True))
    actions.append(Listen(node.timeout_s, "digits", barge_in=True))
    actions.append(CollectDigits(node.max_digits, node.timeout_s, "#", None))
    return dataclasses.replace(
        state,
        phase=Phase.ID_NUMBER,
        awaiting_prompt=None,
        awaiting_digits=True,
        awaiting_speech=True,
        awaiting_driver=False,
        prompt_playing=node.number_prompt.prompt_id,
        listen_prompt=node.number_prompt.prompt_id,
    )


def _ask_birth_date(node: IdentifyNode, state: FlowState, actions: list[Action]) -> FlowState:
    actions.append(PlayPrompt(node.birth_date_prompt.prompt_id, interruptible=True))
    actions.append(CollectDigits(8, node.timeout_s, "#", None))
    return dataclasses.replace(
        state,
        phase=Phase.ID_BIRTH,
        awaiting_prompt=None,
        awaiting_digits=True,
        awaiting_speech=False,
        awaiting_driver=False,
        prompt_playing=node.birth_date_prompt.prompt_id,
    )


def _read_back(
    node: IdentifyNode, state: FlowState, number: str, actions: list[Action]
) -> FlowState:
    actions.append(PlayPrompt(node.readback_prompt.prompt_id, interruptible=True))
    actions.extend(PlayPrompt(f"digit_{d}", interruptible=True) for d in number)
    state = _listen(
        dataclasses.replace(state, phase=Phase.ID_READBACK),
        node.confirm_prompt.prompt_id,
        node.timeout_s,
        "yes_no",
        actions,
    )
    return _with(state, id_number=number)


def _valid_birth_date(digits: str) -> bool:
    if len(digits) != 8 or not digits.isdigit():
        return False
    try:
        born = dt.date(int(digits[4:]), int(digits[2:4]), int(digits[:2]))
    except ValueError:
        return False
    return 1900 <= born.year


def _identify_failure(
    flow: Flow,
    node: IdentifyNode,
    state: FlowState,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    failures = state.failures + 1
    if failures >= node.attempts:
        return _hand_over(flow, node.failed, state, "identification_failed", now, actions)
    state = _stop_listening(state, actions)
    state = dataclasses.replace(state, failures=failures)
    actions.append(PlayPrompt(node.retry_prompt.prompt_id, interruptible=True))
    # After a failure the number is always asked (a known caller number is not enough).
    return _ask_number(node, _with(state, id_number=""), actions)


def _identify_input(
    flow: Flow,
    node: IdentifyNode,
    state: FlowState,
    event: Event,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState | None:
    phase = state.phase
    if phase is Phase.ID_LOOKUP and isinstance(event, CallerLookedUp):
        state = dataclasses.replace(state, awaiting_driver=False)
        if event.known and node.caller_id:
            return _ask_birth_date(node, _with(state, id_number=""), actions)
        return _ask_number(node, state, actions)
    if phase is Phase.ID_CHECK and isinstance(event, IdentityChecked):
        state = dataclasses.replace(state, awaiting_driver=False)
        if event.result == "ok":
            state = _with(state, identified="yes", role=event.role or "usager")
            return _enter(flow, node.identified, state.variables, now, actions)
        if event.result == "throttled":
            return _hand_over(flow, node.failed, state, "identification_throttled", now, actions)
        return _identify_failure(flow, node, state, now, actions)
    if isinstance(event, SpeechHeard) and event.understanding.command is Command.AGENT:
        return _hand_over(flow, node.human, state, "agent_request", now, actions)
    if phase is Phase.ID_NUMBER:
        if isinstance(event, DigitsCollected):
            if event.digits == _HUMAN_KEY:
                return _hand_over(flow, node.human, state, "agent_request", now, actions)
            if event.digits == _REPEAT_KEY:
                state = _stop_listening(state, actions)
                return _ask_number(node, state, actions)
            number = event.digits.replace("*", "")
        elif isinstance(event, SpeechHeard):
            if event.understanding.command in (Command.REPEAT, Command.SLOWER):
                if event.understanding.command is Command.SLOWER:
                    actions.append(SlowDown())
                state = _stop_listening(state, actions)
                return _ask_number(node, state, actions)
            number = event.understanding.digits or ""
        elif isinstance(event, SpeechTimedOut | InputTimedOut):
            number = ""
        else:
            return None
        if len(number) < _MIN_NUMBER_DIGITS:
            return _identify_failure(flow, node, state, now, actions)
        state = _stop_listening(state, actions)
        return _read_back(node, state, number, actions)
    if phase is Phase.ID_READBACK:
        answer: YesNo | None = None
        if isinstance(event, DigitsCollected):
            if event.digits == _HUMAN_KEY:
                return _hand_over(flow, node.human, state, "agent_request", now, actions)
            answer = {_YES_KEY: YesNo.YES, _NO_KEY: YesNo.NO}.get(event.digits)
        elif isinstance(event, SpeechHeard):
            answer = event.understanding.yes_no
        elif not isinstance(event, SpeechTimedOut):
            return None
        state = _stop_listening(state, actions)
        if answer is YesNo.YES:
            return _ask_birth_date(node, state, actions)
        if answer is YesNo.NO:
            # Typing again is not a failed identification.
            return _ask_number(node, state, actions)
        return _identify_failure(flow, node, state, now, actions)
    if phase is Phase.ID_BIRTH:
        if isinstance(event, DigitsCollected):
            if event.digits == _HUMAN_KEY:
                return _hand_over(flow, node.human, state, "agent_request", now, actions)
            if _valid_birth_date(event.digits):
                typed = state.variables.get("id_number") or None
                actions.append(VerifyIdentity(typed, event.digits))
                return dataclasses.replace(
                    state,
                    phase=Phase.ID_CHECK,
                    awaiting_digits=False,
                    awaiting_driver=True,
                )
            return _identify_failure(flow, node, state, now, actions)
        if isinstance(event, InputTimedOut):
            return _identify_failure(flow, node, state, now, actions)
    return None


def _dossier_input(
    flow: Flow,
    node: DossierAnswerNode,
    state: FlowState,
    event: Event,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState | None:
    if state.phase is Phase.DOSSIER_WAIT and isinstance(event, DossierAnswerReady):
        state = dataclasses.replace(state, awaiting_driver=False)
        if event.prompt_id is None:
            why = event.reason or "no_dossier_answer"
            return _hand_over(flow, node.handover, state, why, now, actions)
        intent = state.variables.get("intent", "")
        actions.append(AnswerGiven(intent, event.prompt_id))
        state = _with(
            state,
            last_answer=event.prompt_id,
            dossier_handover=(event.reason or "dossier") if event.handover else "",
        )
        state = dataclasses.replace(state, phase=Phase.DOSSIER_SPEAKING)
        return _play(
            state, Prompt(event.prompt_id, None), actions, collect=True, allowed=_ANSWER_KEYS
        )
    if state.phase is not Phase.DOSSIER_SPEAKING:
        return None
    if isinstance(event, DigitsCollected) and state.awaiting_digits:
        if event.digits == _HUMAN_KEY:
            return _hand_over(flow, node.handover, state, "agent_request", now, actions)
        if event.digits == _REPEAT_KEY:
            _stop(state, actions)
            answer = state.variables.get("last_answer", "")
            return _play(state, Prompt(answer, None), actions, collect=True, allowed=_ANSWER_KEYS)
        return None
    if isinstance(event, PromptFinished):
        playing = None if event.prompt_id == state.prompt_playing else state.prompt_playing
        state = dataclasses.replace(state, prompt_playing=playing)
        if event.prompt_id != state.awaiting_prompt:
            return state
        state = dataclasses.replace(state, awaiting_prompt=None)
        if state.awaiting_digits:
            return state
        return _after_dossier(flow, node, state, now, actions)
    if isinstance(event, InputTimedOut) and state.awaiting_digits:
        state = dataclasses.replace(state, awaiting_digits=False)
        if state.awaiting_prompt is not None:
            return state
        return _after_dossier(flow, node, state, now, actions)
    return None


def _after_dossier(
    flow: Flow,
    node: DossierAnswerNode,
    state: FlowState,
    now: dt.datetime,
    actions: list[Action],
) -> FlowState:
    reason = state.variables.get("dossier_handover")
    if reason:
        return _hand_over(flow, node.handover, state, reason, now, actions)
    return _enter(flow, node.next, state.variables, now, actions)
