"""Limits on every money operation (top-up, adjustment, transfer), per deployment and per
tenant; credits never take a balance past what the ledger stores; sums never overflow."""
from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import update

from hub.db import unit_of_work
from hub.wallets.limits import MAX_BALANCE, MoneySettings

BILLION = 1_000_000_000


@pytest.fixture
def tenant(tenant_factory):
    return tenant_factory()


def _main(client, tenant) -> dict:
    response = client.get("/v1/wallets", headers=tenant.headers)
    return next(w for w in response.json["items"] if w["is_main"])


def _rop(run_rop, **env):
    """``rop`` in this process (tests/conftest.py run_rop) with ``env`` added to its environment."""

    def run(*args):
        return run_rop(*args, env=env)
    return run


@pytest.mark.parametrize("amount", [9 * 10**18, BILLION + 1])
def test_a_topup_above_the_limit_is_422_naming_the_limit_and_the_figure(client, tenant_factory, platform_factory,
                                                                        amount):
    tenant, platform = tenant_factory(), platform_factory()
    wallet = _main(client, tenant)
    response = client.post(f"/v1/wallets/{wallet['id']}/topups", headers=platform.headers_for(tenant),
                           json={"amount": amount, "ref_id": "huge", "reason": "fuzz"})
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("application/problem+json")
    problem = response.json
    assert problem["limit"] == BILLION and problem["amount"] == amount
    assert "1,000,000,000 IDR" in problem["detail"] and f"{amount:,} IDR" in problem["detail"]
    assert "ROP_AMOUNT_LIMIT" in problem["detail"]
    assert _main(client, tenant)["available"] == 0
    ok = client.post(f"/v1/wallets/{wallet['id']}/topups", headers=platform.headers_for(tenant),
                     json={"amount": BILLION, "ref_id": "at-the-limit", "reason": "bank"})
    assert ok.status_code == 201 and _main(client, tenant)["available"] == BILLION


def test_a_topup_beyond_64_bits_is_422_over_http_and_names_the_limit_in_the_cli(client, tenant_factory, platform_factory,
                                                                                 config, database_url, redis_url, run_rop):
    """Over HTTP the edge refuses any JSON integer beyond 64 bits (422 naming the field); the
    CLI, whose AMOUNT has no such bound, names the limit (the admin's form: tests/admin)."""
    tenant, platform = tenant_factory(), platform_factory()
    wallet = _main(client, tenant)
    response = client.post(f"/v1/wallets/{wallet['id']}/topups", headers=platform.headers_for(tenant),
                           json={"amount": 10**30, "ref_id": "huge"})
    assert response.status_code == 422 and "amount" in response.json["errors"]
    result = _rop(run_rop)("wallets", "topup", "--tenant", tenant.slug, str(10**30),
                                                   "--reason", "fuzz")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"a top-up of {10**30:,} IDR is above the limit of 1,000,000,000 IDR per top-up" in result.stderr
    assert _main(client, tenant)["available"] == 0


def test_a_transfer_above_the_limit_is_422(client, tenant_factory, platform_factory):
    tenant, platform = tenant_factory(), platform_factory()
    main = _main(client, tenant)
    sub = client.post("/v1/wallets", headers=tenant.headers, json={"owner_ref": "c1"}).json
    for n in range(3):
        assert client.post(f"/v1/wallets/{main['id']}/topups", headers=platform.headers_for(tenant),
                           json={"amount": BILLION, "ref_id": f"t{n}"}).status_code == 201
    refused = client.post("/v1/transfers", headers=tenant.headers, json={
        "from_wallet_id": main["id"], "to_wallet_id": sub["id"], "amount": 2 * BILLION, "ref_id": "x"})
    assert refused.status_code == 422 and "per transfer" in refused.json["detail"]
    assert refused.json["limit"] == BILLION


