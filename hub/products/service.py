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
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from flask import current_app
from sqlalchemy import Select, func, or_, select

from hub.auth import RateCount
from hub.context import CallContext
from hub.db import UnitOfWork
from hub.errors import NotFound, ValidationFailed
from hub.products import pricing
from hub.products.models import Offer, Product
from hub.providers import client as providers
from hub.redis_scripts import HotScript

#: Redis key of the catalog version: a new random token after every committed change of
#: products, offers or price rules. It is part of every cache key, so all web processes stop
#: using older cached pages at once. A token rather than a counter: a Redis restored from an
#: older snapshot cannot bring back a version whose pages are still cached.
VERSION_KEY = "rop:products:version"
CACHE_PREFIX = "rop:products:cache"
#: Seconds a cached page lives at most (a lost version bump heals within this time).
CACHE_TTL = 300
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
    """Invalidate every cached catalog read once ``uow`` commits (in every process)."""
    redis = _state().redis
    uow.after_commit(lambda: redis.set(VERSION_KEY, uuid.uuid4().hex))


def catalog_version() -> str:
    """The current catalog version token (made on first read)."""
    redis = _state().redis
    token = redis.get(VERSION_KEY)
    if token is None:
        redis.set(VERSION_KEY, uuid.uuid4().hex, nx=True)
        token = redis.get(VERSION_KEY)
    return token.decode()


#: One round trip per cached read: the request's rate-limit count (when the view carries
#: it, :class:`hub.auth.RateCount`), both version tokens, the tenant's circuit breakers
#: (open when ``open_until`` is in the future, as :func:`hub.providers.health.breaker_state`
#: says) and, under the key they make, the cached page. KEYS: catalog version,
#: configurations version, the rate-limit counter, then for each configuration the pair of
#: ``open_until`` keys of the breakers guarding this tenant's calls to it (the shared one,
#: the tenant's: :func:`hub.providers.client.breaker_keys`; unhealthy when either is open).
#: ARGV: the key prefix, the key suffix, the configurations version the caller's list of
#: configurations belongs to, now, the counter's expiry ('' to count nothing).
#: Answers {n, ttl} counted but nothing else yet, {count, catalog, configs} when a version
#: is missing or stale, else {count, catalog, configs, flags, key, page}.
_LOOKUP = """
local count = 0
if ARGV[5] ~= '' then
  count = redis.call('incr', KEYS[3])
  if count == 1 then redis.call('expire', KEYS[3], ARGV[5]) end
end
local catalog = redis.call('get', KEYS[1])
local configs = redis.call('get', KEYS[2])
if not catalog or not configs or configs ~= ARGV[3] then return {count, catalog or '', configs or ''} end
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

    The key holds the catalog version (changed on every committed change of the catalog or
    the price rules), the providers' configurations version (kill switch, tenant
    enablement), the health of each configuration the tenant may use (circuit breakers),
    the tenant and ``what``. All of it is read from Redis for every request, in one round
    trip, so no process serves an answer older than a change another process committed.
    Which configurations the tenant may use is remembered in this process under the
    configurations version. ``rate``, when given, is counted in that same round trip and
    enforced before anything is read (:class:`hub.auth.RateLimited` past the limit).
    ``uow`` may be a function that opens it: a cached page needs no database session.
    """
    tenant_id = _tenant(ctx)
    state = _state()
    redis = state.redis
    lookup = state.extras.get("products_lookup")
    if lookup is None:
        lookup = state.extras.setdefault("products_lookup", HotScript(redis, _LOOKUP))
    remembered: dict = state.extras.setdefault("products_tenant_configs", {})
    suffix = f"{tenant_id}:{hashlib.sha1(what.encode()).hexdigest()}"

    def session() -> UnitOfWork:
        return uow() if callable(uow) else uow

    for _attempt in range(3):
        known_version, ids = remembered.get(tenant_id, ("", ()))
        counting, rate = rate, None  # counted on the first attempt only
        answer = lookup(keys=[VERSION_KEY, providers.CONFIGS_VERSION_KEY,
                              counting.key if counting else NO_COUNT_KEY,
                              *providers.breaker_keys(list(ids), tenant_id)],
                        args=[CACHE_PREFIX, suffix, known_version, repr(time.time()),
                              counting.expire if counting else ""])
        if counting is not None:
            counting.enforce(answer[0])
        if len(answer) == 3:  # a version token is missing, or the tenant's configurations changed
            if not answer[1]:
                catalog_version()
            _config_ids(session(), tenant_id, answer[2].decode() if answer[2] else providers.configs_version())
            continue
        _count, _catalog, _configs, flags, key, body = answer
        if body is not None:
            return body
        configs = dict(zip(ids, (flag == ord("1") for flag in flags)))
        body = json.dumps(build(configs), separators=(",", ":")).encode()
        redis.set(key, body, ex=CACHE_TTL)
        return body
    raise RuntimeError("the provider configurations keep changing; try again")


