"""provider_configs.retired_at: a configuration removed while it had history is retired.

``rop providers remove`` deletes a configuration that never had a purchase, an inquiry or a
callback; one that had is kept (its purchases' status checks and callbacks go on) with
``retired_at`` set and ``enabled`` off: it takes no new purchase again. Existing rows are
not retired (NULL).

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


def downgrade() -> None:
    with op.batch_alter_table("provider_configs") as batch_op:
        batch_op.drop_column("retired_at")
