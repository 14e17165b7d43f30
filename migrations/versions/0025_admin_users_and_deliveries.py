"""Admin users are invited and reset by one-time links; webhook attempts keep their URL and a
response excerpt; dead letters can be discarded.

- ``admin_user_tokens``: one-time invitation and password-reset links (SHA-256 of the token
  only, an expiry, the time it was used); ``admin_users.role`` gains ``viewer`` (read-only)
  and ``admin_users.status`` ``invited`` (no password yet): both plain strings already.
- ``bus_webhook_attempts.url`` and ``.response_body``: where an attempt POSTed and the first
  characters of the answer (the admin's delivery page shows them).
- ``bus_dead_letters.discarded_at``: an operator decided not to replay it.

Revision ID: 0025_admin_users_and_deliveries
Revises: 0024_admin_list_indexes
Create Date: 2026-12-06 17:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import hub.db

revision = "0025_admin_users_and_deliveries"
down_revision = "0024_admin_list_indexes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_user_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=254), nullable=False),
        sa.Column("created_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", hub.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", hub.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["admin_users.id"], name=op.f("fk_admin_user_tokens_user_id_admin_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_user_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_admin_user_tokens_token_hash")),
    )
    op.create_index(op.f("ix_admin_user_tokens_user_id"), "admin_user_tokens", ["user_id"], unique=False)
    with op.batch_alter_table("bus_webhook_attempts") as batch_op:
        batch_op.add_column(sa.Column("url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("response_body", sa.Text(), nullable=True))
    with op.batch_alter_table("bus_dead_letters") as batch_op:
        batch_op.add_column(sa.Column("discarded_at", hub.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bus_dead_letters") as batch_op:
        batch_op.drop_column("discarded_at")
    with op.batch_alter_table("bus_webhook_attempts") as batch_op:
        batch_op.drop_column("response_body")
        batch_op.drop_column("url")
    op.drop_index(op.f("ix_admin_user_tokens_user_id"), table_name="admin_user_tokens")
    op.drop_table("admin_user_tokens")
