"""What other services (transactions, bulk) may call on the wallets service.

Each function takes the caller's ``ctx`` — normally ``hub.auth.service_context(ctx,
"<service>")`` — checks its scope and works in the ctx's tenant only. All run inside the
caller's unit of work (the caller commits, so a purchase and its hold commit together).
Results are plain dicts (no ORM rows cross the boundary).

Scopes: reads need ``wallets:read``; holds, captures, voids and reversals ``wallets:write``.
Errors: ``InsufficientFunds`` (402), ``Forbidden`` (403: scope or a plugin veto),
``NotFound`` (404), ``Conflict`` (409: key reused with another body, or a hold not in the
right state), ``ValidationFailed`` (422).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from hub.context import CallContext
from hub.db import UnitOfWork
from hub.wallets import service
from hub.wallets.models import Hold, Wallet


def wallet_view(wallet: Wallet) -> dict[str, Any]:
    return {"id": wallet.id, "owner_ref": wallet.owner_ref, "is_main": wallet.is_main,
            "currency": wallet.currency, "available": wallet.available, "held": wallet.held,
            "overdraft_limit": wallet.overdraft_limit}


def hold_view(hold: Hold) -> dict[str, Any]:
    return {"id": hold.id, "wallet_id": hold.wallet_id, "amount": hold.amount, "captured": hold.captured,
            "reversed": hold.reversed, "currency": hold.currency, "status": hold.status,
            "expires_at": hold.expires_at, "reference": hold.reference}


def get_wallet(ctx: CallContext, uow: UnitOfWork, wallet_id: str) -> dict[str, Any]:
    """``{id, owner_ref, is_main, currency, available, held, overdraft_limit}``; 404 if not the tenant's."""
    ctx.require_scope("wallets:read")
    return wallet_view(service.get_wallet(ctx, uow, wallet_id))


def get_main_wallet(ctx: CallContext, uow: UnitOfWork) -> dict[str, Any]:
    """The tenant's main wallet (created on first access)."""
    ctx.require_scope("wallets:read")
    return wallet_view(service.get_main_wallet(ctx, uow))


def place_hold(ctx: CallContext, uow: UnitOfWork, wallet_id: str | None, amount: int, key: str, *,
               expires_at: dt.datetime | None = None, reference: str | None = None,
               plan: service.HoldPlan | None = None) -> dict[str, Any]:
    """Reserve ``amount`` on ``wallet_id`` (the main wallet when None); idempotent by ``key``.
    With a ``plan`` from :func:`plan_hold` its checks are not done again."""
    ctx.require_scope("wallets:write")
    return hold_view(service.place_hold(ctx, uow, wallet_id, amount, key, expires_at=expires_at,
                                        reference=reference, plan=plan))


def plan_hold(ctx: CallContext, uow: UnitOfWork, wallet_id: str | None, amount: int, *,
              reference: str | None = None, reuse_read: bool = False,
              currency: str | None = None) -> service.HoldPlan:
    """Check a hold without writing or locking (404, 422 a wallet not in ``currency``, 403 veto,
    402 now); pass the plan to :func:`place_hold` after writing the caller's own rows, so the
    wallet row is locked last. ``reuse_read``: the wallet as read by an earlier such plan in
    ``uow`` (many holds placed together at the commit)."""
    ctx.require_scope("wallets:write")
    return service.plan_hold(ctx, uow, wallet_id, amount, reference, reuse_read=reuse_read, currency=currency)


def capture_hold(ctx: CallContext, uow: UnitOfWork, hold_id: str, amount: int | None = None, *,
                 key: str) -> dict[str, Any]:
    """Capture all (``amount=None``) or part of a hold; the rest returns to available."""
    ctx.require_scope("wallets:write")
    return hold_view(service.capture_hold(ctx, uow, hold_id, amount, key=key))


def place_holds(ctx: CallContext, uow: UnitOfWork, holds: list) -> list[dict[str, Any]] | None:
    """Place several planned holds (``(plan, key, reference)``, plans of :func:`plan_hold` on one
    wallet) at once; None when they cannot all be placed together (nothing written: place them
    one by one with :func:`place_hold` for each one's answer). See the service."""
    ctx.require_scope("wallets:write")
    placed = service.place_holds(ctx, uow, holds)
    return None if placed is None else [hold_view(h) for h in placed]


def capture_holds(ctx: CallContext, uow: UnitOfWork, captures: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Capture all of each hold of ``captures`` (``(hold_id, key)`` pairs, one tenant's): each
    as :func:`capture_hold` would, the wallet's balances moved once (see the service)."""
    ctx.require_scope("wallets:write")
    return [hold_view(h) for h in service.capture_holds(ctx, uow, captures)]


def void_hold(ctx: CallContext, uow: UnitOfWork, hold_id: str, *, key: str) -> dict[str, Any]:
    """Release a placed hold back to available."""
    ctx.require_scope("wallets:write")
    return hold_view(service.void_hold(ctx, uow, hold_id, key=key))


def reverse_capture(ctx: CallContext, uow: UnitOfWork, hold_id: str, amount: int | None = None, *,
                    key: str) -> dict[str, Any]:
    """Refund (part of) a captured hold to the wallet's available balance."""
    ctx.require_scope("wallets:write")
    return hold_view(service.reverse_capture(ctx, uow, hold_id, amount, key=key))


def get_hold(ctx: CallContext, uow: UnitOfWork, hold_id: str) -> dict[str, Any]:
    ctx.require_scope("wallets:read")
    return hold_view(service.get_hold(ctx, uow, hold_id))
