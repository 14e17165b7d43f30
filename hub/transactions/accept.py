"""Accepting a purchase: one primitive per database engine (docs/transactions.md, "Accepting").

- **PostgreSQL**: one call of the ``rop_accept_v2`` function (migration 0027), in
  autocommit when the unit of work has not begun (the steady state), else in its
  transaction, committed by the caller. Everything it needs comes from the process's
  caches — the product, its price and offers (hub.cache via the products client), the
  wallet's id and currency (hub.wallets.fastpath), whether the tenant has a webhook (hub.cache)
  — so a warm process sends that one statement (the relay process takes the outbox row;
  without one, the web worker's background relay sends it: hub.bus.relay).
  The function writes the transaction, its timeline line, the hold's journal, row and
  entries, the event-store, outbox and webhook-delivery rows, and moves the wallet's
  balances last — only a wallet of the purchase's tenant in its currency (else 422, the
  cache entry dropped); a ``ref_id`` used before is answered from the function's result
  (the same body: a replay; another: 409); refused funds roll everything back (402).
- **SQLite** (one writer at a time) and postpaid payments (their inquiry is locked and
  updated): :func:`hub.transactions.service.submit` (its hold placed at the commit).

Both write the same rows (tests/transactions/test_accept_function.py compares them).
"""
from __future__ import annotations

import orjson
from sqlalchemy.exc import DBAPIError

from hub.auth import service_context
from hub.bus.outbox import staged_rows
from hub.context import CallContext
from hub.db import UnitOfWork, new_id, utcnow
from hub.driver import call_in_autocommit
from hub.errors import Conflict, HubError, InsufficientFunds, NotFound
from hub.transactions import lifecycle, service
from hub.transactions.messages import EVENT_FOR_STATUS, ProcessTransaction
from hub.transactions.models import Transaction

#: the function this release calls (a changed function gets a new name: rolling deploys)
FUNCTION = "rop_accept_v2"
_CALL = f"SELECT {FUNCTION}(%s::jsonb)"
#: the SQLSTATE the function raises when the wallet's funds do not cover the price
REFUSED_FUNDS = "RP402"
#: ... and when the hold's wallet is not the purchase's tenant's in the purchase's currency
#: (the caller's checks say it is: only a wrong cache entry gets there; defence in depth)
NOT_THE_TENANTS_WALLET = "RP404"


def primitive_for(uow: UnitOfWork) -> str:
    """``function`` on PostgreSQL, ``python`` elsewhere."""
    return "function" if uow.session.get_bind().dialect.name == "postgresql" else "python"


