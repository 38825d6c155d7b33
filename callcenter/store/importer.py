"""Import of back-office extracts into the dossier store (issue 4, part 2).

The formats (JSON array, JSON Lines, one CSV file per record kind) are documented in
``docs/import-format.md``. :func:`plan_files` recognises the files, :func:`run_import` reads,
validates and writes them; :func:`write_jsonl`, :func:`write_json` and :func:`write_csv` write
records in the same formats (for tests, benchmarks and examples).

Rules this module owns:

1. A row is all or nothing. A row is one usager with everything nested (JSON) or one CSV line.
   Every error names the file, the line and the field; a row with an error writes nothing, and
   the import goes on with the next row.
2. Idempotence. Rows are keyed as :mod:`callcenter.store.dossiers` keys them (usager by
   ``external_id``, demande by ``numero``...). A row is compared with what the store holds and
   only what differs is written: importing the same extract twice writes nothing the second
   time, and the counts say ``unchanged``. Nothing is ever deleted except a usager's (or a
   tiers's) phone numbers, which the row replaces as a whole.
3. Batches. Rows are written ``batch_size`` at a time in one transaction: the rows' keys are
   fetched in one query per table, then inserts and updates go out as ``executemany``. A database
   error rolls the batch back and the batch is replayed row by row (one savepoint per row), so
   only the failing row is rejected. A killed import leaves whole batches only, and running it
   again completes it (rule 2).
4. No NIR in clear. A ``nir`` value is checked (syntax, mod 97 key) and turned into its keyed
   hash (:func:`callcenter.store.dossiers.nir_hash`) as soon as it is read; the clear value is
   neither kept, stored, nor printed. Without a configured key, a NIR is a row error.
5. Error messages quote a value only when it is a date, a number or a code; never a name, a
   phone number, a NIR or an IBAN. The audit entry carries counts and file names only.
6. A merged usager (``usager.merged_into`` set: a tombstone) is never written again: a row
   naming it is rejected and names the usager it was merged into.
"""

from __future__ import annotations

import codecs
import csv
import enum
import functools
import io
import json
import re
import time as _time
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    Table,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc

from callcenter.store import db
from callcenter.store.audit import AUDIT, Via, as_utc
from callcenter.store.dossier_models import (
    DEFAULT_MAY_KNOW,
    STATUSES_BY_CIRCUIT,
    CommunicationNeed,
    DemandeType,
    PaymentStatus,
    ProtectionMeasure,
    TiersRole,
    Topic,
    circuit_of,
)
from callcenter.store.dossiers import (
    DECISION,
    DEMANDE,
    PAIEMENT,
    PHONE,
    PIECE,
    RDV,
    STATUS,
    TIERS,
    USAGER,
    DecisionRecord,
    DemandeRecord,
    PaiementRecord,
    PieceRecord,
    RendezVousRecord,
    StatusRecord,
    TiersRecord,
    UsagerRecord,
    _phone_kind,
    nir_hash,
    normalize_numero,
    normalize_phone,
    numero_digits,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "FileReport",
    "ImportFile",
    "ImportSummary",
    "ImportUsageError",
    "Kind",
    "RowError",
    "UsagerBundle",
    "bundle_to_json",
    "nir_key_ok",
    "plan_files",
    "run_import",
    "write_csv",
    "write_json",
    "write_jsonl",
]

DEFAULT_BATCH_SIZE = 500
"""Rows per transaction."""

LOCAL_TZ = ZoneInfo("Europe/Paris")
"""A date and time without an offset is local time in France."""

IMPORT_ACTOR = "cli"
IMPORT_REASON = "dossiers import"

MAX_KEPT_ERRORS = 100
"""The summary keeps this many errors (all of them go to ``on_error``)."""

_IN_CHUNK = 1000
"""At most this many values in one ``IN (...)`` of a prefetch query."""

_INT_MAX = 2**31 - 1
"""PostgreSQL ``integer``: amounts in cents above this do not fit."""

_ROW_LEVEL_DB_ERRORS = (sa_exc.IntegrityError, sa_exc.DataError)
"""Database errors a single row can cause; any other database error stops the import."""


class Kind(enum.StrEnum):
    """What a CSV file holds, in the order the files are applied (parents first)."""

    USAGERS = "usagers"
    TIERS = "tiers"
    DEMANDES = "demandes"
    STATUTS = "statuts"
    PIECES = "pieces"
    DECISIONS = "decisions"
    RENDEZ_VOUS = "rendez_vous"
    PAIEMENTS = "paiements"


_KIND_ALIASES: dict[str, Kind] = {
    **{k.value: k for k in Kind},
    "statuses": Kind.STATUTS,
    "pieces_manquantes": Kind.PIECES,
    "rdv": Kind.RENDEZ_VOUS,
}

_KIND_ORDER = {kind: i for i, kind in enumerate(Kind)}


