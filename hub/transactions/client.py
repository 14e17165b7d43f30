"""What other services (bulk, the admin UI) may call on the transactions service.

Everything runs in the caller's unit of work and commits nothing. Results are plain dicts:
the transaction view ``{id, ref_id, product_code, customer_no, status, price, currency,
wallet_id, serial_number, provider_ref, provider_code, error, source, created_at,
updated_at, completed_at}``.

Scopes: ``submit`` needs ``transactions:write`` (the bulk service's identity holds it),
reads ``transactions:read`` or ``transactions:write``; the operator actions
``transactions:process`` (the admin UI's platform context holds ``*``).
"""
from __future__ import annotations

from typing import Any

from hub.context import CallContext
from hub.db import UnitOfWork
from hub.transactions import lifecycle, service


def _can_read(ctx: CallContext) -> None:
    if not (ctx.has_scope("transactions:read") or ctx.has_scope("transactions:write")):
        ctx.require_scope("transactions:read")


def submit(ctx: CallContext, uow: UnitOfWork, *, ref_id: str, product_code: str, customer_no: str,
           wallet_id: str | None = None, inquiry_id: str | None = None,
           source: str | None = None) -> tuple[dict[str, Any], bool]:
    """Accept a purchase exactly like ``POST /v1/transactions``; the caller commits.

    :return: ``(transaction view, created)``.
    :raise ValidationFailed: unknown/unavailable product, bad customer number (422).
    :raise InsufficientFunds: 402. :raise Conflict: ``ref_id`` reused with another body (409).
    """
    ctx.require_scope("transactions:write")
    trx, created = service.submit(ctx, uow, ref_id=ref_id, product_code=product_code, customer_no=customer_no,
                                  wallet_id=wallet_id, inquiry_id=inquiry_id, source=source)
    return lifecycle.view(trx), created


def validate(ctx: CallContext, uow: UnitOfWork, product_code: str, customer_no: str, *,
             product: dict[str, Any] | None = None) -> str | None:
    """The customer-number check's error message, None when valid (no writes). ``product``
    is the products client's dict when the caller has it (bulk: no query per row)."""
    return service.validate(ctx, uow, product_code, customer_no, product=product)


def used_ref_ids(ctx: CallContext, uow: UnitOfWork, ref_ids: list[str]) -> set[str]:
    """Which of ``ref_ids`` the tenant used already."""
    _can_read(ctx)
    return service.used_ref_ids(ctx, uow, ref_ids)


def get(ctx: CallContext, uow: UnitOfWork, transaction_id: str) -> dict[str, Any]:
    """One transaction, with ``timeline`` and ``attempts``; 404 when not the ctx tenant's."""
    if ctx.tenant_id is None and ctx.has_scope("transactions:process"):
        trx = service._operated_read(uow, transaction_id)
    else:
        _can_read(ctx)
        trx = service.get(ctx, uow, transaction_id)
    return dict(lifecycle.view(trx), timeline=service.timeline(uow, trx), attempts=service.attempts(uow, trx),
                tenant_id=trx.tenant_id)


def list_(ctx: CallContext, uow: UnitOfWork, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The tenant's transactions, newest first: ``(items, next_cursor)``. Filters: ``ref_id``,
    ``status``, ``product_code``, ``customer_no``, ``source`` (``prefix*``), ``created_from``,
    ``created_to``, ``cursor``, ``limit``."""
    _can_read(ctx)
    rows, next_cursor = service.list_(ctx, uow, **filters)
    return [lifecycle.view(t) for t in rows], next_cursor


def recheck(ctx: CallContext, uow: UnitOfWork, transaction_id: str) -> dict[str, Any]:
    """Operator: ask the provider again about a ``review`` transaction (audited)."""
    return lifecycle.view(service.recheck(ctx, uow, transaction_id))


def resolve(ctx: CallContext, uow: UnitOfWork, transaction_id: str, outcome: str, reason: str) -> dict[str, Any]:
    """Operator: settle a ``review`` transaction as ``succeeded`` (capture) or ``failed`` (void); audited."""
    return lifecycle.view(service.resolve(ctx, uow, transaction_id, outcome, reason))


def refund(ctx: CallContext, uow: UnitOfWork, transaction_id: str, reason: str) -> dict[str, Any]:
    """Operator: refund a succeeded transaction (reversal through the ledger); audited."""
    return lifecycle.view(service.refund(ctx, uow, transaction_id, reason))
