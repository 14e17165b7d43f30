"""What other services (bulk, the admin UI) may call on the transactions service.

Everything runs in the caller's unit of work and commits nothing. Results are plain dicts:
the transaction view ``{id, ref_id, product_code, customer_no, status, price, currency,
wallet_id, serial_number, provider_ref, provider_code, error, source, created_at,
updated_at, completed_at}``.

Scopes: ``submit`` and ``submit_many`` need ``transactions:write`` (the bulk service's
identity holds it), reads ``transactions:read`` or ``transactions:write``; the operator actions
``transactions:process`` (the admin UI's platform context holds ``*``).
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from hub.context import CallContext
from hub.db import UnitOfWork
from hub.transactions import lifecycle, service
from hub.transactions.service import (  # submit_many's request, the answers
    Accepted,
    Purchase,
    Refused,
)


def _can_read(ctx: CallContext) -> None:
    if not (ctx.has_scope("transactions:read") or ctx.has_scope("transactions:write")):
        ctx.require_scope("transactions:read")


def submit(ctx: CallContext, uow: UnitOfWork, *, ref_id: str, product_code: str, customer_no: str,
           wallet_id: str | None = None, inquiry_id: str | None = None,
           source: str | None = None) -> Accepted[dict[str, Any]]:
    """Accept one purchase exactly like ``POST /v1/transactions``'s Python path; the caller
    commits (:func:`hub.transactions.service.submit`): the hold is placed at the commit, after
    the caller's other writes, and a hold refused there raises from ``uow.commit()`` with its
    ``transaction_id`` attribute set.

    :return: :class:`Accepted` with the transaction's view (``created`` False: a replay).
    :raise ValidationFailed: unknown/unavailable product, bad customer number (422).
    :raise InsufficientFunds: 402. :raise Conflict: ``ref_id`` reused with another body (409).
    """
    ctx.require_scope("transactions:write")
    accepted = service.submit(ctx, uow, ref_id=ref_id, product_code=product_code, customer_no=customer_no,
                              wallet_id=wallet_id, inquiry_id=inquiry_id, source=source)
    return Accepted(lifecycle.view(accepted.transaction), accepted.created)


def submit_many(ctx: CallContext, uow: UnitOfWork,
                purchases: Sequence[Purchase]) -> list[Accepted[dict[str, Any]] | Refused]:
    """Accept a group of purchases (bulk) written together in the caller's unit of work
    (:func:`hub.transactions.service.submit_many`): one answer per purchase, in order —
    :class:`Accepted` with the transaction's view, or :class:`Refused` with the error the API
    would answer (nothing of it written). A concurrent twin of a ``ref_id`` fails the caller's
    commit with ``IntegrityError``: roll back and call again (its look-up then finds the twin).
    """
    ctx.require_scope("transactions:write")
    return [Accepted(lifecycle.view(a.transaction), a.created) if isinstance(a, Accepted) else a
            for a in service.submit_many(ctx, uow, purchases)]


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


# -- for the admin UI: every tenant, and figures for the dashboard ---------------------------
def in_flight_by_config(ctx: CallContext, uow: UnitOfWork, config_ids: list[str] | None = None, *,
                        tenant_id: str | None = None) -> dict[str, int]:
    """Operator: how many purchases are in flight at each provider configuration — sent
    there, outcome not known yet (transaction ``processing`` or ``review``, its current
    attempt ``sent``, ``pending`` or ``unknown`` at that configuration). Switching a
    configuration off leaves them in flight: their status checks and callbacks go on.

    :param config_ids: only these configurations (None: every one with purchases in flight).
    :param tenant_id: only this tenant's purchases.
    :return: ``{config_id: count}``; a configuration asked for with none in flight is 0.
    Needs ``transactions:process``.
    """
    from sqlalchemy import and_, func, select

    from hub.transactions.models import Attempt, Transaction

    ctx.require_scope("transactions:process")
    stmt = (select(Attempt.config_id, func.count())
            .join(Transaction, and_(Transaction.id == Attempt.transaction_id, Attempt.seq == Transaction.attempt_count))
            .where(Transaction.status.in_(sorted(lifecycle.IN_FLIGHT)),
                   Attempt.state.in_(sorted(lifecycle.OPEN_ATTEMPT)))
            .group_by(Attempt.config_id))
    if config_ids is not None:
        if not config_ids:
            return {}
        stmt = stmt.where(Attempt.config_id.in_(list(config_ids)))
    if tenant_id is not None:
        stmt = stmt.where(Transaction.tenant_id == tenant_id)
    counts = {config_id: int(n) for config_id, n in uow.session.execute(stmt)}
    return {c: counts.get(c, 0) for c in config_ids} if config_ids is not None else counts



def history_of_config(ctx: CallContext, uow: UnitOfWork, config_id: str) -> dict[str, int]:
    """Operator: what the transactions service holds about one provider configuration:
    ``{"transactions", "attempts", "inquiries"}`` counts (any tenant, any status). A
    configuration with any of them has history: it is retired, never deleted. Needs
    ``transactions:process``."""
    from sqlalchemy import func, select

    from hub.transactions.models import Attempt, Inquiry, Transaction

    ctx.require_scope("transactions:process")

    def count(model) -> int:
        return int(uow.session.scalar(select(func.count()).select_from(model).where(model.config_id == config_id)))

    return {"transactions": count(Transaction), "attempts": count(Attempt), "inquiries": count(Inquiry)}


def operator_list(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str | None = None, status: str | None = None,
                  provider_code: str | None = None, ref_id: str | None = None,
                  created_from: dt.datetime | None = None, created_to: dt.datetime | None = None,
                  cursor: str | None = None, limit: int = 50) -> tuple[list[dict[str, Any]], str | None]:
    """Operator: transactions of one tenant or of all, newest first: ``(items, next_cursor)``.

    Each item is the transaction view plus ``tenant_id``. Needs ``transactions:process``.
    :raise ValidationFailed: an unknown status, a bad cursor.
    """
    from sqlalchemy import or_, select

    from hub.transactions.models import STATUSES, Transaction

    ctx.require_scope("transactions:process")
    stmt = select(Transaction)
    if tenant_id:
        stmt = stmt.where(Transaction.tenant_id == tenant_id)
    if status:
        if status not in STATUSES:
            raise service._field_error("status", f"status must be one of {', '.join(STATUSES)}")
        stmt = stmt.where(Transaction.status == status)
    if provider_code:
        stmt = stmt.where(Transaction.provider_code == provider_code)
    if ref_id:
        stmt = stmt.where(Transaction.ref_id == ref_id)
    if created_from:
        stmt = stmt.where(Transaction.created_at >= created_from)
    if created_to:
        stmt = stmt.where(Transaction.created_at < created_to)
    if cursor:
        at, ident = service._decode_cursor(cursor)
        stmt = stmt.where(or_(Transaction.created_at < at, (Transaction.created_at == at) & (Transaction.id < ident)))
    limit = max(1, min(int(limit), 500))
    rows = list(uow.session.scalars(stmt.order_by(Transaction.created_at.desc(), Transaction.id.desc())
                                    .limit(limit + 1)))
    next_cursor = service._encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return [dict(lifecycle.view(t), tenant_id=t.tenant_id) for t in rows[:limit]], next_cursor


#: The operator list's sort keys (``-key``: descending); ties go by id in the same direction.
OPERATOR_SORTS = ("created", "price", "status", "product", "customer", "ref")


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def operator_page(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str | None = None, status: str | None = None,
                  provider_code: str | None = None, q: str | None = None,
                  created_from: dt.datetime | None = None, created_to: dt.datetime | None = None,
                  sort: str = "-created", page: int = 1, per_page: int = 50) -> dict[str, Any]:
    """Operator: one page of the transactions of one tenant or of all, filtered, searched and
    sorted, with the total.

    :param q: a transaction id (``trx_…``: exact), else a ref id prefix, a customer number
        prefix or a provider reference (exact); the filters combine with it.
    :param sort: one of :data:`OPERATOR_SORTS`, ``-`` first for descending.
    :return: ``{"items", "total", "estimated", "page", "pages", "per_page", "sort"}``; the
        total is exact up to ``hub.paging.EXACT_COUNT_UP_TO`` rows, above that PostgreSQL's
        estimate (``estimated`` true; SQLite counts exactly).
    :raise ValidationFailed: an unknown status or sort, a page below 1.
    """
    from sqlalchemy import or_

    from hub.paging import sorted_page
    from hub.transactions.models import STATUSES, Transaction

    ctx.require_scope("transactions:process")
    conditions = []
    if tenant_id:
        conditions.append(Transaction.tenant_id == tenant_id)
    if status:
        if status not in STATUSES:
            raise service._field_error("status", f"status must be one of {', '.join(STATUSES)}")
        conditions.append(Transaction.status == status)
    if provider_code:
        conditions.append(Transaction.provider_code == provider_code)
    if created_from:
        conditions.append(Transaction.created_at >= created_from)
    if created_to:
        conditions.append(Transaction.created_at < created_to)
    q = (q or "").strip()
    if q:
        if q.startswith("trx_"):
            conditions.append(Transaction.id == q)
        else:
            prefix = _like_prefix(q)
            conditions.append(or_(Transaction.ref_id.like(prefix, escape="\\"),
                                  Transaction.customer_no.like(prefix, escape="\\"),
                                  Transaction.provider_ref == q))
    columns = {"created": Transaction.created_at, "price": Transaction.price, "status": Transaction.status,
               "product": Transaction.product_code, "customer": Transaction.customer_no,
               "ref": Transaction.ref_id}
    result = sorted_page(uow, Transaction, conditions, columns=columns, sort=sort, default="-created",
                         page=page, per_page=per_page, few_first=bool(q))
    return dict(result, items=[dict(lifecycle.view(t), tenant_id=t.tenant_id) for t in result.pop("rows")])


def tenant_figures(ctx: CallContext, uow: UnitOfWork, tenant_id: str, *, since: dt.datetime) -> dict[str, Any]:
    """Operator: a tenant's transactions created since ``since``: ``{"count", "by_status":
    {status: count}, "succeeded_amount": {currency: sum of prices}}``."""
    from sqlalchemy import func, select

    from hub.transactions.models import Transaction

    ctx.require_scope("transactions:process")
    rows = uow.session.execute(
        select(Transaction.status, Transaction.currency, func.count(), func.coalesce(func.sum(Transaction.price), 0))
        .where(Transaction.tenant_id == tenant_id, Transaction.created_at >= since)
        .group_by(Transaction.status, Transaction.currency)).all()
    by_status: dict[str, int] = {}
    amount: dict[str, int] = {}
    for status, currency, count, total in rows:
        by_status[status] = by_status.get(status, 0) + count
        if status == "succeeded":
            amount[currency] = amount.get(currency, 0) + int(total)
    return {"count": sum(by_status.values()), "by_status": by_status, "succeeded_amount": amount}


def stats(ctx: CallContext, uow: UnitOfWork, *, since: dt.datetime,
          until: dt.datetime | None = None) -> dict[str, Any]:
    """Operator: figures for the dashboard over ``[since, until)``, every tenant.

    :return: ``{"per_hour": [{"hour": "YYYY-MM-DDTHH:00", "status", "count"}],
        "providers": [{"provider_code", "attempts", "not_sent", "answered", "success", "failed",
        "rejected", "unknown", "success_rate", "latency_ms_avg", "latency_ms_max"}]}`` — per hour:
        the transactions created in that hour by their status now; per provider: its attempts in
        the window, of which ``not_sent`` never left the hub (switched off, breaker open, no
        connection: counted in no other figure), ``rejected`` the provider's own refusals,
        ``success_rate`` = success / (success + failed + rejected) (None when none), latency from
        sent to answered over the answered attempts that were sent.
    """
    from sqlalchemy import func, select

    from hub.transactions.models import Attempt, Transaction

    ctx.require_scope("transactions:process")
    sqlite = uow.session.get_bind().dialect.name == "sqlite"
    if sqlite:
        hour = func.strftime("%Y-%m-%dT%H:00", Transaction.created_at)
        latency = (func.julianday(Attempt.answered_at) - func.julianday(Attempt.sent_at)) * 86_400_000.0
    else:
        hour = func.to_char(func.date_trunc("hour", func.timezone("UTC", Transaction.created_at)),
                            'YYYY-MM-DD"T"HH24:00')
        latency = func.extract("epoch", Attempt.answered_at - Attempt.sent_at) * 1000.0
    trx_window = [Transaction.created_at >= since] + ([Transaction.created_at < until] if until else [])
    per_hour = [{"hour": h, "status": s, "count": int(n)} for h, s, n in uow.session.execute(
        select(hour, Transaction.status, func.count()).where(*trx_window)
        .group_by(hour, Transaction.status).order_by(hour, Transaction.status))]
    att_window = [Attempt.sent_at >= since] + ([Attempt.sent_at < until] if until else [])
    providers: dict[str, dict[str, Any]] = {}
    for code, state, not_sent, n in uow.session.execute(
            select(Attempt.provider_code, Attempt.state, Attempt.not_sent, func.count()).where(*att_window)
            .group_by(Attempt.provider_code, Attempt.state, Attempt.not_sent)):
        row = providers.setdefault(code, {"provider_code": code, "attempts": 0, "not_sent": 0, "answered": 0,
                                          "success": 0, "failed": 0, "rejected": 0, "unknown": 0,
                                          "success_rate": None, "latency_ms_avg": None, "latency_ms_max": None})
        row["attempts"] += int(n)
        if not_sent:
            row["not_sent"] += int(n)
        elif state in ("success", "failed", "rejected", "unknown"):
            row[state] += int(n)
    for code, avg, peak, answered in uow.session.execute(
            select(Attempt.provider_code, func.avg(latency), func.max(latency), func.count())
            .where(*att_window, Attempt.answered_at.is_not(None), Attempt.not_sent.is_(False))
            .group_by(Attempt.provider_code)):
        row = providers[code]
        row["answered"] = int(answered)
        row["latency_ms_avg"] = round(float(avg), 1) if avg is not None else None
        row["latency_ms_max"] = round(float(peak), 1) if peak is not None else None
    for row in providers.values():
        decided = row["success"] + row["failed"] + row["rejected"]
        row["success_rate"] = round(row["success"] / decided, 4) if decided else None
    return {"per_hour": per_hour, "providers": sorted(providers.values(), key=lambda r: r["provider_code"])}