def accept(ctx: CallContext, uow: UnitOfWork, *, ref_id: str, product_code: str, customer_no: str,
           wallet_id: str | None = None, inquiry_id: str | None = None, source: str | None = None,
           primitive: str | None = None) -> tuple[Transaction, bool]:
    """Accept a purchase (``POST /v1/transactions``) in ``uow``; the caller commits.

    :param primitive: ``function`` or ``python`` (tests compare them); by default the engine's.
    :return: ``(transaction, created)``: ``created`` False for a replay of the same request.
    :raise ValidationFailed: unknown or unavailable product, bad customer number, wallet, inquiry.
    :raise InsufficientFunds: the wallet cannot cover the price (nothing is written).
    :raise Forbidden: a plugin vetoed the debit. :raise Conflict: ``ref_id`` reused with another body.
    """
    if (primitive or primitive_for(uow)) == "python" or inquiry_id is not None:
        accepted = service.submit(ctx, uow, ref_id=ref_id, product_code=product_code, customer_no=customer_no,
                                  wallet_id=wallet_id, inquiry_id=inquiry_id, source=source)
        return accepted.transaction, accepted.created
    from hub.wallets import fastpath

    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    ref_id, product_code, fp = service.checked_request(ref_id, product_code, customer_no, wallet_id, None)
    hold_ctx, trx_id, hold_id = service_context(ctx, "transactions"), new_id("trx"), new_id("hld")
    reference = f"transaction:{trx_id}"
    try:
        product, number, offers, _inquiry, price = service.priced(ctx, uow, product_code, customer_no, None)
        currency = product.get("currency") or "IDR"
        try:
            target = fastpath.hold_target(hold_ctx, uow, wallet_id, price, currency=currency, reference=reference)
        except NotFound as exc:
            raise service._field_error("wallet_id", str(exc)) from None
    except HubError:
        # The Python path answers a ref_id used before ahead of any check: so does this one
        # when a check refuses the request (a look-up, on this rare path only).
        answer = service.by_ref(ctx, uow, ref_id, fp)
        if answer is not None:
            return answer.transaction, answer.created
        raise
    values = service.new_transaction_values(
        ctx, trx_id, ref_id=ref_id, fp=fp, product_code=product_code, product=product, number=number, inquiry=None,
        wallet_id=target.wallet_id, hold_id=hold_id, price=price, currency=currency, offers=offers, source=source)
    trx = service.written_transaction(values)  # the function writes it: nothing tracks its changes
    journal, hold, hold_placed = fastpath.hold_rows(hold_ctx, target, price, key=trx_id, reference=reference,
                                                    hold_id=hold_id, now=utcnow())
    timeline = {"transaction_id": trx_id, "tenant_id": ctx.tenant_id, "kind": "status", "from_status": None,
                "to_status": "pending", "detail": {"price": price, "hold_id": hold_id},
                "actor": ctx.actor or trx.client_id, "at": utcnow()}
    # the messages are built from the hub's own values: not validated again (Message.built)
    messages, written = staged_rows(uow, [(ctx, EVENT_FOR_STATUS["pending"].built(**lifecycle.view(trx))),
                                          (ctx, ProcessTransaction.built(transaction_id=trx_id)),
                                          (hold_ctx, hold_placed)])
    row = {k: trx.__dict__[k] for k in service.TRANSACTION_COLUMNS}
    call = {"transaction": row, "timeline": timeline, "journal": journal, "hold": hold, "entries_at": utcnow(),
            **messages}
    # Nothing read or written in this unit of work yet (the steady state): the call commits by
    # itself (autocommit) on a pooled connection of its own, one round trip instead of BEGIN,
    # the call and COMMIT. Otherwise (a cold cache read, a main wallet made now) it joins the
    # unit of work's transaction.
    # orjson: the argument (about 5 KB: the rows and three envelopes) in a tenth of the
    # standard library's time, datetimes as isoformat() writes them
    payload = orjson.dumps(call, option=orjson.OPT_NON_STR_KEYS).decode()
    try:
        if uow.session.in_transaction():
            result = uow.session.connection().exec_driver_sql(_CALL, (payload,)).scalar_one()
        else:
            result = call_in_autocommit(uow.session.get_bind(), _CALL, (payload,))
    except DBAPIError as exc:
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate not in (REFUSED_FUNDS, NOT_THE_TENANTS_WALLET):
            raise
        uow.rollback()
        if sqlstate == NOT_THE_TENANTS_WALLET:  # the process's cache was wrong: forget it, say 422 as for any other
            fastpath.forget(ctx.tenant_id, wallet_id)
            raise service._field_error("wallet_id", f"wallet {target.wallet_id!r} not found") from None
        available = int(exc.orig.diag.message_detail or 0)
        refused = InsufficientFunds(f"wallet {target.wallet_id} has {available} {currency} available, "
                                    f"{price} needed", available=available, needed=price)
        refused.transaction_id = trx_id  # type: ignore[attr-defined]  # as the Python path's
        raise refused from None
    if not result["created"]:
        if result["fingerprint"] != fp:
            raise Conflict(f"ref_id {ref_id!r} was already used for another request", transaction_id=result["id"])
        return service.get(ctx, uow, result["id"]), False
    written()
    return trx, True

