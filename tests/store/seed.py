"""One usager with an APA request, written through the repository (identification tests)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Engine

from callcenter.store import dossiers as repo

PHONE = "0612345678"
"""The usager's phone: what sipp scenarios send as the caller (``From``)."""
BIRTH_DATE = date(1942, 3, 5)
NUMERO = "APA-2025-0456"


def seed_apa_usager(engine: Engine, *, deposited: date) -> int:
    """Jeanne Martin, APA à domicile received 2 days and complete 19 days after ``deposited``."""
    usager = repo.upsert_usager(
        engine,
        repo.UsagerRecord(
            external_id="U1",
            nom="Martin",
            prenom="Jeanne",
            date_naissance=BIRTH_DATE,
            phones=(PHONE,),
        ),
    )
    repo.upsert_demande(
        engine,
        usager,
        repo.DemandeRecord(
            numero=NUMERO,
            type="APA_DOMICILE",
            date_depot=deposited,
            statuses=(
                repo.StatusRecord("RECU", deposited + timedelta(days=2)),
                repo.StatusRecord("COMPLET", deposited + timedelta(days=19)),
            ),
        ),
    )
    return usager
