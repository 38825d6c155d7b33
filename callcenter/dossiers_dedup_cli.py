"""``callcenter dossiers duplicates|merge``: likely duplicate usagers and their merge (issue 4).

``duplicates [--min-score S] [--limit N] [--json]`` scans the live usagers
(:func:`callcenter.store.duplicates.find_duplicates`) and prints the best pairs with their score
and the signals behind it, showing only what a person needs to decide: ids, names, birth
dates (no phone, no dossier). The scan and every usager shown are audited (actor: ``--actor``,
default the login name; reason ``dossiers duplicates``).

``merge KEEP_ID MERGED_ID --reason TEXT [--yes]`` merges the second usager into the first
(:func:`callcenter.store.merge.merge_usagers`); without ``--yes`` it shows the pair (audited)
and asks for confirmation, and refuses when there is no terminal to ask on.

:func:`add_commands` adds both commands to ``callcenter dossiers``'s sub-parsers; :func:`run`
handles them. Exit status: 0 done, 1 refused (a merge rule, a declined confirmation), 2 a usage
or configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from sqlalchemy import Engine

from callcenter.config import ConfigError, load_config
from callcenter.store import db
from callcenter.store.audit import Via
from callcenter.store.duplicates import (
    DEFAULT_MIN_SCORE,
    DuplicatePair,
    PairView,
    ScanConfig,
    UsagerView,
    describe_pairs,
    find_duplicates,
    load_people,
    score_pair,
)
from callcenter.store.merge import MergeError, merge_usagers

__all__ = ["COMMANDS", "DUPLICATES_REASON", "MERGE_PREVIEW_REASON", "add_commands", "run"]

COMMANDS = frozenset({"duplicates", "merge"})
"""The sub-commands this module handles (``args.command``)."""

DUPLICATES_REASON = "dossiers duplicates"
"""Audit reason of a duplicates listing."""

MERGE_PREVIEW_REASON = "dossiers merge preview"
"""Audit reason of the pair shown before a merge is confirmed."""


def _score(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be 0 to 100: {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (containers without a passwd entry)
        return "cli"


def add_commands(sub: argparse._SubParsersAction[Any], common: argparse.ArgumentParser) -> None:
    """Add ``duplicates`` and ``merge`` to the sub-parsers of ``callcenter dossiers``.

    Args:
        sub: The ``dossiers`` sub-parsers (``dest="command"``).
        common: The parent parser with ``--data-dir`` and ``--config``.
    """
    dup = sub.add_parser(
        "duplicates",
        parents=[common],
        help="list likely duplicate usagers (score 0-100 and reasons), for a person to merge",
    )
    dup.add_argument(
        "--min-score",
        type=_score,
        default=DEFAULT_MIN_SCORE,
        help=f"lowest score listed, 0-100 (default {DEFAULT_MIN_SCORE})",
    )
    dup.add_argument("--limit", type=_positive, default=50, help="pairs listed (default 50)")
    dup.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    dup.add_argument("--actor", default=None, help="who reads, for the audit (default: login)")

    merge = sub.add_parser(
        "merge",
        parents=[common],
        help="merge usager MERGED_ID into KEEP_ID (history kept; the merged one is a tombstone)",
    )
    merge.add_argument("keep_id", type=int, metavar="KEEP_ID", help="the usager kept")
    merge.add_argument("merged_id", type=int, metavar="MERGED_ID", help="the usager merged")
    merge.add_argument("--reason", required=True, help="why (ticket, evidence): logged")
    merge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    merge.add_argument("--actor", default=None, help="who merges, for the log (default: login)")


def run(
    args: argparse.Namespace,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    confirm: Callable[[str], bool] | None = None,
) -> int:
    """Run ``duplicates`` or ``merge`` (``args.command``).

    Args:
        args: Parsed arguments (from a parser :func:`add_commands` built).
        stdout: Where results go (default ``sys.stdout``).
        stderr: Where errors go (default ``sys.stderr``).
        confirm: Asks a yes/no question (default: on the terminal; None answer when ``stdin``
            is not a terminal).

    Returns:
        The exit status.
    """
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        config = load_config(args.config, overrides={"": {"data_dir": args.data_dir}})
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=err)
        return 2
    engine = db.make_engine(config.db_url)
    try:
        db.create_schema(engine)
        actor = (args.actor or _default_actor()).strip() or "cli"
        if args.command == "duplicates":
            return _duplicates(engine, args, actor, out)
        if args.command == "merge":
            return _merge(engine, args, actor, out, err, confirm)
        print(f"dossiers: unknown command {args.command!r}", file=err)
        return 2
    finally:
        engine.dispose()


def _view_json(view: UsagerView) -> dict[str, Any]:
    return {
        "id": view.usager_id,
        "external_id": view.external_id,
        "nom": view.nom,
        "prenom": view.prenom,
        "nom_naissance": view.nom_naissance,
        "date_naissance": view.date_naissance.isoformat(),
    }


def _pair_json(pair: PairView) -> dict[str, Any]:
    return {
        "score": pair.score,
        "reasons": [{"signal": s.code, "points": s.points} for s in pair.reasons],
        "usagers": [_view_json(pair.first), _view_json(pair.second)],
    }


def _who(view: UsagerView) -> str:
    born = f" née {view.nom_naissance}" if view.nom_naissance else ""
    return (
        f"#{view.usager_id} {view.nom.upper()} {view.prenom}{born}, "
        f"{view.date_naissance.strftime('%d/%m/%Y')} ({view.external_id})"
    )


def _print_pairs(views: Sequence[PairView], out: TextIO) -> None:
    for view in views:
        signals = ", ".join(f"{s.code} {s.points:+d}" for s in view.reasons)
        print(f"{view.score:3d}  {_who(view.first)}", file=out)
        print(f"     {_who(view.second)}", file=out)
        print(f"     {signals}", file=out)


def _duplicates(engine: Engine, args: argparse.Namespace, actor: str, out: TextIO) -> int:
    scan = find_duplicates(
        engine,
        actor=actor,
        reason=DUPLICATES_REASON,
        via=Via.CLI,
        config=ScanConfig(min_score=args.min_score),
    )
    shown = describe_pairs(
        engine, scan.pairs[: args.limit], actor=actor, reason=DUPLICATES_REASON, via=Via.CLI
    )
    if args.json:
        body = {
            "min_score": args.min_score,
            "pairs": [_pair_json(v) for v in shown],
            "total": scan.stats.pairs,
            "stats": scan.stats.as_json(),
        }
        print(json.dumps(body, ensure_ascii=False, indent=2), file=out)
        return 0
    _print_pairs(shown, out)
    more = f", {len(shown)} shown" if scan.stats.pairs > len(shown) else ""
    print(
        f"{scan.stats.pairs} pair(s) scoring {args.min_score} or more among "
        f"{scan.stats.usagers} usagers{more}",
        file=out,
    )
    return 0


def _ask_terminal(question: str) -> bool:
    if not sys.stdin.isatty():
        raise EOFError
    return input(question).strip().lower() in ("y", "yes", "o", "oui")


def _merge(
    engine: Engine,
    args: argparse.Namespace,
    actor: str,
    out: TextIO,
    err: TextIO,
    confirm: Callable[[str], bool] | None,
) -> int:
    keep_id, merged_id = args.keep_id, args.merged_id
    if not args.reason.strip():
        print("dossiers merge: --reason must not be empty", file=err)
        return 2
    if not args.yes:
        preview = _preview(engine, keep_id, merged_id, actor)
        if preview is None:
            print(
                f"dossiers merge: usagers {keep_id} and {merged_id} must both exist, differ "
                "and not be merged already",
                file=err,
            )
            return 1
        _print_pairs([preview], out)
        question = f"Merge #{merged_id} into #{keep_id} (kept)? [y/N] "
        try:
            accepted = (confirm or _ask_terminal)(question)
        except EOFError:
            print("dossiers merge: no terminal to confirm on; pass --yes", file=err)
            return 2
        if not accepted:
            print("dossiers merge: not merged", file=err)
            return 1
    try:
        result = merge_usagers(
            engine, keep_id, merged_id, actor=actor, reason=args.reason, via=Via.CLI
        )
    except MergeError as exc:
        print(f"dossiers {exc}", file=err)
        return 1
    summary = {
        "kept_id": result.kept_id,
        "merged_id": result.merged_id,
        "merge_log_id": result.log_id,
        "moved": result.counts(),
        "conflicts_resolved": len(result.resolved),
    }
    print(json.dumps(summary, separators=(",", ":")), file=out)
    return 0


def _preview(engine: Engine, keep_id: int, merged_id: int, actor: str) -> PairView | None:
    """The pair as ``duplicates`` shows it, with its score (audited); None if not mergeable."""
    if keep_id == merged_id:
        return None
    people = {p.usager_id: p for p in load_people(engine, ids=(keep_id, merged_id))}
    if len(people) != 2:
        return None
    scored = score_pair(people[keep_id], people[merged_id])
    # Shown kept first, whatever the ids' order.
    pair = DuplicatePair(keep_id, merged_id, scored.score, scored.reasons)
    views = describe_pairs(engine, [pair], actor=actor, reason=MERGE_PREVIEW_REASON, via=Via.CLI)
    return views[0] if views else None
