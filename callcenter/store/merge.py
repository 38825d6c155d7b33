"""Merging a duplicate usager into the one kept (issue 4, part 2b).

:func:`merge_usagers` moves everything the merged usager owns to the kept one — own phones,
tiers and their phones, demandes (with their statuses, documents and decisions), rendez-vous,
payments and the contact history — and turns the merged usager into a *tombstone*
(``usager.merged_into``), kept so that every old reference (audit rows, call trails, ids quoted
in tickets) still resolves (:func:`resolve_usager`). One merge log row (``usager_merge``) says
who merged, when, why and which rows moved. Everything happens in one transaction: a merge that
fails leaves nothing changed.

Rules this module owns:

1. Refusals (:class:`MergeError` subclasses, nothing written): a usager into itself, an unknown
   usager, a usager already merged (:class:`AlreadyMergedError`: merging twice), into a
   tombstone (:class:`TombstoneTargetError`), and two usagers that cannot be one person or whose
   data conflict beyond repair (:class:`MergeConflictError`: two different NIR, or two
   payments of the same prestation, period and date with different amounts — a possible double
   payment that a person must settle first).
2. Conflicts resolved without losing data, each one listed in the log's ``resolved``:

   - an own phone number both usagers have: the merged usager's row is dropped (the number
     stays on the kept usager);
   - a tiers with the same ``external_id`` on both (the back office's same person): the kept
     tiers gets the merged tiers's numbers and contacts; the merged tiers row stays on the
     tombstone, unchanged, so its id still resolves (what it may know is *not* widened);
   - the same rendez-vous (type and start) or the same payment (prestation, period, date and
     amounts) on both: the kept usager's row stays, gets the fields it lacked, and the merged
     usager's row stays on the tombstone;
   - the kept usager's empty identity fields (nom de naissance, civilité, protection measure,
     NIR hash) are filled from the merged one; communication needs are united.
3. A tombstone owns no phone and no demande, so no caller-ID or numéro lookup can find it;
   older tombstones of the merged usager are re-pointed to the kept one (``merged_into``
   always names a live usager).
4. Audit: one row for each of the two usagers (actions ``merge`` and ``merged_into``), ids and
   counts only.

Functions are blocking; call them from a thread when an event loop is running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, delete, insert, select, update
from sqlmodel import SQLModel

from callcenter.store import db, dossier_models
from callcenter.store.audit import Via, as_utc, audit, transaction
from callcenter.store.dossiers import CONTACT, DEMANDE, PAIEMENT, PHONE, RDV, TIERS, USAGER

__all__ = [
    "AlreadyMergedError",
    "MergeConflictError",
    "MergeError",
    "MergeLogEntry",
    "MergeResult",
    "SameUsagerError",
    "TombstoneTargetError",
    "UnknownUsagerError",
    "merge_log",
    "merge_usagers",
    "resolve_usager",
]

_ = dossier_models  # registers the tables in SQLModel.metadata
MERGE: Table = SQLModel.metadata.tables["usager_merge"]

_PAYMENT_VALUES = (
    "montant_brut_cents",
    "participation_cents",
    "montant_verse_cents",
    "mode",
    "statut",
    "motif_ecart",
    "iban_last4",
)
"""A payment on both usagers is the same payment when these agree."""

_FILLED_FIELDS = ("nom_naissance", "civilite", "mesure_protection")
"""Identity fields the kept usager gets from the merged one when it has none."""


class MergeError(ValueError):
    """A merge was refused; nothing was written."""


class SameUsagerError(MergeError):
    """A usager cannot be merged into itself."""


class UnknownUsagerError(MergeError):
    """No usager has this id."""


class AlreadyMergedError(MergeError):
    """The usager to merge is already a tombstone (merged before)."""


class TombstoneTargetError(MergeError):
    """The usager to keep is a tombstone: merge into the usager it was merged into."""


class MergeConflictError(MergeError):
    """The two usagers' data conflict in a way a person must settle first."""


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What a merge did."""

    log_id: int
    """Id of the ``usager_merge`` row."""
    kept_id: int
    merged_id: int
    at: datetime
    """When (UTC)."""
    moved: Mapping[str, tuple[int, ...]]
    """Ids of the rows moved to the kept usager, per table."""
    resolved: tuple[Mapping[str, Any], ...]
    """How each conflict was resolved."""

    def counts(self) -> dict[str, int]:
        """Rows moved per table."""
        return {table: len(ids) for table, ids in self.moved.items()}


@dataclass(frozen=True, slots=True)
class MergeLogEntry:
    """One row of the merge log."""

    id: int
    at: datetime
    actor: str
    via: str
    reason: str
    kept_id: int
    merged_id: int
    moved: Mapping[str, list[int]]
    resolved: tuple[Mapping[str, Any], ...]


def _ids(conn: Connection, table: Table, *where: Any) -> list[int]:
    return list(conn.execute(select(table.c.id).where(*where).order_by(table.c.id)).scalars())


def _lock_usagers(conn: Connection, keep_id: int, merge_id: int) -> dict[int, Any]:
    """Read (and on PostgreSQL lock, in id order) the two usager rows."""
    query = select(
        USAGER.c.id,
        USAGER.c.merged_into,
        USAGER.c.merged_at,
        USAGER.c.nir_hash,
        USAGER.c.besoins,
        *(USAGER.c[f] for f in _FILLED_FIELDS),
    ).where(USAGER.c.id.in_((keep_id, merge_id)))
    if conn.dialect.name == "postgresql":
        query = query.order_by(USAGER.c.id).with_for_update()
    return {row.id: row for row in conn.execute(query)}


def merge_usagers(
    bind: Engine | Connection,
    keep_id: int,
    merge_id: int,
    *,
    actor: str,
    reason: str,
    via: Via = Via.CLI,
    now: datetime | None = None,
) -> MergeResult:
    """Merge usager ``merge_id`` into ``keep_id`` (one transaction; see the module's rules).

    Args:
        bind: Engine (own transaction) or connection (the caller's transaction, which the
            caller commits or rolls back).
        keep_id: The usager kept.
        merge_id: The usager merged, left as a tombstone pointing at ``keep_id``.
        actor: Who merges (written to the log and the audit).
        reason: Why (the ticket, the evidence).
        via: The channel.
        now: When (default: now, UTC).

    Returns:
        What moved and how conflicts were resolved.

    Raises:
        SameUsagerError: ``keep_id == merge_id``.
        UnknownUsagerError: either usager does not exist.
        AlreadyMergedError: ``merge_id`` was already merged.
        TombstoneTargetError: ``keep_id`` was merged into another usager.
        MergeConflictError: different NIR, or diverging payments (listed).
        ValueError: ``actor`` or ``reason`` is empty.
    """
    if not actor.strip():
        raise ValueError("merge: actor is required")
    if not reason.strip():
        raise ValueError("merge: reason is required")
    Via(via)
    if keep_id == merge_id:
        raise SameUsagerError(f"merge: usager {keep_id} cannot be merged into itself")
    at = as_utc(now or datetime.now(UTC))
    with transaction(bind) as conn:
        if isinstance(bind, Engine):
            # SQLite: hold the write lock from the first read, so two merges (or a merge and an
            # import batch) run one after the other (PostgreSQL locks the two rows below).
            db.begin_write(conn)
        rows = _lock_usagers(conn, keep_id, merge_id)
        for usager_id in (keep_id, merge_id):
            if usager_id not in rows:
                raise UnknownUsagerError(f"merge: no usager {usager_id}")
        kept, merged = rows[keep_id], rows[merge_id]
        if merged.merged_into is not None:
            when = as_utc(merged.merged_at).date().isoformat() if merged.merged_at else "?"
            raise AlreadyMergedError(
                f"merge: usager {merge_id} was already merged into {merged.merged_into} on {when}"
            )
        if kept.merged_into is not None:
            raise TombstoneTargetError(
                f"merge: usager {keep_id} is itself merged into {kept.merged_into}; "
                f"merge into {kept.merged_into} instead"
            )
        if kept.nir_hash is not None and merged.nir_hash is not None:
            raise MergeConflictError(
                f"merge: usagers {keep_id} and {merge_id} have different NIR: two people, or "
                "one NIR is wrong (correct it in the back office first)"
            )
        moved: dict[str, list[int]] = {}
        resolved: list[dict[str, Any]] = []
        stays = _payments(conn, keep_id, merge_id, resolved)
        stays |= _rendez_vous(conn, keep_id, merge_id, resolved)
        tiers_map = _tiers(conn, keep_id, merge_id, moved, resolved)
        _phones(conn, keep_id, merge_id, tiers_map, moved, resolved)
        moved["demande"] = _move(conn, DEMANDE, keep_id, merge_id)
        moved["rendez_vous"] = _move(conn, RDV, keep_id, merge_id, keep=stays.get("rendez_vous"))
        moved["paiement"] = _move(conn, PAIEMENT, keep_id, merge_id, keep=stays.get("paiement"))
        moved["contact"] = _move(conn, CONTACT, keep_id, merge_id)
        for old, new in tiers_map.items():
            conn.execute(update(CONTACT).where(CONTACT.c.tiers_id == old).values(tiers_id=new))
        moved["tombstone"] = _ids(conn, USAGER, USAGER.c.merged_into == merge_id)
        if moved["tombstone"]:
            conn.execute(
                update(USAGER).where(USAGER.c.merged_into == merge_id).values(merged_into=keep_id)
            )
        _identity(conn, kept, merged, at, resolved)
        log_id: int = conn.execute(
            insert(MERGE)
            .values(
                at=at,
                actor=actor.strip()[:64],
                via=Via(via).value,
                reason=reason.strip()[:200],
                kept_id=keep_id,
                merged_id=merge_id,
                moved=moved,
                resolved=resolved,
            )
            .returning(MERGE.c.id)
        ).scalar_one()
        counts = {table: len(ids) for table, ids in moved.items()}
        audit(
            conn,
            actor=actor,
            reason=reason,
            via=via,
            action="merge",
            usager_id=keep_id,
            detail={"merged_id": merge_id, "merge_log_id": log_id, "moved": counts},
            at=at,
        )
        audit(
            conn,
            actor=actor,
            reason=reason,
            via=via,
            action="merged_into",
            usager_id=merge_id,
            detail={"kept_id": keep_id, "merge_log_id": log_id},
            at=at,
        )
    return MergeResult(
        log_id=log_id,
        kept_id=keep_id,
        merged_id=merge_id,
        at=at,
        moved={table: tuple(ids) for table, ids in moved.items()},
        resolved=tuple(resolved),
    )


def _move(
    conn: Connection, table: Table, keep_id: int, merge_id: int, *, keep: set[int] | None = None
) -> list[int]:
    """Move the merged usager's rows of ``table`` to the kept one, except the ids in ``keep``."""
    ids = [i for i in _ids(conn, table, table.c.usager_id == merge_id) if i not in (keep or ())]
    if ids:
        query = update(table).where(table.c.usager_id == merge_id).values(usager_id=keep_id)
        if keep:
            query = query.where(table.c.id.not_in(sorted(keep)))
        conn.execute(query)
    return ids


def _payments(
    conn: Connection, keep_id: int, merge_id: int, resolved: list[dict[str, Any]]
) -> dict[str, set[int]]:
    """Find the merged usager's payments the kept one already has; refuse diverging ones."""
    mine, theirs = PAIEMENT.alias("mine"), PAIEMENT.alias("theirs")
    pairs = conn.execute(
        select(mine, theirs.c.id.label("kept_row"), *(theirs.c[c].label(f"k_{c}")
                                                      for c in _PAYMENT_VALUES))
        .select_from(
            mine.join(
                theirs,
                (theirs.c.usager_id == keep_id)
                & (theirs.c.prestation == mine.c.prestation)
                & (theirs.c.periode == mine.c.periode)
                & (theirs.c.date_paiement == mine.c.date_paiement),
            )
        )
        .where(mine.c.usager_id == merge_id)
        .order_by(mine.c.id)
    ).mappings().all()  # fmt: skip
    diverging = [
        (row["id"], row["kept_row"])
        for row in pairs
        if any(row[c] != row[f"k_{c}"] for c in _PAYMENT_VALUES)
    ]
    if diverging:
        listed = ", ".join(f"{a} (merged) / {b} (kept)" for a, b in diverging[:10])
        raise MergeConflictError(
            "merge: payments of the same prestation, period and date differ between the two "
            f"usagers (a possible double payment; settle it first): paiement {listed}"
        )
    stays: set[int] = set()
    for row in pairs:
        stays.add(row["id"])
        if row["demande_id"] is not None:
            conn.execute(
                update(PAIEMENT)
                .where(PAIEMENT.c.id == row["kept_row"], PAIEMENT.c.demande_id.is_(None))
                .values(demande_id=row["demande_id"])
            )
        resolved.append(
            {
                "table": "paiement",
                "id": row["id"],
                "same_as": row["kept_row"],
                "resolution": "same payment on both: the merged usager's row stays on the "
                "tombstone",
            }
        )
    return {"paiement": stays}


def _rendez_vous(
    conn: Connection, keep_id: int, merge_id: int, resolved: list[dict[str, Any]]
) -> dict[str, set[int]]:
    """Find the merged usager's rendez-vous the kept one already has (same type and start)."""
    mine, theirs = RDV.alias("mine"), RDV.alias("theirs")
    pairs = conn.execute(
        select(mine, theirs.c.id.label("kept_row"), theirs.c.lieu.label("k_lieu"),
               theirs.c.demande_id.label("k_demande_id"))
        .select_from(
            mine.join(
                theirs,
                (theirs.c.usager_id == keep_id)
                & (theirs.c.type == mine.c.type)
                & (theirs.c.debut == mine.c.debut),
            )
        )
        .where(mine.c.usager_id == merge_id)
        .order_by(mine.c.id)
    ).mappings().all()  # fmt: skip
    stays: set[int] = set()
    for row in pairs:
        stays.add(row["id"])
        filled = {
            field: row[field]
            for field in ("lieu", "demande_id")
            if row[f"k_{field}"] is None and row[field] is not None
        }
        if filled:
            conn.execute(update(RDV).where(RDV.c.id == row["kept_row"]).values(**filled))
        resolved.append(
            {
                "table": "rendez_vous",
                "id": row["id"],
                "same_as": row["kept_row"],
                "filled": sorted(filled),
                "resolution": "same rendez-vous on both: the merged usager's row stays on the "
                "tombstone",
            }
        )
    return {"rendez_vous": stays}


def _tiers(
    conn: Connection,
    keep_id: int,
    merge_id: int,
    moved: dict[str, list[int]],
    resolved: list[dict[str, Any]],
) -> dict[int, int]:
    """Move the merged usager's tiers; return ``{merged tiers id: kept tiers id}`` for folds."""
    kept_by_ext = {
        row.external_id: row.id
        for row in conn.execute(
            select(TIERS.c.id, TIERS.c.external_id).where(TIERS.c.usager_id == keep_id)
        )
    }
    folded: dict[int, int] = {}
    moving: list[int] = []
    for row in conn.execute(
        select(TIERS.c.id, TIERS.c.external_id)
        .where(TIERS.c.usager_id == merge_id)
        .order_by(TIERS.c.id)
    ):
        if row.external_id in kept_by_ext:
            folded[row.id] = kept_by_ext[row.external_id]
            resolved.append(
                {
                    "table": "tiers",
                    "id": row.id,
                    "same_as": folded[row.id],
                    "resolution": "same tiers external id on both: its phones and contacts go "
                    "to the kept tiers (whose rights are kept); the row stays on the tombstone",
                }
            )
        else:
            moving.append(row.id)
    if moving:
        conn.execute(update(TIERS).where(TIERS.c.id.in_(moving)).values(usager_id=keep_id))
    moved["tiers"] = moving
    return folded


def _phones(
    conn: Connection,
    keep_id: int,
    merge_id: int,
    folded: Mapping[int, int],
    moved: dict[str, list[int]],
    resolved: list[dict[str, Any]],
) -> None:
    """Move the merged usager's numbers (own and tiers'); drop the ones the kept has already."""
    have = {
        (row.tiers_id, row.e164): row.id
        for row in conn.execute(
            select(PHONE.c.id, PHONE.c.tiers_id, PHONE.c.e164).where(PHONE.c.usager_id == keep_id)
        )
    }
    moving: list[int] = []
    for row in conn.execute(
        select(PHONE.c.id, PHONE.c.tiers_id, PHONE.c.e164)
        .where(PHONE.c.usager_id == merge_id)
        .order_by(PHONE.c.id)
    ):
        tiers_id = folded.get(row.tiers_id, row.tiers_id) if row.tiers_id is not None else None
        same = have.get((tiers_id, row.e164))
        if same is not None:
            conn.execute(delete(PHONE).where(PHONE.c.id == row.id))
            resolved.append(
                {
                    "table": "usager_phone",
                    "id": row.id,
                    "same_as": same,
                    "resolution": "number already on the kept usager: the duplicate row is dropped",
                }
            )
            continue
        conn.execute(
            update(PHONE).where(PHONE.c.id == row.id).values(usager_id=keep_id, tiers_id=tiers_id)
        )
        have[(tiers_id, row.e164)] = row.id
        moving.append(row.id)
    moved["usager_phone"] = moving


def _identity(
    conn: Connection, kept: Any, merged: Any, at: datetime, resolved: list[dict[str, Any]]
) -> None:
    """Fill the kept usager's empty fields, then turn the merged one into a tombstone."""
    values: dict[str, Any] = {"updated_at": at}
    for name in _FILLED_FIELDS:
        if kept._mapping[name] is None and merged._mapping[name] is not None:
            values[name] = merged._mapping[name]
    needs = list(kept.besoins or [])
    extra = [n for n in merged.besoins or [] if n not in needs]
    if extra:
        values["besoins"] = needs + extra
    if kept.nir_hash is None and merged.nir_hash is not None:
        values["nir_hash"] = merged.nir_hash
    filled = sorted(k for k in values if k != "updated_at")
    # The NIR hash is unique: clear it on the tombstone before the kept usager takes it.
    conn.execute(
        update(USAGER)
        .where(USAGER.c.id == merged.id)
        .values(merged_into=kept.id, merged_at=at, updated_at=at, nir_hash=None)
    )
    conn.execute(update(USAGER).where(USAGER.c.id == kept.id).values(**values))
    if filled:
        resolved.append(
            {
                "table": "usager",
                "id": kept.id,
                "filled": filled,
                "resolution": "empty fields of the kept usager filled from the merged one "
                "(needs united)",
            }
        )


def resolve_usager(bind: Engine | Connection, usager_id: int) -> int | None:
    """Return the live usager an id designates now (itself, or the one it was merged into).

    A reference read from an audit row or an old ticket may name a tombstone: this follows
    ``merged_into`` (merges keep it one hop, the loop guards older data). None if unknown.
    Reads no personal data: not audited.
    """
    seen: set[int] = set()
    current: int | None = usager_id
    with transaction(bind) as conn:
        while current is not None and current not in seen:
            seen.add(current)
            row = conn.execute(select(USAGER.c.merged_into).where(USAGER.c.id == current)).first()
            if row is None:
                return None
            if row.merged_into is None:
                return current
            current = row.merged_into
    return None


def merge_log(bind: Engine | Connection, usager_id: int) -> list[MergeLogEntry]:
    """Return the merges a usager took part in (kept or merged), oldest first."""
    with transaction(bind) as conn:
        rows = conn.execute(
            select(MERGE)
            .where((MERGE.c.kept_id == usager_id) | (MERGE.c.merged_id == usager_id))
            .order_by(MERGE.c.at, MERGE.c.id)
        ).mappings().all()  # fmt: skip
    return [
        MergeLogEntry(
            id=row["id"],
            at=as_utc(row["at"]),
            actor=row["actor"],
            via=row["via"],
            reason=row["reason"],
            kept_id=row["kept_id"],
            merged_id=row["merged_id"],
            moved=row["moved"],
            resolved=tuple(row["resolved"]),
        )
        for row in rows
    ]
