"""``python -m ivr_flows check FILE...`` / ``callcenter flows check FILE...``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from .errors import FlowError
from .loader import load_flow


def check_files(
    paths: Sequence[str], *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Validate flow files and report on them.

    Every issue (errors and warnings) goes to ``err``, one per line as
    ``file:line: node 'x' field 'y': message``; each valid file gets
    ``ok: N nodes, M prompts (FILE)`` on ``out``.

    Args:
        paths: Flow files to check.
        out: Stream for the summaries (default ``sys.stdout``).
        err: Stream for the issues (default ``sys.stderr``).

    Returns:
        0 if every file is valid (warnings allowed), 1 otherwise (or if no file was given).
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if not paths:
        print("usage: check FILE...", file=err)
        return 1
    status = 0
    for path in paths:
        try:
            flow = load_flow(path)
        except FlowError as exc:
            for issue in exc.issues:
                print(issue, file=err)
            status = 1
            continue
        for warning in flow.warnings:
            print(warning, file=err)
        print(f"ok: {len(flow.nodes)} nodes, {len(flow.prompts())} prompts ({path})", file=out)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ivr_flows``.

    Args:
        argv: Arguments without the program name (default ``sys.argv[1:]``).

    Returns:
        The process exit status.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "check":
        print("usage: python -m ivr_flows check FILE...", file=sys.stderr)
        return 2
    return check_files(args[1:])
