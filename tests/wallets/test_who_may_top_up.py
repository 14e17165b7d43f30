"""Who may top up a wallet: only the platform (the operator, or a platform client acting for
the tenant) records money it received; a tenant's own client never can, whatever its scopes."""
from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select, update

from hub.auth import issue_access_token
from hub.context import CallContext
from hub.db import unit_of_work
from hub.tenancy.models import ApiClient, AuditEntry
from hub.tenancy.scopes import DEFAULT_TENANT_SCOPES, TENANT_SCOPES


def _main(client, tenant) -> dict:
    response = client.get("/v1/wallets", headers=tenant.headers)
    assert response.status_code == 200
    return next(w for w in response.json["items"] if w["is_main"])


def _available(app, tenant) -> int:
    from hub.wallets import accounts

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        wallet = accounts.get_main_wallet(tenant.operator, uow)
        uow.commit()
        return wallet.available


def _topups(app) -> list[AuditEntry]:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        rows = list(uow.session.scalars(select(AuditEntry).where(AuditEntry.action == "wallet.topped_up")
                                        .order_by(AuditEntry.id)))
        uow.session.expunge_all()
        return rows


def _token(app, client_id: str, tenant_id: str | None, scopes, **kwargs) -> dict[str, str]:
    state = app.extensions["rop"]
    token = issue_access_token(state.config.secret_key, client_id, tenant_id, frozenset(scopes),
                               kwargs.pop("ttl", 600), **kwargs)
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("scopes", [None, sorted(TENANT_SCOPES)], ids=["default scopes", "every tenant scope"])
def test_a_tenants_own_client_cannot_top_up_its_wallet(app, client, scopes):
    """The attack: the tenant's own token, POST /topups with a billion → 201 before; now 403
    and the balance stays 0. Made through the tenancy use-case as the CLI and admin make it."""
    from hub.tenancy import service

    with unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="cli:tests")
        tenant = service.create_tenant(ctx, uow, "Greedy")
        own, _secret = service.create_client(ctx, uow, tenant.id, scopes=scopes)
        uow.commit()
        tenant_id, own_id, own_scopes = tenant.id, own.id, own.scope_set
    headers = _token(app, own_id, tenant_id, own_scopes)
    wallets = client.get("/v1/wallets", headers=headers)
    assert wallets.status_code == 200
    main = wallets.json["items"][0]
    response = client.post(f"/v1/wallets/{main['id']}/topups", headers=headers,
                           json={"amount": 1_000_000_000, "ref_id": "x"})
    assert response.status_code == 403 and response.mimetype == "application/problem+json"
    assert client.get(f"/v1/wallets/{main['id']}", headers=headers).json["available"] == 0
    assert _topups(app) == []


def test_a_tenant_client_whose_row_or_token_claims_the_topup_scope_still_gets_403(app, client, tenant_factory):
    """A row holding wallets:topup (written before the scope became the platform's, or by hand)
    and a validly signed token claiming it: the hub grants a tenant's client no more than a
    tenant's client may hold, at the token endpoint and on every call."""
    tenant = tenant_factory()
    with unit_of_work(app.extensions["rop"].db) as uow:
        uow.session.execute(update(ApiClient).where(ApiClient.id == tenant.client_id)
                            .values(scopes=" ".join(sorted({*TENANT_SCOPES, "wallets:topup"}))))
        uow.commit()
    main = _main(client, tenant)
    forged_claim = _token(app, tenant.client_id, tenant.id, set(TENANT_SCOPES) | {"wallets:topup"})
    response = client.post(f"/v1/wallets/{main['id']}/topups", headers=forged_claim,
                           json={"amount": 10**9, "ref_id": "claimed"})
    assert response.status_code == 403
    asked = client.post("/oauth/token", data={"grant_type": "client_credentials", "scope": "wallets:topup"},
                        auth=(tenant.client_id, tenant.client_secret))
    assert asked.status_code == 400 and asked.json["error"] == "invalid_scope"
    granted = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                          auth=(tenant.client_id, tenant.client_secret))
    assert "wallets:topup" not in granted.json["scope"].split()
    assert _available(app, tenant) == 0


