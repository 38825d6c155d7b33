"""The domain packages stay pure: no event loop, no sockets, no web server, no callcenter.

``callcenter`` imports ``ivr_flows``, ``faq`` and ``routing``, never the other way round
(see STYLE.md, "Layout and module boundaries"); the same contract is in pyproject.toml for
import-linter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_PACKAGES = ("ivr_flows", "faq", "routing")
FORBIDDEN = frozenset({"asyncio", "aiohttp", "socket", "callcenter"})


def forbidden_imports(source: str, filename: str = "<string>") -> list[tuple[int, str]]:
    """Return (line, module) for each forbidden import in ``source``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        modules: list[str] = []
        line = 0
        if isinstance(node, ast.Import):
            modules, line = [alias.name for alias in node.names], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules, line = [node.module], node.lineno
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            modules, line = [node.args[0].value], node.lineno
        found.extend((line, module) for module in modules if module.split(".")[0] in FORBIDDEN)
    return found


def domain_modules() -> list[Path]:
    return sorted(
        path
        for package in DOMAIN_PACKAGES
        if (ROOT / package).is_dir()
        for path in (ROOT / package).rglob("*.py")
    )


def test_there_are_domain_modules() -> None:
    assert any(path.parent.name == "ivr_flows" for path in domain_modules())


@pytest.mark.parametrize("path", domain_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_domain_module_is_pure(path: Path) -> None:
    violations = forbidden_imports(path.read_text(encoding="utf-8"), str(path))
    assert violations == [], f"{path.relative_to(ROOT)} imports {violations}"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import asyncio", [(1, "asyncio")]),
        ("import os, socket as s", [(1, "socket")]),
        ("\nfrom aiohttp import web", [(2, "aiohttp")]),
        ("from callcenter.transport import sip_udp", [(1, "callcenter.transport")]),
        ("import importlib\nimportlib.import_module('asyncio.events')", [(2, "asyncio.events")]),
        ("__import__('socket')", [(1, "socket")]),
        ("def f():\n    import callcenter", [(2, "callcenter")]),
        ("from . import socket\nimport asyncio_extras\nimport datetime", []),
    ],
)
def test_checker_detects_forbidden_imports(source: str, expected: list[tuple[int, str]]) -> None:
    assert forbidden_imports(source) == expected
