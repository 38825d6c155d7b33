"""Merging duplicate usagers (issue 4, part 2b).

``usager.merged_into`` and ``usager.merged_at`` mark a usager merged into another (a tombstone),
and ``usager_merge`` logs every merge (who, when, why, what moved).

``merged_into`` is a plain indexed column, not a foreign key: SQLite adds (and drops) a
constrained column only by rebuilding the ``usager`` table, and dropping that table with foreign
keys on would cascade-delete every dossier. Both columns are added with ``ALTER TABLE ... ADD
COLUMN`` on both backends, so upgrading a large store rewrites nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2025-06-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("usager", sa.Column("merged_into", sa.Integer(), nullable=True))
    op.add_column("usager", sa.Column("merged_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_usager_merged_into", "usager", ["merged_into"], unique=False)
    op.create_table(
        "usager_merge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("kept_id", sa.Integer(), nullable=False),
        sa.Column("merged_id", sa.Integer(), nullable=False),
        sa.Column("moved", _JSON, nullable=False),
        sa.Column("resolved", _JSON, nullable=False),
        sa.ForeignKeyConstraint(["kept_id"], ["usager.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["merged_id"], ["usager.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("merged_id"),
    )
    op.create_index("ix_usager_merge_kept_id", "usager_merge", ["kept_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_usager_merge_kept_id", table_name="usager_merge")
    op.drop_table("usager_merge")
    op.drop_index("ix_usager_merged_into", table_name="usager")
    # SQLite ≥ 3.35 drops an unconstrained, unindexed column in place.
    op.drop_column("usager", "merged_at")
    op.drop_column("usager", "merged_into")
