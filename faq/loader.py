"""Load and validate a YAML knowledge base, reporting errors by file, line and field.

The file is parsed with ``yaml.compose`` so every value keeps its line; a file with any
error raises :class:`FaqError` listing all of them, and nothing is partially loaded.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml

from faq.model import OUT_OF_SCOPE, Handoff, Intent, KnowledgeBase, Priority, placeholder_names

_E = TypeVar("_E", bound=enum.Enum)
_ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_REQUIRED = ("id", "topic", "answer", "examples", "keywords", "needs_dossier", "handoff", "skill")
_OPTIONAL = ("priority", "description", "label", "answer_generic")


@dataclass(frozen=True, slots=True)
class Issue:
    """One validation problem in a knowledge-base file."""

    file: str
    """File name as given to the loader."""
    line: int
    """1-based line number."""
    intent: str
    """Intent id, or empty when the problem is outside an intent."""
    field: str
    """Field name, or empty."""
    message: str
    """Human-readable description."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:"
        if self.intent:
            where += f" intent '{self.intent}'"
        if self.field:
            where += f" field '{self.field}'"
        return f"{where}: {self.message}"


class FaqError(Exception):
    """The knowledge base is invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in issues))


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _scalar_map(node: yaml.Node) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        out[str(key.value)] = (key, value)
    return out


class _Validator:
    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[Issue] = []

    def error(self, node: yaml.Node, message: str, intent: str = "", field: str = "") -> None:
        self.issues.append(Issue(self.file, _line(node), intent, field, message))

    def string(self, node: yaml.Node, intent: str, field: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.error(node, "expected a string", intent, field)
            return None
        value = str(node.value).strip()
        if not value:
            self.error(node, "must not be empty", intent, field)
            return None
        return value

    def string_list(self, node: yaml.Node, intent: str, field: str) -> tuple[str, ...] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, "expected a list of strings", intent, field)
            return None
        items = [self.string(item, intent, field) for item in node.value]
        if any(item is None for item in items):
            return None
        if not items:
            self.error(node, "must not be empty", intent, field)
            return None
        return tuple(item for item in items if item is not None)

    def str_map(self, node: yaml.Node, field: str) -> dict[str, str]:
        if not isinstance(node, yaml.MappingNode):
            self.error(node, "expected a mapping of strings", field=field)
            return {}
        out: dict[str, str] = {}
        for key, value in node.value:
            text = self.string(value, "", f"{field}.{key.value}")
            if text is not None:
                out[str(key.value)] = text
        return out

    def intent(
        self, node: yaml.Node, skills: dict[str, str], declared: dict[str, str] | None
    ) -> Intent | None:
        fields = _scalar_map(node)
        if fields is None:
            self.error(node, "an intent must be a mapping")
            return None
        name = str(fields["id"][1].value) if "id" in fields else ""
        before = len(self.issues)
        for key, (key_node, _) in fields.items():
            if key not in _REQUIRED and key not in _OPTIONAL:
                self.error(key_node, "unknown field", name, key)
        for key in _REQUIRED:
            if key not in fields:
                self.error(node, "missing required field", name, key)
        if len(self.issues) > before:
            return None
        id_ = self.string(fields["id"][1], name, "id")
        if id_ is not None and not _ID_RE.match(id_):
            self.error(fields["id"][1], "must be snake_case (a-z, 0-9, _)", name, "id")
        topic = self.string(fields["topic"][1], name, "topic")
        answer = self.string(fields["answer"][1], name, "answer")
        self._placeholders(fields["answer"][1], answer, declared, name, "answer")
        answer_generic = ""
        if "answer_generic" in fields:
            node_ = fields["answer_generic"][1]
            answer_generic = self.string(node_, name, "answer_generic") or ""
            self._placeholders(node_, answer_generic, declared, name, "answer_generic")
        label = ""
        if "label" in fields:
            label = self.string(fields["label"][1], name, "label") or ""
            if "{" in label or "}" in label:
                self.error(fields["label"][1], "a label has no placeholders", name, "label")
        examples = self.string_list(fields["examples"][1], name, "examples")
        keywords = self.string_list(fields["keywords"][1], name, "keywords")
        dossier_node = fields["needs_dossier"][1]
        needs_dossier = False
        if (
            not isinstance(dossier_node, yaml.ScalarNode)
            or dossier_node.tag != "tag:yaml.org,2002:bool"
        ):
            self.error(dossier_node, "expected true or false", name, "needs_dossier")
        else:
            needs_dossier = str(dossier_node.value).lower() in ("true", "yes", "on")
        handoff = self._enum(fields["handoff"][1], Handoff, name, "handoff")
        skill = self.string(fields["skill"][1], name, "skill")
        if skill is not None and skill not in skills:
            self.error(fields["skill"][1], f"unknown skill {skill!r}", name, "skill")
        priority: Priority | None = Priority.NORMAL
        if "priority" in fields:
            priority = self._enum(fields["priority"][1], Priority, name, "priority")
        description = ""
        if "description" in fields:
            description = self.string(fields["description"][1], name, "description") or ""
        if len(self.issues) > before:
            return None
        assert id_ and topic and answer and examples and keywords and handoff and skill
        assert priority is not None
        return Intent(
            id=id_,
            topic=topic,
            answer=answer,
            examples=examples,
            keywords=keywords,
            needs_dossier=needs_dossier,
            handoff=handoff,
            skill=skill,
            priority=priority,
            description=description,
            label=label,
            answer_generic=answer_generic,
            line=_line(node),
        )

    def _placeholders(
        self,
        node: yaml.Node,
        text: str | None,
        declared: dict[str, str] | None,
        intent: str,
        field: str,
    ) -> None:
        if text is None:
            return
        try:
            used = placeholder_names(text)
        except ValueError as exc:
            self.error(node, str(exc), intent, field)
            return
        unknown = sorted(used - set(declared)) if declared is not None else []
        if unknown:
            self.error(node, f"undeclared placeholder(s): {', '.join(unknown)}", intent, field)

    def _enum(self, node: yaml.Node, kind: type[_E], intent: str, field: str) -> _E | None:
        text = self.string(node, intent, field)
        if text is None:
            return None
        try:
            return kind(text)
        except ValueError:
            allowed = "/".join(str(member.value) for member in kind)
            self.error(node, f"{text!r} is not one of {allowed}", intent, field)
            return None


def parse_knowledge_base(text: str, file: str = "<string>") -> KnowledgeBase:
    """Parse and validate a knowledge base from YAML text.

    Args:
        text: YAML document.
        file: Name used in error messages.

    Returns:
        The validated knowledge base.

    Raises:
        FaqError: If the document is invalid; nothing is partially loaded.
    """
    check = _Validator(file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise FaqError([Issue(file, line, "", "", f"invalid YAML: {exc.problem}")]) from exc
    top = _scalar_map(root) if root is not None else None
    if root is None or top is None:
        raise FaqError([Issue(file, 1, "", "", "expected a mapping with 'skills' and 'intents'")])
    for key, (key_node, _) in top.items():
        if key not in (
            "meta",
            "skills",
            "emergency_numbers",
            "placeholders",
            "departement",
            "intents",
        ):
            check.error(key_node, "unknown top-level field", field=key)
    skills = check.str_map(top["skills"][1], "skills") if "skills" in top else {}
    if "skills" not in top:
        check.error(root, "missing required field", field="skills")
    numbers = (
        check.str_map(top["emergency_numbers"][1], "emergency_numbers")
        if "emergency_numbers" in top
        else {}
    )
    declared = (
        check.str_map(top["placeholders"][1], "placeholders") if "placeholders" in top else None
    )
    departement: dict[str, str] = {}
    if "departement" in top:
        departement = check.str_map(top["departement"][1], "departement")
        node = top["departement"][1]
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                name = str(key.value)
                if declared is not None and name not in declared:
                    check.error(key, "not a declared placeholder", field=f"departement.{name}")
                    departement.pop(name, None)
                elif isinstance(value, yaml.ScalarNode) and "{" in str(value.value):
                    check.error(value, "a value cannot contain braces", field=f"departement.{name}")
    intents: list[Intent] = []
    seen: dict[str, int] = {}
    if "intents" not in top:
        check.error(root, "missing required field", field="intents")
    elif not isinstance(top["intents"][1], yaml.SequenceNode) or not top["intents"][1].value:
        check.error(top["intents"][1], "expected a non-empty list of intents", field="intents")
    else:
        for node in top["intents"][1].value:
            intent = check.intent(node, skills, declared)
            if intent is None:
                continue
            if intent.id in seen:
                check.error(
                    node, f"duplicate id (first at line {seen[intent.id]})", intent.id, "id"
                )
            seen.setdefault(intent.id, intent.line)
            intents.append(intent)
        if OUT_OF_SCOPE not in seen and not check.issues:
            check.error(
                top["intents"][1], f"an intent '{OUT_OF_SCOPE}' is required", field="intents"
            )
    if check.issues:
        raise FaqError(check.issues)
    return KnowledgeBase(
        intents=tuple(intents),
        skills=skills,
        emergency_numbers=numbers,
        placeholders=declared or {},
        departement=departement,
        source=file,
    )


def load_knowledge_base(path: str | Path) -> KnowledgeBase:
    """Load and validate a knowledge-base YAML file.

    Args:
        path: File to read.

    Returns:
        The validated knowledge base.

    Raises:
        FaqError: If the file is unreadable or invalid; nothing is partially loaded.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FaqError([Issue(str(path), 1, "", "", f"cannot read file: {exc}")]) from exc
    return parse_knowledge_base(text, str(path))


def default_knowledge_base_path() -> Path:
    """Return the path of the shipped knowledge base (``faq/solidarites.yaml``)."""
    return Path(__file__).resolve().parent / "solidarites.yaml"
