"""place_hold writes with Core statements: the session's copy of the wallet stays truthful,
a caller's savepoint undoes the hold entirely, pending ORM changes of the wallet count."""
from __future__ import annotations

import pytest

from hub.db import unit_of_work
from hub.errors import InsufficientFunds, NotFound
from hub.wallets import accounts, client, holds


def test_the_sessions_wallet_shows_the_hold_in_the_same_unit_of_work(app, run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 1000, "seed")
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        wallet = accounts.get_wallet(ctx, uow, main.id)
        assert (wallet.available, wallet.held) == (1000, 0)
        hold = holds.place_hold(ctx, uow, main.id, 300, "h1")
        assert (wallet.available, wallet.held) == (700, 300)
        assert client.get_wallet(ctx, uow, main.id)["available"] == 700
        assert holds.get_hold(ctx, uow, hold.id).status == "placed"
        uow.commit()
    assert (hold.amount, hold.status, hold.wallet_id) == (300, "placed", main.id)
    assert verify()["ok"]


def test_a_callers_savepoint_rolled_back_undoes_the_hold(app, run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 1000, "seed")
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        wallet = accounts.get_wallet(ctx, uow, main.id)
        with pytest.raises(RuntimeError), uow.session.begin_nested():
            hold = holds.place_hold(ctx, uow, main.id, 300, "h1")
            raise RuntimeError("the caller refuses after the hold")
        assert (wallet.available, wallet.held) == (1000, 0)
        with pytest.raises(NotFound):
            holds.get_hold(ctx, uow, hold.id)
        again = holds.place_hold(ctx, uow, main.id, 300, "h1")  # the key is free again
        assert again.id != hold.id
        uow.commit()
    assert run(accounts.get_wallet, ctx, main.id).held == 300
    assert verify()["ok"]


def test_a_pending_overdraft_limit_of_the_session_counts(app, run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 100, "seed")
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        accounts.get_wallet(ctx, uow, main.id).overdraft_limit = 50  # not flushed yet
        holds.place_hold(ctx, uow, main.id, 150, "h1")
        with pytest.raises(InsufficientFunds):
            holds.place_hold(ctx, uow, main.id, 1, "h2")
        uow.commit()
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (-50, 150)
    assert verify()["ok"]
