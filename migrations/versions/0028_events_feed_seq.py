"""The events feed's sequence in commit order: ``bus_events.feed_seq``.

``GET /v1/events?after=`` paged by ``seq``, which the insert takes from its sequence: a
transaction that inserted an event and committed after another that inserted a later one
(a batch's long unit of work beside a quick accept) let a follower read the later one, move
its cursor past it, and never see the earlier one (tests/bus/test_feed_order.py).
``feed_seq`` is given after the commit by one sequencer at a time (hub.bus.feed), so it
grows in commit order. The events already stored keep their ``seq`` as their ``feed_seq``:
a cursor a follower holds stays valid. PostgreSQL takes the numbers from the sequence
``bus_events_feed_seq``, started after them; SQLite (one writer at a time: its ``seq``
order is the commit order) copies ``seq``.

Revision ID: 0028_events_feed_seq
Revises: 0027_accept_function_jsonb
Create Date: 2026-12-07 13:20:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0028_events_feed_seq"
down_revision = "0027_accept_function_jsonb"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bus_events") as batch_op:
        batch_op.add_column(sa.Column("feed_seq", sa.BigInteger(), nullable=True))
    op.execute("UPDATE bus_events SET feed_seq = seq")
    op.create_index("ix_bus_events_tenant_feed", "bus_events", ["tenant_id", "feed_seq"], unique=False)
    op.create_index("ix_bus_events_feed_seq", "bus_events", ["feed_seq"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE bus_events_feed_seq")
        op.execute("SELECT setval('bus_events_feed_seq', COALESCE((SELECT max(seq) FROM bus_events), 0) + 1, false)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE IF EXISTS bus_events_feed_seq")
    op.drop_index("ix_bus_events_feed_seq", table_name="bus_events")
    op.drop_index("ix_bus_events_tenant_feed", table_name="bus_events")
    with op.batch_alter_table("bus_events") as batch_op:
        batch_op.drop_column("feed_seq")
