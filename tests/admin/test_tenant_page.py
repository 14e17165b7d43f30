"""The tenant page: links to everything of the tenant, its webhook URL, today's figures."""
from __future__ import annotations

import datetime as dt
import re

from hub.context import CallContext
from hub.db import unit_of_work, utcnow
from tests.admin.conftest import seed_transactions


def test_the_tenant_page_links_to_its_lists_and_shows_today(app, client, admin_kit, tenant_factory):
    from hub.bus.webhooks import set_webhook
    from hub.wallets import accounts as wallets

    tenant = tenant_factory(name="Toko Hari Ini")
    other = tenant_factory()
    now = utcnow()
    seed_transactions(app, tenant.id, 3, created_at=lambda n: now - dt.timedelta(seconds=n + 1),
                      status=lambda n: "failed" if n == 2 else "succeeded", price=1_500_000)
    seed_transactions(app, tenant.id, 2, created_at=now - dt.timedelta(days=3),  # not today
                      id=lambda n: f"trx_old{n}", ref_id=lambda n: f"old-{n}")
    seed_transactions(app, other.id, 4, created_at=now)  # another tenant's
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="tests", tenant_id=tenant.id)
        wallets.topup(ctx, uow, wallets.get_main_wallet(ctx, uow).id, 2_500_000, "seed")
        set_webhook(ctx, uow, "https://hooks.example.com/rop")
        uow.commit()
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get(f"/admin/tenants/{tenant.id}").get_data(as_text=True)
    links = dict(re.findall(r'<a id="link-([a-z]+)" href="([^"]+)"', page))
    assert links == {"wallets": f"/admin/wallets/?tenant={tenant.id}",
                     "transactions": f"/admin/transactions/?tenant={tenant.id}",
                     "bulk": f"/admin/bulk/?tenant={tenant.id}", "clients": "#clients",
                     "pricing": f"/admin/pricing/?tenant={tenant.id}",
                     "deliveries": f"/admin/deliveries/?tenant={tenant.id}",
                     "audit": f"/admin/audit/?tenant={tenant.id}"}
    for name, href in links.items():
        if href.startswith("/"):
            assert client.get(href).status_code == 200, name
    assert '<code id="webhook-url">https://hooks.example.com/rop</code>' in page
    assert 'id="today-count">3<' in page
    assert 'id="today-volume">IDR 3,000,000 <' in page
    assert "IDR 2,500,000</b> available in 1 wallet(s)" in page
    assert 'id="clients"' in page


def test_a_tenant_without_a_webhook_says_so(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get(f"/admin/tenants/{tenant.id}").get_data(as_text=True)
    assert "Webhook endpoint: <span class=\"muted\">none set" in page and 'id="today-count">0<' in page
