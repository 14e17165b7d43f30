"""Holds: placed for every purchase, captured, voided or reversed for every outcome, one
by one or many at once; each one a :func:`hub.wallets.ledger.post` that locks its wallet row
*last* (docs/wallets.md, "The hold path"). Nothing commits here: the caller commits.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import make_transient_to_detached

from hub.context import CallContext
from hub.db import DriverStatement, UnitOfWork, new_id, utcnow
from hub.errors import Conflict, InsufficientFunds, NotFound, ValidationFailed
from hub.scoping import get_owned, tenant_select
from hub.wallets import ledger
from hub.wallets.accounts import read_wallet
from hub.wallets.ledger import (
    SETTLEMENT,
    Posting,
    WalletSnapshot,
    check_amount,
    check_key,
    delete_holds,
    emit,
    ensure_funds,
    fingerprint,
    keys_used,
    movement,
    post,
    system_leg,
    veto_debit,
    wallet_leg,
)
from hub.wallets.limits import check_balance
from hub.wallets.models import Hold

_INSERT_HOLD = DriverStatement(insert(Hold.__table__))


@dataclass(frozen=True)
class HoldPlan:
    """A hold checked but not yet placed (:func:`plan_hold`): its wallet as read then, and
    the hold's id, so that a caller can write its own rows first and lock the wallet last."""

    wallet: WalletSnapshot
    amount: int
    hold_id: str

    @property
    def wallet_id(self) -> str:
        return self.wallet.id

    @property
    def currency(self) -> str:
        return self.wallet.currency


def _hold_payload(hold: Hold) -> dict:
    return {"hold_id": hold.id, "wallet_id": hold.wallet_id, "amount": hold.amount, "captured": hold.captured,
            "currency": hold.currency, "status": hold.status, "reference": hold.reference}


def _hold_fingerprint(wallet_id: str | None, amount: int, reference: str | None,
                      expires_at: dt.datetime | None) -> str:
    return fingerprint({"wallet_id": wallet_id, "amount": amount, "reference": reference,
                        "expires_at": expires_at.isoformat() if expires_at else None})


def _reservation(plan: HoldPlan, key: str, fp: str) -> Posting:
    """A hold's posting: available → held."""
    wallet = plan.wallet
    return Posting("hold", key, fp, wallet.currency,
                   [wallet_leg(wallet, "available", -plan.amount), wallet_leg(wallet, "held", plan.amount)],
                   {"kind": "hold", "hold_id": plan.hold_id, "wallet_id": wallet.id, "amount": plan.amount},
                   meta={"hold_id": plan.hold_id})


def _hold_row(ctx: CallContext, plan: HoldPlan, reference: str | None, expires_at: dt.datetime | None,
              now: dt.datetime) -> dict[str, Any]:
    return {"id": plan.hold_id, "tenant_id": ctx.tenant_id, "wallet_id": plan.wallet_id, "amount": plan.amount,
            "captured": 0, "reversed": 0, "currency": plan.currency, "status": "placed", "expires_at": expires_at,
            "reference": reference, "created_at": now, "updated_at": now}


def _detached(row: dict[str, Any]) -> Hold:
    hold = Hold(**row)
    make_transient_to_detached(hold)
    return hold


