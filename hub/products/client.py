"""What other services (transactions, bulk, admin) may call on the products service.

Callers pass their service identity: ``hub.auth.service_context(ctx, "transactions")``
(scope ``products:read``) for a tenant. Everything runs in the caller's unit of work and
commits nothing. Results are plain dicts::

    {"code", "name", "category", "brand", "type": "prepaid" | "postpaid", "nominal",
     "description", "price", "currency", "active": bool,
     "offers": [{"config_id", "provider_code", "provider_sku", "cost", "priority"}]}

- ``price``: this tenant's price in minor units (platform price list, the tenant's rules,
  the ``price_product`` hook); None only when the product has no offer the tenant may use.
- ``active``: False when the product is unavailable to this tenant (no active offer on a
  usable, healthy provider configuration, or taken off sale): transactions answer 422.
- ``offers``: the active offers on configurations this tenant may use, any health,
  preferred first (operator priority, then cost). Filter them with
  ``hub.providers.client.routes_for`` before calling a provider.

These reads go through each process's reference-data cache (hub.cache): every writer of
products, offers and price rules bumps the ``products`` version after its commit, and every
process reads the versions (with the tenant's circuit breakers) at most 50 ms before it uses
them (``hub.cache.REFRESH``), so a price money is held for is one committed at most 50 ms
before the request (a lost bump: ``ROP_CACHE_TTL`` seconds at most, default 5); the process
that made the change sees it at once.
"""
from __future__ import annotations

from typing import Any

from hub.context import CallContext
from hub.db import UnitOfWork
from hub.errors import NotFound
from hub.products import service


def _check(ctx: CallContext) -> None:
    ctx.require_scope("products:read")
    if ctx.tenant_id is None:
        raise NotFound("no tenant in this call's context")


def get_for_sale(ctx: CallContext, uow: UnitOfWork, product_code: str) -> dict[str, Any] | None:
    """One product as this tenant may buy it (see the module docstring); None when no
    product has this code."""
    _check(ctx)
    return service.for_sale(ctx, uow, [product_code]).get(product_code)


def prices_for(ctx: CallContext, uow: UnitOfWork, product_codes: list[str]) -> dict[str, dict[str, Any]]:
    """:func:`get_for_sale` for many codes in a few queries (bulk validation): ``{code: dict}``;
    unknown codes are absent."""
    _check(ctx)
    return service.for_sale(ctx, uow, list(product_codes))
