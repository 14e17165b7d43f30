"""hub.wallets.ledger.post, the one write primitive of the ledger, on its own: balanced legs,
the entries' balances after each posting, idempotency keys, the guarded move, the caller's
``then``; and the statements a hold, a capture and a batch of holds send to the wallet tables
(the hold path's cost: one statement per step, the wallet row locked by the last but one)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import event, func, select

from hub.db import unit_of_work
from hub.errors import Conflict
from hub.wallets import accounts, holds, ledger
from hub.wallets.ledger import FUNDING, SETTLEMENT, Posting, post, system_leg, wallet_leg
from hub.wallets.models import Entry, Journal


def _counts(app):
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return tuple(uow.session.scalar(select(func.count()).select_from(m)) for m in (Journal, Entry))


def _entries(app, journal_id):
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [(e.account.rsplit(":", 1)[-1], e.amount, e.balance_after)
                for e in uow.session.scalars(select(Entry).where(Entry.journal_id == journal_id).order_by(Entry.seq))]


def _fund(wallet, amount, key, fp="fp"):
    return Posting("topup", key, fp, wallet.currency,
                   [system_leg(FUNDING, wallet.currency, -amount), wallet_leg(wallet, "available", amount)],
                   {"kind": "topup", "amount": amount})


def _reserve(wallet, amount, key, fp="fp"):
    return Posting("hold", key, fp, wallet.currency,
                   [wallet_leg(wallet, "available", -amount), wallet_leg(wallet, "held", amount)],
                   {"kind": "hold", "amount": amount})


def _release(wallet, amount, key):
    return Posting("void", key, "fp", wallet.currency,
                   [wallet_leg(wallet, "held", -amount), wallet_leg(wallet, "available", amount)], {"kind": "void"})


def _spend(wallet, amount, key):
    return Posting("capture", key, "fp", wallet.currency,
                   [wallet_leg(wallet, "available", -amount), system_leg(SETTLEMENT, wallet.currency, amount)],
                   {"kind": "capture", "amount": amount})


def _post(app, ctx, make, **options):
    """``post`` of the postings ``make(wallet)`` builds, on the tenant's main wallet as read
    without a lock (or locked, with ``locked=True``), in one committed unit of work."""
    locked = options.pop("locked", False)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        main = accounts.get_main_wallet(ctx, uow)
        wallet = accounts.lock_wallets(ctx, uow, main.id)[main.id] if locked else accounts.read_wallet(ctx, uow, main.id)
        postings = make(wallet)
        answers = post(ctx, uow, postings, **options)
        uow.commit()
    return answers, postings


@pytest.mark.parametrize("locked", [False, True], ids=["snapshot", "locked"])
def test_each_entry_carries_its_accounts_balance_after_its_posting(app, run, ctx, verify, locked):
    answers, postings = _post(app, ctx, lambda w: [_fund(w, 1000, "t1"), _reserve(w, 300, "h1"),
                                                   _reserve(w, 200, "h2"), _spend(w, 100, "s1"),
                                                   _release(w, 500, "v1")], locked=locked)
    assert [a["replayed"] for a in answers] == [False] * 5
    assert len({a["journal_id"] for a in answers}) == 5
    assert [_entries(app, a["journal_id"]) for a in answers] == [
        [("IDR", -1000, None), ("available", 1000, 1000)],
        [("available", -300, 700), ("held", 300, 300)],
        [("available", -200, 500), ("held", 200, 500)],
        [("available", -100, 400), ("IDR", 100, None)],
        [("held", -500, 0), ("available", 500, 900)]]
    wallet_id = postings[0].legs[1].wallet.id
    assert [(p.after[wallet_id].available, p.after[wallet_id].held) for p in postings] == [
        (1000, 0), (700, 300), (500, 500), (400, 500), (900, 0)]
    wallet = run(accounts.get_wallet, ctx, wallet_id)
    assert (wallet.available, wallet.held) == (900, 0)
    assert verify()["ok"]


def test_an_unbalanced_posting_is_refused_before_anything_is_written(app, ctx, verify):
    _post(app, ctx, lambda w: [_fund(w, 100, "seed")])
    before = _counts(app)

    def lopsided(wallet):
        return [_fund(wallet, 50, "ok"), Posting("capture", "bad", "fp", wallet.currency, [
            wallet_leg(wallet, "held", -10), system_leg(SETTLEMENT, wallet.currency, 9)], {})]
    with pytest.raises(AssertionError, match="unbalanced"):
        _post(app, ctx, lopsided)
    assert _counts(app) == before
    assert verify()["ok"]


def test_a_key_posted_again_answers_the_first_result_and_moves_nothing(app, run, ctx, verify):
    [first], _ = _post(app, ctx, lambda w: [_fund(w, 100, "k", fp="body-1")])
    before = _counts(app)
    [again], postings = _post(app, ctx, lambda w: [_fund(w, 100, "k", fp="body-1")])
    assert again == dict(first, replayed=True)
    assert postings[0].after == {}
    assert _counts(app) == before
    with pytest.raises(Conflict):  # the key with another body
        _post(app, ctx, lambda w: [_fund(w, 100, "k", fp="body-2")])
    assert run(accounts.get_main_wallet, ctx).available == 100
    # all or nothing: the new posting's journal goes again, nothing answers
    assert _post(app, ctx, lambda w: [_fund(w, 5, "new"), _fund(w, 100, "k", fp="body-1")],
                 all_or_nothing=True)[0] is None
    assert _counts(app) == before
    assert verify()["ok"]


def test_in_one_batch_a_used_key_replays_and_a_key_twice_is_written_once(app, run, ctx, verify):
    """Many postings' journals go in one statement; the ones whose key was used answer the
    first result and move nothing, the others post. Two postings of one batch with one key:
    the first posts, the second is its replay."""
    [first], _ = _post(app, ctx, lambda w: [_fund(w, 100, "k")])
    answers, _ = _post(app, ctx, lambda w: [_fund(w, 5, "a"), _fund(w, 100, "k"), _fund(w, 7, "b")])
    assert [a["replayed"] for a in answers] == [False, True, False]
    assert answers[1] == dict(first, replayed=True)
    assert run(accounts.get_main_wallet, ctx).available == 112
    answers, _ = _post(app, ctx, lambda w: [_fund(w, 3, "twice"), _fund(w, 3, "twice")])
    assert [a["replayed"] for a in answers] == [False, True]
    assert answers[1]["journal_id"] == answers[0]["journal_id"]
    assert run(accounts.get_main_wallet, ctx).available == 115
    assert verify()["ok"]


def test_a_guarded_move_short_of_funds_writes_nothing(app, run, ctx, verify):
    _post(app, ctx, lambda w: [_fund(w, 100, "seed")])
    before = _counts(app)
    answers, _ = _post(app, ctx, lambda w: [_spend(w, 60, "a"), _spend(w, 60, "b")], guarded=True)
    assert answers is None
    assert _counts(app) == before
    assert run(accounts.get_main_wallet, ctx).available == 100
    answers, _ = _post(app, ctx, lambda w: [_spend(w, 60, "a"), _spend(w, 40, "b")], guarded=True)
    assert [a["replayed"] for a in answers] == [False, False]
    assert run(accounts.get_main_wallet, ctx).available == 0
    assert verify()["ok"]


def test_then_sees_the_written_postings_before_the_wallet_moves(app, ctx, verify):
    _post(app, ctx, lambda w: [_fund(w, 100, "seed")])
    seen = []

    def then(written):
        uow = seen_uow[0]
        seen.append(([p.key for p in written], accounts.read_wallet(ctx, uow, written[0].legs[0].wallet.id).available))

    seen_uow = []
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        seen_uow.append(uow)
        wallet = accounts.read_wallet(ctx, uow, None)
        post(ctx, uow, [_spend(wallet, 10, "s"), _spend(wallet, 20, "x")], then=then)
        post(ctx, uow, [_fund(wallet, 100, "seed")], then=then)  # a replay only: no then
        uow.commit()
    assert seen == [(["s", "x"], 100)]
    assert verify()["ok"]


# -- the statements of the hold path ----------------------------------------------------------
WALLET_TABLES = re.compile(r"\b(wallets|wallet_journals|wallet_holds|wallet_entries)\b")


def _wallet_statements(app, fn):
    """The statements ``fn(uow)`` sends to the wallet tables, as ``VERB table`` (``*`` for an
    executemany), in one committed unit of work."""
    engine, sent = app.extensions["rop"].db.engine, []

    def seen(conn, cursor, statement, parameters, context, executemany):
        table = WALLET_TABLES.search(statement)
        if table:
            sent.append(f"{statement.split()[0].upper()} {table.group(1)}{'*' if executemany else ''}")
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        event.listen(engine, "before_cursor_execute", seen)
        try:
            result = fn(uow)
            uow.commit()
        finally:
            event.remove(engine, "before_cursor_execute", seen)
    return sent, result


def test_a_hold_a_capture_and_a_batch_of_holds_send_one_statement_per_step(app, run, ctx, verify):
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 10_000, "seed")

    def planned_hold(uow):
        plan = holds.plan_hold(ctx, uow, main.id, 100)
        return holds.place_hold(ctx, uow, main.id, 100, "h1", plan=plan)
    sent, hold = _wallet_statements(app, planned_hold)
    assert sent == ["SELECT wallets", "SELECT wallet_journals", "INSERT wallet_journals", "INSERT wallet_holds",
                    "UPDATE wallets", "INSERT wallet_entries*"]

    sent, _ = _wallet_statements(app, lambda uow: holds.capture_hold(ctx, uow, hold.id, key="c1"))
    assert sent == ["SELECT wallet_holds", "SELECT wallets", "SELECT wallet_journals", "INSERT wallet_journals",
                    "UPDATE wallet_holds", "UPDATE wallets", "INSERT wallet_entries*"]

    def batch(uow):
        plans = [holds.plan_hold(ctx, uow, main.id, 10, reuse_read=True) for _ in range(10)]
        return holds.place_holds(ctx, uow, [(plan, f"b{n}", None) for n, plan in enumerate(plans)])
    sent, placed = _wallet_statements(app, batch)
    assert len(placed) == 10
    # the ten journals in one INSERT (… RETURNING which were written: SQLAlchemy's many-row form)
    assert sent == ["SELECT wallets", "SELECT wallet_journals", "INSERT wallet_journals*",
                    "INSERT wallet_holds*", "UPDATE wallets", "INSERT wallet_entries*"]
    wallet = run(accounts.get_wallet, ctx, main.id)
    assert (wallet.available, wallet.held) == (10_000 - 200, 100)
    assert verify()["ok"]


def test_the_key_look_up_is_ledger_replay(app, run, ctx):
    """The look-up every use-case makes before posting is the one :func:`post` answers a key
    taken meanwhile with (tests/wallets/test_key_race.py replaces it)."""
    main = run(accounts.get_main_wallet, ctx)
    run(accounts.topup, ctx, main.id, 100, "k")
    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        found = ledger.replay(ctx, uow, "topup", "k", ledger.fingerprint({"wallet_id": main.id, "amount": 100}))
        assert found["replayed"] is True and found["amount"] == 100
        assert ledger.replay(ctx, uow, "topup", "unused", "x") is None
        with pytest.raises(Conflict):
            ledger.replay(ctx, uow, "topup", "k", "another body")
