"""Knowledge-base data model: intents, hand-off policies and the loaded knowledge base."""

from __future__ import annotations

import enum
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

OUT_OF_SCOPE = "hors_sujet"
"""Identifier of the out-of-scope intent every knowledge base must define."""


def placeholder_names(text: str) -> frozenset[str]:
    """Return the ``{placeholder}`` names used in a spoken answer.

    Args:
        text: Answer text.

    Returns:
        The set of placeholder names.

    Raises:
        ValueError: If braces are unbalanced or a placeholder has a format spec.
    """
    names: set[str] = set()
    for _, name, spec, conv in string.Formatter().parse(text):
        if name is None:
            continue
        if not _NAME_RE.match(name) or spec or conv:
            raise ValueError(f"invalid placeholder {{{name}}}")
        names.add(name)
    return frozenset(names)


class Handoff(enum.Enum):
    """When the bot hands the caller over to a person after (or instead of) answering."""

    NEVER = "never"
    ON_REQUEST = "on_request"
    IF_UNRESOLVED = "if_unresolved"
    RECOMMENDED = "recommended"
    ALWAYS = "always"


class Priority(enum.Enum):
    """Queue priority used when the intent is handed over."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Intent:
    """One thing a caller may want, with its spoken answer and how to recognise it."""

    id: str
    """Stable identifier (snake_case)."""
    topic: str
    """Coarse theme (apa, mdph, paiement...)."""
    answer: str
    """Spoken answer; ``{name}`` marks a placeholder filled at run time."""
    examples: tuple[str, ...]
    """Example utterances, written as a caller would say them."""
    keywords: tuple[str, ...]
    """Words or short phrases (and synonyms) that point to this intent."""
    needs_dossier: bool
    """True when the answer reads the caller's own dossier (identification first)."""
    handoff: Handoff
    """Hand-off policy."""
    skill: str
    """Skill queue for a hand-off; must be declared in the knowledge base."""
    priority: Priority = Priority.NORMAL
    """Queue priority when handed over."""
    description: str = ""
    """What the caller wants, for people maintaining the knowledge base."""
    label: str = ""
    """Short spoken title ("la téléassistance"), used to ask "votre question concerne … ?"."""
    answer_generic: str = ""
    """For ``needs_dossier`` intents: what the bot can say without the dossier (then a person
    takes over); empty means a person answers at once."""
    line: int = 0
    """1-based line of the intent in its source file (0 when built in code)."""

    @property
    def placeholders(self) -> frozenset[str]:
        """Names of the ``{placeholders}`` used in the answer."""
        return placeholder_names(self.answer)


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    """A validated set of intents with the skills and emergency numbers they refer to."""

    intents: tuple[Intent, ...]
    """All intents, in file order."""
    skills: Mapping[str, str] = field(default_factory=dict)
    """Skill id to description."""
    emergency_numbers: Mapping[str, str] = field(default_factory=dict)
    """Short number to what it is for (3114, 3977, 15, 112...)."""
    placeholders: Mapping[str, str] = field(default_factory=dict)
    """Declared placeholder name to description."""
    departement: Mapping[str, str] = field(default_factory=dict)
    """Values of the département-wide placeholders (opening hours, addresses...), spoken as is."""
    source: str = ""
    """File the knowledge base was loaded from."""

    def get(self, intent_id: str) -> Intent:
        """Return the intent with this id.

        Args:
            intent_id: Identifier of the intent.

        Returns:
            The intent.

        Raises:
            KeyError: If no intent has this id.
        """
        for intent in self.intents:
            if intent.id == intent_id:
                return intent
        raise KeyError(intent_id)

    @property
    def ids(self) -> tuple[str, ...]:
        """Identifiers of all intents, in file order."""
        return tuple(intent.id for intent in self.intents)
