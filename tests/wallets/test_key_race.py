"""A key taken between the look-up and the write: the journal insert skips, nothing is written,
the first attempt's result answers (same body) or 409 (another body). SQLite and PostgreSQL."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from hub.db import unit_of_work
from hub.errors import Conflict
from hub.wallets import accounts, holds, ledger
from hub.wallets.models import Entry, Hold, Journal


def _counts(app):
    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return tuple(uow.session.scalar(select(func.count()).select_from(m)) for m in (Journal, Entry, Hold))


def _miss_next_lookup(monkeypatch) -> list[int]:
    """Make the next key look-up miss, as when a same-key attempt commits right after it."""
    real, misses = ledger.replay, [1]

    def replay(*args, **kwargs):
        if misses:
            misses.pop()
            return None
        return real(*args, **kwargs)

    monkeypatch.setattr(ledger, "replay", replay)
    return misses


@pytest.mark.parametrize("operation", ["hold", "topup", "transfer"])
def test_a_key_taken_after_the_lookup_writes_nothing_and_answers_the_first_result(
        app, run, ctx, verify, monkeypatch, operation):
    main = run(accounts.get_main_wallet, ctx)
    sub = run(accounts.create_wallet, ctx, "customer")
    run(accounts.topup, ctx, main.id, 1000, "seed")
    calls = {"hold": lambda: run(holds.place_hold, ctx, main.id, 100, "k"),
             "topup": lambda: run(accounts.topup, ctx, main.id, 100, "k"),
             "transfer": lambda: run(accounts.transfer, ctx, main.id, sub.id, 100, "k")}
    first = calls[operation]()
    before = _counts(app), run(accounts.get_wallet, ctx, main.id).available
    misses = _miss_next_lookup(monkeypatch)
    again = calls[operation]()
    assert not misses  # the look-up did miss
    if operation == "hold":
        assert again.id == first.id and again.amount == 100
    else:
        assert again["journal_id"] == first["journal_id"] and again["replayed"] is True
    assert (_counts(app), run(accounts.get_wallet, ctx, main.id).available) == before
    assert verify()["ok"]


def test_a_key_taken_after_the_lookup_with_another_body_is_409(app, run, ctx, verify, monkeypatch):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 1000, "seed")
    run(holds.place_hold, ctx, main.id, 100, "k")
    before = _counts(app)
    misses = _miss_next_lookup(monkeypatch)
    with pytest.raises(Conflict):
        run(holds.place_hold, ctx, main.id, 99, "k")
    assert not misses
    assert _counts(app) == before
    assert run(accounts.get_wallet, ctx, main.id).held == 100
    assert verify()["ok"]


@pytest.mark.postgres("SQLite serializes writers with BEGIN IMMEDIATE: no window for a race")
def test_two_transactions_racing_on_one_key_postgres(app, run, ctx, verify, is_postgres):
    """Two wallets (two row locks), one key, the second transaction's journal insert waits
    for the first: it commits, so the second writes nothing and answers 409 (another body)."""
    main = run(accounts.get_main_wallet, ctx)
    sub = run(accounts.create_wallet, ctx, "customer")
    run(accounts.topup, ctx, main.id, 1000, "seed-a")
    run(accounts.topup, ctx, sub.id, 1000, "seed-b")
    db = app.extensions["rop"].db
    placed, outcome = threading.Event(), {}

    def second():
        with app.app_context(), unit_of_work(db) as uow:
            placed.wait(30)
            try:
                holds.place_hold(ctx, uow, sub.id, 100, "same-key")
                uow.commit()
                outcome["result"] = "placed"
            except Conflict:
                outcome["result"] = "409"

    with app.app_context(), unit_of_work(db) as uow:
        hold = holds.place_hold(ctx, uow, main.id, 100, "same-key")
        thread = threading.Thread(target=second)
        thread.start()
        placed.set()
        thread.join(1.0)
        assert thread.is_alive()  # waiting on our uncommitted journal's key
        uow.commit()
    thread.join(30)
    assert outcome == {"result": "409"}
    assert run(accounts.get_wallet, ctx, sub.id).held == 0
    assert run(holds.get_hold, ctx, hold.id).status == "placed"
    assert verify()["ok"]
