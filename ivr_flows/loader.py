"""YAML → :class:`~ivr_flows.model.Flow`, with validation that reports file, line, node and field.

The file is composed with PyYAML (``yaml.compose``) rather than loaded, so that every value keeps
its position; all problems are collected (not only the first one) and an invalid file never
produces a partial flow.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .errors import FlowError, FlowIssue, Severity
from .hours import (
    WEEKDAYS,
    Schedule,
    TimeRange,
    check_calendar,
    parse_time_range,
    parse_weekdays,
)
from .model import (
    AskNode,
    BranchNode,
    Condition,
    ConditionKind,
    ConfirmNode,
    Defaults,
    DossierAnswerNode,
    Flow,
    GotoNode,
    HangupNode,
    IdentifyNode,
    MenuNode,
    Node,
    NodeType,
    Prompt,
    QueueNode,
    SayNode,
    SetNode,
)

PROMPT_ID_RE = re.compile(r"[a-z0-9_]+")
"""Prompt ids double as file names (``<id>.wav`` overrides TTS), hence this strict alphabet."""
NODE_ID_RE = re.compile(r"[A-Za-z0-9_-]+")
NAME_RE = re.compile(r"[a-z_][a-z0-9_]*")
MENU_DIGITS = frozenset("0123456789#")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_LONG_NUMBER_RE = re.compile(r"\d{3,}")

_TOP_KEYS = ("flow", "timezone", "start", "defaults", "hours", "nodes", "description")
_DEFAULT_KEYS = (
    "menu_timeout_s",
    "menu_retries",
    "human",
    "fallback",
    "invalid_prompt",
    "no_input_prompt",
    "tts_voice",
    "tts_rate",
    "ask_no_input_s",
    "ask_retries",
    "no_match_prompt",
)
_NODE_KEYS: dict[NodeType, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # type → (required keys, optional keys); "type" is always required.
    NodeType.SAY: (("prompt", "next"), ("interruptible",)),
    NodeType.MENU: (
        ("prompt", "choices"),
        ("timeout_s", "retries", "fallback", "human", "invalid_prompt", "no_input_prompt"),
    ),
    NodeType.GOTO: (("next",), ()),
    NodeType.SET: (("variables", "next"), ()),
    NodeType.BRANCH: (("conditions", "else"), ()),
    NodeType.QUEUE: (("skill", "prompt"), ("reason", "next", "from_intent")),
    NodeType.HANGUP: ((), ("prompt", "reason")),
    NodeType.ASK: (
        ("prompt", "answered", "handover"),
        (
            "no_input_s",
            "retries",
            "human",
            "fallback",
            "recommended",
            "keypad",
            "dossier",
            "no_input_prompt",
            "no_match_prompt",
        ),
    ),
    NodeType.CONFIRM: (
        ("prompt", "yes", "no"),
        (
            "unsure",
            "no_input_s",
            "retries",
            "human",
            "repeat_answer",
            "no_input_prompt",
            "no_match_prompt",
        ),
    ),
    NodeType.IDENTIFY: (
        (
            "number_prompt",
            "birth_date_prompt",
            "readback_prompt",
            "confirm_prompt",
            "retry_prompt",
            "identified",
            "failed",
        ),
        ("human", "attempts", "max_digits", "timeout_s", "caller_id"),
    ),
    NodeType.DOSSIER_ANSWER: (("next", "handover"), ()),
}
_PROMPT_KEYS = (
    "prompt",
    "invalid_prompt",
    "no_input_prompt",
    "no_match_prompt",
    "number_prompt",
    "birth_date_prompt",
    "readback_prompt",
    "confirm_prompt",
    "retry_prompt",
)
_REF_KEYS = (
    "next",
    "fallback",
    "human",
    "else",
    "answered",
    "handover",
    "recommended",
    "keypad",
    "yes",
    "no",
    "unsure",
    "dossier",
    "identified",
    "failed",
)
_TRANSIENT = (GotoNode, SetNode, BranchNode)

_T = TypeVar("_T")

_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


def load_flow(path: str | Path) -> Flow:
    """Load and validate a flow file.

    Args:
        path: Path of the YAML flow file.

    Returns:
        The validated flow; non-fatal issues are in ``Flow.warnings``.

    Raises:
        FlowError: If the file cannot be read or is invalid; ``issues`` lists every problem.
    """
    filename = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise FlowError(
            [FlowIssue(filename, 0, None, None, f"cannot read file: {reason}")]
        ) from exc
    except UnicodeDecodeError as exc:
        raise FlowError([FlowIssue(filename, 0, None, None, f"not UTF-8: {exc}")]) from exc
    return load_flow_text(text, filename=filename)


def load_flow_text(text: str, *, filename: str) -> Flow:
    """Parse and validate a flow from YAML text.

    Args:
        text: The YAML document.
        filename: Name used in issue reports.

    Returns:
        The validated flow; non-fatal issues are in ``Flow.warnings``.

    Raises:
        FlowError: If the text is invalid; ``issues`` lists every problem.
    """
    return _Builder(filename).build(text)


@dataclass(frozen=True, slots=True)
class _PromptRef:
    """A ``prompt: some_id`` reference, resolved once every prompt definition is known."""

    prompt_id: str
    line: int
    node_id: str | None
    field: str


_PromptLike = Prompt | _PromptRef | None


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Builder:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.issues: list[FlowIssue] = []
        self.prompts: dict[str, Prompt] = {}
        self.prompt_lines: dict[str, int] = {}
        self.schedules: dict[str, Schedule] = {}
        self.node_lines: dict[str, int] = {}
        self.refs: list[tuple[str, int, str | None, str]] = []  # (target, line, node, field)
        self.constructor = yaml.constructor.SafeConstructor()
        self.current_defaults = Defaults()

    # -- issue helpers -------------------------------------------------------------------

    def error(self, line: int, node_id: str | None, field: str | None, message: str) -> None:
        self.issues.append(FlowIssue(self.filename, line, node_id, field, message))

    def warn(self, line: int, node_id: str | None, field: str | None, message: str) -> None:
        self.issues.append(
            FlowIssue(self.filename, line, node_id, field, message, Severity.WARNING)
        )

    # -- generic YAML accessors ----------------------------------------------------------

    def mapping(
        self, node: yaml.Node, node_id: str | None, field: str | None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """Check that ``node`` is a mapping with unique string keys; return key → (key, value)."""
        if not isinstance(node, yaml.MappingNode):
            self.error(_line(node), node_id, field, f"expected a mapping, got {_kind(node)}")
            return None
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(_line(key_node), node_id, field, "mapping keys must be plain scalars")
                continue
            key = str(key_node.value)
            if key in result:
                where = _join(field, key)
                first = _line(result[key][0])
                self.error(
                    _line(key_node), node_id, where, f"duplicate key (first at line {first})"
                )
                continue
            result[key] = (key_node, value_node)
        return result

    def check_keys(
        self,
        items: Mapping[str, tuple[yaml.Node, yaml.Node]],
        *,
        allowed: Iterable[str],
        required: Iterable[str],
        line: int,
        node_id: str | None,
        field: str | None,
    ) -> None:
        allowed_set = set(allowed) | set(required)
        for key, (key_node, _) in items.items():
            if key not in allowed_set:
                expected = ", ".join(sorted(allowed_set))
                self.error(
                    _line(key_node),
                    node_id,
                    _join(field, key),
                    f"unknown key (expected: {expected})",
                )
        for key in required:
            if key not in items:
                self.error(line, node_id, _join(field, key), "missing required field")

    def scalar(self, node: yaml.Node, node_id: str | None, field: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.error(_line(node), node_id, field, f"expected a scalar, got {_kind(node)}")
            return None
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError as exc:
            self.error(_line(node), node_id, field, f"bad value: {exc}")
            return None

    def string(self, node: yaml.Node, node_id: str | None, field: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _STR_TAG:
            self.error(_line(node), node_id, field, f"expected a string, got {_kind(node)}")
            return None
        return str(node.value)

    def ident(
        self, node: yaml.Node, node_id: str | None, field: str, pattern: re.Pattern[str]
    ) -> str | None:
        value = self.string(node, node_id, field)
        if value is None:
            return None
        if not pattern.fullmatch(value):
            self.error(_line(node), node_id, field, f"{value!r} does not match {pattern.pattern}")
            return None
        return value

    def node_ref(self, node: yaml.Node, node_id: str | None, field: str) -> str | None:
        value = self.string(node, node_id, field)
        if value is not None:
            self.refs.append((value, _line(node), node_id, field))
        return value

    def integer(
        self, node: yaml.Node, node_id: str | None, field: str, low: int, high: int
    ) -> int | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _INT_TAG:
            self.error(_line(node), node_id, field, f"expected an integer, got {_kind(node)}")
            return None
        value = self.scalar(node, node_id, field)
        if not isinstance(value, int) or not low <= value <= high:
            self.error(_line(node), node_id, field, f"must be between {low} and {high}")
            return None
        return value

    def number(
        self, node: yaml.Node, node_id: str | None, field: str, low: float, high: float
    ) -> float | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag not in (_INT_TAG, _FLOAT_TAG):
            self.error(_line(node), node_id, field, f"expected a number, got {_kind(node)}")
            return None
        value = self.scalar(node, node_id, field)
        if not isinstance(value, int | float) or not low < float(value) <= high:
            self.error(_line(node), node_id, field, f"must be > {low:g} and <= {high:g}")
            return None
        return float(value)

    def boolean(self, node: yaml.Node, node_id: str | None, field: str) -> bool | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _BOOL_TAG:
            self.error(_line(node), node_id, field, f"expected true or false, got {_kind(node)}")
            return None
        value = self.scalar(node, node_id, field)
        return bool(value)

    # -- build ---------------------------------------------------------------------------

    def build(self, text: str) -> Flow:
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = int(mark.line) + 1 if mark is not None else 0
            problem = exc.problem or str(exc)
            context = f" ({exc.context})" if exc.context else ""
            self.error(line, None, None, f"YAML syntax error: {problem}{context}")
            raise FlowError(self.issues) from exc
        except yaml.YAMLError as exc:
            self.error(0, None, None, f"YAML error: {exc}")
            raise FlowError(self.issues) from exc
        if root is None:
            self.error(1, None, None, "empty flow file")
            raise FlowError(self.issues)
        top = self.mapping(root, None, None)
        if top is None:
            raise FlowError(self.issues)
        self.check_keys(
            top,
            allowed=_TOP_KEYS,
            required=("flow", "start", "nodes"),
            line=_line(root),
            node_id=None,
            field=None,
        )

        flow_id = self.get(top, "flow", lambda n: self.ident(n, None, "flow", PROMPT_ID_RE))
        description = self.get(top, "description", lambda n: self.string(n, None, "description"))
        tz = self.timezone(top)
        if "hours" in top:
            self.hours(top["hours"][1])
        defaults = self.defaults(top)
        start = self.get(top, "start", lambda n: self.node_ref(n, None, "start"))

        nodes: dict[str, Node] = {}
        nodes_yaml = top.get("nodes")
        if nodes_yaml is not None:
            nodes = self.nodes(nodes_yaml[1], defaults)

        for target, line, node_id, field in self.refs:
            if target not in self.node_lines:
                self.error(line, node_id, field, f"unknown node {target!r}")
        if not self.has_errors():
            self.check_ask_targets(nodes)
        if start is not None and start in nodes and not self.has_errors():
            self.check_graph(start, nodes, defaults)

        if self.has_errors() or flow_id is None or start is None:
            if not self.has_errors():  # pragma: no cover - missing keys are always reported
                self.error(_line(root), None, None, "invalid flow")
            errors = [i for i in self.issues if i.severity is Severity.ERROR]
            raise FlowError(sorted(errors, key=lambda issue: issue.line))
        return Flow(
            flow_id=flow_id,
            timezone=tz,
            start_node=start,
            defaults=defaults,
            schedules=MappingProxyType(dict(self.schedules)),
            nodes=MappingProxyType(nodes),
            source=self.filename,
            warnings=tuple(sorted(self.issues, key=lambda issue: issue.line)),
            description=description,
        )

    def has_errors(self) -> bool:
        return any(i.severity is Severity.ERROR for i in self.issues)

    def get(
        self,
        items: Mapping[str, tuple[yaml.Node, yaml.Node]],
        key: str,
        convert: Callable[[yaml.Node], _T | None],
    ) -> _T | None:
        if key not in items:
            return None
        return convert(items[key][1])

    def timezone(self, top: Mapping[str, tuple[yaml.Node, yaml.Node]]) -> ZoneInfo:
        default = ZoneInfo("Europe/Paris")
        if "timezone" not in top:
            return default
        node = top["timezone"][1]
        name = self.string(node, None, "timezone")
        if name is None:
            return default
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.error(_line(node), None, "timezone", f"unknown timezone {name!r}")
            return default

    # -- hours -----------------------------------------------------------------------------

    def hours(self, node: yaml.Node) -> None:
        items = self.mapping(node, None, "hours")
        if items is None:
            return
        for name, (key_node, value_node) in items.items():
            field = f"hours.{name}"
            if not NAME_RE.fullmatch(name):
                self.error(
                    _line(key_node), None, field, f"schedule name must match {NAME_RE.pattern}"
                )
                continue
            schedule = self.schedule(name, value_node, field)
            if schedule is not None:
                self.schedules[name] = schedule

    def schedule(self, name: str, node: yaml.Node, field: str) -> Schedule | None:
        items = self.mapping(node, None, field)
        if items is None:
            return None
        ok = True
        weekly: dict[int, tuple[TimeRange, ...]] = {}
        day_lines: dict[int, int] = {}
        closures: set[dt.date] = set()
        country: str | None = None
        subdivision: str | None = None
        for key, (key_node, value_node) in items.items():
            sub = f"{field}.{key}"
            if key == "closures":
                closures_ok = self.closures(value_node, sub, closures)
                ok = ok and closures_ok
            elif key == "public_holidays":
                country = self.string(value_node, None, sub)
                ok = ok and country is not None
            elif key == "subdivision":
                subdivision = self.scalar_text(value_node, sub)
                ok = ok and subdivision is not None
            else:
                days = parse_weekdays(key)
                if days is None:
                    self.error(
                        _line(key_node),
                        None,
                        sub,
                        "unknown key: expected a weekday or range (mon, tue, wed, thu, fri, "
                        "sat, sun, e.g. 'mon-fri' or 'mon,wed'), 'closures', 'public_holidays' "
                        "or 'subdivision'",
                    )
                    ok = False
                    continue
                ranges = self.ranges(value_node, sub)
                if ranges is None:
                    ok = False
                    continue
                for day in days:
                    if day in weekly:
                        self.error(
                            _line(key_node),
                            None,
                            sub,
                            f"{WEEKDAYS[day]} already given at line {day_lines[day]}",
                        )
                        ok = False
                    weekly[day] = ranges
                    day_lines[day] = _line(key_node)
        if country is not None:
            problem = check_calendar(country, subdivision)
            if problem is not None:
                self.error(
                    _line(items["public_holidays"][1]), None, f"{field}.public_holidays", problem
                )
                ok = False
        elif subdivision is not None:
            line = _line(items["subdivision"][0])
            message = "'subdivision' needs 'public_holidays'"
            self.error(line, None, f"{field}.subdivision", message)
            ok = False
        if not ok:
            return None
        return Schedule(
            name=name,
            weekly=MappingProxyType(weekly),
            closures=frozenset(closures),
            public_holidays=country,
            subdivision=subdivision,
        )

    def scalar_text(self, node: yaml.Node, field: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL_TAG:
            self.error(_line(node), None, field, f"expected a string, got {_kind(node)}")
            return None
        return str(node.value)

    def closures(self, node: yaml.Node, field: str, out: set[dt.date]) -> bool:
        if not isinstance(node, yaml.SequenceNode):
            self.error(_line(node), None, field, f"expected a list of dates, got {_kind(node)}")
            return False
        ok = True
        for index, item in enumerate(node.value):
            sub = f"{field}[{index}]"
            if not isinstance(item, yaml.ScalarNode) or item.tag not in (_STR_TAG, _TIMESTAMP_TAG):
                self.error(_line(item), None, sub, f"expected a date YYYY-MM-DD, got {_kind(item)}")
                ok = False
                continue
            try:
                out.add(dt.date.fromisoformat(str(item.value)))
            except ValueError:
                self.error(_line(item), None, sub, f"bad date {item.value!r} (expected YYYY-MM-DD)")
                ok = False
        return ok

    def ranges(self, node: yaml.Node, field: str) -> tuple[TimeRange, ...] | None:
        texts: list[tuple[str, int]] = []
        if isinstance(node, yaml.SequenceNode):
            for item in node.value:
                if not isinstance(item, yaml.ScalarNode):
                    self.error(
                        _line(item), None, field, f"expected 'HH:MM-HH:MM', got {_kind(item)}"
                    )
                    return None
                texts.append((str(item.value), _line(item)))
        elif isinstance(node, yaml.ScalarNode):
            texts.extend((part, _line(node)) for part in str(node.value).split(","))
        else:
            self.error(_line(node), None, field, f"expected 'HH:MM-HH:MM', got {_kind(node)}")
            return None
        result: list[TimeRange] = []
        for text, line in texts:
            time_range = parse_time_range(text.strip())
            if time_range is None:
                self.error(
                    line,
                    None,
                    field,
                    f"bad time range {text.strip()!r} (expected 'HH:MM-HH:MM', start before end, "
                    "e.g. '09:00-12:30')",
                )
                return None
            result.append(time_range)
        result.sort()
        for before, after in zip(result, result[1:], strict=False):
            if after.start_minutes < before.end_minutes:
                self.error(_line(node), None, field, "time ranges overlap")
                return None
        return tuple(result)

    # -- prompts ---------------------------------------------------------------------------

    def prompt(self, node: yaml.Node, node_id: str | None, field: str) -> _PromptLike:
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR_TAG:
            # A plain string refers to a prompt defined elsewhere in the flow.
            return _PromptRef(str(node.value), _line(node), node_id, field)
        items = self.mapping(node, node_id, field)
        if items is None:
            return None
        self.check_keys(
            items,
            allowed=("text", "recording"),
            required=("id",),
            line=_line(node),
            node_id=node_id,
            field=field,
        )
        prompt_id = self.get(
            items, "id", lambda n: self.ident(n, node_id, f"{field}.id", PROMPT_ID_RE)
        )
        text = self.get(items, "text", lambda n: self.prompt_text(n, node_id, f"{field}.text"))
        recording = self.get(
            items, "recording", lambda n: self.recording(n, node_id, f"{field}.recording")
        )
        if "text" not in items and "recording" not in items:
            self.error(_line(node), node_id, field, "a prompt needs 'text' or 'recording'")
            return None
        if prompt_id is None:
            return None
        if prompt_id in self.prompts:
            first = self.prompt_lines[prompt_id]
            self.error(
                _line(items["id"][1]),
                node_id,
                f"{field}.id",
                f"duplicate prompt id {prompt_id!r} (first defined at line {first}); "
                "to play it again write 'prompt: " + prompt_id + "'",
            )
            return None
        prompt = Prompt(prompt_id=prompt_id, text=text, recording=recording)
        self.prompts[prompt_id] = prompt
        self.prompt_lines[prompt_id] = _line(items["id"][1])
        return prompt

    def prompt_text(self, node: yaml.Node, node_id: str | None, field: str) -> str | None:
        text = self.string(node, node_id, field)
        if text is None:
            return None
        text = " ".join(text.split())
        if not text:
            self.error(_line(node), node_id, field, "empty prompt text")
            return None

        def expand(match: re.Match[str]) -> str:
            key = match.group(1).strip()
            kind, _, name = key.partition(".")
            if kind == "hours" and name in self.schedules:
                return self.schedules[name].speak_fr()
            self.error(
                _line(node),
                node_id,
                field,
                f"unknown placeholder {{{key}}} (known: "
                + ", ".join(f"{{hours.{s}}}" for s in self.schedules)
                + ")",
            )
            return match.group(0)

        text = _PLACEHOLDER_RE.sub(expand, text)
        if _LONG_NUMBER_RE.search(text):
            self.warn(
                _line(node),
                node_id,
                field,
                "write numbers in words for TTS (e.g. 'trente-neuf, soixante-dix-sept' for 3977)",
            )
        return text

    def recording(self, node: yaml.Node, node_id: str | None, field: str) -> str | None:
        path = self.string(node, node_id, field)
        if path is None:
            return None
        if not path or path.startswith("/") or ".." in Path(path).parts:
            self.error(
                _line(node),
                node_id,
                field,
                "recording must be a relative path inside the flow directory",
            )
            return None
        return path

    def resolve(self, prompt: _PromptLike) -> Prompt | None:
        if isinstance(prompt, _PromptRef):
            found = self.prompts.get(prompt.prompt_id)
            if found is None:
                self.error(
                    prompt.line,
                    prompt.node_id,
                    prompt.field,
                    f"unknown prompt {prompt.prompt_id!r}",
                )
            return found
        return prompt

    # -- defaults --------------------------------------------------------------------------

    def defaults(self, top: Mapping[str, tuple[yaml.Node, yaml.Node]]) -> Defaults:
        if "defaults" not in top:
            return Defaults()
        node = top["defaults"][1]
        items = self.mapping(node, None, "defaults")
        if items is None:
            return Defaults()
        self.check_keys(
            items,
            allowed=_DEFAULT_KEYS,
            required=(),
            line=_line(node),
            node_id=None,
            field="defaults",
        )
        base = Defaults()
        timeout = self.get(
            items,
            "menu_timeout_s",
            lambda n: self.number(n, None, "defaults.menu_timeout_s", 0, 60),
        )
        retries = self.get(
            items, "menu_retries", lambda n: self.integer(n, None, "defaults.menu_retries", 0, 10)
        )
        human = self.get(items, "human", lambda n: self.node_ref(n, None, "defaults.human"))
        fallback = self.get(
            items, "fallback", lambda n: self.node_ref(n, None, "defaults.fallback")
        )
        invalid: _PromptLike = None
        if "invalid_prompt" in items:
            invalid = self.prompt(items["invalid_prompt"][1], None, "defaults.invalid_prompt")
        no_input: _PromptLike = None
        if "no_input_prompt" in items:
            no_input = self.prompt(items["no_input_prompt"][1], None, "defaults.no_input_prompt")
        no_match: _PromptLike = None
        if "no_match_prompt" in items:
            no_match = self.prompt(items["no_match_prompt"][1], None, "defaults.no_match_prompt")
        ask_no_input = self.get(
            items,
            "ask_no_input_s",
            lambda n: self.number(n, None, "defaults.ask_no_input_s", 1, 60),
        )
        ask_retries = self.get(
            items, "ask_retries", lambda n: self.integer(n, None, "defaults.ask_retries", 0, 5)
        )
        voice = self.get(items, "tts_voice", lambda n: self.string(n, None, "defaults.tts_voice"))
        rate = self.get(
            items, "tts_rate", lambda n: self.integer(n, None, "defaults.tts_rate", 80, 400)
        )
        return Defaults(
            menu_timeout_s=base.menu_timeout_s if timeout is None else timeout,
            menu_retries=base.menu_retries if retries is None else retries,
            human=human,
            fallback=fallback,
            invalid_prompt=self.resolve(invalid),
            no_input_prompt=self.resolve(no_input),
            tts_voice=voice or base.tts_voice,
            tts_rate=base.tts_rate if rate is None else rate,
            ask_no_input_s=base.ask_no_input_s if ask_no_input is None else ask_no_input,
            ask_retries=base.ask_retries if ask_retries is None else ask_retries,
            no_match_prompt=self.resolve(no_match),
        )

    # -- nodes -----------------------------------------------------------------------------

    def nodes(self, node: yaml.Node, defaults: Defaults) -> dict[str, Node]:
        self.current_defaults = defaults
        items = self.mapping(node, None, "nodes")
        if items is None:
            return {}
        if not items:
            self.error(_line(node), None, "nodes", "a flow needs at least one node")
        valid: list[tuple[str, yaml.Node]] = []
        for node_id, (key_node, value_node) in items.items():
            if not NODE_ID_RE.fullmatch(node_id):
                self.error(
                    _line(key_node),
                    None,
                    f"nodes.{node_id}",
                    f"node id must match {NODE_ID_RE.pattern}",
                )
                continue
            self.node_lines[node_id] = _line(key_node)
            valid.append((node_id, value_node))
        # Parse every node first (collecting prompt definitions), then resolve prompt references.
        raw: list[tuple[str, NodeType, int, dict[str, Any]]] = []
        for node_id, value_node in valid:
            line = self.node_lines[node_id]
            parsed = self.node(node_id, value_node, defaults, line)
            if parsed is not None:
                raw.append((node_id, parsed[0], line, parsed[1]))
        result: dict[str, Node] = {}
        for node_id, node_type, line, fields in raw:
            built = self.make_node(node_id, node_type, line, fields)
            if built is not None:
                result[node_id] = built
        return result

    def node(
        self, node_id: str, node: yaml.Node, defaults: Defaults, line: int
    ) -> tuple[NodeType, dict[str, Any]] | None:
        items = self.mapping(node, node_id, None)
        if items is None:
            return None
        if "type" not in items:
            self.error(line, node_id, "type", "missing required field")
            return None
        type_name = self.string(items["type"][1], node_id, "type")
        if type_name is None:
            return None
        try:
            node_type = NodeType(type_name)
        except ValueError:
            known = ", ".join(t.value for t in NodeType)
            self.error(
                _line(items["type"][1]),
                node_id,
                "type",
                f"unknown node type {type_name!r} (expected: {known})",
            )
            return None
        required, optional = _NODE_KEYS[node_type]
        self.check_keys(
            items,
            allowed=("type", *optional),
            required=required,
            line=line,
            node_id=node_id,
            field=None,
        )
        if any(key not in items for key in required):
            return None
        fields: dict[str, Any] = {}
        for key, (_, value) in items.items():
            if key == "type" or key not in required + optional:
                continue
            fields[key] = self.field(node_type, node_id, key, value, defaults)
        return node_type, fields

    def field(
        self, node_type: NodeType, node_id: str, key: str, value: yaml.Node, defaults: Defaults
    ) -> Any:
        if key in _PROMPT_KEYS:
            return self.prompt(value, node_id, key)
        if key in _REF_KEYS:
            return self.node_ref(value, node_id, key)
        if key in ("interruptible", "from_intent", "repeat_answer", "caller_id"):
            return self.boolean(value, node_id, key)
        if key == "attempts":
            return self.integer(value, node_id, key, 1, 5)
        if key == "max_digits":
            return self.integer(value, node_id, key, 4, 20)
        if key == "timeout_s":
            return self.number(value, node_id, key, 0, 60)
        if key == "no_input_s":
            return self.number(value, node_id, key, 1, 60)
        if key == "retries":
            return self.integer(value, node_id, key, 0, 10)
        if key == "choices":
            return self.choices(value, node_id)
        if key == "variables":
            return self.variables(value, node_id)
        if key == "conditions":
            return self.conditions(value, node_id)
        if key == "skill":
            return self.ident(value, node_id, key, NAME_RE)
        if key == "reason":
            return self.ident(value, node_id, key, NAME_RE)
        raise AssertionError(f"unhandled key {key} for {node_type}")  # pragma: no cover

    def choices(self, node: yaml.Node, node_id: str) -> dict[str, str] | None:
        items = self.mapping(node, node_id, "choices")
        if items is None:
            return None
        result: dict[str, str] = {}
        for digit, (key_node, value_node) in items.items():
            field = f"choices.{digit}"
            if digit == "*":
                self.error(_line(key_node), node_id, field, "'*' is reserved: it repeats the menu")
                continue
            if digit not in MENU_DIGITS:
                self.error(
                    _line(key_node), node_id, field, "bad digit key (expected one of 0-9 or '#')"
                )
                continue
            target = self.node_ref(value_node, node_id, field)
            if target is not None:
                result[digit] = target
        if not items:
            self.error(_line(node), node_id, "choices", "a menu needs at least one choice")
        return result

    def variables(self, node: yaml.Node, node_id: str) -> dict[str, str] | None:
        items = self.mapping(node, node_id, "variables")
        if items is None:
            return None
        result: dict[str, str] = {}
        for name, (key_node, value_node) in items.items():
            field = f"variables.{name}"
            if not NAME_RE.fullmatch(name):
                self.error(
                    _line(key_node), node_id, field, f"variable name must match {NAME_RE.pattern}"
                )
                continue
            if not isinstance(value_node, yaml.ScalarNode) or value_node.tag == _NULL_TAG:
                self.error(
                    _line(value_node),
                    node_id,
                    field,
                    f"expected a scalar value, got {_kind(value_node)}",
                )
                continue
            result[name] = str(value_node.value)
        return result

    def conditions(self, node: yaml.Node, node_id: str) -> list[Condition] | None:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.error(
                _line(node), node_id, "conditions", f"expected a non-empty list, got {_kind(node)}"
            )
            return None
        result: list[Condition] = []
        for index, item in enumerate(node.value):
            field = f"conditions[{index}]"
            items = self.mapping(item, node_id, field)
            if items is None:
                continue
            tests = [k for k in ("open", "holiday", "variable") if k in items]
            allowed = ["next", *tests] + (["equals"] if "variable" in items else [])
            self.check_keys(
                items,
                allowed=allowed or ["open", "holiday", "variable"],
                required=("next",),
                line=_line(item),
                node_id=node_id,
                field=field,
            )
            if len(tests) != 1:
                self.error(
                    _line(item),
                    node_id,
                    field,
                    "a condition needs exactly one of 'open', 'holiday', 'variable'",
                )
                continue
            kind = ConditionKind(tests[0])
            subject_node = items[tests[0]][1]
            subject_field = f"{field}.{tests[0]}"
            next_node = (
                self.node_ref(items["next"][1], node_id, f"{field}.next")
                if "next" in items
                else None
            )
            equals: str | None = None
            if kind is ConditionKind.VARIABLE:
                subject = self.ident(subject_node, node_id, subject_field, NAME_RE)
                if "equals" not in items:
                    self.error(_line(item), node_id, f"{field}.equals", "missing required field")
                    continue
                equals_node = items["equals"][1]
                if not isinstance(equals_node, yaml.ScalarNode):
                    self.error(
                        _line(equals_node),
                        node_id,
                        f"{field}.equals",
                        f"expected a scalar, got {_kind(equals_node)}",
                    )
                    continue
                equals = str(equals_node.value)
            else:
                subject = self.string(subject_node, node_id, subject_field)
                if subject is not None and subject not in self.schedules:
                    known = ", ".join(self.schedules) or "none defined"
                    self.error(
                        _line(subject_node),
                        node_id,
                        subject_field,
                        f"unknown schedule {subject!r} (known: {known})",
                    )
                    continue
                if (
                    kind is ConditionKind.HOLIDAY
                    and subject is not None
                    and self.schedules[subject].public_holidays is None
                ):
                    self.error(
                        _line(subject_node),
                        node_id,
                        subject_field,
                        f"schedule {subject!r} has no 'public_holidays'",
                    )
                    continue
            if subject is not None and next_node is not None:
                result.append(Condition(kind=kind, subject=subject, next=next_node, equals=equals))
        return result

    def make_node(
        self, node_id: str, node_type: NodeType, line: int, f: dict[str, Any]
    ) -> Node | None:
        if any(value is None for value in f.values()):
            # A field failed to parse (already reported); still resolve prompts for more reports.
            for key in _PROMPT_KEYS:
                self.resolve(f.get(key))
            return None
        prompt = self.resolve(f.get("prompt"))
        if node_type is NodeType.SAY:
            if prompt is None:
                return None
            return SayNode(node_id, prompt, f["next"], f.get("interruptible", True), line)
        if node_type is NodeType.MENU:
            return self.make_menu(node_id, line, f, prompt)
        if node_type is NodeType.GOTO:
            return GotoNode(node_id, f["next"], line)
        if node_type is NodeType.SET:
            return SetNode(node_id, MappingProxyType(f["variables"]), f["next"], line)
        if node_type is NodeType.BRANCH:
            return BranchNode(node_id, tuple(f["conditions"]), f["else"], line)
        if node_type is NodeType.QUEUE:
            if prompt is None:
                return None
            return QueueNode(
                node_id,
                f["skill"],
                prompt,
                f.get("reason") or node_id,
                f.get("next"),
                line,
                from_intent=f.get("from_intent", False),
            )
        if node_type is NodeType.ASK:
            return self.make_ask(node_id, line, f, prompt)
        if node_type is NodeType.CONFIRM:
            return self.make_confirm(node_id, line, f, prompt)
        if node_type is NodeType.IDENTIFY:
            return self.make_identify(node_id, line, f)
        if node_type is NodeType.DOSSIER_ANSWER:
            return DossierAnswerNode(node_id, f["next"], f["handover"], line)
        if "prompt" in f and prompt is None:
            return None
        return HangupNode(node_id, prompt, f.get("reason") or "flow_end", line)

    def make_menu(
        self, node_id: str, line: int, f: dict[str, Any], prompt: Prompt | None
    ) -> MenuNode | None:
        invalid = self.resolve(f.get("invalid_prompt"))
        no_input = self.resolve(f.get("no_input_prompt"))
        if prompt is None:
            return None
        defaults = self.current_defaults
        choices: dict[str, str] = f["choices"]
        human: str | None = f.get("human", defaults.human)
        fallback: str | None = f.get("fallback", defaults.fallback)
        ok = True
        if "0" not in choices and human is None:
            self.error(
                line,
                node_id,
                "choices",
                "every menu must accept 0: add a '0' choice or set 'human' (here or in 'defaults')",
            )
            ok = False
        if fallback is None:
            self.error(
                line, node_id, "fallback", "missing required field (and no 'defaults.fallback')"
            )
            ok = False
        if not ok or fallback is None:
            return None
        return MenuNode(
            node_id=node_id,
            prompt=prompt,
            choices=MappingProxyType(choices),
            timeout_s=f.get("timeout_s", defaults.menu_timeout_s),
            retries=f.get("retries", defaults.menu_retries),
            fallback=fallback,
            human=human,
            invalid_prompt=invalid if "invalid_prompt" in f else defaults.invalid_prompt,
            no_input_prompt=no_input if "no_input_prompt" in f else defaults.no_input_prompt,
            line=line,
        )

    def _ask_common(
        self, node_id: str, line: int, f: dict[str, Any]
    ) -> tuple[str | None, Prompt | None, Prompt | None]:
        defaults = self.current_defaults
        no_input = self.resolve(f.get("no_input_prompt"))
        no_match = self.resolve(f.get("no_match_prompt"))
        human: str | None = f.get("human", defaults.human)
        if human is None:
            self.error(line, node_id, "human", "missing required field (and no 'defaults.human')")
        return (
            human,
            no_input if "no_input_prompt" in f else defaults.no_input_prompt,
            no_match if "no_match_prompt" in f else defaults.no_match_prompt,
        )

    def make_ask(
        self, node_id: str, line: int, f: dict[str, Any], prompt: Prompt | None
    ) -> AskNode | None:
        defaults = self.current_defaults
        human, no_input, no_match = self._ask_common(node_id, line, f)
        fallback: str | None = f.get("fallback", defaults.fallback)
        if fallback is None:
            self.error(
                line, node_id, "fallback", "missing required field (and no 'defaults.fallback')"
            )
        if prompt is None or human is None or fallback is None:
            return None
        return AskNode(
            node_id=node_id,
            prompt=prompt,
            no_input_s=f.get("no_input_s", defaults.ask_no_input_s),
            retries=f.get("retries", defaults.ask_retries),
            answered=f["answered"],
            handover=f["handover"],
            human=human,
            fallback=fallback,
            recommended=f.get("recommended"),
            keypad=f.get("keypad"),
            dossier=f.get("dossier"),
            no_input_prompt=no_input,
            no_match_prompt=no_match,
            line=line,
        )

    def make_confirm(
        self, node_id: str, line: int, f: dict[str, Any], prompt: Prompt | None
    ) -> ConfirmNode | None:
        defaults = self.current_defaults
        human, no_input, no_match = self._ask_common(node_id, line, f)
        if prompt is None or human is None:
            return None
        return ConfirmNode(
            node_id=node_id,
            prompt=prompt,
            yes=f["yes"],
            no=f["no"],
            unsure=f.get("unsure", f["no"]),
            no_input_s=f.get("no_input_s", defaults.ask_no_input_s),
            retries=f.get("retries", defaults.ask_retries),
            human=human,
            repeat_answer=f.get("repeat_answer", False),
            no_input_prompt=no_input,
            no_match_prompt=no_match,
            line=line,
        )

    def make_identify(self, node_id: str, line: int, f: dict[str, Any]) -> IdentifyNode | None:
        prompts = {
            key: self.resolve(f.get(key))
            for key in (
                "number_prompt",
                "birth_date_prompt",
                "readback_prompt",
                "confirm_prompt",
                "retry_prompt",
            )
        }
        human: str | None = f.get("human", self.current_defaults.human)
        if human is None:
            self.error(line, node_id, "human", "missing required field (and no 'defaults.human')")
        number, birth, readback, confirm, retry = prompts.values()
        if None in (number, birth, readback, confirm, retry) or human is None:
            return None
        assert number and birth and readback and confirm and retry
        return IdentifyNode(
            node_id=node_id,
            number_prompt=number,
            birth_date_prompt=birth,
            readback_prompt=readback,
            confirm_prompt=confirm,
            retry_prompt=retry,
            identified=f["identified"],
            failed=f["failed"],
            human=human,
            attempts=f.get("attempts", 3),
            max_digits=f.get("max_digits", 14),
            timeout_s=f.get("timeout_s", 10.0),
            caller_id=f.get("caller_id", True),
            line=line,
        )

    def check_ask_targets(self, nodes: Mapping[str, Node]) -> None:
        """Cross-node rules of the bot nodes (run once every node is built)."""
        for node_id, node in nodes.items():
            if isinstance(node, AskNode):
                if not isinstance(nodes.get(node.handover), QueueNode):
                    self.error(node.line, node_id, "handover", "must name a 'queue' node")
                if node.keypad is not None and not isinstance(nodes.get(node.keypad), MenuNode):
                    self.error(node.line, node_id, "keypad", "must name a 'menu' node")
            if isinstance(node, DossierAnswerNode) and not isinstance(
                nodes.get(node.handover), QueueNode
            ):
                self.error(node.line, node_id, "handover", "must name a 'queue' node")

    # -- whole-graph checks ----------------------------------------------------------------

    def check_graph(self, start: str, nodes: Mapping[str, Node], defaults: Defaults) -> None:
        seen: set[str] = set()
        todo = [start]
        while todo:
            current = todo.pop()
            if current in seen or current not in nodes:
                continue
            seen.add(current)
            todo.extend(_successors(nodes[current], defaults))
        for node_id, node in nodes.items():
            if node_id not in seen:
                self.warn(node.line, node_id, None, f"unreachable from start node {start!r}")
        # Nodes that do not wait for the caller (goto/set/branch) must not form a cycle, or the
        # interpreter would spin without ever yielding.
        state: dict[str, int] = {}

        def visit(node_id: str, path: list[str]) -> None:
            state[node_id] = 1
            path.append(node_id)
            for succ in _successors(nodes[node_id], defaults):
                succ_node = nodes.get(succ)
                if not isinstance(succ_node, _TRANSIENT):
                    continue
                if state.get(succ) == 1:
                    cycle = path[path.index(succ) :] + [succ]
                    self.error(
                        nodes[succ].line,
                        succ,
                        None,
                        "loop without any prompt: " + " -> ".join(cycle),
                    )
                elif succ not in state:
                    visit(succ, path)
            path.pop()
            state[node_id] = 2

        for node_id, node in nodes.items():
            if isinstance(node, _TRANSIENT) and node_id not in state:
                visit(node_id, [])


def _successors(node: Node, defaults: Defaults) -> list[str]:
    if isinstance(node, SayNode):
        human = [defaults.human] if node.interruptible and defaults.human else []
        return [node.next, *human]
    if isinstance(node, MenuNode):
        extra = [node.human] if node.human and "0" not in node.choices else []
        return [*node.choices.values(), node.fallback, *extra]
    if isinstance(node, GotoNode | SetNode):
        return [node.next]
    if isinstance(node, BranchNode):
        return [*(c.next for c in node.conditions), node.otherwise]
    if isinstance(node, QueueNode):
        return [node.next] if node.next else []
    if isinstance(node, IdentifyNode):
        return [node.identified, node.failed, node.human]
    if isinstance(node, DossierAnswerNode):
        return [node.next, node.handover]
    if isinstance(node, AskNode):
        optional = [n for n in (node.recommended, node.keypad, node.dossier) if n]
        return [node.answered, node.handover, node.human, node.fallback, *optional]
    if isinstance(node, ConfirmNode):
        return [node.yes, node.no, node.unsure, node.human]
    return []


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = str(node.tag).rsplit(":", 1)[-1]
    return f"{tag} {node.value!r}" if tag != "null" else "nothing"


def _join(prefix: str | None, key: str) -> str:
    return key if prefix is None else f"{prefix}.{key}"
