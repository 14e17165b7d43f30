"""Wallets in the admin UI: balances, statement, top-ups as ledger postings with a reason."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from hub.db import unit_of_work


def _wallet_page(client, tenant):
    """The tenant's main wallet page, opened with the wallets page's "Open main wallet" button."""
    from tests.admin.conftest import csrf_from

    token = csrf_from(client, f"/admin/wallets/?tenant={tenant.id}")
    opened = client.post(f"/admin/wallets/{tenant.id}/open", data={"csrf_token": token})
    assert opened.status_code == 302
    return opened.headers["Location"]


def _wallets_of(app, tenant) -> list[str]:
    from hub.wallets.models import Wallet

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return list(uow.session.scalars(select(Wallet.id).where(Wallet.tenant_id == tenant.id)))


def test_viewing_a_tenants_wallets_creates_no_wallet(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    assert client.get("/admin/wallets/").status_code == 200  # the first tenant's, by default
    page = client.get(f"/admin/wallets/?tenant={tenant.id}").get_data(as_text=True)
    assert _wallets_of(app, tenant) == []  # a GET has no side effects
    assert 'id="no-wallet"' in page and 'id="open-main-wallet"' in page
    path = _wallet_page(client, tenant)  # the button (a POST) opens it
    assert _wallets_of(app, tenant) == [path.rsplit("/", 1)[1]]
    assert _wallet_page(client, tenant) == path  # pressing it again opens the same wallet
    page = client.get(f"/admin/wallets/?tenant={tenant.id}").get_data(as_text=True)
    assert "open-main-wallet" not in page and path in page


def test_a_topup_is_a_ledger_posting_with_a_reason_and_shows_in_the_statement(app, client, admin_kit,
                                                                              tenant_factory):
    from hub.tenancy.models import AuditEntry
    from hub.wallets.checks import verify_ledger

    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    path = _wallet_page(client, tenant)
    page = client.get(path).get_data(as_text=True)
    token = admin_kit.csrf_from(client, path)
    ref = re.search(r'name="ref" value="([^"]+)"', page).group(1)
    form = {"csrf_token": token, "ref": ref, "amount": "150000", "reason": "bank transfer 42", "confirm": "1"}
    assert client.post(path + "/topup", data=form).status_code == 302
    assert client.post(path + "/topup", data=form).status_code == 302  # a double submit: same key
    page = client.get(path).get_data(as_text=True)
    assert 'id="available">IDR 150,000<' in page
    assert page.count("<td>topup</td>") == 1
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert verify_ledger(uow)["ok"]
        entries = [e.after for e in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "wallet.topped_up"))]
    assert len(entries) == 1 and entries[0]["reason"] == "bank transfer 42"


def test_a_topup_without_a_reason_or_with_a_bad_amount_posts_nothing(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    path = _wallet_page(client, tenant)
    token = admin_kit.csrf_from(client, path)
    for form in ({"amount": "100", "reason": ""}, {"amount": "-5", "reason": "x"}, {"amount": "ten", "reason": "x"}):
        response = client.post(path + "/topup", data={"csrf_token": token, "ref": "k1", **form},
                               follow_redirects=True)
        assert response.status_code == 200
    assert 'id="available">IDR 0<' in client.get(path).get_data(as_text=True)


def test_another_tenants_wallet_is_not_found(app, client, admin_kit, tenant_factory):
    one, two = tenant_factory(), tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    path = _wallet_page(client, one)
    wallet_id = path.rsplit("/", 1)[1]
    assert client.get(f"/admin/wallets/{two.id}/{wallet_id}").status_code == 404


def test_the_dashboard_shows_wallet_totals(app, client, admin_kit, tenant_factory):
    from hub.wallets.accounts import topup

    one, two = tenant_factory(), tenant_factory()
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        topup(one.operator, uow, None, 700, "t1")
        topup(two.operator, uow, None, 300, "t2")
        uow.commit()
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get("/admin/").get_data(as_text=True)
    assert "<td>IDR</td><td>2</td><td>IDR 1,000</td><td>IDR 0</td>" in page


def test_an_adjustment_is_a_signed_posting_with_a_reason_audited_once(app, client, admin_kit, tenant_factory):
    from hub.tenancy.models import AuditEntry
    from hub.wallets.checks import verify_ledger

    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    path = _wallet_page(client, tenant)
    token = admin_kit.csrf_from(client, path)
    refs = re.findall(r'name="ref" value="([^"]+)"', client.get(path).get_data(as_text=True))
    adjust_ref = next(r for r in refs if r.startswith("admin-adjust-"))
    client.post(path + "/topup", data={"csrf_token": token, "ref": "t-1", "amount": "1000", "reason": "float",
                                       "confirm": "1"})
    form = {"csrf_token": token, "ref": adjust_ref, "amount": "-300", "reason": "fee charged twice", "confirm": "1"}
    assert client.post(path + "/adjust", data=form).status_code == 302
    assert client.post(path + "/adjust", data=form).status_code == 302  # a double submit posts once
    overdraw = client.post(path + "/adjust", data={**form, "ref": "other", "amount": "-5000"}, follow_redirects=True)
    assert "IDR 1,000" not in re.findall(r'id="available">(IDR -?[\d,]+)<', overdraw.get_data(as_text=True))
    no_reason = client.post(path + "/adjust", data={**form, "ref": "other2", "reason": " "}, follow_redirects=True)
    assert "needs a reason" in no_reason.get_data(as_text=True)
    page = client.get(path).get_data(as_text=True)
    assert 'id="available">IDR 700<' in page and page.count("<td>adjustment</td>") == 1
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert verify_ledger(uow)["ok"]
        entries = [(e.actor, e.after) for e in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == "wallet.adjusted"))]
    assert len(entries) == 1
    assert entries[0][0] == "admin:op@example.com" and entries[0][1]["reason"] == "fee charged twice"


def test_a_topup_asks_first_on_a_page_echoing_amount_wallet_and_tenant(app, client, admin_kit, tenant_factory):
    """The first POST (and a GET) of the form only shows what will happen; Confirm — the same
    form again with confirm=1 and its CSRF token — acts, once."""
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    path = _wallet_page(client, tenant)
    wallet_id = path.rsplit("/", 1)[1]
    token = admin_kit.csrf_from(client, path)
    form = {"csrf_token": token, "ref": "confirm-1", "amount": "1234567", "reason": "BCA 42"}
    asked = client.post(path + "/topup", data=form)
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and 'id="confirm-summary"' in page
    assert "IDR 1,234,567" in page and wallet_id in page and tenant.slug in page and "BCA 42" in page
    assert 'name="confirm" value="1"' in page and 'name="csrf_token"' in page and f'href="{path}"' in page
    assert client.get(path + "/topup").status_code == 405
    assert 'id="available">IDR 0<' in client.get(path).get_data(as_text=True)
    confirm = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
    assert confirm["amount"] == "1234567" and confirm["confirm"] == "1"
    assert client.post(path + "/topup", data={k: v for k, v in confirm.items() if k != "csrf_token"}).status_code == 400
    assert client.post(path + "/topup", data=confirm).status_code == 302
    assert 'id="available">IDR 1,234,567<' in client.get(path).get_data(as_text=True)


@pytest.mark.parametrize("amount", [str(10**30), str(9 * 10**18)])
def test_a_topup_above_the_limit_is_a_form_error_naming_it(app, client, admin_kit, tenant_factory, amount):
    """The issue's 10^30 (a raw 500 page) and 9×10^18 (accepted in one click)."""
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    path = _wallet_page(client, tenant)
    token = admin_kit.csrf_from(client, path)
    for confirm in ("", "1"):
        response = client.post(path + "/topup", data={"csrf_token": token, "ref": "big", "amount": amount,
                                                      "reason": "x", "confirm": confirm}, follow_redirects=True)
        page = response.get_data(as_text=True)
        assert response.status_code == 200 and "confirm-summary" not in page
        assert f"a top-up of {int(amount):,} IDR is above the limit of 1,000,000,000 IDR per top-up" in page
    assert 'id="available">IDR 0<' in client.get(path).get_data(as_text=True)
    assert client.get("/admin/").status_code == 200


