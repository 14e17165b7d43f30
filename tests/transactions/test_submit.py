"""The two use-cases that accept purchases in Python (docs/transactions.md, "Accepting"):
``service.submit`` (one purchase; its refusals raise) and ``service.submit_many`` (a bulk
group written together; one answer per purchase, in order)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hub.context import CallContext
from hub.db import unit_of_work
from hub.errors import Conflict, InsufficientFunds, ValidationFailed
from hub.transactions import service
from hub.transactions.models import TimelineEntry, Transaction
from hub.transactions.service import Accepted, Purchase, Refused
from hub.wallets import accounts as wallets
from hub.wallets.checks import verify_ledger
from hub.wallets.models import Hold

NUMBER = "081200001234"


@pytest.fixture
def shop(app, client, tenant_factory, sandbox):
    """A tenant whose main wallet holds three TEL10s: ``(ctx, system ctx, wallet id, TEL10's price)``."""
    tenant = tenant_factory()
    price = client.get("/v1/products/TEL10", headers=tenant.headers).get_json()["price"]
    system = CallContext.system(actor="tests", tenant_id=tenant.id)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        wallet_id = wallets.get_main_wallet(system, uow).id
        wallets.topup(system, uow, wallet_id, 3 * price, "seed")
        uow.commit()
    ctx = CallContext(tenant_id=tenant.id, client_id="tests", scopes=frozenset({"transactions:write"}), actor="tests")
    return ctx, system, wallet_id, price


def _kept(uow, tenant_id: str) -> tuple[set[str], int, int]:
    """The tenant's transactions' ref_ids, its holds and timeline lines (how many)."""
    refs = set(uow.session.scalars(select(Transaction.ref_id).where(Transaction.tenant_id == tenant_id)))
    count = lambda model: uow.session.scalar(select(func.count()).select_from(model)
                                             .where(model.tenant_id == tenant_id))
    return refs, count(Hold), count(TimelineEntry)


def test_submit_many_answers_each_purchase_in_order_and_writes_nothing_of_a_refused_one(app, shop):
    ctx, system, wallet_id, price = shop
    db = app.extensions["rop"].db
    purchases = [Purchase("g-1", "TEL10", NUMBER, source="test:1"),
                 Purchase("g-2", "NOPE", NUMBER),                       # unknown product: 422
                 Purchase("g-3", "PLN100", "12345678901"),              # more than the wallet holds: 402
                 Purchase("g-4", "TEL10", "0817"),                      # a bad customer number: 422
                 Purchase("g-1", "TEL10", NUMBER, source="test:5"),     # g-1 again, the same body: a replay
                 Purchase("g-1", "TEL10", "081200009999"),              # g-1 with another body: 409
                 Purchase("g-6", "TEL10", "081200005678", source="test:7")]
    with app.app_context(), unit_of_work(db) as uow:
        answers = service.submit_many(ctx, uow, purchases)
        assert [type(a) for a in answers] == [Accepted, Refused, Refused, Refused, Accepted, Refused, Accepted]
        first, unknown, funds, number, replay, conflict, last = answers
        assert first.created and first.transaction.ref_id == "g-1" and first.transaction.source == "test:1"
        assert isinstance(unknown.error, ValidationFailed) and unknown.ref_id == "g-2"
        assert "product_code" in unknown.error.errors
        assert isinstance(funds.error, InsufficientFunds) and funds.ref_id == "g-3"
        assert funds.error.extra["available"] == 3 * price < funds.error.extra["needed"]
        assert isinstance(number.error, ValidationFailed) and "customer_no" in number.error.errors
        assert replay.transaction is first.transaction and not replay.created
        assert isinstance(conflict.error, Conflict) and conflict.ref_id == "g-1"
        assert last.created and last.transaction.ref_id == "g-6"
        uow.commit()
    with app.app_context(), unit_of_work(db, readonly=True) as uow:
        assert _kept(uow, ctx.tenant_id) == ({"g-1", "g-6"}, 2, 2)
        wallet = wallets.get_wallet(system, uow, wallet_id)
        assert (wallet.available, wallet.held) == (price, 2 * price)
        report = verify_ledger(uow)
    assert report["ok"], report["differences"]


def test_a_ref_id_used_before_is_a_replay_or_a_conflict_for_both_use_cases(app, shop):
    ctx, _system, _wallet_id, _price = shop
    db = app.extensions["rop"].db
    with app.app_context(), unit_of_work(db) as uow:
        made = service.submit(ctx, uow, ref_id="r-1", product_code="TEL10", customer_no=NUMBER)
        assert made.created
        uow.commit()
    with app.app_context(), unit_of_work(db) as uow:
        again = service.submit(ctx, uow, ref_id="r-1", product_code="tel10", customer_no=NUMBER)
        assert (again.transaction.id, again.created) == (made.transaction.id, False)
        with pytest.raises(Conflict):
            service.submit(ctx, uow, ref_id="r-1", product_code="TEL10", customer_no="081200009999")
        answers = service.submit_many(ctx, uow, [Purchase("r-1", "TEL10", NUMBER),
                                                 Purchase("r-1", "TEL10", "081200009999"),
                                                 Purchase("r-2", "TEL10", NUMBER)])
        replay, conflict, new = answers
        assert isinstance(replay, Accepted) and (replay.transaction.id, replay.created) == (made.transaction.id, False)
        assert isinstance(conflict, Refused) and isinstance(conflict.error, Conflict)
        assert isinstance(new, Accepted) and new.created
        uow.commit()
    with app.app_context(), unit_of_work(db, readonly=True) as uow:
        assert _kept(uow, ctx.tenant_id) == ({"r-1", "r-2"}, 2, 2)


def test_submit_places_its_hold_at_the_commit(app, shop):
    """The wallet row is locked last: nothing of the hold before the caller commits."""
    ctx, system, wallet_id, price = shop
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        accepted = service.submit(ctx, uow, ref_id="h-1", product_code="TEL10", customer_no=NUMBER)
        uow.session.flush()
        assert uow.session.scalar(select(func.count()).select_from(Hold).where(Hold.tenant_id == ctx.tenant_id)) == 0
        assert wallets.get_wallet(system, uow, wallet_id).held == 0
        uow.commit()
        held = uow.session.scalars(select(Hold).where(Hold.tenant_id == ctx.tenant_id)).all()
        assert [h.id for h in held] == [accepted.transaction.hold_id]
        assert wallets.get_wallet(system, uow, wallet_id).held == price


def test_submit_many_holds_refused_at_the_commit_name_their_purchase(app, shop):
    """Each plan is judged against the wallet read once; the holds come at the commit, where
    the funds cover only three: the fourth's 402 names it, and nothing is kept."""
    ctx, system, wallet_id, price = shop
    db = app.extensions["rop"].db
    with app.app_context(), unit_of_work(db) as uow:
        answers = service.submit_many(ctx, uow, [Purchase(f"f-{i}", "TEL10", NUMBER) for i in range(4)])
        assert all(isinstance(a, Accepted) and a.created for a in answers)
        with pytest.raises(InsufficientFunds) as refused:
            uow.commit()
    assert refused.value.transaction_id == answers[3].transaction.id
    with app.app_context(), unit_of_work(db, readonly=True) as uow:
        assert _kept(uow, ctx.tenant_id) == (set(), 0, 0)
        assert wallets.get_wallet(system, uow, wallet_id).available == 3 * price


@pytest.mark.postgres("SQLite serializes writers with BEGIN IMMEDIATE: no window for a twin")
def test_submit_many_meets_a_concurrent_twin_at_the_flush_and_answers_it_when_called_again(app, shop):
    ctx, _system, _wallet_id, _price = shop
    db = app.extensions["rop"].db
    with app.app_context(), unit_of_work(db) as uow:
        first = service.submit_many(ctx, uow, [Purchase("t-1", "TEL10", NUMBER), Purchase("t-2", "TEL10", NUMBER)])
        assert all(isinstance(a, Accepted) and a.created for a in first)
        with unit_of_work(db) as other:  # the twin, committed after the group looked its ref_ids up
            twin = service.submit(ctx, other, ref_id="t-2", product_code="TEL10", customer_no=NUMBER)
            other.commit()
        with pytest.raises(IntegrityError):
            uow.commit()
        uow.rollback()
        again = service.submit_many(ctx, uow, [Purchase("t-1", "TEL10", NUMBER), Purchase("t-2", "TEL10", NUMBER)])
        assert [(a.created, a.transaction.ref_id) for a in again] == [(True, "t-1"), (False, "t-2")]
        assert again[1].transaction.id == twin.transaction.id
        uow.commit()
    with app.app_context(), unit_of_work(db, readonly=True) as uow:
        assert _kept(uow, ctx.tenant_id) == ({"t-1", "t-2"}, 2, 2)
