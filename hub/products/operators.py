"""Operator use-cases over the catalog (admin UI, CLI): offers with their costs, history,
sync runs, switching products and offers off and on, offer priorities.

Every function takes a platform operator's CallContext (scope ``*``) and the caller's unit
of work; changes write history rows and invalidate cached reads once the caller commits.
Price rules are in :mod:`hub.products.rules`.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select

from hub.context import CallContext
from hub.db import UnitOfWork
from hub.errors import NotFound, ValidationFailed
from hub.products import service
from hub.products.models import CatalogSync, Offer, Product, ProductChange


def _operator(ctx: CallContext) -> None:
    ctx.require_scope("*")


def _product(uow: UnitOfWork, code: str) -> Product:
    product = service.get_product(uow, code)
    if product is None:
        raise NotFound(f"product {code!r} not found")
    return product


def _history(uow: UnitOfWork, ctx: CallContext, product_id: str, field: str, old: Any, new: Any,
             offer_id: str | None = None) -> None:
    uow.session.add(ProductChange(product_id=product_id, offer_id=offer_id, field=field, old_value=str(old),
                                  new_value=str(new), actor=ctx.actor))


def offer_view(offer: Offer) -> dict[str, Any]:
    return {"id": offer.id, "config_id": offer.config_id, "provider_code": offer.provider_code,
            "provider_sku": offer.provider_sku, "cost": offer.cost, "currency": offer.currency,
            "status": offer.status, "priority": offer.priority, "last_seen_at": offer.last_seen_at}


def product_detail(ctx: CallContext, uow: UnitOfWork, code: str) -> dict[str, Any]:
    """A product with its status and every offer (cost included: operators only)."""
    _operator(ctx)
    product = _product(uow, code)
    offers = uow.session.scalars(select(Offer).where(Offer.product_id == product.id)
                                 .order_by(Offer.priority, Offer.cost))
    return {**service.public_view(product), "status": product.status, "created_at": product.created_at,
            "updated_at": product.updated_at, "offers": [offer_view(o) for o in offers]}


def product_history(ctx: CallContext, uow: UnitOfWork, code: str, limit: int = 200) -> list[dict[str, Any]]:
    """A product's changes, newest first: created, cost, offer_status, status, priority…"""
    _operator(ctx)
    product = _product(uow, code)
    rows = uow.session.scalars(select(ProductChange).where(ProductChange.product_id == product.id)
                               .order_by(ProductChange.seq.desc()).limit(limit))
    return [{"field": r.field, "old_value": r.old_value, "new_value": r.new_value, "offer_id": r.offer_id,
             "sync_id": r.sync_id, "actor": r.actor, "changed_at": r.changed_at} for r in rows]


def list_syncs(ctx: CallContext, uow: UnitOfWork, *, config_id: str | None = None,
               limit: int = 50) -> list[dict[str, Any]]:
    """The latest catalog sync runs (failed ones with their error), newest first."""
    _operator(ctx)
    stmt = select(CatalogSync).order_by(CatalogSync.started_at.desc()).limit(limit)
    if config_id:
        stmt = stmt.where(CatalogSync.config_id == config_id)
    return [{"id": r.id, "config_id": r.config_id, "provider_code": r.provider_code, "status": r.status,
             "items": r.items, "created": r.created, "changed": r.changed, "vanished": r.vanished,
             "skipped": r.skipped, "error": r.error, "actor": r.actor, "started_at": r.started_at,
             "finished_at": r.finished_at} for r in uow.session.scalars(stmt)]


def set_product_enabled(ctx: CallContext, uow: UnitOfWork, code: str, enabled: bool) -> dict[str, Any]:
    """Take a product off sale (``disabled``: hidden from the API, never sold) or back on."""
    _operator(ctx)
    product = _product(uow, code)
    old = product.status
    if enabled:
        has_active = uow.session.scalar(select(Offer.id).where(Offer.product_id == product.id,
                                                               Offer.status == "active").limit(1))
        new = "active" if has_active else "unavailable"
    else:
        new = "disabled"
    if new != old:
        product.status = new
        _history(uow, ctx, product.id, "status", old, new)
        service.bump_version(uow)
    return product_detail(ctx, uow, code)


def _offer(uow: UnitOfWork, offer_id: str) -> Offer:
    offer = uow.session.get(Offer, offer_id)
    if offer is None:
        raise NotFound(f"offer {offer_id!r} not found")
    return offer


def set_offer_priority(ctx: CallContext, uow: UnitOfWork, offer_id: str, priority: int) -> dict[str, Any]:
    """An operator's preference among a product's offers (lower first; ties: cheaper first)."""
    _operator(ctx)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 10_000:
        raise ValidationFailed("priority is an integer from 0 to 10000", errors={"priority": ["out of range"]})
    offer = _offer(uow, offer_id)
    if offer.priority != priority:
        _history(uow, ctx, offer.product_id, "priority", offer.priority, priority, offer.id)
        offer.priority = priority
        service.bump_version(uow)
    return offer_view(offer)


def set_offer_enabled(ctx: CallContext, uow: UnitOfWork, offer_id: str, enabled: bool) -> dict[str, Any]:
    """Switch one offer off (a sync keeps it off) or back on (``active`` again; the next
    sync sets what the provider says). The product's status follows its offers."""
    _operator(ctx)
    offer = _offer(uow, offer_id)
    new = "active" if enabled else "disabled"
    if offer.status != new and (enabled is False or offer.status == "disabled"):
        _history(uow, ctx, offer.product_id, "offer_status", offer.status, new, offer.id)
        offer.status = new
        uow.session.flush()
        product = uow.session.get(Product, offer.product_id)
        if product.status != "disabled":
            has_active = uow.session.scalar(select(Offer.id).where(Offer.product_id == product.id,
                                                                   Offer.status == "active").limit(1))
            status = "active" if has_active else "unavailable"
            if status != product.status:
                _history(uow, ctx, product.id, "status", product.status, status)
                product.status = status
        service.bump_version(uow)
    return offer_view(offer)


def request_sync(ctx: CallContext, uow: UnitOfWork, config_id: str, *, allow_empty: bool = False) -> str:
    """Ask a worker to sync one configuration's catalog (the ``SyncCatalog`` command); returns
    the message id. The run shows up in :func:`list_syncs`."""
    _operator(ctx)
    from hub.bus import publish
    from hub.products.messages import SyncCatalog

    return publish(ctx, uow, SyncCatalog(config_id=config_id, allow_empty=allow_empty)).id
