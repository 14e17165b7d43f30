"""Indexes for the admin's transaction list and search at 100,000 transactions per tenant.

- ``(tenant_id, status, created_at)`` and ``(status, created_at)``: a tenant's (or every
  tenant's) transactions of one status, newest first, and their count;
- ``ref_id`` with ``varchar_pattern_ops`` on PostgreSQL: the search by ref id prefix
  (``LIKE 'abc%'`` uses it whatever the database's collation);
- ``customer_no`` and ``provider_ref``: the search by customer number and provider reference;
- ``(tenant_id, price)``: a tenant's list sorted by price.

Revision ID: 0024_admin_list_indexes
Revises: 0023_webhook_event_filter
Create Date: 2026-12-06 16:20:00
"""
from __future__ import annotations

from alembic import op

revision = "0024_admin_list_indexes"
down_revision = "0023_webhook_event_filter"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_transactions_tenant_status_created", "transactions", ["tenant_id", "status", "created_at"])
    op.create_index("ix_transactions_status_created", "transactions", ["status", "created_at"])
    op.create_index("ix_transactions_ref_prefix", "transactions", ["ref_id"],
                    postgresql_ops={"ref_id": "varchar_pattern_ops"})
    op.create_index("ix_transactions_customer_no", "transactions", ["customer_no"],
                    postgresql_ops={"customer_no": "varchar_pattern_ops"})
    op.create_index("ix_transactions_provider_ref", "transactions", ["provider_ref"])
    op.create_index("ix_transactions_tenant_price", "transactions", ["tenant_id", "price"])


def downgrade() -> None:
    for name in ("ix_transactions_tenant_price", "ix_transactions_provider_ref", "ix_transactions_customer_no", "ix_transactions_ref_prefix",
                 "ix_transactions_status_created", "ix_transactions_tenant_status_created"):
        op.drop_index(name, table_name="transactions")
