"""What goes into the router (events, past tense) and what comes out (decisions).

Every event carries ``at``: the instant it happened, in POSIX seconds (the adapter's clock).
Decisions are data: the adapter (``callcenter``) rings agents, plays messages and records the
trail from them; :mod:`routing.kpi` accumulates the KPIs from the same stream.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .model import AgentState, Priority, QueuedCall

# -- events (in) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallQueued:
    """A call was handed to a queue (the flow's ``queue`` node, a transfer, a due callback)."""

    call: QueuedCall
    """The call."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    """The caller hung up while waiting or while an agent was ringing."""

    call_id: str
    """The call."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The call leaves the queue without being abandoned.

    E.g. a callback cancelled, the caller chose another way, a transfer elsewhere.
    """

    call_id: str
    """The call."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallbackKept:
    """The caller asked to be called back keeping their place, and hung up.

    The entry stays in the queue, no longer subject to the maximum wait, and is dialled out
    when offered.
    """

    call_id: str
    """The call."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class AgentLoggedIn:
    """An agent logged in with these skills."""

    agent_id: str
    """The agent."""
    skills: Mapping[str, int]
    """Skill id to proficiency (1-5)."""
    at: float
    """When."""
    pause_reason: str | None = None
    """Log in paused with this reason instead of available."""


@dataclass(frozen=True, slots=True)
class AgentLoggedOut:
    """An agent logged out (any state; a ringing offer goes to the next agent)."""

    agent_id: str
    """The agent."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class AgentSkillsChanged:
    """An agent's skills or proficiencies changed while logged in."""

    agent_id: str
    """The agent."""
    skills: Mapping[str, int]
    """The new skills."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class AgentReady:
    """The agent made themselves available (from a pause, or ending the wrap-up early)."""

    agent_id: str
    """The agent."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class AgentPauseRequested:
    """The agent asked for a pause: at once if idle, after the wrap-up if in a call."""

    agent_id: str
    """The agent."""
    reason: str
    """One of the configured pause reasons."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class OfferAccepted:
    """The agent took the offered call (answered their phone or clicked accept)."""

    agent_id: str
    """The agent."""
    call_id: str
    """The call that was offered."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class OfferRejected:
    """The agent declined the offered call; it is not offered to them again."""

    agent_id: str
    """The agent."""
    call_id: str
    """The call that was offered."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class OfferTimedOut:
    """The agent's phone did not answer: same effect as the router's ring timeout.

    E.g. busy, unreachable, or rang out before the router's own ring timeout.
    """

    agent_id: str
    """The agent."""
    call_id: str
    """The call that was offered."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The conversation between the agent and the caller ended (either side hung up)."""

    agent_id: str
    """The agent."""
    call_id: str
    """The call."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class WrapUpDone:
    """The agent finished the wrap-up, saying whether the caller's request was resolved."""

    agent_id: str
    """The agent."""
    at: float
    """When."""
    resolved: bool | None = None
    """First-contact resolution flag; None when the agent did not say."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: fire the timers due by ``at`` (see ``Router.get_timer``)."""

    at: float
    """Now."""


Event = (
    CallQueued
    | CallerHungUp
    | CallCancelled
    | CallbackKept
    | AgentLoggedIn
    | AgentLoggedOut
    | AgentSkillsChanged
    | AgentReady
    | AgentPauseRequested
    | OfferAccepted
    | OfferRejected
    | OfferTimedOut
    | CallEnded
    | WrapUpDone
    | Tick
)
"""Any event the router accepts."""


# -- decisions (out) -----------------------------------------------------------------------


class OfferEndReason(enum.Enum):
    """Why an offer ended without the agent taking the call."""

    REJECTED = "rejected"
    RING_TIMEOUT = "ring_timeout"
    CALLER_HUNG_UP = "caller_hung_up"
    CALL_CANCELLED = "call_cancelled"
    AGENT_LOGGED_OUT = "agent_logged_out"
    AGENT_PAUSED = "agent_paused"


@dataclass(frozen=True, slots=True)
class CallEnqueued:
    """The call joined its queue."""

    call_id: str
    """The call."""
    queue: str
    """Its queue (skill)."""
    priority: Priority
    """Effective priority (after repeat-caller and callback raises)."""
    position: int
    """1-based position in the queue when it joined (0: offered at once to a named agent)."""
    at: float
    """When."""
    callback: bool = False
    """The entry is a callback entering the queue (a chosen slot or a retry), not a new call."""


@dataclass(frozen=True, slots=True)
class CallRejectedQueueFull:
    """The queue already holds its maximum number of calls: the call was not queued."""

    call_id: str
    """The call."""
    queue: str
    """The queue."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallRejectedClosed:
    """The queue is closed: the call was refused, or left the queue at closing time."""

    call_id: str
    """The call."""
    queue: str
    """The queue."""
    wait_s: float
    """How long it had waited (0 when refused at once)."""
    kept_callback: bool
    """It was a kept-place callback: reschedule it, nobody is on the line."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class OfferCall:
    """Ring this agent with this call; answer with OfferAccepted/Rejected/TimedOut."""

    agent_id: str
    """The agent."""
    call: QueuedCall
    """The call."""
    queue: str
    """Queue through which the agent qualified (the call's queue, or an overflow queue)."""
    proficiency: int
    """The agent's proficiency in that queue's skill."""
    wait_s: float
    """How long the caller had waited."""
    ring_deadline: float
    """When the offer times out if not answered."""
    dial_out: bool
    """Nobody is on the line (kept-place or scheduled callback): place the outbound call."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class OfferEnded:
    """The offer ended without the agent taking the call: stop ringing them."""

    agent_id: str
    """The agent."""
    call_id: str
    """The call."""
    reason: OfferEndReason
    """Why."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """The agent took the call: bridge the caller to them."""

    agent_id: str
    """The agent."""
    call_id: str
    """The call."""
    queue: str
    """The call's own queue (KPIs are per original queue)."""
    via_queue: str
    """Queue through which the agent qualified."""
    wait_s: float
    """Time from joining to answer (the ASA sample)."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallAbandoned:
    """The caller hung up before an agent took the call."""

    call_id: str
    """The call."""
    queue: str
    """Its queue."""
    wait_s: float
    """How long they had waited."""
    while_ringing: bool
    """An agent was being offered the call when they hung up."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallRemoved:
    """The call left the queue on request (CallCancelled)."""

    call_id: str
    """The call."""
    queue: str
    """Its queue."""
    wait_s: float
    """How long it had waited."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallKeptForCallback:
    """The call keeps its place as a callback (see CallbackKept)."""

    call_id: str
    """The call."""
    queue: str
    """Its queue."""
    position: int | None
    """1-based position; None when the place was kept while an agent's phone rang for the call
    (the entry is then put back in its place, or closed out if its queue has closed)."""
    at: float
    """When."""
    wait_s: float = 0.0
    """How long the caller had waited on the line before keeping the place."""


@dataclass(frozen=True, slots=True)
class CallOverflowed:
    """Agents of another queue may now take the call (it stays in its own queue too)."""

    call_id: str
    """The call."""
    from_queue: str
    """The call's own queue."""
    to_queue: str
    """The queue it overflowed to."""
    wait_s: float
    """How long it had waited."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallMaxWaitReached:
    """The call waited the queue's maximum: it left the queue (offer a callback or message)."""

    call_id: str
    """The call."""
    queue: str
    """Its queue."""
    wait_s: float
    """How long it waited."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class CallCompleted:
    """The conversation ended; the agent starts the wrap-up."""

    agent_id: str
    """The agent."""
    call_id: str
    """The call."""
    queue: str
    """The call's own queue."""
    talk_s: float
    """Conversation time."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class WrapUpEnded:
    """The agent's wrap-up ended (done, or its time ran out)."""

    agent_id: str
    """The agent."""
    call_id: str
    """The call it followed."""
    queue: str
    """The call's own queue."""
    handle_s: float
    """Conversation plus wrap-up time (the AHT sample)."""
    resolved: bool | None
    """First-contact resolution flag, None when not given (time ran out)."""
    timed_out: bool
    """The wrap-up time ran out rather than the agent ending it."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    """An agent's state (or pause reason, or pending pause) changed: update the panel."""

    agent_id: str
    """The agent."""
    state: AgentState
    """New state."""
    reason: str | None
    """Pause reason when ``paused``."""
    pending_pause: str | None
    """A pause that will start after the wrap-up."""
    at: float
    """When."""


@dataclass(frozen=True, slots=True)
class EventIgnored:
    """An event referred to an offer, call or state that no longer holds.

    A race between the router's timers and the phones, e.g. an accept that arrived after the
    ring timeout. When it was an accept, the adapter hangs up the agent's leg.
    """

    event: str
    """Event type name."""
    agent_id: str | None
    """The agent concerned."""
    call_id: str | None
    """The call concerned."""
    reason: str
    """Why it was ignored."""
    at: float
    """When."""


Decision = (
    CallEnqueued
    | CallRejectedQueueFull
    | CallRejectedClosed
    | OfferCall
    | OfferEnded
    | CallAnswered
    | CallAbandoned
    | CallRemoved
    | CallKeptForCallback
    | CallOverflowed
    | CallMaxWaitReached
    | CallCompleted
    | WrapUpEnded
    | AgentStateChanged
    | EventIgnored
)
"""Anything the router decides."""


# -- the function form ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offer:
    """``choose_agent``: offer the call to this agent."""

    agent_id: str
    """The agent."""
    queue: str
    """Queue through which the agent qualifies."""
    proficiency: int
    """Their proficiency in that queue's skill."""


@dataclass(frozen=True, slots=True)
class Wait:
    """``choose_agent``: no qualified agent is available; wait."""

    min_proficiency: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Proficiency required now in each queue that may serve the call."""
    next_change: float | None = None
    """When the requirements change next (relaxation, overflow, maximum wait), if ever."""


@dataclass(frozen=True, slots=True)
class Closed:
    """``choose_agent``: the call's queue is closed."""

    reopens_at: float | None
    """Next opening, None if not within a year."""


@dataclass(frozen=True, slots=True)
class MaxWaitReached:
    """``choose_agent``: the call has waited the queue's maximum."""

    wait_s: float
    """How long it waited."""


RoutingDecision = Offer | Wait | Closed | MaxWaitReached
"""Result of :func:`routing.engine.choose_agent`."""
