"""Adjustments: an operator's correction is a balanced posting with a reason, never an edit."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.db import unit_of_work
from hub.errors import Conflict, Forbidden, InsufficientFunds, ValidationFailed
from hub.wallets import accounts, checks, holds


@pytest.fixture
def admin(ctx):
    return ctx.with_changes(actor="admin:ops@example.com")


def _audit(app, action):
    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [(a.actor, a.before, a.after) for a in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))]


def _events(app, type_):
    """The tenant's events of ``type_`` in the event store (GET /v1/events), oldest first."""
    from hub.bus.models import TenantEvent

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [m.envelope["payload"] for m in uow.session.scalars(
            select(TenantEvent).where(TenantEvent.type == type_).order_by(TenantEvent.seq))]


def test_a_credit_and_a_debit_adjustment_post_against_the_adjustments_account(app, run, admin, verify):
    wallet = run(accounts.get_main_wallet, admin)
    run(accounts.topup, admin, wallet.id, 1000, "t1")
    credit = run(accounts.adjust, admin, wallet.id, 250, "missed bank transfer 77", "adj-1")
    debit = run(accounts.adjust, admin, wallet.id, -400, "duplicate top-up reversed", "adj-2")
    assert credit["replayed"] is False and debit["amount"] == -400
    assert run(accounts.get_wallet, admin, wallet.id).available == 850
    items, _ = run(accounts.statement, admin, wallet.id)
    assert [(i["kind"], i["amount"], i["balance_after"]) for i in items] == [
        ("topup", 1000, 1000), ("adjustment", 250, 1250), ("adjustment", -400, 850)]
    assert verify()["ok"]
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        from hub.wallets.models import Entry, Journal

        journal = uow.session.get(Journal, debit["journal_id"])
        assert journal.meta == {"reason": "duplicate top-up reversed", "actor": "admin:ops@example.com"}
        legs = {e.account: e.amount for e in uow.session.scalars(select(Entry).where(Entry.journal_id == journal.id))}
    assert legs == {"sys:adjustments:IDR": 400, f"{wallet.id}:available": -400}
    audit = _audit(app, "wallet.adjusted")
    assert [(actor, after["amount"], after["reason"]) for actor, _, after in audit] == [
        ("admin:ops@example.com", 250, "missed bank transfer 77"),
        ("admin:ops@example.com", -400, "duplicate top-up reversed")]
    assert audit[1][1] == {"available": 1250} and audit[1][2]["available"] == 850


def test_an_adjustment_is_idempotent_by_its_key(app, run, admin, verify):
    wallet = run(accounts.get_main_wallet, admin)
    first = run(accounts.adjust, admin, wallet.id, 300, "goodwill", "adj-k")
    again = run(accounts.adjust, admin, wallet.id, 300, "goodwill", "adj-k")
    assert again["replayed"] is True and again["journal_id"] == first["journal_id"]
    with pytest.raises(Conflict):
        run(accounts.adjust, admin, wallet.id, 301, "goodwill", "adj-k")
    assert run(accounts.get_wallet, admin, wallet.id).available == 300
    assert len(_audit(app, "wallet.adjusted")) == 1 and verify()["ok"]


def test_a_debit_adjustment_cannot_overdraw(app, run, admin):
    wallet = run(accounts.get_main_wallet, admin)
    run(accounts.adjust, admin, wallet.id, 100, "opening", "a1")
    with pytest.raises(InsufficientFunds):
        run(accounts.adjust, admin, wallet.id, -101, "too much", "a2")
    assert run(accounts.get_wallet, admin, wallet.id).available == 100
    assert len(_audit(app, "wallet.adjusted")) == 1


@pytest.mark.parametrize("amount,reason,key", [(0, "x", "k"), (1.5, "x", "k"), (True, "x", "k"),
                                               (10, "", "k"), (10, "   ", "k"), (10, "x", "")])
def test_an_adjustment_needs_a_non_zero_amount_a_reason_and_a_key(run, admin, amount, reason, key):
    wallet = run(accounts.get_main_wallet, admin)
    with pytest.raises(ValidationFailed):
        run(accounts.adjust, admin, wallet.id, amount, reason, key)
    assert run(accounts.get_wallet, admin, wallet.id).available == 0


def test_an_adjustment_publishes_a_wallet_event(app, run, admin):
    wallet = run(accounts.get_main_wallet, admin)
    run(accounts.adjust, admin, wallet.id, 70, "goodwill", "e1")
    run(accounts.adjust, admin, wallet.id, -20, "fee", "e2")
    credited = _events(app, "wallet.credited")
    debited = _events(app, "wallet.debited")
    assert [(p["kind"], p["amount"], p["available"]) for p in credited] == [("adjustment", 70, 70)]
    assert [(p["kind"], p["amount"], p["available"]) for p in debited] == [("adjustment", 20, 50)]


def test_wallet_totals_sum_every_tenants_wallets_per_currency(run, ctx, other_ctx, admin):
    from hub.context import CallContext

    run(accounts.topup, ctx, None, 700, "t1")
    sub = run(accounts.create_wallet, ctx, "customer-9")
    run(accounts.transfer, ctx, run(accounts.get_main_wallet, ctx).id, sub.id, 200, "x1")
    run(accounts.topup, other_ctx, None, 300, "t2")
    run(holds.place_hold, other_ctx, run(accounts.get_main_wallet, other_ctx).id, 100, "h1")
    platform = CallContext.system(actor="admin:ops@example.com")
    assert run(checks.wallet_totals, platform) == {"IDR": {"wallets": 3, "available": 900, "held": 100}}
    with pytest.raises(Forbidden):
        run(checks.wallet_totals, ctx)
