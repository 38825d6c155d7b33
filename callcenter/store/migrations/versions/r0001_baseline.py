"""Baseline: the call event trail (``call``, ``call_event``) as issue 1 created it.

Databases created before migrations existed (``create_all``) hold exactly this schema; they are
stamped at this revision rather than recreated (see :func:`callcenter.store.db.create_schema`).

Revision ID: 0001
Revises:
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "call",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sip_call_id", sa.String(length=255), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dialled", sa.String(length=64), nullable=False),
        sa.Column("flow_id", sa.String(length=128), nullable=True),
        sa.Column("caller", sa.String(length=128), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("hangup_cause", sa.String(length=64), nullable=True),
        sa.Column("hangup_side", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_call_sip_call_id", "call", ["sip_call_id"], unique=True)
    op.create_index("ix_call_started_at", "call", ["started_at"], unique=False)
    op.create_table(
        "call_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("data", _JSON, nullable=False),
        sa.ForeignKeyConstraint(["call_id"], ["call.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("call_id", "seq", name="uq_call_event_call_seq"),
    )


def downgrade() -> None:
    op.drop_table("call_event")
    op.drop_index("ix_call_started_at", table_name="call")
    op.drop_index("ix_call_sip_call_id", table_name="call")
    op.drop_table("call")
