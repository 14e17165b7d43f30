"""Admin use-cases over the price rules: the platform price list and per-tenant rules.

For the admin UI and ``rop pricing``: every function takes a platform operator's
CallContext (scope ``*``: ``CallContext.system(actor=...)`` or the admin UI's context),
works in the caller's unit of work, keeps a history row of every change and invalidates
the cached catalog reads once the caller commits. How rules make a price:
:mod:`hub.products.pricing`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from hub.context import CallContext
from hub.db import UnitOfWork
from hub.errors import EditConflict, NotFound, ValidationFailed
from hub.products import pricing, service
from hub.products.models import PLATFORM, Category, Offer, PriceRule, PriceRuleChange, Product

#: Bounds of a ``markup_percent`` value in basis points: -100 % … +1,000 %.
PERCENT_RANGE = (-10_000, 100_000)
MAX_AMOUNT = 10**12


def _operator(ctx: CallContext) -> None:
    ctx.require_scope("*")


def _owner(tenant_id: str | None) -> str:
    if tenant_id is not None and (not tenant_id or tenant_id == PLATFORM):
        raise ValidationFailed("invalid tenant id", errors={"tenant_id": ["invalid"]})
    return tenant_id or PLATFORM


def _check_target(uow: UnitOfWork, target: str) -> str:
    if target == "all":
        return target
    kind, _, code = target.partition(":")
    if kind == "product" and code:
        if uow.session.scalar(select(Product.id).where(Product.code == code)) is None:
            raise ValidationFailed(f"no product {code!r}", errors={"target": [f"no product {code!r}"]})
        return target
    if kind == "category" and code:
        if uow.session.get(Category, code) is None:
            raise ValidationFailed(f"no category {code!r}", errors={"target": [f"no category {code!r}"]})
        return target
    raise ValidationFailed("target is 'all', 'product:<code>' or 'category:<code>'",
                           errors={"target": ["invalid"]})


def _check_value(kind: str, value: Any) -> int:
    if kind not in pricing.KINDS:
        raise ValidationFailed(f"kind is one of {', '.join(pricing.KINDS)}", errors={"kind": ["invalid"]})
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed("value must be an integer", errors={"value": ["not an integer"]})
    if kind == "markup_percent" and not PERCENT_RANGE[0] <= value <= PERCENT_RANGE[1]:
        raise ValidationFailed("a percent markup is in basis points between -10000 and 100000",
                               errors={"value": ["out of range"]})
    if kind == "fixed_price" and not 0 < value <= MAX_AMOUNT:
        raise ValidationFailed("a fixed price is a positive amount in minor units", errors={"value": ["out of range"]})
    if kind == "markup_fixed" and abs(value) > MAX_AMOUNT:
        raise ValidationFailed("markup out of range", errors={"value": ["out of range"]})
    return value


def rule_view(rule: PriceRule) -> dict[str, Any]:
    return {"id": rule.id, "tenant_id": None if rule.owner == PLATFORM else rule.owner, "target": rule.target,
            "kind": rule.kind, "value": rule.value, "currency": rule.currency, "actor": rule.actor,
            "updated_at": rule.updated_at, "version": rule.version}


def _check_seen(rule: PriceRule | None, target: str, seen: Mapping[str, int] | None) -> None:
    """:raise EditConflict: the rule of ``target`` is not as the caller saw it (``seen``: target
    -> version of the rules the caller's page showed; a target missing there was not shown)."""
    if seen is None:
        return
    current = rule.version if rule is not None else None
    if seen.get(target) != current:
        now = f"now {rule.kind} {rule.value}" if rule is not None else "now removed"
        raise EditConflict(f"the rule for {target} changed since you opened it ({now}): nothing was saved")


def set_rule(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str | None, target: str, kind: str,
             value: int, seen: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Create or replace the rule of ``tenant_id`` (None: the platform price list) for ``target``.

    :param target: ``all``, ``product:<code>`` or ``category:<code>`` (must exist).
    :param kind: ``markup_percent`` (basis points), ``markup_fixed`` or ``fixed_price`` (minor units).
    :param seen: the owner's rules as the caller's page showed them (target -> version); None:
        not checked (the CLI).
    :raise ValidationFailed: a bad target, kind or value.
    :raise EditConflict: the rule was added, changed or removed since the page showed it.
    """
    _operator(ctx)
    owner = _owner(tenant_id)
    target = _check_target(uow, target)
    value = _check_value(kind, value)
    rule = uow.session.scalar(select(PriceRule).where(PriceRule.owner == owner, PriceRule.target == target)
                              .with_for_update())
    _check_seen(rule, target, seen)
    before = (rule.kind, rule.value) if rule else (None, None)
    if rule is None:
        rule = PriceRule(owner=owner, target=target, kind=kind, value=value, actor=ctx.actor)
        uow.session.add(rule)
    else:
        rule.kind, rule.value, rule.actor = kind, value, ctx.actor
    if before != (kind, value):
        uow.session.add(PriceRuleChange(owner=owner, target=target, old_kind=before[0], old_value=before[1],
                                        new_kind=kind, new_value=value, actor=ctx.actor))
        service.bump_version(uow)
    uow.flush_versioned(f"the rule for {target}")
    return rule_view(rule)


def remove_rule(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str | None, target: str,
                seen: Mapping[str, int] | None = None) -> None:
    """Delete a rule (its history stays).

    :param seen: as for :func:`set_rule`.
    :raise NotFound: no such rule.
    :raise EditConflict: the rule changed since the caller's page showed it.
    """
    _operator(ctx)
    owner = _owner(tenant_id)
    rule = uow.session.scalar(select(PriceRule).where(PriceRule.owner == owner, PriceRule.target == target))
    if rule is None:
        raise NotFound(f"no price rule for {target!r}")
    _check_seen(rule, target, seen)
    uow.session.add(PriceRuleChange(owner=owner, target=target, old_kind=rule.kind, old_value=rule.value,
                                    actor=ctx.actor))
    uow.session.delete(rule)
    service.bump_version(uow)


def list_rules(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str | None = None,
               everyone: bool = False) -> list[dict[str, Any]]:
    """The rules of ``tenant_id`` (None: the platform price list), or every rule with ``everyone``."""
    _operator(ctx)
    stmt = select(PriceRule).order_by(PriceRule.owner, PriceRule.target)
    if not everyone:
        stmt = stmt.where(PriceRule.owner == _owner(tenant_id))
    return [rule_view(r) for r in uow.session.scalars(stmt)]


def without_rule(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str | None = None) -> list[str]:
    """The codes of the products on sale (not disabled, with an active offer) that no price
    rule prices: none of the platform's (for the product, its category or everything) and,
    with ``tenant_id``, none of that tenant's. They sell at cost (unless a ``price_product``
    plugin says otherwise): the hub earns nothing on them."""
    _operator(ctx)
    book = pricing.load_rulebook(uow, tenant_id)
    on_sale = (select(Product.code, Product.category_code).where(Product.status != "disabled")
               .where(select(Offer.id).where(Offer.product_id == Product.id, Offer.status == "active").exists())
               .order_by(Product.code))
    return [code for code, category in uow.session.execute(on_sale) if not book.has_rule(code, category)]


def rule_history(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
    """The latest changes of ``tenant_id``'s rules (None: the platform's), newest first."""
    _operator(ctx)
    rows = uow.session.scalars(select(PriceRuleChange).where(PriceRuleChange.owner == _owner(tenant_id))
                               .order_by(PriceRuleChange.seq.desc()).limit(limit))
    return [{"target": r.target, "old_kind": r.old_kind, "old_value": r.old_value, "new_kind": r.new_kind,
             "new_value": r.new_value, "actor": r.actor, "changed_at": r.changed_at} for r in rows]


def explain_price(ctx: CallContext, uow: UnitOfWork, *, tenant_id: str, product_code: str) -> dict[str, Any]:
    """For operators: a product's cost, platform base price and this tenant's price, and the
    rules that made them. :raise NotFound: no such product."""
    _operator(ctx)
    product = service.get_product(uow, product_code)
    if product is None:
        raise NotFound(f"product {product_code!r} not found")
    tenant_ctx = ctx.with_changes(tenant_id=tenant_id)
    configs = service.tenant_configs(uow, tenant_id)
    [view] = service.sale_views(tenant_ctx, uow, [product], configs=configs)
    healthy = [o["cost"] for o in view["offers"] if configs.get(o["config_id"])]
    cost = min(healthy or [o["cost"] for o in view["offers"]], default=None)
    book = pricing.load_rulebook(uow, tenant_id)
    base_rule = book.pick(book.platform, product.code, product.category_code)
    tenant_rule = book.pick(book.tenant, product.code, product.category_code)
    return {"code": product.code, "cost": cost, "price": view["price"], "active": view["active"],
            "base": None if cost is None else (base_rule.apply(cost) if base_rule else cost),
            "platform_rule": base_rule and {"kind": base_rule.kind, "value": base_rule.value},
            "tenant_rule": tenant_rule and {"kind": tenant_rule.kind, "value": tenant_rule.value}}
