"""Four-eyes: an operator's large top-up or adjustment waits for a second operator.

The admin UI and the CLI send every operator top-up and adjustment through :func:`submit`:

- above its limit (hub.wallets.limits) it is refused (422), as anywhere;
- above ``ROP_FOUR_EYES_AMOUNT``, or when it takes the operator's total of the UTC day
  above ``ROP_FOUR_EYES_DAILY``, it is **not applied**: it becomes a ``pending`` approval
  (audited ``wallet.approval_requested``) that another operator — never the one who asked —
  approves (:func:`approve`: applied then, exactly once) or rejects (:func:`reject`);
- else it is applied at once and recorded as ``applied``.

The daily total counts the operator's applied, pending and approved operations of the day
(either sign of an adjustment counts its size), so splitting an amount does not escape it.
On PostgreSQL one operator's submissions are serialized by a transaction-level advisory
lock (on SQLite every writing transaction is); the decision on an approval is a
conditional ``UPDATE … WHERE status = 'pending'``, so of two concurrent approvals one
applies it and the other gets 409.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from hub.context import CallContext
from hub.db import UnitOfWork, exact_sum, utcnow
from hub.errors import Conflict, Forbidden, NotFound, ValidationFailed
from hub.wallets import limits as money_limits
from hub.wallets.models import Approval

KINDS = ("topup", "adjustment")
STATUSES = ("applied", "pending", "approved", "rejected")
#: the statuses that count towards an operator's daily total
COUNTED = ("applied", "pending", "approved")


def view(row: Approval) -> dict[str, Any]:
    return {"id": row.id, "tenant_id": row.tenant_id, "wallet_id": row.wallet_id, "kind": row.kind,
            "amount": row.amount, "currency": row.currency, "reason": row.reason, "ref": row.ref,
            "status": row.status, "why": row.why, "requested_by": row.requested_by,
            "requested_at": row.requested_at.isoformat() if row.requested_at else None,
            "decided_by": row.decided_by,
            "decided_at": row.decided_at.isoformat() if row.decided_at else None,
            "note": row.note, "journal_id": row.journal_id}


def check(kind: str, amount: Any, reason: Any, ref: Any) -> tuple[int, str, str]:
    """The kind, amount, reason and reference of a submission as given. :raise ValidationFailed:"""
    if kind not in KINDS:
        raise ValidationFailed(f"kind is one of {', '.join(KINDS)}", errors={"kind": ["invalid"]})
    if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0 or (kind == "topup" and amount < 0):
        what = "a positive" if kind == "topup" else "a non-zero"
        raise ValidationFailed(f"the amount must be {what} whole number of minor units",
                               errors={"amount": ["invalid"]})
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason or len(reason) > 500:
        raise ValidationFailed("this needs a reason (1-500 characters)", errors={"reason": ["required"]})
    if not isinstance(ref, str) or not ref.strip() or len(ref) > 255:
        raise ValidationFailed("a reference (idempotency key) of 1-255 characters is required",
                               errors={"ref": ["required"]})
    return amount, reason, ref


def day_start(now: dt.datetime | None = None) -> dt.datetime:
    now = now or utcnow()
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def daily_total(uow: UnitOfWork, actor: str, currency: str, now: dt.datetime | None = None) -> int:
    """What ``actor`` topped up and adjusted (sizes) today in ``currency``, UTC, applied or
    pending (amounts of different currencies are not added up)."""
    total = uow.session.scalar(select(exact_sum(func.abs(Approval.amount))).where(
        Approval.requested_by == actor, Approval.currency == currency, Approval.requested_at >= day_start(now),
        Approval.status.in_(COUNTED)))
    return int(total or 0)


def _serialize_actor(uow: UnitOfWork, actor: str) -> None:
    conn = uow.session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"rop:four-eyes:{actor}"})


def _apply(ctx: CallContext, uow: UnitOfWork, kind: str, wallet_id: str, amount: int, reason: str,
           ref: str) -> dict[str, Any]:
    from hub.wallets import accounts

    if kind == "topup":
        return accounts.topup(ctx, uow, wallet_id, amount, ref, reason=reason)
    return accounts.adjust(ctx, uow, wallet_id, amount, reason, ref)


def submit(ctx: CallContext, uow: UnitOfWork, kind: str, wallet_id: str | None, amount: int, reason: str,
           ref: str) -> dict[str, Any]:
    """An operator's top-up or adjustment of ``wallet_id`` (a top-up: the main wallet when
    None) in ``ctx``'s tenant: applied now or left pending for a second operator.

    Idempotent by ``ref`` (per tenant and kind): the same reference again answers the first
    submission with ``replayed: true``.

    :return: ``{"status": "applied"|"pending", "approval": {...}, "result": {...}|None, "replayed"}``.
    :raise ValidationFailed: a bad kind, amount, reason or reference; an amount above its limit.
    """
    from hub.tenancy.service import record_audit
    from hub.wallets import accounts

    ctx.require_scope("*")
    if not ctx.actor:
        raise ValidationFailed("an operator's action names the operator", errors={"actor": ["required"]})
    amount, reason, ref = check(kind, amount, reason, ref)
    if wallet_id is None and kind == "topup":
        wallet_id = accounts.get_main_wallet(ctx, uow).id
    wallet = accounts.get_wallet(ctx, uow, wallet_id or "")
    existing = uow.session.scalar(select(Approval).where(Approval.tenant_id == ctx.tenant_id,
                                                         Approval.kind == kind, Approval.ref == ref))
    if existing is not None:
        if (existing.wallet_id, existing.amount) != (wallet.id, amount):
            raise Conflict(f"the reference {ref!r} was already used for another {kind}")
        return {"status": existing.status, "approval": view(existing), "result": None, "replayed": True}
    money_limits.check_amount(uow, ctx.tenant_id, kind, amount, wallet.currency)
    _serialize_actor(uow, ctx.actor)
    settings = money_limits.settings()
    today = daily_total(uow, ctx.actor, wallet.currency)
    size = abs(amount)
    why = None
    if size > settings.four_eyes_amount:
        why = (f"the amount {money_limits.money(size, wallet.currency)} is above the four-eyes amount "
               f"{money_limits.money(settings.four_eyes_amount, wallet.currency)} ({money_limits.ENV_FOUR_EYES_AMOUNT})")
    elif today + size > settings.four_eyes_daily:
        why = (f"{ctx.actor}'s total today would be {money_limits.money(today + size, wallet.currency)}, above "
               f"the four-eyes daily total {money_limits.money(settings.four_eyes_daily, wallet.currency)} "
               f"({money_limits.ENV_FOUR_EYES_DAILY})")
    row = Approval(tenant_id=ctx.tenant_id, wallet_id=wallet.id, kind=kind, amount=amount, currency=wallet.currency,
                   reason=reason, ref=ref, status="pending" if why else "applied", why=why,
                   requested_by=ctx.actor, requested_at=utcnow())
    result = None
    if why is None:
        result = _apply(ctx, uow, kind, wallet.id, amount, reason, ref)
        row.journal_id = result["journal_id"]
    try:
        with uow.session.begin_nested():
            uow.session.add(row)
            uow.session.flush()
    except IntegrityError:  # a concurrent submission with this reference got there first
        raise Conflict(f"the reference {ref!r} was just used; reload and look again") from None
    if why is not None:
        record_audit(ctx, uow, "wallet.approval_requested", target_type="wallet_approval", target_id=row.id,
                     after=view(row))
    return {"status": row.status, "approval": view(row), "result": result, "replayed": False}


def get(ctx: CallContext, uow: UnitOfWork, approval_id: str) -> Approval:
    ctx.require_scope("*")
    row = uow.session.get(Approval, approval_id, populate_existing=True)
    if row is None:
        raise NotFound(f"approval {approval_id!r} not found")
    return row


def list_approvals(ctx: CallContext, uow: UnitOfWork, *, status: str | None = "pending",
                   tenant_id: str | None = None, ids: list[str] | None = None,
                   limit: int = 200) -> list[dict[str, Any]]:
    """Approvals, newest first (``status`` None: every status but ``applied``; ``"decided"``:
    approved or rejected); ``ids``: only those."""
    ctx.require_scope("*")
    stmt = select(Approval).order_by(Approval.requested_at.desc(), Approval.id).limit(limit)
    if status is None:
        stmt = stmt.where(Approval.status != "applied")
    elif status == "decided":
        stmt = stmt.where(Approval.status.in_(("approved", "rejected")))
    else:
        if status not in STATUSES:
            raise ValidationFailed(f"status is one of {', '.join(STATUSES)} or decided",
                                   errors={"status": ["invalid"]})
        stmt = stmt.where(Approval.status == status)
    if tenant_id:
        stmt = stmt.where(Approval.tenant_id == tenant_id)
    if ids is not None:
        stmt = stmt.where(Approval.id.in_(ids))
    return [view(row) for row in uow.session.scalars(stmt)]


def _decide(ctx: CallContext, uow: UnitOfWork, approval_id: str, status: str, note: str | None) -> Approval:
    ctx.require_scope("*")
    note = (note or "").strip()[:500] or None
    row = get(ctx, uow, approval_id)
    if row.requested_by == ctx.actor:
        verb = "approve" if status == "approved" else "reject"
        raise Forbidden(f"{ctx.actor} asked for {approval_id}: a second operator must {verb} it")
    decided = uow.session.execute(
        update(Approval).where(Approval.id == approval_id, Approval.status == "pending")
        .values(status=status, decided_by=ctx.actor, decided_at=utcnow(), note=note)
        .execution_options(synchronize_session=False)).rowcount
    row = get(ctx, uow, approval_id)
    if decided != 1:
        raise Conflict(f"approval {approval_id} is {row.status} already"
                       + (f" (by {row.decided_by})" if row.decided_by else ""), approval_status=row.status)
    return row


def approve(ctx: CallContext, uow: UnitOfWork, approval_id: str, note: str | None = None) -> dict[str, Any]:
    """Apply a pending approval, as ``ctx``'s operator (not the requester): exactly once.

    :raise Forbidden: the requester approving their own. :raise Conflict: not pending (any more).
    :raise InsufficientFunds, ValidationFailed: the operation cannot be applied now (it stays pending).
    """
    from hub.tenancy.service import record_audit

    row = _decide(ctx, uow, approval_id, "approved", note)
    applying = CallContext.system(actor=ctx.actor or "system", tenant_id=row.tenant_id)
    result = _apply(applying, uow, row.kind, row.wallet_id, row.amount, row.reason, row.ref)
    row.journal_id = result["journal_id"]
    uow.session.flush()
    record_audit(applying, uow, "wallet.approval_approved", target_type="wallet_approval", target_id=row.id,
                 before={"status": "pending"}, after=view(row))
    return {"status": row.status, "approval": view(row), "result": result}


def reject(ctx: CallContext, uow: UnitOfWork, approval_id: str, note: str | None = None) -> dict[str, Any]:
    """Refuse a pending approval, as ``ctx``'s operator (not the requester): nothing moves."""
    from hub.tenancy.service import record_audit

    row = _decide(ctx, uow, approval_id, "rejected", note)
    record_audit(CallContext.system(actor=ctx.actor or "system", tenant_id=row.tenant_id), uow,
                 "wallet.approval_rejected", target_type="wallet_approval", target_id=row.id,
                 before={"status": "pending"}, after=view(row))
    return {"status": row.status, "approval": view(row), "result": None}
