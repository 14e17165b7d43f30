"""What other services call (transactions, products). Every function takes the caller's
unit of work; nothing here commits.

    from hub.providers import client as providers

    routes = providers.routes_for(uow, ctx, product_code, candidates)  # ordered, usable
    result = providers.purchase(uow, config_id, PurchaseRequest(...))
    result = providers.check_status(uow, config_id, StatusRequest(...))
    result = providers.inquiry(uow, config_id, InquiryRequest(...))
    items  = providers.catalog(uow, config_id)
    items  = providers.fetch_catalog(uow, config_id)   # raises CatalogUnavailable instead of []
    info   = providers.get_config(uow, config_id)      # {"config_id", "provider_code", ...}
    result = providers.balance(uow, config_id)
    # callbacks: subscribe to hub.providers.messages.ProviderCallbackReceived
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hub.context import CallContext
from hub.db import UnitOfWork
from hub.providers import service
from hub.providers.contract import (
    Capability,
    CatalogItem,
    CatalogUnavailable,
    InquiryRequest,
    Provider,
    ProviderResult,
    PurchaseRequest,
    State,
    StatusRequest,
    _renamed,
)

__all__ = [
    "CatalogItem",
    "CatalogUnavailable",
    "InquiryRequest",
    "ProviderResult",
    "PurchaseRequest",
    "Route",
    "State",
    "StatusRequest",
    "balance",
    "breaker_keys",
    "breakers_open",
    "breakers_open_from",
    "catalog",
    "check_status",
    "fetch_catalog",
    "get_config",
    "inquiry",
    "list_configs",
    "provider_class",
    "purchase",
    "routes_for",
    "usable_configs",
    "validate_customer_number",
]


@_renamed("provider_sku", "sku")
@dataclass
class Route:
    """One way to buy a product: an offer of a provider configuration (what
    ``route_transaction`` orders).

    :param sku: the provider's code of the product.
    :param cost: what the provider charges the hub (minor units).
    :param priority: the offer's priority (lower first, after cost).
    :param health: the configuration's health (``success_rate``, ``latency_ms_p50``...).
    """

    config_id: str
    provider_code: str
    sku: str
    cost: int
    priority: int = 0
    health: dict[str, Any] = field(default_factory=dict)


def usable_configs(uow: UnitOfWork, tenant_id: str, provider_codes: list[str] | None = None, *,
                   healthy_only: bool = True) -> list[dict]:
    """Enabled, tenant-enabled configurations: ``[{"config_id", "provider_code", "healthy"}]``;
    only the healthy ones (neither the shared breaker nor this tenant's open) unless
    ``healthy_only=False``."""
    from hub.providers import health
    from hub.providers.service import _state

    rows = service.usable_configs(uow, tenant_id, provider_codes=provider_codes, healthy_only=False)
    opened = health.open_many(_state().redis, [r.id for r in rows], tenant_id)
    found = [{"config_id": r.id, "provider_code": r.provider_code, "healthy": not opened[r.id]} for r in rows]
    return [c for c in found if c["healthy"] or not healthy_only]


def tenant_config_ids(uow: UnitOfWork, tenant_id: str) -> tuple[str, ...]:
    """The configurations ``tenant_id`` may use (enabled, enabled for it, provider installed;
    any health), oldest first, through this process's reference-data cache (namespace
    ``providers``: the kill switch, tenant enablement and new configurations bump it)."""
    from hub.cache import refcache

    return refcache().get("providers", ("tenant_configs", tenant_id), lambda: tuple(
        row.id for row in service.usable_configs(uow, tenant_id, healthy_only=False)))


def usable_now(uow: UnitOfWork, pairs) -> set[tuple[str, str]]:
    """Of ``(config_id, tenant_id)`` pairs, those usable as committed now, the rows
    share-locked until ``uow`` ends (:func:`service.usable_now`): for the claim of a batch's
    purchases, routed from the process's cache (:func:`tenant_config_ids`), which may lag a
    change by ``REFRESH`` (or ``ROP_CACHE_TTL`` when a bump was lost)."""
    return service.usable_now(uow, pairs)


def routes_for(uow: UnitOfWork, ctx: CallContext, product_code: str, candidates: list[Route]) -> list[Route]:
    """Filter ``candidates`` to usable configurations (kill switch, tenant enablement, breaker)
    and order them through the ``route_transaction`` hook (built-in: cheapest first)."""
    from hub.providers import health
    from hub.providers.service import _host, _state

    key = ("providers.usable_config_ids", ctx.tenant_id)
    usable = uow.memo.get(key)
    if usable is None:  # once per unit of work (a batch routes many purchases of one tenant):
        # the configurations from the process's cache, their breakers now (one round trip)
        ids = tenant_config_ids(uow, ctx.tenant_id)
        opened = health.open_many(_state().redis, list(ids), ctx.tenant_id)
        usable = uow.memo[key] = frozenset(config_id for config_id in ids if not opened[config_id])
    kept = []
    for c in candidates:
        if c.config_id in usable:
            known = uow.memo.get(("providers.health", c.config_id))
            if known is None:  # once per unit of work and configuration, as the usable ones
                known = uow.memo[("providers.health", c.config_id)] = health.health(_state().redis, c.config_id)
            c.health = known
            kept.append(c)
    ordered = _host().hook.route_transaction(ctx=ctx, product_code=product_code, sku=product_code,
                                             candidates=kept)
    return list(ordered if ordered is not None else kept)


def provider_class(provider_code: str) -> type[Provider] | None:
    """The installed provider class of ``provider_code`` (None when no plugin provides it):
    for what it declares (``weak_callback_auth``, ``not_found_grace``...)."""
    from hub.providers.service import _host

    return _host().providers.get(provider_code)


def validate_customer_number(product_type: str, operator: str | None, customer_no: str) -> str | None:
    """An error message, or None when valid/unknown (through ``validate_customer_number``)."""
    from hub.providers.service import _host

    answer = _host().hook.validate_customer_number(product_type=product_type, operator=operator,
                                                   customer_no=customer_no)
    return answer or None


def purchase(uow: UnitOfWork, config_id: str, request: PurchaseRequest, *,
             tenant_id: str | None = None) -> ProviderResult:
    """Buy at a configuration for ``tenant_id`` (whose breaker there is consulted and fed)."""
    return service.call_provider(uow, config_id, "purchase", request, tenant_id=tenant_id)


#: a configuration read once for many calls without a database session (:func:`prepare`)
PreparedConfig = service.PreparedConfig


def prepare(uow: UnitOfWork, tenant_id: str) -> dict[str, PreparedConfig]:
    """The configurations ``tenant_id`` may use (enabled, breaker open or not), by id, each
    read and decrypted once: for a batch's calls (:func:`call_prepared`), made with no
    session open. Kept in the process's reference-data cache (namespace ``providers``, as
    :func:`tenant_config_ids`: a changed configuration, its credentials included, bumps it),
    so a steady stream of batches reads and decrypts nothing; the answer is shared: never
    change it."""
    from hub.cache import refcache

    return refcache().get("providers", ("prepared", tenant_id), lambda: {
        row.id: service.PreparedConfig(row) for row in service.usable_configs(uow, tenant_id, healthy_only=False)})


def call_prepared(config: PreparedConfig, operation: str, request: PurchaseRequest | StatusRequest, *,
                  tenant_id: str | None = None, breakers_closed: bool = False) -> ProviderResult:
    """``purchase`` or ``check_status`` of a prepared configuration, as :func:`purchase` and
    :func:`check_status` make it (a purchase switched off or through an open breaker:
    ``REJECTED`` unsent; health recorded, for ``tenant_id`` too). ``breakers_closed``: the
    caller has just read both breakers closed (:func:`breakers_closed`, for a batch's calls)."""
    if operation not in ("purchase", "check_status"):
        raise ValueError(f"not a call of a prepared configuration: {operation}")
    return service.call_prepared(config, operation, request, tenant_id=tenant_id, breakers_closed=breakers_closed)


def breakers_closed(pairs) -> set[tuple[str, str | None]]:
    """Of ``(config_id, tenant_id)`` pairs, those whose breakers are both closed now (one
    Redis round trip for a batch's calls)."""
    from hub.providers import health
    from hub.providers.service import _state

    return health.closed_for(_state().redis, pairs)


def check_status(uow: UnitOfWork, config_id: str, request: StatusRequest, *,
                 tenant_id: str | None = None) -> ProviderResult:
    """Ask about a purchase already sent (always goes to the provider)."""
    return service.call_provider(uow, config_id, "check_status", request, tenant_id=tenant_id)


def inquiry(uow: UnitOfWork, config_id: str, request: InquiryRequest, *,
            tenant_id: str | None = None) -> ProviderResult:
    """Look a postpaid bill up at a configuration for ``tenant_id``."""
    return service.call_provider(uow, config_id, "inquiry", request, tenant_id=tenant_id)


def catalog(uow: UnitOfWork, config_id: str) -> list[CatalogItem]:
    return service.call_provider(uow, config_id, "catalog").data.get("items", [])


def balance(uow: UnitOfWork, config_id: str) -> ProviderResult:
    return service.call_provider(uow, config_id, "balance")


def fetch_catalog(uow: UnitOfWork, config_id: str) -> list[CatalogItem]:
    """The complete catalog of a configuration, or :class:`CatalogUnavailable` — never a
    partial or empty list standing for a failure (a switched-off configuration, an open
    breaker, a provider error all raise). The products service syncs through this."""
    try:
        result = service.call_provider(uow, config_id, "catalog")
    except CatalogUnavailable:
        raise
    except Exception as exc:  # a plugin error: the catalog is not known, say so
        raise CatalogUnavailable(f"{type(exc).__name__}: {exc}") from exc
    if result.state is not State.SUCCESS:
        raise CatalogUnavailable(result.message or f"catalog call {result.state.value}")
    return list(result.data.get("items", []))


def _config_info(row) -> dict[str, Any]:
    from hub.providers.service import _host

    cls = _host().providers.get(row.provider_code)
    return {"config_id": row.id, "provider_code": row.provider_code, "tenant_id": row.tenant_id,
            "name": row.name, "enabled": row.enabled, "installed": cls is not None,
            "catalog": cls is not None and Capability.CATALOG in cls.capabilities}


def get_config(uow: UnitOfWork, config_id: str) -> dict[str, Any]:
    """``{config_id, provider_code, tenant_id, name, enabled, installed, catalog}`` (no
    credentials); ``catalog`` says whether the provider can list its catalog.
    :raise hub.errors.NotFound: no such configuration."""
    return _config_info(service.get_config(uow, config_id))


def list_configs(uow: UnitOfWork) -> list[dict[str, Any]]:
    """Every configuration, as :func:`get_config` describes it (oldest first)."""
    return [_config_info(row) for row in service.list_configs(uow)]


def breakers_open(config_ids: list[str], tenant_id: str | None = None) -> dict[str, bool]:
    """Whether calls to each configuration are stopped now — its shared breaker open, or
    ``tenant_id``'s breaker on it (one Redis round trip)."""
    from hub.providers import health
    from hub.providers.service import _state

    return health.open_many(_state().redis, config_ids, tenant_id)


def breakers_open_from(config_ids: list[str], tenant_id: str, values: list) -> dict[str, bool]:
    """:func:`breakers_open` from the values of :func:`breaker_keys`, read by the caller
    (in the same round trip as its own keys)."""
    from hub.providers import health

    return health.open_from_values(config_ids, tenant_id, values)


def breaker_keys(config_ids: list[str], tenant_id: str) -> list[str]:
    """The Redis keys holding the ``open_until`` (epoch seconds; a breaker is open while it
    is in the future) of the two breakers guarding ``tenant_id``'s calls to each
    configuration, in pairs — the configuration's shared breaker, then the tenant's: for
    readers that check health inside their own Redis script, in the same round trip as
    their own keys (calls are stopped when either is open)."""
    from hub.providers import health

    return [key for c in config_ids for key in health.open_until_keys(c, tenant_id)]
