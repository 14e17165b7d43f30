"""The tenancy CLI, run as the operator runs it (in this process: tests/conftest.py run_rop)."""
from __future__ import annotations

import json

import pytest


@pytest.fixture
def rop(run_rop):
    return run_rop


def test_tenants_clients_and_admin_from_the_cli(rop):
    created = rop("tenants", "create", "Acme Corp", "--json")
    assert created.returncode == 0, created.stderr
    tenant = json.loads(created.stdout)
    assert tenant["slug"] == "acme-corp"
    dup = rop("tenants", "create", "Acme Corp")
    assert dup.returncode == 1 and dup.stderr.count("\n") == 1 and "exists" in dup.stderr
    listed = json.loads(rop("tenants", "list", "--json").stdout)
    assert [t["slug"] for t in listed] == ["acme-corp"]
    client = json.loads(rop("clients", "create", "--tenant", "acme-corp", "--scope", "products:read", "--json").stdout)
    assert client["client_id"].startswith("cli_") and len(client["client_secret"]) >= 32
    assert client["scopes"] == ["products:read"]
    listing = rop("clients", "list", "--tenant", "acme-corp").stdout
    assert client["client_id"] in listing and client["client_secret"] not in listing
    assert rop("clients", "revoke", client["client_id"]).returncode == 0
    bad = rop("clients", "create", "--tenant", "nope")
    assert bad.returncode == 1 and "not found" in bad.stderr and "Traceback" not in bad.stderr
    user = rop("admin", "create-user", "ops@example.com", "--password-stdin", "--role", "operator",
               stdin="a-long-enough-password\n")
    assert user.returncode == 0, user.stderr
    weak = rop("admin", "create-user", "x@example.com", "--password-stdin", stdin="short\n")
    assert weak.returncode == 1 and "12 characters" in weak.stderr


def test_demo_is_idempotent_and_prints_working_credentials(rop, client):
    first = rop("demo")
    assert first.returncode == 0, first.stderr
    second = rop("demo")
    assert second.returncode == 0, second.stderr
    lines = dict(line.split(None, 1) for line in second.stdout.splitlines()[1:])
    token = client.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": lines["client_id"],
                                              "client_secret": lines["client_secret"]})
    assert token.status_code == 200
    granted = set(token.json["scope"].split())
    assert "wallets:topup" not in granted and {"transactions:write", "wallets:read"} <= granted
    assert "admin@example.com" in first.stdout


def test_the_cli_creates_a_read_only_viewer(rop):
    viewer = rop("admin", "create-user", "audit@example.com", "--password-stdin", "--role", "viewer",
                 stdin="a-long-enough-password\n")
    assert viewer.returncode == 0, viewer.stderr
    assert "created viewer audit@example.com" in viewer.stdout
    unknown = rop("admin", "create-user", "x@example.com", "--password-stdin", "--role", "root",
                  stdin="a-long-enough-password\n")
    assert unknown.returncode != 0 and "root" in unknown.stderr


def test_clients_create_and_list_without_tenant_or_platform_are_usage_errors(rop):
    """Bad arguments exit 2 (docs/api.md), in one line that says what to give."""
    for args in (("clients", "create"), ("clients", "create", "--tenant", "x", "--platform"),
                 ("clients", "list"), ("clients", "list", "--tenant", "x", "--platform")):
        done = rop(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.count("\n") == 1 and "give either --tenant SLUG" in done.stderr
