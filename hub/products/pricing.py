"""Tenant pricing: the platform price list, each tenant's rules, and the ``price_product`` hook.

How one product's price for one tenant is found (docs/products.md, "Pricing"):

1. ``cost`` — the cheapest active offer on a provider configuration this tenant may use
   (a healthy one when there is any).
2. The **platform price list** (rules owned by ``"platform"``) gives the base price: the most
   specific rule of ``product:<code>``, ``category:<code>``, ``all`` applied to the cost;
   no rule: the cost itself.
3. The **tenant's own rules** (same targets, most specific wins) apply to that base price:
   a markup (percent or fixed; negative for a discount) or a fixed price.
4. The result never goes below the cost: a fixed price or a discount under the cost is
   lifted to the cost (the hub does not sell at a loss because a provider raised its price).
5. The ``price_product`` hook has the last word: the built-in implementation answers
   ``cost + product["margin"]``, where ``margin`` is what steps 2-4 found; a plugin may
   answer anything else (``firstresult``).

A rule's ``kind`` is ``markup_percent`` (``value`` in basis points, 250 = 2.5 %),
``markup_fixed`` (minor units) or ``fixed_price`` (minor units). Percentages round half
away from zero to whole minor units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from hub.db import UnitOfWork
from hub.products.models import PLATFORM, PriceRule

KINDS = ("markup_percent", "markup_fixed", "fixed_price")
#: The largest cost a provider's catalog item may have (a larger one is a malformed item)
#: and the largest price: every price the rules can make of such a cost (+1,000 % and a
#: fixed markup of 10**12) is below it, and a bulk job of ``ROP_BULK_MAX_ROWS`` (10**6)
#: rows at this price still sums within the ledger's BIGINT.
MAX_COST = 10**11
MAX_PRICE = 4 * 10**12


@dataclass(frozen=True)
class Rule:
    kind: str
    value: int

    def apply(self, base: int) -> int:
        """The price this rule makes of ``base`` (minor units)."""
        if self.kind == "fixed_price":
            return self.value
        if self.kind == "markup_fixed":
            return base + self.value
        if self.kind == "markup_percent":
            return base + _round_half_away(base * self.value, 10_000)
        raise ValueError(f"unknown price rule kind {self.kind!r}")


def _round_half_away(numerator: int, denominator: int) -> int:
    sign = -1 if numerator < 0 else 1
    quotient, remainder = divmod(abs(numerator), denominator)
    return sign * (quotient + (1 if 2 * remainder >= denominator else 0))


def target_for(product_code: str | None = None, category: str | None = None) -> str:
    """The ``target`` string of a rule: ``product:<code>``, ``category:<code>`` or ``all``."""
    if product_code and category:
        raise ValueError("a rule targets a product or a category, not both")
    if product_code:
        return f"product:{product_code}"
    if category:
        return f"category:{category}"
    return "all"


class RuleBook:
    """The rules that apply to one tenant: the platform's and its own, by target."""

    def __init__(self, platform: dict[str, Rule], tenant: dict[str, Rule]):
        self.platform = platform
        self.tenant = tenant

    @staticmethod
    def pick(rules: dict[str, Rule], code: str, category: str) -> Rule | None:
        return rules.get(f"product:{code}") or rules.get(f"category:{category}") or rules.get("all")

    def has_rule(self, code: str, category: str) -> bool:
        """Whether any rule (the platform's or the tenant's) prices this product; without one
        it sells at cost, which is almost always a forgotten price list."""
        return self.pick(self.platform, code, category) is not None or self.pick(self.tenant, code, category) is not None

    def price(self, cost: int, code: str, category: str) -> int:
        """The rule-based price of a product costing ``cost`` (steps 2-4 above)."""
        base_rule = self.pick(self.platform, code, category)
        base = base_rule.apply(cost) if base_rule else cost
        tenant_rule = self.pick(self.tenant, code, category)
        price = tenant_rule.apply(base) if tenant_rule else base
        return max(price, cost)


def load_rulebook(uow: UnitOfWork, tenant_id: str | None) -> RuleBook:
    """The platform price list and ``tenant_id``'s rules (only the platform's when None)."""
    owners = [PLATFORM] if tenant_id is None else [PLATFORM, tenant_id]
    platform: dict[str, Rule] = {}
    tenant: dict[str, Rule] = {}
    for owner, target, kind, value in uow.session.execute(
            select(PriceRule.owner, PriceRule.target, PriceRule.kind, PriceRule.value)
            .where(PriceRule.owner.in_(owners))):
        (platform if owner == PLATFORM else tenant)[target] = Rule(kind, int(value))
    return RuleBook(platform, tenant)


def tenant_price(hook: Any, tenant_id: str, product: dict[str, Any], cost: int, rules: RuleBook) -> int:
    """The price of ``product`` (a view dict with code, category, currency…) for a tenant.

    :raise TypeError: when a ``price_product`` implementation answers something other than
        a non-negative int (a plugin bug must not turn into a wrong charge).
    """
    ruled = rules.price(cost, product["code"], product["category"])
    answer = hook.price_product(tenant_id=tenant_id, product_code=product["code"], sku=product["code"], cost=cost,
                                currency=product["currency"], product={**product, "margin": ruled - cost})
    if answer is None:  # no implementation answered (the built-in one always does)
        return ruled
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer <= MAX_PRICE:
        raise TypeError(f"price_product answered {answer!r} for {product['code']}: "
                        f"a price is a non-negative int in minor units, at most {MAX_PRICE}")
    return answer
