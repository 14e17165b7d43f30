"""The wallets' part of accepting a purchase in one database call (hub.transactions.accept).

On PostgreSQL the purchase's hold is written by the ``rop_accept_v2`` function, with the
transaction's rows, in one statement; this module gives the transactions service what that
needs without a query in the steady state:

- :func:`hold_target`: the wallet a hold goes to — its id and currency, from a per-process
  cache (a wallet's tenant, id and currency never change and wallets are never deleted, so
  an entry never goes stale; a wallet not seen yet is read once, the main wallet created on
  first use) — after the same checks :func:`hub.wallets.service.plan_hold` makes before
  anything is written: 404, 422 for another currency, and the plugins' ``before_wallet_debit``
  veto (403). The funds are judged by the function itself, under the wallet's row lock (402).
- :func:`hold_rows`: the journal and hold rows, exactly as
  :func:`hub.wallets.service.place_hold` writes them, and the ``wallet.hold_placed`` event.

The function writes the balances and the two entries (with the balances after) itself.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from flask import current_app

from hub.context import CallContext
from hub.db import UnitOfWork, new_id
from hub.errors import ValidationFailed
from hub.wallets import client
from hub.wallets.ledger import veto_debit
from hub.wallets.service import fingerprint

#: wallets a process keeps at most (past it the cache starts afresh)
MAX_WALLETS = 100_000


@dataclass(frozen=True)
class Target:
    """Where a hold goes: a wallet of the tenant, and its currency."""

    wallet_id: str
    currency: str


_lock = threading.Lock()


def _known() -> dict[tuple[str, str | None], Target]:
    """This app's wallets as read (one dict per app, shared by its threads)."""
    return current_app.extensions["rop"].extras.setdefault("wallets.fastpath", {})


def hold_target(ctx: CallContext, uow: UnitOfWork, wallet_id: str | None, amount: int, *, currency: str,
                reference: str) -> Target:
    """The wallet ``wallet_id`` (the tenant's main wallet when None) for a hold of ``amount``
    in ``currency``, once no plugin vetoes it. Writes nothing (but the main wallet on the
    tenant's first use).

    :raise NotFound: not the tenant's wallet. :raise ValidationFailed: not a positive amount
        (a plugin priced the product at 0), another currency.
    :raise Forbidden: a plugin's veto (hook ``before_wallet_debit``).
    """
    ctx.require_scope("wallets:write")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:  # as plan_hold's check
        raise ValidationFailed("amount must be a positive integer (minor units)",
                               errors={"amount": ["must be a positive integer"]})
    key = (ctx.tenant_id, wallet_id)
    known = _known()
    target = known.get(key)
    if target is None:
        found = client.get_main_wallet(ctx, uow) if wallet_id is None else client.get_wallet(ctx, uow, wallet_id)
        target = Target(found["id"], found["currency"])
        uow.after_commit(lambda: _keep(known, key, target))  # a main wallet made now may yet be rolled back
    if target.currency != currency:
        why = f"the wallet holds {target.currency}, the product costs {currency}"
        raise ValidationFailed(why, errors={"wallet_id": [why]})
    veto_debit(ctx, target.wallet_id, target.currency, amount, f"hold:{reference}")
    return target


def _keep(known: dict, key: tuple[str, str | None], target: Target) -> None:
    with _lock:
        if len(known) >= MAX_WALLETS:
            known.clear()
        known[key] = target


def forget(tenant_id: str | None, wallet_id: str | None) -> None:
    """Drop what this process knows of ``wallet_id`` for ``tenant_id`` (the accept function
    found it is not the tenant's wallet in that currency: the entry was wrong)."""
    with _lock:
        _known().pop((tenant_id, wallet_id), None)


def hold_rows(ctx: CallContext, target: Target, amount: int, *, key: str, reference: str,
              hold_id: str, now) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """The journal row, the hold row and the ``wallet.hold_placed`` event of a new hold, as
    :func:`hub.wallets.service.place_hold` writes them (no expiry)."""
    from hub.wallets.messages import HoldPlaced

    journal_id = new_id("jnl")
    fp = fingerprint({"wallet_id": target.wallet_id, "amount": amount, "reference": reference, "expires_at": None})
    journal = {"id": journal_id, "tenant_id": ctx.tenant_id, "kind": "hold", "idem_key": key, "fingerprint": fp,
               "result": {"kind": "hold", "hold_id": hold_id, "wallet_id": target.wallet_id, "amount": amount,
                          "journal_id": journal_id},
               "meta": {"hold_id": hold_id}, "created_at": now}
    hold = {"id": hold_id, "tenant_id": ctx.tenant_id, "wallet_id": target.wallet_id, "amount": amount,
            "captured": 0, "reversed": 0, "currency": target.currency, "status": "placed", "expires_at": None,
            "reference": reference, "created_at": now, "updated_at": now}
    event = HoldPlaced.built(hold_id=hold_id, wallet_id=target.wallet_id, amount=amount, captured=0,
                             currency=target.currency, status="placed", reference=reference)
    return journal, hold, event
