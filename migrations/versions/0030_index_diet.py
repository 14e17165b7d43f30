"""Fewer index entries per accepted purchase: indexes no query uses dropped, and indexes of
values most rows do not have made partial.

An accepted purchase wrote 45 index entries on PostgreSQL (``pg_waldump --stats`` over 1,000
accepts on one connection: 44.8 ``Btree/INSERT_LEAF`` records each, 8.8 KB of WAL), and the
events feed's sequencer (hub.bus.feed) then rewrote each of its two events with five more.
After this migration: 31.8 entries and 7.6 KB of WAL an accept, three entries a numbered
event. (The database's CPU per accept under load did not move beyond this machine's noise in
alternated runs: bench/RESULTS.md, 2026-12-08.) What this migration changes, and why each is
safe (each query named is the only one of its table that filters on that column):

- ``bus_events``: ``ix_bus_events_tenant_id`` is the first column of
  ``ix_bus_events_tenant_feed``: dropped. ``ix_bus_events_feed_seq`` served only the
  sequencer's search for the events without a ``feed_seq``: replaced by
  ``ix_bus_events_unsequenced`` on ``seq`` ``WHERE feed_seq IS NULL`` (an event leaves it
  when it is numbered, so it holds only the events of the last moments). The feed's
  ``ix_bus_events_tenant_feed`` becomes ``WHERE feed_seq IS NOT NULL`` (``GET /v1/events``
  asks for that): an event enters it once, when it is numbered, not at its insert too.
- ``bus_outbox``: ``tenant_id`` dropped (no query filters on it); the relay's queue
  ``ix_bus_outbox_unpublished`` becomes ``(created_at) WHERE published_at IS NULL`` instead of
  ``(published_at, created_at)``: the rows not sent yet alone (the relay asks for those), not
  every row ever sent, and marking a row sent adds no entry to it.
- ``wallet_entries.tenant_id`` and ``.account``: a wallet's statement filters on the tenant and
  the wallet (``ix_wallet_entries_wallet_seq``); the ledger check sums every entry by account
  (a scan of the table either way).
- ``wallet_holds.tenant_id``: holds are read by id; ``expires_at`` becomes
  ``WHERE expires_at IS NOT NULL`` (the expiry job asks for that; a purchase's hold has none).
- ``transactions.provider_ref`` and ``.source``: ``WHERE … IS NOT NULL``: a purchase has no
  provider reference when accepted, and only a bulk row has a source; the look-ups
  (``provider_ref = …``, ``source = …`` or ``LIKE 'prefix%'``) imply it.

SQLite has partial indexes too: the same definitions on both.

Revision ID: 0030_index_diet
Revises: 0029_attempt_not_sent
Create Date: 2026-12-08 03:10:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030_index_diet"
down_revision = "0029_attempt_not_sent"
branch_labels = None
depends_on = None

#: (index, table, columns, predicate) made partial
PARTIAL = (
    ("ix_bus_events_tenant_feed", "bus_events", ["tenant_id", "feed_seq"], "feed_seq IS NOT NULL"),
    ("ix_wallet_holds_expires_at", "wallet_holds", ["expires_at"], "expires_at IS NOT NULL"),
    ("ix_transactions_provider_ref", "transactions", ["provider_ref"], "provider_ref IS NOT NULL"),
    ("ix_transactions_source", "transactions", ["source"], "source IS NOT NULL"),
)
#: (index, table, columns) dropped
DROPPED = (
    ("ix_bus_events_tenant_id", "bus_events", ["tenant_id"]),
    ("ix_bus_events_feed_seq", "bus_events", ["feed_seq"]),
    ("ix_bus_outbox_tenant_id", "bus_outbox", ["tenant_id"]),
    ("ix_wallet_entries_tenant_id", "wallet_entries", ["tenant_id"]),
    ("ix_wallet_entries_account", "wallet_entries", ["account"]),
    ("ix_wallet_holds_tenant_id", "wallet_holds", ["tenant_id"]),
)
UNSEQUENCED = ("ix_bus_events_unsequenced", "bus_events", ["seq"], "feed_seq IS NULL")
#: (index, table, columns before, columns after, predicate after): the relay's queue
UNPUBLISHED = ("ix_bus_outbox_unpublished", "bus_outbox", ["published_at", "created_at"], ["created_at"],
               "published_at IS NULL")


def _partial(name: str, table: str, columns: list[str], where: str) -> None:
    op.create_index(name, table, columns, unique=False, postgresql_where=sa.text(where),
                    sqlite_where=sa.text(where))


def upgrade() -> None:
    for name, table, _columns in DROPPED:
        op.drop_index(name, table_name=table)
    for name, table, columns, where in PARTIAL:
        op.drop_index(name, table_name=table)
        _partial(name, table, columns, where)
    _partial(*UNSEQUENCED)
    name, table, _before, after, where = UNPUBLISHED
    op.drop_index(name, table_name=table)
    _partial(name, table, after, where)


def downgrade() -> None:
    name, table, before, _after, _where = UNPUBLISHED
    op.drop_index(name, table_name=table)
    op.create_index(name, table, before, unique=False)
    op.drop_index(UNSEQUENCED[0], table_name=UNSEQUENCED[1])
    for name, table, columns, _where in PARTIAL:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, unique=False)
    for name, table, columns in DROPPED:
        op.create_index(name, table, columns, unique=False)
