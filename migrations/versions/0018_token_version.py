"""API clients get a token version: rotating a client's secret ends its tokens.

``api_clients.token_version`` starts at 0 and goes up by one on every secret rotation;
each access token carries the version it was issued under (claim ``ver``; a token without
one was issued under 0) and is refused once its client's version moved on (checked with
the client's status, so within the same few seconds as a revocation).

Revision ID: 0018_token_version
Revises: 0016_topups_are_platform_only
Create Date: 2026-12-06 13:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_token_version"
down_revision = "0016_topups_are_platform_only"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_clients") as batch_op:
        batch_op.add_column(sa.Column("token_version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("api_clients") as batch_op:
        batch_op.drop_column("token_version")
