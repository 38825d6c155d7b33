"""Routing configuration: one queue per skill, its rules, priorities and pause reasons.

A configuration is parsed once from YAML (:func:`load_routing_config`, errors carry file and
line) or from a plain mapping (:func:`routing_config_from_dict`, errors carry the field path),
and every problem is reported at once in a :class:`RoutingConfigError`; nothing is returned
half-built. Example (``routing/solidarites.yaml`` is the shipped one)::

    timezone: Europe/Paris
    catalogue: ../faq/solidarites.yaml     # or ``skills: {apa: "...", ...}``
    pause_reasons: [pause, déjeuner, formation, réunion, non réponse]
    no_answer_reason: non réponse
    priorities: {repeat_caller_window: 48h, repeat_caller_raise: 1, callback_raise: 1}
    hours:
      bureau: {mon-fri: "09:00-12:30, 13:30-17:00", public_holidays: FR, closures: []}
    defaults: {hours: bureau, wrap_up: 30s, ring_timeout: 20s, max_wait: 15m, max_size: 50}
    queues:
      apa:
        min_proficiency: 3
        relaxation:
          - {after: 60s, min_proficiency: 2}
          - {after: 180s, overflow_to: accueil_general}

Every wait below is the caller's total wait, counted from ``QueuedCall.joined_at``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from ivr_flows.hours import (
    WEEKDAYS,
    Schedule,
    TimeRange,
    check_calendar,
    parse_time_range,
    parse_weekdays,
)

from .model import MAX_PROFICIENCY, MIN_PROFICIENCY, SKILL_ID_RE, Priority, QueuedCall, Skill

ALWAYS_OPEN = "always"
"""Schedule name meaning "open 24/7" (no ``hours`` entry needed)."""

DEFAULT_PAUSE_REASONS = ("pause", "déjeuner", "formation", "réunion", "non réponse")
"""Pause reasons when the configuration does not list any."""


def default_routing_config_path() -> Path:
    """Return the path of the shipped configuration (``routing/solidarites.yaml``)."""
    return Path(__file__).with_name("solidarites.yaml")


@dataclass(frozen=True, slots=True)
class RelaxationStep:
    """After ``after_s`` of waiting, agents with at least ``min_proficiency`` qualify."""

    after_s: float
    """Wait (seconds) from which the step applies (inclusive)."""
    min_proficiency: int
    """Lowest proficiency accepted from then on."""


@dataclass(frozen=True, slots=True)
class Overflow:
    """After ``after_s`` of waiting, agents of queue ``to_queue`` may also take the call."""

    after_s: float
    """Wait (seconds) from which the call overflows (inclusive)."""
    to_queue: str
    """The other queue; the call stays reachable by this queue's agents too."""


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Rules of one queue (one skill)."""

    name: str
    """Queue name, which is the skill id."""
    min_proficiency: int = MIN_PROFICIENCY
    """Proficiency required when the call joins (relaxed by ``relaxation``)."""
    relaxation: tuple[RelaxationStep, ...] = ()
    """Steps lowering the required proficiency as the wait grows, in increasing ``after_s``."""
    overflow: Overflow | None = None
    """Where the call may also be served after a long wait."""
    wrap_up_s: float = 30.0
    """Wrap-up time after each conversation before the agent is available again."""
    ring_timeout_s: float = 20.0
    """How long an offered call rings at an agent before going to the next one."""
    max_wait_s: float | None = 900.0
    """Longest wait before the call leaves the queue (callback or message); None: no limit."""
    max_size: int | None = None
    """Most calls waiting at once; a new call beyond is refused. None: no limit."""
    hours: Schedule | None = None
    """Opening hours; None means always open. No offer is made while closed."""
    line: int = 0
    """Line of the queue in its file (0 when built in code or from defaults)."""

    def min_proficiency_at(self, wait_s: float) -> int:
        """Return the proficiency required after waiting ``wait_s``.

        Args:
            wait_s: The caller's total wait in seconds.

        Returns:
            The lowest proficiency accepted.
        """
        level = self.min_proficiency
        for step in self.relaxation:
            if wait_s >= step.after_s:
                level = step.min_proficiency
            else:
                break
        return level

    def next_relaxation_after(self, wait_s: float) -> float | None:
        """Return the wait at which the next relaxation step applies.

        Args:
            wait_s: The caller's total wait in seconds.

        Returns:
            The ``after_s`` of the first step not yet reached, or None.
        """
        for step in self.relaxation:
            if step.after_s > wait_s:
                return step.after_s
        return None


@dataclass(frozen=True, slots=True)
class PriorityRules:
    """How a call's priority is raised (distress and abuse come in at ``critical`` already)."""

    repeat_caller_window_s: float = 48 * 3600.0
    """A previous contact within this window makes a repeat caller."""
    repeat_caller_raise: int = 1
    """Priority steps added for a repeat caller."""
    callback_raise: int = 1
    """Priority steps added for a scheduled callback entering the queue."""

    def effective(self, call: QueuedCall) -> Priority:
        """Return the priority the call is served with.

        Raises never reach ``critical``, which stays reserved to distress and abuse.

        Args:
            call: The queued call.

        Returns:
            Its effective priority.
        """
        if call.priority is Priority.CRITICAL:
            return Priority.CRITICAL
        level = int(call.priority)
        if call.is_repeat(self.repeat_caller_window_s):
            level += self.repeat_caller_raise
        if call.callback:
            level += self.callback_raise
        return Priority(min(level, int(Priority.HIGH)))


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    """The whole routing configuration."""

    queues: Mapping[str, QueueConfig]
    """Queue name (skill id) to its rules; one queue per catalogue skill."""
    skills: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Skill id to description, from the catalogue."""
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Europe/Paris"))
    """Timezone of the opening hours."""
    pause_reasons: tuple[str, ...] = DEFAULT_PAUSE_REASONS
    """Reasons an agent may give for a pause (shown on the panel and in metrics)."""
    no_answer_reason: str = "non réponse"
    """Pause reason set when an offered call rings out at an agent; one of ``pause_reasons``."""
    priorities: PriorityRules = field(default_factory=PriorityRules)
    """Priority raises."""
    source: str = ""
    """Where the configuration came from."""

    @property
    def catalogue(self) -> tuple[Skill, ...]:
        """The skills of the catalogue, as :class:`~routing.model.Skill` values."""
        return tuple(Skill(skill_id, text) for skill_id, text in self.skills.items())

    def queue(self, name: str) -> QueueConfig:
        """Return the rules of a queue.

        Args:
            name: Queue name (skill id).

        Returns:
            Its configuration.

        Raises:
            KeyError: If there is no such queue.
        """
        try:
            return self.queues[name]
        except KeyError:
            raise KeyError(f"unknown queue {name!r}") from None

    @classmethod
    def simple(
        cls,
        queues: Mapping[str, QueueConfig] | list[QueueConfig],
        **kwargs: Any,
    ) -> RoutingConfig:
        """Build a configuration in code (tests, benchmarks), validating it like a file.

        Args:
            queues: Queue configurations (a list, or a mapping by name).
            **kwargs: Other :class:`RoutingConfig` fields.

        Returns:
            The configuration.

        Raises:
            RoutingConfigError: If the configuration is inconsistent.
        """
        items = list(queues.values()) if isinstance(queues, Mapping) else list(queues)
        by_name = {q.name: q for q in items}
        kwargs.setdefault("skills", MappingProxyType({name: "" for name in by_name}))
        config = cls(queues=MappingProxyType(by_name), **kwargs)
        issues = _check_consistency(config, "<code>", {})
        if issues:
            raise RoutingConfigError(issues)
        return config


# -- errors -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a routing configuration."""

    source: str
    """File name, or ``<dict>`` / ``<code>``."""
    line: int
    """1-based line, 0 when unknown (configuration given as a mapping)."""
    field: str
    """Dotted path of the field, e.g. ``queues.apa.relaxation[1].after``."""
    message: str
    """What is wrong."""

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: field '{self.field}': {self.message}"