def plan_hold(ctx: CallContext, uow: UnitOfWork, wallet_id: str | None, amount: int,
              reference: str | None = None, key: str | None = None, *, reuse_read: bool = False,
              currency: str | None = None) -> HoldPlan:
    """Check a hold of ``amount`` on ``wallet_id`` (the main wallet when None) without writing
    or locking anything: the wallet exists and is the tenant's (404), holds ``currency`` when
    one is given (422 naming both, before anything judges the amount), no plugin vetoes the
    debit (403), and its funds cover it now (402). :func:`place_hold` with this plan does
    the rest; its funds check under the lock is the one that counts.

    ``reuse_read``: the wallet as an earlier ``reuse_read`` plan of this unit of work read it
    (no flush, no query): for many plans whose holds are all placed at the commit (a bulk
    group), where the balance read first is the one every later read would see too."""
    amount = check_amount(amount)
    if reuse_read:
        memo_key = ("wallets.plan_read", ctx.tenant_id, wallet_id)
        wallet = uow.memo.get(memo_key)
        if wallet is None:
            wallet = uow.memo[memo_key] = read_wallet(ctx, uow, wallet_id)
    else:
        wallet = read_wallet(ctx, uow, wallet_id)
    if currency is not None and wallet.currency != currency:
        why = f"the wallet holds {wallet.currency}, the product costs {currency}"
        raise ValidationFailed(why, errors={"wallet_id": [why]})
    veto_debit(ctx, wallet.id, wallet.currency, amount, f"hold:{reference or key}")
    ensure_funds(wallet, amount)
    return HoldPlan(wallet=wallet, amount=amount, hold_id=new_id("hld"))


def place_hold(ctx: CallContext, uow: UnitOfWork, wallet_id: str | None, amount: int, key: str,
               expires_at: dt.datetime | None = None, reference: str | None = None, *,
               plan: HoldPlan | None = None) -> Hold:
    """Reserve ``amount`` of ``wallet_id`` (the main wallet when None): available → held.
    Idempotent by ``key``.

    The hot path of every purchase: Core statements only, the wallet row locked last (the
    lock is held until the caller commits, and every other hold on the wallet queues on it):

    1. read the wallet (404; from ``plan`` when given, see :func:`plan_hold`), look up the
       key (a replay answers at once; another body is 409);
    2. ask the plugins, check the funds (403, 402 with nothing written; done by the plan);
    3. post, guarded: the journal (a concurrent attempt with the same key that got there
       first answers), the hold row, the balances by one conditional ``UPDATE …
       RETURNING`` — when a concurrent hold took the funds since step 2 it matches
       nothing, the journal and hold rows are deleted again and it is 402 — the entries;
    4. publish the event.

    :return: the hold: a new hold as a detached :class:`Hold` (its row as inserted; read
        it, do not change it — use :func:`get_hold` for a session's copy); a replayed key's
        hold as the session's row.
    :raise InsufficientFunds: 402 when available (plus overdraft) does not cover it.
    """
    amount, key = check_amount(amount), check_key(key)
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValidationFailed("expires_at must be timezone-aware", errors={"expires_at": ["naive"]})
    if plan is not None and (plan.amount != amount or wallet_id not in (None, plan.wallet_id)):
        raise AssertionError(f"a hold plan for {plan.amount} on {plan.wallet_id} used for {amount} on {wallet_id}")
    wallet = plan.wallet if plan is not None else read_wallet(ctx, uow, wallet_id)
    fp = _hold_fingerprint(wallet.id, amount, reference, expires_at)
    replay = ledger.replay(ctx, uow, "hold", key, fp)
    if replay is not None:
        return get_owned(uow.session, ctx, Hold, replay["hold_id"])
    if plan is None:
        veto_debit(ctx, wallet.id, wallet.currency, amount, f"hold:{reference or key}")
        ensure_funds(wallet, amount)
        plan = HoldPlan(wallet=wallet, amount=amount, hold_id=new_id("hld"))
    conn = uow.session.connection()
    row = _hold_row(ctx, plan, reference, expires_at, utcnow())
    answers = post(ctx, uow, [_reservation(plan, key, fp)], guarded=True,
                   then=lambda _written: _INSERT_HOLD.run(conn, row))
    if answers is None:  # a concurrent debit took the funds since they were checked
        delete_holds(conn, [plan.hold_id])
        now_available = read_wallet(ctx, uow, wallet.id).available
        raise InsufficientFunds(f"wallet {wallet.id} has {now_available} {wallet.currency} available, "
                                f"{amount} needed", available=now_available, needed=amount)
    if answers[0]["replayed"]:  # a concurrent first attempt with this key committed meanwhile
        return get_owned(uow.session, ctx, Hold, answers[0]["hold_id"])
    hold = _detached(row)
    from hub.wallets.messages import HoldPlaced

    emit(ctx, uow, HoldPlaced.built(**_hold_payload(hold)))
    return hold


