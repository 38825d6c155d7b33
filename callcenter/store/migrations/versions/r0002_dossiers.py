"""Dossiers (issue 4).

Usagers, tiers, phones, demandes and their status history, missing documents, decisions,
rendez-vous, payments, contacts and the audit log.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("usager_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("detail", _JSON, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_at", "audit", ["at"], unique=False)
    op.create_index("ix_audit_usager", "audit", ["usager_id", "at"], unique=False)
    op.create_table(
        "usager",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("civilite", sa.String(length=8), nullable=True),
        sa.Column("nom", sa.String(length=128), nullable=False),
        sa.Column("prenom", sa.String(length=128), nullable=False),
        sa.Column("nom_naissance", sa.String(length=128), nullable=True),
        sa.Column("date_naissance", sa.Date(), nullable=False),
        sa.Column("langue", sa.String(length=8), nullable=False),
        sa.Column("besoins", _JSON, nullable=False),
        sa.Column("mesure_protection", sa.String(length=32), nullable=True),
        sa.Column("nir_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_usager_external_id", "usager", ["external_id"], unique=True)
    op.create_index("ix_usager_nir_hash", "usager", ["nir_hash"], unique=True)
    op.create_table(
        "demande",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("usager_id", sa.Integer(), nullable=False),
        sa.Column("numero", sa.String(length=32), nullable=False),
        sa.Column("numero_chiffres", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=24), nullable=False),
        sa.Column("date_depot", sa.Date(), nullable=True),
        sa.Column("date_recevabilite", sa.Date(), nullable=True),
        sa.Column("date_limite_legale", sa.Date(), nullable=True),
        sa.Column("referent", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["usager_id"], ["usager.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_demande_numero", "demande", ["numero"], unique=True)
    op.create_index("ix_demande_numero_chiffres", "demande", ["numero_chiffres"], unique=False)
    op.create_index("ix_demande_usager", "demande", ["usager_id", "date_depot"], unique=False)
    op.create_table(
        "tiers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("usager_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("civilite", sa.String(length=8), nullable=True),
        sa.Column("nom", sa.String(length=128), nullable=False),
        sa.Column("prenom", sa.String(length=128), nullable=True),
        sa.Column("relation", sa.String(length=64), nullable=True),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("may_know", _JSON, nullable=False),
        sa.Column("mandat_verifie", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["usager_id"], ["usager.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("usager_id", "external_id", name="uq_tiers_usager_ext"),
    )
    op.create_index("ix_tiers_usager_id", "tiers", ["usager_id"], unique=False)
    op.create_table(
        "contact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("usager_id", sa.Integer(), nullable=True),
        sa.Column("tiers_id", sa.Integer(), nullable=True),
        sa.Column("sip_call_id", sa.String(length=255), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("handled_by", sa.String(length=64), nullable=True),
        sa.Column("bot_path", _JSON, nullable=False),
        sa.Column("intents", _JSON, nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("agent_notes", sa.Text(), nullable=True),
        sa.Column("follow_up", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["tiers_id"], ["tiers.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["usager_id"], ["usager.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_contact_sip_call_id", "contact", ["sip_call_id"], unique=True)
    op.create_index("ix_contact_usager", "contact", ["usager_id", "started_at"], unique=False)
    op.create_table(
        "decision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("demande_id", sa.Integer(), nullable=False),
        sa.Column("prestation", sa.String(length=32), nullable=False),
        sa.Column("sens", sa.String(length=16), nullable=False),
        sa.Column("date_decision", sa.Date(), nullable=False),
        sa.Column("date_notification", sa.Date(), nullable=True),
        sa.Column("date_debut", sa.Date(), nullable=True),
        sa.Column("date_fin", sa.Date(), nullable=True),
        sa.Column("sans_limitation", sa.Boolean(), nullable=False),
        sa.Column("montant_cents", sa.Integer(), nullable=True),
        sa.Column("gir", sa.Integer(), nullable=True),
        sa.Column("taux_participation", sa.Float(), nullable=True),
        sa.Column("recours_jusqu_au", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["demande_id"], ["demande.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("demande_id", "prestation", "date_decision", name="uq_decision"),
    )
    op.create_index("ix_decision_demande_id", "decision", ["demande_id"], unique=False)
    op.create_table(
        "demande_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("demande_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("date_statut", sa.Date(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["demande_id"], ["demande.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("demande_id", "code", "date_statut", name="uq_demande_status"),
    )
    op.create_index(
        "ix_demande_status_demande", "demande_status", ["demande_id", "date_statut"], unique=False
    )
    op.create_table(
        "paiement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("usager_id", sa.Integer(), nullable=False),
        sa.Column("demande_id", sa.Integer(), nullable=True),
        sa.Column("prestation", sa.String(length=32), nullable=False),
        sa.Column("periode", sa.Date(), nullable=False),
        sa.Column("date_paiement", sa.Date(), nullable=False),
        sa.Column("montant_brut_cents", sa.Integer(), nullable=False),
        sa.Column("participation_cents", sa.Integer(), nullable=True),
        sa.Column("montant_verse_cents", sa.Integer(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("statut", sa.String(length=16), nullable=False),
        sa.Column("motif_ecart", sa.String(length=64), nullable=True),
        sa.Column("iban_last4", sa.String(length=4), nullable=True),
        sa.ForeignKeyConstraint(["demande_id"], ["demande.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["usager_id"], ["usager.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "usager_id", "prestation", "periode", "date_paiement", name="uq_paiement"
        ),
    )
    op.create_index("ix_paiement_usager", "paiement", ["usager_id", "date_paiement"], unique=False)
    op.create_table(
        "piece_manquante",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("demande_id", sa.Integer(), nullable=False),
        sa.Column("piece", sa.String(length=200), nullable=False),
        sa.Column("date_demande", sa.Date(), nullable=True),
        sa.Column("date_relance", sa.Date(), nullable=True),
        sa.Column("date_recue", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["demande_id"], ["demande.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("demande_id", "piece", name="uq_piece_manquante"),
    )
    op.create_index(
        "ix_piece_manquante_demande_id", "piece_manquante", ["demande_id"], unique=False
    )
    op.create_table(
        "rendez_vous",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("usager_id", sa.Integer(), nullable=False),
        sa.Column("demande_id", sa.Integer(), nullable=True),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("debut", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lieu", sa.String(length=200), nullable=True),
        sa.Column("annule", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["demande_id"], ["demande.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["usager_id"], ["usager.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("usager_id", "type", "debut", name="uq_rendez_vous"),
    )
    op.create_index("ix_rendez_vous_usager", "rendez_vous", ["usager_id", "debut"], unique=False)
    op.create_table(
        "usager_phone",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("usager_id", sa.Integer(), nullable=False),
        sa.Column("tiers_id", sa.Integer(), nullable=True),
        sa.Column("e164", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["tiers_id"], ["tiers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["usager_id"], ["usager.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("usager_id", "tiers_id", "e164", name="uq_usager_phone"),
    )
    op.create_index(
        "ix_usager_phone_e164", "usager_phone", ["e164", "usager_id", "tiers_id"], unique=False
    )
    op.create_index("ix_usager_phone_usager_id", "usager_phone", ["usager_id"], unique=False)


def downgrade() -> None:
    op.drop_table("audit")
    op.drop_table("contact")
    op.drop_table("paiement")
    op.drop_table("rendez_vous")
    op.drop_table("decision")
    op.drop_table("piece_manquante")
    op.drop_table("demande_status")
    op.drop_table("demande")
    op.drop_table("usager_phone")
    op.drop_table("tiers")
    op.drop_table("usager")
