"""Purchases racing for the last funds, from separate OS processes over the API: a purchase
checks the funds without a lock and locks the wallet row last (by its hold's conditional
update), so the check and the lock are apart — the money must still come out exact."""
from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from hub.context import CallContext
from hub.db import unit_of_work
from hub.transactions.models import Transaction
from hub.wallets import service as wallets
from hub.wallets.models import Hold, Journal
from hub.wallets.testing import post_from_processes

PROCESSES = 4
PURCHASES = 100
AFFORDABLE = 50


def test_a_hundred_purchases_from_four_processes_on_funds_for_fifty(app, client, config, tenant_factory, sandbox):
    tenant = tenant_factory(rate_limit_per_minute=100_000)
    price = client.get("/v1/products/TEL10", headers=tenant.headers).get_json()["price"]
    ctx = CallContext.system(actor="tests", tenant_id=tenant.id)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        wallet_id = wallets.get_main_wallet(ctx, uow).id
        wallets.topup(ctx, uow, wallet_id, AFFORDABLE * price, "seed")
        uow.commit()

    bodies = [{"ref_id": f"race-{i}", "product_code": "TEL10", "customer_no": "081200001234"}
              for i in range(PURCHASES)]
    codes = post_from_processes(config, tenant.headers, "/v1/transactions", bodies, processes=PROCESSES)
    assert codes == Counter({202: AFFORDABLE, 402: PURCHASES - AFFORDABLE})
    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        wallet = wallets.get_wallet(ctx, uow, wallet_id)
        assert (wallet.available, wallet.held) == (0, AFFORDABLE * price)
        count = lambda model: uow.session.scalar(
            select(func.count()).select_from(model).where(model.tenant_id == tenant.id))
        # nothing of a refused purchase remains: no transaction, no hold, no journal
        assert (count(Transaction), count(Hold), count(Journal)) == (AFFORDABLE, AFFORDABLE, 1 + AFFORDABLE)
        assert set(uow.session.scalars(select(Transaction.hold_id).where(Transaction.tenant_id == tenant.id))) \
            == set(uow.session.scalars(select(Hold.id).where(Hold.tenant_id == tenant.id)))
        report = wallets.verify_ledger(uow)
    assert report["ok"], report["differences"]
