"""A bulk file end to end: every sandbox outcome, invalid rows and duplicates; the counts, the
results CSV, the transactions and the wallet must agree."""
from __future__ import annotations

import csv
import io

from sqlalchemy import func, select

from hub.context import CallContext
from hub.db import unit_of_work
from hub.transactions.models import Transaction

from .conftest import FUNDS, csv_body, run_until_settled

OUTCOMES = {  # customer number → the row's final status
    "081200001234": "succeeded",
    "081200009999": "failed",     # invalid customer number at the provider
    "081200004444": "failed",     # rejected (out of stock), no other provider
    "081200008888": "succeeded",  # pending, success by callback
    "081200007777": "failed",     # pending, failure by callback
    "081200006666": "succeeded",  # unknown, a status check says success
    "081200005555": "failed",     # unknown, a status check says failure
    "081200003333": "refunded",   # success, then refunded by callback
}


def _wallet(app, tenant_id, wallet_id):
    from hub.wallets import client as wallets

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        return wallets.get_wallet(CallContext.system(tenant_id=tenant_id), uow, wallet_id)


def _results(client, tenant, job_id):
    response = client.get(f"/v1/bulk/{job_id}/results.csv", headers=tenant.headers)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def _transactions_of(app, tenant_id):
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return {t.ref_id: (t.status, t.price, t.source) for t in uow.session.scalars(
            select(Transaction).where(Transaction.tenant_id == tenant_id))}


def test_a_mixed_file_counts_results_and_wallet_agree(app, client, live, funded, fast, submit):
    tenant = funded.tenant
    used = client.post("/v1/transactions", headers=tenant.headers, json={
        "ref_id": "used-before", "product_code": "TEL10", "customer_no": "081200001234"})
    assert used.status_code == 202, used.get_json()
    rows = [(f"ok-{n[-4:]}", "TEL10", n) for n in OUTCOMES]
    rows += [
        ("bad-product", "NOPE99", "081200001234"),
        ("bad-number", "TEL10", "12345"),
        ("ok-1234", "TEL10", "081200001234"),        # the same ref_id as the first row
        ("used-before", "TEL10", "081200001234"),    # a ref_id the tenant used already
        ("", "TEL10", "081200001234"),               # no ref_id
    ]
    response = submit(tenant, csv_body(rows), on_invalid="skip")
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["id"]

    view = run_until_settled(app, tenant.id, job_id,
                             lambda v: v["status"] == "completed" and v["refunded"] == 1)
    assert view["validated"] == 13
    assert {k: view[k] for k in ("status", "total", "valid", "invalid", "submitted", "succeeded", "failed",
                                 "refunded", "review", "cancelled", "skipped", "pending")} == {
        "status": "completed", "total": 13, "valid": 8, "invalid": 5, "submitted": 8, "succeeded": 3,
        "failed": 4, "refunded": 1, "review": 0, "cancelled": 0, "skipped": 0, "pending": 0}

    results = _results(client, tenant, job_id)
    assert [int(r["row"]) for r in results] == list(range(1, 14))
    for result, number in zip(results, OUTCOMES):
        assert result["status"] == OUTCOMES[number], result
        assert result["transaction_id"].startswith("txn_") or result["transaction_id"]
        if result["status"] == "succeeded":
            assert result["serial_number"], result
        if result["status"] == "failed":
            assert result["error"], result
    # what happened, in the provider's words — not the status check's "status"
    failed = {r["customer_no"][-4:]: r["error"] for r in results[:8]}
    assert failed["5555"] == failed["7777"] == "failed at the provider: failed at operator"
    assert failed["9999"] == "failed at the provider: invalid customer number"
    errors = {r["ref_id"]: r["error"] for r in results[8:]}
    assert [r["status"] for r in results[8:]] == ["invalid"] * 5
    assert "unknown product" in errors["bad-product"]
    assert errors["bad-number"]
    assert "duplicate ref_id: row 1" in errors["ok-1234"]
    assert "already used" in errors["used-before"]
    assert "ref_id is missing" in errors[""]

    # exactly one transaction per valid row (plus the one made before), each tagged with its row
    transactions = _transactions_of(app, tenant.id)
    assert len(transactions) == 9
    for n, number in enumerate(OUTCOMES, start=1):
        status, _price, source = transactions[f"ok-{number[-4:]}"]
        assert (status, source) == (OUTCOMES[number], f"bulk:{job_id}:{n}")
    # the wallet paid for the succeeded rows and the earlier purchase, nothing else
    spent = sum(price for status, price, _ in transactions.values() if status == "succeeded")
    assert view["amount_succeeded"] == sum(p for ref, (s, p, src) in transactions.items()
                                           if s == "succeeded" and src)
    money = _wallet(app, tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - spent, 0)

    invalid = client.get(f"/v1/bulk/{job_id}/items?status=invalid", headers=tenant.headers).get_json()
    assert [i["row"] for i in invalid["items"]] == [9, 10, 11, 12, 13]
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        from hub.bus.models import TenantEvent

        completed = uow.session.scalar(select(func.count()).select_from(TenantEvent).where(
            TenantEvent.tenant_id == tenant.id, TenantEvent.type == "bulk.completed"))
    assert completed == 1