def place_holds(ctx: CallContext, uow: UnitOfWork, holds: list[tuple[HoldPlan, str, str | None]]) -> list[Hold] | None:
    """:func:`place_hold` of several planned holds on one wallet at once, or None.

    ``holds``: ``(plan, key, reference)`` triples (no expiry). Each hold is its own posting,
    as if :func:`place_hold` had placed them one after the other in this order — its journal
    (idempotent by its key), its row, its two entries with the balances after it, its
    ``wallet.hold_placed`` event — but the keys are looked up by one statement, the hold rows
    go in one batch, the funds of all of them are taken by one conditional ``UPDATE …
    RETURNING`` (which locks the wallet row until the commit) and the entries go in one batch.

    :return: the holds (detached, as :func:`place_hold` returns new ones); None when they
        cannot all be placed together — the plans are on several wallets, a key was used
        before, or the funds do not cover all of them: nothing was written, and placing them
        one by one gives each its own answer (its replay, its 402).
    """
    if not holds or len({plan.wallet_id for plan, _, _ in holds}) != 1:
        return None
    keys = [check_key(key) for _, key, _ in holds]
    if keys_used(ctx, uow, "hold", keys):
        return None
    conn, now = uow.session.connection(), utcnow()
    rows = [_hold_row(ctx, plan, reference, None, now) for plan, _key, reference in holds]
    postings = [_reservation(plan, key, _hold_fingerprint(plan.wallet_id, plan.amount, reference, None))
                for plan, key, reference in holds]
    inserted: list[int] = []

    def insert_rows(_written: list[Posting]) -> None:
        inserted.append(_INSERT_HOLD.run(conn, rows))

    if post(ctx, uow, postings, guarded=True, all_or_nothing=True, then=insert_rows) is None:
        if inserted:  # the funds do not cover them all (a key taken meanwhile is refused before)
            delete_holds(conn, [row["id"] for row in rows])
        return None
    placed = [_detached(row) for row in rows]
    from hub.wallets.messages import HoldPlaced

    for hold in placed:
        emit(ctx, uow, HoldPlaced.built(**_hold_payload(hold)))
    return placed


def _get_hold(ctx: CallContext, uow: UnitOfWork, kind: str, hold_id: str, key: str,
              amount: int | None = None) -> tuple[Hold, WalletSnapshot, str, bool]:
    """Check the key and amount (422), lock the hold's row (every change of a hold holds it: a
    capture and a void of one hold never both happen), read its wallet without a lock (404
    for another tenant's), look up the key (409 for another body).

    :return: the hold, its wallet, the request's fingerprint, whether the key replays."""
    key = check_key(key)
    if amount is not None:
        check_amount(amount)
    hold = uow.session.scalars(tenant_select(ctx, Hold).where(Hold.id == hold_id).with_for_update()
                               .execution_options(populate_existing=True)).first()
    if hold is None:
        raise NotFound(f"hold {hold_id!r} not found")
    body = {"hold_id": hold_id} if kind == "void" else {"hold_id": hold_id, "amount": amount}
    wallet, fp = read_wallet(ctx, uow, hold.wallet_id), fingerprint(body)
    return hold, wallet, fp, ledger.replay(ctx, uow, kind, key, fp) is not None


def _not_placed(hold: Hold, status: str | None = None) -> Conflict:
    status = status or hold.status
    return Conflict(f"hold {hold.id} is {status}, not placed", hold_status=status)


def _capture(hold: Hold, wallet: WalletSnapshot, amount: int, key: str, fp: str) -> Posting:
    """A capture's posting: held → settlement, the rest of the hold back to available."""
    rest = hold.amount - amount
    legs = [wallet_leg(wallet, "held", -hold.amount), system_leg(SETTLEMENT, wallet.currency, amount)]
    if rest:
        legs.append(wallet_leg(wallet, "available", rest))
    return Posting("capture", key, fp, wallet.currency, legs,
                   {"kind": "capture", "hold_id": hold.id, "wallet_id": wallet.id, "amount": amount,
                    "released": rest}, meta={"hold_id": hold.id})


