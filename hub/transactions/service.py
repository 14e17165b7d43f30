"""Use-cases of the transactions service: accepting purchases and inquiries, reading them,
and the operator's actions. Processing (providers, callbacks, status checks) is in
:mod:`hub.transactions.processing`; every status change goes through
:mod:`hub.transactions.lifecycle`.

Accepting a purchase is one database transaction (the caller commits): the transaction row,
the hold on the wallet, the ``transaction.accepted`` event and the ``ProcessTransaction``
command commit together or not at all.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from hub.auth import service_context
from hub.bus import publish
from hub.context import CallContext
from hub.db import UnitOfWork, new_id, utcnow
from hub.errors import Conflict, HubError, NotFound, ServiceUnavailable, ValidationFailed
from hub.scoping import get_owned, tenant_select
from hub.transactions import lifecycle
from hub.transactions.messages import CheckTransactionStatus, ProcessTransaction
from hub.transactions.models import STATUSES, Attempt, Inquiry, TimelineEntry, Transaction

MAX_REF = 255
MAX_CUSTOMER_NO = 64


def fingerprint(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _field_error(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors={field: [message]})


def _check_text(name: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise _field_error(name, f"{name} must be 1-{max_len} characters")
    return value


def normalise_product_code(code: Any) -> str:
    """Product codes are case-insensitive (the catalog's are capitals, hub.products.sync): ``tel10``
    is ``TEL10``, before anything compares or fingerprints it. :raise ValidationFailed: not 1-64 characters."""
    return _check_text("product_code", code, 64).strip().upper()


# -- validation ------------------------------------------------------------------------------
def _product(ctx: CallContext, uow: UnitOfWork, product_code: str) -> dict[str, Any]:
    from hub.products import client as products

    key = ("transactions.product", ctx.tenant_id, product_code)
    product = uow.memo.get(key)
    if product is None:  # once per unit of work (a bulk group buys the same products again and again)
        product = products.get_for_sale(service_context(ctx, "transactions"), uow, product_code)
        if product is not None:
            uow.memo[key] = product
    if product is None:
        raise _field_error("product_code", f"unknown product {product_code!r}")
    if not product.get("active") or product.get("price") is None:
        raise _field_error("product_code", f"product {product_code!r} is not available now")
    return product


def normalize_customer_no(product: dict[str, Any], customer_no: str) -> str:
    """Mobile numbers in their national form (``+62 812…`` → ``0812…``); others as given."""
    from hub.plugins.builtin import MOBILE_TYPES, normalize_msisdn

    if (product.get("category") or "").lower() in MOBILE_TYPES:
        return normalize_msisdn(customer_no) or customer_no.strip()
    return customer_no.strip()


def validate(ctx: CallContext, uow: UnitOfWork, product_code: str, customer_no: str, *,
             product: dict[str, Any] | None = None) -> str | None:
    """The customer-number check (hook ``validate_customer_number``): an error message, or
    None when the number is acceptable. Writes nothing."""
    from hub.providers import client as providers

    if not isinstance(customer_no, str) or not customer_no.strip() or len(customer_no) > MAX_CUSTOMER_NO:
        return f"customer_no must be 1-{MAX_CUSTOMER_NO} characters"
    if product is None:
        product = _product(ctx, uow, product_code)
    return providers.validate_customer_number(product.get("category") or "", product.get("brand"),
                                              customer_no.strip()) or None


# -- accepting -------------------------------------------------------------------------------
def _by_ref(ctx: CallContext, uow: UnitOfWork, ref_id: str) -> Transaction | None:
    return uow.session.scalars(tenant_select(ctx, Transaction).where(Transaction.ref_id == ref_id)).first()


def _replay(trx: Transaction, fp: str) -> tuple[Transaction, bool]:
    if trx.fingerprint != fp:
        raise Conflict(f"ref_id {trx.ref_id!r} was already used for another request", transaction_id=trx.id)
    return trx, False


def checked_request(ref_id: Any, product_code: Any, customer_no: Any, wallet_id: str | None,
                    inquiry_id: str | None) -> tuple[str, str, str]:
    """A purchase request's ``ref_id`` and product code checked, and its fingerprint (a
    replay is the same ``ref_id`` with the same fingerprint). :raise ValidationFailed:"""
    ref_id = _check_text("ref_id", ref_id, MAX_REF)
    product_code = normalise_product_code(product_code)
    if not isinstance(customer_no, str):
        raise _field_error("customer_no", "customer_no must be a string")
    return ref_id, product_code, fingerprint({"product_code": product_code, "customer_no": customer_no,
                                              "wallet_id": wallet_id, "inquiry_id": inquiry_id})


def by_ref(ctx: CallContext, uow: UnitOfWork, ref_id: str, fp: str) -> tuple[Transaction, bool] | None:
    """The answer to a request whose ``ref_id`` the tenant used already: ``(transaction,
    False)`` for the same body, None when the ``ref_id`` is new. :raise Conflict: another body."""
    existing = _by_ref(ctx, uow, ref_id)
    return None if existing is None else _replay(existing, fp)


def submit(ctx: CallContext, uow: UnitOfWork, *, ref_id: str, product_code: str, customer_no: str,
           wallet_id: str | None = None, inquiry_id: str | None = None,
           source: str | None = None, hold_at_commit: bool = False,
           known_new: bool = False, batched: bool = False) -> tuple[Transaction, bool]:
    """Accept a purchase: validate, price, hold, write the transaction and its first command.

    Idempotent by ``(tenant, ref_id)``: the same body again returns the existing transaction
    (``created`` False); another body raises Conflict. Nothing commits here.

    ``hold_at_commit``: place the hold when the unit of work commits (``before_commit``),
    after everything else the caller writes — for callers that submit several purchases in
    one unit of work (bulk), so that the tenant's wallet row is locked once, at the end. A
    refused hold then raises from ``uow.commit()`` with the ``transaction_id`` attribute set.

    ``known_new``: the caller found ``ref_id`` unused in this unit of work (``used_ref_ids``
    for many at once): the look-up is skipped. A concurrent twin still fails at the insert
    and is answered as a replay.

    ``batched`` (with ``hold_at_commit`` and ``known_new``; a bulk group): nothing is written
    until the caller's unit of work flushes or commits — no savepoint, no flush per purchase,
    the wallet read once (``plan_hold(reuse_read=True)``), the messages published at the
    commit — so the purchases of one unit of work are written together. A refusal (422, 402)
    still raises before anything of its purchase is added. A concurrent twin then fails the
    caller's whole flush with ``IntegrityError``: the caller rolls back and submits again
    without ``batched``, where each purchase has its savepoint.

    :return: ``(transaction, created)``.
    :raise ValidationFailed: unknown or unavailable product, bad customer number, bad inquiry.
    :raise InsufficientFunds: the wallet cannot cover the price.
    :raise Conflict: ``ref_id`` reused with another body.
    """
    from hub.wallets import client as wallets

    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    if batched and not (hold_at_commit and known_new):
        raise AssertionError("batched submits place their holds at the commit and know their ref_ids new")
    ref_id, product_code, fp = checked_request(ref_id, product_code, customer_no, wallet_id, inquiry_id)
    existing = None if known_new else _by_ref(ctx, uow, ref_id)
    if existing is not None:
        return _replay(existing, fp)

    product, number, offers, inquiry, price = priced(ctx, uow, product_code, customer_no, inquiry_id)

    # The wallet's checks first, without a lock (404, a plugin's veto, 402 with nothing
    # written); its row is locked last, by the hold itself, so that the lock is held only
    # for the hold's own statements and the commit — every purchase of the tenant queues on it.
    hold_ctx, trx_id = service_context(ctx, "transactions"), new_id("trx")
    currency = product.get("currency") or "IDR"
    try:  # a wallet in another currency is a 422 (wallet_id) before its funds are judged
        plan = wallets.plan_hold(hold_ctx, uow, wallet_id, price, reference=f"transaction:{trx_id}",
                                 reuse_read=batched, currency=currency)
    except NotFound as exc:
        raise _field_error("wallet_id", str(exc)) from None
    trx = new_transaction(ctx, trx_id, ref_id=ref_id, fp=fp, product_code=product_code, product=product,
                          number=number, inquiry=inquiry, wallet_id=plan.wallet_id, hold_id=plan.hold_id,
                          price=price, currency=currency, offers=offers, source=source)

    def hold() -> None:
        try:
            wallets.place_hold(hold_ctx, uow, plan.wallet_id, price, key=trx.id,
                               reference=f"transaction:{trx.id}", plan=plan)
        except HubError as exc:
            exc.transaction_id = trx.id  # type: ignore[attr-defined]  # which purchase, at a commit
            raise

    def write(batch: bool) -> None:
        uow.session.add(trx)
        if inquiry is not None:
            inquiry.transaction_id = trx.id
        lifecycle.note(uow, trx, "status", {"price": price, "hold_id": plan.hold_id},
                       actor=ctx.actor or trx.client_id, to_status="pending")
        if not batch:
            uow.session.flush()  # a concurrent twin with this ref_id fails here, before any hold
        lifecycle.publish_status(ctx, uow, trx, at_commit=batch)
        publish(ctx, uow, ProcessTransaction(transaction_id=trx.id), at_commit=batch)

    if batched:  # written at the caller's flush; an IntegrityError there is the caller's
        write(batch=True)
    else:
        try:
            # One savepoint around everything: a refusal (402, 422) leaves nothing behind in a
            # caller's longer unit of work (bulk submits many in one).
            with uow.session.begin_nested():
                write(batch=False)
                if not hold_at_commit:
                    hold()
        except IntegrityError:
            existing = _by_ref(ctx, uow, ref_id)
            if existing is None:
                raise
            return _replay(existing, fp)
    if hold_at_commit:
        _hold_at_commit(hold_ctx, uow, plan, trx.id, hold)
    return trx, True


def priced(ctx: CallContext, uow: UnitOfWork, product_code: str, customer_no: str,
            inquiry_id: str | None) -> tuple[dict[str, Any], str, list[dict[str, Any]], Inquiry | None, int]:
    """The product (from the process's cache), the customer number checked and normalised,
    the offers, the inquiry paid (postpaid) and the price: what a purchase is accepted with.

    :raise ValidationFailed: unknown or unavailable product, bad customer number, bad inquiry.
    """
    product = _product(ctx, uow, product_code)
    error = validate(ctx, uow, product_code, customer_no, product=product)
    if error:
        raise _field_error("customer_no", error)
    number = normalize_customer_no(product, customer_no)
    offers = list(product.get("offers") or [])
    inquiry = None
    price = int(product["price"])
    if product.get("type") == "postpaid":
        inquiry = _inquiry_for_payment(ctx, uow, inquiry_id, product_code, number)
        price = inquiry.amount
        offers = [o for o in offers if o["config_id"] == inquiry.config_id] or [{
            "config_id": inquiry.config_id, "provider_code": inquiry.provider_code,
            "provider_sku": inquiry.provider_sku, "cost": 0, "priority": 0}]
    elif inquiry_id is not None:
        raise _field_error("inquiry_id", "only postpaid products take an inquiry")
    if not offers:
        raise _field_error("product_code", f"product {product_code!r} is not available now")
    return product, number, offers, inquiry, price


def new_transaction(ctx: CallContext, trx_id: str, *, ref_id: str, fp: str, product_code: str,
                    product: dict[str, Any], number: str, inquiry: Inquiry | None, wallet_id: str,
                    hold_id: str, price: int, currency: str, offers: list[dict[str, Any]],
                    source: str | None) -> Transaction:
    """A new transaction's row (not added to any session)."""
    now = utcnow()
    return Transaction(id=trx_id, tenant_id=ctx.tenant_id, client_id=ctx.on_behalf_of or ctx.client_id,
                       ref_id=ref_id, fingerprint=fp, product_code=product_code,
                       product_type=product.get("type") or "prepaid", category=product.get("category"),
                       customer_no=number, inquiry_id=inquiry.id if inquiry else None,
                       wallet_id=wallet_id, hold_id=hold_id, price=price, currency=currency,
                       status="pending", offers=[{k: o.get(k) for k in ("config_id", "provider_code",
                                                                        "provider_sku", "cost", "priority")}
                                                 for o in offers],
                       attempt_count=0, check_count=0, source=source, created_at=now, updated_at=now,
                       next_check_at=now + dt.timedelta(seconds=lifecycle.settings().redrive_after))


def _hold_at_commit(hold_ctx: CallContext, uow: UnitOfWork, plan, transaction_id: str, hold) -> None:
    """Place the hold when ``uow`` commits; the holds of one unit of work (a bulk group) are
    placed together (``wallets.place_holds``: the wallet's balances move once), or, when they
    cannot all be (funds for only some of them, a key used before), one by one in their
    order, so that the first one refused names its transaction."""
    from hub.wallets import client as wallets

    def place_all(batch: list) -> None:
        if len(batch) > 1 and wallets.place_holds(hold_ctx, uow, [
                (plan_, trx_id, f"transaction:{trx_id}") for plan_, trx_id, _ in batch]) is not None:
            return
        for _plan, _trx_id, one in batch:
            one()

    uow.before_commit_batch(("transactions.holds", hold_ctx.tenant_id), (plan, transaction_id, hold), place_all)


def _inquiry_for_payment(ctx: CallContext, uow: UnitOfWork, inquiry_id: str | None, product_code: str,
                         customer_no: str) -> Inquiry:
    if not inquiry_id:
        raise _field_error("inquiry_id", "a postpaid payment needs the inquiry_id of its bill")
    inquiry = uow.session.scalars(tenant_select(ctx, Inquiry).where(Inquiry.id == inquiry_id)
                                  .with_for_update()).first()
    if inquiry is None:
        raise _field_error("inquiry_id", f"inquiry {inquiry_id!r} not found")
    if inquiry.product_code != product_code or inquiry.customer_no != customer_no:
        raise _field_error("inquiry_id", "the inquiry is for another product or customer number")
    if inquiry.transaction_id is not None:
        raise _field_error("inquiry_id", f"the bill was already paid by {inquiry.transaction_id}")
    if inquiry.expires_at <= utcnow():
        raise _field_error("inquiry_id", "the inquiry expired; make a new one")
    return inquiry


def used_ref_ids(ctx: CallContext, uow: UnitOfWork, ref_ids: list[str]) -> set[str]:
    """Which of ``ref_ids`` this tenant used already (bulk validation: a few queries)."""
    found: set[str] = set()
    ids = list(dict.fromkeys(ref_ids))
    for start in range(0, len(ids), 500):
        found.update(uow.session.scalars(select(Transaction.ref_id).where(
            Transaction.tenant_id == ctx.tenant_id, Transaction.ref_id.in_(ids[start:start + 500]))))
    return found


# -- inquiries -------------------------------------------------------------------------------
def inquire(ctx: CallContext, uow: UnitOfWork, product_code: str, customer_no: str) -> Inquiry:
    """Look up a postpaid bill at the product's providers (first definitive answer wins).

    The provider is called with the unit of work's transaction ended (no connection held);
    the inquiry row is written after. Nothing commits here after that.

    :raise ValidationFailed: not a postpaid product, bad number, or the provider says no bill.
    :raise ServiceUnavailable: no provider answered.
    """
    from hub.providers import client as providers

    product_code = normalise_product_code(product_code)
    product = _product(ctx, uow, product_code)
    if product.get("type") != "postpaid":
        raise _field_error("product_code", f"product {product_code!r} is not a postpaid bill")
    error = validate(ctx, uow, product_code, customer_no, product=product)
    if error:
        raise _field_error("customer_no", error)
    number = normalize_customer_no(product, customer_no)
    candidates = [providers.Route(config_id=o["config_id"], provider_code=o["provider_code"],
                                  sku=o["provider_sku"], cost=int(o.get("cost") or 0),
                                  priority=int(o.get("priority") or 0))
                  for o in product.get("offers") or []]
    from hub.transactions.processing import preload_configs

    loaded = preload_configs(uow, ctx.tenant_id)
    routes = providers.routes_for(uow, ctx, product_code, candidates)
    inquiry_id = new_id("inq")
    uow.commit()  # end the read before calling providers (the configurations stay in memory)
    last = "no provider is available for this product now"
    for route in routes:
        reference = f"{inquiry_id}-{route.config_id[-6:]}"
        try:
            result = providers.inquiry(uow, route.config_id, providers.InquiryRequest(
                ref_id=reference, sku=route.sku, customer_no=number), tenant_id=ctx.tenant_id)
        finally:
            uow.commit()
        state = result.state.value
        if state == "success":
            bill = int(result.data.get("amount") or 0)
            if bill <= 0:
                last = "the provider gave no bill amount"
                continue
            expires = utcnow() + dt.timedelta(seconds=lifecycle.settings().inquiry_ttl)
            details = {k: v for k, v in result.data.items() if k not in ("amount", "customer_name")}
            inquiry = Inquiry(id=inquiry_id, tenant_id=ctx.tenant_id, product_code=product_code,
                              customer_no=number, config_id=route.config_id, provider_code=route.provider_code,
                              provider_sku=route.sku, reference=reference,
                              amount=bill + int(product["price"]), bill_amount=bill,
                              currency=product.get("currency") or "IDR",
                              customer_name=result.data.get("customer_name"),
                              details=dict(details, fee=int(product["price"])), expires_at=expires)
            uow.session.add(inquiry)
            uow.session.flush()
            return inquiry
        if state == "failed":
            raise _field_error("customer_no", result.message or "no bill for this customer number")
        last = result.message or state  # rejected or unknown: a lookup may ask elsewhere
    del loaded
    raise ServiceUnavailable(f"no provider could look up the bill: {last}")


def inquiry_view(inquiry: Inquiry) -> dict[str, Any]:
    return {"id": inquiry.id, "product_code": inquiry.product_code, "customer_no": inquiry.customer_no,
            "amount": inquiry.amount, "currency": inquiry.currency, "customer_name": inquiry.customer_name,
            "details": dict(inquiry.details or {}, bill_amount=inquiry.bill_amount),
            "expires_at": inquiry.expires_at, "transaction_id": inquiry.transaction_id,
            "created_at": inquiry.created_at}


# -- reading ---------------------------------------------------------------------------------
def get(ctx: CallContext, uow: UnitOfWork, transaction_id: str) -> Transaction:
    """One of the tenant's transactions (404 for another tenant's)."""
    return get_owned(uow.session, ctx, Transaction, transaction_id)


def timeline(uow: UnitOfWork, trx: Transaction) -> list[dict[str, Any]]:
    rows = uow.session.scalars(select(TimelineEntry).where(TimelineEntry.transaction_id == trx.id)
                               .order_by(TimelineEntry.id))
    return [{"at": r.at, "kind": r.kind, "from_status": r.from_status, "to_status": r.to_status,
             "detail": r.detail or {}, "actor": r.actor} for r in rows]


def attempts(uow: UnitOfWork, trx: Transaction) -> list[dict[str, Any]]:
    rows = uow.session.scalars(select(Attempt).where(Attempt.transaction_id == trx.id).order_by(Attempt.seq))
    return [{"attempt": a.seq, "provider_code": a.provider_code, "config_id": a.config_id,
             "provider_sku": a.provider_sku, "reference": a.reference, "state": a.state,
             "provider_ref": a.provider_ref, "response_code": a.response_code, "message": a.message,
             "sent_at": a.sent_at, "answered_at": a.answered_at} for a in rows]


def _encode_cursor(trx: Transaction) -> str:
    raw = f"{trx.created_at.isoformat()}|{trx.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, ident = raw.split("|", 1)
        return dt.datetime.fromisoformat(at), ident
    except (ValueError, UnicodeDecodeError):
        raise _field_error("cursor", "invalid cursor") from None


def list_(ctx: CallContext, uow: UnitOfWork, *, ref_id: str | None = None, status: str | None = None,
          product_code: str | None = None, customer_no: str | None = None, source: str | None = None,
          created_from: dt.datetime | None = None, created_to: dt.datetime | None = None,
          cursor: str | None = None, limit: int = 50) -> tuple[list[Transaction], str | None]:
    """The tenant's transactions, newest first, filtered; cursor-paginated.

    :param source: exact, or a prefix when it ends with ``*`` (``bulk:job_1:*``).
    """
    stmt = tenant_select(ctx, Transaction)
    if ref_id:
        stmt = stmt.where(Transaction.ref_id == ref_id)
    if status:
        if status not in STATUSES:
            raise _field_error("status", f"status must be one of {', '.join(STATUSES)}")
        stmt = stmt.where(Transaction.status == status)
    if product_code:
        stmt = stmt.where(Transaction.product_code == product_code.strip().upper())
    if customer_no:
        stmt = stmt.where(Transaction.customer_no == customer_no)
    if source:
        stmt = stmt.where(Transaction.source.startswith(source[:-1]) if source.endswith("*")
                          else Transaction.source == source)
    if created_from:
        stmt = stmt.where(Transaction.created_at >= created_from)
    if created_to:
        stmt = stmt.where(Transaction.created_at < created_to)
    if cursor:
        at, ident = _decode_cursor(cursor)
        stmt = stmt.where(or_(Transaction.created_at < at, (Transaction.created_at == at) & (Transaction.id < ident)))
    rows = list(uow.session.scalars(stmt.order_by(Transaction.created_at.desc(), Transaction.id.desc())
                                    .limit(limit + 1)))
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


# -- operator actions ------------------------------------------------------------------------
def _operated(ctx: CallContext, uow: UnitOfWork, transaction_id: str) -> Transaction:
    """The transaction an operator acts on, locked: the ctx's tenant's, or any for a platform operator."""
    ctx.require_scope("transactions:process")
    trx = lifecycle.lock(uow, transaction_id)
    if trx is None or (ctx.tenant_id is not None and trx.tenant_id != ctx.tenant_id):
        raise NotFound(f"transaction {transaction_id!r} not found")
    return trx


def _audit(ctx: CallContext, uow: UnitOfWork, action: str, trx: Transaction, before: dict, after: dict) -> None:
    from hub.tenancy.service import record_audit

    record_audit(ctx, uow, action, tenant_id=trx.tenant_id, target_type="transaction", target_id=trx.id,
                 before=before, after=after)


def _reason(reason: Any) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise _field_error("reason", "a reason is required")
    return reason.strip()[:1000]


def recheck(ctx: CallContext, uow: UnitOfWork, transaction_id: str) -> Transaction:
    """Ask the provider again about a ``review`` (or processing) transaction's current attempt."""
    trx = _operated(ctx, uow, transaction_id)
    attempt = lifecycle.current_attempt(uow, trx)
    if trx.status not in ("review", "processing") or attempt is None or attempt.state not in lifecycle.OPEN_ATTEMPT:
        raise Conflict(f"transaction {trx.id} is {trx.status}: there is no open provider outcome to check")
    lifecycle.note(uow, trx, "operator", {"action": "recheck", "attempt": attempt.seq}, actor=ctx.actor)
    _audit(ctx, uow, "transaction.recheck", trx, {"status": trx.status}, {"status": trx.status})
    publish(lifecycle.tenant_ctx(trx, actor=ctx.actor), uow,
            CheckTransactionStatus(transaction_id=trx.id, attempt=attempt.seq, force=True))
    return trx


def resolve(ctx: CallContext, uow: UnitOfWork, transaction_id: str, outcome: str, reason: str) -> Transaction:
    """Settle a ``review`` transaction by hand: ``succeeded`` captures, ``failed`` voids."""
    reason = _reason(reason)
    if outcome not in ("succeeded", "failed"):
        raise _field_error("outcome", "outcome must be succeeded or failed")
    trx = _operated(ctx, uow, transaction_id)
    if trx.status != "review":
        raise Conflict(f"transaction {trx.id} is {trx.status}, not review")
    before = {"status": trx.status}
    actor = ctx.actor or ctx.client_id
    lifecycle.transition(lifecycle.tenant_ctx(trx, actor=actor), uow, trx, outcome,
                         error=None if outcome == "succeeded" else f"resolved by an operator: {reason}",
                         actor=actor, detail={"reason": reason, "operator": actor})
    _audit(ctx, uow, "transaction.resolve", trx, before, {"status": trx.status, "reason": reason})
    return trx


def refund(ctx: CallContext, uow: UnitOfWork, transaction_id: str, reason: str) -> Transaction:
    """Refund a succeeded transaction: the capture is reversed through the ledger."""
    reason = _reason(reason)
    trx = _operated(ctx, uow, transaction_id)
    if trx.status != "succeeded":
        raise Conflict(f"transaction {trx.id} is {trx.status}; only a succeeded one can be refunded")
    actor = ctx.actor or ctx.client_id
    lifecycle.transition(lifecycle.tenant_ctx(trx, actor=actor), uow, trx, "refunded",
                         error=f"refunded by an operator: {reason}", actor=actor,
                         detail={"reason": reason, "operator": actor})
    _audit(ctx, uow, "transaction.refund", trx, {"status": "succeeded"}, {"status": trx.status, "reason": reason})
    return trx


def _operated_read(uow: UnitOfWork, transaction_id: str) -> Transaction:
    """Any tenant's transaction, for a platform operator's read (the caller checked the scope)."""
    trx = uow.session.get(Transaction, transaction_id)
    if trx is None:
        raise NotFound(f"transaction {transaction_id!r} not found")
    return trx
