"""Where a transaction's next purchase goes: its route (the usable configurations of its
offers, in the ``route_transaction`` hook's order, decided once) and the next offer of it."""
from __future__ import annotations

from hub.db import UnitOfWork
from hub.providers import client as providers
from hub.transactions import lifecycle
from hub.transactions.calls import Step
from hub.transactions.models import Attempt, Inquiry, Transaction


def route(uow: UnitOfWork, trx: Transaction) -> list[str]:
    """The configuration ids to try, in order: usable ones through the ``route_transaction`` hook."""
    candidates = [providers.Route(config_id=o["config_id"], provider_code=o["provider_code"],
                                  sku=o["provider_sku"], cost=int(o.get("cost") or 0),
                                  priority=int(o.get("priority") or 0))
                  for o in trx.offers or []]
    ordered = providers.routes_for(uow, lifecycle.tenant_ctx(trx), trx.product_code, candidates)
    seen: list[str] = []
    for found in ordered:
        if found.config_id not in seen:
            seen.append(found.config_id)
    return seen


def next_purchase(uow: UnitOfWork, trx: Transaction, attempt: Attempt | None) -> Step | None:
    """The purchase at the route's next offer (the route decided now if it was not yet); with
    no offer left the transaction fails (the hold is voided at the commit) and it is None."""
    if trx.route is None:
        trx.route = route(uow, trx)
    tried = trx.attempt_count
    if tried >= len(trx.route):
        last = attempt.message if attempt is not None else None
        error = ("no provider could fulfil it" + (f": {last}" if last else "")
                 if trx.route else "no provider is available for this product now")
        lifecycle.transition(lifecycle.tenant_ctx(trx), uow, trx, "failed", error=error)
        return None
    config_id = trx.route[tried]
    offer = next(o for o in trx.offers if o["config_id"] == config_id)
    inquiry = uow.session.get(Inquiry, trx.inquiry_id) if trx.inquiry_id else None
    # One reference per attempt; a postpaid payment re-uses its inquiry's (providers match the
    # payment to the bill by it).
    reference = inquiry.reference if inquiry is not None else f"{trx.id}-{tried + 1}"
    return Step("purchase", trx.id, trx.tenant_id, tried + 1, config_id, offer["provider_code"],
                offer["provider_sku"], reference, trx.customer_no,
                amount=inquiry.bill_amount if inquiry is not None else None)


def check_of(trx: Transaction, attempt: Attempt) -> Step:
    """A status check of ``attempt`` (its reference; the provider's reference too)."""
    return Step("check", trx.id, trx.tenant_id, attempt.seq, attempt.config_id, attempt.provider_code,
                attempt.provider_sku, attempt.reference, trx.customer_no, provider_ref=attempt.provider_ref)
