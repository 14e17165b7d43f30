"""hub.products.client: what transactions and bulk call (INTERFACES.md)."""
from __future__ import annotations

import pytest

from hub.context import CallContext
from hub.db import unit_of_work
from hub.errors import Forbidden, NotFound
from hub.products import client
from hub.products.testing import seed_sandbox_catalog
from hub.providers import service as provider_service
from tests.products.conftest import add_config, open_breaker, sale_ctx, seen_now


def test_seed_gives_sandbox_products_with_offers(app, run, tenant_factory):
    codes = seed_sandbox_catalog(app)
    assert {"TEL10", "PLN20", "GOPAY25", "ML86", "PLNPOST", "BPJS"} <= set(codes)
    assert seed_sandbox_catalog(app) == codes  # a second call reuses the configuration
    tenant = tenant_factory()
    product = run(client.get_for_sale, sale_ctx(tenant.id), "TEL10")
    assert product["name"] == "Pulsa Telkomsel 10,000"
    assert (product["category"], product["brand"], product["type"]) == ("pulsa", "telkomsel", "prepaid")
    assert product["nominal"] == 10_000 and product["currency"] == "IDR" and product["active"] is True
    [offer] = product["offers"]
    assert offer["provider_code"] == "sandbox" and offer["provider_sku"] == "TEL10"
    assert offer["cost"] == 10_350  # the sandbox's cost: value + 250 + 1 %
    assert product["price"] == 10_350  # no price rule at all: the cost
    postpaid = run(client.get_for_sale, sale_ctx(tenant.id), "PLNPOST")
    assert postpaid["type"] == "postpaid" and postpaid["category"] == "bill"


def test_unknown_code_is_none_and_prices_for_leaves_it_out(app, run, tenant_factory):
    seed_sandbox_catalog(app)
    tenant = tenant_factory()
    assert run(client.get_for_sale, sale_ctx(tenant.id), "NOPE") is None
    found = run(client.prices_for, sale_ctx(tenant.id), ["TEL10", "PLN20", "NOPE", "TEL10"])
    assert set(found) == {"TEL10", "PLN20"}
    assert found["PLN20"]["offers"][0]["cost"] == 20_500


def test_prices_for_many_codes_uses_a_few_queries(app, tenant_factory):
    from sqlalchemy import event

    codes = seed_sandbox_catalog(app)
    tenant = tenant_factory()
    engine = app.extensions["rop"].db.engine
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        event.listen(engine, "before_cursor_execute", count)
        try:
            found = client.prices_for(sale_ctx(tenant.id), uow, codes * 20)
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert set(found) == set(codes)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) <= 6, selects


def test_the_caller_needs_products_read_and_a_tenant(app, run, tenant_factory):
    seed_sandbox_catalog(app)
    tenant = tenant_factory()
    with pytest.raises(Forbidden):
        run(client.get_for_sale, CallContext(tenant_id=tenant.id, client_id="c", scopes=frozenset()), "TEL10")
    with pytest.raises(NotFound):
        run(client.prices_for, CallContext(tenant_id=None, client_id="svc_transactions",
                                           scopes=frozenset({"products:read"})), ["TEL10"])


def test_kill_switch_and_open_breaker_make_a_product_unavailable(app, run, tenant_factory):
    seed_sandbox_catalog(app)
    tenant = tenant_factory()
    [offer] = run(client.get_for_sale, sale_ctx(tenant.id), "TEL10")["offers"]
    open_breaker(app, offer["config_id"])
    down = run(client.get_for_sale, sale_ctx(tenant.id), "TEL10")
    # Unavailable, but the offer stays listed (any health) and the price is still known.
    assert down["active"] is False and down["offers"] and down["price"] == 10_350
    app.extensions["rop"].redis.flushdb()
    seen_now(app)
    assert run(client.get_for_sale, sale_ctx(tenant.id), "TEL10")["active"] is True
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        provider_service.set_enabled(uow, offer["config_id"], False)
        uow.commit()
    off = run(client.get_for_sale, sale_ctx(tenant.id), "TEL10")
    assert off["active"] is False and off["offers"] == [] and off["price"] is None


def test_a_tenants_own_provider_configuration_sells_only_to_that_tenant(app, run, units, system, tenant_factory):
    from hub.products.sync import sync_config

    owner, other = tenant_factory(), tenant_factory()
    own_config = add_config(app, name="Owner's own sandbox contract", tenant_id=owner.id)
    with app.app_context():
        assert sync_config(system, units, own_config)["status"] == "succeeded"
    mine = run(client.get_for_sale, sale_ctx(owner.id), "TEL10")
    theirs = run(client.get_for_sale, sale_ctx(other.id), "TEL10")
    assert mine["active"] is True and [o["config_id"] for o in mine["offers"]] == [own_config]
    assert theirs["active"] is False and theirs["offers"] == [] and theirs["price"] is None
    # Once the platform's sandbox sells it too, the other tenant sees only that offer.
    seed_sandbox_catalog(app)
    theirs = run(client.get_for_sale, sale_ctx(other.id), "TEL10")
    assert theirs["active"] is True and own_config not in {o["config_id"] for o in theirs["offers"]}
    assert len(run(client.get_for_sale, sale_ctx(owner.id), "TEL10")["offers"]) == 2