def _captured(ctx: CallContext, uow: UnitOfWork, captures: list[tuple[Hold, Posting]]) -> None:
    """Each written capture's hold state and ``wallet.hold_captured`` event, then flushed:
    the holds' own changes go before the wallet's lock."""
    from hub.wallets.messages import HoldCaptured

    for hold, posting in captures:
        if posting.answer is not None and not posting.replayed:
            hold.captured = posting.result["amount"]
            hold.status = "captured" if posting.result["released"] == 0 else "partially_captured"
            emit(ctx, uow, HoldCaptured.built(**_hold_payload(hold)))
    uow.session.flush()


def _debited(ctx: CallContext, uow: UnitOfWork, captures: list[tuple[Hold, Posting]]) -> None:
    """Each written capture's ``wallet.debited`` event, with the balances it left; a replayed
    one's hold re-read."""
    from hub.wallets.messages import WalletDebited

    for hold, posting in captures:
        if posting.replayed:
            uow.session.refresh(hold)
        else:
            emit(ctx, uow, WalletDebited.built(**movement(posting.after[hold.wallet_id], posting.journal_id, "capture",
                                                    posting.result["amount"], hold.id)))


def capture_hold(ctx: CallContext, uow: UnitOfWork, hold_id: str, amount: int | None = None, *,
                 key: str) -> Hold:
    """Settle ``amount`` of a placed hold (all of it when None): held → settlement.

    A partial capture releases the rest back to available; the hold is then final
    (``captured`` or ``partially_captured``). Idempotent by ``key``.
    """
    hold, wallet, fp, replayed = _get_hold(ctx, uow, "capture", hold_id, key, amount)
    if replayed:
        return hold
    if hold.status != "placed":
        raise _not_placed(hold)
    amount = hold.amount if amount is None else amount
    if amount > hold.amount:
        raise ValidationFailed(f"amount {amount} exceeds the hold's {hold.amount}",
                               errors={"amount": ["exceeds the hold"]})
    captures = [(hold, _capture(hold, wallet, amount, key, fp))]
    post(ctx, uow, [captures[0][1]], then=lambda _written: _captured(ctx, uow, captures))
    _debited(ctx, uow, captures)
    return hold


def capture_holds(ctx: CallContext, uow: UnitOfWork, captures: list[tuple[str, str]]) -> list[Hold]:
    """:func:`capture_hold` of all of each hold, for many holds of one tenant at once.

    ``captures``: ``(hold_id, key)`` pairs. Each capture is its own posting, as if made by
    :func:`capture_hold` one after the other in this order — its journal (idempotent by its
    key), its two entries with the balances after it, its ``hold.captured`` and
    ``wallet.debited`` events — but the holds are locked by one statement (in id order),
    the keys are looked up by one, each wallet's balances move by one ``UPDATE … RETURNING``
    (the row is locked from there to the commit) and the entries go in one batch.

    :raise NotFound: a hold that is not the tenant's. :raise Conflict: a hold that is not
        ``placed`` (and whose key was not used before), or a key used for another request.
    """
    if not captures:
        return []
    pairs = [(hold_id, check_key(key)) for hold_id, key in captures]
    ids = sorted({hold_id for hold_id, _ in pairs})
    holds = {h.id: h for h in uow.session.scalars(tenant_select(ctx, Hold).where(Hold.id.in_(ids))
                                                   .order_by(Hold.id).with_for_update()
                                                   .execution_options(populate_existing=True))}
    missing = [hold_id for hold_id in ids if hold_id not in holds]
    if missing:
        raise NotFound(f"hold {missing[0]!r} not found")
    used = keys_used(ctx, uow, "capture", [key for _, key in pairs])
    wallets: dict[str, WalletSnapshot] = {}
    todo: list[tuple[Hold, Posting]] = []  # the captures to make now, in their order
    taken: set[str] = set()
    for hold_id, key in pairs:
        hold = holds[hold_id]
        fp = fingerprint({"hold_id": hold_id, "amount": None})
        if key in used and ledger.replay(ctx, uow, "capture", key, fp) is not None:
            continue
        if hold.status != "placed":
            raise _not_placed(hold)
        if hold_id in taken:  # an earlier pair captures it
            raise _not_placed(hold, "captured")
        taken.add(hold_id)
        if hold.wallet_id not in wallets:
            wallets[hold.wallet_id] = read_wallet(ctx, uow, hold.wallet_id)
        todo.append((hold, _capture(hold, wallets[hold.wallet_id], hold.amount, key, fp)))
    if todo:
        post(ctx, uow, [posting for _, posting in todo], then=lambda _written: _captured(ctx, uow, todo))
        _debited(ctx, uow, todo)
    return [holds[hold_id] for hold_id, _ in pairs]


