"""Time indexes for the operators' views: transactions by created_at, attempts by sent_at.

Revision ID: 0014_transaction_time_indexes
Revises: 0013_bulk
Create Date: 2026-11-25 17:10:00
"""
from __future__ import annotations

from alembic import op

revision = "0014_transaction_time_indexes"
down_revision = "0013_bulk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_transactions_created", "transactions", ["created_at"], unique=False)
    op.create_index("ix_transaction_attempts_sent", "transaction_attempts", ["sent_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_transaction_attempts_sent", table_name="transaction_attempts")
    op.drop_index("ix_transactions_created", table_name="transactions")
