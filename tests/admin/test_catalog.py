"""Catalog and pricing in the admin UI: offers with cost, switches, rules through the products service."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from hub.db import unit_of_work


@pytest.fixture
def catalog(app):
    from hub.products.testing import seed_sandbox_catalog

    return seed_sandbox_catalog(app)


def _audit(app, prefix):
    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [(a.action, a.actor, a.tenant_id, a.after) for a in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action.startswith(prefix)).order_by(AuditEntry.id))]


def test_the_catalog_lists_products_with_tenant_price_and_cost(app, client, admin_kit, tenant_factory, catalog):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    page = client.get(f"/admin/catalog/?tenant={tenant.id}").get_data(as_text=True)
    assert "TEL10" in page and "Cost (cheapest active)" in page
    detail = client.get(f"/admin/catalog/TEL10?tenant={tenant.id}").get_data(as_text=True)
    assert 'id="offers"' in detail and "sandbox" in detail and 'id="tenant-price"' in detail
    assert client.get("/admin/catalog/open?code=TEL10").headers["Location"].startswith("/admin/catalog/TEL10")
    assert client.get("/admin/catalog/NOPE").status_code == 404


def test_an_operator_takes_a_product_off_sale_and_switches_an_offer(app, client, admin_kit, tenant_factory, catalog):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    token = admin_kit.csrf_from(client, "/admin/catalog/TEL10")
    assert client.post("/admin/catalog/TEL10/enabled", data={"csrf_token": token, "enabled": "0"}).status_code == 302
    assert 'id="product-status">disabled<' in client.get("/admin/catalog/TEL10").get_data(as_text=True)
    assert "<code>TEL10</code>" not in client.get(f"/admin/catalog/?tenant={tenant.id}").get_data(as_text=True)
    client.post("/admin/catalog/TEL10/enabled", data={"csrf_token": token, "enabled": "1"})
    page = client.get("/admin/catalog/TEL10").get_data(as_text=True)
    offer_id = re.search(r"<code>(pof_[^<]+)</code>", page).group(1)
    client.post(f"/admin/catalog/TEL10/offers/{offer_id}", data={"csrf_token": token, "priority": "5"})
    client.post(f"/admin/catalog/TEL10/offers/{offer_id}", data={"csrf_token": token, "enabled": "0"})
    page = client.get("/admin/catalog/TEL10").get_data(as_text=True)
    assert 'value="5"' in page and "Switch on" in page
    actions = [a[0] for a in _audit(app, "product")]
    assert actions == ["product.disabled", "product.enabled", "product_offer.priority_set", "product_offer.disabled"]
    assert all(a[1] == "admin:op@example.com" for a in _audit(app, "product"))


def test_pricing_rules_are_set_and_removed_by_an_admin_and_change_the_tenant_price(app, client, admin_kit,
                                                                                    tenant_factory, catalog):
    tenant = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app))
    before = client.get(f"/admin/catalog/TEL10?tenant={tenant.id}").get_data(as_text=True)
    price = int(re.search(r'id="tenant-price">IDR ([\d,]+)<', before).group(1).replace(",", ""))
    token = admin_kit.csrf_from(client, f"/admin/pricing/?tenant={tenant.id}")
    response = client.post("/admin/pricing/save", data={"csrf_token": token, "tenant_id": tenant.id,
                                                        "target": "product:TEL10", "kind": "fixed_price",
                                                        "value": str(price + 777)})
    assert response.status_code == 302
    after = client.get(f"/admin/catalog/TEL10?tenant={tenant.id}").get_data(as_text=True)
    assert f'id="tenant-price">IDR {price + 777:,}<' in after
    page = client.get(f"/admin/pricing/?tenant={tenant.id}").get_data(as_text=True)
    assert "product:TEL10" in page and "fixed_price" in page
    assert f'<td class="num rule-value">IDR {price + 777:,}</td>' in page
    bad = client.post("/admin/pricing/save", data={"csrf_token": token, "tenant_id": tenant.id,
                                                   "target": "product:NOPE", "kind": "fixed_price", "value": "1"},
                      follow_redirects=True)
    assert "no product" in bad.get_data(as_text=True)
    client.post("/admin/pricing/remove", data={"csrf_token": token, "tenant_id": tenant.id, "target": "product:TEL10"})
    assert f'id="tenant-price">IDR {price:,}<' in client.get(f"/admin/catalog/TEL10?tenant={tenant.id}").get_data(as_text=True)
    assert [(a[0], a[2]) for a in _audit(app, "price_rule")] == [("price_rule.set", tenant.id),
                                                                  ("price_rule.removed", tenant.id)]


def test_an_operator_cannot_change_prices(app, client, admin_kit, catalog):
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    page = client.get("/admin/pricing/").get_data(as_text=True)
    assert "set-rule" not in page
    token = admin_kit.csrf_from(client, "/admin/pricing/")
    assert client.post("/admin/pricing/save", data={"csrf_token": token, "target": "all", "kind": "markup_fixed",
                                                    "value": "10"}).status_code == 403
    assert _audit(app, "price_rule") == []


def test_a_catalog_sync_is_requested_from_the_providers_page_and_audited(app, client, admin_kit, catalog):
    from hub.bus.models import OutboxMessage

    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    page = client.get("/admin/providers/").get_data(as_text=True)
    config_id = re.search(r'name="config_id" value="([^"]+)"', page).group(1)
    token = admin_kit.csrf_from(client, "/admin/providers/")
    response = client.post("/admin/catalog/sync", data={"csrf_token": token, "config_id": config_id,
                                                        "back": "/admin/providers/"})
    assert response.status_code == 302 and response.headers["Location"] == "/admin/providers/"
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        types = [m.type for m in uow.session.scalars(select(OutboxMessage))]
    assert any("sync" in t for t in types), types
    assert [(a[0], a[1]) for a in _audit(app, "catalog.")] == [("catalog.sync_requested", "admin:op@example.com")]
    evil = client.post("/admin/catalog/sync", data={"csrf_token": token, "config_id": config_id,
                                                    "back": "https://evil.example/"})
    assert evil.headers["Location"] == "/admin/catalog/"  # no open redirect