# -- reading ------------------------------------------------------------------------------------
def _tenant(ctx: CallContext) -> str:
    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")
    return ctx.tenant_id


def _config_ids(uow: UnitOfWork, tenant_id: str, version: str) -> tuple[str, ...]:
    """The configurations ``tenant_id`` may use (any health), remembered in this process
    under the providers' configurations ``version``."""
    remembered: dict = _state().extras.setdefault("products_tenant_configs", {})
    known = remembered.get(tenant_id)
    if known is not None and known[0] == version:
        return known[1]
    ids = tuple(c["config_id"] for c in providers.usable_configs(uow, tenant_id, healthy_only=False))
    if len(remembered) >= CONFIGS_CACHE_SIZE:
        remembered.clear()
    remembered[tenant_id] = (version, ids)
    return ids


def tenant_configs(uow: UnitOfWork, tenant_id: str) -> dict[str, bool]:
    """The provider configurations ``tenant_id`` may use: ``{config_id: healthy}`` (health:
    neither the configuration's shared circuit breaker nor this tenant's on it is open;
    read from Redis every time)."""
    ids = _config_ids(uow, tenant_id, providers.configs_version())
    open_now = providers.breakers_open(list(ids), tenant_id)
    return {config_id: not open_now[config_id] for config_id in ids}


def public_view(product: Product) -> dict[str, Any]:
    return {"code": product.code, "name": product.name, "category": product.category_code,
            "brand": product.brand_code, "type": product.type, "nominal": product.nominal,
            "description": product.description, "currency": product.currency}


def sale_views(ctx: CallContext, uow: UnitOfWork, products: list[Product], *,
               configs: dict[str, bool] | None = None, with_offers: bool = True) -> list[dict[str, Any]]:
    """Each product as the tenant of ``ctx`` may buy it: the public fields, ``price`` (this
    tenant's), ``active`` and — for other services only, never the API — its active
    ``offers`` on configurations the tenant may use (any health), preferred first.
    ``price`` is None only when no such offer exists at all."""
    tenant_id = _tenant(ctx)
    if configs is None:
        configs = tenant_configs(uow, tenant_id)
    offers_by_product: dict[str, list[Offer]] = defaultdict(list)
    ids = [p.id for p in products]
    for chunk in _chunks(ids, 500):
        for offer in uow.session.scalars(select(Offer).where(Offer.product_id.in_(chunk),
                                                             Offer.status == "active")):
            if offer.config_id in configs:
                offers_by_product[offer.product_id].append(offer)
    rules = pricing.load_rulebook(uow, tenant_id)
    hook = _hook()
    views = []
    for product in products:
        own = sorted(offers_by_product.get(product.id, ()), key=lambda o: (o.priority, o.cost, o.id))
        healthy = [o for o in own if configs[o.config_id]]
        basis = healthy or own
        view = public_view(product)
        view["active"] = product.status == "active" and bool(healthy)
        view["price"] = (pricing.tenant_price(hook, tenant_id, view, min(o.cost for o in basis), rules)
                         if basis else None)
        if with_offers:  # a sale (a purchase, a bulk row) or an operator's explanation: say it earns nothing
            cost = min(o.cost for o in basis) if basis else None
            view["at_cost"] = (cost is not None and view["price"] == cost
                               and not rules.has_rule(product.code, product.category_code))
            if view["at_cost"]:
                warn_at_cost(tenant_id, product.code, cost, product.currency)
            view["offers"] = [{"config_id": o.config_id, "provider_code": o.provider_code,
                               "provider_sku": o.provider_sku, "cost": o.cost, "priority": o.priority}
                              for o in own]
        views.append(view)
    return views


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def get_product(uow: UnitOfWork, code: str) -> Product | None:
    return uow.session.scalar(select(Product).where(Product.code == code))


def for_sale(ctx: CallContext, uow: UnitOfWork, codes: list[str]) -> dict[str, dict[str, Any]]:
    """:func:`sale_views` of the products with these codes, by code (unknown codes left out)."""
    products: list[Product] = []
    for chunk in _chunks(sorted(set(codes)), 500):
        products.extend(uow.session.scalars(select(Product).where(Product.code.in_(chunk))))
    return {v["code"]: v for v in sale_views(ctx, uow, products)}


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
