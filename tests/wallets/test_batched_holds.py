"""place_holds and capture_holds: many holds or captures at once are the same postings as
place_hold or capture_hold one after the other — balances, entries, journals, events,
idempotency, refusals, tenancy."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from hub.bus.models import TenantEvent
from hub.db import unit_of_work
from hub.errors import Conflict, NotFound
from hub.wallets import accounts
from hub.wallets import holds as wallet_holds
from hub.wallets.models import Entry, Hold, Journal


def _funded_holds(run, ctx, amounts: list[int], funds: int = 10_000):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, funds, "fund")
    return main, [run(wallet_holds.place_hold, ctx, main.id, amount, f"h{n}") for n, amount in enumerate(amounts)]


def _rows(app, model, *where):
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [dict(r._mapping) for r in uow.session.execute(select(model.__table__).where(*where))]


def test_many_captures_are_the_postings_of_one_after_the_other(app, run, ctx, verify):
    main, holds = _funded_holds(run, ctx, [100, 250, 40])
    captured = run(wallet_holds.capture_holds, ctx, [(h.id, f"c{n}") for n, h in enumerate(holds)])
    assert [(h.id, h.status, h.captured) for h in captured] == [(h.id, "captured", h.amount) for h in holds]
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (10_000 - 390, 0)
    report = verify()
    assert report["ok"], report
    # one journal per capture, each with its held-side entry showing the balance after it
    journals = {j["idem_key"]: j for j in _rows(app, Journal, Journal.kind == "capture")}
    assert sorted(journals) == ["c0", "c1", "c2"]
    held_after = []
    for key in ("c0", "c1", "c2"):
        entries = _rows(app, Entry, Entry.journal_id == journals[key]["id"])
        assert sorted(e["amount"] for e in entries) == sorted([-holds[int(key[1])].amount, holds[int(key[1])].amount])
        held_after += [e["balance_after"] for e in entries if e["wallet_id"] == main.id]
    assert held_after == [290, 40, 0]  # 390 held before: each capture in turn
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        types = [e.type for e in uow.session.scalars(select(TenantEvent).where(TenantEvent.tenant_id == ctx.tenant_id))]
    assert types.count("wallet.hold_captured") == 3 and types.count("wallet.debited") == 3


def test_captures_again_with_the_same_keys_move_nothing(run, ctx, verify):
    main, holds = _funded_holds(run, ctx, [100, 200])
    pairs = [(h.id, f"c{n}") for n, h in enumerate(holds)]
    run(wallet_holds.capture_holds, ctx, pairs)
    again = run(wallet_holds.capture_holds, ctx, pairs)
    assert [h.status for h in again] == ["captured", "captured"]
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (10_000 - 300, 0)
    assert verify()["ok"]


def test_a_mix_of_new_and_replayed_captures_captures_the_new_ones(run, ctx, verify):
    main, holds = _funded_holds(run, ctx, [100, 200, 300])
    run(wallet_holds.capture_hold, ctx, holds[1].id, key="c1")  # one of them alone, earlier
    run(wallet_holds.capture_holds, ctx, [(h.id, f"c{n}") for n, h in enumerate(holds)])
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (10_000 - 600, 0)
    assert verify()["ok"]


def test_a_hold_no_longer_placed_refuses_the_whole_batch(run, ctx, verify):
    main, holds = _funded_holds(run, ctx, [100, 200])
    run(wallet_holds.void_hold, ctx, holds[0].id, key="v0")
    with pytest.raises(Conflict):
        run(wallet_holds.capture_holds, ctx, [(holds[1].id, "c1"), (holds[0].id, "c0")])
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (10_000 - 200, 200)  # nothing captured
    assert verify()["ok"]


def test_a_key_used_for_another_hold_is_a_conflict(run, ctx):
    _main, holds = _funded_holds(run, ctx, [100, 200])
    run(wallet_holds.capture_hold, ctx, holds[0].id, key="same")
    with pytest.raises(Conflict):
        run(wallet_holds.capture_holds, ctx, [(holds[1].id, "same")])


def test_another_tenants_hold_is_not_found(run, ctx, other_ctx, verify):
    _main, mine = _funded_holds(run, ctx, [100])
    _theirs_main, theirs = _funded_holds(run, other_ctx, [100])
    with pytest.raises(NotFound):
        run(wallet_holds.capture_holds, ctx, [(mine[0].id, "c0"), (theirs[0].id, "c1")])
    assert run(wallet_holds.get_hold, other_ctx, theirs[0].id).status == "placed"
    assert run(wallet_holds.get_hold, ctx, mine[0].id).status == "placed"
    assert verify()["ok"]


def _plans(run, ctx, wallet_id: str, amounts: list[int]):
    return [run(wallet_holds.plan_hold, ctx, wallet_id, amount) for amount in amounts]


def test_many_holds_are_the_postings_of_one_after_the_other(app, run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 1000, "fund")
    plans = _plans(run, ctx, main.id, [100, 250, 40])
    placed = run(wallet_holds.place_holds, ctx, [(p, f"k{n}", f"ref-{n}") for n, p in enumerate(plans)])
    assert [(h.id, h.amount, h.status, h.reference) for h in placed] == [
        (p.hold_id, p.amount, "placed", f"ref-{n}") for n, p in enumerate(plans)]
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (610, 390)
    report = verify()
    assert report["ok"], report
    journals = {j["idem_key"]: j["id"] for j in _rows(app, Journal, Journal.kind == "hold")}
    assert sorted(journals) == ["k0", "k1", "k2"]
    available_after = [e["balance_after"] for key in ("k0", "k1", "k2")
                       for e in _rows(app, Entry, Entry.journal_id == journals[key]) if e["amount"] < 0]
    assert available_after == [900, 650, 610]  # each hold in turn
    # the same keys again, one by one: replays of these holds, nothing moves
    again = [run(wallet_holds.place_hold, ctx, main.id, p.amount, f"k{n}", reference=f"ref-{n}")
             for n, p in enumerate(plans)]
    assert [h.id for h in again] == [p.hold_id for p in plans]
    assert run(accounts.get_wallet, ctx, main.id).held == 390


def test_holds_the_funds_do_not_all_cover_write_nothing(app, run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 300, "fund")
    plans = _plans(run, ctx, main.id, [100, 150, 100])  # each fits alone, not all three
    assert run(wallet_holds.place_holds, ctx, [(p, f"k{n}", None) for n, p in enumerate(plans)]) is None
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (300, 0)
    assert _rows(app, Hold) == [] and _rows(app, Journal, Journal.kind == "hold") == []
    assert verify()["ok"]


def test_holds_with_a_key_used_before_write_nothing(app, run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 1000, "fund")
    run(wallet_holds.place_hold, ctx, main.id, 100, "k1")
    plans = _plans(run, ctx, main.id, [100, 100])
    assert run(wallet_holds.place_holds, ctx, [(plans[0], "k0", None), (plans[1], "k1", None)]) is None
    assert len(_rows(app, Hold)) == 1
    assert run(accounts.get_wallet, ctx, main.id).held == 100
    assert verify()["ok"]


def test_holds_on_two_wallets_are_not_placed_together(app, run, ctx):
    main = run(accounts.get_main_wallet, ctx)
    other = run(accounts.create_wallet, ctx, "Other", "IDR")
    run(accounts.topup, ctx, main.id, 1000, "fund")
    run(accounts.topup, ctx, other.id, 1000, "fund-2")
    plans = _plans(run, ctx, main.id, [100]) + _plans(run, ctx, other.id, [100])
    assert run(wallet_holds.place_holds, ctx, [(p, f"k{n}", None) for n, p in enumerate(plans)]) is None
    assert _rows(app, Hold) == []


def test_captures_on_two_wallets_move_each_wallet_by_its_own(run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    other = run(accounts.create_wallet, ctx, "Branch", "IDR")
    run(accounts.topup, ctx, main.id, 1000, "fund")
    run(accounts.topup, ctx, other.id, 500, "fund-2")
    holds = [run(wallet_holds.place_hold, ctx, main.id, 100, "h0"), run(wallet_holds.place_hold, ctx, other.id, 70, "h1"),
             run(wallet_holds.place_hold, ctx, main.id, 30, "h2")]
    run(wallet_holds.capture_holds, ctx, [(h.id, f"c{n}") for n, h in enumerate(holds)])
    mine, theirs = run(accounts.get_wallet, ctx, main.id), run(accounts.get_wallet, ctx, other.id)
    assert (mine.available, mine.held, theirs.available, theirs.held) == (870, 0, 430, 0)
    report = verify()
    assert report["ok"], report
