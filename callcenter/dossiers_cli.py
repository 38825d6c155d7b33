"""``callcenter dossiers``: import of back-office extracts, demo dossiers for the line (issue 4).

``import FILE [FILE...] [--kind K] [--batch-size N] [--dry-run] [--report PATH] [--json]`` reads
back-office extracts (JSON, JSON Lines, CSV: ``docs/import-format.md``) with
:mod:`callcenter.store.importer`: every rejected row is reported as ``file:line: field: message``
on stderr (and in ``--report``), a progress bar runs on stderr when it is a terminal, and a
summary goes to stdout (text, or JSON with ``--json``). Exit status: 0 all rows imported, 1 a row
or a file was rejected (or a database failure stopped the import), 2 usage or configuration
error, 130 interrupted (SIGINT; the committed batches stay, running the command again completes
the import).

``duplicates`` lists likely duplicate usagers with scores and reasons, and ``merge KEEP MERGED
--reason WHY`` merges two of them keeping all history (:mod:`callcenter.dossiers_dedup_cli`).

``demo --count N --seed S [--today YYYY-MM-DD]`` writes a deterministic synthetic set
(:mod:`callcenter.store.demo`) and prints a one-line JSON summary; ``list [--json] [--limit N]``
prints what a tester needs to call the line as a demo usager: numéro de dossier, birth date as
keyed (``JJMMAAAA``), phone, type and current status. Every dossier listed is read through the
repository's audited snapshot (actor ``cli``, reason ``dossiers list``). All take the
``--config`` and ``--data-dir`` options of ``callcenter serve`` and migrate the database first.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, select

from callcenter import dossiers_dedup_cli
from callcenter.cli import common_options
from callcenter.config import Config, ConfigError, load_config
from callcenter.store import db, demo, importer
from callcenter.store import dossiers as repo
from callcenter.store.audit import Via, transaction
from callcenter.store.dossier_models import MDPH_TYPES, DemandeType

LIST_ACTOR = "cli"
LIST_REASON = "dossiers list"

REPORT_STDERR_LIMIT = 20
"""With ``--report``, stderr shows this many errors (the report file has them all)."""

_SPOKEN_TYPES = frozenset(
    {DemandeType.APA_DOMICILE, DemandeType.APA_ETAB, DemandeType.APA_URGENCE} | MDPH_TYPES
)


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _batch_size(text: str) -> int:
    value = _positive(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def build_parser(prog: str = "callcenter dossiers") -> argparse.ArgumentParser:
    """Build the argument parser of ``callcenter dossiers``."""
    common = common_options()

    parser = argparse.ArgumentParser(
        prog=prog, description="Dossiers of the line: import of back-office extracts, demo data."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    imp = sub.add_parser(
        "import",
        parents=[common],
        help="import back-office extracts (JSON, JSON Lines, CSV; see docs/import-format.md)",
    )
    imp.add_argument("files", nargs="+", metavar="FILE", help=".json, .jsonl, .ndjson or .csv")
    imp.add_argument(
        "--kind",
        choices=[k.value for k in importer.Kind],
        default=None,
        help="record kind of the CSV files (default: from each file name, e.g. usagers.csv)",
    )
    imp.add_argument(
        "--batch-size",
        type=_batch_size,
        default=importer.DEFAULT_BATCH_SIZE,
        help=f"rows per transaction (default {importer.DEFAULT_BATCH_SIZE})",
    )
    imp.add_argument(
        "--dry-run", action="store_true", help="check and count everything, then roll back"
    )
    imp.add_argument(
        "--report",
        metavar="PATH",
        default=None,
        help=f"write every error and notice to PATH (stderr then shows the first "
        f"{REPORT_STDERR_LIMIT})",
    )
    imp.add_argument("--json", action="store_true", help="print the summary as JSON")

    demo_cmd = sub.add_parser(
        "demo", parents=[common], help="create deterministic synthetic usagers and dossiers"
    )
    demo_cmd.add_argument("--count", type=_positive, default=500, help="usagers (default 500)")
    demo_cmd.add_argument("--seed", type=int, default=1, help="demo seed (default 1)")
    demo_cmd.add_argument(
        "--today",
        type=_iso_date,
        default=None,
        help="date the dossiers are described at, YYYY-MM-DD (default: today)",
    )

    lst = sub.add_parser("list", parents=[common], help="print demo usagers to call the line with")
    lst.add_argument("--json", action="store_true", help="print JSON (default: a table)")
    lst.add_argument("--limit", type=_positive, default=20, help="usagers (default 20)")
    lst.add_argument(
        "--today",
        type=_iso_date,
        default=None,
        help="date the statuses are read at, YYYY-MM-DD (default: today)",
    )
    dossiers_dedup_cli.add_commands(sub, common)
    return parser


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, overrides={"": {"data_dir": args.data_dir}})


def _engine(args: argparse.Namespace) -> Engine:
    engine = db.make_engine(_config(args).db_url)
    db.create_schema(engine)
    return engine


def _cmd_demo(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        summary = demo.load(engine, args.count, args.seed, args.today or date.today())
    except demo.DemoConflictError as exc:
        print(f"dossiers demo: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    print(json.dumps(summary.as_json(), ensure_ascii=False, separators=(",", ":")))
    return 0


class _ImportProgress:
    """A one-line progress bar on a terminal: share of the bytes read, rows, rows per second.

    Same look as ``callcenter models install``'s (``callcenter/media/asr/models.py``), whose
    bar counts megabytes and is private to that module.
    """

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self._last = 0.0
        self._width = 0

    def __call__(self, done: int, total: int, rows: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.1 and done < total:
            return
        self._last = now
        percent = min(100, done * 100 // total) if total else 100
        filled = percent * 30 // 100
        rate = rows / max(now - self.started, 1e-6)
        text = f"import [{'#' * filled}{'-' * (30 - filled)}] {percent:3d}% {rows} rows"
        text += f" {rate:.0f} rows/s"
        self._width = max(self._width, len(text))
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()

    def clear(self) -> None:
        """Blank the bar's line (before an error is printed on it)."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def close(self) -> None:
        """End the bar's line."""
        if self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0


