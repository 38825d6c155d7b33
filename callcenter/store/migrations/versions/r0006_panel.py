"""Agent panel: roles, passwords, lockout, sessions, wrap-up fields (issue 6).

Every column is added with a plain ``ALTER TABLE ... ADD COLUMN`` on both backends (SQLite
accepts a NOT NULL column with a constant default, SQLite >= 3.35 drops an unconstrained column
in place). No batch (copy-and-move) operation: rebuilding ``agent`` or ``contact`` on SQLite
with foreign keys on would cascade to ``agent_skill`` and lose rows, and upgrading a large store
rewrites nothing this way.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "agent",
        sa.Column("role", sa.String(length=16), nullable=False, server_default="agent"),
    )
    op.add_column("agent", sa.Column("password_hash", sa.String(length=255), nullable=True))
    op.add_column(
        "agent", sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
    )
    op.add_column("agent", sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "panel_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agent.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_panel_session_session_hash", "panel_session", ["session_hash"], unique=True)
    op.create_index("ix_panel_session_agent_id", "panel_session", ["agent_id"], unique=False)
    op.add_column("contact", sa.Column("wrapup_motif", sa.String(length=64), nullable=True))
    op.add_column("contact", sa.Column("first_contact_resolved", sa.Boolean(), nullable=True))
    op.add_column("contact", sa.Column("follow_up_due", sa.Date(), nullable=True))


def downgrade() -> None:
    op.drop_column("contact", "follow_up_due")
    op.drop_column("contact", "first_contact_resolved")
    op.drop_column("contact", "wrapup_motif")
    op.drop_index("ix_panel_session_agent_id", table_name="panel_session")
    op.drop_index("ix_panel_session_session_hash", table_name="panel_session")
    op.drop_table("panel_session")
    op.drop_column("agent", "locked_until")
    op.drop_column("agent", "failed_logins")
    op.drop_column("agent", "password_hash")
    op.drop_column("agent", "role")
