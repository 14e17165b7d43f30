"""The ledger's checks: :func:`verify_ledger` (``rop wallets verify``, the daily job) recomputes
every cached balance from the entries and checks every journal, and :func:`wallet_totals`
sums the cached balances per currency (the admin dashboard). Reads only; platform-level.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from hub.context import CallContext
from hub.db import UnitOfWork, exact_sum
from hub.wallets.ledger import account
from hub.wallets.models import Entry, Hold, Journal, Wallet


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
        available = sums.get(account(wallet.id, "available"), 0)
        held = sums.get(account(wallet.id, "held"), 0)
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
