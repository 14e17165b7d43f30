"""provider_configs.retired_at: a configuration removed while it had history is retired.

``rop providers remove`` deletes a configuration that never had a purchase, an inquiry or a
callback; one that had is kept (its purchases' status checks and callbacks go on) with
``retired_at`` set and ``enabled`` off: it takes no new purchase again. Existing rows are
not retired (NULL).

Also repaired: before this revision ``rop providers add/enable --tenant SLUG`` stored the
slug itself as the tenant id (a configuration, or a per-tenant switch, that served nobody).
Each ``tenant_id`` in ``provider_configs`` and ``provider_config_tenants`` that is a
tenant's slug and no tenant's id becomes that tenant's id; ids that name no tenant at all
are left as they are (``rop providers list`` shows them; remove and add them again).

Revision ID: 0020_provider_config_retired
Revises: 0019_callback_body_bytes
Create Date: 2026-12-06 16:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hub.db

revision = "0020_provider_config_retired"
down_revision = "0019_callback_body_bytes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("provider_configs") as batch_op:
        batch_op.add_column(sa.Column("retired_at", hub.db.UTCDateTime(timezone=True), nullable=True))
    by_slug = "tenant_id IN (SELECT slug FROM tenants) AND tenant_id NOT IN (SELECT id FROM tenants)"
    tenant_of_slug = "(SELECT t.id FROM tenants t WHERE t.slug = {table}.tenant_id)"
    # A per-tenant switch stored twice (once by slug, once by id): the one by id stands.
    op.execute(sa.text(
        f"DELETE FROM provider_config_tenants WHERE {by_slug} AND EXISTS (SELECT 1 FROM provider_config_tenants "
        "o WHERE o.config_id = provider_config_tenants.config_id AND o.tenant_id = "
        f"{tenant_of_slug.format(table='provider_config_tenants')})"))
    for table in ("provider_configs", "provider_config_tenants"):
        op.execute(sa.text(f"UPDATE {table} SET tenant_id = {tenant_of_slug.format(table=table)} WHERE {by_slug}"))


def downgrade() -> None:
    with op.batch_alter_table("provider_configs") as batch_op:
        batch_op.drop_column("retired_at")
