"""Wallets and their money that is not a hold: creation, reads, top-ups, adjustments,
transfers, statements (docs/wallets.md).

Top-ups, transfers and adjustments lock their wallet row(s) first and then post:

1. validate the amount (a positive integer, else 422);
2. lock the wallet row(s) (:func:`lock_wallets`: ``SELECT … FOR UPDATE``, several in id
   order; on SQLite the transaction already holds the write lock);
3. look up the idempotency key (:func:`hub.wallets.ledger.replay`): same key and same body →
   the first result, same key and another body → 409;
4. check the amount against the tenant's limit for the kind and a credit against the
   largest balance the ledger stores (422, :mod:`hub.wallets.limits`); ask the plugins for
   a veto (debits), check ``available - amount >= -overdraft_limit`` (else 402);
5. :func:`hub.wallets.ledger.post` the journal, its entries and the balances; publish the
   events, write the audit entry.

Nothing commits here: the caller commits the unit of work once.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError

from hub.context import CallContext
from hub.db import DriverStatement, UnitOfWork
from hub.errors import Conflict, NotFound, ValidationFailed
from hub.scoping import get_owned, tenant_select
from hub.wallets import ledger
from hub.wallets.ledger import (
    ADJUSTMENTS,
    DEFAULT_CURRENCY,
    FUNDING,
    Posting,
    WalletSnapshot,
    check_amount,
    check_key,
    emit,
    ensure_funds,
    fingerprint,
    movement,
    post,
    system_leg,
    veto_debit,
    wallet_leg,
)
from hub.wallets.limits import MAX_BALANCE, check_balance
from hub.wallets.limits import check_amount as check_limit
from hub.wallets.models import Entry, Journal, Wallet


# -- reading and locking wallet rows ----------------------------------------------------------
def lock_wallets(ctx: CallContext, uow: UnitOfWork, *wallet_ids: str) -> dict[str, Wallet]:
    """Lock the wallets (in id order, so two transfers never deadlock); 404 for another tenant's."""
    ids = sorted(set(wallet_ids))
    rows = uow.session.scalars(tenant_select(ctx, Wallet).where(Wallet.id.in_(ids))
                               .order_by(Wallet.id).with_for_update().execution_options(populate_existing=True)).all()
    found = {w.id: w for w in rows}
    for wid in ids:
        if wid not in found:
            raise NotFound(f"wallet {wid!r} not found")
    return found


_WALLETS = Wallet.__table__
_READ_WALLET = select(_WALLETS.c.id, _WALLETS.c.currency, _WALLETS.c.available, _WALLETS.c.held,
                      _WALLETS.c.overdraft_limit).where(_WALLETS.c.tenant_id == bindparam("tenant_id"))
_READ_WALLET_BY_ID = DriverStatement(_READ_WALLET.where(_WALLETS.c.id == bindparam("wallet_id")))
_READ_MAIN_WALLET = DriverStatement(_READ_WALLET.where(_WALLETS.c.main_of == bindparam("tenant_id")))


def read_wallet(ctx: CallContext, uow: UnitOfWork, wallet_id: str | None) -> WalletSnapshot:
    """One wallet's row (the tenant's main wallet when ``wallet_id`` is None), without a lock;
    404 for another tenant's. The session is flushed first, so its pending changes count."""
    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    uow.session.flush()
    conn = uow.session.connection()
    if wallet_id is None:
        row = _READ_MAIN_WALLET.first(conn, {"tenant_id": ctx.tenant_id})
        if row is None:  # first use: create it (race-safe), then read it
            wallet_id = get_main_wallet(ctx, uow).id
            uow.session.flush()
    if wallet_id is not None:
        row = _READ_WALLET_BY_ID.first(conn, {"tenant_id": ctx.tenant_id, "wallet_id": wallet_id})
    if row is None:
        raise NotFound(f"wallet {wallet_id!r} not found")
    return WalletSnapshot(*row)


