"""Benchmark of the dossier store: caller lookup and dossier snapshot latency at scale.

Seeds ``--count`` synthetic usagers (bulk insert: ``executemany`` on SQLite, ``COPY`` on
PostgreSQL) with, per usager, one mobile number (20 % a second, landline, number), one demande
(30 % a second) with four status rows, missing documents (20 % of demandes), decisions (50 %),
a carer with a phone (10 %), a rendez-vous (30 %) and six monthly payments (50 %). Then measures,
through the repository exactly as the bot calls it (each call its own transaction, audit row and
commit included, engine from ``make_engine``):

- ``find_by_phone``: caller-ID lookup of a random usager's own number;
- ``find_by_dossier_number``: lookup of a random numéro;
- ``dossier_snapshot``: assembly of a random usager's full snapshot (role usager).

Prints JSON: seed time and rows/s, then p50/p99/max in ms per operation and backend. Target
(issue 4): p99 <= 5 ms with 500 000 usagers.

Usage: ``.venv/bin/python bench/store.py [--count 500000] [--samples 2000]
[--backends sqlite,postgresql] [--pg-url postgresql://postgres@127.0.0.1:5432/test]``.
PostgreSQL runs in a temporary schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from callcenter.store import db
from callcenter.store.dossiers import (
    Role,
    Via,
    dossier_snapshot,
    find_by_dossier_number,
    find_by_phone,
)

TODAY = date(2025, 6, 12)
NOMS = ("Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau")
PRENOMS = ("Jeanne", "Marie", "Louis", "Pierre", "Paulette", "Yvonne", "André", "Odette", "René")
APA_STEPS = ("RECU", "COMPLET", "EVALUATION_PLANIFIEE", "DECISION_NOTIFIEE", "EN_PAIEMENT")
MDPH_STEPS = ("DEPOSEE", "RECEVABLE", "EN_EVALUATION", "INSCRIT_CDAPH", "NOTIFIEE")

Row = tuple[Any, ...]


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": round(ordered[-1], 3)}


def own_phone(i: int) -> str:
    return f"+336{i:08d}"


def numero(i: int) -> str:
    return f"APA-2025-{i:06d}"


def _tables(count: int, seed: int) -> dict[str, tuple[Sequence[str], Iterator[Row]]]:
    """Column names and row generators of every table, parents first (ids set explicitly)."""
    now = datetime(2025, 6, 1, tzinfo=UTC)

    def usagers() -> Iterator[Row]:
        rng = random.Random(seed)
        for i in range(1, count + 1):
            birth = date(1925, 1, 1) + timedelta(days=rng.randrange(30_000))
            yield (i, f"P-{i:07d}", "Mme", rng.choice(NOMS), rng.choice(PRENOMS), birth, "fr",
                   "[]", now, now)  # fmt: skip

    def tiers() -> Iterator[Row]:
        for i in range(1, count + 1, 10):
            yield (i, i, f"T-{i}", "Martin", "Claire", "fille", "aidant",
                   '["appointments", "documents", "status"]', False)  # fmt: skip

    def phones() -> Iterator[Row]:
        pid = 0
        for i in range(1, count + 1):
            pid += 1
            yield (pid, i, None, own_phone(i), "mobile")
            if i % 5 == 0:
                pid += 1
                yield (pid, i, None, f"+331{i:08d}", "fixe")
            if i % 10 == 1:
                pid += 1
                yield (pid, i, i, f"+3378{i:07d}", "mobile")

    def demandes() -> Iterator[Row]:
        for i in range(1, count + 1):
            depot = TODAY - timedelta(days=30 + i % 300)
            yield (i, i, numero(i), f"2025{i:06d}", "APA_DOMICILE", depot, depot, depot)
            if i % 10 < 3:
                yield (count + i, i, f"MDPH-2024-{i:06d}", f"2024{i:06d}", "PCH", depot, None, None)

    def statuses() -> Iterator[Row]:
        sid = 0
        for i in range(1, count + 1):
            depot = TODAY - timedelta(days=30 + i % 300)
            for n, code in enumerate(APA_STEPS[: 2 + i % 3] + ("EN_PAIEMENT",)):
                sid += 1
                yield (sid, i, code, depot + timedelta(days=10 * n), None)
            if i % 10 < 3:
                for n, code in enumerate(MDPH_STEPS[:4]):
                    sid += 1
                    yield (sid, count + i, code, depot + timedelta(days=20 * n), None)

    def pieces() -> Iterator[Row]:
        for i in range(1, count + 1, 5):
            yield (i, i, "avis d'imposition", TODAY - timedelta(days=20), None, None)

    def decisions() -> Iterator[Row]:
        for i in range(1, count + 1, 2):
            d = TODAY - timedelta(days=40)
            yield (i, i, "APA_DOMICILE", "accord", d, d, d, d + timedelta(days=1000), False,
                   60_000 + i % 20_000, 1 + i % 6, 10.0, None)  # fmt: skip

    def rdvs() -> Iterator[Row]:
        for i in range(1, count + 1):
            if i % 10 < 3:
                start = datetime(2025, 6, 15, 8, tzinfo=UTC) + timedelta(hours=i % 500)
                yield (i, i, i, "evaluation_domicile", start, "à domicile", False)

    def paiements() -> Iterator[Row]:
        pid = 0
        for i in range(1, count + 1, 2):
            for month in range(1, 8):
                pid += 1
                status = "verse" if month < 6 else ("mandate" if month == 6 else "prevu")
                yield (pid, i, i, "APA_DOMICILE", date(2025, month, 1), date(2025, month, 10),
                       64_512, 8_064, 56_448, "virement", status, None, "1234")  # fmt: skip

    return {
        "usager": (("id", "external_id", "civilite", "nom", "prenom", "date_naissance", "langue",
                    "besoins", "created_at", "updated_at"), usagers()),
        "tiers": (("id", "usager_id", "external_id", "nom", "prenom", "relation", "role",
                   "may_know", "mandat_verifie"), tiers()),
        "usager_phone": (("id", "usager_id", "tiers_id", "e164", "kind"), phones()),
        "demande": (("id", "usager_id", "numero", "numero_chiffres", "type", "date_depot",
                     "date_recevabilite", "date_limite_legale"), demandes()),
        "demande_status": (("id", "demande_id", "code", "date_statut", "detail"), statuses()),
        "piece_manquante": (("id", "demande_id", "piece", "date_demande", "date_relance",
                             "date_recue"), pieces()),
        "decision": (("id", "demande_id", "prestation", "sens", "date_decision",
                      "date_notification", "date_debut", "date_fin", "sans_limitation",
                      "montant_cents", "gir", "taux_participation", "recours_jusqu_au"),
                     decisions()),
        "rendez_vous": (("id", "usager_id", "demande_id", "type", "debut", "lieu", "annule"),
                        rdvs()),
        "paiement": (("id", "usager_id", "demande_id", "prestation", "periode", "date_paiement",
                      "montant_brut_cents", "participation_cents", "montant_verse_cents", "mode",
                      "statut", "motif_ecart", "iban_last4"), paiements()),
    }  # fmt: skip


def _sqlite_value(value: Any) -> Any:
    # The formats SQLAlchemy's SQLite Date/DateTime types store and parse.
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


def _chunks(rows: Iterator[Row], size: int) -> Iterator[list[Row]]:
    chunk: list[Row] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def seed(engine: Engine, count: int, seed_value: int) -> dict[str, Any]:
    """Bulk-load the synthetic dossiers; return row counts and rates."""
    started = time.perf_counter()
    rows_total = 0
    with engine.begin() as conn:
        raw: Any = conn.connection.driver_connection
        for table, (columns, rows) in _tables(count, seed_value).items():
            names = ", ".join(columns)
            if engine.dialect.name == "postgresql":
                with raw.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                        rows_total += 1
            else:
                marks = ", ".join("?" * len(columns))
                cur = raw.cursor()
                for chunk in _chunks(rows, 50_000):
                    cur.executemany(
                        f"INSERT INTO {table} ({names}) VALUES ({marks})",
                        [tuple(_sqlite_value(v) for v in row) for row in chunk],
                    )
                    rows_total += len(chunk)
                cur.close()
    loaded = time.perf_counter() - started
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    seconds = time.perf_counter() - started
    return {
        "rows": rows_total,
        "seed_s": round(seconds, 1),
        "rows_per_s": round(rows_total / loaded),
    }


def _time(samples: int, op: Callable[[int], object], count: int, rng: random.Random) -> list[float]:
    timings: list[float] = []
    for _ in range(samples):
        i = rng.randrange(1, count + 1)
        started = time.perf_counter()
        result = op(i)
        timings.append((time.perf_counter() - started) * 1000)
        if not result:
            raise RuntimeError(f"usager {i} not found: the seed is wrong")
    return timings


def measure(engine: Engine, count: int, samples: int) -> dict[str, Any]:
    rng = random.Random(7)
    access: dict[str, Any] = {"actor": "bench", "reason": "benchmark", "via": Via.BOT}

    def by_phone(i: int) -> object:
        return find_by_phone(engine, own_phone(i), **access)

    def by_numero(i: int) -> object:
        return find_by_dossier_number(engine, numero(i), **access)

    def snapshot(i: int) -> object:
        return dossier_snapshot(engine, i, role=Role.USAGER, today=TODAY, **access)

    results: dict[str, Any] = {}
    for name, op in (
        ("find_by_phone", by_phone),
        ("find_by_dossier_number", by_numero),
        ("dossier_snapshot", snapshot),
    ):
        _time(min(200, samples), op, count, rng)  # warm the caches and the pool
        results[name] = _percentiles(_time(samples, op, count, rng))
    return results


def run_sqlite(count: int, samples: int, seed_value: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        engine = db.make_engine(f"sqlite:///{Path(tmp) / 'callcenter.sqlite3'}")
        try:
            db.create_schema(engine)
            loaded = seed(engine, count, seed_value)
            return {"seed": loaded, **measure(engine, count, samples)}
        finally:
            engine.dispose()


def run_postgresql(url: str, count: int, samples: int, seed_value: int) -> dict[str, Any]:
    schema = f"bench_store_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in url else "?"
        engine = db.make_engine(f"{url}{sep}options=-csearch_path%3D{schema}")
        try:
            db.create_schema(engine)
            loaded = seed(engine, count, seed_value)
            return {"seed": loaded, **measure(engine, count, samples)}
        finally:
            engine.dispose()
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=500_000, help="usagers to seed")
    parser.add_argument("--samples", type=int, default=2000, help="timed calls per operation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"count": args.count, "samples": args.samples, "target_p99_ms": 5.0}
    for backend in args.backends.split(","):
        if backend == "sqlite":
            report["sqlite"] = run_sqlite(args.count, args.samples, args.seed)
        elif backend == "postgresql":
            report["postgresql"] = run_postgresql(args.pg_url, args.count, args.samples, args.seed)
        else:
            parser.error(f"unknown backend {backend!r}")
        print(json.dumps({backend: report[backend]}), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