class RoutingConfigError(ValueError):
    """The routing configuration is invalid; ``issues`` lists every problem."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in issues))


# -- YAML with line numbers -----------------------------------------------------------------


class _LineDict(dict[Any, Any]):
    """A mapping read from YAML that remembers the line of each key."""

    line = 0
    key_lines: dict[Any, int]
    duplicates: list[tuple[Any, int]]


class _LineList(list[Any]):
    """A sequence read from YAML that remembers the line of each item."""

    line = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> _LineDict:
    loader.flatten_mapping(node)
    out = _LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    out.duplicates = []
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            key = str(key)
        if key in out:
            out.duplicates.append((key, key_node.start_mark.line + 1))
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: yaml.SafeLoader, node: yaml.SequenceNode) -> _LineList:
    out = _LineList(loader.construct_object(item, deep=True) for item in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [item.start_mark.line + 1 for item in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _line_of(container: object, key: object = None) -> int:
    if isinstance(container, _LineDict):
        if key is not None and key in container.key_lines:
            return container.key_lines[key]
        return container.line
    if isinstance(container, _LineList):
        if isinstance(key, int) and 0 <= key < len(container.item_lines):
            return container.item_lines[key]
        return container.line
    return 0


# -- parsing -------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h|d)?\s*$")
_DURATION_UNITS = {None: 1.0, "ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0}
_DURATION_UNITS |= {"h": 3600.0, "d": 86400.0}

_TOP_KEYS = frozenset(
    {
        "timezone",
        "skills",
        "catalogue",
        "pause_reasons",
        "no_answer_reason",
        "priorities",
        "hours",
        "defaults",
        "queues",
        "description",
    }
)
_QUEUE_KEYS = frozenset(
    {
        "min_proficiency",
        "relaxation",
        "wrap_up",
        "ring_timeout",
        "max_wait",
        "max_size",
        "hours",
        "description",
    }
)
_PRIORITY_KEYS = frozenset({"repeat_caller_window", "repeat_caller_raise", "callback_raise"})
_MISSING = object()


class _Parser:
    def __init__(self, source: str, base_dir: Path | None) -> None:
        self.source = source
        self.base_dir = base_dir
        self.issues: list[ConfigIssue] = []

    def error(self, container: object, key: object, path: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.source, _line_of(container, key), path, message))

    def check_duplicates(self, mapping: object, path: str) -> None:
        if isinstance(mapping, _LineDict):
            for key, line in mapping.duplicates:
                self.issues.append(
                    ConfigIssue(self.source, line, f"{path}.{key}".lstrip("."), "duplicate key")
                )

    def mapping(self, container: object, key: object, value: object, path: str) -> dict[Any, Any]:
        if not isinstance(value, dict):
            self.error(container, key, path, f"expected a mapping, got {_kind(value)}")
            return {}
        self.check_duplicates(value, path)
        return value

    def unknown_keys(self, mapping: dict[Any, Any], allowed: frozenset[str], path: str) -> None:
        for key in mapping:
            if key not in allowed:
                sub = f"{path}.{key}" if path else str(key)
                expected = ", ".join(sorted(allowed))
                self.error(mapping, key, sub, f"unknown key (expected one of: {expected})")

    def duration(
        self, container: object, key: object, value: object, path: str, *, allow_none: bool
    ) -> float | None | object:
        """Seconds, or None when allowed and given as null/"none"; _MISSING on error."""
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            if allow_none:
                return None
            self.error(container, key, path, "a duration is required here")
            return _MISSING
        if isinstance(value, bool):
            self.error(container, key, path, f"expected a duration, got {_kind(value)}")
            return _MISSING
        if isinstance(value, int | float):
            if value < 0:
                self.error(container, key, path, f"must not be negative, got {value}")
                return _MISSING
            return float(value)
        if isinstance(value, str):
            match = _DURATION_RE.match(value)
            if match:
                return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        self.error(
            container,
            key,
            path,
            f"bad duration {value!r} (expected seconds or e.g. '90s', '3m', '1h')",
        )
        return _MISSING

    def integer(
        self,
        container: object,
        key: object,
        value: object,
        path: str,
        *,
        low: int,
        high: int | None = None,
        allow_none: bool = False,
    ) -> int | None | object:
        if allow_none and (value is None or (isinstance(value, str) and value == "none")):
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(container, key, path, f"expected an integer, got {_kind(value)}")
            return _MISSING
        if value < low or (high is not None and value > high):
            bounds = f"{low}-{high}" if high is not None else f">= {low}"
            self.error(container, key, path, f"must be {bounds}, got {value}")
            return _MISSING
        return value

    def string(self, container: object, key: object, value: object, path: str) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.error(container, key, path, f"expected a non-empty string, got {_kind(value)}")
            return None
        return value.strip()

    # -- sections ------------------------------------------------------------------------

    def skills(self, top: dict[Any, Any]) -> dict[str, str] | None:
        if "skills" in top:
            raw = self.mapping(top, "skills", top["skills"], "skills")
            out: dict[str, str] = {}
            for key, value in raw.items():
                if not isinstance(key, str) or not SKILL_ID_RE.match(key):
                    self.error(raw, key, f"skills.{key}", "skill id must be snake_case")
                    continue
                out[key] = value.strip() if isinstance(value, str) else ""
            if not out:
                self.error(top, "skills", "skills", "must list at least one skill")
            return out
        if "catalogue" in top:
            name = self.string(top, "catalogue", top["catalogue"], "catalogue")
            if name is None:
                return None
            path = Path(name)
            if not path.is_absolute() and self.base_dir is not None:
                path = self.base_dir / path
            try:
                return load_skill_catalogue(path)
            except (OSError, ValueError) as exc:
                self.error(top, "catalogue", "catalogue", f"cannot read skills from {name}: {exc}")
                return None
        self.error(top, None, "skills", "give 'skills' (id: description) or 'catalogue' (file)")
        return None

    def timezone(self, top: dict[Any, Any]) -> ZoneInfo:
        default = ZoneInfo("Europe/Paris")
        if "timezone" not in top:
            return default
        name = self.string(top, "timezone", top["timezone"], "timezone")
        if name is None:
            return default
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.error(top, "timezone", "timezone", f"unknown timezone {name!r}")
            return default

    def pause_reasons(self, top: dict[Any, Any]) -> tuple[tuple[str, ...], str]:
        reasons: tuple[str, ...] = DEFAULT_PAUSE_REASONS
        if "pause_reasons" in top:
            raw = top["pause_reasons"]
            if not isinstance(raw, list) or not raw:
                self.error(top, "pause_reasons", "pause_reasons", "expected a non-empty list")
            else:
                items: list[str] = []
                for index, item in enumerate(raw):
                    text = self.string(raw, index, item, f"pause_reasons[{index}]")
                    if text is None:
                        continue
                    if text in items:
                        self.error(raw, index, f"pause_reasons[{index}]", f"{text!r} repeated")
                    items.append(text)
                reasons = tuple(items)
        no_answer = "non réponse"
        if "no_answer_reason" in top:
            value = self.string(
                top, "no_answer_reason", top["no_answer_reason"], "no_answer_reason"
            )
            no_answer = value if value is not None else no_answer
        if no_answer not in reasons:
            key = "no_answer_reason" if "no_answer_reason" in top else "pause_reasons"
            self.error(
                top,
                key,
                key,
                f"the no-answer pause reason {no_answer!r} must be one of the pause_reasons",
            )
        return reasons, no_answer

    def priorities(self, top: dict[Any, Any]) -> PriorityRules:
        if "priorities" not in top:
            return PriorityRules()
        raw = self.mapping(top, "priorities", top["priorities"], "priorities")
        self.unknown_keys(raw, _PRIORITY_KEYS, "priorities")
        rules = PriorityRules()
        window = rules.repeat_caller_window_s
        if "repeat_caller_window" in raw:
            value = self.duration(
                raw,
                "repeat_caller_window",
                raw["repeat_caller_window"],
                "priorities.repeat_caller_window",
                allow_none=False,
            )
            window = value if isinstance(value, float) else window
        raises: dict[str, int] = {}
        for key in ("repeat_caller_raise", "callback_raise"):
            if key in raw:
                value = self.integer(raw, key, raw[key], f"priorities.{key}", low=0, high=2)
                if isinstance(value, int):
                    raises[key] = value
        return PriorityRules(
            repeat_caller_window_s=window,
            repeat_caller_raise=raises.get("repeat_caller_raise", rules.repeat_caller_raise),
            callback_raise=raises.get("callback_raise", rules.callback_raise),
        )

    def schedules(self, top: dict[Any, Any]) -> dict[str, Schedule]:
        if "hours" not in top:
            return {}
        raw = self.mapping(top, "hours", top["hours"], "hours")
        out: dict[str, Schedule] = {}
        for name, value in raw.items():
            path = f"hours.{name}"
            if not isinstance(name, str) or not SKILL_ID_RE.match(name) or name == ALWAYS_OPEN:
                self.error(
                    raw, name, path, f"schedule name must be snake_case, not {ALWAYS_OPEN!r}"
                )
                continue
            schedule = self.schedule(raw, name, value, path)
            if schedule is not None:
                out[name] = schedule
        return out

    def schedule(self, container: object, name: str, value: object, path: str) -> Schedule | None:
        items = self.mapping(container, name, value, path)
        before = len(self.issues)
        weekly: dict[int, tuple[TimeRange, ...]] = {}
        closures: set[dt.date] = set()
        country: str | None = None
        subdivision: str | None = None
        for key, item in items.items():
            sub = f"{path}.{key}"
            if key == "closures":
                self.closures(items, key, item, sub, closures)
            elif key == "public_holidays":
                country = self.string(items, key, item, sub)
            elif key == "subdivision":
                subdivision = str(item) if item is not None else None
            else:
                days = parse_weekdays(str(key))
                if days is None:
                    self.error(
                        items,
                        key,
                        sub,
                        "unknown key: expected weekdays (e.g. 'mon-fri', 'sat', 'mon,wed'), "
                        "'closures', 'public_holidays' or 'subdivision'",
                    )
                    continue
                ranges = self.ranges(items, key, item, sub)
                if ranges is None:
                    continue
                for day in days:
                    if day in weekly:
                        self.error(items, key, sub, f"{WEEKDAYS[day]} given twice")
                    weekly[day] = ranges
        if country is not None:
            problem = check_calendar(country, subdivision)
            if problem is not None:
                self.error(items, "public_holidays", f"{path}.public_holidays", problem)
        elif subdivision is not None:
            self.error(items, "subdivision", f"{path}.subdivision", "needs 'public_holidays'")
        if len(self.issues) > before:
            return None
        return Schedule(
            name=name,
            weekly=MappingProxyType(weekly),
            closures=frozenset(closures),
            public_holidays=country,
            subdivision=subdivision,
        )

    def closures(
        self, container: object, key: object, value: object, path: str, out: set[dt.date]
    ) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            self.error(container, key, path, f"expected a list of dates, got {_kind(value)}")
            return
        for index, item in enumerate(value):
            if isinstance(item, dt.date) and not isinstance(item, dt.datetime):
                out.add(item)
                continue
            try:
                out.add(dt.date.fromisoformat(str(item)))
            except ValueError:
                self.error(
                    value, index, f"{path}[{index}]", f"bad date {item!r} (expected YYYY-MM-DD)"
                )

    def ranges(
        self, container: object, key: object, value: object, path: str
    ) -> tuple[TimeRange, ...] | None:
        if isinstance(value, str):
            texts = value.split(",")
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            texts = list(value)
        else:
            self.error(container, key, path, f"expected 'HH:MM-HH:MM, ...', got {_kind(value)}")
            return None
        result: list[TimeRange] = []
        for text in texts:
            parsed = parse_time_range(text.strip())
            if parsed is None:
                self.error(
                    container,
                    key,
                    path,
                    f"bad time range {text.strip()!r} (expected 'HH:MM-HH:MM', start before end)",
                )
                return None
            result.append(parsed)
        result.sort()
        for first, second in zip(result, result[1:], strict=False):
            if second.start_minutes < first.end_minutes:
                self.error(container, key, path, "time ranges overlap")
                return None
        return tuple(result)

    def queue_fields(
        self,
        container: object,
        key: object,
        raw: dict[Any, Any],
        path: str,
        schedules: dict[str, Schedule],
        base: dict[str, Any],
    ) -> dict[str, Any]:
        """Parse the queue keys present in ``raw`` over ``base``; returns the merged fields."""
        fields = dict(base)
        self.unknown_keys(raw, _QUEUE_KEYS, path)
        if "min_proficiency" in raw:
            value = self.integer(
                raw,
                "min_proficiency",
                raw["min_proficiency"],
                f"{path}.min_proficiency",
                low=MIN_PROFICIENCY,
                high=MAX_PROFICIENCY,
            )
            if isinstance(value, int):
                fields["min_proficiency"] = value
        for name, attr, allow_none in (
            ("wrap_up", "wrap_up_s", False),
            ("ring_timeout", "ring_timeout_s", False),
            ("max_wait", "max_wait_s", True),
        ):
            if name in raw:
                value = self.duration(raw, name, raw[name], f"{path}.{name}", allow_none=allow_none)
                if value is not _MISSING:
                    fields[attr] = value
        if "ring_timeout" in raw and fields.get("ring_timeout_s") == 0.0:
            self.error(raw, "ring_timeout", f"{path}.ring_timeout", "must be more than 0")
        if "max_size" in raw:
            value = self.integer(
                raw, "max_size", raw["max_size"], f"{path}.max_size", low=1, allow_none=True
            )
            if value is not _MISSING:
                fields["max_size"] = value
        if "hours" in raw:
            name = raw["hours"]
            if name is None or name == ALWAYS_OPEN:
                fields["hours"] = None
            elif isinstance(name, str) and name in schedules:
                fields["hours"] = schedules[name]
            else:
                known = ", ".join([ALWAYS_OPEN, *sorted(schedules)])
                self.error(
                    raw, "hours", f"{path}.hours", f"unknown schedule {name!r} (known: {known})"
                )
        if "relaxation" in raw:
            steps, overflow = self.relaxation(raw, "relaxation", raw["relaxation"], path)
            fields["relaxation"] = steps
            fields["overflow"] = overflow
        return fields

    def relaxation(
        self, container: object, key: object, value: object, path: str
    ) -> tuple[tuple[RelaxationStep, ...], Overflow | None]:
        path = f"{path}.relaxation"
        if value is None:
            return (), None
        if not isinstance(value, list):
            self.error(container, key, path, f"expected a list of steps, got {_kind(value)}")
            return (), None
        steps: list[RelaxationStep] = []
        overflow: Overflow | None = None
        for index, item in enumerate(value):
            sub = f"{path}[{index}]"
            raw = self.mapping(value, index, item, sub)
            if not raw:
                continue
            self.unknown_keys(raw, frozenset({"after", "min_proficiency", "overflow_to"}), sub)
            if "after" not in raw:
                self.error(value, index, f"{sub}.after", "missing required field")
                continue
            after = self.duration(raw, "after", raw["after"], f"{sub}.after", allow_none=False)
            kinds = [k for k in ("min_proficiency", "overflow_to") if k in raw]
            if len(kinds) != 1:
                self.error(
                    value, index, sub, "a step has exactly one of 'min_proficiency', 'overflow_to'"
                )
                continue
            if not isinstance(after, float):
                continue
            if kinds[0] == "min_proficiency":
                level = self.integer(
                    raw,
                    "min_proficiency",
                    raw["min_proficiency"],
                    f"{sub}.min_proficiency",
                    low=MIN_PROFICIENCY,
                    high=MAX_PROFICIENCY,
                )
                if not isinstance(level, int):
                    continue
                if steps and after <= steps[-1].after_s:
                    self.error(raw, "after", f"{sub}.after", "steps must have increasing 'after'")
                    continue
                if steps and level >= steps[-1].min_proficiency:
                    self.error(
                        raw,
                        "min_proficiency",
                        f"{sub}.min_proficiency",
                        "each step must accept a lower proficiency than the one before",
                    )
                    continue
                steps.append(RelaxationStep(after, level))
            else:
                target = self.string(raw, "overflow_to", raw["overflow_to"], f"{sub}.overflow_to")
                if target is None:
                    continue
                if overflow is not None:
                    self.error(value, index, sub, "only one overflow step per queue")
                    continue
                overflow = Overflow(after, target)
        return tuple(steps), overflow


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _check_consistency(
    config: RoutingConfig, source: str, lines: Mapping[str, int]
) -> list[ConfigIssue]:
    """Rules that span queues: known skills, overflow targets, no overflow cycle."""
    issues: list[ConfigIssue] = []

    def add(queue: str, field_name: str, message: str) -> None:
        issues.append(ConfigIssue(source, lines.get(queue, 0), field_name, message))

    for name, queue in config.queues.items():
        if name != queue.name:
            add(name, f"queues.{name}", f"queue registered as {name!r} is named {queue.name!r}")
        if config.skills and name not in config.skills:
            known = ", ".join(sorted(config.skills))
            add(name, f"queues.{name}", f"no skill {name!r} in the catalogue (known: {known})")
        for step in queue.relaxation:
            if step.min_proficiency >= queue.min_proficiency:
                add(
                    name,
                    f"queues.{name}.relaxation",
                    f"step after {step.after_s:g}s accepts proficiency {step.min_proficiency}, "
                    f"which is not lower than the queue's min_proficiency {queue.min_proficiency}",
                )
        if queue.overflow is not None:
            target = queue.overflow.to_queue
            if target == name:
                add(name, f"queues.{name}.relaxation", "a queue cannot overflow to itself")
            elif target not in config.queues:
                add(name, f"queues.{name}.relaxation", f"overflow to unknown queue {target!r}")
    # Overflow chains must end: follow them from every queue.
    for name in config.queues:
        seen = [name]
        current = config.queues[name]
        while current.overflow is not None and current.overflow.to_queue in config.queues:
            target = current.overflow.to_queue
            if target in seen:
                if target == name and len(seen) > 1:
                    chain = " -> ".join([*seen, target])
                    add(name, f"queues.{name}.relaxation", f"overflow cycle: {chain}")
                break
            seen.append(target)
            current = config.queues[target]
    if config.no_answer_reason not in config.pause_reasons:
        issues.append(
            ConfigIssue(
                source,
                0,
                "no_answer_reason",
                f"{config.no_answer_reason!r} is not one of the pause_reasons",
            )
        )
    return issues


def _parse(
    top_value: object,
    *,
    source: str,
    base_dir: Path | None,
    skills: Mapping[str, str] | None,
) -> RoutingConfig:
    parser = _Parser(source, base_dir)
    if not isinstance(top_value, dict):
        raise RoutingConfigError(
            [ConfigIssue(source, 1 if base_dir else 0, "", "expected a mapping at the top level")]
        )
    top: dict[Any, Any] = top_value
    parser.check_duplicates(top, "")
    parser.unknown_keys(top, _TOP_KEYS, "")
    catalogue = dict(skills) if skills is not None else parser.skills(top)
    timezone = parser.timezone(top)
    reasons, no_answer = parser.pause_reasons(top)
    priorities = parser.priorities(top)
    schedules = parser.schedules(top)
    defaults: dict[str, Any] = {}
    if "defaults" in top:
        raw_defaults = parser.mapping(top, "defaults", top["defaults"], "defaults")
        if "relaxation" in raw_defaults:
            parser.error(
                raw_defaults, "relaxation", "defaults.relaxation", "relaxation is set per queue"
            )
            raw_defaults = {k: v for k, v in raw_defaults.items() if k != "relaxation"}
        defaults = parser.queue_fields(top, "defaults", raw_defaults, "defaults", schedules, {})
    raw_queues: dict[Any, Any] = {}
    if "queues" in top:
        raw_queues = parser.mapping(top, "queues", top["queues"], "queues")
    queues: dict[str, QueueConfig] = {}
    lines: dict[str, int] = {}
    for name, value in raw_queues.items():
        path = f"queues.{name}"
        if not isinstance(name, str) or not SKILL_ID_RE.match(name):
            parser.error(raw_queues, name, path, "queue name must be a snake_case skill id")
            continue
        raw = {} if value is None else parser.mapping(raw_queues, name, value, path)
        fields = parser.queue_fields(raw_queues, name, raw, path, schedules, defaults)
        line = _line_of(raw_queues, name)
        lines[name] = line
        queues[name] = QueueConfig(name=name, line=line, **fields)
    # One queue per skill: skills without an entry get the defaults.
    for name in catalogue or {}:
        if name not in queues:
            queues[name] = QueueConfig(name=name, **defaults)
    if catalogue is not None and not queues:
        parser.error(top, None, "queues", "no queue (and no skill) defined")
    if parser.issues:
        raise RoutingConfigError(parser.issues)
    config = RoutingConfig(
        queues=MappingProxyType(queues),
        skills=MappingProxyType(catalogue or {}),
        timezone=timezone,
        pause_reasons=reasons,
        no_answer_reason=no_answer,
        priorities=priorities,
        source=source,
    )
    issues = _check_consistency(config, source, lines)
    if issues:
        raise RoutingConfigError(issues)
    return config


def routing_config_from_dict(
    data: Mapping[str, Any],
    *,
    source: str = "<dict>",
    skills: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
) -> RoutingConfig:
    """Build a configuration from a plain mapping (same keys as the YAML file).

    Args:
        data: The configuration.
        source: Name used in error messages.
        skills: The skill catalogue; if None, taken from ``skills`` or ``catalogue`` in ``data``.
        base_dir: Directory that a relative ``catalogue`` path is relative to.

    Returns:
        The validated configuration.

    Raises:
        RoutingConfigError: Listing every problem, with the field path of each.
    """
    return _parse(dict(data), source=source, base_dir=base_dir, skills=skills)


def load_routing_config(
    path: str | Path, *, skills: Mapping[str, str] | None = None
) -> RoutingConfig:
    """Load and validate a YAML routing configuration.

    Args:
        path: The YAML file.
        skills: The skill catalogue (e.g. the loaded FAQ's ``skills``); if None, taken from the
            file's ``skills`` or ``catalogue`` (a path relative to the file).

    Returns:
        The validated configuration.

    Raises:
        RoutingConfigError: Listing every problem, with file, line and field.
        OSError: If the file cannot be read.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_LineLoader)  # _LineLoader is a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise RoutingConfigError(
            [ConfigIssue(str(path), line, "", f"invalid YAML: {exc}")]
        ) from None
    return _parse(data, source=str(path), base_dir=path.parent, skills=skills)


def load_skill_catalogue(path: str | Path) -> dict[str, str]:
    """Read the ``skills:`` section of a catalogue (``intents.yaml`` or the FAQ file).

    Args:
        path: The YAML file.

    Returns:
        Skill id to description, in file order.

    Raises:
        ValueError: If the file has no valid ``skills`` mapping.
        OSError: If the file cannot be read.
    """
    data = yaml.load(Path(path).read_text(encoding="utf-8"), Loader=_LineLoader)
    skills = data.get("skills") if isinstance(data, dict) else None
    if not isinstance(skills, dict) or not skills:
        line = _line_of(data, "skills")
        raise ValueError(f"{path}:{line}: no 'skills' mapping")
    out: dict[str, str] = {}
    for key, value in skills.items():
        if not isinstance(key, str) or not SKILL_ID_RE.match(key):
            raise ValueError(f"{path}:{_line_of(skills, key)}: bad skill id {key!r}")
        out[key] = value.strip() if isinstance(value, str) else ""
    return out
