"""Use-cases of the transactions service: accepting purchases and inquiries, reading them,
and the operator's actions. Processing (providers, callbacks, status checks) is in
:mod:`hub.transactions.driver` and :mod:`hub.transactions.handlers`; every status change goes through
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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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
T = TypeVar("T")


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
#: every column of the transactions table, by attribute name
TRANSACTION_COLUMNS = tuple(c.key for c in Transaction.__table__.columns)


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
@dataclass(frozen=True)
class Purchase:
    """One purchase of :func:`submit_many`: the body of ``POST /v1/transactions`` on the
    tenant's main wallet (no ``wallet_id``; no ``inquiry_id``: a postpaid payment, which
    locks its bill, is refused as without its inquiry), and the ``source`` kept on the
    transaction (bulk: ``bulk:<job>:<row>``). ``lane``: ``bulk`` sends its processing to
    the provider queue's bulk lane, served after the API's purchases (hub.queues)."""
    ref_id: str
    product_code: str
    customer_no: str
    source: str | None = None
    lane: str | None = None


@dataclass(frozen=True)
class Accepted(Generic[T]):
    """A purchase accepted: ``transaction`` (the row here, its view through the client) was
    created by this call (``created``), or is the one a replay of the same request answers
    (``created`` False: the same ``ref_id`` and body as before)."""
    transaction: T
    created: bool


@dataclass(frozen=True)
class Refused:
    """A purchase refused, nothing of it written: ``error`` is what the API answers (422,
    402, 403, 409)."""
    ref_id: str
    error: HubError


def _by_ref(ctx: CallContext, uow: UnitOfWork, ref_id: str) -> Transaction | None:
    return uow.session.scalars(tenant_select(ctx, Transaction).where(Transaction.ref_id == ref_id)).first()


def _replay(trx: Transaction, fp: str) -> Accepted[Transaction]:
    if trx.fingerprint != fp:
        raise Conflict(f"ref_id {trx.ref_id!r} was already used for another request", transaction_id=trx.id)
    return Accepted(trx, False)


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


def by_ref(ctx: CallContext, uow: UnitOfWork, ref_id: str, fp: str) -> Accepted[Transaction] | None:
    """The answer to a request whose ``ref_id`` the tenant used already: the transaction,
    not ``created``, for the same body; None when the ``ref_id`` is new. :raise Conflict: another body."""
    existing = _by_ref(ctx, uow, ref_id)
    return None if existing is None else _replay(existing, fp)


def submit(ctx: CallContext, uow: UnitOfWork, *, ref_id: str, product_code: str, customer_no: str,
           wallet_id: str | None = None, inquiry_id: str | None = None,
           source: str | None = None) -> Accepted[Transaction]:
    """Accept one purchase in ``uow`` (the API's Python path: SQLite, postpaid payments; the
    client's ``submit``): validate, price, write the transaction and its first command, and
    place the hold when ``uow`` commits. Nothing commits here.

    Idempotent by ``(tenant, ref_id)``: the same body again is answered with the existing
    transaction (``created`` False), also when a concurrent twin commits first (its insert
    fails under a savepoint and the twin is looked up). Everything of the purchase but its
    hold is written at once, under that savepoint; a refusal leaves nothing behind, also in
    a caller's longer unit of work.

    The wallet is checked first, without a lock (404 as a 422, a plugin's veto, 402 now);
    the hold itself is placed at :meth:`UnitOfWork.commit`, after everything else the caller
    wrote, so that the wallet row — every purchase of the tenant queues on it — is locked
    for the hold's statements and the COMMIT only. The holds of several purchases of one
    unit of work are placed together. When the funds went meanwhile, ``uow.commit()`` raises
    the 402 (InsufficientFunds) with its ``transaction_id`` attribute naming the purchase.

    :return: the transaction and whether this call created it.
    :raise ValidationFailed: unknown or unavailable product, bad customer number, wallet, inquiry.
    :raise InsufficientFunds: the wallet cannot cover the price. :raise Forbidden: a plugin vetoed it.
    :raise Conflict: ``ref_id`` reused with another body.
    """
    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    ref_id, product_code, fp = checked_request(ref_id, product_code, customer_no, wallet_id, inquiry_id)
    existing = _by_ref(ctx, uow, ref_id)
    if existing is not None:
        return _replay(existing, fp)
    hold_ctx = service_context(ctx, "transactions")
    trx, inquiry, plan = _prepared(ctx, uow, hold_ctx, ref_id=ref_id, fp=fp, product_code=product_code,
                                   customer_no=customer_no, wallet_id=wallet_id, inquiry_id=inquiry_id,
                                   source=source, reuse_read=False)
    try:
        with uow.session.begin_nested():
            _add(ctx, uow, trx, inquiry, plan)
            uow.session.flush()  # a concurrent twin with this ref_id fails here, before any hold
            _first_messages(ctx, uow, trx, at_commit=False)
    except IntegrityError:
        existing = _by_ref(ctx, uow, ref_id)
        if existing is None:
            raise
        return _replay(existing, fp)
    _hold_at_commit(hold_ctx, uow, plan, trx.id)
    return Accepted(trx, True)


def submit_many(ctx: CallContext, uow: UnitOfWork,
                purchases: Sequence[Purchase]) -> list[Accepted[Transaction] | Refused]:
    """Accept a group of purchases (a bulk group) in ``uow``, written together; the caller commits.

    :return: one answer per purchase, in their order: :class:`Accepted` (``created``, or a
        replay of a ``ref_id`` used before — also by an earlier purchase of the same call —
        with the same body) or :class:`Refused` (422, 402, 403 of this purchase, 409 a
        ``ref_id`` used for another body): nothing of a refused purchase is written, and the
        others are answered as if it had not been asked.

    Every accepted purchase is the same rows as :func:`submit`'s, written as cheaply as a
    group allows: the ``ref_id``s are looked up by one query; the new transactions and their
    timeline lines are only added to the session (written by the caller's next flush, at
    the latest its commit — no savepoint, no flush per purchase: autoflush is off here); the
    wallet is read once for all of their plans (each judged against that balance); their
    messages are published at the commit (one executemany); their holds are placed at the
    commit, together, the wallet row locked once and last — when the funds do not cover them
    all, one by one in their order, and the first refused raises from ``uow.commit()`` its
    402 with the ``transaction_id`` attribute naming its purchase.

    A ``ref_id`` another request takes between the look-up and the caller's flush (a
    concurrent twin; it has committed once the insert meets it) fails that flush with
    ``IntegrityError``: the caller rolls back and calls again — the new look-up finds the
    twin, answered as that purchase's replay or 409.
    """
    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    hold_ctx = service_context(ctx, "transactions")
    checked: list[tuple[str, str, str] | Refused] = []
    for purchase in purchases:
        try:
            checked.append(checked_request(purchase.ref_id, purchase.product_code, purchase.customer_no, None, None))
        except HubError as exc:
            checked.append(Refused(purchase.ref_id, exc))
    known = _by_refs(ctx, uow, [c[0] for c in checked if not isinstance(c, Refused)])
    answers: list[Accepted[Transaction] | Refused] = []
    with uow.session.no_autoflush:
        for purchase, check in zip(purchases, checked):
            if isinstance(check, Refused):
                answers.append(check)
                continue
            ref_id, product_code, fp = check
            try:
                if ref_id in known:
                    answers.append(_replay(known[ref_id], fp))
                    continue
                trx, _inquiry, plan = _prepared(ctx, uow, hold_ctx, ref_id=ref_id, fp=fp, product_code=product_code,
                                                customer_no=purchase.customer_no, wallet_id=None, inquiry_id=None,
                                                source=purchase.source, reuse_read=True)
            except HubError as exc:
                answers.append(Refused(purchase.ref_id, exc))
                continue
            _add(ctx, uow, trx, None, plan)
            _first_messages(ctx, uow, trx, at_commit=True, lane=purchase.lane)
            _hold_at_commit(hold_ctx, uow, plan, trx.id)
            known[ref_id] = trx
            answers.append(Accepted(trx, True))
    return answers


#: ``ref_id``s per look-up query (an ``IN`` list)
_REFS_PER_QUERY = 500


def _ref_chunks(ref_ids: list[str]):
    """``ref_ids`` without repeats, in lists of at most :data:`_REFS_PER_QUERY`."""
    ids = list(dict.fromkeys(ref_ids))
    for start in range(0, len(ids), _REFS_PER_QUERY):
        yield ids[start:start + _REFS_PER_QUERY]


def _by_refs(ctx: CallContext, uow: UnitOfWork, ref_ids: list[str]) -> dict[str, Transaction]:
    """The tenant's transactions of ``ref_ids`` (a few queries), by ``ref_id``."""
    found: dict[str, Transaction] = {}
    for chunk in _ref_chunks(ref_ids):
        found.update((t.ref_id, t) for t in uow.session.scalars(
            tenant_select(ctx, Transaction).where(Transaction.ref_id.in_(chunk))))
    return found


def _prepared(ctx: CallContext, uow: UnitOfWork, hold_ctx: CallContext, *, ref_id: str, fp: str,
              product_code: str, customer_no: str, wallet_id: str | None, inquiry_id: str | None,
              source: str | None, reuse_read: bool) -> tuple[Transaction, Inquiry | None, Any]:
    """A new purchase checked and priced, its hold planned, its row made (nothing written).

    The wallet's checks come first, without a lock (404, a plugin's veto, 402 with nothing
    written); its row is locked last, by the hold at the commit, so that the lock is held
    only for the hold's own statements and the commit. ``reuse_read``: the wallet as an
    earlier plan of ``uow`` read it (``plan_hold``'s).

    :return: the transaction, the inquiry it pays (postpaid), the hold's plan.
    :raise HubError: the purchase is refused.
    """
    from hub.wallets import client as wallets

    product, number, offers, inquiry, price = priced(ctx, uow, product_code, customer_no, inquiry_id)
    trx_id = new_id("trx")
    currency = product.get("currency") or "IDR"
    try:  # a wallet in another currency is a 422 (wallet_id) before its funds are judged
        plan = wallets.plan_hold(hold_ctx, uow, wallet_id, price, reference=f"transaction:{trx_id}",
                                 reuse_read=reuse_read, currency=currency)
    except NotFound as exc:
        raise _field_error("wallet_id", str(exc)) from None
    trx = new_transaction(ctx, trx_id, ref_id=ref_id, fp=fp, product_code=product_code, product=product,
                          number=number, inquiry=inquiry, wallet_id=plan.wallet_id, hold_id=plan.hold_id,
                          price=price, currency=currency, offers=offers, source=source)
    return trx, inquiry, plan


def _add(ctx: CallContext, uow: UnitOfWork, trx: Transaction, inquiry: Inquiry | None, plan: Any) -> None:
    """A new purchase's rows added to the session: the transaction, its bill paid, its first timeline line."""
    uow.session.add(trx)
    if inquiry is not None:
        inquiry.transaction_id = trx.id
    lifecycle.note(uow, trx, "status", {"price": trx.price, "hold_id": plan.hold_id},
                   actor=ctx.actor or trx.client_id, to_status="pending")


def _first_messages(ctx: CallContext, uow: UnitOfWork, trx: Transaction, *, at_commit: bool,
                    lane: str | None = None) -> None:
    """``transaction.accepted`` and the ``ProcessTransaction`` command (``at_commit``: hub.bus.publish's;
    ``lane``: the command's, ProcessTransaction.queue_for)."""
    lifecycle.publish_status(ctx, uow, trx, at_commit=at_commit)
    command = ProcessTransaction(transaction_id=trx.id, lane=lane) if lane else ProcessTransaction(transaction_id=trx.id)
    publish(ctx, uow, command, at_commit=at_commit)


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
    return Transaction(**new_transaction_values(
        ctx, trx_id, ref_id=ref_id, fp=fp, product_code=product_code, product=product, number=number,
        inquiry=inquiry, wallet_id=wallet_id, hold_id=hold_id, price=price, currency=currency, offers=offers,
        source=source))


def new_transaction_values(ctx: CallContext, trx_id: str, *, ref_id: str, fp: str, product_code: str,
                           product: dict[str, Any], number: str, inquiry: Inquiry | None, wallet_id: str,
                           hold_id: str, price: int, currency: str, offers: list[dict[str, Any]],
                           source: str | None) -> dict[str, Any]:
    """A new transaction's values, by column (the columns it has no value for yet left out:
    :func:`written_transaction` sets them to None)."""
    now = utcnow()
    return {"id": trx_id, "tenant_id": ctx.tenant_id, "client_id": ctx.on_behalf_of or ctx.client_id,
            "ref_id": ref_id, "fingerprint": fp, "product_code": product_code,
            "product_type": product.get("type") or "prepaid", "category": product.get("category"),
            "customer_no": number, "inquiry_id": inquiry.id if inquiry else None, "wallet_id": wallet_id,
            "hold_id": hold_id, "price": price, "currency": currency, "status": "pending",
            "offers": [{k: o.get(k) for k in ("config_id", "provider_code", "provider_sku", "cost", "priority")}
                       for o in offers],
            "attempt_count": 0, "check_count": 0, "source": source, "created_at": now, "updated_at": now,
            "next_check_at": now + dt.timedelta(seconds=lifecycle.settings().redrive_after)}


def written_transaction(values: dict[str, Any]) -> Transaction:
    """A Transaction holding ``values`` as written by a statement of its own (the accept
    function), read like any other: in no session, its attributes set without the ORM's
    change tracking (it records no change of its own). The accept path only reads it; it is
    not for adding to a session."""
    trx = Transaction.__mapper__.class_manager.new_instance()
    trx.__dict__.update(dict.fromkeys(TRANSACTION_COLUMNS), **values)
    return trx


def _hold_at_commit(hold_ctx: CallContext, uow: UnitOfWork, plan, transaction_id: str) -> None:
    """Place the hold of ``plan`` (key: the transaction's id) when ``uow`` commits; the holds
    of one unit of work (a bulk group) are placed together (``wallets.place_holds``: the
    wallet's balances move once), or, when they cannot all be (funds for only some of them, a
    key used before), one by one in their order, so that the first one refused names its
    transaction (its ``transaction_id`` attribute)."""
    from hub.wallets import client as wallets

    def hold() -> None:
        try:
            wallets.place_hold(hold_ctx, uow, plan.wallet_id, plan.amount, key=transaction_id,
                               reference=f"transaction:{transaction_id}", plan=plan)
        except HubError as exc:
            exc.transaction_id = transaction_id  # type: ignore[attr-defined]  # which purchase, at a commit
            raise

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
    for chunk in _ref_chunks(ref_ids):
        found.update(uow.session.scalars(select(Transaction.ref_id).where(
            Transaction.tenant_id == ctx.tenant_id, Transaction.ref_id.in_(chunk))))
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
    from hub.transactions.calls import preload_configs

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