def _summary_text(summary: importer.ImportSummary) -> list[str]:
    head = "dossiers import"
    if summary.dry_run:
        head += " (dry run: nothing was written)"
    if summary.interrupted:
        head += " (INTERRUPTED: only the batches committed stay; run it again to complete)"
    lines = [
        f"{head}: {summary.rows} rows read from {len(summary.files)} file(s) in "
        f"{summary.seconds:.1f} s ({summary.rows_per_s:.0f} rows/s): {summary.imported} "
        f"imported, {summary.rejected} rejected"
        + (f", {summary.files_rejected} file(s) unreadable" if summary.files_rejected else "")
    ]
    usagers = summary.counts[importer.Kind.USAGERS.value]
    lines.append(
        f"usagers: {usagers['inserted']} inserted, {usagers['updated']} updated, "
        f"{usagers['unchanged']} unchanged"
    )
    written = [
        f"{kind} {summary.counts[kind]['inserted'] + summary.counts[kind]['updated']}"
        for kind in importer.CHILD_KINDS
        if summary.counts[kind]["inserted"] + summary.counts[kind]["updated"]
    ]
    unchanged = sum(summary.counts[kind]["unchanged"] for kind in importer.CHILD_KINDS)
    lines.append(
        f"children: {summary.children_written} written"
        + (f" ({', '.join(written)})" if written else "")
        + f", {unchanged} unchanged"
    )
    if summary.failure is not None:
        lines.append(f"stopped by a {summary.failure}")
    return lines


