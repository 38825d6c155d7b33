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

Events that do not match what the interpreter waits for (stale or duplicated) are ignored.
"""

from __future__ import annotations

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


Event = PromptFinished | DigitsCollected | InputTimedOut


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
    """Why (the queue node's ``reason``, by default its id)."""


@dataclass(frozen=True, slots=True)
class HangUp:
    """End of the flow: hang up after the preceding actions."""

    reason: str
    """Why (``flow_end``, ``queued``, ``closed``, ``flow_loop``, ``flow_changed``…)."""


Action = PlayPrompt | CollectDigits | StopPrompt | EnterNode | QueueCall | HangUp
