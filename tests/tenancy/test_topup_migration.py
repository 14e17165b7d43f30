"""Migration 0016: tenants' clients lose ``wallets:topup``, each change in the audit log."""
from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text

from hub.migrate import upgrade
from tests.conftest import postgres_database


@pytest.fixture
def fresh_database_url(tmp_path):
    """An empty database of its own (SQLite, or a new PostgreSQL database when the suite runs
    on PostgreSQL): this test migrates it step by step."""
    base = os.environ.get("ROP_TEST_DATABASE_URL")
    if not base:
        yield f"sqlite:///{tmp_path / 'migrate.sqlite3'}"
        return
    with postgres_database(base, prefix="rop_mig") as url:
        yield url


def test_migration_0016_removes_the_topup_scope_from_tenants_clients_and_audits_it(fresh_database_url):
    upgrade(fresh_database_url, "0015_keys_first")
    engine = create_engine(fresh_database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO tenants (id, name, slug, status, settings, created_at, updated_at) "
                              "VALUES ('ten_a', 'A', 'a', 'active', '{}', :now, :now)"), {"now": "2026-01-01 00:00:00+00"})
            for client_id, tenant_id, kind, scopes in (
                    ("cli_all", "ten_a", "tenant", "products:read wallets:read wallets:topup wallets:write"),
                    ("cli_read", "ten_a", "tenant", "products:read wallets:read"),
                    ("svc_x", None, "service", "tenants:act-as wallets:hold")):
                conn.execute(text("INSERT INTO api_clients (id, tenant_id, name, kind, secret_hash, scopes, status, "
                                  "created_at) VALUES (:id, :tenant, '', :kind, 'h', :scopes, 'active', :now)"),
                             {"id": client_id, "tenant": tenant_id, "kind": kind, "scopes": scopes,
                              "now": "2026-01-01 00:00:00+00"})
        upgrade(fresh_database_url)
        with engine.connect() as conn:
            scopes = dict(conn.execute(text("SELECT id, scopes FROM api_clients")).all())
            audit = conn.execute(text("SELECT actor, action, tenant_id, target_id FROM audit_log")).all()
    finally:
        engine.dispose()
    assert scopes == {"cli_all": "products:read wallets:read wallets:write", "cli_read": "products:read wallets:read",
                      "svc_x": "tenants:act-as wallets:hold"}
    assert [tuple(row) for row in audit] == [("system:migration-0016", "client.scopes_narrowed", "ten_a", "cli_all")]