class ImportUsageError(Exception):
    """A file cannot be imported at all (unknown format or kind, unreadable): nothing is read."""


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class RowError:
    """Why a row (or a whole file) was rejected."""

    file: str
    """The file as given on the command line."""
    line: int
    """Line where the row starts (1-based)."""
    field: str
    """The column, or the path of the field in a JSON object (``demandes[0].numero``)."""
    message: str
    """What is wrong; quotes a value only if it is a date, a number or a code."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"

    def as_json(self) -> dict[str, Any]:
        """Return the error as a JSON-ready dict."""
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


@dataclass(frozen=True, slots=True)
class ImportFile:
    """A file to import, with its format and (for CSV) the record kind it holds."""

    path: Path
    format: str
    """``json`` (an array), ``jsonl`` or ``csv``."""
    kind: Kind | None
    """The CSV record kind; None for JSON (whole usagers)."""


@dataclass(frozen=True, slots=True)
class FileReport:
    """What was read from one file."""

    file: str
    format: str
    kind: str | None
    encoding: str | None
    """``utf-8`` (with or without BOM) or ``cp1252``; None if the file could not be read."""
    delimiter: str | None
    """The CSV delimiter found in the header line."""
    rows: int
    rejected: int

    def as_json(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "file": self.file,
            "format": self.format,
            "kind": self.kind,
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "rows": self.rows,
            "rejected": self.rejected,
        }


RESULTS = ("inserted", "updated", "unchanged")
CHILD_KINDS = tuple(k.value for k in Kind if k is not Kind.USAGERS)


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import read and wrote."""

    files: tuple[FileReport, ...]
    rows: int
    """Rows read (usager objects for JSON, lines for CSV), rejected ones included."""
    rejected: int
    """Rows rejected (nothing of them was written)."""
    files_rejected: int
    """Files that could not be read at all (bad header, not text): none of their rows counts."""
    counts: Mapping[str, Mapping[str, int]]
    """Per record kind (``usagers``, ``tiers``, ``demandes``, ``statuts``...): how many were
    ``inserted``, ``updated`` or ``unchanged``. A usager counts as updated when its own fields or
    its own phone numbers changed (its children are counted on their own)."""
    errors: tuple[RowError, ...]
    """The first :data:`MAX_KEPT_ERRORS` errors."""
    errors_total: int
    notices: tuple[str, ...]
    """What the operator should know but is no error (cp1252 read, columns ignored...)."""
    batches: int
    """Batches committed (rolled back at the end of a dry run)."""
    seconds: float
    dry_run: bool
    interrupted: bool
    """The import was stopped (SIGINT) or aborted by a database failure before the end."""
    failure: str | None = None
    """Why the import stopped early, when it did for a database failure."""

    @property
    def imported(self) -> int:
        """Rows accepted."""
        return self.rows - self.rejected

    @property
    def children_written(self) -> int:
        """Child records inserted or updated (tiers, demandes, statuses...)."""
        return sum(
            self.counts[kind]["inserted"] + self.counts[kind]["updated"] for kind in CHILD_KINDS
        )

    @property
    def rows_per_s(self) -> float:
        """Rows read per second."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_json(self) -> dict[str, Any]:
        """Return the summary as a JSON-ready dict."""
        return {
            "dry_run": self.dry_run,
            "interrupted": self.interrupted,
            "failure": self.failure,
            "files": [f.as_json() for f in self.files],
            "rows": self.rows,
            "imported": self.imported,
            "rejected": self.rejected,
            "files_rejected": self.files_rejected,
            "usagers": dict(self.counts[Kind.USAGERS.value]),
            "children": {kind: dict(self.counts[kind]) for kind in CHILD_KINDS},
            "children_written": self.children_written,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "notices": list(self.notices),
            "errors_total": self.errors_total,
            "errors": [e.as_json() for e in self.errors],
        }


# --------------------------------------------------------------------------------------------
# Values


class _Bad(ValueError):
    """A value that cannot be read (the message quotes it only if it is safe to)."""


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Bad("expected text")
    return str(value).strip()


def _text_of(table: Table, column: str) -> Callable[[Any], str]:
    length = getattr(table.c[column].type, "length", None)

    def parse(value: Any) -> str:
        text = _text(value)
        if length is not None and len(text) > length:
            raise _Bad(f"longer than {length} characters")
        return text

    return parse


def _free_text(value: Any) -> str:
    return _text(value)


_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_FR_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def _date(value: Any) -> date:
    if isinstance(value, str):
        text = value.strip()
        iso = _ISO_DATE.fullmatch(text)
        fr = None if iso else _FR_DATE.fullmatch(text)
        try:
            if iso:
                return date(int(iso[1]), int(iso[2]), int(iso[3]))
            if fr:
                return date(int(fr[3]), int(fr[2]), int(fr[1]))
        except ValueError:
            pass
    raise _Bad(f"not a date: {value!r}")


_FR_DATETIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2})[:hH](\d{2})(?::(\d{2}))?")
_ISO_DATETIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"
)


def _datetime(value: Any) -> datetime:
    if isinstance(value, str):
        text = value.strip()
        parsed: datetime | None = None
        try:
            if _ISO_DATETIME.fullmatch(text):
                parsed = datetime.fromisoformat(text)
            elif m := _FR_DATETIME.fullmatch(text):
                parsed = datetime(
                    int(m[3]), int(m[2]), int(m[1]), int(m[4]), int(m[5]), int(m[6] or 0)
                )
        except ValueError:
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=LOCAL_TZ)
            return parsed.astimezone(UTC)
    raise _Bad(f"not a date and time: {value!r}")


def _month(value: Any) -> date:
    """A period: ``2025-06``, ``06/2025`` or any date of the month (its first day is kept)."""
    if isinstance(value, str):
        text = value.strip()
        if m := re.fullmatch(r"(\d{4})-(\d{1,2})", text):
            year, month = int(m[1]), int(m[2])
        elif m := re.fullmatch(r"(\d{1,2})/(\d{4})", text):
            year, month = int(m[2]), int(m[1])
        else:
            try:
                return _date(text).replace(day=1)
            except _Bad:
                raise _Bad(f"not a month: {value!r}") from None
        if 1 <= month <= 12:
            return date(year, month, 1)
    raise _Bad(f"not a month: {value!r}")


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool):
        raise _Bad(f"not {what}: {value!r}")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        text = re.sub(r"[\s\u00a0\u202f€]", "", value)
        if "," in text:
            if "." in text and text.index(".") < text.index(","):
                text = text.replace(".", "")  # 1.234,56: dots group the thousands
            text = text.replace(",", ".")
        if re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", text):
            try:
                return Decimal(text)
            except InvalidOperation:
                pass
    raise _Bad(f"not {what}: {value!r}")


def _cents(value: Any) -> int:
    """An amount in euros (``1 234,56``, ``1234.56``, a JSON number) as integer cents."""
    amount = _decimal(value, "an amount in euros")
    cents = amount * 100
    if cents != cents.to_integral_value():
        raise _Bad(f"more than two decimals: {value!r}")
    if abs(cents) > _INT_MAX:
        raise _Bad(f"too large: {value!r}")
    return int(cents)


def _percent(value: Any) -> float:
    return float(_decimal(value, "a number"))


def _int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
        return int(value.strip())
    raise _Bad(f"not a whole number: {value!r}")


_TRUE = frozenset({"1", "true", "oui", "o", "vrai", "yes", "y", "x"})
_FALSE = frozenset({"0", "false", "non", "n", "faux", "no"})


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Bad(f"not oui/non: {value!r}")


def _items(value: Any) -> list[Any]:
    """A list: a JSON array, or text with ``|`` between the items."""
    if isinstance(value, list):
        return [v for v in value if not _blank(v)]
    if isinstance(value, str):
        return [part.strip() for part in value.split("|") if part.strip()]
    raise _Bad("expected a list")


def _choice(allowed: Iterable[str], what: str) -> Callable[[Any], str]:
    canonical = {v.lower(): v for v in allowed}
    shown = ", ".join(canonical.values())

    def parse(value: Any) -> str:
        text = _text(value)
        found = canonical.get(text.lower())
        if found is None:
            raise _Bad(f"unknown {what} {text!r} (expected one of {shown})")
        return found

    return parse


def _choices(allowed: Iterable[str], what: str) -> Callable[[Any], tuple[str, ...]]:
    one = _choice(allowed, what)

    def parse(value: Any) -> tuple[str, ...]:
        out: list[str] = []
        for item in _items(value):
            choice = one(item)
            if choice not in out:
                out.append(choice)
        return tuple(out)

    return parse


def _phones(value: Any) -> tuple[str, ...]:
    """Phone numbers, any usual form; each must be a valid number (never quoted)."""
    out: list[str] = []
    for i, raw in enumerate(_items(value), start=1):
        if not isinstance(raw, str | int) or isinstance(raw, bool):
            raise _Bad(f"item {i} is not a phone number")
        e164 = normalize_phone(str(raw))
        if e164 is None:
            raise _Bad(f"item {i} is not a valid phone number")
        if e164 not in out:
            out.append(e164)
    return tuple(out)


def _langue(value: Any) -> str:
    text = _text(value).lower()
    if not re.fullmatch(r"[a-z]{2,3}", text):
        raise _Bad(f"not a language code (fr, en, ar...): {text!r}")
    return text


_NONE_WORDS = frozenset({"aucun", "aucune", "none", "-"})


def _may_know(value: Any) -> frozenset[Topic] | None:
    if isinstance(value, str) and value.strip().lower() in _NONE_WORDS:
        return frozenset()
    topics = _choices([t.value for t in Topic], "topic")(value)
    return frozenset(Topic(t) for t in topics)


def _iban_last4(value: Any) -> str:
    text = re.sub(r"\s", "", _text(value)).upper()
    if not re.fullmatch(r"[0-9A-Z]{1,4}", text):
        raise _Bad("at most the last four characters of the IBAN")
    return text


def nir_key_ok(compact: str) -> bool:
    """Return True if a 15-character NIR's last two digits are its key (97 - NIR mod 97).

    Corsica's department codes ``2A`` and ``2B`` count as 19 and 18.
    """
    if not re.fullmatch(r"[0-9]{5}(?:2A|2B|[0-9]{2})[0-9]{8}", compact):
        return False
    body = compact[:5] + compact[5:7].replace("2A", "19").replace("2B", "18") + compact[7:13]
    return 97 - int(body) % 97 == int(compact[13:])


def _nir(value: Any, key: bytes | None) -> str:
    """Check a NIR and return its keyed hash; the NIR is never quoted."""
    if key is None:
        raise _Bad("no NIR key configured (dossiers.nir_key_file): the NIR cannot be imported")
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise _Bad("not a NIR")
    compact = re.sub(r"[\s.]", "", str(value)).upper()
    if len(compact) != 15:
        raise _Bad("not a NIR: 15 characters expected (13 and the 2-digit key)")
    try:
        hashed = nir_hash(compact, key)
    except ValueError:
        raise _Bad("not a NIR") from None
    if not nir_key_ok(compact):
        raise _Bad("the key does not match the NIR (mod 97 check failed)")
    return hashed


# --------------------------------------------------------------------------------------------
# Field lists


@dataclass(frozen=True, slots=True)
class _F:
    """A field of a row: its name in the file, how to read it, whether it is required."""

    name: str
    parse: Callable[[Any], Any]
    required: bool = False


_USAGER_FIELDS = (
    _F("external_id", _text_of(USAGER, "external_id"), True),
    _F("civilite", _text_of(USAGER, "civilite")),
    _F("nom", _text_of(USAGER, "nom"), True),
    _F("prenom", _text_of(USAGER, "prenom"), True),
    _F("nom_naissance", _text_of(USAGER, "nom_naissance")),
    _F("date_naissance", _date, True),
    _F("langue", _langue),
    _F("besoins", _choices([n.value for n in CommunicationNeed], "need")),
    _F("mesure_protection", _choice([m.value for m in ProtectionMeasure], "measure")),
    _F("phones", _phones),
)
_TIERS_FIELDS = (
    _F("external_id", _text_of(TIERS, "external_id"), True),
    _F("civilite", _text_of(TIERS, "civilite")),
    _F("nom", _text_of(TIERS, "nom"), True),
    _F("prenom", _text_of(TIERS, "prenom")),
    _F("relation", _text_of(TIERS, "relation")),
    _F("role", _choice([r.value for r in TiersRole], "role"), True),
    _F("may_know", _may_know),
    _F("mandat_verifie", _bool),
    _F("phones", _phones),
)
_DEMANDE_FIELDS = (
    _F("numero", _text_of(DEMANDE, "numero"), True),
    _F("type", _choice([t.value for t in DemandeType], "type"), True),
    _F("date_depot", _date),
    _F("date_recevabilite", _date),
    _F("date_limite_legale", _date),
    _F("referent", _text_of(DEMANDE, "referent")),
)
_ALL_STATUS_CODES = frozenset(code for codes in STATUSES_BY_CIRCUIT.values() for code in codes)
_STATUS_FIELDS = (
    _F("code", _choice(sorted(_ALL_STATUS_CODES), "status"), True),
    _F("date", _date, True),
    _F("detail", _free_text),
)
_PIECE_FIELDS = (
    _F("piece", _text_of(PIECE, "piece"), True),
    _F("date_demande", _date),
    _F("date_relance", _date),
    _F("date_recue", _date),
)
_DECISION_FIELDS = (
    _F("prestation", _text_of(DECISION, "prestation"), True),
    _F("sens", _choice(("accord", "rejet", "partiel"), "sens"), True),
    _F("date_decision", _date, True),
    _F("date_notification", _date),
    _F("date_debut", _date),
    _F("date_fin", _date),
    _F("sans_limitation", _bool),
    _F("montant", _cents),
    _F("gir", _int),
    _F("taux_participation", _percent),
    _F("recours_jusqu_au", _date),
)
_RDV_FIELDS = (
    _F("type", _text_of(RDV, "type"), True),
    _F("debut", _datetime, True),
    _F("lieu", _text_of(RDV, "lieu")),
    _F("annule", _bool),
    _F("numero", _text_of(DEMANDE, "numero")),
)
_PAIEMENT_FIELDS = (
    _F("prestation", _text_of(PAIEMENT, "prestation"), True),
    _F("periode", _month, True),
    _F("date_paiement", _date, True),
    _F("montant_brut", _cents, True),
    _F("participation", _cents),
    _F("montant_verse", _cents),
    _F("mode", _text_of(PAIEMENT, "mode")),
    _F("statut", _choice([s.value for s in PaymentStatus], "payment status"), True),
    _F("motif_ecart", _text_of(PAIEMENT, "motif_ecart")),
    _F("iban_last4", _iban_last4),
    _F("numero", _text_of(DEMANDE, "numero")),
)

_USAGER_REF = _F("usager", _text_of(USAGER, "external_id"), True)
_NUMERO_REF = _F("numero", _text_of(DEMANDE, "numero"), True)

_CSV_FIELDS: dict[Kind, tuple[_F, ...]] = {
    Kind.USAGERS: (*_USAGER_FIELDS, _F("nir", _free_text)),
    Kind.TIERS: (_USAGER_REF, *_TIERS_FIELDS),
    Kind.DEMANDES: (_USAGER_REF, *_DEMANDE_FIELDS),
    Kind.STATUTS: (_NUMERO_REF, *_STATUS_FIELDS),
    Kind.PIECES: (_NUMERO_REF, *_PIECE_FIELDS),
    Kind.DECISIONS: (_NUMERO_REF, *_DECISION_FIELDS),
    Kind.RENDEZ_VOUS: (_USAGER_REF, *_RDV_FIELDS),
    Kind.PAIEMENTS: (_USAGER_REF, *_PAIEMENT_FIELDS),
}
"""The columns of each CSV kind (``nir`` is read by :func:`_nir`, with the key)."""

_JSON_CHILDREN = ("tiers", "demandes", "rendez_vous", "paiements")
_JSON_DEMANDE_CHILDREN = ("statuses", "pieces", "decisions")
_JSON_USAGER_KEYS = frozenset({f.name for f in _USAGER_FIELDS} | {"nir", *_JSON_CHILDREN})


# --------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, slots=True)
class _Row:
    """One row of the import, validated field by field, waiting for its batch."""

    file: str
    line: int
    nested: bool
    """A JSON usager object: error paths carry the collection and the index."""
    usager_ref: str | None = None
    """The usager the row belongs to (None for status, document and decision rows)."""
    usager: UsagerRecord | None = None
    tiers: tuple[TiersRecord, ...] = ()
    demandes: tuple[DemandeRecord, ...] = ()
    rendez_vous: tuple[RendezVousRecord, ...] = ()
    paiements: tuple[PaiementRecord, ...] = ()
    numero_ref: str | None = None
    """The demande a CSV status, document or decision row belongs to."""
    status: StatusRecord | None = None
    piece: PieceRecord | None = None
    decision: DecisionRecord | None = None

    def path(self, collection: str, index: int, name: str) -> str:
        return f"{collection}[{index}].{name}" if self.nested else name


_Errors = list[tuple[str, str]]
"""(field path, message) of one row."""


def _read(
    raw: Mapping[str, Any], fields: Sequence[_F], prefix: str, errors: _Errors
) -> dict[str, Any] | None:
    out: dict[str, Any] = {}
    ok = True
    for spec in fields:
        value = raw.get(spec.name)
        if _blank(value):
            if spec.required:
                errors.append((prefix + spec.name, "required"))
                ok = False
            out[spec.name] = None
            continue
        try:
            out[spec.name] = spec.parse(value)
        except _Bad as exc:
            errors.append((prefix + spec.name, _redacted(spec.name, str(exc))))
            ok = False
    return out if ok else None


_IDENTITY_FIELDS = frozenset(
    {"nom", "prenom", "nom_naissance", "date_naissance", "nir", "phones", "iban_last4"}
)
"""Fields whose value identifies a person: an error about them never quotes the value."""


def _redacted(field_name: str, message: str) -> str:
    """``not a date: '05/13/1942'`` -> ``not a date (value not shown)`` for identity fields."""
    if field_name not in _IDENTITY_FIELDS or ": '" not in message:
        return message
    return message.split(": '", 1)[0] + " (value not shown)"


def _build(
    factory: Callable[..., Any], values: Mapping[str, Any], prefix: str, errors: _Errors
) -> Any:
    """Build a repository record; its own checks raise ``ValueError('field: message')``."""
    try:
        return factory(**values)
    except ValueError as exc:
        name, _, message = str(exc).partition(": ")
        errors.append((prefix + name, message or name))
        return None


def _opt(values: Mapping[str, Any], name: str, default: Any) -> Any:
    value = values[name]
    return default if value is None else value


def _usager_record(
    raw: Mapping[str, Any], prefix: str, errors: _Errors, key: bytes | None
) -> UsagerRecord | None:
    values = _read(raw, _USAGER_FIELDS, prefix, errors)
    hashed: str | None = None
    if not _blank(raw.get("nir")):
        try:
            hashed = _nir(raw["nir"], key)
        except _Bad as exc:
            errors.append((prefix + "nir", str(exc)))
            return None
    if values is None:
        return None
    record: UsagerRecord | None = _build(
        UsagerRecord,
        {
            "external_id": values["external_id"],
            "nom": values["nom"],
            "prenom": values["prenom"],
            "date_naissance": values["date_naissance"],
            "civilite": values["civilite"],
            "nom_naissance": values["nom_naissance"],
            "langue": _opt(values, "langue", "fr"),
            "besoins": _opt(values, "besoins", ()),
            "mesure_protection": values["mesure_protection"],
            "nir_hash": hashed,
            "phones": _opt(values, "phones", ()),
        },
        prefix,
        errors,
    )
    return record


def _tiers_record(raw: Mapping[str, Any], prefix: str, errors: _Errors) -> TiersRecord | None:
    values = _read(raw, _TIERS_FIELDS, prefix, errors)
    if values is None:
        return None
    record: TiersRecord | None = _build(
        TiersRecord,
        {
            "external_id": values["external_id"],
            "nom": values["nom"],
            "role": TiersRole(values["role"]),
            "prenom": values["prenom"],
            "civilite": values["civilite"],
            "relation": values["relation"],
            "may_know": values["may_know"],
            "mandat_verifie": _opt(values, "mandat_verifie", False),
            "phones": _opt(values, "phones", ()),
        },
        prefix,
        errors,
    )
    return record


def _status_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {"code": values["code"], "date": values["date"], "detail": values["detail"]}


def _piece_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: values[k] for k in ("piece", "date_demande", "date_relance", "date_recue")}


def _decision_values(values: Mapping[str, Any]) -> dict[str, Any]:
    out = {f.name: values[f.name] for f in _DECISION_FIELDS if f.name != "montant"}
    out["montant_cents"] = values["montant"]
    out["sans_limitation"] = _opt(values, "sans_limitation", False)
    return out


def _demande_record(
    raw: Mapping[str, Any], prefix: str, errors: _Errors, unknown: set[str]
) -> DemandeRecord | None:
    values = _read(raw, _DEMANDE_FIELDS, prefix, errors)
    statuses: list[StatusRecord] = []
    pieces: list[PieceRecord] = []
    decisions: list[DecisionRecord] = []
    ok = values is not None
    codes = STATUSES_BY_CIRCUIT[circuit_of(values["type"])] if values is not None else None
    for i, obj in _objects(raw.get("statuses"), f"{prefix}statuses", errors):
        where = f"{prefix}statuses[{i}]."
        _unknown(obj, {f.name for f in _STATUS_FIELDS}, where, unknown)
        status = _read(obj, _STATUS_FIELDS, where, errors)
        if status is None:
            ok = False
        elif codes is not None and status["code"] not in codes:
            assert values is not None
            errors.append(
                (
                    where + "code",
                    f"{status['code']!r} is not a status of the "
                    f"{circuit_of(values['type']).value} circuit (type {values['type']})",
                )
            )
            ok = False
        else:
            statuses.append(StatusRecord(**_status_values(status)))
    for i, obj in _objects(raw.get("pieces"), f"{prefix}pieces", errors):
        where = f"{prefix}pieces[{i}]."
        _unknown(obj, {f.name for f in _PIECE_FIELDS}, where, unknown)
        piece = _read(obj, _PIECE_FIELDS, where, errors)
        if piece is None:
            ok = False
        else:
            pieces.append(PieceRecord(**_piece_values(piece)))
    for i, obj in _objects(raw.get("decisions"), f"{prefix}decisions", errors):
        where = f"{prefix}decisions[{i}]."
        _unknown(obj, {f.name for f in _DECISION_FIELDS}, where, unknown)
        decision = _read(obj, _DECISION_FIELDS, where, errors)
        built = (
            None
            if decision is None
            else _build(DecisionRecord, _decision_values(decision), where, errors)
        )
        if built is None:
            ok = False
        else:
            decisions.append(built)
    if not ok or values is None:
        return None
    record: DemandeRecord | None = _build(
        DemandeRecord,
        {
            **values,
            "numero": normalize_numero(values["numero"]),
            "statuses": tuple(statuses),
            "pieces": tuple(pieces),
            "decisions": tuple(decisions),
        },
        prefix,
        errors,
    )
    return record


def _rdv_record(raw: Mapping[str, Any], prefix: str, errors: _Errors) -> RendezVousRecord | None:
    values = _read(raw, _RDV_FIELDS, prefix, errors)
    if values is None:
        return None
    record: RendezVousRecord | None = _build(
        RendezVousRecord,
        {
            **values,
            "annule": _opt(values, "annule", False),
            "numero": None if values["numero"] is None else normalize_numero(values["numero"]),
        },
        prefix,
        errors,
    )
    return record


def _paiement_record(raw: Mapping[str, Any], prefix: str, errors: _Errors) -> PaiementRecord | None:
    values = _read(raw, _PAIEMENT_FIELDS, prefix, errors)
    if values is None:
        return None
    record: PaiementRecord | None = _build(
        PaiementRecord,
        {
            "prestation": values["prestation"],
            "periode": values["periode"],
            "date_paiement": values["date_paiement"],
            "montant_brut_cents": values["montant_brut"],
            "statut": values["statut"],
            "participation_cents": values["participation"],
            "montant_verse_cents": values["montant_verse"],
            "mode": values["mode"],
            "motif_ecart": values["motif_ecart"],
            "iban_last4": values["iban_last4"],
            "numero": None if values["numero"] is None else normalize_numero(values["numero"]),
        },
        prefix,
        errors,
    )
    return record


def _objects(value: Any, path: str, errors: _Errors) -> list[tuple[int, Mapping[str, Any]]]:
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append((path, "expected a list of objects"))
        return []
    out: list[tuple[int, Mapping[str, Any]]] = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            out.append((i, item))
        else:
            errors.append((f"{path}[{i}]", "expected an object"))
    return out


def _unknown(
    obj: Mapping[str, Any], known: set[str] | frozenset[str], where: str, unknown: set[str]
) -> None:
    for name in obj:
        if name not in known:
            unknown.add(re.sub(r"\[\d+\]", "[]", where) + name)


def _json_row(
    obj: Any, file: str, line: int, key: bytes | None, unknown: set[str]
) -> tuple[_Row | None, _Errors]:
    errors: _Errors = []
    if not isinstance(obj, dict):
        return None, [("json", "expected a usager object")]
    _unknown(obj, _JSON_USAGER_KEYS, "", unknown)
    usager = _usager_record(obj, "", errors, key)
    tiers: list[TiersRecord] = []
    demandes: list[DemandeRecord] = []
    rdvs: list[RendezVousRecord] = []
    paiements: list[PaiementRecord] = []
    known_tiers = {f.name for f in _TIERS_FIELDS}
    known_demande = {f.name for f in _DEMANDE_FIELDS} | set(_JSON_DEMANDE_CHILDREN)
    for i, item in _objects(obj.get("tiers"), "tiers", errors):
        _unknown(item, known_tiers, f"tiers[{i}].", unknown)
        if (t := _tiers_record(item, f"tiers[{i}].", errors)) is not None:
            tiers.append(t)
    for i, item in _objects(obj.get("demandes"), "demandes", errors):
        _unknown(item, known_demande, f"demandes[{i}].", unknown)
        if (d := _demande_record(item, f"demandes[{i}].", errors, unknown)) is not None:
            demandes.append(d)
    for i, item in _objects(obj.get("rendez_vous"), "rendez_vous", errors):
        _unknown(item, {f.name for f in _RDV_FIELDS}, f"rendez_vous[{i}].", unknown)
        if (r := _rdv_record(item, f"rendez_vous[{i}].", errors)) is not None:
            rdvs.append(r)
    for i, item in _objects(obj.get("paiements"), "paiements", errors):
        _unknown(item, {f.name for f in _PAIEMENT_FIELDS}, f"paiements[{i}].", unknown)
        if (p := _paiement_record(item, f"paiements[{i}].", errors)) is not None:
            paiements.append(p)
    if errors or usager is None:
        return None, errors
    return (
        _Row(
            file=file,
            line=line,
            nested=True,
            usager_ref=usager.external_id,
            usager=usager,
            tiers=tuple(tiers),
            demandes=tuple(demandes),
            rendez_vous=tuple(rdvs),
            paiements=tuple(paiements),
        ),
        [],
    )


def _csv_row(
    kind: Kind, raw: Mapping[str, str], file: str, line: int, key: bytes | None
) -> tuple[_Row | None, _Errors]:
    errors: _Errors = []
    if kind is Kind.USAGERS:
        usager = _usager_record(raw, "", errors, key)
        if usager is None:
            return None, errors
        return _Row(
            file=file, line=line, nested=False, usager_ref=usager.external_id, usager=usager
        ), []
    ref_field = _NUMERO_REF if kind in (Kind.STATUTS, Kind.PIECES, Kind.DECISIONS) else _USAGER_REF
    ref = _read(raw, (ref_field,), "", errors)
    if kind is Kind.TIERS:
        tiers = _tiers_record(raw, "", errors)
        if ref is None or tiers is None:
            return None, errors
        return _Row(
            file=file, line=line, nested=False, usager_ref=ref["usager"], tiers=(tiers,)
        ), []
    if kind is Kind.DEMANDES:
        demande = _demande_record(raw, "", errors, set())
        if ref is None or demande is None:
            return None, errors
        return _Row(
            file=file, line=line, nested=False, usager_ref=ref["usager"], demandes=(demande,)
        ), []
    if kind is Kind.RENDEZ_VOUS:
        rdv = _rdv_record(raw, "", errors)
        if ref is None or rdv is None:
            return None, errors
        return _Row(
            file=file, line=line, nested=False, usager_ref=ref["usager"], rendez_vous=(rdv,)
        ), []
    if kind is Kind.PAIEMENTS:
        paiement = _paiement_record(raw, "", errors)
        if ref is None or paiement is None:
            return None, errors
        return _Row(
            file=file, line=line, nested=False, usager_ref=ref["usager"], paiements=(paiement,)
        ), []
    fields = {Kind.STATUTS: _STATUS_FIELDS, Kind.PIECES: _PIECE_FIELDS}.get(kind, _DECISION_FIELDS)
    values = _read(raw, fields, "", errors)
    if ref is None or values is None:
        return None, errors
    numero = normalize_numero(ref["numero"])
    if kind is Kind.STATUTS:
        return _Row(
            file=file,
            line=line,
            nested=False,
            numero_ref=numero,
            status=StatusRecord(**_status_values(values)),
        ), []
    if kind is Kind.PIECES:
        return _Row(
            file=file,
            line=line,
            nested=False,
            numero_ref=numero,
            piece=PieceRecord(**_piece_values(values)),
        ), []
    decision = _build(DecisionRecord, _decision_values(values), "", errors)
    if decision is None:
        return None, errors
    return _Row(file=file, line=line, nested=False, numero_ref=numero, decision=decision), []


# --------------------------------------------------------------------------------------------
# Files

_REST = "; the rest of the file was not read"


def _kind_of(path: Path) -> Kind | None:
    stem = _fold(path.stem)
    for alias, kind in sorted(_KIND_ALIASES.items(), key=lambda item: -len(item[0])):
        if stem == alias or re.match(rf"{alias}[_\-. ]", stem):
            return kind
    return None


def _fold(text: str) -> str:
    """Lower case, accents removed, spaces and dashes as underscores (column names, stems)."""
    text = unicodedata.normalize("NFKD", text.strip().lstrip("\ufeff"))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    return re.sub(r"[\s\-]+", "_", text)


def plan_files(paths: Sequence[Path], kind: Kind | None = None) -> list[ImportFile]:
    """Recognise the files to import and return them in the order they are applied.

    JSON files (``.json``: an array; ``.jsonl``/``.ndjson``: one object per line) come first,
    in the order given, then CSV files by kind, parents first (:class:`Kind` order).

    Args:
        paths: The files.
        kind: The record kind of every CSV file (default: from each file name's stem).

    Raises:
        ImportUsageError: a file is missing, has an unknown extension, or is a CSV whose kind
            cannot be told from its name.
    """
    files: list[ImportFile] = []
    for path in paths:
        if not path.is_file():
            raise ImportUsageError(f"{path}: no such file")
        suffix = path.suffix.lower()
        if suffix == ".json":
            files.append(ImportFile(path, "json", None))
        elif suffix in (".jsonl", ".ndjson"):
            files.append(ImportFile(path, "jsonl", None))
        elif suffix == ".csv":
            found = kind or _kind_of(path)
            if found is None:
                raise ImportUsageError(
                    f"{path}: cannot tell the record kind from the file name; name it "
                    f"{', '.join(k.value + '.csv' for k in Kind)} or give --kind"
                )
            files.append(ImportFile(path, "csv", found))
        else:
            raise ImportUsageError(
                f"{path}: unknown format {suffix or '(no extension)'!r}; expected .json, "
                ".jsonl, .ndjson or .csv"
            )
    # sorted() is stable: JSON files and CSV files of one kind keep the order given.
    return sorted(
        files,
        key=lambda f: (f.format == "csv", _KIND_ORDER[f.kind] if f.kind is not None else 0),
    )


class _CountingReader(io.RawIOBase):
    """A binary stream that counts the bytes read through it (for the progress bar)."""

    def __init__(self, raw: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_read = on_read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._on_read(n)
        return n


def _detect_encoding(path: Path) -> str | None:
    """``utf-8-sig`` if the file is valid UTF-8 (BOM or not), else ``cp1252`` if it decodes."""
    for encoding in ("utf-8-sig", "cp1252"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as stream:
                while chunk := stream.read(1 << 20):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            continue
        return encoding
    return None


@dataclass(slots=True)
class _FileRead:
    """What a reader learnt about a file while reading it."""

    encoding: str | None = None
    delimiter: str | None = None
    notices: list[str] = field(default_factory=list)
    unknown: set[str] = field(default_factory=set)


_Item = tuple[int, _Row | None, _Errors]
"""(line, row or None, errors) as the readers yield them."""


def _read_csv(
    f: ImportFile, info: _FileRead, key: bytes | None, on_bytes: Callable[[int], None]
) -> Iterator[_Item]:
    assert f.kind is not None
    name = str(f.path)
    encoding = _detect_encoding(f.path)
    if encoding is None:
        yield 1, None, [("file", "neither UTF-8 nor cp1252 (Windows-1252) text")]
        return
    info.encoding = "utf-8" if encoding == "utf-8-sig" else encoding
    if encoding == "cp1252":
        info.notices.append(f"{name}: not UTF-8, read as cp1252 (Windows-1252)")
    with f.path.open("rb") as raw:
        counted = io.BufferedReader(_CountingReader(raw, on_bytes), 1 << 16)
        text = io.TextIOWrapper(counted, encoding=encoding, newline="")
        header_line = text.readline()
        header_no = 1
        while header_line and not header_line.strip():
            header_line = text.readline()
            header_no += 1
        if not header_line:
            yield 1, None, [("header", "empty file")]
            return
        counts = {d: header_line.count(d) for d in (";", ",", "\t")}
        delimiter = max(counts, key=lambda d: counts[d])
        if counts[delimiter] == 0:
            yield header_no, None, [("header", "cannot tell the delimiter (expected ; or ,)")]
            return
        info.delimiter = delimiter
        header = [_fold(h) for h in next(csv.reader([header_line], delimiter=delimiter))]
        fields = _CSV_FIELDS[f.kind]
        known = {spec.name for spec in fields}
        missing = [spec.name for spec in fields if spec.required and spec.name not in header]
        duplicated = sorted({h for h in header if h and header.count(h) > 1})
        if missing or duplicated:
            what = []
            if missing:
                what.append("missing required column(s) " + ", ".join(missing))
            if duplicated:
                what.append("duplicated column(s) " + ", ".join(duplicated))
            yield header_no, None, [("header", "; ".join(what) + f" (kind {f.kind.value})")]
            return
        ignored = [h for h in header if h and h not in known]
        if ignored:
            info.notices.append(f"{name}: column(s) ignored: {', '.join(ignored)}")
        reader = csv.reader(text, delimiter=delimiter)
        read = 0
        for cells in reader:
            line = header_no + read + 1  # where the row starts (a quoted cell may span lines)
            read = reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                # A name holding the separator unquoted shifts every later value into the wrong
                # column (and its error message): refuse the row rather than guess.
                yield line, None, [("row", f"{len(cells)} cells, the header has {len(header)}")]
                continue
            raw_row = {h: c for h, c in zip(header, cells, strict=False) if h in known}
            row, errors = _csv_row(f.kind, raw_row, name, line, key)
            yield line, row, errors


def _read_jsonl(
    f: ImportFile, info: _FileRead, key: bytes | None, on_bytes: Callable[[int], None]
) -> Iterator[_Item]:
    name = str(f.path)
    info.encoding = "utf-8"
    with f.path.open("rb") as stream:
        for line_no, raw in enumerate(stream, start=1):
            on_bytes(len(raw))
            try:
                text = raw.decode("utf-8-sig" if line_no == 1 else "utf-8")
            except UnicodeDecodeError:
                yield line_no, None, [("json", "not UTF-8 text")]
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                column = min(exc.pos, len(text.rstrip("\r\n"))) + 1
                yield line_no, None, [("json", f"not valid JSON: {exc.msg} (column {column})")]
                continue
            row, errors = _json_row(obj, name, line_no, key, info.unknown)
            yield line_no, row, errors


def _read_json(
    f: ImportFile, info: _FileRead, key: bytes | None, on_bytes: Callable[[int], None]
) -> Iterator[_Item]:
    """Stream the objects of a JSON array (the file is never held in memory whole)."""
    name = str(f.path)
    info.encoding = "utf-8"
    decoder = json.JSONDecoder()
    with f.path.open("rb") as raw:
        stream = io.TextIOWrapper(
            io.BufferedReader(_CountingReader(raw, on_bytes), 1 << 16), encoding="utf-8-sig"
        )
        buf = ""
        pos = 0
        line = 1
        eof = False

        def fill() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            chunk = stream.read(1 << 16)
            if not chunk:
                eof = True
                return False
            buf = buf[pos:] + chunk
            pos = 0
            return True

        def skip_ws() -> str:
            """Skip blanks (counting lines); return the next character, '' at the end."""
            nonlocal pos, line
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    if buf[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buf):
                    return buf[pos]
                if not fill():
                    return ""

        try:
            if skip_ws() != "[":
                yield _json_error(line, "expected a JSON array of usager objects")
                return
            pos += 1
            first = True
            while True:
                ch = skip_ws()
                if ch == "]" and first:
                    break
                if ch != "{":
                    yield _json_error(line, "expected a usager object" + _REST)
                    return
                while True:
                    try:
                        obj, end = decoder.raw_decode(buf, pos)
                        break
                    except json.JSONDecodeError as exc:
                        if fill():
                            continue
                        at = line + buf.count("\n", pos, exc.pos)
                        yield _json_error(at, f"not valid JSON: {exc.msg}" + _REST)
                        return
                start = line
                line += buf.count("\n", pos, end)
                pos = end
                row, errors = _json_row(obj, name, start, key, info.unknown)
                yield start, row, errors
                first = False
                ch = skip_ws()
                if ch == ",":
                    pos += 1
                    continue
                if ch == "]":
                    break
                yield _json_error(line, "expected , or ] after a usager object" + _REST)
                return
        except UnicodeDecodeError:
            yield _json_error(line, "not UTF-8 text" + _REST)


def _json_error(line: int, message: str) -> _Item:
    return line, None, [("json", message)]


_READERS = {"csv": _read_csv, "jsonl": _read_jsonl, "json": _read_json}


# --------------------------------------------------------------------------------------------
# Batches: plan against the store's current rows, then write


@dataclass(frozen=True, slots=True)
class _Token:
    """A row planned for insertion in this batch, by its table and natural key."""

    table: str
    key: tuple[Any, ...]


_Ref = int | _Token
"""An id: a row's database id, or the token of a row inserted in this batch."""


@dataclass(slots=True)
class _Entry:
    id: _Ref
    values: dict[str, Any]
    """Column values (foreign keys as :data:`_Ref`), keys included."""
    op: str | None = None
    """``insert``, ``update`` or None (as in the store)."""


_TABLES: dict[str, Table] = {
    t.name: t for t in (USAGER, TIERS, DEMANDE, STATUS, PIECE, DECISION, RDV, PAIEMENT)
}
_KEYS: dict[str, tuple[str, ...]] = {
    "usager": ("external_id",),
    "tiers": ("usager_id", "external_id"),
    "demande": ("numero",),
    "demande_status": ("demande_id", "code", "date_statut"),
    "piece_manquante": ("demande_id", "piece"),
    "decision": ("demande_id", "prestation", "date_decision"),
    "rendez_vous": ("usager_id", "type", "debut"),
    "paiement": ("usager_id", "prestation", "periode", "date_paiement"),
}
"""Natural keys, as :mod:`callcenter.store.dossiers` upserts them."""
_SKIP_COLUMNS = frozenset({"id", "created_at", "updated_at"})
_MERGED_INTO = "merged_into"
"""``usager.merged_into`` (usager merges): set on a merged usager's tombstone."""
_KIND_OF_TABLE = {
    "usager": Kind.USAGERS.value,
    "tiers": Kind.TIERS.value,
    "demande": Kind.DEMANDES.value,
    "demande_status": Kind.STATUTS.value,
    "piece_manquante": Kind.PIECES.value,
    "decision": Kind.DECISIONS.value,
    "rendez_vous": Kind.RENDEZ_VOUS.value,
    "paiement": Kind.PAIEMENTS.value,
}
_Owner = tuple[_Ref, _Ref | None]
"""Whose phone numbers: (usager, tiers or None for the usager's own)."""


def _key(table: str, values: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(values[c] for c in _KEYS[table])


def _normalise(table: Table, row: RowMapping) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column in table.columns:
        if column.name in _SKIP_COLUMNS:
            continue
        value = row[column.name]
        if isinstance(value, datetime):
            value = as_utc(value)
        out[column.name] = value
    return out


class _State:
    """The store's rows a batch touches, then the changes its valid rows planned."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple[Any, ...], _Entry]] = {t: {} for t in _TABLES}
        self.phones: dict[_Owner, tuple[str, ...]] = {}
        self.phones_changed: set[_Owner] = set()
        self.phones_existing: set[_Owner] = set()
        self.merged_targets: dict[int, str] = {}
        """External ids of the usagers that merged usagers of the batch were merged into."""

    def load(self, conn: Connection, rows: Sequence[_Row]) -> None:
        """Fetch the rows the batch may touch: one query per table (chunked ``IN``)."""
        exts = {r.usager_ref for r in rows if r.usager_ref is not None}
        numeros: set[str] = set()
        for r in rows:
            numeros.update(d.numero for d in r.demandes)
            numeros.update(x.numero for x in r.rendez_vous if x.numero)
            numeros.update(x.numero for x in r.paiements if x.numero)
            if r.numero_ref is not None:
                numeros.add(r.numero_ref)
        # PostgreSQL: lock the usagers this batch may update (a merge locks the same rows), so a
        # concurrent merge cannot be undone by writing back a stale copy. SQLite batches hold the
        # database's write lock from their first statement (BEGIN IMMEDIATE).
        self._fetch(
            conn, USAGER, USAGER.c.external_id, exts, lock=conn.dialect.name == "postgresql"
        )
        usager_ids = [e.id for e in self.tables["usager"].values()]
        kept = {e.values.get(_MERGED_INTO) for e in self.tables["usager"].values()} - {None}
        if kept:
            self.merged_targets = dict(
                conn.execute(
                    select(USAGER.c.id, USAGER.c.external_id).where(USAGER.c.id.in_(sorted(kept)))
                ).all()
            )
        demandes = self._fetch(conn, DEMANDE, DEMANDE.c.numero, numeros)
        if any(r.usager is not None or r.tiers for r in rows) and usager_ids:
            for chunk in _chunks(usager_ids):
                for p in conn.execute(
                    select(PHONE.c.usager_id, PHONE.c.tiers_id, PHONE.c.e164).where(
                        PHONE.c.usager_id.in_(chunk)
                    )
                ):
                    owner = (p.usager_id, p.tiers_id)
                    self.phones[owner] = (*self.phones.get(owner, ()), p.e164)
            self.phones = {k: tuple(sorted(v)) for k, v in self.phones.items()}
            self.phones_existing = set(self.phones)
        if any(r.tiers for r in rows):
            self._fetch(conn, TIERS, TIERS.c.usager_id, usager_ids)
        if any(r.rendez_vous for r in rows):
            self._fetch(conn, RDV, RDV.c.usager_id, usager_ids)
        if any(r.paiements for r in rows):
            self._fetch(conn, PAIEMENT, PAIEMENT.c.usager_id, usager_ids)
        demande_ids = [e.id for e in demandes]
        if any(r.status or any(d.statuses for d in r.demandes) for r in rows):
            self._fetch(conn, STATUS, STATUS.c.demande_id, demande_ids)
        if any(r.piece or any(d.pieces for d in r.demandes) for r in rows):
            self._fetch(conn, PIECE, PIECE.c.demande_id, demande_ids)
        if any(r.decision or any(d.decisions for d in r.demandes) for r in rows):
            self._fetch(conn, DECISION, DECISION.c.demande_id, demande_ids)

    def _fetch(
        self,
        conn: Connection,
        table: Table,
        column: Any,
        values: Iterable[Any],
        *,
        lock: bool = False,
    ) -> list[_Entry]:
        found: list[_Entry] = []
        target = self.tables[table.name]
        for chunk in _chunks(sorted(values)):
            query = select(table).where(column.in_(chunk))
            if lock:
                query = query.order_by(table.c.id).with_for_update()  # id order, as the merge
            for row in conn.execute(query).mappings():
                entry = _Entry(row["id"], _normalise(table, row))
                target[_key(table.name, entry.values)] = entry
                found.append(entry)
        return found


def _chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), _IN_CHUNK):
        yield values[i : i + _IN_CHUNK]


class _RowPlan:
    """One row's changes, kept apart until the row is known valid."""

    def __init__(self, state: _State, row: _Row) -> None:
        self.state = state
        self.row = row
        self.entries: dict[tuple[str, tuple[Any, ...]], _Entry] = {}
        self.phones: dict[_Owner, tuple[str, ...]] = {}
        self.counts: Counter[tuple[str, str]] = Counter()
        self.errors: _Errors = []

    def get(self, table: str, key: tuple[Any, ...]) -> _Entry | None:
        return self.entries.get((table, key)) or self.state.tables[table].get(key)

    def put(self, table: str, values: dict[str, Any]) -> tuple[_Ref, str]:
        """Plan an insert or update of ``values``; return the row's id and what happened."""
        key = _key(table, values)
        current = self.get(table, key)
        if current is None:
            token = _Token(table, key)
            self.entries[(table, key)] = _Entry(token, values, "insert")
            return token, "inserted"
        if all(current.values.get(k) == v for k, v in values.items()):
            return current.id, "unchanged"
        self.entries[(table, key)] = _Entry(
            current.id, {**current.values, **values}, current.op or "update"
        )
        return current.id, "updated"

    def touch(self, table: str, key: tuple[Any, ...]) -> None:
        """Plan an update of an unchanged row (its ``updated_at``: its phones changed)."""
        current = self.get(table, key)
        if current is not None and current.op is None:
            self.entries[(table, key)] = _Entry(current.id, dict(current.values), "update")

    def count(self, table: str, result: str) -> None:
        self.counts[(_KIND_OF_TABLE[table], result)] += 1

    def set_phones(self, owner: _Owner, phones: Sequence[str]) -> bool:
        """Plan the replacement of an owner's numbers; return True if they change."""
        wanted = tuple(sorted(set(phones)))
        current = self.phones.get(owner, self.state.phones.get(owner, ()))
        if wanted == current:
            return False
        self.phones[owner] = wanted
        return True

    def merge(self) -> None:
        for (table, key), entry in self.entries.items():
            self.state.tables[table][key] = entry
        for owner, phones in self.phones.items():
            self.state.phones[owner] = phones
            self.state.phones_changed.add(owner)


def _plan_row(plan: _RowPlan) -> None:
    """Check a row against the store (and the batch so far) and plan its writes."""
    row = plan.row
    uref: _Ref | None = None
    if row.usager_ref is not None:
        found = plan.get("usager", (row.usager_ref,))
        kept = None if found is None else found.values.get(_MERGED_INTO)
        if kept is not None:
            target = plan.state.merged_targets.get(kept, f"id {kept}")
            plan.errors.append(
                (
                    "external_id" if row.usager is not None else "usager",
                    f"{row.usager_ref!r} was merged into {target!r}: correct the back "
                    "office's record (a merged usager is never written again)",
                )
            )
            return
    if row.usager is not None:
        u = row.usager
        values: dict[str, Any] = {
            "external_id": u.external_id,
            "civilite": u.civilite,
            "nom": u.nom,
            "prenom": u.prenom,
            "nom_naissance": u.nom_naissance,
            "date_naissance": u.date_naissance,
            "langue": u.langue,
            "besoins": list(u.besoins),
            "mesure_protection": u.mesure_protection,
        }
        if u.nir_hash is not None:  # never cleared by a row without it
            values["nir_hash"] = u.nir_hash
        uref, result = plan.put("usager", values)
        if plan.set_phones((uref, None), u.phones) and result == "unchanged":
            plan.touch("usager", (u.external_id,))
            result = "updated"
        plan.count("usager", result)
    elif row.usager_ref is not None:
        found = plan.get("usager", (row.usager_ref,))
        if found is None:
            plan.errors.append(("usager", f"unknown usager {row.usager_ref!r}"))
            return
        uref = found.id

    if uref is not None:
        for t in row.tiers:
            may_know = DEFAULT_MAY_KNOW[TiersRole(t.role)] if t.may_know is None else t.may_know
            tref, result = plan.put(
                "tiers",
                {
                    "usager_id": uref,
                    "external_id": t.external_id,
                    "civilite": t.civilite,
                    "nom": t.nom,
                    "prenom": t.prenom,
                    "relation": t.relation,
                    "role": TiersRole(t.role).value,
                    "may_know": sorted(topic.value for topic in may_know),
                    "mandat_verifie": t.mandat_verifie,
                },
            )
            if plan.set_phones((uref, tref), t.phones) and result == "unchanged":
                result = "updated"
            plan.count("tiers", result)
        for i, d in enumerate(row.demandes):
            existing = plan.get("demande", (d.numero,))
            if existing is not None and existing.values["usager_id"] != uref:
                plan.errors.append(
                    (row.path("demandes", i, "numero"), f"{d.numero} belongs to another usager")
                )
                continue
            dref, result = plan.put(
                "demande",
                {
                    "numero": d.numero,
                    "usager_id": uref,
                    "numero_chiffres": numero_digits(d.numero),
                    "type": d.type,
                    "date_depot": d.date_depot,
                    "date_recevabilite": d.date_recevabilite,
                    "date_limite_legale": d.date_limite_legale,
                    "referent": d.referent,
                },
            )
            plan.count("demande", result)
            for s in d.statuses:
                _plan_status(plan, dref, s)
            for piece in d.pieces:
                _plan_piece(plan, dref, piece)
            for dec in d.decisions:
                _plan_decision(plan, dref, dec)
        for i, r in enumerate(row.rendez_vous):
            demande = _demande_of(plan, uref, r.numero, row.path("rendez_vous", i, "numero"))
            if demande is False:
                continue
            plan.count(
                "rendez_vous",
                plan.put(
                    "rendez_vous",
                    {
                        "usager_id": uref,
                        "type": r.type,
                        "debut": r.debut.astimezone(UTC),
                        "demande_id": demande,
                        "lieu": r.lieu,
                        "annule": r.annule,
                    },
                )[1],
            )
        for i, pay in enumerate(row.paiements):
            demande = _demande_of(plan, uref, pay.numero, row.path("paiements", i, "numero"))
            if demande is False:
                continue
            plan.count(
                "paiement",
                plan.put(
                    "paiement",
                    {
                        "usager_id": uref,
                        "prestation": pay.prestation,
                        "periode": pay.periode,
                        "date_paiement": pay.date_paiement,
                        "demande_id": demande,
                        "montant_brut_cents": pay.montant_brut_cents,
                        "participation_cents": pay.participation_cents,
                        "montant_verse_cents": pay.montant_verse_cents,
                        "mode": pay.mode,
                        "statut": pay.statut,
                        "motif_ecart": pay.motif_ecart,
                        "iban_last4": pay.iban_last4,
                    },
                )[1],
            )

    if row.numero_ref is not None:
        demande_entry = plan.get("demande", (row.numero_ref,))
        if demande_entry is None:
            plan.errors.append(("numero", f"unknown demande {row.numero_ref!r}"))
            return
        if row.status is not None:
            circuit = circuit_of(demande_entry.values["type"])
            if row.status.code not in STATUSES_BY_CIRCUIT[circuit]:
                plan.errors.append(
                    (
                        "code",
                        f"{row.status.code!r} is not a status of the {circuit.value} circuit "
                        f"(demande {row.numero_ref}, type {demande_entry.values['type']})",
                    )
                )
                return
            _plan_status(plan, demande_entry.id, row.status)
        if row.piece is not None:
            _plan_piece(plan, demande_entry.id, row.piece)
        if row.decision is not None:
            _plan_decision(plan, demande_entry.id, row.decision)


def _demande_of(plan: _RowPlan, uref: _Ref, numero: str | None, path: str) -> _Ref | None | bool:
    """The demande a rendez-vous or payment is for; False (and an error) if not the usager's."""
    if numero is None:
        return None
    found = plan.get("demande", (numero,))
    if found is None:
        plan.errors.append((path, f"unknown demande {numero!r}"))
        return False
    if found.values["usager_id"] != uref:
        plan.errors.append((path, f"{numero} belongs to another usager"))
        return False
    return found.id


def _plan_status(plan: _RowPlan, dref: _Ref, s: StatusRecord) -> None:
    values = {"demande_id": dref, "code": s.code, "date_statut": s.date, "detail": s.detail}
    plan.count("demande_status", plan.put("demande_status", values)[1])


def _plan_piece(plan: _RowPlan, dref: _Ref, p: PieceRecord) -> None:
    values = {
        "demande_id": dref,
        "piece": p.piece,
        "date_demande": p.date_demande,
        "date_relance": p.date_relance,
        "date_recue": p.date_recue,
    }
    plan.count("piece_manquante", plan.put("piece_manquante", values)[1])


def _plan_decision(plan: _RowPlan, dref: _Ref, d: DecisionRecord) -> None:
    values = {
        "demande_id": dref,
        "prestation": d.prestation,
        "sens": d.sens,
        "date_decision": d.date_decision,
        "date_notification": d.date_notification,
        "date_debut": d.date_debut,
        "date_fin": d.date_fin,
        "sans_limitation": d.sans_limitation,
        "montant_cents": d.montant_cents,
        "gir": d.gir,
        "taux_participation": d.taux_participation,
        "recours_jusqu_au": d.recours_jusqu_au,
    }
    plan.count("decision", plan.put("decision", values)[1])


_T = TypeVar("_T")

_RETURNING_IDS = ("usager", "tiers", "demande")
"""Tables whose new ids later tables need."""


def _write(conn: Connection, state: _State, now: datetime) -> None:
    """Write the batch's planned changes, parents first, as ``executemany`` statements."""
    ids: dict[_Token, int] = {}

    def resolve(value: Any) -> Any:
        return ids[value] if isinstance(value, _Token) else value

    def write_table(name: str) -> None:
        table = _TABLES[name]
        inserts: list[tuple[_Token, dict[str, Any]]] = []
        updates: list[dict[str, Any]] = []
        for entry in state.tables[name].values():
            if entry.op is None:
                continue
            values = {k: resolve(v) for k, v in entry.values.items()}
            if entry.op == "insert":
                if name == "usager":
                    values.update(created_at=now, updated_at=now)
                assert isinstance(entry.id, _Token)
                inserts.append((entry.id, values))
            else:
                if name == "usager":
                    values["updated_at"] = now
                    # Merges own these: an import never writes them back.
                    values.pop("merged_into", None)
                    values.pop("merged_at", None)
                values["b_id"] = resolve(entry.id)
                updates.append(values)
        for group in _by_columns(inserts):
            params = [values for _, values in group]
            if name in _RETURNING_IDS:
                stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
                new_ids = conn.execute(stmt, params).scalars().all()
                ids.update(zip([token for token, _ in group], new_ids, strict=True))
            else:
                conn.execute(insert(table), params)
        by_id = update(table).where(table.c.id == bindparam("b_id"))
        for same in _by_columns([(None, values) for values in updates]):
            conn.execute(by_id, [values for _, values in same])

    write_table("usager")
    write_table("tiers")
    _write_phones(conn, state, resolve)
    for name in ("demande", "demande_status", "piece_manquante", "decision"):
        write_table(name)
    write_table("rendez_vous")
    write_table("paiement")


def _by_columns(rows: Sequence[tuple[_T, dict[str, Any]]]) -> list[list[tuple[_T, dict[str, Any]]]]:
    """Group parameter sets by their columns (one ``executemany`` per group), keeping tags."""
    groups: dict[tuple[str, ...], list[tuple[_T, dict[str, Any]]]] = {}
    for tag, values in rows:
        groups.setdefault(tuple(sorted(values)), []).append((tag, values))
    return list(groups.values())


@functools.lru_cache(maxsize=65536)
def _kind_of_phone(e164: str) -> str | None:
    return _phone_kind(e164)


def _write_phones(conn: Connection, state: _State, resolve: Callable[[Any], Any]) -> None:
    changed = sorted(state.phones_changed, key=repr)
    own = [{"u": resolve(u)} for u, t in changed if t is None and (u, t) in state.phones_existing]
    of_tiers = [
        {"t": resolve(t)} for u, t in changed if t is not None and (u, t) in state.phones_existing
    ]
    if own:
        conn.execute(
            delete(PHONE).where(PHONE.c.usager_id == bindparam("u"), PHONE.c.tiers_id.is_(None)),
            own,
        )
    if of_tiers:
        conn.execute(delete(PHONE).where(PHONE.c.tiers_id == bindparam("t")), of_tiers)
    rows = [
        {"usager_id": resolve(u), "tiers_id": resolve(t), "e164": e, "kind": _kind_of_phone(e)}
        for u, t in changed
        for e in state.phones[(u, t)]
    ]
    if rows:
        conn.execute(insert(PHONE), rows)


@dataclass(slots=True)
class _BatchResult:
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: list[RowError] = field(default_factory=list)
    rejected: int = 0


def _apply(conn: Connection, rows: Sequence[_Row], now: datetime) -> _BatchResult:
    """Plan and write a batch of rows on ``conn`` (the caller's transaction or savepoint)."""
    state = _State()
    state.load(conn, rows)
    result = _BatchResult()
    for row in rows:
        plan = _RowPlan(state, row)
        _plan_row(plan)
        if plan.errors:
            result.rejected += 1
            result.errors.extend(RowError(row.file, row.line, f, m) for f, m in plan.errors)
        else:
            plan.merge()
            result.counts.update(plan.counts)
    _write(conn, state, now)
    return result


def _first_line(exc: sa_exc.DBAPIError) -> str:
    """The first line of the driver's message: PostgreSQL puts the values in the next ones."""
    text = str(exc.orig).strip()
    return text.splitlines()[0] if text else type(exc.orig or exc).__name__


def _db_error(row: _Row, exc: sa_exc.DBAPIError) -> RowError:
    """A database error as a row error (no values quoted)."""
    message = _first_line(exc)
    if "nir_hash" in message:
        return RowError(row.file, row.line, "nir", "already recorded for another usager")
    return RowError(row.file, row.line, "database", message)


def _row_by_row(conn: Connection, rows: Sequence[_Row], now: datetime) -> _BatchResult:
    """Replay a failed batch one row per savepoint: only the failing rows are rejected."""
    result = _BatchResult()
    for row in rows:
        try:
            with conn.begin_nested():
                one = _apply(conn, [row], now)
        except _ROW_LEVEL_DB_ERRORS as exc:
            result.rejected += 1
            result.errors.append(_db_error(row, exc))
            continue
        result.counts.update(one.counts)
        result.errors.extend(one.errors)
        result.rejected += one.rejected
    return result


def _begin(conn: Connection) -> None:
    """Open the batch's transaction for real (:func:`callcenter.store.db.begin_write`)."""
    db.begin_write(conn)


# --------------------------------------------------------------------------------------------
# The run


class UsagerBundle(Protocol):
    """A usager with everything attached, as :func:`callcenter.store.demo.generate` yields."""

    @property
    def usager(self) -> UsagerRecord: ...
    @property
    def tiers(self) -> Sequence[TiersRecord]: ...
    @property
    def demandes(self) -> Sequence[DemandeRecord]: ...
    @property
    def rendez_vous(self) -> Sequence[RendezVousRecord]: ...
    @property
    def paiements(self) -> Sequence[PaiementRecord]: ...


class _Audit:
    """The run's one audit row: written with the first committed batch, completed at the end."""

    def __init__(self, actor: str, reason: str, at: datetime) -> None:
        self.actor = actor
        self.reason = reason
        self.at = at
        self.id: int | None = None

    def insert(self, conn: Connection, detail: Mapping[str, Any]) -> int:
        row_id: int = conn.execute(
            insert(AUDIT)
            .values(
                at=self.at,
                actor=self.actor,
                via=Via.CLI.value,
                action="import",
                usager_id=None,
                reason=self.reason,
                detail=dict(detail),
            )
            .returning(AUDIT.c.id)
        ).scalar_one()
        return row_id

    def finish(self, engine: Engine, detail: Mapping[str, Any]) -> None:
        with engine.begin() as conn:
            if self.id is None:
                self.id = self.insert(conn, detail)
            else:
                conn.execute(update(AUDIT).where(AUDIT.c.id == self.id).values(detail=dict(detail)))


ProgressCallback = Callable[[int, int, int], None]
"""Called as the import goes: (bytes read, total bytes, rows read)."""


def run_import(
    engine: Engine,
    files: Sequence[ImportFile],
    *,
    nir_key: bytes | None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    actor: str = IMPORT_ACTOR,
    reason: str = IMPORT_REASON,
    now: datetime | None = None,
    on_error: Callable[[RowError], None] | None = None,
    progress: ProgressCallback | None = None,
) -> ImportSummary:
    """Import ``files`` (from :func:`plan_files`) into the store, batch by batch (blocking).

    Args:
        engine: The store, its schema migrated.
        files: The files, in the order to apply them.
        nir_key: The key of the NIR's keyed hash; None refuses NIR values (row errors).
        batch_size: Rows per transaction.
        dry_run: Check and count everything in one transaction, then roll it back.
        actor: Who imports (the audit row's actor).
        reason: Why (the audit row's reason).
        now: ``created_at``/``updated_at`` of the usagers written (default: now).
        on_error: Called with every error, after its batch is committed, in line order.
        progress: Called after every batch.

    Returns:
        The summary. A SIGINT (``KeyboardInterrupt``) stops the import after rolling back the
        batch in progress, and so does a database failure that no single row explains (lost
        connection...): the summary then says ``interrupted`` (and ``failure``) and counts the
        committed batches only.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be 1 or more")
    at = (now or datetime.now(UTC)).astimezone(UTC)
    run = _Run(
        engine,
        nir_key=nir_key,
        batch_size=batch_size,
        dry_run=dry_run,
        at=at,
        audit=_Audit(actor, reason, at),
        on_error=on_error,
        progress=progress,
        total_bytes=sum(f.path.stat().st_size for f in files),
    )
    return run.run(files)


@dataclass(slots=True)
class _FileState:
    """One file's rows while it is read."""

    file: ImportFile
    info: _FileRead = field(default_factory=_FileRead)
    rows: int = 0
    rejected: int = 0
    batch: list[_Row] = field(default_factory=list)
    read_errors: list[RowError] = field(default_factory=list)
    """Errors of rows rejected while reading; they wait for their batch, to keep line order."""
    read_rejected: int = 0


class _Run:
    """One import run: its counters, its audit row and (dry run) its outer transaction."""

    def __init__(
        self,
        engine: Engine,
        *,
        nir_key: bytes | None,
        batch_size: int,
        dry_run: bool,
        at: datetime,
        audit: _Audit,
        on_error: Callable[[RowError], None] | None,
        progress: ProgressCallback | None,
        total_bytes: int,
    ) -> None:
        self.engine = engine
        self.nir_key = nir_key
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.at = at
        self.audit = audit
        self.on_error = on_error
        self.progress = progress
        self.total_bytes = total_bytes
        self.started = _time.perf_counter()
        self.done_bytes = 0
        self.rows = 0
        self.rejected = 0
        self.files_rejected = 0
        self.batches = 0
        self.counts: Counter[tuple[str, str]] = Counter()
        self.kept: list[RowError] = []
        self.errors_total = 0
        self.notices: list[str] = []
        self.reports: list[FileReport] = []
        self.outer: Connection | None = None

    def run(self, files: Sequence[ImportFile]) -> ImportSummary:
        interrupted = False
        failure: str | None = None
        outer_tx = None
        if self.dry_run:
            self.outer = self.engine.connect()
            outer_tx = self.outer.begin()
            _begin(self.outer)
        try:
            for f in files:
                self._file(f)
        except KeyboardInterrupt:
            interrupted = True
        except sa_exc.DBAPIError as exc:
            interrupted = True
            failure = f"database error: {_first_line(exc)}"
        finally:
            if self.outer is not None and outer_tx is not None:
                outer_tx.rollback()
                self.outer.close()
        try:
            self.audit.finish(self.engine, self._detail("interrupted" if interrupted else "done"))
        except sa_exc.DBAPIError:
            if failure is None:
                raise
            failure += "; the audit entry could not be completed"
        return ImportSummary(
            files=tuple(self.reports),
            rows=self.rows,
            rejected=self.rejected,
            files_rejected=self.files_rejected,
            counts=_counts_by_kind(self.counts),
            errors=tuple(self.kept),
            errors_total=self.errors_total,
            notices=tuple(self.notices),
            batches=self.batches,
            seconds=_time.perf_counter() - self.started,
            dry_run=self.dry_run,
            interrupted=interrupted,
            failure=failure,
        )

    def _file(self, f: ImportFile) -> None:
        state = _FileState(f)
        name = str(f.path)
        for line, row, row_errors in _READERS[f.format](f, state.info, self.nir_key, self._bytes):
            if row is None and row_errors[0][0] in ("header", "file"):
                # The file cannot be read at all: no row of it is counted.
                self.files_rejected += 1
                for where, message in row_errors:
                    self._report(RowError(name, line, where, message))
                continue
            self.rows += 1
            state.rows += 1
            if row is None:
                state.read_rejected += 1
                state.read_errors.extend(RowError(name, line, n, m) for n, m in row_errors)
            else:
                state.batch.append(row)
            if len(state.batch) + state.read_rejected >= self.batch_size:
                self._flush(state)
        if state.batch or state.read_rejected:
            self._flush(state)
        if state.info.unknown:
            self.notices.append(
                f"{name}: field(s) ignored: {', '.join(sorted(state.info.unknown))}"
            )
        self.notices.extend(state.info.notices)
        self.reports.append(
            FileReport(
                file=name,
                format=f.format,
                kind=None if f.kind is None else f.kind.value,
                encoding=state.info.encoding,
                delimiter=state.info.delimiter,
                rows=state.rows,
                rejected=state.rejected,
            )
        )

    def _bytes(self, n: int) -> None:
        self.done_bytes += n

    def _report(self, error: RowError) -> None:
        self.errors_total += 1
        if len(self.kept) < MAX_KEPT_ERRORS:
            self.kept.append(error)
        if self.on_error is not None:
            self.on_error(error)

    def _flush(self, state: _FileState) -> None:
        result = self._commit(state.batch)
        self.batches += 1
        self.counts.update(result.counts)
        rejected = result.rejected + state.read_rejected
        self.rejected += rejected
        state.rejected += rejected
        for error in sorted([*state.read_errors, *result.errors], key=lambda e: e.line):
            self._report(error)
        state.batch.clear()
        state.read_errors.clear()
        state.read_rejected = 0
        if self.progress is not None:
            self.progress(self.done_bytes, self.total_bytes, self.rows)

    def _commit(self, rows: list[_Row]) -> _BatchResult:
        """Write a batch in its own transaction (a savepoint of the dry run's)."""
        if self.outer is not None:
            try:
                with self.outer.begin_nested():
                    return _apply(self.outer, rows, self.at)
            except _ROW_LEVEL_DB_ERRORS:
                return _row_by_row(self.outer, rows, self.at)
        pending: int | None = None
        try:
            with self.engine.begin() as conn:
                _begin(conn)
                result = _apply(conn, rows, self.at)
                if self.audit.id is None:
                    pending = self.audit.insert(conn, self._detail("running"))
        except _ROW_LEVEL_DB_ERRORS:
            with self.engine.begin() as conn:
                _begin(conn)
                result = _row_by_row(conn, rows, self.at)
                if self.audit.id is None:
                    pending = self.audit.insert(conn, self._detail("running"))
        if pending is not None:
            self.audit.id = pending
        return result

    def _detail(self, status: str) -> dict[str, Any]:
        """The audit row's detail: counts and file names, never personal data."""
        return {
            "status": status,
            "dry_run": self.dry_run,
            "files": [
                {"file": Path(r.file).name, "kind": r.kind, "rows": r.rows, "rejected": r.rejected}
                for r in self.reports
            ],
            "rows": self.rows,
            "rejected": self.rejected,
            "files_rejected": self.files_rejected,
            "counts": {kind: dict(c) for kind, c in _counts_by_kind(self.counts).items()},
        }


def _counts_by_kind(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    return {kind.value: {r: counts[(kind.value, r)] for r in RESULTS} for kind in Kind}


# --------------------------------------------------------------------------------------------
# Writing extracts (tests, benchmarks, examples)


def _euros(cents: int | None, comma: bool) -> str | None:
    if cents is None:
        return None
    sign = "-" if cents < 0 else ""
    text = f"{sign}{abs(cents) // 100}.{abs(cents) % 100:02d}"
    return text.replace(".", ",") if comma else text


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def bundle_to_json(bundle: UsagerBundle, *, nir: str | None = None) -> dict[str, Any]:
    """Return a usager with everything attached as a JSON usager object (documented format).

    Args:
        bundle: The records.
        nir: A NIR to put in the object's ``nir`` field (the records only carry its hash).
    """
    u = bundle.usager
    obj: dict[str, Any] = {
        "external_id": u.external_id,
        "civilite": u.civilite,
        "nom": u.nom,
        "prenom": u.prenom,
        "nom_naissance": u.nom_naissance,
        "date_naissance": u.date_naissance.isoformat(),
        "langue": u.langue,
        "besoins": list(u.besoins),
        "mesure_protection": u.mesure_protection,
        "phones": list(u.phones),
    }
    if nir is not None:
        obj["nir"] = nir
    obj["tiers"] = [
        {
            "external_id": t.external_id,
            "civilite": t.civilite,
            "nom": t.nom,
            "prenom": t.prenom,
            "relation": t.relation,
            "role": TiersRole(t.role).value,
            "may_know": None if t.may_know is None else sorted(x.value for x in t.may_know),
            "mandat_verifie": t.mandat_verifie,
            "phones": list(t.phones),
        }
        for t in bundle.tiers
    ]
    obj["demandes"] = [
        {
            "numero": d.numero,
            "type": d.type,
            "date_depot": _iso(d.date_depot),
            "date_recevabilite": _iso(d.date_recevabilite),
            "date_limite_legale": _iso(d.date_limite_legale),
            "referent": d.referent,
            "statuses": [
                {"code": s.code, "date": s.date.isoformat(), "detail": s.detail} for s in d.statuses
            ],
            "pieces": [
                {
                    "piece": p.piece,
                    "date_demande": _iso(p.date_demande),
                    "date_relance": _iso(p.date_relance),
                    "date_recue": _iso(p.date_recue),
                }
                for p in d.pieces
            ],
            "decisions": [_decision_json(x, comma=False) for x in d.decisions],
        }
        for d in bundle.demandes
    ]
    obj["rendez_vous"] = [
        {
            "type": r.type,
            "debut": r.debut.isoformat(),
            "lieu": r.lieu,
            "annule": r.annule,
            "numero": r.numero,
        }
        for r in bundle.rendez_vous
    ]
    obj["paiements"] = [_paiement_json(p, comma=False) for p in bundle.paiements]
    return obj


def _decision_json(d: DecisionRecord, *, comma: bool) -> dict[str, Any]:
    return {
        "prestation": d.prestation,
        "sens": d.sens,
        "date_decision": d.date_decision.isoformat(),
        "date_notification": _iso(d.date_notification),
        "date_debut": _iso(d.date_debut),
        "date_fin": _iso(d.date_fin),
        "sans_limitation": d.sans_limitation,
        "montant": _euros(d.montant_cents, comma),
        "gir": d.gir,
        "taux_participation": d.taux_participation,
        "recours_jusqu_au": _iso(d.recours_jusqu_au),
    }


def _paiement_json(p: PaiementRecord, *, comma: bool) -> dict[str, Any]:
    return {
        "prestation": p.prestation,
        "periode": p.periode.strftime("%Y-%m"),
        "date_paiement": p.date_paiement.isoformat(),
        "montant_brut": _euros(p.montant_brut_cents, comma),
        "participation": _euros(p.participation_cents, comma),
        "montant_verse": _euros(p.montant_verse_cents, comma),
        "mode": p.mode,
        "statut": p.statut,
        "motif_ecart": p.motif_ecart,
        "iban_last4": p.iban_last4,
        "numero": p.numero,
    }


def write_jsonl(
    path: Path,
    bundles: Iterable[UsagerBundle],
    *,
    nir: Callable[[UsagerRecord], str | None] | None = None,
) -> int:
    """Write usagers as JSON Lines (one object per line); return how many were written."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for bundle in bundles:
            obj = bundle_to_json(bundle, nir=None if nir is None else nir(bundle.usager))
            out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
    return count


def write_json(
    path: Path,
    bundles: Iterable[UsagerBundle],
    *,
    nir: Callable[[UsagerRecord], str | None] | None = None,
) -> int:
    """Write usagers as one JSON array (indented); return how many were written."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write("[")
        for bundle in bundles:
            obj = bundle_to_json(bundle, nir=None if nir is None else nir(bundle.usager))
            text = json.dumps(obj, ensure_ascii=False, indent=2)
            out.write(("," if count else "") + "\n" + text)
            count += 1
        out.write("\n]\n")
    return count


def _fr(value: date | None) -> str:
    return "" if value is None else value.strftime("%d/%m/%Y")


def _flag(value: bool) -> str:
    return "oui" if value else "non"


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def write_csv(
    directory: Path,
    bundles: Iterable[UsagerBundle],
    *,
    delimiter: str = ";",
    encoding: str = "utf-8",
    nir: Callable[[UsagerRecord], str | None] | None = None,
) -> dict[Kind, int]:
    """Write usagers as one CSV file per kind, French conventions; return rows per kind.

    Dates are ``JJ/MM/AAAA``, amounts have a decimal comma, lists are ``|``-separated and
    rendez-vous are local times (Europe/Paris) without an offset.
    """
    directory.mkdir(parents=True, exist_ok=True)
    names = [spec.name for spec in _CSV_FIELDS[Kind.USAGERS]]
    if nir is None:
        names.remove("nir")
    headers: dict[Kind, list[str]] = {Kind.USAGERS: names} | {
        kind: [spec.name for spec in _CSV_FIELDS[kind]] for kind in Kind if kind != Kind.USAGERS
    }
    handles = {
        kind: (directory / f"{kind.value}.csv").open("w", encoding=encoding, newline="")
        for kind in Kind
    }
    counts = dict.fromkeys(Kind, 0)
    try:
        writers = {
            k: csv.writer(h, delimiter=delimiter, lineterminator="\n") for k, h in handles.items()
        }
        for kind, writer in writers.items():
            writer.writerow(headers[kind])

        def put(kind: Kind, values: Mapping[str, Any]) -> None:
            writers[kind].writerow([_cell(values.get(name)) for name in headers[kind]])
            counts[kind] += 1

        for bundle in bundles:
            u = bundle.usager
            ext = u.external_id
            put(
                Kind.USAGERS,
                {
                    "external_id": ext,
                    "civilite": u.civilite,
                    "nom": u.nom,
                    "prenom": u.prenom,
                    "nom_naissance": u.nom_naissance,
                    "date_naissance": _fr(u.date_naissance),
                    "langue": u.langue,
                    "besoins": "|".join(u.besoins),
                    "mesure_protection": u.mesure_protection,
                    "nir": None if nir is None else nir(u),
                    "phones": "|".join(u.phones),
                },
            )
            for t in bundle.tiers:
                may_know = None
                if t.may_know is not None:
                    may_know = "|".join(sorted(x.value for x in t.may_know)) or "aucun"
                put(
                    Kind.TIERS,
                    {
                        "usager": ext,
                        "external_id": t.external_id,
                        "civilite": t.civilite,
                        "nom": t.nom,
                        "prenom": t.prenom,
                        "relation": t.relation,
                        "role": TiersRole(t.role).value,
                        "may_know": may_know,
                        "mandat_verifie": _flag(t.mandat_verifie),
                        "phones": "|".join(t.phones),
                    },
                )
            for d in bundle.demandes:
                put(
                    Kind.DEMANDES,
                    {
                        "usager": ext,
                        "numero": d.numero,
                        "type": d.type,
                        "date_depot": _fr(d.date_depot),
                        "date_recevabilite": _fr(d.date_recevabilite),
                        "date_limite_legale": _fr(d.date_limite_legale),
                        "referent": d.referent,
                    },
                )
                for s in d.statuses:
                    put(
                        Kind.STATUTS,
                        {
                            "numero": d.numero,
                            "code": s.code,
                            "date": _fr(s.date),
                            "detail": s.detail,
                        },
                    )
                for p in d.pieces:
                    put(
                        Kind.PIECES,
                        {
                            "numero": d.numero,
                            "piece": p.piece,
                            "date_demande": _fr(p.date_demande),
                            "date_relance": _fr(p.date_relance),
                            "date_recue": _fr(p.date_recue),
                        },
                    )
                for x in d.decisions:
                    values = _decision_json(x, comma=True)
                    for name in ("date_decision", "date_notification", "date_debut", "date_fin"):
                        values[name] = _fr(getattr(x, name))
                    values["recours_jusqu_au"] = _fr(x.recours_jusqu_au)
                    values["sans_limitation"] = _flag(x.sans_limitation)
                    values["taux_participation"] = (
                        None
                        if x.taux_participation is None
                        else f"{x.taux_participation:g}".replace(".", ",")
                    )
                    put(Kind.DECISIONS, {"numero": d.numero, **values})
            for r in bundle.rendez_vous:
                local = r.debut.astimezone(LOCAL_TZ)
                put(
                    Kind.RENDEZ_VOUS,
                    {
                        "usager": ext,
                        "type": r.type,
                        "debut": local.strftime("%d/%m/%Y %H:%M"),
                        "lieu": r.lieu,
                        "annule": _flag(r.annule),
                        "numero": r.numero,
                    },
                )
            for pay in bundle.paiements:
                values = _paiement_json(pay, comma=True)
                values["periode"] = pay.periode.strftime("%m/%Y")
                values["date_paiement"] = _fr(pay.date_paiement)
                put(Kind.PAIEMENTS, {"usager": ext, **values})
    finally:
        for handle in handles.values():
            handle.close()
    return counts