def test_deployment_limits_per_kind_come_from_the_environment():
    settings = MoneySettings.from_env({"ROP_AMOUNT_LIMIT": "5000", "ROP_AMOUNT_LIMIT_TRANSFER": "70_000",
                                       "ROP_FOUR_EYES_AMOUNT": "100", "ROP_FOUR_EYES_DAILY": "300"})
    assert settings.deployment_limit("topup") == (5000, "ROP_AMOUNT_LIMIT")
    assert settings.deployment_limit("transfer") == (70_000, "ROP_AMOUNT_LIMIT_TRANSFER")
    assert (settings.four_eyes_amount, settings.four_eyes_daily) == (100, 300)
    assert MoneySettings.from_env({}).deployment_limit("adjustment") == (BILLION, "ROP_AMOUNT_LIMIT")
    for bad in ("ten", "0", "-5", str(10**16)):
        with pytest.raises(ValueError, match="ROP_AMOUNT_LIMIT_TOPUP"):
            MoneySettings.from_env({"ROP_AMOUNT_LIMIT_TOPUP": bad})


def test_a_bad_limit_variable_stops_the_cli_with_one_line(config, database_url, redis_url, tenant, run_rop):
    rop = _rop(run_rop, ROP_AMOUNT_LIMIT="lots")
    result = rop("wallets", "list", "--tenant", tenant.slug)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "ROP_AMOUNT_LIMIT" in result.stderr


def test_a_tenants_own_limit_wins_and_is_set_from_the_cli(app, client, config, database_url, redis_url,
                                                          tenant_factory, platform_factory, run_rop):
    """The deployment's limit (here ROP_AMOUNT_LIMIT_TOPUP in the CLI's environment) holds for
    one tenant; another has its own, set with ``rop wallets set-limit`` (audited)."""
    big, small, platform = tenant_factory(), tenant_factory(), platform_factory()
    rop = _rop(run_rop, ROP_AMOUNT_LIMIT_TOPUP="2000000", ROP_FOUR_EYES_AMOUNT=str(10**15),
               ROP_FOUR_EYES_DAILY=str(10**15))
    refused = rop("wallets", "topup", "--tenant", big.slug, "5000000", "--reason", "bank")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "5,000,000 IDR is above the limit of 2,000,000 IDR per top-up (set by ROP_AMOUNT_LIMIT_TOPUP)" \
        in refused.stderr
    assert rop("wallets", "set-limit", "--tenant", big.slug, "topup", "10_000_000").returncode == 0
    assert "5,000,000 IDR" in rop("wallets", "topup", "--tenant", big.slug, "5000000", "--reason", "bank").stdout
    shown = rop("wallets", "limits", "--tenant", big.slug).stdout
    assert "10,000,000 IDR  (tenant (topup))" in shown and "(ROP_AMOUNT_LIMIT)" in shown
    assert rop("wallets", "set-limit", "--tenant", small.slug, "default", "100").returncode == 0
    for path_kind in ("topup", "transfer"):
        found = rop("wallets", "limits", "--tenant", small.slug, "--json").stdout
        assert f'"{path_kind}": {{"limit": 100, "source": "tenant (default)"}}' in found
    over = client.post(f"/v1/wallets/{_main(client, small)['id']}/topups", headers=platform.headers_for(small),
                       json={"amount": 101, "ref_id": "r"})
    assert over.status_code == 422 and "set by tenant (default)" in over.json["detail"]
    bad = rop("wallets", "set-limit", "--tenant", small.slug, "topup", str(10**16))
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "1,000,000,000,000,000" in bad.stderr
    assert rop("wallets", "set-limit", "--tenant", small.slug, "default", "none").returncode == 0
    assert client.post(f"/v1/wallets/{_main(client, small)['id']}/topups", headers=platform.headers_for(small),
                       json={"amount": 101, "ref_id": "r"}).status_code == 201
    from sqlalchemy import select

    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        set_ = [(e.tenant_id, e.after) for e in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "wallet.limits_set").order_by(AuditEntry.id))]
    assert set_ == [(big.id, {"topup": 10_000_000}), (small.id, {"default": 100}), (small.id, {})]


