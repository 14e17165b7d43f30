"""Readable values in the admin: money, times in the admin's timezone, tenant names, badges,
provider health as a sentence; the product page's syncs; long tenant names; login's next=."""
from __future__ import annotations

import datetime as dt
import re

from hub.db import unit_of_work
from tests.admin.conftest import seed_transactions


def test_money_time_tenant_and_status_read_as_words(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory(name="Toko Maju")
    [trx] = seed_transactions(app, tenant.id, 1, price=1_234_567, status="review",
                              created_at=dt.datetime(2026, 3, 1, 20, 5, 9, 987654, tzinfo=dt.UTC))
    admin_kit.login(client, admin_kit.make_admin(app))
    for path in ("/admin/transactions/", f"/admin/transactions/{trx}"):
        page = client.get(path).get_data(as_text=True)
        assert "IDR 1,234,567" in page and "1234567" not in page
        # 20:05:09 UTC is 03:05:09 the next day in Jakarta (UTC+7), without microseconds
        assert "2026-03-02 03:05:09 WIB" in page and "987654" not in page
        assert f'href="/admin/tenants/{tenant.id}" title="{tenant.id}">Toko Maju</a>' in page
        assert 'class="badge badge-warning status-review">review<' in page


def test_the_timezone_is_configurable(app, client, admin_kit, tenant_factory):
    tenant = tenant_factory()
    seed_transactions(app, tenant.id, 1, created_at=dt.datetime(2026, 3, 1, 20, 5, 9, tzinfo=dt.UTC))
    app.config["ROP_ADMIN_TIMEZONE"] = "UTC"
    admin_kit.login(client, admin_kit.make_admin(app))
    assert "2026-03-01 20:05:09 UTC" in client.get("/admin/transactions/").get_data(as_text=True)


def test_the_money_filter():
    from rop_admin.formatting import money

    assert money(10_200, "IDR") == "IDR 10,200"
    assert money(-2_500_000, "IDR") == "IDR -2,500,000"
    assert money(123_456, "USD") == "USD 1,234.56"
    assert money(None, "IDR") == ""


def test_price_rule_values_read_as_percent_or_money():
    from rop_admin.formatting import rule_value

    assert rule_value(250, "markup_percent") == "2.50 %"
    assert rule_value(1_500, "markup_fixed") == "IDR 1,500"
    assert rule_value(None, None) == ""


def test_an_unknown_timezone_fails_at_start(app):
    import pytest
    from rop_admin.formatting import register

    app.config["ROP_ADMIN_TIMEZONE"] = "Mars/Olympus"
    with pytest.raises(ValueError, match="ROP_ADMIN_TIMEZONE"):
        register(app)


def test_provider_health_is_a_sentence_with_a_sparkline(app, client, admin_kit, sandbox):
    from hub.providers import health

    redis = app.extensions["rop"].redis
    for ms in (100, 200, 300, 120):
        health.record(redis, sandbox, "success", ms)
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get("/admin/providers/").get_data(as_text=True)
    # the catalog sync of the fixture was a call too
    assert re.search(r"100 % of the last \d+ calls succeeded; typical latency \d+ ms \(p95 300 ms\)", page)
    assert "Breaker closed" in page
    assert '<svg class="sparkline"' in page and "polyline" in page
    assert '"calls"' not in page  # no raw JSON


def test_the_product_page_lists_syncs_with_their_item_count(app, client, admin_kit, sandbox):
    from hub.context import CallContext
    from hub.products.operators import list_syncs

    admin_kit.login(client, admin_kit.make_admin(app))
    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        syncs = list_syncs(CallContext.system(actor="tests"), uow, config_id=sandbox, limit=1)
    assert syncs, "the sandbox fixture syncs the catalog"
    page = client.get("/admin/catalog/TEL10").get_data(as_text=True)
    assert "built-in method" not in page
    table = page.split('id="syncs"')[1].split("</table>")[0]
    assert f"<td>{syncs[0]['items']}</td>" in table


def test_a_tenant_name_is_bounded_and_long_names_do_not_widen_tables(app, client, admin_kit):
    admin_kit.login(client, admin_kit.make_admin(app))
    page = client.get("/admin/tenants/").get_data(as_text=True)
    assert re.search(r'id="tenant-name"[^>]*maxlength="200"', page)
    token = admin_kit.csrf_from(client, "/admin/tenants/")
    response = client.post("/admin/tenants/new", data={"csrf_token": token, "name": "x" * 5000},
                           follow_redirects=True)
    assert "1-200 characters" in response.get_data(as_text=True)
    assert "x" * 201 not in client.get("/admin/tenants/").get_data(as_text=True)
    css = client.get("/admin/assets/admin.css").get_data(as_text=True)
    assert ".long-name" in css and "text-overflow:ellipsis" in css


def test_a_failed_login_keeps_the_intended_page(app, client, admin_kit):
    email = admin_kit.make_admin(app)
    target = "/admin/transactions/?status=review"
    token = admin_kit.csrf_from(client, "/admin/login")
    page = client.post("/admin/login", data={"email": email, "password": "wrong", "csrf_token": token,
                                             "next": target}).get_data(as_text=True)
    assert f'name="next" value="{target}"' in page.replace("&amp;", "&").replace("&#63;", "?")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/admin/login", data={"email": email, "password": admin_kit.PASSWORD,
                                                  "csrf_token": token, "next": target})
    assert response.status_code == 302 and response.headers["Location"].endswith(target)
