"""Validation issues and the error raised when a flow file is invalid."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Severity(enum.Enum):
    """How bad a :class:`FlowIssue` is."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class FlowIssue:
    """One problem found while loading a flow file."""

    file: str
    """Name of the flow file, as given to the loader."""
    line: int
    """1-based line of the offending YAML node (0 when the problem concerns the whole file)."""
    node_id: str | None
    """Id of the flow node concerned, ``None`` for top-level sections."""
    field: str | None
    """Dotted path of the offending field inside the node or section (e.g. ``choices.5``)."""
    message: str
    """Human-readable explanation, in English."""
    severity: Severity = Severity.ERROR
    """Errors make the file invalid; warnings (e.g. unreachable nodes) do not."""

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}:"]
        if self.severity is Severity.WARNING:
            parts.append("warning:")
        if self.node_id is not None:
            parts.append(f"node {self.node_id!r}")
        if self.field is not None:
            parts.append(f"field {self.field!r}")
        head = " ".join(parts)
        if self.node_id is not None or self.field is not None:
            head += ":"
        return f"{head} {self.message}"


class FlowError(Exception):
    """A flow file could not be loaded; :attr:`issues` lists every problem found."""

    def __init__(self, issues: Sequence[FlowIssue]) -> None:
        self.issues: list[FlowIssue] = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __str__(self) -> str:
        count = len(self.issues)
        lines = [f"{count} issue{'s' if count != 1 else ''} in flow:"]
        lines.extend(str(issue) for issue in self.issues)
        return "\n".join(lines)
