"""The policies chosen per submission: invalid rows (reject / skip) and balance (reject / partial)."""
from __future__ import annotations

from sqlalchemy import func, select

from hub.bus.models import TenantEvent
from hub.context import CallContext
from hub.db import unit_of_work
from hub.transactions.models import Transaction

from .conftest import csv_body, run_until_settled
from .test_end_to_end import _wallet


def _tenant_with(app, tenant_factory, amount: int, tenant=None):
    from hub.wallets import accounts as wallets

    tenant = tenant or tenant_factory()
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="tests", tenant_id=tenant.id)
        wallet = wallets.get_main_wallet(ctx, uow)
        if amount:
            wallets.topup(ctx, uow, wallet.id, amount, "seed")
        uow.commit()
        return tenant, wallet.id


def _price(app, tenant_id, code="TEL10") -> int:
    from hub.products import client as products

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        return products.get_for_sale(CallContext.system(tenant_id=tenant_id), uow, code)["price"]


def _count(app, model, *where):
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.scalar(select(func.count()).select_from(model).where(*where))


ROWS = [(f"p-{n}", "TEL10", f"08120001{n:04d}") for n in range(1, 6)]


def test_one_invalid_row_rejects_the_whole_file_by_default(app, client, live, sandbox, fast, tenant_factory, submit):
    tenant, _ = _tenant_with(app, tenant_factory, 10_000_000)
    job_id = submit(tenant, csv_body([*ROWS, ("p-bad", "TEL10", "0899")])).get_json()["id"]
    view = run_until_settled(app, tenant.id, job_id, lambda v: v["status"] == "rejected")
    assert (view["valid"], view["invalid"], view["skipped"], view["pending"]) == (5, 1, 5, 0)
    assert "1 of 6 rows are invalid" in view["error"]
    assert _count(app, Transaction, Transaction.tenant_id == tenant.id) == 0
    assert _count(app, TenantEvent, TenantEvent.tenant_id == tenant.id, TenantEvent.type == "bulk.rejected") == 1
    report = client.get(f"/v1/bulk/{job_id}/items?status=invalid", headers=tenant.headers).get_json()["items"]
    assert [(i["row"], i["ref_id"]) for i in report] == [(6, "p-bad")]


def test_a_wallet_short_of_the_total_rejects_the_file_up_front(app, live, sandbox, fast, tenant_factory, submit):
    tenant = tenant_factory()
    price = _price(app, tenant.id)
    tenant, wallet_id = _tenant_with(app, tenant_factory, 5 * price - 1, tenant)
    job_id = submit(tenant, csv_body(ROWS)).get_json()["id"]
    view = run_until_settled(app, tenant.id, job_id, lambda v: v["status"] == "rejected")
    assert view["amount"] == 5 * price and "on_insufficient_funds=reject" in view["error"]
    assert _count(app, Transaction, Transaction.tenant_id == tenant.id) == 0
    assert _wallet(app, tenant.id, wallet_id)["available"] == 5 * price - 1


def test_partial_sends_rows_until_the_wallet_runs_out(app, client, live, sandbox, fast, tenant_factory, submit):
    tenant = tenant_factory()
    price = _price(app, tenant.id)
    tenant, wallet_id = _tenant_with(app, tenant_factory, 3 * price + price // 2, tenant)
    job_id = submit(tenant, csv_body(ROWS), on_insufficient_funds="partial").get_json()["id"]
    view = run_until_settled(app, tenant.id, job_id, lambda v: v["status"] == "completed")
    assert (view["succeeded"], view["skipped"], view["failed"], view["pending"]) == (3, 2, 0, 0)
    skipped = client.get(f"/v1/bulk/{job_id}/items?status=skipped", headers=tenant.headers).get_json()["items"]
    assert [i["row"] for i in skipped] == [4, 5] and all("ran out" in i["error"] or "insufficient" in i["error"]
                                                          for i in skipped)
    assert _count(app, Transaction, Transaction.tenant_id == tenant.id) == 3
    money = _wallet(app, tenant.id, wallet_id)
    assert (money["available"], money["held"]) == (price // 2, 0)


def test_invalid_rows_skipped_when_asked_and_the_rest_processed(app, live, sandbox, fast, tenant_factory, submit):
    tenant, _ = _tenant_with(app, tenant_factory, 10_000_000)
    job_id = submit(tenant, csv_body([*ROWS, ("p-bad", "NOPE", "081200001234")]), on_invalid="skip").get_json()["id"]
    view = run_until_settled(app, tenant.id, job_id, lambda v: v["status"] == "completed")
    assert (view["valid"], view["invalid"], view["succeeded"]) == (5, 1, 5)