def test_no_tenant_client_is_ever_created_with_the_topup_scope(app, tenant_factory):
    from hub.errors import ValidationFailed
    from hub.tenancy import service

    tenant = tenant_factory()
    with unit_of_work(app.extensions["rop"].db) as uow:
        with pytest.raises(ValidationFailed, match="may not hold the scope 'wallets:topup'"):
            service.create_client(CallContext.system(actor="cli:tests"), uow, tenant.id,
                                  scopes=["wallets:read", "wallets:topup"])
        fresh, _ = service.create_client(CallContext.system(actor="cli:tests"), uow, tenant.id)
        assert fresh.scope_set == DEFAULT_TENANT_SCOPES  # least privilege: read and purchase
        uow.rollback()


def test_a_platform_client_tops_up_the_tenant_it_names_and_is_audited_with_both(app, client, tenant_factory,
                                                                                platform_factory):
    tenant_a, tenant_b = tenant_factory(), tenant_factory()
    finance = platform_factory(scopes=["wallets:topup", "wallets:read"])
    wallet_a, wallet_b = _main(client, tenant_a), _main(client, tenant_b)
    body = {"amount": 250_000, "ref_id": "BCA-2026-0001", "reason": "BCA transfer, statement line 7"}

    no_tenant = client.post(f"/v1/wallets/{wallet_a['id']}/topups", headers=finance.headers, json=body)
    assert no_tenant.status_code == 400 and no_tenant.mimetype == "application/problem+json"
    assert "ROP-On-Behalf-Of" in no_tenant.json["detail"]

    # Acting for A with B's wallet: 404, B untouched (the wallet is looked up in A only).
    crossed = client.post(f"/v1/wallets/{wallet_b['id']}/topups", headers=finance.headers_for(tenant_a), json=body)
    assert crossed.status_code == 404
    assert _available(app, tenant_b) == 0

    by_slug = client.post(f"/v1/wallets/{wallet_a['id']}/topups", headers=finance.headers_for(tenant_a), json=body)
    assert by_slug.status_code == 201 and by_slug.json["replayed"] is False
    by_id = client.post(f"/v1/wallets/{wallet_a['id']}/topups", headers=finance.headers_for(tenant_a.id), json=body)
    assert by_id.status_code == 201 and by_id.json["replayed"] is True  # the same transfer, once
    assert _available(app, tenant_a) == 250_000
    read = client.get(f"/v1/wallets/{wallet_a['id']}", headers=finance.headers_for(tenant_a))
    assert read.status_code == 200 and read.json["available"] == 250_000

    audited = _topups(app)
    assert len(audited) == 1
    entry = audited[0]
    assert (entry.actor_type, entry.actor, entry.tenant_id) == ("client", finance.client_id, tenant_a.id)
    assert entry.target_id == wallet_a["id"]
    assert entry.after["amount"] == 250_000 and entry.after["reason"] == body["reason"]
    assert entry.after["ref_id"] == "BCA-2026-0001"

    unknown = client.post(f"/v1/wallets/{wallet_a['id']}/topups", headers=finance.headers_for("no-such-tenant"),
                          json=dict(body, ref_id="u"))
    assert unknown.status_code == 404


def test_a_platform_client_cannot_act_for_a_disabled_tenant(app, client, tenant_factory, platform_factory):
    from hub.tenancy.service import set_tenant_status

    tenant = tenant_factory()
    finance = platform_factory()
    wallet = _main(client, tenant)
    with unit_of_work(app.extensions["rop"].db) as uow:
        set_tenant_status(CallContext.system(actor="cli:tests"), uow, tenant.id, "disabled")
        uow.commit()
    response = client.post(f"/v1/wallets/{wallet['id']}/topups", headers=finance.headers_for(tenant),
                           json={"amount": 5, "ref_id": "d"})
    assert response.status_code == 403 and "disabled" in response.json["detail"]


def test_tampered_and_expired_platform_tokens_are_refused(app, client, tenant_factory, platform_factory):
    tenant = tenant_factory()
    finance = platform_factory()
    wallet = _main(client, tenant)
    url = f"/v1/wallets/{wallet['id']}/topups"
    body = {"amount": 5, "ref_id": "t"}
    header, payload, signature = finance.token.split(".")
    tampered = f"{header}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    expired = _token(app, finance.client_id, None, finance.scopes, ttl=60, now=time.time() - 3600)
    for auth in ({"Authorization": f"Bearer {tampered}"}, expired):
        response = client.post(url, headers={**auth, "ROP-On-Behalf-Of": tenant.slug}, json=body)
        assert response.status_code == 401, response.json
    # A token naming a tenant in its claims does not make a platform client that tenant's.
    with_tid = _token(app, finance.client_id, tenant.id, finance.scopes)
    assert client.post(url, headers={**with_tid, "ROP-On-Behalf-Of": tenant.slug}, json=body).status_code == 401
    assert _available(app, tenant) == 0


