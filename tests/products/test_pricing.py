"""Tenant pricing: the platform price list, tenant rules, the cost floor, the price_product hook."""
from __future__ import annotations

import logging

import pytest

from hub import hookimpl
from hub.context import CallContext
from hub.errors import Forbidden, NotFound, ValidationFailed
from hub.products import client, rules
from hub.products.pricing import Rule, RuleBook
from hub.products.testing import seed_sandbox_catalog
from tests.products.conftest import sale_ctx

OPERATOR = CallContext.system(actor="tests:operator")


def test_rule_arithmetic_and_precedence():
    assert Rule("markup_percent", 250).apply(10_000) == 10_250
    assert Rule("markup_percent", 300).apply(10_350) == 10_661  # 310.5 rounds half away from zero
    assert Rule("markup_percent", -300).apply(10_350) == 10_039
    assert Rule("markup_fixed", 150).apply(10_000) == 10_150
    assert Rule("fixed_price", 12_000).apply(10_000) == 12_000
    book = RuleBook(platform={"all": Rule("markup_fixed", 100), "category:pulsa": Rule("markup_fixed", 200),
                              "product:TEL10": Rule("markup_fixed", 300)},
                    tenant={"category:pulsa": Rule("markup_percent", 1_000)})
    assert book.price(10_000, "TEL10", "pulsa") == 11_330  # base 10,300, then the tenant's +10 %
    assert book.price(10_000, "TEL20", "pulsa") == 11_220  # base 10,200 (category), +10 %
    assert book.price(10_000, "PLN20", "pln") == 10_100  # platform "all"; no tenant rule for pln


def test_a_price_never_goes_below_the_cost():
    book = RuleBook(platform={}, tenant={"product:TEL10": Rule("fixed_price", 9_000),
                                         "all": Rule("markup_percent", -5_000)})
    assert book.price(10_000, "TEL10", "pulsa") == 10_000  # a fixed price under the cost is lifted
    assert book.price(10_000, "PLN20", "pln") == 10_000  # so is a discount under it


def test_two_tenants_two_prices_and_neither_sees_the_others_rules(app, run, tenant_factory):
    seed_sandbox_catalog(app)
    a, b = tenant_factory(), tenant_factory()
    run(rules.set_rule, OPERATOR, tenant_id=None, target="all", kind="markup_fixed", value=200)
    run(rules.set_rule, OPERATOR, tenant_id=a.id, target="category:pulsa", kind="markup_percent", value=500)
    run(rules.set_rule, OPERATOR, tenant_id=b.id, target="product:TEL10", kind="fixed_price", value=11_000)
    price_a = run(client.get_for_sale, sale_ctx(a.id), "TEL10")["price"]
    price_b = run(client.get_for_sale, sale_ctx(b.id), "TEL10")["price"]
    assert (price_a, price_b) == (10_550 + 528, 11_000)  # (10,350 + 200) + 5 %; b's fixed price
    # b's rule on TEL10 leaves b's other products on the platform price list.
    assert run(client.get_for_sale, sale_ctx(b.id), "TEL20")["price"] == 20_450 + 200
    # Each tenant's prices come from the platform's and its own rules only.
    a_only = run(client.prices_for, sale_ctx(a.id), ["TEL10", "PLN20"])
    assert a_only["PLN20"]["price"] == 20_500 + 200
    assert {r["tenant_id"] for r in run(rules.list_rules, OPERATOR, tenant_id=a.id)} == {a.id}
    with pytest.raises(Forbidden):  # a tenant cannot read rules at all
        run(rules.list_rules, a.ctx, tenant_id=a.id)


def test_rules_are_validated_kept_as_history_and_removable(app, run, tenant_factory):
    seed_sandbox_catalog(app)
    tenant = tenant_factory()
    for target, kind, value in (("product:NOPE", "fixed_price", 1), ("category:nope", "markup_fixed", 1),
                                ("everything", "markup_fixed", 1), ("all", "discount", 1),
                                ("all", "markup_percent", 100_001), ("all", "fixed_price", 0),
                                ("all", "markup_fixed", "5"), ("all", "markup_fixed", True)):
        with pytest.raises(ValidationFailed):
            run(rules.set_rule, OPERATOR, tenant_id=tenant.id, target=target, kind=kind, value=value)
    run(rules.set_rule, OPERATOR, tenant_id=tenant.id, target="all", kind="markup_fixed", value=100)
    run(rules.set_rule, OPERATOR, tenant_id=tenant.id, target="all", kind="markup_percent", value=100)
    run(rules.set_rule, OPERATOR, tenant_id=tenant.id, target="all", kind="markup_percent", value=100)  # no-op
    assert run(client.get_for_sale, sale_ctx(tenant.id), "TEL10")["price"] == 10_350 + 104
    run(rules.remove_rule, OPERATOR, tenant_id=tenant.id, target="all")
    assert run(client.get_for_sale, sale_ctx(tenant.id), "TEL10")["price"] == 10_350
    with pytest.raises(NotFound):
        run(rules.remove_rule, OPERATOR, tenant_id=tenant.id, target="all")
    changes = run(rules.rule_history, OPERATOR, tenant_id=tenant.id)
    assert [(c["old_kind"], c["new_kind"]) for c in changes] == [
        ("markup_percent", None), ("markup_fixed", "markup_percent"), (None, "markup_fixed")]
    assert {c["actor"] for c in changes} == {"tests:operator"}


