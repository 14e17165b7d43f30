"""The ledger's use-cases: postings balance, idempotency, overdraft, holds, expiry, verify."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from hub.db import unit_of_work, utcnow
from hub.errors import Conflict, Forbidden, InsufficientFunds, NotFound, ValidationFailed
from hub.wallets import accounts, client, holds, jobs
from hub.wallets.models import Entry, Wallet


def test_main_wallet_is_created_once_on_first_access(run, ctx):
    first = run(accounts.get_main_wallet, ctx)
    again = run(accounts.get_main_wallet, ctx)
    assert first.id == again.id and first.currency == "IDR" and first.is_main


def test_topup_credits_the_main_wallet_and_the_journal_balances(run, ctx, verify):
    result = run(accounts.topup, ctx, None, 1000, "top-1")
    wallet = run(accounts.get_main_wallet, ctx)
    assert wallet.available == 1000 and wallet.held == 0
    assert result["replayed"] is False and result["wallet_id"] == wallet.id
    report = verify()
    assert report["ok"], report
    assert report["journals"] == 1 and report["entries"] == 2


def test_transfer_moves_funds_and_the_statement_has_running_balances(run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    sub = run(accounts.create_wallet, ctx, "customer-1")
    run(accounts.topup, ctx, main.id, 1000, "t1")
    run(accounts.transfer, ctx, main.id, sub.id, 300, "x1")
    run(accounts.transfer, ctx, main.id, sub.id, 200, "x2")
    assert run(accounts.get_wallet, ctx, main.id).available == 500
    assert run(accounts.get_wallet, ctx, sub.id).available == 500
    items, cursor = run(accounts.statement, ctx, main.id)
    assert [(i["kind"], i["amount"], i["balance_after"]) for i in items] == [
        ("topup", 1000, 1000), ("transfer", -300, 700), ("transfer", -200, 500)]
    page, cursor = run(accounts.statement, ctx, main.id, limit=2)
    assert len(page) == 2 and cursor is not None
    rest, end = run(accounts.statement, ctx, main.id, cursor=cursor, limit=2)
    assert [i["amount"] for i in rest] == [-200] and end is None
    assert verify()["ok"]


def test_insufficient_funds_is_402_and_writes_nothing(run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    sub = run(accounts.create_wallet, ctx, "c")
    run(accounts.topup, ctx, main.id, 100, "t")
    with pytest.raises(InsufficientFunds) as info:
        run(accounts.transfer, ctx, main.id, sub.id, 101, "x")
    assert info.value.status == 402
    assert run(accounts.get_wallet, ctx, main.id).available == 100
    assert verify()["journals"] == 1


def test_overdraft_limit_lets_available_go_down_to_minus_the_limit(run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    sub = run(accounts.create_wallet, ctx, "c")
    run(accounts.set_overdraft_limit, ctx, main.id, 50)
    run(accounts.transfer, ctx, main.id, sub.id, 50, "x1")
    assert run(accounts.get_wallet, ctx, main.id).available == -50
    with pytest.raises(InsufficientFunds):
        run(accounts.transfer, ctx, main.id, sub.id, 1, "x2")
    assert verify()["ok"]


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", True, None])
def test_amounts_must_be_positive_integers(run, ctx, amount):
    with pytest.raises(ValidationFailed):
        run(accounts.topup, ctx, None, amount, "t")


def test_same_key_same_body_replays_the_first_result(run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    sub = run(accounts.create_wallet, ctx, "c")
    run(accounts.topup, ctx, main.id, 100, "t")
    first = run(accounts.transfer, ctx, main.id, sub.id, 60, "same")
    second = run(accounts.transfer, ctx, main.id, sub.id, 60, "same")  # would be 402 if applied again
    assert second["journal_id"] == first["journal_id"] and second["replayed"] is True
    assert run(accounts.get_wallet, ctx, sub.id).available == 60
    assert verify()["journals"] == 2


def test_same_key_other_body_is_409(run, ctx):
    main = run(accounts.get_main_wallet, ctx)
    sub = run(accounts.create_wallet, ctx, "c")
    run(accounts.topup, ctx, main.id, 100, "t")
    run(accounts.transfer, ctx, main.id, sub.id, 10, "k")
    with pytest.raises(Conflict):
        run(accounts.transfer, ctx, main.id, sub.id, 11, "k")
    with pytest.raises(Conflict):
        run(accounts.topup, ctx, main.id, 5, "t")


def test_keys_are_per_tenant(run, ctx, other_ctx):
    run(accounts.topup, ctx, None, 100, "k")
    result = run(accounts.topup, other_ctx, None, 7, "k")
    assert result["replayed"] is False


def test_another_tenants_wallet_is_not_found(run, ctx, other_ctx):
    theirs = run(accounts.get_main_wallet, other_ctx)
    mine = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, mine.id, 100, "t")
    with pytest.raises(NotFound):
        run(accounts.get_wallet, ctx, theirs.id)
    with pytest.raises(NotFound):
        run(accounts.transfer, ctx, mine.id, theirs.id, 10, "x")
    with pytest.raises(NotFound):
        run(accounts.topup, ctx, theirs.id, 10, "y")


def test_hold_capture_partial_releases_the_rest_and_reverse_refunds(run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 1000, "t")
    hold = run(holds.place_hold, ctx, main.id, 400, "h1", reference="trx_1")
    w = run(accounts.get_wallet, ctx, main.id)
    assert (w.available, w.held, hold.status) == (600, 400, "placed")
    assert verify()["ok"]
    hold = run(holds.capture_hold, ctx, hold.id, 250, key="c1")
    w = run(accounts.get_wallet, ctx, main.id)
    assert (w.available, w.held, hold.status, hold.captured) == (750, 0, "partially_captured", 250)
    with pytest.raises(Conflict):
        run(holds.void_hold, ctx, hold.id, key="v1")
    hold = run(holds.reverse_capture, ctx, hold.id, 100, key="r1")
    assert run(accounts.get_wallet, ctx, main.id).available == 850
    with pytest.raises(ValidationFailed):
        run(holds.reverse_capture, ctx, hold.id, 151, key="r2")
    run(holds.reverse_capture, ctx, hold.id, key="r3")
    assert run(accounts.get_wallet, ctx, main.id).available == 1000
    assert verify()["ok"]


def test_hold_replay_and_conflict(run, ctx):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 100, "t")
    a = run(holds.place_hold, ctx, main.id, 100, "h")
    b = run(holds.place_hold, ctx, main.id, 100, "h")
    assert a.id == b.id
    with pytest.raises(Conflict):
        run(holds.place_hold, ctx, main.id, 99, "h")
    with pytest.raises(InsufficientFunds):
        run(holds.place_hold, ctx, main.id, 1, "h2")
    v1 = run(holds.void_hold, ctx, a.id, key="v")
    v2 = run(holds.void_hold, ctx, a.id, key="v")
    assert v1.status == v2.status == "voided"
    assert run(accounts.get_wallet, ctx, main.id).available == 100


def test_expired_holds_are_voided_by_the_scheduler_job(app, run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 500, "t")
    past = utcnow() - dt.timedelta(seconds=1)
    expired = run(holds.place_hold, ctx, main.id, 100, "h1", expires_at=past)
    live = run(holds.place_hold, ctx, main.id, 100, "h2", expires_at=utcnow() + dt.timedelta(hours=1))
    forever = run(holds.place_hold, ctx, main.id, 100, "h3")
    with app.app_context():
        assert jobs.expire_holds_job() == 1
        assert jobs.expire_holds_job() == 0
    assert run(holds.get_hold, ctx, expired.id).status == "voided"
    assert run(holds.get_hold, ctx, live.id).status == "placed"
    assert run(holds.get_hold, ctx, forever.id).status == "placed"
    w = run(accounts.get_wallet, ctx, main.id)
    assert (w.available, w.held) == (300, 200)
    assert verify()["ok"]


def test_verify_finds_a_tampered_balance_and_the_daily_job_raises_an_event(app, run, ctx, verify):
    from hub.bus.models import OutboxMessage

    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 500, "t")
    db = app.extensions["rop"].db
    with unit_of_work(db) as uow:
        uow.session.execute(update(Wallet).where(Wallet.id == main.id).values(available=501))
        uow.session.execute(update(Entry).where(Entry.amount == -500).values(amount=-499))
        uow.commit()
    report = verify()
    problems = {d["problem"] for d in report["differences"]}
    assert not report["ok"] and {"available", "unbalanced"} <= problems
    with app.app_context():
        assert jobs.verify_job()["ok"] is False
    with unit_of_work(db) as uow:
        types = uow.session.scalars(select(OutboxMessage.type)).all()
    assert "wallet.ledger_mismatch" in types


def test_operations_publish_wallet_events_to_the_event_store(app, run, ctx):
    """Tenant events: in the event store (no handler takes them here, so no outbox row)."""
    from hub.bus.models import TenantEvent

    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 500, "t")
    hold = run(holds.place_hold, ctx, main.id, 100, "h")
    run(holds.capture_hold, ctx, hold.id, key="c")
    hold2 = run(holds.place_hold, ctx, main.id, 100, "h2")
    run(holds.void_hold, ctx, hold2.id, key="v")
    run(accounts.topup, ctx, main.id, 500, "t")  # replay: no second event
    with unit_of_work(app.extensions["rop"].db) as uow:
        types = sorted(uow.session.scalars(select(TenantEvent.type).where(TenantEvent.tenant_id == ctx.tenant_id)))
    assert types == sorted(["wallet.credited", "wallet.hold_placed", "wallet.hold_captured", "wallet.debited",
                            "wallet.hold_placed", "wallet.hold_voided"])


def test_client_checks_scopes(run, ctx):
    reader = ctx.with_changes(scopes=frozenset({"wallets:read"}))
    run(accounts.topup, ctx, None, 100, "t")
    assert run(client.get_main_wallet, reader)["available"] == 100
    with pytest.raises(Forbidden):
        run(client.place_hold, reader, None, 10, "h")
    hold = run(client.place_hold, ctx, None, 10, "h", reference="trx_9")
    assert hold["status"] == "placed" and hold["reference"] == "trx_9"
    assert run(client.capture_hold, ctx, hold["id"], key="c")["status"] == "captured"
    assert run(client.reverse_capture, ctx, hold["id"], key="r")["reversed"] == 10


def test_sub_wallet_owner_ref_is_unique_per_tenant(run, ctx, other_ctx):
    run(accounts.create_wallet, ctx, "cust")
    run(accounts.create_wallet, other_ctx, "cust")
    with pytest.raises(Conflict):
        run(accounts.create_wallet, ctx, "cust")
