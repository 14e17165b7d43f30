"""Money operations' limits per tenant and the four-eyes approvals of operators' top-ups and
adjustments (hub.wallets.limits, hub.wallets.approvals). Two new tables; nothing existing
changes.

Revision ID: 0021_amount_limits
Revises: 0020_provider_config_retired
Create Date: 2026-12-06 16:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hub.db

revision = "0021_amount_limits"
down_revision = "0020_provider_config_retired"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "wallet_tenant_limits",
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("limits", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=254), nullable=True),
        sa.Column("updated_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_wallet_tenant_limits")),
    )
    op.create_table(
        "wallet_approvals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.Column("wallet_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("ref", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("why", sa.String(length=255), nullable=True),
        sa.Column("requested_by", sa.String(length=254), nullable=False),
        sa.Column("requested_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(length=254), nullable=True),
        sa.Column("decided_at", hub.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("journal_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_approvals")),
        sa.UniqueConstraint("tenant_id", "kind", "ref", name=op.f("uq_wallet_approvals_tenant_id_kind_ref")),
    )
    with op.batch_alter_table("wallet_approvals") as batch_op:
        batch_op.create_index("ix_wallet_approvals_requester_day", ["requested_by", "requested_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_wallet_approvals_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_wallet_approvals_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("wallet_approvals") as batch_op:
        batch_op.drop_index(batch_op.f("ix_wallet_approvals_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_wallet_approvals_status"))
        batch_op.drop_index("ix_wallet_approvals_requester_day")
    op.drop_table("wallet_approvals")
    op.drop_table("wallet_tenant_limits")
