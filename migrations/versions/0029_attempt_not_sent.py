"""Attempts that never left the hub: ``transaction_attempts.not_sent``.

A purchase the hub decided not to send (its provider configuration switched off, removed
or no longer enabled for the tenant, its circuit breaker open, or a connection that never
opened) is recorded as a rejected attempt, so that the next offer is tried. The admin
dashboard counted those as the provider's rejections, lowering its success rate for calls
it never received. ``not_sent`` marks them; the dashboard counts them apart. Attempts
stored before are marked from their message (the hub's own wording for each of those cases).

Revision ID: 0029_attempt_not_sent
Revises: 0028_events_feed_seq
Create Date: 2026-12-07 20:55:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029_attempt_not_sent"
down_revision = "0028_events_feed_seq"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transaction_attempts") as batch_op:
        batch_op.add_column(sa.Column("not_sent", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE transaction_attempts SET not_sent = true WHERE state = 'rejected' AND ("
               "message LIKE 'not sent:%' OR message IN ('provider circuit breaker is open', "
               "'provider configuration is switched off'))")


def downgrade() -> None:
    with op.batch_alter_table("transaction_attempts") as batch_op:
        batch_op.drop_column("not_sent")
