"""Purchases racing for the last funds, from separate OS processes over the API: a purchase
checks the funds without a lock and locks the wallet row last (by its hold's conditional
update), so the check and the lock are apart — the money must still come out exact."""
from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select

from hub.context import CallContext
from hub.db import unit_of_work
from hub.transactions.models import Transaction
from hub.wallets import accounts as wallets
from hub.wallets.checks import verify_ledger
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
        report = verify_ledger(uow)
    assert report["ok"], report["differences"]


def test_holds_at_commit_lock_the_wallet_once_and_a_refused_one_names_its_transaction(app, client, tenant_factory,
                                                                                      sandbox):
    from hub.errors import InsufficientFunds
    from hub.transactions import client as transactions

    tenant = tenant_factory()
    price = client.get("/v1/products/TEL10", headers=tenant.headers).get_json()["price"]
    ctx = CallContext(tenant_id=tenant.id, client_id="tests", scopes=frozenset({"transactions:write"}))
    system = CallContext.system(actor="tests", tenant_id=tenant.id)
    db = app.extensions["rop"].db
    with app.app_context(), unit_of_work(db) as uow:
        wallet_id = wallets.get_main_wallet(system, uow).id
        wallets.topup(system, uow, wallet_id, 2 * price, "seed")
        uow.commit()

    def three(uow):
        return [transactions.submit(ctx, uow, ref_id=f"c-{i}", product_code="TEL10",
                                    customer_no="081200001234").transaction["id"] for i in range(3)]

    with app.app_context(), unit_of_work(db) as uow:
        ids = three(uow)  # each checked against 2 prices: all pass; the holds come at the commit
        with pytest.raises(InsufficientFunds) as refused:
            uow.commit()
    assert refused.value.transaction_id == ids[2]
    with app.app_context(), unit_of_work(db, readonly=True) as uow:
        assert uow.session.scalar(select(func.count()).select_from(Transaction)
                                  .where(Transaction.tenant_id == tenant.id)) == 0
        assert wallets.get_wallet(system, uow, wallet_id).available == 2 * price
    with app.app_context(), unit_of_work(db) as uow:
        ids = [transactions.submit(ctx, uow, ref_id=f"d-{i}", product_code="TEL10",
                                   customer_no="081200001234").transaction["id"] for i in range(2)]
        uow.commit()
    with app.app_context(), unit_of_work(db, readonly=True) as uow:
        wallet = wallets.get_wallet(system, uow, wallet_id)
        assert (wallet.available, wallet.held) == (0, 2 * price)
        assert set(uow.session.scalars(select(Hold.id).where(Hold.tenant_id == tenant.id))) == set(
            uow.session.scalars(select(Transaction.hold_id).where(Transaction.id.in_(ids))))
