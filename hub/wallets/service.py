"""Use-cases of the wallets service: the ledger, its operations and its checks.

Every operation is one journal whose entries sum to zero (see :mod:`hub.wallets.models`).

Top-ups, transfers and adjustments (:func:`_post`):

1. validate the amount (a positive integer, else 422);
2. lock the wallet row(s) (``SELECT … FOR UPDATE``, several in id order; on SQLite the
   transaction already holds the write lock);
3. look up the idempotency key: same key and same body → the first result, same key and
   another body → 409;
4. check the amount against the tenant's limit for the kind and a credit against the
   largest balance the ledger stores (422, :mod:`hub.wallets.limits`); ask the plugins for
   a veto (debits), check ``available - amount >= -overdraft_limit`` (else 402);
5. write the journal, its entries and the cached balances, publish the events.

Holds — placed for every purchase, captured, voided or reversed for every outcome — lock
their wallet row *last* instead: a wallet row lock is held until the commit, and all the
purchases and outcomes of a tenant queue on it. :func:`place_hold` checks the funds without
a lock, writes its journal and hold rows, and then moves the balances with one conditional
``UPDATE … RETURNING`` (402, and its rows deleted again, when a concurrent debit took the
funds meanwhile). Capture, void and reverse lock the hold's row (so one hold never changes
twice at once), write the journal, the hold and the events that carry no balance, and then
move the balances by their deltas (:func:`_move_last`). Entries carry the balances the
``UPDATE`` returned, so a wallet's entries still follow the order its row was locked in.

The journal is always written as ``INSERT … ON CONFLICT (tenant_id, kind, idem_key) DO
NOTHING``: when a concurrent first attempt with the same key committed between the look-up
and here, nothing is written and its stored result is re-read (a replay, or 409 for another
body) — no savepoint needed. Journals, entries and the hold path are Core statements (no
ORM unit of work).

Nothing commits here: the caller commits the unit of work once.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import make_transient_to_detached

from hub.context import CallContext
from hub.db import DriverStatement, UnitOfWork, exact_sum, new_id, utcnow
from hub.errors import Conflict, Forbidden, InsufficientFunds, NotFound, ValidationFailed
from hub.scoping import get_owned, tenant_select
from hub.wallets.limits import MAX_BALANCE, check_amount, check_balance
from hub.wallets.models import Entry, Hold, Journal, Wallet

DEFAULT_CURRENCY = "IDR"
FUNDING = "sys:funding:{}"
SETTLEMENT = "sys:settlement:{}"
#: the counter-account of an operator's manual correction (apart from funding, for the books)
ADJUSTMENTS = "sys:adjustments:{}"


# -- helpers -------------------------------------------------------------------------------
def _within_limits(ctx: CallContext, uow: UnitOfWork, kind: str, wallet: Wallet, amount: int) -> None:
    """422 when ``amount`` is above the tenant's limit for ``kind`` (hub.wallets.limits) or a
    credit would take ``wallet``'s balance above what the ledger stores."""
    check_amount(uow, ctx.tenant_id, kind, amount, wallet.currency)
    if amount > 0:
        check_balance(wallet.id, wallet.available, amount, wallet.currency)


def _check_amount(amount: Any, name: str = "amount") -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValidationFailed(f"{name} must be a positive integer (minor units)",
                               errors={name: ["must be a positive integer"]})
    return amount


def _check_key(key: Any) -> str:
    if not isinstance(key, str) or not key.strip() or len(key) > 255:
        raise ValidationFailed("an idempotency key (ref_id/key) of 1-255 characters is required",
                               errors={"ref_id": ["required, 1-255 characters"]})
    return key


def fingerprint(body: dict[str, Any]) -> str:
    """The request fingerprint stored with an idempotency key (sha256 of canonical JSON)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _account(wallet_id: str, side: str) -> str:
    return f"{wallet_id}:{side}"


def _lock_wallets(ctx: CallContext, uow: UnitOfWork, *wallet_ids: str) -> dict[str, Wallet]:
    """Lock the wallets (in id order, so two transfers never deadlock); 404 for another tenant's."""
    ids = sorted(set(wallet_ids))
    rows = uow.session.scalars(tenant_select(ctx, Wallet).where(Wallet.id.in_(ids))
                               .order_by(Wallet.id).with_for_update().execution_options(populate_existing=True)).all()
    found = {w.id: w for w in rows}
    for wid in ids:
        if wid not in found:
            raise NotFound(f"wallet {wid!r} not found")
    return found


_JOURNALS, _ENTRIES, _HOLDS, _WALLETS = (Journal.__table__, Entry.__table__, Hold.__table__,
                                         Wallet.__table__)