def test_an_admin_sets_a_tenants_limits(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    token = admin_kit.csrf_from(client, f"/admin/tenants/{tenant.id}")
    form = {"csrf_token": token, "default": "", "topup": "2,000,000", "adjustment": "", "transfer": ""}
    assert client.post(f"/admin/tenants/{tenant.id}/limits", data=form).status_code == 302
    page = client.get(f"/admin/tenants/{tenant.id}").get_data(as_text=True)
    assert "<td>topup</td><td>IDR 2,000,000</td><td>tenant (topup)</td>" in page
    bad = client.post(f"/admin/tenants/{tenant.id}/limits", data={**form, "topup": "lots"}, follow_redirects=True)
    assert "topup must be a whole number" in bad.get_data(as_text=True)
    path = _wallet_page(client, tenant)
    refused = client.post(path + "/topup", data={"csrf_token": token, "ref": "r", "amount": "3000000", "reason": "x"},
                          follow_redirects=True)
    assert "above the limit of 2,000,000 IDR per top-up (set by tenant (topup))" in refused.get_data(as_text=True)
    operator = app.test_client()
    admin_kit.login(operator, admin_kit.make_admin(app, "op@example.com", role="operator"))
    assert operator.post(f"/admin/tenants/{tenant.id}/limits",
                         data={"csrf_token": admin_kit.csrf_from(operator, "/admin/"), "topup": "9"}).status_code == 403
