"""Catalog sync: pull one provider configuration's catalog and upsert its offers.

All or nothing: the catalog is fetched first (no database writes while the provider is
called), then every change — products, offers, history rows, events — is written in one
unit of work. Any failure (the provider's catalog cannot be read, an item breaks the
parse half-way, the database refuses) rolls all of it back; only the ``catalog_syncs``
row that says the run failed, and why, is written (in a unit of work of its own).

Matching: an offer is keyed by ``(config_id, provider_sku)`` and keeps its product once
attached. A SKU seen for the first time attaches to the product whose code is the SKU
normalised (upper case), when that product has the same type and category — so two
configurations of one provider, or two providers sharing codes, sell one product — and
otherwise to a new product ``<PROVIDER>-<SKU>``.

A malformed item (no usable SKU, a cost that is not an int, a SKU listed twice with
different terms) fails the sync and is named in its error: dropping it would mark its
product vanished. Safety: an empty catalog from a configuration that has active offers is refused (it
would mark every product of that provider vanished) unless ``allow_empty`` is given. Syncs
are serialised across processes by a Redis lock.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import structlog
from flask import current_app
from sqlalchemy import select

from hub.bus import publish
from hub.context import CallContext
from hub.db import UnitOfWork, new_id, utcnow
from hub.errors import Conflict, ValidationFailed
from hub.products import service
from hub.products.messages import ProductChanged, ProductCreated, ProductVanished
from hub.products.models import Brand, CatalogSync, Category, Offer, Product, ProductChange
from hub.products.pricing import MAX_COST
from hub.providers import client as providers
from hub.providers.contract import CatalogItem, CatalogUnavailable

log = structlog.get_logger("hub.products")

LOCK_KEY = "rop:products:sync-lock"
#: A sync holds the lock at most this long (seconds); a dead process's lock expires.
LOCK_TIMEOUT = 900
#: How long a sync waits for another one to finish before giving up (seconds).
LOCK_WAIT = 120

#: The hub's categories: code → display name, in display order. Providers' own category
#: names are mapped onto these through :data:`CATEGORY_ALIASES`; an unknown one becomes a
#: category of its own.
CATEGORIES: dict[str, str] = {
    "pulsa": "Mobile credit",
    "data": "Data packages",
    "pln": "Electricity",
    "ewallet": "E-wallet",
    "game": "Game vouchers",
    "bill": "Bills",
}
CATEGORY_ALIASES: dict[str, str] = {
    "mobile credit": "pulsa", "credit": "pulsa", "airtime": "pulsa",
    "paket data": "data", "internet": "data",
    "token pln": "pln", "electricity": "pln", "listrik": "pln",
    "e-money": "ewallet", "emoney": "ewallet", "e-wallet": "ewallet", "wallet": "ewallet",
    "games": "game", "voucher game": "game",
    "bills": "bill", "pascabayar": "bill", "postpaid": "bill", "ppob": "bill",
}
#: Categories whose product name ends in its face value ("Pulsa Telkomsel 10,000").
NOMINAL_CATEGORIES = {"pulsa", "pln", "ewallet"}
_SLUG = re.compile(r"[^a-z0-9]+")
_CODE = re.compile(r"[^A-Z0-9_.-]+")
_TRAILING_NUMBER = re.compile(r"(\d{1,3}(?:[.,]\d{3})+|\d+)\s*$")


def _slug(text: str, limit: int) -> str:
    return _SLUG.sub("-", text.strip().lower()).strip("-")[:limit] or "other"


def product_code(sku: str) -> str:
    """A product code from a provider SKU: upper case, ``A-Z 0-9 _ . -`` only."""
    code = _CODE.sub("-", sku.strip().upper()).strip("-")[:64]
    if not code:
        raise ValueError(f"SKU {sku!r} makes no product code")
    return code


def category_code(raw: str) -> str:
    slug = _slug(raw, 40)
    if slug in CATEGORIES:
        return slug
    return CATEGORY_ALIASES.get(raw.strip().lower(), CATEGORY_ALIASES.get(slug.replace("-", " "), slug))


def parse_nominal(name: str, category: str) -> int | None:
    """The face value at the end of a product name, for categories that have one."""
    if category not in NOMINAL_CATEGORIES:
        return None
    match = _TRAILING_NUMBER.search(name)
    return int(re.sub(r"[.,]", "", match.group(1))) if match else None


def _problem(item: Any) -> str | None:
    """What makes a catalog item unusable, or None."""
    if not isinstance(item, CatalogItem):
        return f"not a CatalogItem: {type(item).__name__}"
    if not isinstance(item.sku, str) or not _CODE.sub("", item.sku.strip().upper()):
        return "the SKU makes no product code"
    if isinstance(item.cost, bool) or not isinstance(item.cost, int) or item.cost < 0:
        return f"cost {item.cost!r} is not a non-negative int of minor units"
    if item.cost > MAX_COST:
        return f"cost {item.cost:,} is above the largest the hub sells at ({MAX_COST:,} minor units)"
    if not isinstance(item.currency, str) or not re.fullmatch(r"[A-Z]{3}", item.currency):
        return f"currency {item.currency!r} is not an ISO 4217 code"
    return None


class _Apply:
    """One sync's changes inside one unit of work."""

    def __init__(self, ctx: CallContext, uow: UnitOfWork, info: dict[str, Any], sync_id: str):
        self.ctx, self.uow, self.info, self.sync_id = ctx, uow, info, sync_id
        self.session = uow.session
        self.now = utcnow()
        self.categories = {c.code: c for c in self.session.scalars(select(Category))}
        self.brands = {b.code: b for b in self.session.scalars(select(Brand))}
        # The whole catalog is matched in memory (thousands of rows): one query, not one per item,
        # so the write transaction (SQLite's write lock) stays short.
        self.products = {p.code: p for p in self.session.scalars(select(Product))}
        self.created: dict[str, Product] = {}
        self.new_products: list[Product] = []
        self.touched: dict[str, list[str]] = {}  # product id -> what changed
        self.loaded: list[CatalogItem] = []
        self.skipped = 0
        self.offers_vanished = 0

    def history(self, product_id: str, field: str, old: Any, new: Any, offer_id: str | None = None) -> None:
        self.session.add(ProductChange(product_id=product_id, offer_id=offer_id, field=field,
                                       old_value=None if old is None else str(old)[:255],
                                       new_value=None if new is None else str(new)[:255],
                                       sync_id=self.sync_id, actor=self.ctx.actor, changed_at=self.now))
        self.touched.setdefault(product_id, [])
        if field not in self.touched[product_id]:
            self.touched[product_id].append(field)

    def _category(self, raw: str) -> str:
        code = category_code(raw or "other")
        if code not in self.categories:
            order = list(CATEGORIES).index(code) if code in CATEGORIES else 100
            row = Category(code=code, name=CATEGORIES.get(code, (raw or code).strip().title()[:100]), sort_order=order)
            self.session.add(row)
            self.categories[code] = row
        return code

    def _brand(self, raw: str) -> str:
        code = _slug(raw or "other", 64)
        if code not in self.brands:
            row = Brand(code=code, name=(raw or code).strip().title()[:100])
            self.session.add(row)
            self.brands[code] = row
        return code

    def product_for(self, item: CatalogItem) -> Product:
        kind = "postpaid" if item.postpaid else "prepaid"
        category = self._category(item.category)
        code = product_code(item.sku)
        product = self.products.get(code)
        if product is not None and (product.type != kind or product.category_code != category):
            code = product_code(f"{self.info['provider_code']}-{item.sku}")
            product = self.products.get(code)
        if product is not None:
            return product
        description = ""
        if isinstance(item.raw, dict) and isinstance(item.raw.get("desc"), str):
            description = item.raw["desc"]
        product = Product(id=new_id("prd"), code=code, name=(item.name or code)[:200], category_code=category,
                          brand_code=self._brand(item.brand), type=kind,
                          nominal=parse_nominal(item.name or "", category), description=description,
                          currency=item.currency, status="unavailable")
        self.new_products.append(product)
        self.products[code] = product
        self.created[product.id] = product
        self.history(product.id, "created", None, product.code)
        return product

    def run(self, items: Iterable[Any], *, allow_empty: bool) -> dict[str, int]:
        offers = {o.provider_sku: o for o in self.session.scalars(
            select(Offer).where(Offer.config_id == self.info["config_id"]))}
        seen: dict[str, CatalogItem] = {}
        new_offers: list[Offer] = []
        for item in items:
            # A malformed item fails the whole sync (named in the error) rather than being
            # dropped, which would mark its product vanished.
            problem = _problem(item)
            if problem:
                raise ValidationFailed(f"catalog item {getattr(item, 'sku', None)!r}: {problem}")
            sku = item.sku.strip()
            if sku in seen:
                first = seen[sku]
                if (first.cost, first.available, first.postpaid) != (item.cost, item.available, item.postpaid):
                    raise ValidationFailed(f"catalog item {sku!r} is listed twice with different terms")
                self.skipped += 1
                continue
            seen[sku] = item
            self.loaded.append(item)
            status = "active" if item.available else "inactive"
            offer = offers.get(sku)
            if offer is None:
                product = self.product_for(item)
                if product.currency != item.currency:
                    raise ValidationFailed(f"{sku}: cost in {item.currency}, product {product.code} "
                                           f"is sold in {product.currency}")
                offer = Offer(id=new_id("pof"), product_id=product.id, config_id=self.info["config_id"],
                              provider_code=self.info["provider_code"], provider_sku=sku, cost=item.cost,
                              currency=item.currency, status=status, last_seen_at=self.now)
                new_offers.append(offer)
                offers[sku] = offer
                self.history(product.id, "offer_added", None, f"{self.info['provider_code']}:{sku}", offer.id)
                continue
            if offer.cost != item.cost:
                self.history(offer.product_id, "cost", offer.cost, item.cost, offer.id)
                offer.cost = item.cost
            if offer.status != status and offer.status != "disabled":  # an operator's switch stays
                self.history(offer.product_id, "offer_status", offer.status, status, offer.id)
                offer.status = status
            offer.last_seen_at = self.now
        active_before = sum(1 for o in offers.values() if o.status == "active" and o.provider_sku not in seen)
        if not seen and active_before and not allow_empty:
            raise CatalogUnavailable(f"the provider returned an empty catalog; refusing to mark {active_before} "
                                     "active offers vanished (sync with allow_empty to accept it)")
        for sku, offer in offers.items():
            if sku not in seen and offer.status not in ("vanished", "disabled"):
                self.history(offer.product_id, "offer_status", offer.status, "vanished", offer.id)
                offer.status = "vanished"
                self.offers_vanished += 1
        # Inserted in foreign-key order (the models have no ORM relationships to order them).
        for rows in ((), self.new_products, new_offers):  # () flushes the new categories and brands
            self.session.add_all(rows)
            self.session.flush()
        return self.settle()

    def settle(self) -> dict[str, int]:
        """Recompute the status of every touched product and publish one event per product."""
        counts = {"created": 0, "changed": 0, "vanished": 0}
        if not self.touched:
            return counts
        ids = list(self.touched)
        products = {p.id: p for p in self.products.values()}
        with_active: set[str] = set()
        for start in range(0, len(ids), 500):
            with_active.update(self.session.scalars(select(Offer.product_id).where(
                Offer.product_id.in_(ids[start:start + 500]), Offer.status == "active")))
        for product_id in ids:
            product = products[product_id]
            old = product.status
            if old != "disabled":
                new = "active" if product_id in with_active else "unavailable"
                if new != old:
                    product.status = new
                    if product_id not in self.created:
                        self.history(product_id, "status", old, new)
            payload = {"code": product.code, "name": product.name, "category": product.category_code,
                       "brand": product.brand_code, "type": product.type, "status": product.status,
                       "changes": self.touched[product_id], "sync_id": self.sync_id}
            if product_id in self.created:
                event, key = ProductCreated(**payload), "created"
            elif old == "active" and product.status == "unavailable":
                event, key = ProductVanished(**payload), "vanished"
            else:
                event, key = ProductChanged(**payload), "changed"
            publish(self.ctx, self.uow, event)
            counts[key] += 1
        return counts