#: the journal insert that skips (rowcount 0) when the tenant's kind + key exists already
_INSERT_JOURNAL = {
    name: dialect.insert(_JOURNALS).on_conflict_do_nothing(index_elements=["tenant_id", "kind", "idem_key"])
    .execution_options(preserve_rowcount=True)  # SQLAlchemy keeps an INSERT's rowcount only when asked
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_INSERT_ENTRIES = insert(_ENTRIES)
# The hold path's statements, sent through the driver's cursor (hub.db.DriverStatement).
_FAST_JOURNAL = {name: DriverStatement(stmt) for name, stmt in _INSERT_JOURNAL.items()}
_FAST_ENTRIES = DriverStatement(_INSERT_ENTRIES)
_REPLAY = select(_JOURNALS.c.fingerprint, _JOURNALS.c.result).where(
    _JOURNALS.c.tenant_id == bindparam("tenant_id"), _JOURNALS.c.kind == bindparam("kind"),
    _JOURNALS.c.idem_key == bindparam("key"))
_FAST_REPLAY = DriverStatement(select(_JOURNALS.c.id).where(
    _JOURNALS.c.tenant_id == bindparam("tenant_id"), _JOURNALS.c.kind == bindparam("kind"),
    _JOURNALS.c.idem_key == bindparam("key")))


def _replay(ctx: CallContext, uow: UnitOfWork, kind: str, key: str, fp: str) -> dict[str, Any] | None:
    """The stored result of ``key`` when its body matches; Conflict when it does not.

    (Journals are only ever written by Core inserts, never pending in the session: no flush.)
    """
    params = {"tenant_id": ctx.tenant_id, "kind": kind, "key": key}
    conn = uow.session.connection()
    if _FAST_REPLAY.first(conn, params) is None:  # the usual case: a new key
        return None
    found = conn.execute(_REPLAY, params).first()
    if found is None:
        return None
    if found.fingerprint != fp:
        raise Conflict(f"the key {key!r} was already used for another {kind} request")
    return dict(found.result or {}, replayed=True)


def _veto_debit(ctx: CallContext, wallet: Wallet | _Locked, amount: int, kind: str) -> None:
    """Ask the plugins (hook ``before_wallet_debit``) whether this debit may happen.

    :raise Forbidden: when a plugin vetoes (403, with the plugin's reason).
    """
    from flask import current_app, has_app_context

    if not has_app_context():
        return
    host = current_app.extensions["rop"].extras.get("plugins")
    if host is None:
        return
    reason = host.hook.before_wallet_debit(ctx=ctx, wallet_id=wallet.id, amount=amount,
                                           currency=wallet.currency, reason=kind)
    if reason:
        raise Forbidden(f"debit refused: {reason}", slug_reason=str(reason))


def _ensure_funds(wallet: Wallet | _Locked, amount: int) -> None:
    if wallet.available - amount < -wallet.overdraft_limit:
        raise InsufficientFunds(
            f"wallet {wallet.id} has {wallet.available} {wallet.currency} available, {amount} needed",
            available=wallet.available, needed=amount)


def _emit(ctx: CallContext, uow: UnitOfWork, message) -> None:
    """The one place wallet events leave the service: the bus outbox, in this transaction."""
    from hub.bus import publish

    publish(ctx, uow, message)


@dataclass
class _Locked:
    """A wallet row's balances as read by :func:`_read_wallet_row` (no ORM object)."""

    id: str
    currency: str
    available: int
    held: int
    overdraft_limit: int


@dataclass
class _Posting:
    kind: str
    key: str | None
    fp: str | None
    currency: str
    legs: list[tuple[str, Wallet | _Locked | None, int]] = field(default_factory=list)  # (account, wallet, amount)
    meta: dict[str, Any] | None = None


def _write(ctx: CallContext, uow: UnitOfWork, posting: _Posting, result: dict[str, Any]) -> dict[str, Any] | None:
    """Write one journal and its entries and move the wallets' balances (rows already locked).

    The journal goes first and skips on its key: ``None`` when a concurrent first attempt
    with the same key committed meanwhile (then nothing was written or changed). Balances
    change on the given objects: an ORM :class:`Wallet` is flushed with the unit of work, a
    :class:`_Locked` row is the caller's to store.

    :return: the stored result (``result`` plus ``journal_id``).
    """
    if sum(a for _, _, a in posting.legs) != 0:  # never: a bug in a use-case, not a user error
        raise AssertionError(f"unbalanced journal {posting!r}")
    journal_id, now = new_id("jnl"), utcnow()
    stored = dict(result, journal_id=journal_id)
    conn = uow.session.connection()
    inserted = conn.execute(_INSERT_JOURNAL[conn.dialect.name], {
        "id": journal_id, "tenant_id": ctx.tenant_id, "kind": posting.kind, "idem_key": posting.key,
        "fingerprint": posting.fp, "result": stored, "meta": posting.meta, "created_at": now}).rowcount
    if inserted != 1:
        return None
    entries = []
    for account, wallet, amount in posting.legs:
        balance_after = None
        if wallet is not None:
            if account.endswith(":available"):
                wallet.available += amount
                balance_after = wallet.available
            else:
                wallet.held += amount
                balance_after = wallet.held
        entries.append({"tenant_id": ctx.tenant_id, "journal_id": journal_id,
                        "wallet_id": wallet.id if wallet is not None else None, "account": account,
                        "amount": amount, "currency": posting.currency, "balance_after": balance_after,
                        "created_at": now})
    conn.execute(_INSERT_ENTRIES, entries)
    return stored


def _post(ctx: CallContext, uow: UnitOfWork, posting: _Posting, result: dict[str, Any]) -> dict[str, Any]:
    stored = _write(ctx, uow, posting, result)
    if stored is None:  # a concurrent first attempt with this key committed first: answer it
        replay = _replay(ctx, uow, posting.kind, posting.key or "", posting.fp or "")
        if replay is None:  # pragma: no cover - it committed, so the look-up finds it
            raise Conflict("concurrent write conflict; retry")
        return replay
    return dict(stored, replayed=False)


_READ_WALLET = select(_WALLETS.c.id, _WALLETS.c.currency, _WALLETS.c.available, _WALLETS.c.held,
                      _WALLETS.c.overdraft_limit).where(_WALLETS.c.tenant_id == bindparam("tenant_id"))
_READ_WALLET_BY_ID = _READ_WALLET.where(_WALLETS.c.id == bindparam("wallet_id"))
_READ_MAIN_WALLET = _READ_WALLET.where(_WALLETS.c.main_of == bindparam("tenant_id"))
#: the hold's balance move, and the moment its wallet row is locked: only when the funds
#: (plus overdraft) still cover it, judged on the row's latest committed version
_RESERVE = (update(_WALLETS).where(_WALLETS.c.id == bindparam("wallet_id"),
                                   _WALLETS.c.available - bindparam("amount") >= -_WALLETS.c.overdraft_limit)
            .values(available=_WALLETS.c.available - bindparam("amount"),
                    held=_WALLETS.c.held + bindparam("amount"))
            .returning(_WALLETS.c.available, _WALLETS.c.held))
_INSERT_HOLD = DriverStatement(insert(_HOLDS))
_READ_WALLET_BY_ID, _READ_MAIN_WALLET, _RESERVE = (DriverStatement(_READ_WALLET_BY_ID),
                                                   DriverStatement(_READ_MAIN_WALLET), DriverStatement(_RESERVE))
_DELETE_HOLD = _HOLDS.delete().where(_HOLDS.c.id == bindparam("hold_id"))
_DELETE_JOURNAL = _JOURNALS.delete().where(_JOURNALS.c.id == bindparam("journal_id"))


def _read_wallet_row(ctx: CallContext, uow: UnitOfWork, wallet_id: str | None) -> _Locked:
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
    return _Locked(*row)


def _movement(wallet: Wallet, journal_id: str, kind: str, amount: int, hold_id: str | None = None) -> dict:
    return {"wallet_id": wallet.id, "journal_id": journal_id, "kind": kind, "amount": amount,
                "currency": wallet.currency, "available": wallet.available, "held": wallet.held, "hold_id": hold_id}


def _hold_payload(hold: Hold) -> dict:
    return {"hold_id": hold.id, "wallet_id": hold.wallet_id, "amount": hold.amount, "captured": hold.captured,
                "currency": hold.currency, "status": hold.status, "reference": hold.reference}


# -- wallets -------------------------------------------------------------------------------
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
    wallet = _lock_wallets(ctx, uow, wallet_id)[wallet_id]
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


# -- operations ----------------------------------------------------------------------------
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
    amount, ref_id = _check_amount(amount), _check_key(ref_id)
    if reason is not None:
        reason = reason.strip() if isinstance(reason, str) else ""
        if not reason or len(reason) > 500:
            raise ValidationFailed("a top-up's reason has 1-500 characters", errors={"reason": ["1-500 characters"]})
    if wallet_id is None:
        wallet_id = get_main_wallet(ctx, uow).id
    wallet = _lock_wallets(ctx, uow, wallet_id)[wallet_id]
    fp = fingerprint({"wallet_id": wallet_id, "amount": amount})
    replay = _replay(ctx, uow, "topup", ref_id, fp)
    if replay is not None:
        return replay
    _within_limits(ctx, uow, "topup", wallet, amount)
    posting = _Posting("topup", ref_id, fp, wallet.currency, [
        (FUNDING.format(wallet.currency), None, -amount),
        (_account(wallet.id, "available"), wallet, amount)], meta={"reason": reason, "actor": ctx.actor or ctx.client_id})
    result = _post(ctx, uow, posting, {"kind": "topup", "wallet_id": wallet.id, "amount": amount,
                                           "currency": wallet.currency, "ref_id": ref_id})
    if not result["replayed"]:
        from hub.tenancy.service import record_audit
        from hub.wallets.messages import WalletCredited

        _emit(ctx, uow, WalletCredited(**_movement(wallet, result["journal_id"], "topup", amount)))
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
    key = _check_key(key)
    wallet = _lock_wallets(ctx, uow, wallet_id)[wallet_id]
    fp = fingerprint({"wallet_id": wallet_id, "amount": amount, "reason": reason})
    replay = _replay(ctx, uow, "adjustment", key, fp)
    if replay is not None:
        return replay
    _within_limits(ctx, uow, "adjustment", wallet, amount)
    if amount < 0:
        _veto_debit(ctx, wallet, -amount, f"adjustment:{key}")
        _ensure_funds(wallet, -amount)
    posting = _Posting("adjustment", key, fp, wallet.currency, [
        (ADJUSTMENTS.format(wallet.currency), None, -amount),
        (_account(wallet.id, "available"), wallet, amount)], meta={"reason": reason, "actor": ctx.actor})
    result = _post(ctx, uow, posting, {"kind": "adjustment", "wallet_id": wallet.id, "amount": amount,
                                       "currency": wallet.currency, "reason": reason, "ref_id": key})
    if not result["replayed"]:
        from hub.tenancy.service import record_audit
        from hub.wallets.messages import WalletCredited, WalletDebited

        event = WalletCredited if amount > 0 else WalletDebited
        _emit(ctx, uow, event(**_movement(wallet, result["journal_id"], "adjustment", abs(amount))))
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
    amount, ref_id = _check_amount(amount), _check_key(ref_id)
    if from_wallet_id == to_wallet_id:
        raise ValidationFailed("a transfer needs two different wallets",
                               errors={"to_wallet_id": ["same as from_wallet_id"]})
    wallets = _lock_wallets(ctx, uow, from_wallet_id, to_wallet_id)
    source, target = wallets[from_wallet_id], wallets[to_wallet_id]
    fp = fingerprint({"from": from_wallet_id, "to": to_wallet_id, "amount": amount})
    replay = _replay(ctx, uow, "transfer", ref_id, fp)
    if replay is not None:
        return replay
    if source.currency != target.currency:
        raise ValidationFailed("both wallets must have the same currency", errors={"to_wallet_id": ["currency"]})
    _within_limits(ctx, uow, "transfer", target, amount)
    _veto_debit(ctx, source, amount, f"transfer:{ref_id}")
    _ensure_funds(source, amount)
    posting = _Posting("transfer", ref_id, fp, source.currency, [
        (_account(source.id, "available"), source, -amount),
        (_account(target.id, "available"), target, amount)])
    result = _post(ctx, uow, posting, {"kind": "transfer", "from_wallet_id": source.id, "to_wallet_id": target.id,
                                           "amount": amount, "currency": source.currency, "ref_id": ref_id})
    if not result["replayed"]:
        from hub.wallets.messages import WalletCredited, WalletDebited

        _emit(ctx, uow, WalletDebited(**_movement(source, result["journal_id"], "transfer", amount)))
        _emit(ctx, uow, WalletCredited(**_movement(target, result["journal_id"], "transfer", amount)))
    return result


def _get_hold(ctx: CallContext, uow: UnitOfWork, hold_id: str) -> tuple[Hold, _Locked]:
    """Lock the hold's row (every change of a hold holds it: a capture and a void of one hold
    never both happen) and read its wallet without a lock; 404 for another tenant's."""
    hold = uow.session.scalars(tenant_select(ctx, Hold).where(Hold.id == hold_id).with_for_update()
                               .execution_options(populate_existing=True)).first()
    if hold is None:
        raise NotFound(f"hold {hold_id!r} not found")
    return hold, _read_wallet_row(ctx, uow, hold.wallet_id)


def _journal(ctx: CallContext, uow: UnitOfWork, kind: str, key: str, fp: str, meta: dict[str, Any],
             result: dict[str, Any]) -> dict[str, Any]:
    """Insert a hold change's journal first, skipping on its key: the stored result, or the
    replay of a concurrent first attempt with the same key that committed meanwhile."""
    journal_id = new_id("jnl")
    stored = dict(result, journal_id=journal_id)
    conn = uow.session.connection()
    if _FAST_JOURNAL[conn.dialect.name].run(conn, {
            "id": journal_id, "tenant_id": ctx.tenant_id, "kind": kind, "idem_key": key, "fingerprint": fp,
            "result": stored, "meta": meta, "created_at": utcnow()}) == 1:
        return dict(stored, replayed=False)
    replay = _replay(ctx, uow, kind, key, fp)
    if replay is None:  # pragma: no cover - it committed, so the look-up finds it
        raise Conflict("concurrent write conflict; retry")
    return replay


_MOVE_BALANCES = DriverStatement(update(_WALLETS).where(_WALLETS.c.id == bindparam("wallet_id"))
                  .values(available=_WALLETS.c.available + bindparam("d_available"),
                          held=_WALLETS.c.held + bindparam("d_held"))
                  .returning(_WALLETS.c.available, _WALLETS.c.held))


def _move_last(ctx: CallContext, uow: UnitOfWork, journal_id: str, wallet: _Locked,
               legs: list[tuple[str, str | None, int]]) -> _Locked:
    """The last writes of a hold change: the wallet's balances by their deltas (one ``UPDATE …
    RETURNING``, which locks the row until the commit), then the journal's entries with the
    balances it returned. ``legs``: ``(account, side, amount)``, side ``available``, ``held``
    or None (a system account); at most one leg per side. :return: the wallet as updated."""
    if sum(amount for _, _, amount in legs) != 0:  # never: a bug in a use-case, not a user error
        raise AssertionError(f"unbalanced journal {legs!r}")
    uow.session.flush()  # the use-case's own changes (the hold row) go before the lock
    conn = uow.session.connection()
    deltas = {side: amount for _, side, amount in legs if side}
    available, held = _MOVE_BALANCES.first(conn, {"wallet_id": wallet.id, "d_available": deltas.get("available", 0),
                                                  "d_held": deltas.get("held", 0)})
    moved = _Locked(wallet.id, wallet.currency, available, held, wallet.overdraft_limit)
    _entries_after(ctx, uow, journal_id, moved, legs)
    return moved


def _entries_after(ctx: CallContext, uow: UnitOfWork, journal_id: str, wallet: _Locked,
                   legs: list[tuple[str, str | None, int]]) -> None:
    """Insert a journal's entries with the balances its wallet update returned (``wallet``),
    and expire the session's copy of the wallet row, if it holds one, so a later read sees them."""
    now = utcnow()
    _FAST_ENTRIES.run(uow.session.connection(), [
        {"tenant_id": ctx.tenant_id, "journal_id": journal_id, "wallet_id": wallet.id if side else None,
         "account": account, "amount": amount, "currency": wallet.currency,
         "balance_after": getattr(wallet, side) if side else None, "created_at": now}
        for account, side, amount in legs])
    cached = uow.session.identity_map.get(uow.session.identity_key(Wallet, wallet.id))
    if cached is not None:
        uow.session.expire(cached, ["available", "held"])


@dataclass(frozen=True)
class HoldPlan:
    """A hold checked but not yet placed (:func:`plan_hold`): its wallet as read then, and
    the hold's id, so that a caller can write its own rows first and lock the wallet last."""

    wallet: _Locked
    amount: int
    hold_id: str

    @property
    def wallet_id(self) -> str:
        return self.wallet.id

    @property
    def currency(self) -> str:
        return self.wallet.currency


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
    amount = _check_amount(amount)
    if reuse_read:
        memo_key = ("wallets.plan_read", ctx.tenant_id, wallet_id)
        wallet = uow.memo.get(memo_key)
        if wallet is None:
            wallet = uow.memo[memo_key] = _read_wallet_row(ctx, uow, wallet_id)
    else:
        wallet = _read_wallet_row(ctx, uow, wallet_id)
    if currency is not None and wallet.currency != currency:
        why = f"the wallet holds {wallet.currency}, the product costs {currency}"
        raise ValidationFailed(why, errors={"wallet_id": [why]})
    _veto_debit(ctx, wallet, amount, f"hold:{reference or key}")
    _ensure_funds(wallet, amount)
    return HoldPlan(wallet=wallet, amount=amount, hold_id=new_id("hld"))


def place_hold(ctx: CallContext, uow: UnitOfWork, wallet_id: str | None, amount: int, key: str,
               expires_at: dt.datetime | None = None, reference: str | None = None, *,
               plan: HoldPlan | None = None) -> Hold:
    """Reserve ``amount`` of ``wallet_id`` (the main wallet when None): available → held.
    Idempotent by ``key``.

    The hot path of every purchase, so it writes with Core statements only and locks its
    wallet row as late as it can — the row lock is held until the caller commits, and every
    other hold on the wallet queues on it:

    1. read the wallet (404; from ``plan`` when given, see :func:`plan_hold`), look up the
       key (a replay answers at once; another body is 409);
    2. ask the plugins, check the funds (403, 402 with nothing written; done by the plan);
    3. insert the journal (skipping when a concurrent attempt with the same key got there
       first: its result is the answer) and the hold row;
    4. move the balances with one conditional ``UPDATE … RETURNING``: it locks the row and
       applies only when ``available - amount >= -overdraft_limit`` on the row's latest
       committed version. When a concurrent hold took the funds since step 2, it matches
       nothing: the journal and hold rows of step 3 are deleted again and it is 402;
    5. insert the two entries with the balances the update returned, publish the event.

    :return: the hold: a new hold as a detached :class:`Hold` (its row as inserted; read
        it, do not change it — use :func:`get_hold` for a session's copy); a replayed key's
        hold as the session's row.
    :raise InsufficientFunds: 402 when available (plus overdraft) does not cover it.
    """
    amount, key = _check_amount(amount), _check_key(key)
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValidationFailed("expires_at must be timezone-aware", errors={"expires_at": ["naive"]})
    if plan is not None and (plan.amount != amount or wallet_id not in (None, plan.wallet_id)):
        raise AssertionError(f"a hold plan for {plan.amount} on {plan.wallet_id} used for {amount} on {wallet_id}")
    wallet = plan.wallet if plan is not None else _read_wallet_row(ctx, uow, wallet_id)
    fp = _hold_fingerprint(wallet.id, amount, reference, expires_at)
    replay = _replay(ctx, uow, "hold", key, fp)
    if replay is not None:
        return get_owned(uow.session, ctx, Hold, replay["hold_id"])
    if plan is None:
        _veto_debit(ctx, wallet, amount, f"hold:{reference or key}")
        _ensure_funds(wallet, amount)
        plan = HoldPlan(wallet=wallet, amount=amount, hold_id=new_id("hld"))
    hold_id, now = plan.hold_id, utcnow()
    result = _journal(ctx, uow, "hold", key, fp, {"hold_id": hold_id},
                      {"kind": "hold", "hold_id": hold_id, "wallet_id": wallet.id, "amount": amount})
    if result["replayed"]:  # a concurrent first attempt with this key committed meanwhile
        return get_owned(uow.session, ctx, Hold, result["hold_id"])
    journal_id = result["journal_id"]
    conn = uow.session.connection()
    row = {"id": hold_id, "tenant_id": ctx.tenant_id, "wallet_id": wallet.id, "amount": amount, "captured": 0,
           "reversed": 0, "currency": wallet.currency, "status": "placed", "expires_at": expires_at,
           "reference": reference, "created_at": now, "updated_at": now}
    _INSERT_HOLD.run(conn, row)
    balances = _RESERVE.first(conn, {"wallet_id": wallet.id, "amount": amount})
    if balances is None:  # a concurrent debit took the funds since they were checked
        conn.execute(_DELETE_HOLD, {"hold_id": hold_id})
        conn.execute(_DELETE_JOURNAL, {"journal_id": journal_id})
        now_available = _read_wallet_row(ctx, uow, wallet.id).available
        raise InsufficientFunds(f"wallet {wallet.id} has {now_available} {wallet.currency} available, "
                                f"{amount} needed", available=now_available, needed=amount)
    _entries_after(ctx, uow, journal_id, _Locked(wallet.id, wallet.currency, *balances, wallet.overdraft_limit),
                   [(_account(wallet.id, "available"), "available", -amount),
                    (_account(wallet.id, "held"), "held", amount)])
    hold = Hold(**row)
    make_transient_to_detached(hold)
    from hub.wallets.messages import HoldPlaced

    _emit(ctx, uow, HoldPlaced(**_hold_payload(hold)))
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
    keys = [_check_key(key) for _, key, _ in holds]
    wallet = holds[0][0].wallet
    conn = uow.session.connection()
    if conn.execute(select(_JOURNALS.c.id).where(_JOURNALS.c.tenant_id == ctx.tenant_id, _JOURNALS.c.kind == "hold",
                                                 _JOURNALS.c.idem_key.in_(keys)).limit(1)).first() is not None:
        return None
    now = utcnow()
    journal_ids: list[str] = []
    rows: list[dict[str, Any]] = []
    for plan, key, reference in holds:
        result = _journal(ctx, uow, "hold", key, _hold_fingerprint(wallet.id, plan.amount, reference, None),
                          {"hold_id": plan.hold_id},
                          {"kind": "hold", "hold_id": plan.hold_id, "wallet_id": wallet.id, "amount": plan.amount})
        if result["replayed"]:  # a concurrent first attempt with this key committed meanwhile
            _undo_holds(conn, journal_ids, [])
            return None
        journal_ids.append(result["journal_id"])
        rows.append({"id": plan.hold_id, "tenant_id": ctx.tenant_id, "wallet_id": wallet.id, "amount": plan.amount,
                     "captured": 0, "reversed": 0, "currency": wallet.currency, "status": "placed",
                     "expires_at": None, "reference": reference, "created_at": now, "updated_at": now})
    _INSERT_HOLD.run(conn, rows)
    total = sum(plan.amount for plan, _, _ in holds)
    balances = _RESERVE.first(conn, {"wallet_id": wallet.id, "amount": total})
    if balances is None:  # the funds do not cover them all (or a concurrent debit took them)
        _undo_holds(conn, journal_ids, [row["id"] for row in rows])
        return None
    available, held = balances
    # each hold's balances as if placed one after the other: the last one's are the row's now
    available_after, held_after = available + total, held - total
    entries: list[dict[str, Any]] = []
    placed: list[Hold] = []
    from hub.wallets.messages import HoldPlaced

    for (plan, _key, _reference), journal_id, row in zip(holds, journal_ids, rows):
        available_after, held_after = available_after - plan.amount, held_after + plan.amount
        entries += [
            {"tenant_id": ctx.tenant_id, "journal_id": journal_id, "wallet_id": wallet.id,
             "account": _account(wallet.id, "available"), "amount": -plan.amount, "currency": wallet.currency,
             "balance_after": available_after, "created_at": now},
            {"tenant_id": ctx.tenant_id, "journal_id": journal_id, "wallet_id": wallet.id,
             "account": _account(wallet.id, "held"), "amount": plan.amount, "currency": wallet.currency,
             "balance_after": held_after, "created_at": now}]
        hold = Hold(**row)
        make_transient_to_detached(hold)
        placed.append(hold)
    _FAST_ENTRIES.run(conn, entries)
    cached = uow.session.identity_map.get(uow.session.identity_key(Wallet, wallet.id))
    if cached is not None:
        uow.session.expire(cached, ["available", "held"])
    for hold in placed:
        _emit(ctx, uow, HoldPlaced(**_hold_payload(hold)))
    return placed


_DELETE_HOLDS = _HOLDS.delete().where(_HOLDS.c.id.in_(bindparam("hold_ids", expanding=True)))
_DELETE_JOURNALS = _JOURNALS.delete().where(_JOURNALS.c.id.in_(bindparam("journal_ids", expanding=True)))


def _undo_holds(conn, journal_ids: list[str], hold_ids: list[str]) -> None:
    if hold_ids:
        conn.execute(_DELETE_HOLDS, {"hold_ids": hold_ids})
    if journal_ids:
        conn.execute(_DELETE_JOURNALS, {"journal_ids": journal_ids})


def _hold_fingerprint(wallet_id: str | None, amount: int, reference: str | None,
                      expires_at: dt.datetime | None) -> str:
    return fingerprint({"wallet_id": wallet_id, "amount": amount, "reference": reference,
                        "expires_at": expires_at.isoformat() if expires_at else None})


def capture_hold(ctx: CallContext, uow: UnitOfWork, hold_id: str, amount: int | None = None, *,
                 key: str) -> Hold:
    """Settle ``amount`` of a placed hold (all of it when None): held → settlement.

    A partial capture releases the rest back to available; the hold is then final
    (``captured`` or ``partially_captured``). Idempotent by ``key``.
    """
    key = _check_key(key)
    if amount is not None:
        _check_amount(amount)
    hold, wallet = _get_hold(ctx, uow, hold_id)
    fp = fingerprint({"hold_id": hold_id, "amount": amount})
    replay = _replay(ctx, uow, "capture", key, fp)
    if replay is not None:
        return hold
    if hold.status != "placed":
        raise Conflict(f"hold {hold_id} is {hold.status}, not placed", hold_status=hold.status)
    amount = hold.amount if amount is None else amount
    if amount > hold.amount:
        raise ValidationFailed(f"amount {amount} exceeds the hold's {hold.amount}",
                               errors={"amount": ["exceeds the hold"]})
    rest = hold.amount - amount
    result = _journal(ctx, uow, "capture", key, fp, {"hold_id": hold.id},
                      {"kind": "capture", "hold_id": hold.id, "wallet_id": wallet.id, "amount": amount,
                       "released": rest})
    if result["replayed"]:
        uow.session.refresh(hold)
        return hold
    hold.captured = amount
    hold.status = "captured" if rest == 0 else "partially_captured"
    legs = [(_account(wallet.id, "held"), "held", -hold.amount),
            (SETTLEMENT.format(wallet.currency), None, amount)]
    if rest:
        legs.append((_account(wallet.id, "available"), "available", rest))
    from hub.wallets.messages import HoldCaptured, WalletDebited

    _emit(ctx, uow, HoldCaptured(**_hold_payload(hold)))
    wallet = _move_last(ctx, uow, result["journal_id"], wallet, legs)  # the wallet row is locked from here
    _emit(ctx, uow, WalletDebited(**_movement(wallet, result["journal_id"], "capture", amount, hold.id)))
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
    pairs = [(hold_id, _check_key(key)) for hold_id, key in captures]
    ids = sorted({hold_id for hold_id, _ in pairs})
    holds = {h.id: h for h in uow.session.scalars(tenant_select(ctx, Hold).where(Hold.id.in_(ids))
                                                   .order_by(Hold.id).with_for_update()
                                                   .execution_options(populate_existing=True))}
    missing = [hold_id for hold_id in ids if hold_id not in holds]
    if missing:
        raise NotFound(f"hold {missing[0]!r} not found")
    conn = uow.session.connection()
    used = set(conn.execute(select(_JOURNALS.c.idem_key).where(
        _JOURNALS.c.tenant_id == ctx.tenant_id, _JOURNALS.c.kind == "capture",
        _JOURNALS.c.idem_key.in_([key for _, key in pairs]))).scalars())
    wallets: dict[str, _Locked] = {}
    done: list[tuple[Hold, str]] = []  # (hold, journal id) of the captures made now
    for hold_id, key in pairs:
        hold = holds[hold_id]
        fp = fingerprint({"hold_id": hold_id, "amount": None})
        if key in used and _replay(ctx, uow, "capture", key, fp) is not None:
            continue
        if hold.status != "placed":
            raise Conflict(f"hold {hold_id} is {hold.status}, not placed", hold_status=hold.status)
        if hold.wallet_id not in wallets:
            wallets[hold.wallet_id] = _read_wallet_row(ctx, uow, hold.wallet_id)
        wallet = wallets[hold.wallet_id]
        result = _journal(ctx, uow, "capture", key, fp, {"hold_id": hold.id},
                          {"kind": "capture", "hold_id": hold.id, "wallet_id": wallet.id, "amount": hold.amount,
                           "released": 0})
        if result["replayed"]:
            uow.session.refresh(hold)
            continue
        hold.captured = hold.amount
        hold.status = "captured"
        done.append((hold, result["journal_id"]))
    if not done:
        return [holds[hold_id] for hold_id, _ in pairs]
    from hub.wallets.messages import HoldCaptured, WalletDebited

    for hold, _journal_id in done:
        _emit(ctx, uow, HoldCaptured(**_hold_payload(hold)))
    uow.session.flush()  # the holds' own changes go before the wallet lock
    now = utcnow()
    entries: list[dict[str, Any]] = []
    for wallet_id, wallet in sorted(wallets.items()):
        mine = [(hold, journal_id) for hold, journal_id in done if hold.wallet_id == wallet_id]
        total = sum(hold.amount for hold, _ in mine)
        available, held = _MOVE_BALANCES.first(conn, {"wallet_id": wallet_id, "d_available": 0, "d_held": -total})
        # each capture's balances as if made one after the other: the last one's are the row's now
        held_after = held + total
        for hold, journal_id in mine:
            held_after -= hold.amount
            after = _Locked(wallet_id, wallet.currency, available, held_after, wallet.overdraft_limit)
            entries += [
                {"tenant_id": ctx.tenant_id, "journal_id": journal_id, "wallet_id": wallet_id,
                 "account": _account(wallet_id, "held"), "amount": -hold.amount, "currency": wallet.currency,
                 "balance_after": held_after, "created_at": now},
                {"tenant_id": ctx.tenant_id, "journal_id": journal_id, "wallet_id": None,
                 "account": SETTLEMENT.format(wallet.currency), "amount": hold.amount, "currency": wallet.currency,
                 "balance_after": None, "created_at": now}]
            _emit(ctx, uow, WalletDebited(**_movement(after, journal_id, "capture", hold.amount, hold.id)))
        cached = uow.session.identity_map.get(uow.session.identity_key(Wallet, wallet_id))
        if cached is not None:
            uow.session.expire(cached, ["available", "held"])
    _FAST_ENTRIES.run(conn, entries)
    return [holds[hold_id] for hold_id, _ in pairs]


def void_hold(ctx: CallContext, uow: UnitOfWork, hold_id: str, *, key: str) -> Hold:
    """Release a placed hold: held → available. Idempotent by ``key``."""
    key = _check_key(key)
    hold, wallet = _get_hold(ctx, uow, hold_id)
    fp = fingerprint({"hold_id": hold_id})
    replay = _replay(ctx, uow, "void", key, fp)
    if replay is not None:
        return hold
    if hold.status != "placed":
        raise Conflict(f"hold {hold_id} is {hold.status}, not placed", hold_status=hold.status)
    result = _journal(ctx, uow, "void", key, fp, {"hold_id": hold.id},
                      {"kind": "void", "hold_id": hold.id, "wallet_id": wallet.id, "amount": hold.amount})
    if result["replayed"]:
        uow.session.refresh(hold)
        return hold
    hold.status = "voided"
    from hub.wallets.messages import HoldVoided

    _emit(ctx, uow, HoldVoided(**_hold_payload(hold)))
    _move_last(ctx, uow, result["journal_id"], wallet, [(_account(wallet.id, "held"), "held", -hold.amount),
                                                         (_account(wallet.id, "available"), "available", hold.amount)])
    return hold


def reverse_capture(ctx: CallContext, uow: UnitOfWork, hold_id: str, amount: int | None = None, *,
                    key: str) -> Hold:
    """Refund (part of) a captured hold: settlement → available (a late refund).

    At most ``captured - reversed`` in total; idempotent by ``key``.
    """
    key = _check_key(key)
    if amount is not None:
        _check_amount(amount)
    hold, wallet = _get_hold(ctx, uow, hold_id)
    fp = fingerprint({"hold_id": hold_id, "amount": amount})
    replay = _replay(ctx, uow, "reverse", key, fp)
    if replay is not None:
        return hold
    if hold.status not in ("captured", "partially_captured"):
        raise Conflict(f"hold {hold_id} is {hold.status}, not captured", hold_status=hold.status)
    left = hold.captured - hold.reversed
    amount = left if amount is None else amount
    if amount <= 0 or amount > left:
        raise ValidationFailed(f"at most {left} can still be reversed", errors={"amount": ["exceeds captured"]})
    result = _journal(ctx, uow, "reverse", key, fp, {"hold_id": hold.id},
                      {"kind": "reverse", "hold_id": hold.id, "wallet_id": wallet.id, "amount": amount})
    if result["replayed"]:
        uow.session.refresh(hold)
        return hold
    check_balance(wallet.id, wallet.available, amount, wallet.currency)
    hold.reversed += amount
    wallet = _move_last(ctx, uow, result["journal_id"], wallet, [(SETTLEMENT.format(wallet.currency), None, -amount),
                                                                  (_account(wallet.id, "available"), "available", amount)])
    from hub.wallets.messages import WalletCredited

    _emit(ctx, uow, WalletCredited(**_movement(wallet, result["journal_id"], "reverse", amount, hold.id)))
    return hold


def get_hold(ctx: CallContext, uow: UnitOfWork, hold_id: str) -> Hold:
    return get_owned(uow.session, ctx, Hold, hold_id)


# -- statement -----------------------------------------------------------------------------
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


# -- checks and jobs -----------------------------------------------------------------------
def wallet_totals(ctx: CallContext, uow: UnitOfWork, tenant_id: str | None = None) -> dict[str, dict[str, int]]:
    """Platform-level (scope ``*``): per currency, the number of wallets and the sums of their
    cached ``available`` and ``held`` balances, over every tenant (or ``tenant_id``'s). One
    grouped query.

    :return: ``{currency: {"wallets", "available", "held"}}``.
    """
    ctx.require_scope("*")
    stmt = select(Wallet.currency, func.count(), exact_sum(Wallet.available), exact_sum(Wallet.held))
    if tenant_id is not None:
        stmt = stmt.where(Wallet.tenant_id == tenant_id)
    rows = uow.session.execute(stmt.group_by(Wallet.currency).order_by(Wallet.currency))
    return {currency: {"wallets": int(n), "available": int(available or 0), "held": int(held or 0)}
            for currency, n, available, held in rows}


def verify_ledger(uow: UnitOfWork) -> dict[str, Any]:
    """Recompute every wallet balance from the entries and check every journal sums to zero.

    Platform-level (all tenants). :return: ``{"ok", "wallets", "journals", "entries",
    "differences": [...]}``; each difference names what disagrees.
    """
    s = uow.session
    differences: list[dict[str, Any]] = []
    for journal_id, total, n, currencies in s.execute(
            select(Entry.journal_id, exact_sum(Entry.amount), func.count(), func.count(func.distinct(Entry.currency)))
            .group_by(Entry.journal_id)):
        if total != 0 or n < 2 or currencies != 1:
            differences.append({"journal_id": journal_id, "problem": "unbalanced", "sum": int(total),
                                "entries": n, "currencies": currencies})
    journals = s.scalar(select(func.count()).select_from(Journal)) or 0
    empty = s.scalars(select(Journal.id).where(~select(Entry.seq).where(Entry.journal_id == Journal.id)
                                                .exists())).all()
    for journal_id in empty:
        differences.append({"journal_id": journal_id, "problem": "no entries"})
    sums = {account: int(total) for account, total in s.execute(
        select(Entry.account, exact_sum(Entry.amount)).where(Entry.wallet_id.is_not(None)).group_by(Entry.account))}
    open_holds = {wid: int(total) for wid, total in s.execute(
        select(Hold.wallet_id, exact_sum(Hold.amount)).where(Hold.status == "placed").group_by(Hold.wallet_id))}
    wallets = 0
    for wallet in s.scalars(select(Wallet)):
        wallets += 1
        available = sums.get(_account(wallet.id, "available"), 0)
        held = sums.get(_account(wallet.id, "held"), 0)
        if available != wallet.available:
            differences.append({"wallet_id": wallet.id, "problem": "available", "cached": wallet.available,
                                "recomputed": available})
        if held != wallet.held:
            differences.append({"wallet_id": wallet.id, "problem": "held", "cached": wallet.held,
                                "recomputed": held})
        if open_holds.get(wallet.id, 0) != wallet.held:
            differences.append({"wallet_id": wallet.id, "problem": "open holds", "cached": wallet.held,
                                "open_holds": open_holds.get(wallet.id, 0)})
        if wallet.available < -wallet.overdraft_limit:
            differences.append({"wallet_id": wallet.id, "problem": "overdrawn", "available": wallet.available,
                                "overdraft_limit": wallet.overdraft_limit})
    entries = s.scalar(select(func.count()).select_from(Entry)) or 0
    return {"ok": not differences, "wallets": wallets, "journals": journals, "entries": entries,
            "differences": differences}


def void_expired_holds(uow_factory, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Void every placed hold whose ``expires_at`` has passed; one transaction per hold.

    :param uow_factory: a callable returning a context-managed unit of work.
    :return: how many holds were voided.
    """
    now = now or utcnow()
    with uow_factory() as uow:
        due = uow.session.execute(select(Hold.id, Hold.tenant_id).where(
            Hold.status == "placed", Hold.expires_at.is_not(None), Hold.expires_at <= now)
            .order_by(Hold.expires_at).limit(limit)).all()
    voided = 0
    for hold_id, tenant_id in due:
        ctx = CallContext.system(actor="wallets:expiry", tenant_id=tenant_id)
        with uow_factory() as uow:
            try:
                void_hold(ctx, uow, hold_id, key=f"expire:{hold_id}")
            except Conflict:  # captured or voided meanwhile
                continue
            uow.commit()
            voided += 1
    return voided
