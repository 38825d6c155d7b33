"""Benchmark of the duplicate finder: scan time and precision/recall at 500 000 usagers.

Builds a seeded set (:func:`callcenter.store.dedup_seed.seeded_set`: demo usagers, perturbed
copies of 1 % of them, hard negatives for 0.3 %), writes the usagers and their own phones to a
SQLite store (bulk ``executemany``; only the tables the scan reads), then times
:func:`callcenter.store.duplicates.find_duplicates` exactly as ``callcenter dossiers
duplicates`` calls it (read, block, score, audit) and compares the pairs with the truth.

Two precisions are printed: ``precision`` counts every flagged pair that is not an injected
duplicate as false (including look-alikes that the generator made by chance among the demo
usagers: same names, same or one-digit-apart birth dates), ``precision_labelled`` only the
pairs that involve an injected record (copies and hard negatives), whose truth is known.
By default demo surnames are redrawn from a vocabulary of about 12 500 (``--demo-surnames``
keeps the demo's 80, which at this size makes tens of thousands of real look-alikes).

The store is kept in ``--db`` (default: a temporary file) with the truth beside it
(``.truth.json``), and reused when it matches the options: a second run times the scan alone.

Usage: ``.venv/bin/python bench/store_duplicates.py [--count 500000] [--seed 23]
[--duplicates N] [--negatives N] [--min-score 70] [--demo-surnames] [--db PATH]``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select

from callcenter.store import db, dedup_seed, demo
from callcenter.store.audit import Via
from callcenter.store.dossiers import PHONE, USAGER, normalize_phone
from callcenter.store.duplicates import ScanConfig, find_duplicates

TODAY = date(2026, 1, 15)
CHUNK = 20_000


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _write(engine: Engine, seeded: dedup_seed.SeededSet) -> dict[str, int]:
    """Bulk insert the usagers and their own phones; return external_id -> id."""
    now = datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC)
    rows = [
        {
            "external_id": u.external_id,
            "civilite": u.civilite,
            "nom": u.nom,
            "prenom": u.prenom,
            "nom_naissance": u.nom_naissance,
            "date_naissance": u.date_naissance,
            "langue": u.langue,
            "besoins": list(u.besoins),
            "mesure_protection": u.mesure_protection,
            "nir_hash": u.nir_hash,
            "created_at": now,
            "updated_at": now,
        }
        for u in seeded.usagers
    ]
    with engine.begin() as conn:
        for start in range(0, len(rows), CHUNK):
            conn.execute(insert(USAGER), rows[start : start + CHUNK])
        ids = {e: i for i, e in conn.execute(select(USAGER.c.id, USAGER.c.external_id))}
        cache: dict[str, str | None] = {}
        phones: list[dict[str, Any]] = []
        for u in seeded.usagers:
            kept: list[str] = []
            for raw in u.phones:
                if raw not in cache:
                    cache[raw] = normalize_phone(raw)
                e164 = cache[raw]
                if e164 is not None and e164 not in kept:
                    kept.append(e164)
            phones.extend(
                {"usager_id": ids[u.external_id], "tiers_id": None, "e164": e, "kind": "fixe"}
                for e in kept
            )
        for start in range(0, len(phones), CHUNK):
            conn.execute(insert(PHONE), phones[start : start + CHUNK])
    return ids


def _truth_json(seeded: dedup_seed.SeededSet) -> dict[str, Any]:
    return {
        "duplicates": [[p.first, p.second, p.kind] for p in seeded.duplicates],
        "negatives": [[p.first, p.second, p.kind] for p in seeded.negatives],
    }


def _truth(data: dict[str, Any]) -> dedup_seed.SeededSet:
    return dedup_seed.SeededSet(
        usagers=(),
        duplicates=tuple(dedup_seed.LabelledPair(*p) for p in data["duplicates"]),
        negatives=tuple(dedup_seed.LabelledPair(*p) for p in data["negatives"]),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500_000, help="demo usagers")
    parser.add_argument("--seed", type=int, default=23, help="seed (not the tuning seed, 11)")
    parser.add_argument("--duplicates", type=int, default=None, help="copies (default 1 %%)")
    parser.add_argument("--negatives", type=int, default=None, help="negatives (default 0.3 %%)")
    parser.add_argument("--min-score", type=int, default=70, help="threshold (default 70)")
    parser.add_argument("--demo-surnames", action="store_true", help="keep the demo's 80")
    parser.add_argument("--db", type=Path, default=None, help="SQLite file to build or reuse")
    args = parser.parse_args(argv)
    duplicates = args.duplicates if args.duplicates is not None else args.count // 100
    negatives = args.negatives if args.negatives is not None else args.count * 3 // 1000
    options = {
        "count": args.count,
        "seed": args.seed,
        "duplicates": duplicates,
        "negatives": negatives,
        "diverse_surnames": not args.demo_surnames,
    }
    tmp = None
    if args.db is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-dedup-")
        path = Path(tmp.name) / "callcenter.sqlite3"
    else:
        path = args.db
    truth_path = path.with_suffix(".truth.json")
    result: dict[str, Any] = {"backend": "sqlite", **options, "min_score": args.min_score}
    try:
        reuse = False
        stored: dict[str, Any] = {}
        if path.exists() and truth_path.exists():
            stored = json.loads(truth_path.read_text())
            reuse = stored.get("options") == options
            if not reuse:
                print(f"{path} was built with other options; remove it", file=sys.stderr)
                return 2
        engine = db.make_engine(f"sqlite:///{path}")
        if reuse:
            truth = _truth(stored)
            result["reused_db"] = True
        else:
            t0 = time.perf_counter()
            seeded = dedup_seed.seeded_set(
                args.count,
                args.seed,
                TODAY,
                duplicates=duplicates,
                negatives=negatives,
                diverse_surnames=not args.demo_surnames,
            )
            result["generate_seconds"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            db.create_schema(engine)
            _write(engine, seeded)
            result["write_seconds"] = round(time.perf_counter() - t0, 1)
            truth_path.write_text(json.dumps({"options": options, **_truth_json(seeded)}))
            truth = _truth(_truth_json(seeded))
            del seeded
            result["reused_db"] = False
        rss_before = _max_rss_mb()
        t0 = time.perf_counter()
        scan = find_duplicates(
            engine,
            actor="bench",
            reason="duplicates benchmark",
            via=Via.CLI,
            config=ScanConfig(min_score=args.min_score),
        )
        result["scan_seconds"] = round(time.perf_counter() - t0, 2)
        result["stats"] = scan.stats.as_json()
        result["max_rss_mb"] = {"before_scan": round(rss_before), "after": round(_max_rss_mb())}
        with engine.connect() as conn:
            ext = {i: e for i, e in conn.execute(select(USAGER.c.id, USAGER.c.external_id))}
        engine.dispose()
        flagged = {frozenset((ext[p.first_id], ext[p.second_id])) for p in scan.pairs}
        evaluation = dedup_seed.evaluate(flagged, truth)
        result["evaluation"] = evaluation.as_json()
        injected = {
            frozenset(pair)
            for pair in flagged
            if any(not e.startswith(demo.DEMO_PREFIX) for e in pair)
        }
        labelled = dedup_seed.evaluate(injected, truth)
        result["precision_labelled"] = round(labelled.precision, 4)
        result["base_lookalikes_flagged"] = len(flagged) - len(injected)
        # Higher thresholds, from the same scan: what --min-score buys.
        result["by_threshold"] = {}
        for threshold in range(args.min_score, 101, 5):
            kept = {
                frozenset((ext[p.first_id], ext[p.second_id]))
                for p in scan.pairs
                if p.score >= threshold
            }
            ev = dedup_seed.evaluate(kept, truth)
            result["by_threshold"][threshold] = {
                "flagged": ev.flagged,
                "precision": round(ev.precision, 4),
                "recall": round(ev.recall, 4),
            }
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