def void_hold(ctx: CallContext, uow: UnitOfWork, hold_id: str, *, key: str) -> Hold:
    """Release a placed hold: held → available. Idempotent by ``key``."""
    hold, wallet, fp, replayed = _get_hold(ctx, uow, "void", hold_id, key)
    if replayed:
        return hold
    if hold.status != "placed":
        raise _not_placed(hold)

    def voided(_written: list[Posting]) -> None:
        from hub.wallets.messages import HoldVoided

        hold.status = "voided"
        emit(ctx, uow, HoldVoided.built(**_hold_payload(hold)))
        uow.session.flush()  # the hold's own change goes before the wallet's lock

    posting = Posting("void", key, fp, wallet.currency,
                      [wallet_leg(wallet, "held", -hold.amount), wallet_leg(wallet, "available", hold.amount)],
                      {"kind": "void", "hold_id": hold.id, "wallet_id": wallet.id, "amount": hold.amount},
                      meta={"hold_id": hold.id})
    post(ctx, uow, [posting], then=voided)
    if posting.replayed:
        uow.session.refresh(hold)
    return hold


def reverse_capture(ctx: CallContext, uow: UnitOfWork, hold_id: str, amount: int | None = None, *,
                    key: str) -> Hold:
    """Refund (part of) a captured hold: settlement → available (a late refund).

    At most ``captured - reversed`` in total; idempotent by ``key``.
    """
    hold, wallet, fp, replayed = _get_hold(ctx, uow, "reverse", hold_id, key, amount)
    if replayed:
        return hold
    if hold.status not in ("captured", "partially_captured"):
        raise Conflict(f"hold {hold_id} is {hold.status}, not captured", hold_status=hold.status)
    left = hold.captured - hold.reversed
    amount = left if amount is None else amount
    if amount <= 0 or amount > left:
        raise ValidationFailed(f"at most {left} can still be reversed", errors={"amount": ["exceeds captured"]})

    def reversed_(_written: list[Posting]) -> None:
        check_balance(wallet.id, wallet.available, amount, wallet.currency)
        hold.reversed += amount
        uow.session.flush()  # the hold's own change goes before the wallet's lock

    posting = Posting("reverse", key, fp, wallet.currency,
                      [system_leg(SETTLEMENT, wallet.currency, -amount), wallet_leg(wallet, "available", amount)],
                      {"kind": "reverse", "hold_id": hold.id, "wallet_id": wallet.id, "amount": amount},
                      meta={"hold_id": hold.id})
    post(ctx, uow, [posting], then=reversed_)
    if posting.replayed:
        uow.session.refresh(hold)
        return hold
    from hub.wallets.messages import WalletCredited

    emit(ctx, uow, WalletCredited.built(**movement(posting.after[wallet.id], posting.journal_id, "reverse", amount,
                                             hold.id)))
    return hold


def get_hold(ctx: CallContext, uow: UnitOfWork, hold_id: str) -> Hold:
    return get_owned(uow.session, ctx, Hold, hold_id)