# -- wallets ----------------------------------------------------------------------------------
def _check_currency(currency: str) -> str:
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha() or not currency.isupper():
        raise ValidationFailed("currency must be an ISO 4217 code such as IDR", errors={"currency": ["invalid"]})
    return currency


def get_main_wallet(ctx: CallContext, uow: UnitOfWork, currency: str = DEFAULT_CURRENCY) -> Wallet:
    """The tenant's main wallet, created on first access (the seam with tenancy: lazy creation).

    Safe under concurrency: a unique constraint allows one main wallet per tenant; a lost
    race re-reads the winner's row.
    """
    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    stmt = select(Wallet).where(Wallet.main_of == ctx.tenant_id)
    wallet = uow.session.scalars(stmt).first()
    if wallet is not None:
        return wallet
    wallet = Wallet(tenant_id=ctx.tenant_id, main_of=ctx.tenant_id, owner_ref=None,
                    currency=_check_currency(currency), available=0, held=0, overdraft_limit=0)
    try:
        with uow.session.begin_nested():
            uow.session.add(wallet)
            uow.session.flush()
    except IntegrityError:
        wallet = uow.session.scalars(stmt).one()
    return wallet


create_main_wallet = get_main_wallet


def create_wallet(ctx: CallContext, uow: UnitOfWork, owner_ref: str, currency: str = DEFAULT_CURRENCY,
                  overdraft_limit: int = 0) -> Wallet:
    """A sub-wallet for ``owner_ref`` (one of the tenant's own customers); 409 if it exists."""
    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    if not isinstance(owner_ref, str) or not owner_ref.strip() or len(owner_ref) > 255:
        raise ValidationFailed("owner_ref must be 1-255 characters", errors={"owner_ref": ["invalid"]})
    if not isinstance(overdraft_limit, int) or not 0 <= overdraft_limit <= MAX_BALANCE:
        raise ValidationFailed("overdraft_limit must be a non-negative integer",
                               errors={"overdraft_limit": ["invalid"]})
    get_main_wallet(ctx, uow)  # every tenant with wallets has its main wallet
    exists = uow.session.scalars(tenant_select(ctx, Wallet).where(Wallet.owner_ref == owner_ref)).first()
    if exists is not None:
        raise Conflict(f"a wallet for owner_ref {owner_ref!r} already exists", wallet_id=exists.id)
    wallet = Wallet(tenant_id=ctx.tenant_id, owner_ref=owner_ref, currency=_check_currency(currency),
                    available=0, held=0, overdraft_limit=overdraft_limit)
    try:
        with uow.session.begin_nested():
            uow.session.add(wallet)
            uow.session.flush()
    except IntegrityError:
        raise Conflict(f"a wallet for owner_ref {owner_ref!r} already exists") from None
    return wallet


