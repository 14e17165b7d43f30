"""Tenants and price rules get a version: an edit from a stale page is refused, not applied.

``tenants.version`` and ``price_rules.version`` start at 1 and go up by one on every update
(SQLAlchemy's ``version_id_col``: each UPDATE names the version it read). The admin's edit
forms carry the version they showed; a save whose version is no longer current answers
"changed since you opened it" with the current values instead of overwriting another
admin's change. Existing rows start at version 1.

Revision ID: 0022_edit_versions
Revises: 0021_amount_limits
Create Date: 2026-12-06 16:30:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022_edit_versions"
down_revision = "0021_amount_limits"
branch_labels = None
depends_on = None

_TABLES = ("tenants", "price_rules")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("version")
