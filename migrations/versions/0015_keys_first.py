"""Unique keys that lead with the key looked up many at a time.

- wallet_journals: ``(tenant_id, kind, idem_key)`` becomes ``(idem_key, tenant_id, kind)``,
  and the index on ``tenant_id`` alone, which no query uses, goes;
- transactions: ``(tenant_id, ref_id)`` becomes ``(ref_id, tenant_id)``.

The look-ups of many keys at once — ``idem_key IN (...)`` for a group's holds or a batch's
captures, ``ref_id IN (...)`` for a bulk group or a validation batch — went through the old
keys with the tenant alone as the index condition whenever PostgreSQL had no statistics on
the table (new or fast-growing, autovacuum behind or off), or through the tenant's other
index: a scan of every hold, capture or transaction of the tenant, 200 ms and more per
look-up at 100,000 rows. With the looked-up column first, the keys are the index condition.
The same columns stay unique; ``ON CONFLICT (tenant_id, kind, idem_key)`` infers the new
index as it did the old; a look-up of one key (all the columns) is the same probe.

Revision ID: 0015_keys_first
Revises: 0014_transaction_time_indexes
Create Date: 2026-12-02 23:20:00
"""
from __future__ import annotations

from alembic import op

revision = "0015_keys_first"
down_revision = "0014_transaction_time_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("wallet_journals") as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_wallet_journals_idem_key_tenant_id_kind"),
                                          ["idem_key", "tenant_id", "kind"])
        batch_op.drop_constraint(batch_op.f("uq_wallet_journals_tenant_id_kind_idem_key"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_wallet_journals_tenant_id"))
    with op.batch_alter_table("transactions") as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_transactions_ref_id_tenant_id"), ["ref_id", "tenant_id"])
        batch_op.drop_constraint(batch_op.f("uq_transactions_tenant_id_ref_id"), type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_transactions_tenant_id_ref_id"), ["tenant_id", "ref_id"])
        batch_op.drop_constraint(batch_op.f("uq_transactions_ref_id_tenant_id"), type_="unique")
    with op.batch_alter_table("wallet_journals") as batch_op:
        batch_op.create_index(batch_op.f("ix_wallet_journals_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_unique_constraint(batch_op.f("uq_wallet_journals_tenant_id_kind_idem_key"),
                                          ["tenant_id", "kind", "idem_key"])
        batch_op.drop_constraint(batch_op.f("uq_wallet_journals_idem_key_tenant_id_kind"), type_="unique")