def test_an_adjustment_either_way_is_within_the_limit(app, tenant, run):
    from hub.errors import ValidationFailed
    from hub.wallets import accounts

    app.extensions["rop"].extras["wallets.limits"] = MoneySettings(limit=1000)
    wallet = run(accounts.get_main_wallet, tenant.operator)
    for amount in (1001, -1001):
        with pytest.raises(ValidationFailed, match="above the limit of 1,000 IDR per adjustment"):
            run(accounts.adjust, tenant.operator, wallet.id, amount, "fix", f"k{amount}")
    assert run(accounts.adjust, tenant.operator, wallet.id, 1000, "fix", "ok")["amount"] == 1000


def test_a_credit_never_takes_a_balance_past_what_the_ledger_stores(app, client, tenant_factory,
                                                                    platform_factory, run, verify):
    from hub.errors import ValidationFailed
    from hub.wallets import accounts
    from hub.wallets.models import Wallet

    tenant, platform = tenant_factory(), platform_factory()
    wallet = _main(client, tenant)
    with unit_of_work(app.extensions["rop"].db) as uow:  # a balance near the top (as if after years)
        uow.session.execute(update(Wallet).where(Wallet.id == wallet["id"]).values(available=MAX_BALANCE - 10))
        uow.commit()
    refused = client.post(f"/v1/wallets/{wallet['id']}/topups", headers=platform.headers_for(tenant),
                          json={"amount": 11, "ref_id": "over"})
    assert refused.status_code == 422 and "largest balance the ledger stores" in refused.json["detail"]
    assert client.post(f"/v1/wallets/{wallet['id']}/topups", headers=platform.headers_for(tenant),
                       json={"amount": 10, "ref_id": "fits"}).status_code == 201
    with pytest.raises(ValidationFailed):
        run(accounts.adjust, tenant.operator, wallet["id"], 1, "fix", "one more")
    assert _main(client, tenant)["available"] == MAX_BALANCE


def test_sums_of_balances_beyond_2_63_do_not_overflow(app, client, admin_kit, tenant_factory, config, database_url,
                                                      redis_url, run, run_rop):
    """Two wallets at 9×10^18 each (the issue's two such top-ups): the dashboard, the totals
    and ``rop wallets verify`` (its sums over entries) answer instead of failing."""
    from hub.context import CallContext
    from hub.wallets import checks
    from hub.wallets.models import Entry, Journal, Wallet

    one, two = tenant_factory(), tenant_factory()
    ids = [_main(client, t)["id"] for t in (one, two)]
    with unit_of_work(app.extensions["rop"].db) as uow:
        uow.session.execute(update(Wallet).where(Wallet.id.in_(ids)).values(available=9 * 10**18))
        # the entries of one wallet's account sum beyond 2**63 too (a ledger verify must say so, not fail)
        uow.session.add(Journal(id="jnl_big", tenant_id=one.id, kind="topup", idem_key="big"))
        uow.session.flush()
        for n in range(2):
            uow.session.add(Entry(tenant_id=one.id, journal_id="jnl_big", wallet_id=ids[0],
                                  account=f"{ids[0]}:available", amount=9 * 10**18, currency="IDR",
                                  balance_after=None))
        uow.commit()
    totals = run(checks.wallet_totals, CallContext.system(actor="tests"))
    assert totals["IDR"]["available"] == 18 * 10**18
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get("/admin/")
    assert page.status_code == 200 and "<td>IDR 18,000,000,000,000,000,000</td>" in page.get_data(as_text=True)
    verified = _rop(run_rop)("wallets", "verify", "--json")
    assert verified.returncode == 1, verified.stderr
    assert "18000000000000000000" in verified.stdout and "Traceback" not in verified.stderr


def test_config_carries_the_money_settings(config):
    assert config.money == MoneySettings()
    assert dataclasses.replace(config, money=MoneySettings(limit=5)).money.limit == 5
