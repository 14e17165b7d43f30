"""Use-cases of the products service: reading the catalog with a tenant's prices, and the
catalog cache. Catalog sync is in :mod:`hub.products.sync`, pricing rules in
:mod:`hub.products.rules`.

Availability is derived, per tenant: a product is ``active`` for a tenant when its status
is ``active`` and at least one of its active offers is on a provider configuration that
the tenant may use and whose circuit breaker is not open. Cost is never shown to tenants.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import structlog
from flask import current_app
from sqlalchemy import Select, func, or_, select

from hub.auth import RateCount
from hub.cache import refcache, version_key
from hub.context import CallContext
from hub.db import UnitOfWork
from hub.errors import NotFound, ValidationFailed
from hub.products import pricing
from hub.products.models import Offer, Product
from hub.providers import client as providers
from hub.redis_scripts import hot_script

#: Catalog pages (``GET /v1/products``) are kept in Redis under a key holding the versions of
#: the ``products`` and ``providers`` namespaces (hub.cache), for ``ROP_CACHE_TTL`` seconds at
#: most (a lost version bump heals within that time, as in every process's own cache).
CACHE_PREFIX = "rop:products:cache"
#: Tenants whose usable provider configurations one process remembers (per configurations' version).
CONFIGS_CACHE_SIZE = 10_000
#: Seconds between two warnings of one process about one tenant's product sold at cost.
AT_COST_WARN_EVERY = 600.0

log = structlog.get_logger("hub.products")
_at_cost_warned: dict[tuple[str, str], float] = {}


def warn_at_cost(tenant_id: str, code: str, cost: int, currency: str) -> None:
    """Log that a product is priced for a tenant at its cost because no price rule applies
    (no platform rule for it, its category or everything, and none of the tenant's): the
    hub then earns nothing on it. Once per tenant and product every
    :data:`AT_COST_WARN_EVERY` seconds in a process, so that a bulk file logs it once."""
    now = time.monotonic()
    key = (tenant_id, code)
    last = _at_cost_warned.get(key)
    if last is not None and now - last < AT_COST_WARN_EVERY:
        return
    if len(_at_cost_warned) > CONFIGS_CACHE_SIZE:
        _at_cost_warned.clear()
    _at_cost_warned[key] = now
    log.warning("product sold at cost: no price rule", tenant_id=tenant_id, product_code=code, cost=cost,
                currency=currency, hint="rop pricing set markup_percent 200 prices everything at cost + 2 %")


def _state():
    return current_app.extensions["rop"]


def _hook():
    return _state().extras["plugins"].hook


# -- the catalog version and the cache ---------------------------------------------------------
def bump_version(uow: UnitOfWork) -> None:
    """Invalidate every cached catalog read once ``uow`` commits (in every process:
    hub.cache, namespace ``products``)."""
    refcache().bump(uow, "products")


#: One round trip per cached read: the request's rate-limit count (when the view carries
#: it, :class:`hub.auth.RateCount`), both versions, the tenant's circuit breakers
#: (open when ``open_until`` is in the future, as :func:`hub.providers.health.breaker_state`
#: says) and, under the key they make, the cached page. KEYS: the ``products`` version, the
#: ``providers`` version (hub.cache), the rate-limit counter, then for each configuration the
#: pair of ``open_until`` keys of the breakers guarding this tenant's calls to it (the shared
#: one, the tenant's: :func:`hub.providers.client.breaker_keys`; unhealthy when either is open).
#: ARGV: the key prefix, the key suffix, the ``providers`` version the caller's list of
#: configurations belongs to ('*': read just now, no cache), now, the counter's expiry ('' to count nothing).
#: Answers {count, catalog, configs} when the caller's list is stale, else
#: {count, catalog, configs, flags, key, page}.
_LOOKUP = """
local count = 0
if ARGV[5] ~= '' then
  count = redis.call('incr', KEYS[3])
  if count == 1 then redis.call('expire', KEYS[3], ARGV[5]) end
end
local catalog = redis.call('get', KEYS[1]) or '0'
local configs = redis.call('get', KEYS[2]) or '0'
if ARGV[3] ~= '*' and configs ~= ARGV[3] then return {count, catalog, configs} end
local now = tonumber(ARGV[4])
local flags = ''
for i = 4, #KEYS, 2 do
  local shared, own = redis.call('get', KEYS[i]), redis.call('get', KEYS[i + 1])
  if (shared and tonumber(shared) > now) or (own and tonumber(own) > now) then
    flags = flags .. '0' else flags = flags .. '1' end
end
local key = ARGV[1] .. ':' .. catalog .. ':' .. configs .. ':' .. flags .. ':' .. ARGV[2]
return {count, catalog, configs, flags, key, redis.call('get', key)}
"""
NO_COUNT_KEY = "rop:ratelimit:none"


def cached(ctx: CallContext, uow: UnitOfWork | Callable[[], UnitOfWork], what: str, build,
           rate: RateCount | None = None) -> bytes:
    """The JSON of ``build(configs)`` for this tenant (``configs``: :func:`tenant_configs`),
    through the Redis cache.

    The key holds the catalog version (bumped after every committed change of the catalog
    or the price rules), the providers' version (kill switch, tenant enablement), the
    health of each configuration the tenant may use (circuit breakers), the tenant and
    ``what``. All of it is read from Redis for every request, in one round trip, so no
    process serves an answer older than a change another process committed (a lost bump:
    ``ROP_CACHE_TTL`` seconds at most). Which configurations the tenant may use comes from
    this process's cache (hub.cache). ``rate``, when given, is counted in that same round
    trip and enforced before anything is read (:class:`hub.auth.RateLimited` past the
    limit). ``uow`` may be a function that opens it: a cached page needs no database session.
    """
    tenant_id = _tenant(ctx)
    state = _state()
    redis = state.redis
    cache = refcache()
    lookup = hot_script(redis, _LOOKUP)
    suffix = f"{tenant_id}:{hashlib.sha1(what.encode()).hexdigest()}"

    def session() -> UnitOfWork:
        return uow() if callable(uow) else uow

    for _attempt in range(3):
        if cache.ttl <= 0:  # no caching: the list read now, no page kept or used
            known = (b"*", _config_ids(session(), tenant_id))
        else:
            known = cache.entry("providers", ("tenant_configs", tenant_id))
        if known is None:  # never read, or past its TTL: read it now (under the versions now)
            _config_ids(session(), tenant_id)
            known = cache.entry("providers", ("tenant_configs", tenant_id)) or (b"", ())
        known_version, ids = known
        counting, rate = rate, None  # counted on the first attempt only
        answer = lookup(keys=[version_key("products"), version_key("providers"),
                              counting.key if counting else NO_COUNT_KEY,
                              *providers.breaker_keys(list(ids), tenant_id)],
                        args=[CACHE_PREFIX, suffix, known_version.decode(), repr(time.time()),
                              counting.expire if counting else ""])
        if counting is not None:
            counting.enforce(answer[0])
        if len(answer) == 3:  # the tenant's configurations changed since this process read them
            cache.refresh()
            _config_ids(session(), tenant_id)
            continue
        _count, catalog_version, configs_version, flags, key, body = answer
        if body is not None and cache.ttl > 0:
            return body
        # what is built below from this process's cache is built under the versions just read
        cache.align({"products": catalog_version, "providers": configs_version})
        configs = dict(zip(ids, (flag == ord("1") for flag in flags)))
        body = json.dumps(build(configs), separators=(",", ":")).encode()
        if cache.ttl > 0:
            redis.set(key, body, px=max(1, int(cache.ttl * 1000)))
        return body
    raise RuntimeError("the provider configurations keep changing; try again")


# -- reading ------------------------------------------------------------------------------------
def _tenant(ctx: CallContext) -> str:
    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    return ctx.tenant_id


def _config_ids(uow: UnitOfWork, tenant_id: str) -> tuple[str, ...]:
    """The configurations ``tenant_id`` may use (any health), through this process's cache
    (namespace ``providers``: the kill switch and tenant enablement bump it)."""
    return providers.tenant_config_ids(uow, tenant_id)


def tenant_configs(uow: UnitOfWork, tenant_id: str) -> dict[str, bool]:
    """The provider configurations ``tenant_id`` may use: ``{config_id: healthy}`` (health:
    neither the configuration's shared circuit breaker nor this tenant's on it is open;
    read from Redis with the cache's versions, in one ``MGET``, and kept as long: at most
    ``hub.cache.REFRESH`` seconds old)."""
    cache = refcache()
    guess = cache.entry("providers", ("tenant_configs", tenant_id))
    guessed: tuple[str, ...] = guess[1] if guess is not None else ()
    values: list = []
    if cache.ttl > 0:
        _versions, values = cache.versions(providers.breaker_keys(list(guessed), tenant_id))
    ids = _config_ids(uow, tenant_id)
    if ids == guessed and cache.ttl > 0:
        open_now = providers.breakers_open_from(list(ids), tenant_id, values)
    else:  # the list changed (or nothing is cached): its breakers in a round trip of their own
        open_now = providers.breakers_open(list(ids), tenant_id)
    return {config_id: not open_now[config_id] for config_id in ids}


def public_view(product: Product) -> dict[str, Any]:
    return {"code": product.code, "name": product.name, "category": product.category_code,
            "brand": product.brand_code, "type": product.type, "nominal": product.nominal,
            "description": product.description, "currency": product.currency}


def sale_views(ctx: CallContext, uow: UnitOfWork, products: list[Product | ProductData], *,
               configs: dict[str, bool] | None = None, with_offers: bool = True) -> list[dict[str, Any]]:
    """Each product as the tenant of ``ctx`` may buy it: the public fields, ``price`` (this
    tenant's), ``active`` and — for other services only, never the API — its active
    ``offers`` on configurations the tenant may use (any health), preferred first.
    ``price`` is None only when no such offer exists at all. Offers and price rules come
    through this process's cache (hub.cache, namespace ``products``)."""
    tenant_id = _tenant(ctx)
    if configs is None:
        configs = tenant_configs(uow, tenant_id)
    offers_by_product = _active_offers(uow, [p.id for p in products])
    rules = _rulebook(uow, tenant_id)
    hook = _hook()
    views = []
    for product in products:
        own = [o for o in offers_by_product.get(product.id) or () if o.config_id in configs]
        healthy = [o for o in own if configs[o.config_id]]
        basis = healthy or own
        view = public_view(product)
        view["active"] = product.status == "active" and bool(healthy)
        cost = min(o.cost for o in basis) if basis else None
        view["price"] = pricing.tenant_price(hook, tenant_id, view, cost, rules) if basis else None
        if with_offers:  # a sale (a purchase, a bulk row) or an operator's explanation: say it earns nothing
            view["at_cost"] = (cost is not None and view["price"] == cost
                               and not rules.has_rule(product.code, product.category_code))
            if view["at_cost"]:
                warn_at_cost(tenant_id, product.code, cost, product.currency)
            view["offers"] = [{"config_id": o.config_id, "provider_code": o.provider_code,
                               "provider_sku": o.provider_sku, "cost": o.cost, "priority": o.priority}
                              for o in own]
        views.append(view)
    return views


@dataclass(frozen=True)
class ProductData:
    """A product as this process caches it (the columns :func:`sale_views` reads)."""

    id: str
    code: str
    name: str
    category_code: str | None
    brand_code: str | None
    type: str
    nominal: int | None
    description: str | None
    currency: str
    status: str

    @classmethod
    def of(cls, row: Product) -> ProductData:
        return cls(id=row.id, code=row.code, name=row.name, category_code=row.category_code,
                   brand_code=row.brand_code, type=row.type, nominal=row.nominal, description=row.description,
                   currency=row.currency, status=row.status)


@dataclass(frozen=True)
class OfferData:
    """An active offer as this process caches it."""

    id: str
    config_id: str
    provider_code: str
    provider_sku: str
    cost: int
    priority: int


def _active_offers(uow: UnitOfWork, product_ids: list[str]) -> dict[str, tuple[OfferData, ...]]:
    """Each product's active offers (any configuration), preferred first (operator
    priority, then cost), through the cache."""
    def load(keys: list) -> dict:
        found: dict[str, list[OfferData]] = defaultdict(list)
        for chunk in _chunks([product_id for _kind, product_id in keys], 500):
            for offer in uow.session.scalars(select(Offer).where(Offer.product_id.in_(chunk),
                                                                 Offer.status == "active")):
                found[offer.product_id].append(OfferData(
                    id=offer.id, config_id=offer.config_id, provider_code=offer.provider_code,
                    provider_sku=offer.provider_sku, cost=offer.cost, priority=offer.priority))
        return {("offers", product_id): tuple(sorted(found.get(product_id, ()),
                                                     key=lambda o: (o.priority, o.cost, o.id)))
                for _kind, product_id in keys}

    cached_offers = refcache().get_many("products", [("offers", product_id) for product_id in product_ids], load)
    return {product_id: offers for (_kind, product_id), offers in cached_offers.items()}


def _rulebook(uow: UnitOfWork, tenant_id: str) -> pricing.RuleBook:
    """The platform price list and the tenant's rules, through the cache."""
    return refcache().get("products", ("rulebook", tenant_id), lambda: pricing.load_rulebook(uow, tenant_id))


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def get_product(uow: UnitOfWork, code: str) -> Product | None:
    return uow.session.scalar(select(Product).where(Product.code == code))


def for_sale(ctx: CallContext, uow: UnitOfWork, codes: list[str]) -> dict[str, dict[str, Any]]:
    """:func:`sale_views` of the products with these codes, by code (unknown codes left out),
    read through this process's cache (hub.cache, namespace ``products``)."""
    def load(keys: list) -> dict:
        found = {}
        for chunk in _chunks([code for _kind, code in keys], 500):
            for row in uow.session.scalars(select(Product).where(Product.code.in_(chunk))):
                found[("product", row.code)] = ProductData.of(row)
        return found

    # the tenant's configurations first: their breakers are read with the cache's versions
    configs = tenant_configs(uow, _tenant(ctx))
    rows = refcache().get_many("products", [("product", code) for code in sorted(set(codes))], load)
    products = [row for row in rows.values() if row is not None]
    return {v["code"]: v for v in sale_views(ctx, uow, products, configs=configs)}


def encode_cursor(code: str) -> str:
    return base64.urlsafe_b64encode(code.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        code = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        code = ""
    if not code:
        raise ValidationFailed("invalid cursor", errors={"cursor": ["invalid"]})
    return code


def _filtered(category: str | None, brand: str | None, type_: str | None, q: str | None) -> Select:
    stmt = select(Product).where(Product.status != "disabled")
    if category:
        stmt = stmt.where(Product.category_code == category)
    if brand:
        stmt = stmt.where(Product.brand_code == brand)
    if type_:
        stmt = stmt.where(Product.type == type_)
    if q:
        like = "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(func.lower(Product.name).like(like, escape="\\"),
                              func.lower(Product.code).like(like, escape="\\")))
    return stmt


def list_products(ctx: CallContext, uow: UnitOfWork, *, category: str | None = None, brand: str | None = None,
                  type_: str | None = None, q: str | None = None, active: bool | None = None,
                  cursor: str | None = None, limit: int = 50,
                  configs: dict[str, bool] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """A page of the catalog (ordered by code) with this tenant's prices; disabled products
    are left out. ``active`` filters on this tenant's availability.

    :returns: ``(items, next_cursor)``; items carry no cost and no offers.
    """
    _tenant(ctx)
    if configs is None:
        configs = tenant_configs(uow, ctx.tenant_id)
    after = decode_cursor(cursor) if cursor else None
    items: list[dict[str, Any]] = []
    # With an ``active`` filter a page is filled from as many batches as it takes.
    while len(items) <= limit:
        stmt = _filtered(category, brand, type_, q).order_by(Product.code).limit(limit + 1)
        if after is not None:
            stmt = stmt.where(Product.code > after)
        batch = list(uow.session.scalars(stmt))
        if not batch:
            break
        views = sale_views(ctx, uow, batch, configs=configs, with_offers=False)
        items.extend(v for v in views if active is None or v["active"] is active)
        after = batch[-1].code
        if len(batch) <= limit:
            break
    page, more = items[:limit], len(items) > limit
    return page, encode_cursor(page[-1]["code"]) if more and page else None


def get_for_tenant(ctx: CallContext, uow: UnitOfWork, code: str, *,
                   configs: dict[str, bool] | None = None) -> dict[str, Any]:
    """One product with this tenant's price (no cost, no offers). :raise NotFound:"""
    product = get_product(uow, code)
    if product is None or product.status == "disabled":
        raise NotFound(f"product {code!r} not found")
    return sale_views(ctx, uow, [product], configs=configs, with_offers=False)[0]