def _cmd_import(args: argparse.Namespace) -> int:
    config = _config(args)
    nir_key = config.dossiers.nir_key()
    try:
        files = importer.plan_files(
            [Path(f) for f in args.files],
            kind=None if args.kind is None else importer.Kind(args.kind),
        )
    except importer.ImportUsageError as exc:
        print(f"dossiers import: {exc}", file=sys.stderr)
        return 2
    report: IO[str] | None = None
    try:
        if args.report is not None:
            report = Path(args.report).open("w", encoding="utf-8")
    except OSError as exc:
        print(f"dossiers import: --report {args.report}: {exc.strerror}", file=sys.stderr)
        return 2
    bar = _ImportProgress(sys.stderr) if sys.stderr.isatty() else None
    shown = 0

    def on_error(error: importer.RowError) -> None:
        nonlocal shown
        if report is not None:
            report.write(f"{error}\n")
        if report is None or shown < REPORT_STDERR_LIMIT:
            if bar is not None:
                bar.clear()
            print(error, file=sys.stderr)
            shown += 1

    engine = _engine(args)
    try:
        summary = importer.run_import(
            engine,
            files,
            nir_key=nir_key,
            batch_size=args.batch_size,
            dry_run=args.dry_run,
            on_error=on_error,
            progress=bar,
        )
    finally:
        engine.dispose()
        if bar is not None:
            bar.close()
        if report is not None:
            report.close()
    if report is not None:
        with Path(args.report).open("a", encoding="utf-8") as out:
            for notice in summary.notices:
                out.write(f"notice: {notice}\n")
        if summary.errors_total > shown:
            print(
                f"... {summary.errors_total - shown} more error(s) in {args.report}",
                file=sys.stderr,
            )
    for notice in summary.notices:
        print(f"notice: {notice}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_json(), ensure_ascii=False))
    else:
        print("\n".join(_summary_text(summary)))
    if summary.interrupted:
        return 1 if summary.failure is not None else 130
    return 1 if summary.rejected or summary.files_rejected else 0


def list_demo_usagers(engine: Engine, *, limit: int, today: date) -> list[dict[str, Any]]:
    """Return the first ``limit`` demo usagers as the line's tester needs them (audited).

    Each usager's dossier is read with :func:`~callcenter.store.dossiers.dossier_snapshot`
    (role agent, actor ``cli``, reason ``dossiers list``), which writes the audit row; the birth
    date and phones are read in the same transaction.

    Args:
        engine: The store.
        limit: How many usagers, in creation order.
        today: The date statuses are read at.

    Returns:
        One dict per usager: ``usager`` (external id), ``numero`` (the newest demande's),
        ``numero_chiffres`` (as keyed), ``date_naissance`` (``JJMMAAAA``), ``phone`` (E.164),
        ``type``, ``statut``, ``demandes`` (all, newest first) and ``tiers`` (role, relation,
        phone).
    """
    usager, phone, tiers = repo.USAGER, repo.PHONE, repo.TIERS
    rows: list[dict[str, Any]] = []
    with transaction(engine) as conn:
        people = conn.execute(
            select(usager.c.id, usager.c.external_id, usager.c.date_naissance)
            .where(usager.c.external_id.startswith(demo.DEMO_PREFIX))
            .order_by(usager.c.id)
            .limit(limit)
        ).all()
        ids = [p.id for p in people]
        phones: dict[int, list[tuple[str | None, str | None, str]]] = {i: [] for i in ids}
        if ids:
            for row in conn.execute(
                select(phone.c.usager_id, tiers.c.role, tiers.c.relation, phone.c.e164)
                .select_from(phone.outerjoin(tiers, tiers.c.id == phone.c.tiers_id))
                .where(phone.c.usager_id.in_(ids))
                .order_by(phone.c.usager_id, phone.c.tiers_id.nulls_first(), phone.c.id)
            ):
                phones[row.usager_id].append((row.role, row.relation, row.e164))
        for person in people:
            snapshot = repo.dossier_snapshot(
                conn,
                person.id,
                role=repo.Role.AGENT,
                actor=LIST_ACTOR,
                reason=LIST_REASON,
                via=Via.CLI,
                today=today,
            )
            demandes = [
                {
                    "numero": d.numero,
                    "type": d.type,
                    "statut": None if d.status is None else d.status.code,
                }
                for d in (snapshot.demandes or () if snapshot is not None else ())
            ]
            # The newest demande the bot can speak about (APA or MDPH), else the newest.
            spoken = [d for d in demandes if d["type"] in _SPOKEN_TYPES]
            first = (spoken or demandes or [{"numero": None, "type": None, "statut": None}])[0]
            own = [e164 for role, _, e164 in phones[person.id] if role is None]
            rows.append(
                {
                    "usager": person.external_id,
                    "numero": first["numero"],
                    "numero_chiffres": "".join(c for c in first["numero"] or "" if c.isdigit()),
                    "date_naissance": person.date_naissance.strftime("%d%m%Y"),
                    "phone": own[0] if own else None,
                    "type": first["type"],
                    "statut": first["statut"],
                    "demandes": demandes,
                    "tiers": [
                        {"role": role, "relation": relation, "phone": e164}
                        for role, relation, e164 in phones[person.id]
                        if role is not None
                    ],
                }
            )
    return rows


def _cmd_list(args: argparse.Namespace) -> int:
    engine = _engine(args)
    try:
        rows = list_demo_usagers(engine, limit=args.limit, today=args.today or date.today())
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    header = ("numero", "chiffres", "naissance", "telephone", "type", "statut", "tiers")
    table = [header] + [
        (
            r["numero"] or "-",
            r["numero_chiffres"] or "-",
            r["date_naissance"],
            r["phone"] or "-",
            r["type"] or "-",
            r["statut"] or "-",
            ", ".join(f"{t['role']} {t['phone']}" for t in r["tiers"]) or "-",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(len(header) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[-1]]))
    return 0


def dossiers_main(argv: Sequence[str], prog: str = "callcenter dossiers") -> int:
    """Entry point of ``callcenter dossiers``.

    Args:
        argv: The arguments after ``dossiers``.
        prog: Program name shown in usage and errors.

    Returns:
        The exit status: 0 on success, 1 on a refused load or a rejected import row, 2 on a
        usage or configuration error, 130 for an interrupted import.
    """
    args = build_parser(prog).parse_args(list(argv))
    try:
        if args.command in dossiers_dedup_cli.COMMANDS:
            return dossiers_dedup_cli.run(args)
        if args.command == "import":
            return _cmd_import(args)
        if args.command == "demo":
            return _cmd_demo(args)
        return _cmd_list(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(dossiers_main(sys.argv[1:]))
