"""bus_webhook_endpoints.events: the event types a tenant's webhook gets (None: every event).

Revision ID: 0023_webhook_event_filter
Revises: 0022_edit_versions
Create Date: 2026-12-06 16:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_webhook_event_filter"
down_revision = "0022_edit_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bus_webhook_endpoints") as batch_op:
        batch_op.add_column(sa.Column("events", sa.String(length=2000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bus_webhook_endpoints") as batch_op:
        batch_op.drop_column("events")