UnitFactory = Callable[[], AbstractContextManager[UnitOfWork]]


def _finish(units: UnitFactory, sync_id: str, **fields: Any) -> None:
    with units() as uow:
        row = uow.session.get(CatalogSync, sync_id)
        for name, value in fields.items():
            setattr(row, name, value)
        row.finished_at = utcnow()
        uow.commit()


def sync_config(ctx: CallContext, units: UnitFactory, config_id: str, *, allow_empty: bool = False,
                items: Iterable[CatalogItem] | None = None) -> dict[str, Any]:
    """Sync one provider configuration's catalog (all or nothing).

    :param units: makes a unit of work (``lambda: hub.db.unit_of_work(db)``); the sync
        uses several: one to record the run, one to read the catalog, one to apply it.
    :param items: the configuration's catalog read some other way (a price-list file the
        provider sent, a bench's synthetic catalog) instead of asking the provider.
    :returns: the run: ``{id, config_id, provider_code, status, items, created, changed,
        vanished, skipped, error}``; ``status`` is ``succeeded`` or ``failed`` (and then
        nothing changed; ``error`` says why).
    :raise hub.errors.NotFound: no such configuration.
    :raise hub.errors.Conflict: another sync held the lock for :data:`LOCK_WAIT` seconds.
    """
    state = current_app.extensions["rop"]
    lock = state.redis.lock(LOCK_KEY, timeout=LOCK_TIMEOUT, blocking_timeout=LOCK_WAIT)
    if not lock.acquire():
        raise Conflict("another catalog sync is running; try again later")
    try:
        with units() as uow:
            info = providers.get_config(uow, config_id)
            record = CatalogSync(config_id=config_id, provider_code=info["provider_code"], actor=ctx.actor)
            uow.session.add(record)
            uow.commit()
            sync_id = record.id
        try:
            if items is None:
                with units() as uow:
                    items = providers.fetch_catalog(uow, config_id)
                    uow.rollback()  # nothing to keep; end the read before the write begins
            with units() as uow:
                applied = _Apply(ctx, uow, info, sync_id)
                counts = applied.run(items, allow_empty=allow_empty)
                row = uow.session.get(CatalogSync, sync_id)
                row.status, row.items, row.skipped, row.finished_at = "succeeded", len(applied.loaded), \
                    applied.skipped, utcnow()
                row.created, row.changed, row.vanished = counts["created"], counts["changed"], counts["vanished"]
                if applied.touched:
                    service.bump_version(uow)
                uow.commit()
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            log.warning("catalog sync failed; nothing changed", config_id=config_id, error=error,
                        exc_info=not isinstance(exc, CatalogUnavailable))
            _finish(units, sync_id, status="failed", error=error)
            return _report(units, sync_id)
    finally:
        try:
            lock.release()
        except Exception:  # the lock expired (a very slow sync): nothing to release  # noqa: BLE001
            log.warning("catalog sync lock had expired", config_id=config_id)
    state.extras["plugins"].hook.catalog_loaded(provider_code=info["provider_code"], config_id=config_id,
                                                 products=applied.loaded)
    log.info("catalog synced", config_id=config_id, **counts, skipped=applied.skipped,
             offers_vanished=applied.offers_vanished)
    return _report(units, sync_id)


