"""Bulk jobs, webhook deliveries and wallets: every tenant's or one's, search, sortable
columns, previous/next with totals."""
from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import insert

from hub.context import CallContext
from hub.db import unit_of_work

START = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)


def _insert(app, model, rows) -> None:
    with unit_of_work(app.extensions["rop"].db) as uow:
        uow.session.execute(insert(model), rows)
        uow.commit()


def _page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def test_bulk_jobs_of_every_tenant_paged_sorted_and_searched(app, client, admin_kit, tenant_factory):
    from hub.bulk.models import BulkJob

    one, two = tenant_factory(name="Bulk One"), tenant_factory(name="Bulk Two")
    _insert(app, BulkJob, [{"id": f"blk_{n:04d}", "tenant_id": (one if n % 2 else two).id, "idem_key": f"k{n}",
                            "file_sha256": "0" * 64, "file_format": "csv", "file_name": f"orders-{n:03d}.csv",
                            "on_invalid": "skip", "on_insufficient_funds": "stop", "status": "completed",
                            "total": n, "currency": "IDR", "amount": 10_000 * n,
                            "created_at": START + dt.timedelta(minutes=n)} for n in range(1, 61)])
    admin_kit.login(client, admin_kit.make_admin(app))
    page = _page(client, "/admin/bulk/")
    assert "page 1 of 2, 60 jobs" in page and "Bulk One" in page and "Bulk Two" in page
    assert re.findall(r'class="bulk-link" href="[^"]+"><code>(blk_\d+)', page)[0] == "blk_0060"
    assert "page 2 of 2, 60 jobs" in _page(client, "/admin/bulk/?page=2")
    assert "page 1 of 1, 30 jobs" in _page(client, f"/admin/bulk/?tenant={one.id}")
    by_total = _page(client, "/admin/bulk/?sort=total")
    assert re.findall(r"<code>(blk_\d+)", by_total)[:2] == ["blk_0001", "blk_0002"]
    found = _page(client, "/admin/bulk/?q=orders-05")
    assert sorted(re.findall(r"<code>(blk_\d+)", found)) == [f"blk_{n:04d}" for n in range(50, 60)]
    assert f'href="/admin/bulk/{one.id}/blk_0059"' in found  # each row links to its own tenant's job


def test_deliveries_of_every_tenant_paged_sorted_and_searched(app, client, admin_kit, tenant_factory):
    from hub.bus.models import WebhookDelivery

    one, two = tenant_factory(), tenant_factory()
    _insert(app, WebhookDelivery, [{"id": f"whd_{n:04d}", "tenant_id": (one if n % 2 else two).id,
                                    "event_id": f"evt_{n:04d}",
                                    "event_type": "transaction.succeeded" if n % 3 else "wallet.credited",
                                    "status": "failed" if n % 5 == 0 else "delivered", "attempts": n % 7,
                                    "created_at": START + dt.timedelta(minutes=n)} for n in range(1, 56)])
    admin_kit.login(client, admin_kit.make_admin(app))
    page = _page(client, "/admin/deliveries/")
    assert "page 1 of 2, 55 deliveries" in page
    assert "page 1 of 1, 11 deliveries" in _page(client, "/admin/deliveries/?status=failed")
    assert "18 deliveries" in _page(client, "/admin/deliveries/?q=wallet.")
    assert re.findall(r"<code>(whd_\d+)", _page(client, "/admin/deliveries/?q=evt_0007")) == ["whd_0007"]
    mixed = _page(client, f"/admin/deliveries/?tenant={one.id}&status=failed&sort=attempts")
    ids = re.findall(r"<code>(whd_\d+)", mixed)
    assert ids == ["whd_0035", "whd_0015", "whd_0045", "whd_0025", "whd_0005", "whd_0055"]  # by attempts


def test_wallets_of_every_tenant_sorted_by_balance(app, client, admin_kit, tenant_factory):
    from hub.wallets import accounts as wallets

    tenants = [tenant_factory(name=f"Wallet Owner {n}") for n in range(3)]
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        for n, tenant in enumerate(tenants):
            ctx = CallContext.system(actor="tests", tenant_id=tenant.id)
            wallets.topup(ctx, uow, wallets.get_main_wallet(ctx, uow).id, 1_000 * (n + 1), f"t{n}")
        uow.commit()
    admin_kit.login(client, admin_kit.make_admin(app))
    page = _page(client, "/admin/wallets/?sort=-available")
    assert "page 1 of 1, 3 wallets" in page
    assert re.findall(r">(Wallet Owner \d)</a>", page) == ["Wallet Owner 2", "Wallet Owner 1", "Wallet Owner 0"]
    assert "IDR 3,000" in page
    assert "1 wallet" in _page(client, f"/admin/wallets/?tenant={tenants[0].id}")