def test_a_platform_client_never_spends_a_tenants_money(app, client, tenant_factory, platform_factory):
    """By design a platform client records money received and may read; it never buys,
    transfers or submits bulk files as the tenant (those scopes are refused at creation, and a
    call needing them is 403)."""
    from hub.errors import ValidationFailed
    from hub.tenancy import service

    tenant = tenant_factory()
    finance = platform_factory(scopes=["wallets:topup", "wallets:read", "transactions:read"])
    for scope in ("transactions:write", "wallets:write", "bulk:write", "webhooks:write", "tenants:act-as"):
        with unit_of_work(app.extensions["rop"].db) as uow, pytest.raises(ValidationFailed):
            service.create_client(CallContext.system(actor="cli:tests"), uow, None, kind="platform", scopes=[scope])
    purchase = client.post("/v1/transactions", headers=finance.headers_for(tenant),
                           json={"ref_id": "p1", "product_code": "TEL10", "customer_no": "081200001234"})
    assert purchase.status_code == 403
    transfer = client.post("/v1/transfers", headers=finance.headers_for(tenant),
                           json={"from_wallet_id": "a", "to_wallet_id": "b", "amount": 1, "ref_id": "t"})
    assert transfer.status_code == 403


def test_a_tenants_client_cannot_name_another_tenant_on_behalf_of(app, client, tenant_factory):
    mine, other = tenant_factory(), tenant_factory()
    response = client.get("/v1/wallets", headers={**mine.headers, "ROP-On-Behalf-Of": other.slug})
    assert response.status_code == 403


def _rop(run_rop, **env):
    """``rop`` in this process (tests/conftest.py run_rop) with ``env`` added to its environment."""

    def run(*args):
        return run_rop(*args, env=env)
    return run


def test_the_cli_makes_platform_clients_and_the_operators_topups_need_a_reason(app, client, config, database_url,
                                                                               redis_url, tenant_factory, run_rop):
    rop = _rop(run_rop)
    tenant = tenant_factory()
    made = rop("clients", "create", "--platform", "--scope", "wallets:topup", "--name", "finance", "--json")
    assert made.returncode == 0, made.stderr
    finance = json.loads(made.stdout)
    assert (finance["kind"], finance["tenant_id"], finance["scopes"]) == ("platform", None, ["wallets:topup"])
    assert finance["client_id"] in rop("clients", "list", "--platform").stdout
    both = rop("clients", "create", "--platform", "--tenant", tenant.slug)
    assert both.returncode == 2 and both.stderr.count("\n") == 1  # a usage error
    tenant_topup = rop("clients", "create", "--tenant", tenant.slug, "--scope", "wallets:topup")
    assert tenant_topup.returncode == 1 and "may not hold" in tenant_topup.stderr and "Traceback" not in tenant_topup.stderr

    token = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                        auth=(finance["client_id"], finance["client_secret"])).json["access_token"]
    wallet = _main(client, tenant)
    response = client.post(f"/v1/wallets/{wallet['id']}/topups", json={"amount": 700, "ref_id": "wire-1"},
                           headers={"Authorization": f"Bearer {token}", "ROP-On-Behalf-Of": tenant.slug})
    assert response.status_code == 201

    no_reason = rop("wallets", "topup", "--tenant", tenant.slug, "300")
    assert no_reason.returncode != 0 and "--reason" in no_reason.stderr
    done = rop("wallets", "topup", "--tenant", tenant.slug, "300", "--reason", "cash deposit, branch 12")
    assert done.returncode == 0, done.stderr
    assert _available(app, tenant) == 1000
    audited = _topups(app)
    assert [(e.actor_type, e.after["amount"], e.after["reason"]) for e in audited] == [
        ("client", 700, None), ("cli", 300, "cash deposit, branch 12")]
    assert all(e.tenant_id == tenant.id for e in audited)
