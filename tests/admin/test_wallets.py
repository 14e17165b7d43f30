"""Wallets in the admin UI: balances, statement, top-ups as ledger postings with a reason."""
from __future__ import annotations

import re

from sqlalchemy import select

from hub.db import unit_of_work


def _wallet_page(client, tenant):
    page = client.get(f"/admin/wallets/?tenant={tenant.id}").get_data(as_text=True)
    return re.search(r'class="wallet-link" href="(/admin/wallets/[^"]+)"', page).group(1)


def test_a_topup_is_a_ledger_posting_with_a_reason_and_shows_in_the_statement(app, client, admin_kit,
                                                                              tenant_factory):
    from hub.tenancy.models import AuditEntry
    from hub.wallets.service import verify_ledger

    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    path = _wallet_page(client, tenant)
    page = client.get(path).get_data(as_text=True)
    token = admin_kit.csrf_from(client, path)
    ref = re.search(r'name="ref" value="([^"]+)"', page).group(1)
    form = {"csrf_token": token, "ref": ref, "amount": "150000", "reason": "bank transfer 42"}
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
    from hub.wallets.service import topup

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
    from hub.wallets.service import verify_ledger

    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    path = _wallet_page(client, tenant)
    token = admin_kit.csrf_from(client, path)
    refs = re.findall(r'name="ref" value="([^"]+)"', client.get(path).get_data(as_text=True))
    adjust_ref = next(r for r in refs if r.startswith("admin-adjust-"))
    client.post(path + "/topup", data={"csrf_token": token, "ref": "t-1", "amount": "1000", "reason": "float"})
    form = {"csrf_token": token, "ref": adjust_ref, "amount": "-300", "reason": "fee charged twice"}
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