def test_explain_price_shows_the_operator_how_a_price_is_made(app, run, tenant_factory):
    seed_sandbox_catalog(app)
    tenant = tenant_factory()
    run(rules.set_rule, OPERATOR, tenant_id=None, target="category:pulsa", kind="markup_fixed", value=300)
    run(rules.set_rule, OPERATOR, tenant_id=tenant.id, target="product:TEL10", kind="markup_fixed", value=-100)
    explained = run(rules.explain_price, OPERATOR, tenant_id=tenant.id, product_code="TEL10")
    assert (explained["cost"], explained["base"], explained["price"]) == (10_350, 10_650, 10_550)
    assert explained["platform_rule"] == {"kind": "markup_fixed", "value": 300}


class FlatPrice:
    """A plugin pricing VIP tenants at cost + 1, and checking what the hook receives."""

    def __init__(self, vip: str):
        self.vip = vip
        self.seen: list[dict] = []

    @hookimpl
    def price_product(self, tenant_id, product_code, cost, currency, product):
        self.seen.append({"product_code": product_code, "cost": cost, "currency": currency,
                          "margin": product["margin"]})
        return cost + 1 if tenant_id == self.vip else None


def test_the_price_product_hook_has_the_last_word(app, run, tenant_factory):
    seed_sandbox_catalog(app)
    vip, other = tenant_factory(), tenant_factory()
    run(rules.set_rule, OPERATOR, tenant_id=None, target="all", kind="markup_fixed", value=500)
    plugin = FlatPrice(vip.id)
    host = app.extensions["rop"].extras["plugins"]
    host.pm.register(plugin)
    try:
        assert run(client.get_for_sale, sale_ctx(vip.id), "TEL10")["price"] == 10_351
        # Without an answer from the plugin the built-in rule prices: cost + the rules' margin.
        assert run(client.get_for_sale, sale_ctx(other.id), "TEL10")["price"] == 10_850
        assert plugin.seen[-1] == {"product_code": "TEL10", "cost": 10_350, "currency": "IDR", "margin": 500}
    finally:
        host.pm.unregister(plugin)


class BrokenPrice:
    @hookimpl
    def price_product(self, tenant_id, product_code, cost, currency, product):
        return 10.5


def test_a_price_that_is_not_an_int_is_refused(app, run, tenant_factory):
    seed_sandbox_catalog(app)
    tenant = tenant_factory()
    plugin = BrokenPrice()
    host = app.extensions["rop"].extras["plugins"]
    host.pm.register(plugin)
    try:
        with pytest.raises(TypeError, match="non-negative int"):
            run(client.get_for_sale, sale_ctx(tenant.id), "TEL10")
    finally:
        host.pm.unregister(plugin)


def test_a_product_no_rule_prices_sells_at_cost_and_the_hub_warns(app, run, tenant_factory, caplog):
    seed_sandbox_catalog(app)
    tenant, other = tenant_factory(), tenant_factory()
    caplog.set_level(logging.WARNING, logger="hub.products")

    def warnings() -> list[str]:
        return [str(r.msg) for r in caplog.records if "sold at cost" in str(r.msg)]

    # No rule at all: the purchase's view of the product is at cost, and the sale is logged.
    sale = run(client.get_for_sale, sale_ctx(tenant.id), "TEL10")
    assert (sale["price"], sale["at_cost"]) == (10_350, True)
    [line] = warnings()
    assert "TEL10" in line and tenant.id in line and "rop pricing set" in line
    run(client.prices_for, sale_ctx(tenant.id), ["TEL10"])  # a bulk file's rows: once per tenant and product
    assert len(warnings()) == 1
    assert "TEL10" in run(rules.without_rule, OPERATOR, tenant_id=tenant.id)

    # A tenant's own rule prices its sales; the platform price list still lacks one for the others.
    run(rules.set_rule, OPERATOR, tenant_id=tenant.id, target="category:pulsa", kind="markup_fixed", value=100)
    assert run(client.get_for_sale, sale_ctx(tenant.id), "TEL10")["at_cost"] is False
    assert "TEL10" not in run(rules.without_rule, OPERATOR, tenant_id=tenant.id)
    assert "TEL10" in run(rules.without_rule, OPERATOR, tenant_id=None)
    assert run(client.get_for_sale, sale_ctx(other.id), "TEL10")["at_cost"] is True

    # A platform rule for everything: nothing sells at cost by omission. A rule that makes the
    # price the cost is a decision, not an omission: no warning either.
    run(rules.set_rule, OPERATOR, tenant_id=None, target="all", kind="markup_percent", value=0)
    before = len(warnings())
    assert run(rules.without_rule, OPERATOR, tenant_id=None) == []
    third = tenant_factory()
    sale = run(client.get_for_sale, sale_ctx(third.id), "TEL10")
    assert (sale["price"], sale["at_cost"]) == (10_350, False)
    assert len(warnings()) == before
