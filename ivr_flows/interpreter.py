"""The flow interpreter: ``start``/``step`` turn events into actions, without any IO.

Rules this file owns:

1. Each step ends either waiting for something (a prompt to finish and/or digits) or finished.
2. ``goto``, ``set`` and ``branch`` are traversed within the step that reaches them.
3. Time comes in as ``now`` (timezone-aware); opening hours use the flow's timezone.
4. Events that do not match what the state waits for are ignored (they are stale).
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
    CollectDigits,
    DigitsCollected,
    EnterNode,
    Event,
    HangUp,
    InputTimedOut,
    PlayPrompt,
    PromptFinished,
    QueueCall,
    StopPrompt,
)
from .model import (
    BranchNode,
    Condition,
    ConditionKind,
    Flow,
    GotoNode,
    HangupNode,
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
    """Invalid keys and silences in the current menu visit."""
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
        """Whether the state waits for an event (a prompt to finish, or digits)."""
        return self.awaiting_prompt is not None or self.awaiting_digits


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
            actions.append(QueueCall(node.skill, node.reason))
            state = dataclasses.replace(base, phase=Phase.HOLDING)
            return _play(state, node.prompt, actions, collect=False)
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
        else:
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
