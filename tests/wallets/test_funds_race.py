"""Funds taken between a hold's check and its balance move: the hold's conditional update
matches nothing, the journal and hold rows it wrote are deleted again, and it is 402.

A hold checks the funds without a lock (nothing written on a 402), writes its journal and
hold rows, and only then locks the wallet with ``UPDATE … WHERE available - amount >=
-overdraft_limit RETURNING``. SQLite and PostgreSQL; a real two-transaction race on
PostgreSQL, and many concurrent holds from threads on both.
"""
from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from hub.db import unit_of_work
from hub.errors import InsufficientFunds
from hub.wallets import accounts, holds
from hub.wallets.models import Entry, Hold, Journal


def _counts(app):
    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return tuple(uow.session.scalar(select(func.count()).select_from(m)) for m in (Journal, Entry, Hold))


def test_a_plan_made_stale_by_another_hold_is_402_and_leaves_nothing(app, run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 1000, "seed")
    plan = run(holds.plan_hold, ctx, main.id, 600)  # 1,000 available: fine now
    run(holds.place_hold, ctx, main.id, 600, "first")  # another purchase takes 600
    before = _counts(app)
    with pytest.raises(InsufficientFunds) as raised:
        run(holds.place_hold, ctx, main.id, 600, "second", plan=plan)
    assert raised.value.extra == {"available": 400, "needed": 600}
    assert _counts(app) == before  # the second's journal and hold rows were deleted again
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (400, 600)
    assert verify()["ok"]


def test_a_plan_is_for_its_amount_and_wallet_only(app, run, ctx):
    main = run(accounts.get_main_wallet, ctx)
    other = run(accounts.create_wallet, ctx, "customer")
    run(accounts.topup, ctx, main.id, 1000, "seed")
    plan = run(holds.plan_hold, ctx, None, 100)
    assert plan.wallet_id == main.id and plan.currency == "IDR"
    with pytest.raises(AssertionError):
        run(holds.place_hold, ctx, main.id, 101, "k", plan=plan)
    with pytest.raises(AssertionError):
        run(holds.place_hold, ctx, other.id, 100, "k", plan=plan)
    assert run(holds.place_hold, ctx, None, 100, "k", plan=plan).id == plan.hold_id


def test_a_plan_refuses_what_the_funds_do_not_cover_now_writing_nothing(app, run, ctx):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 100, "seed")
    before = _counts(app)
    with pytest.raises(InsufficientFunds):
        run(holds.plan_hold, ctx, main.id, 101)
    assert _counts(app) == before


@pytest.mark.postgres("SQLite serializes writers with BEGIN IMMEDIATE: no window for a race")
def test_a_hold_waiting_on_the_lock_sees_the_funds_the_first_took_postgres(app, run, ctx, verify, is_postgres):
    """The second hold's check passes (the first has not committed), its update waits on the
    row lock, re-reads the committed row when the first commits, and matches nothing."""
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 1000, "seed")
    db = app.extensions["rop"].db
    started, outcome = threading.Event(), {}

    def second():
        with app.app_context(), unit_of_work(db) as uow:
            started.wait(30)
            try:
                holds.place_hold(ctx, uow, main.id, 500, "second")
                uow.commit()
                outcome["result"] = "placed"
            except InsufficientFunds:
                uow.commit()  # commits the deletes: nothing of the refused hold may remain
                outcome["result"] = "402"

    with app.app_context(), unit_of_work(db) as uow:
        first = holds.place_hold(ctx, uow, main.id, 800, "first")
        thread = threading.Thread(target=second)
        thread.start()
        started.set()
        thread.join(1.0)
        assert thread.is_alive()  # its check saw 1,000; its update waits on our row lock
        uow.commit()
    thread.join(30)
    assert outcome == {"result": "402"}
    assert _counts(app) == (2, 4, 1)  # the seed and the first hold: journals, entries, holds
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (200, 800)
    assert run(holds.get_hold, ctx, first.id).status == "placed"
    assert verify()["ok"]


def test_forty_concurrent_holds_on_funds_for_twenty(app, run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 2000, "seed")
    db = app.extensions["rop"].db
    barrier, outcomes, lock = threading.Barrier(8), Counter(), threading.Lock()

    def client(n: int) -> None:
        barrier.wait(30)
        for i in range(5):
            with app.app_context(), unit_of_work(db) as uow:
                try:
                    holds.place_hold(ctx, uow, main.id, 100, f"h-{n}-{i}")
                    uow.commit()
                    result = "placed"
                except InsufficientFunds:
                    result = "402"
            with lock:
                outcomes[result] += 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes == Counter({"placed": 20, "402": 20})
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (0, 2000)
    assert _counts(app) == (21, 42, 20)
    report = verify()
    assert report["ok"], report["differences"]
