"""``callcenter callbacks``: the callbacks callers asked for (issue 5).

- ``list [--json] [--all] [--limit N]``: callbacks that have not ended (``--all``: every one),
  newest first. The number is never printed in full: its last two digits only.
- ``cancel ID --reason TEXT``: cancel a callback that has not ended. A running service notices
  when it next handles it (the due timer reads the store; an offer to dial it is withdrawn).

They take the ``--config`` and ``--data-dir`` options of ``callcenter serve`` and migrate the
database first. A refused change exits 1 with the reason.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from callcenter.cli import common_options
from callcenter.config import ConfigError, load_config
from callcenter.store import callbacks, db
from callcenter.store.callbacks import StoredCallback


def _engine(args: argparse.Namespace) -> Engine:
    config = load_config(args.config, overrides={"": {"data_dir": args.data_dir}})
    engine = db.make_engine(config.db_url)
    db.create_schema(engine)
    return engine


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def as_json(stored: StoredCallback) -> dict[str, Any]:
    """A callback for ``list --json`` (the number masked: last two digits only)."""
    cb = stored.callback
    return {
        "id": cb.id,
        "status": cb.status.value,
        "mode": cb.mode.value,
        "queue": cb.skill,
        "priority": cb.priority.name.lower(),
        "requested_at": _iso(stored.created_at),
        "due_at": _iso(cb.due_at),
        "slot": None if cb.slot is None else [_iso(cb.slot.start), _iso(cb.slot.end)],
        "attempts": len(cb.attempts),
        "last_outcome": stored.last_outcome,
        "phone": stored.masked_phone(),
        "usager_id": cb.usager_id,
        "node": stored.node,
        "cancel_reason": stored.cancel_reason,
    }


def _show(stored: StoredCallback) -> str:
    cb = stored.callback
    when = _iso(cb.due_at) or _iso(stored.created_at) or "-"
    return (
        f"{cb.id:<17} {cb.status.value:<10} {cb.mode.value:<11} {cb.skill:<24} "
        f"{stored.masked_phone():<14} tries={len(cb.attempts)} {stored.last_outcome or '-':<12} "
        f"{when}"
    )


def build_parser(prog: str = "callcenter callbacks") -> argparse.ArgumentParser:
    """Build the argument parser of ``callcenter callbacks``."""
    common = common_options()
    parser = argparse.ArgumentParser(prog=prog, description="Callbacks callers asked for.")
    sub = parser.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", parents=[common], help="list callbacks (numbers masked)")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--all", action="store_true", help="include ended callbacks")
    lst.add_argument("--limit", type=int, default=200)
    cancel = sub.add_parser("cancel", parents=[common], help="cancel a callback")
    cancel.add_argument("id")
    cancel.add_argument("--reason", required=True, help="why (kept with the callback)")
    return parser


def _run(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        if args.command == "list":
            statuses = None if args.all else callbacks.OPEN_STATUSES
            found = callbacks.list_callbacks(engine, statuses=statuses, limit=args.limit)
            if args.json:
                print(json.dumps([as_json(s) for s in found], ensure_ascii=False, indent=2))
            else:
                for stored in found:
                    print(_show(stored))
        else:
            done = callbacks.cancel(engine, args.id, reason=args.reason)
            print(f"{done.id}: cancelled")
    finally:
        engine.dispose()
    return 0


def callbacks_main(argv: Sequence[str], prog: str = "callcenter callbacks") -> int:
    """Entry point of ``callcenter callbacks``; 0 on success, 1 on a refused change, 2 on usage."""
    args = build_parser(prog).parse_args(list(argv))
    try:
        return _run(args)
    except callbacks.CallbackStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(callbacks_main(sys.argv[1:]))