def _report(units: UnitFactory, sync_id: str) -> dict[str, Any]:
    with units() as uow:
        row = uow.session.get(CatalogSync, sync_id)
        return {"id": row.id, "config_id": row.config_id, "provider_code": row.provider_code,
                "status": row.status, "items": row.items, "created": row.created, "changed": row.changed,
                "vanished": row.vanished, "skipped": row.skipped, "error": row.error,
                "started_at": row.started_at, "finished_at": row.finished_at}


def syncable_configs(units: UnitFactory, provider_code: str | None = None) -> list[dict[str, Any]]:
    """Enabled configurations whose installed provider can list a catalog."""
    with units() as uow:
        return [c for c in providers.list_configs(uow)
                if c["enabled"] and c["catalog"] and (provider_code is None or c["provider_code"] == provider_code)]


def sync_all(ctx: CallContext, units: UnitFactory, provider_code: str | None = None) -> list[dict[str, Any]]:
    """Sync every syncable configuration (of ``provider_code``), each on its own: one
    failing configuration does not stop the others. A configuration whose sync could not
    get the lock (another sync ran too long) is reported ``skipped``."""
    reports = []
    for config in syncable_configs(units, provider_code):
        try:
            reports.append(sync_config(ctx, units, config["config_id"]))
        except Conflict as exc:
            reports.append({"id": None, "config_id": config["config_id"], "provider_code": config["provider_code"],
                            "status": "skipped", "items": 0, "created": 0, "changed": 0, "vanished": 0,
                            "skipped": 0, "error": exc.detail, "started_at": None, "finished_at": None})
    return reports