def set_overdraft_limit(ctx: CallContext, uow: UnitOfWork, wallet_id: str, limit: int) -> Wallet:
    """Let ``wallet_id``'s available balance go down to ``-limit`` (0: no overdraft)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_BALANCE:
        raise ValidationFailed("limit must be a non-negative integer", errors={"limit": ["invalid"]})
    wallet = lock_wallets(ctx, uow, wallet_id)[wallet_id]
    wallet.overdraft_limit = limit
    return wallet


def get_wallet(ctx: CallContext, uow: UnitOfWork, wallet_id: str) -> Wallet:
    """One of the caller's tenant's wallets (404 for another tenant's)."""
    return get_owned(uow.session, ctx, Wallet, wallet_id)


def list_wallets(ctx: CallContext, uow: UnitOfWork, *, cursor: str | None = None, limit: int = 50,
                 ensure_main: bool = True) -> tuple[list[Wallet], str | None]:
    """The tenant's wallets (main first, then by id), cursor-paginated.

    :param ensure_main: create the tenant's main wallet when it has none (the API's lazy
        creation); False for a pure read (the admin's wallets page: a GET writes nothing).
    """
    if ensure_main:
        get_main_wallet(ctx, uow)
    stmt = tenant_select(ctx, Wallet).order_by(Wallet.id)
    if cursor:
        stmt = stmt.where(Wallet.id > cursor)
    rows = list(uow.session.scalars(stmt.limit(limit + 1)))
    next_cursor = rows[limit - 1].id if len(rows) > limit else None
    return rows[:limit], next_cursor


def operator_wallets(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str | None = None, q: str | None = None,
                     sort: str = "created", page: int = 1, per_page: int = 50) -> dict[str, Any]:
    """Operator (scope ``*``): one page of the wallets of one tenant or of all, with the total.

    :param q: a wallet id (exact) or an owner reference prefix.
    :param sort: ``created``, ``available``, ``held`` or ``currency`` (``-`` first: descending).
    :return: ``{"rows" (Wallet), "total", "estimated", "page", "pages", "per_page", "sort"}``.
    """
    from sqlalchemy import or_

    from hub.paging import matching, sorted_page

    ctx.require_scope("*")
    conditions = matching(Wallet, tenant_id=tenant_id)
    q = (q or "").strip()
    if q:
        conditions.append(or_(Wallet.id == q, Wallet.owner_ref.startswith(q, autoescape=True)))
    columns = {"created": Wallet.created_at, "available": Wallet.available, "held": Wallet.held,
               "currency": Wallet.currency}
    return sorted_page(uow, Wallet, conditions, columns=columns, sort=sort, default="created", page=page,
                       per_page=per_page)


# -- money in and out ------------------------------------------------------------------------
def _within_limits(ctx: CallContext, uow: UnitOfWork, kind: str, wallet: Wallet, amount: int) -> None:
    """422 when ``amount`` is above the tenant's limit for ``kind`` (hub.wallets.limits) or a
    credit would take ``wallet``'s balance above what the ledger stores."""
    check_limit(uow, ctx.tenant_id, kind, amount, wallet.currency)
    if amount > 0:
        check_balance(wallet.id, wallet.available, amount, wallet.currency)


def topup(ctx: CallContext, uow: UnitOfWork, wallet_id: str | None, amount: int, ref_id: str, *,
          reason: str | None = None) -> dict[str, Any]:
    """Record money the platform received for the tenant (a bank transfer): credit
    ``wallet_id`` (the main wallet when None) from the tenant's funding account.

    Only the platform may: the operator (the admin UI and the CLI, whose contexts hold
    ``*`` and give a ``reason``) or a platform client acting for the tenant (scope
    ``wallets:topup``, which no tenant's client can hold). Each new top-up is written to the
    audit log in the same transaction, with the caller (the operator, or the platform
    client's id), the tenant, the amount and the reason. Idempotent by ``ref_id``.

    :return: ``{journal_id, kind, wallet_id, amount, currency, ref_id, replayed}``.
    :raise Forbidden: the caller lacks ``wallets:topup``.
    :raise ValidationFailed: a bad amount, key or reason.
    """
    ctx.require_scope("wallets:topup")
    amount, ref_id = check_amount(amount), check_key(ref_id)
    if reason is not None:
        reason = reason.strip() if isinstance(reason, str) else ""
        if not reason or len(reason) > 500:
            raise ValidationFailed("a top-up's reason has 1-500 characters", errors={"reason": ["1-500 characters"]})
    if wallet_id is None:
        wallet_id = get_main_wallet(ctx, uow).id
    wallet = lock_wallets(ctx, uow, wallet_id)[wallet_id]
    fp = fingerprint({"wallet_id": wallet_id, "amount": amount})
    replay = ledger.replay(ctx, uow, "topup", ref_id, fp)
    if replay is not None:
        return replay
    _within_limits(ctx, uow, "topup", wallet, amount)
    [result] = post(ctx, uow, [Posting(
        "topup", ref_id, fp, wallet.currency,
        [system_leg(FUNDING, wallet.currency, -amount), wallet_leg(wallet, "available", amount)],
        {"kind": "topup", "wallet_id": wallet.id, "amount": amount, "currency": wallet.currency, "ref_id": ref_id},
        meta={"reason": reason, "actor": ctx.actor or ctx.client_id})])
    if not result["replayed"]:
        from hub.tenancy.service import record_audit
        from hub.wallets.messages import WalletCredited

        emit(ctx, uow, WalletCredited(**movement(wallet, result["journal_id"], "topup", amount)))
        record_audit(ctx, uow, "wallet.topped_up", target_type="wallet", target_id=wallet.id,
                     before={"available": wallet.available - amount},
                     after={"available": wallet.available, "amount": amount, "currency": wallet.currency,
                            "journal_id": result["journal_id"], "ref_id": ref_id, "reason": reason})
    return result


def adjust(ctx: CallContext, uow: UnitOfWork, wallet_id: str, amount: int, reason: str, key: str) -> dict[str, Any]:
    """Correct a wallet by a posting against the adjustments account (never by editing a balance).

    A positive ``amount`` credits the wallet, a negative one debits it (within its overdraft
    limit, and subject to the ``before_wallet_debit`` veto). Idempotent by ``key``; the
    ``reason`` is kept on the journal and in the audit log (written here, in the same
    transaction), with the actor of ``ctx``.

    :return: ``{journal_id, kind, wallet_id, amount, currency, reason, ref_id, replayed}``.
    :raise ValidationFailed: a zero or non-integer amount, an empty reason.
    :raise InsufficientFunds: a debit below the overdraft limit.
    :raise Conflict: ``key`` was used for another adjustment.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
        raise ValidationFailed("amount must be a non-zero integer (minor units; negative debits)",
                               errors={"amount": ["must be a non-zero integer"]})
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > 500:
        raise ValidationFailed("an adjustment needs a reason (1-500 characters)", errors={"reason": ["required"]})
    key = check_key(key)
    wallet = lock_wallets(ctx, uow, wallet_id)[wallet_id]
    fp = fingerprint({"wallet_id": wallet_id, "amount": amount, "reason": reason})
    replay = ledger.replay(ctx, uow, "adjustment", key, fp)
    if replay is not None:
        return replay
    _within_limits(ctx, uow, "adjustment", wallet, amount)
    if amount < 0:
        veto_debit(ctx, wallet.id, wallet.currency, -amount, f"adjustment:{key}")
        ensure_funds(wallet, -amount)
    [result] = post(ctx, uow, [Posting(
        "adjustment", key, fp, wallet.currency,
        [system_leg(ADJUSTMENTS, wallet.currency, -amount), wallet_leg(wallet, "available", amount)],
        {"kind": "adjustment", "wallet_id": wallet.id, "amount": amount, "currency": wallet.currency,
         "reason": reason, "ref_id": key},
        meta={"reason": reason, "actor": ctx.actor})])
    if not result["replayed"]:
        from hub.tenancy.service import record_audit
        from hub.wallets.messages import WalletCredited, WalletDebited

        event = WalletCredited if amount > 0 else WalletDebited
        emit(ctx, uow, event(**movement(wallet, result["journal_id"], "adjustment", abs(amount))))
        record_audit(ctx, uow, "wallet.adjusted", target_type="wallet", target_id=wallet.id,
                     before={"available": wallet.available - amount},
                     after={"available": wallet.available, "amount": amount, "currency": wallet.currency,
                            "journal_id": result["journal_id"], "reason": reason, "key": key})
    return result


def transfer(ctx: CallContext, uow: UnitOfWork, from_wallet_id: str, to_wallet_id: str, amount: int,
             ref_id: str) -> dict[str, Any]:
    """Move ``amount`` between two of the tenant's wallets (same currency).

    :raise InsufficientFunds: 402 when the source would go below its overdraft limit.
    """
    amount, ref_id = check_amount(amount), check_key(ref_id)
    if from_wallet_id == to_wallet_id:
        raise ValidationFailed("a transfer needs two different wallets",
                               errors={"to_wallet_id": ["same as from_wallet_id"]})
    wallets = lock_wallets(ctx, uow, from_wallet_id, to_wallet_id)
    source, target = wallets[from_wallet_id], wallets[to_wallet_id]
    fp = fingerprint({"from": from_wallet_id, "to": to_wallet_id, "amount": amount})
    replay = ledger.replay(ctx, uow, "transfer", ref_id, fp)
    if replay is not None:
        return replay
    if source.currency != target.currency:
        raise ValidationFailed("both wallets must have the same currency", errors={"to_wallet_id": ["currency"]})
    _within_limits(ctx, uow, "transfer", target, amount)
    veto_debit(ctx, source.id, source.currency, amount, f"transfer:{ref_id}")
    ensure_funds(source, amount)
    [result] = post(ctx, uow, [Posting(
        "transfer", ref_id, fp, source.currency,
        [wallet_leg(source, "available", -amount), wallet_leg(target, "available", amount)],
        {"kind": "transfer", "from_wallet_id": source.id, "to_wallet_id": target.id, "amount": amount,
         "currency": source.currency, "ref_id": ref_id})])
    if not result["replayed"]:
        from hub.wallets.messages import WalletCredited, WalletDebited

        emit(ctx, uow, WalletDebited(**movement(source, result["journal_id"], "transfer", amount)))
        emit(ctx, uow, WalletCredited(**movement(target, result["journal_id"], "transfer", amount)))
    return result


# -- statements ------------------------------------------------------------------------------
def statement(ctx: CallContext, uow: UnitOfWork, wallet_id: str, *, cursor: int | None = None,
              limit: int = 50) -> tuple[list[dict[str, Any]], int | None]:
    """The wallet's entries, oldest first, each with the account's running balance after it."""
    get_wallet(ctx, uow, wallet_id)
    stmt = (select(Entry, Journal.kind, Journal.idem_key).join(Journal, Journal.id == Entry.journal_id)
            .where(Entry.tenant_id == ctx.tenant_id, Entry.wallet_id == wallet_id).order_by(Entry.seq))
    if cursor is not None:
        stmt = stmt.where(Entry.seq > cursor)
    rows = uow.session.execute(stmt.limit(limit + 1)).all()
    items = [_entry_item(e, kind, key) for e, kind, key in rows[:limit]]
    next_cursor = items[-1]["id"] if len(rows) > limit else None
    return items, next_cursor


def _entry_item(e: Entry, kind: str, key: str | None) -> dict[str, Any]:
    return {"id": e.seq, "journal_id": e.journal_id, "kind": kind, "ref": key,
            "account": e.account.rsplit(":", 1)[1], "amount": e.amount, "currency": e.currency,
            "balance_after": e.balance_after, "created_at": e.created_at}


def statement_page(ctx: CallContext, uow: UnitOfWork, wallet_id: str, *, page: int = 1,
                   per_page: int = 50) -> dict[str, Any]:
    """The wallet's entries newest first, one page of them, each with its journal's reason and
    actor where the posting has them (top-ups, adjustments), and the number of entries.

    :return: ``{"items", "total", "page", "pages", "per_page"}``.
    :raise ValidationFailed: a page below 1.
    """
    get_wallet(ctx, uow, wallet_id)
    if not isinstance(page, int) or page < 1:
        raise ValidationFailed("page must be a whole number from 1", errors={"page": ["invalid"]})
    per_page = max(1, min(int(per_page), 500))
    where = (Entry.tenant_id == ctx.tenant_id, Entry.wallet_id == wallet_id)
    total = uow.session.scalar(select(func.count()).select_from(Entry).where(*where))
    rows = uow.session.execute(
        select(Entry, Journal.kind, Journal.idem_key, Journal.meta).join(Journal, Journal.id == Entry.journal_id)
        .where(*where).order_by(Entry.seq.desc()).offset((page - 1) * per_page).limit(per_page)).all()
    items = [dict(_entry_item(e, kind, key), reason=(meta or {}).get("reason"), actor=(meta or {}).get("actor"))
             for e, kind, key, meta in rows]
    return {"items": items, "total": total, "page": page, "pages": max(1, -(-total // per_page)),
            "per_page": per_page}
