"""Routing data model: skills, priorities, agents and queued calls.

Everything here is an immutable value: the :class:`~routing.engine.Router` replaces an
:class:`Agent` with :func:`dataclasses.replace` when its state changes, and hands out the same
objects to callers (panel, metrics, the function form :func:`~routing.engine.choose_agent`).

Only opaque identifiers travel through routing: a call id, an agent id and, when the caller was
identified, an opaque usager id. No phone number, name or NIR ever enters this package.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SKILL_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
"""What a skill (and queue) identifier looks like: snake_case."""

MIN_PROFICIENCY = 1
"""Lowest proficiency an agent can have in a skill."""
MAX_PROFICIENCY = 5
"""Highest proficiency an agent can have in a skill."""


class Priority(enum.IntEnum):
    """Priority of a call in its queue; a higher value is served first.

    The values match the ``priority`` field of the intent catalogue (``low``, ``normal``,
    ``high``, ``critical``); ``critical`` is reserved for distress and abuse.
    """

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3

    @classmethod
    def parse(cls, text: str) -> Priority:
        """Parse a priority name as written in the catalogue and the flows.

        Args:
            text: ``"low"``, ``"normal"``, ``"high"`` or ``"critical"`` (any case).

        Returns:
            The priority.

        Raises:
            ValueError: If the name is unknown.
        """
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(p.name.lower() for p in cls)
            raise ValueError(f"unknown priority {text!r} (expected one of {names})") from None

    @property
    def label(self) -> str:
        """The lower-case name used in files and metric labels."""
        return self.name.lower()


class AgentState(enum.Enum):
    """Where an agent is in the routing cycle.

    ``offline → available → reserved (ringing) → on_call → wrap_up → available``; ``paused``
    (with a reason) can be entered from ``available`` at once, and from ``on_call`` or
    ``wrap_up`` at the end of the wrap-up.
    """

    OFFLINE = "offline"
    AVAILABLE = "available"
    RESERVED = "reserved"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


STAFFED_STATES = frozenset(
    {AgentState.AVAILABLE, AgentState.RESERVED, AgentState.ON_CALL, AgentState.WRAP_UP}
)
"""States in which an agent counts as staffing the queues of their skills (for wait estimates)."""


@dataclass(frozen=True, slots=True)
class Skill:
    """One skill of the catalogue; there is one queue per skill."""

    id: str
    """Identifier, e.g. ``"apa"`` or ``"mdph_enfant"``."""
    description: str = ""
    """What the team behind the skill handles (from the catalogue)."""


def check_skills(skills: Mapping[str, int]) -> dict[str, int]:
    """Validate an agent's skills and proficiencies.

    Args:
        skills: Skill id to proficiency (1-5).

    Returns:
        A plain copy of the mapping.

    Raises:
        ValueError: If a skill id is malformed or a proficiency is outside 1-5.
    """
    out: dict[str, int] = {}
    items: Iterable[tuple[object, object]] = skills.items()  # user input: checked at run time
    for skill, level in items:
        if not isinstance(skill, str) or not SKILL_ID_RE.match(skill):
            raise ValueError(f"bad skill id {skill!r} (expected snake_case)")
        if isinstance(level, bool) or not isinstance(level, int):
            raise ValueError(f"proficiency of {skill!r} must be an integer, got {level!r}")
        if not MIN_PROFICIENCY <= level <= MAX_PROFICIENCY:
            raise ValueError(
                f"proficiency of {skill!r} must be {MIN_PROFICIENCY}-{MAX_PROFICIENCY}, got {level}"
            )
        out[skill] = level
    return out


@dataclass(frozen=True, slots=True)
class Agent:
    """A person who takes calls, as the router sees them at one instant."""

    id: str
    """Opaque agent identifier (the agent's login, not their name)."""
    skills: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    """Skill id to proficiency, 1 (beginner) to 5 (expert)."""
    state: AgentState = AgentState.OFFLINE
    """Current state."""
    since: float = 0.0
    """When the agent entered ``state`` (seconds, same clock as every ``now``)."""
    pause_reason: str | None = None
    """Why the agent is paused (one of the configured reasons); None unless ``paused``."""
    logged_in_at: float | None = None
    """When the agent last logged in; None while offline."""
    last_call_ended_at: float | None = None
    """When the agent's last conversation ended; None if none since login."""
    call_id: str | None = None
    """The call offered (``reserved``), in conversation (``on_call``) or wrapped up."""
    pending_pause: str | None = None
    """A pause asked for during a call: applied when the wrap-up ends."""

    def proficiency(self, skill: str) -> int:
        """Return the agent's proficiency in ``skill``, 0 if they do not have it.

        Args:
            skill: Skill id.

        Returns:
            1-5, or 0.
        """
        return self.skills.get(skill, 0)

    @property
    def idle_since(self) -> float:
        """Start of the agent's idle time: their last call's end, else their login.

        "Longest idle" routing prefers the smallest value: the agent who has waited longest
        for a call since their previous one.
        """
        if self.last_call_ended_at is not None:
            return self.last_call_ended_at
        if self.logged_in_at is not None:
            return self.logged_in_at
        return self.since


@dataclass(frozen=True, slots=True)
class QueuedCall:
    """A call waiting for an agent: what routing needs to know, opaque ids only."""

    call_id: str
    """Opaque call identifier (the SIP Call-ID of the caller's leg, or a callback id)."""
    skill: str
    """The queue the call was handed to (a skill id)."""
    priority: Priority = Priority.NORMAL
    """Priority from the intent or flow (before repeat-caller and callback raises)."""
    joined_at: float = 0.0
    """When the caller started waiting for an agent. A callback that keeps the caller's place
    keeps the original value, which keeps the place."""
    previous_contact_at: float | None = None
    """When the same usager or number last reached the service, if known: a contact within
    the configured window makes this a repeat caller."""
    callback: bool = False
    """This entry is a scheduled callback (chosen slot or retry) entering the queue."""
    usager_id: str | None = None
    """Opaque id of the identified usager (dossier holder), if any; never a phone number."""
    intent: str | None = None
    """Intent the bot recognised, if any (for the agent and the trail)."""
    target_agent: str | None = None
    """A transfer to this agent: offered to them at once if they are available (whatever their
    skills: a colleague chose them), else, or if they do not take it, the call waits in its
    queue like any other."""

    def is_repeat(self, window_s: float) -> bool:
        """Tell whether this is a repeat caller: a previous contact within ``window_s``.

        Args:
            window_s: Width of the window in seconds (48 h by default in the config).

        Returns:
            True if ``previous_contact_at`` lies in ``[joined_at - window_s, joined_at]``.
        """
        if self.previous_contact_at is None:
            return False
        return 0.0 <= self.joined_at - self.previous_contact_at <= window_s
