"""Top-ups are the platform's alone: tenants' clients lose the scope ``wallets:topup``.

A top-up records money the platform received for a tenant (a bank transfer). Until now
every client created without ``--scope`` (the demo's included, and the admin's New client
form with every box ticked) held ``wallets:topup``, and a tenant could credit its own
wallet with any amount. From now on only the operator (admin UI, ``rop wallets topup``)
and platform clients (``rop clients create --platform``, acting for the tenant named in
``ROP-On-Behalf-Of``) may top up.

What this migration does, data only (no schema change):

- removes ``wallets:topup`` from the scopes of every client of kind ``tenant``; their
  other scopes stay as they were;
- writes one audit entry per client changed (action ``client.scopes_narrowed``, actor
  ``system:migration-0016``, with the scopes before and after), so an operator can see which
  clients held it and give the platform's own finance system a platform client instead.

Tokens already issued to those clients stop carrying the scope at once: the hub intersects
a token's scopes with what its client may hold. The downgrade changes nothing (it cannot
know which clients should get the scope back, and none should).

Revision ID: 0016_topups_are_platform_only
Revises: 0015_keys_first
Create Date: 2026-12-03 10:00:00
"""
from __future__ import annotations

import datetime as dt
import logging

import sqlalchemy as sa
from alembic import op

import hub.db

revision = "0016_topups_are_platform_only"
down_revision = "0015_keys_first"
branch_labels = None
depends_on = None

PLATFORM_ONLY = "wallets:topup"

clients = sa.table("api_clients", sa.column("id", sa.String), sa.column("tenant_id", sa.String),
                   sa.column("kind", sa.String), sa.column("scopes", sa.Text))
audit = sa.table("audit_log", sa.column("at", hub.db.UTCDateTime(timezone=True)), sa.column("actor_type", sa.String),
                 sa.column("actor", sa.String), sa.column("action", sa.String), sa.column("tenant_id", sa.String),
                 sa.column("target_type", sa.String), sa.column("target_id", sa.String),
                 sa.column("before", sa.JSON), sa.column("after", sa.JSON))


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(clients.c.id, clients.c.tenant_id, clients.c.scopes)
                        .where(clients.c.kind == "tenant", clients.c.scopes.contains(PLATFORM_ONLY))).all()
    now = dt.datetime.now(dt.UTC)
    changed = 0
    for client_id, tenant_id, scopes in rows:
        before = (scopes or "").split()
        if PLATFORM_ONLY not in before:
            continue  # a longer scope name containing the text
        after = [s for s in before if s != PLATFORM_ONLY]
        bind.execute(clients.update().where(clients.c.id == client_id).values(scopes=" ".join(after)))
        bind.execute(audit.insert().values(
            at=now, actor_type="system", actor="system:migration-0016", action="client.scopes_narrowed",
            tenant_id=tenant_id, target_type="client", target_id=client_id,
            before={"scopes": " ".join(before)}, after={"scopes": " ".join(after),
                                                        "removed": [PLATFORM_ONLY]}))
        changed += 1
    logging.getLogger("alembic.runtime.migration").info(
        "removed %s from %d tenant client(s); see the audit log (client.scopes_narrowed)", PLATFORM_ONLY, changed)


def downgrade() -> None:
    pass  # nothing to restore: no tenant's client should hold the scope again
