"""The wallets HTTP API (docs/wallets.md): scopes, tenancy, problems, pagination."""
from __future__ import annotations

import json

import pytest

ALL = ["wallets:read", "wallets:write"]


@pytest.fixture
def tenant(tenant_factory):
    return tenant_factory(scopes=ALL)


def _main(client, tenant):
    response = client.get("/v1/wallets", headers=tenant.headers)
    assert response.status_code == 200
    return next(w for w in response.json["items"] if w["is_main"])


def test_list_creates_the_main_wallet_and_post_creates_a_sub_wallet(client, tenant):
    main = _main(client, tenant)
    assert (main["currency"], main["available"], main["held"]) == ("IDR", 0, 0)
    created = client.post("/v1/wallets", headers=tenant.headers, json={"owner_ref": "cust-1"})
    assert created.status_code == 201 and created.json["owner_ref"] == "cust-1"
    again = client.post("/v1/wallets", headers=tenant.headers, json={"owner_ref": "cust-1"})
    assert again.status_code == 409
    listed = client.get("/v1/wallets", headers=tenant.headers).json
    assert len(listed["items"]) == 2 and listed["next_cursor"] is None
    one = client.get(f"/v1/wallets/{created.json['id']}", headers=tenant.headers).json
    assert one["id"] == created.json["id"]


def test_topup_transfer_statement_and_problems(client, tenant, platform_factory):
    finance = platform_factory().headers_for(tenant)  # top-ups: only the platform records them
    main = _main(client, tenant)
    sub = client.post("/v1/wallets", headers=tenant.headers, json={"owner_ref": "c"}).json
    top = client.post(f"/v1/wallets/{main['id']}/topups", headers=finance,
                      json={"amount": 1000, "ref_id": "t1"})
    assert top.status_code == 201 and top.json["replayed"] is False
    replay = client.post(f"/v1/wallets/{main['id']}/topups", headers=finance,
                         json={"amount": 1000, "ref_id": "t1"})
    assert replay.status_code == 201 and replay.json["journal_id"] == top.json["journal_id"]
    conflict = client.post(f"/v1/wallets/{main['id']}/topups", headers=finance,
                           json={"amount": 999, "ref_id": "t1"})
    assert conflict.status_code == 409 and conflict.mimetype == "application/problem+json"
    body = {"from_wallet_id": main["id"], "to_wallet_id": sub["id"], "amount": 400, "ref_id": "x1"}
    assert client.post("/v1/transfers", headers=tenant.headers, json=body).status_code == 201
    short = client.post("/v1/transfers", headers=tenant.headers, json=dict(body, amount=601, ref_id="x2"))
    assert short.status_code == 402 and short.json["type"].endswith("insufficient-funds")
    for bad in (0, -1, 1.5, "10", True):
        response = client.post("/v1/transfers", headers=tenant.headers, json=dict(body, amount=bad, ref_id="x3"))
        assert response.status_code == 422, bad
    page = client.get(f"/v1/wallets/{main['id']}/entries?limit=1", headers=tenant.headers).json
    assert page["items"][0]["balance_after"] == 1000 and page["next_cursor"]
    rest = client.get(f"/v1/wallets/{main['id']}/entries?cursor={page['next_cursor']}",
                      headers=tenant.headers).json
    assert [i["balance_after"] for i in rest["items"]] == [600] and rest["next_cursor"] is None
    assert client.get(f"/v1/wallets/{main['id']}", headers=tenant.headers).json["available"] == 600


def test_another_tenants_wallet_is_404(client, tenant, tenant_factory):
    other = tenant_factory(scopes=ALL)
    theirs = _main(client, other)
    mine = _main(client, tenant)
    for path in (f"/v1/wallets/{theirs['id']}", f"/v1/wallets/{theirs['id']}/entries"):
        assert client.get(path, headers=tenant.headers).status_code == 404
    assert client.post("/v1/transfers", headers=tenant.headers, json={
        "from_wallet_id": theirs["id"], "to_wallet_id": mine["id"], "amount": 1, "ref_id": "s"}).status_code == 404


def test_cli_topup_list_and_verify(run_rop, tenant):
    rop = run_rop
    result = rop("wallets", "topup", "--tenant", tenant.slug, "500", "--ref", "cli-1", "--reason", "BCA transfer")
    assert result.returncode == 0, result.stderr
    assert "available 500" in result.stdout
    again = rop("wallets", "topup", "--tenant", tenant.slug, "500", "--ref", "cli-1", "--reason", "BCA transfer",
                "--json")
    assert json.loads(again.stdout)["replayed"] is True
    bad = rop("wallets", "topup", "--tenant", "no-such-tenant", "5", "--reason", "x")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1
    listed = rop("wallets", "list", "--tenant", tenant.slug)
    assert "available=500" in listed.stdout
    verified = rop("wallets", "verify")
    assert verified.returncode == 0 and verified.stdout.startswith("ok"), verified.stdout + verified.stderr


def test_cli_verify_exits_non_zero_on_a_difference(run_rop, app, tenant):
    from sqlalchemy import update

    from hub.db import unit_of_work
    from hub.wallets import accounts
    from hub.wallets.models import Wallet

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        accounts.topup(tenant.operator, uow, None, 100, "t")
        uow.commit()
    with unit_of_work(app.extensions["rop"].db) as uow:
        uow.session.execute(update(Wallet).values(held=5))
        uow.commit()
    result = run_rop("wallets", "verify")
    assert result.returncode == 1
    assert "difference:" in result.stdout and "MISMATCH" in result.stdout
