"""Benchmark of ``callcenter dossiers import``: rows per second for a large back-office extract.

Generates a seeded extract with the demo generator (:func:`callcenter.store.demo.generate`:
realistic usagers, carers and guardians, demandes with their status histories, documents,
decisions, rendez-vous and monthly payments), each usager with a valid NIR, written in the
documented format (:mod:`callcenter.store.importer` writers):

- ``--format csv`` (default): the eight CSV files, French conventions (``;``, ``JJ/MM/AAAA``,
  decimal comma); ``--rows`` counts CSV lines over all files (about 19 per usager);
- ``--format jsonl``: one usager object per line; ``--rows`` counts usagers.

Then imports it into an empty store with :func:`~callcenter.store.importer.run_import`, exactly as
the command does (batches of ``--batch-size``, NIR hashed with a key), and imports it a second
time (every row ``unchanged``: the cost of a daily re-import of an unchanged extract).

Prints JSON: the extract (rows, usagers, records, bytes, generation time) and, per backend, the
first and second import's seconds, rows/s and records/s (a record is a row of a store table:
usager, tiers, demande, status, document, decision, rendez-vous or payment).

Usage: ``.venv/bin/python bench/store_import.py [--rows 500000] [--format csv|jsonl]
[--backend sqlite|postgres|both] [--batch-size 500] [--seed 1]
[--pg-url postgresql://postgres@127.0.0.1:5432/test]``. PostgreSQL runs in a temporary schema
that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import text

from callcenter.store import db, demo, importer
from callcenter.store.dossiers import UsagerRecord

TODAY = date(2025, 6, 12)
KEY = b"benchmark-nir-key-0123456789"


def nir_of(usager: UsagerRecord) -> str:
    """A valid NIR (syntax and key) for a demo usager: Deux-Sèvres, order from its index."""
    sex = "2" if usager.civilite == "Mme" else "1"
    index = int(usager.external_id.rsplit("-", 1)[1])
    body = (
        f"{sex}{usager.date_naissance.year % 100:02d}{usager.date_naissance.month:02d}"
        f"79{191 + index // 1000:03d}{index % 1000:03d}"
    )
    return f"{body}{97 - int(body) % 97:02d}"


def _records(bundle: demo.DemoUsager) -> int:
    return (
        1
        + len(bundle.tiers)
        + len(bundle.demandes)
        + sum(len(d.statuses) + len(d.pieces) + len(d.decisions) for d in bundle.demandes)
        + len(bundle.rendez_vous)
        + len(bundle.paiements)
    )


def generate(rows: int, fmt: str, seed: int, directory: Path) -> dict[str, Any]:
    """Write an extract of about ``rows`` rows; return what it holds."""
    started = time.perf_counter()
    counted = {"usagers": 0, "records": 0}

    def bundles() -> Iterator[demo.DemoUsager]:
        for bundle in demo.generate(10**9, seed, TODAY):
            done = counted["usagers"] if fmt == "jsonl" else counted["records"]
            if done >= rows:
                return
            counted["usagers"] += 1
            counted["records"] += _records(bundle)
            yield bundle

    if fmt == "jsonl":
        importer.write_jsonl(directory / "usagers.jsonl", bundles(), nir=nir_of)
    else:
        importer.write_csv(directory, bundles(), nir=nir_of)
    files = sorted(p for p in directory.iterdir() if p.suffix in (".csv", ".jsonl"))
    return {
        "format": fmt,
        "rows": counted["usagers"] if fmt == "jsonl" else counted["records"],
        "usagers": counted["usagers"],
        "records": counted["records"],
        "bytes": sum(p.stat().st_size for p in files),
        "files": [p.name for p in files],
        "generation_s": round(time.perf_counter() - started, 2),
    }


def _import(url: str, files: list[importer.ImportFile], batch_size: int) -> dict[str, Any]:
    engine = db.make_engine(url)
    try:
        db.create_schema(engine)
        result: dict[str, Any] = {}
        for label in ("first", "again"):
            summary = importer.run_import(engine, files, nir_key=KEY, batch_size=batch_size)
            if summary.rejected or summary.files_rejected or summary.interrupted:
                raise SystemExit(f"{label} import rejected rows: {summary.errors[:5]}")
            records = sum(summary.counts[k][r] for k in summary.counts for r in importer.RESULTS)
            result[label] = {
                "seconds": round(summary.seconds, 2),
                "rows": summary.rows,
                "rows_per_s": round(summary.rows_per_s),
                "records_per_s": round(records / summary.seconds),
                "usagers": dict(summary.counts["usagers"]),
                "children_written": summary.children_written,
                "batches": summary.batches,
            }
        return result
    finally:
        engine.dispose()


def bench_sqlite(files: list[importer.ImportFile], batch_size: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        return _import(f"sqlite:///{Path(tmp) / 'callcenter.sqlite3'}", files, batch_size)


def bench_postgres(
    files: list[importer.ImportFile], batch_size: int, pg_url: str
) -> dict[str, Any]:
    schema = f"bench_import_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_url else "?"
    try:
        return _import(f"{pg_url}{sep}options=-csearch_path%3D{schema}", files, batch_size)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--batch-size", type=int, default=importer.DEFAULT_BATCH_SIZE)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        extract = generate(args.rows, args.format, args.seed, Path(tmp))
        files = importer.plan_files(sorted(Path(tmp).iterdir()))
        out: dict[str, Any] = {"extract": extract, "batch_size": args.batch_size}
        if args.backend in ("sqlite", "both"):
            out["sqlite"] = bench_sqlite(files, args.batch_size)
            print(json.dumps({"sqlite": out["sqlite"]}), file=sys.stderr)
        if args.backend in ("postgres", "both"):
            out["postgresql"] = bench_postgres(files, args.batch_size, args.pg_url)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
