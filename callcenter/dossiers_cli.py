"""``callcenter dossiers``: demo dossiers for the line (issue 4, part 3).

``demo --count N --seed S [--today YYYY-MM-DD]`` writes a deterministic synthetic set
(:mod:`callcenter.store.demo`) and prints a one-line JSON summary; ``list [--json] [--limit N]``
prints what a tester needs to call the line as a demo usager: numéro de dossier, birth date as
keyed (``JJMMAAAA``), phone, type and current status. Every dossier listed is read through the
repository's audited snapshot (actor ``cli``, reason ``dossiers list``). Both take the
``--config`` and ``--data-dir`` options of ``callcenter serve`` and migrate the database first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import date
from typing import Any

from sqlalchemy import Engine, select

from callcenter.cli import common_options
from callcenter.config import Config, ConfigError, load_config
from callcenter.store import db, demo
from callcenter.store import dossiers as repo
from callcenter.store.audit import Via, transaction
from callcenter.store.dossier_models import MDPH_TYPES, DemandeType

LIST_ACTOR = "cli"
LIST_REASON = "dossiers list"

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


def build_parser(prog: str = "callcenter dossiers") -> argparse.ArgumentParser:
    """Build the argument parser of ``callcenter dossiers``."""
    common = common_options()

    parser = argparse.ArgumentParser(prog=prog, description="Dossiers of the line: demo data.")
    sub = parser.add_subparsers(dest="command", required=True)

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
        The exit status: 0 on success, 1 on a refused load, 2 on a usage or configuration
        error.
    """
    args = build_parser(prog).parse_args(list(argv))
    try:
        if args.command == "demo":
            return _cmd_demo(args)
        return _cmd_list(args)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(dossiers_main(sys.argv[1:]))
