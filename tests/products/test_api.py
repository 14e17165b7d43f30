"""GET /v1/products and /v1/products/{code}: tenant prices, filters, pagination, the cache."""
from __future__ import annotations

from sqlalchemy import update

from hub.app import create_app
from hub.cache import refcache
from hub.context import CallContext
from hub.db import unit_of_work
from hub.products import rules
from hub.products.models import Product
from hub.products.testing import seed_sandbox_catalog
from hub.providers import service as provider_service
from tests.products.conftest import open_breaker

PUBLIC_FIELDS = {"code", "name", "category", "brand", "type", "nominal", "description", "price", "currency",
                 "active"}
OPERATOR = CallContext.system(actor="tests:operator")


def set_rule(app, **kwargs):
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        rules.set_rule(OPERATOR, uow, **kwargs)
        uow.commit()


def all_pages(client, headers, **params):
    codes, cursor, pages = [], None, 0
    while True:
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        body = client.get("/v1/products", headers=headers, query_string=query).get_json()
        codes += [p["code"] for p in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return codes, pages


def test_listing_needs_a_token_and_the_scope(app, client, tenant_factory):
    assert client.get("/v1/products").status_code == 401
    no_scope = tenant_factory(scopes="wallets:read")
    response = client.get("/v1/products", headers=no_scope.headers)
    assert response.status_code == 403 and response.mimetype == "application/problem+json"


def test_two_tenants_see_two_prices_and_never_the_cost(app, client, tenant_factory):
    seed_sandbox_catalog(app)
    plain, vip = tenant_factory(), tenant_factory()
    set_rule(app, tenant_id=None, target="all", kind="markup_percent", value=300)  # platform: cost + 3 %
    set_rule(app, tenant_id=vip.id, target="product:TEL10", kind="fixed_price", value=10_500)
    plain_view = client.get("/v1/products/TEL10", headers=plain.headers).get_json()
    vip_view = client.get("/v1/products/TEL10", headers=vip.headers).get_json()
    assert plain_view["price"] == 10_350 + 311  # 3 % of 10,350 = 310.5, rounded half up
    assert vip_view["price"] == 10_500
    for view in (plain_view, vip_view):
        assert set(view) == PUBLIC_FIELDS
    listed = {p["code"]: p for p in client.get("/v1/products", headers=vip.headers,
                                               query_string={"q": "telkomsel"}).get_json()["items"]}
    assert listed["TEL10"]["price"] == 10_500 and listed["TEL5"]["price"] == 5_300 + 159
    raw = client.get("/v1/products", headers=plain.headers, query_string={"limit": 500}).get_data(as_text=True)
    assert "cost" not in raw and "offers" not in raw and "10350," not in raw and "10500" not in raw
    assert "markup" not in raw and vip.id not in raw


def test_filters_search_and_cursor_pagination(app, client, tenant_factory):
    codes = seed_sandbox_catalog(app)
    tenant = tenant_factory()
    walked, pages = all_pages(client, tenant.headers, limit=7)
    assert walked == sorted(codes) and pages == -(-len(codes) // 7)
    pulsa = client.get("/v1/products", headers=tenant.headers, query_string={"category": "pulsa"}).get_json()
    assert pulsa["items"] and {p["category"] for p in pulsa["items"]} == {"pulsa"}
    xl = all_pages(client, tenant.headers, brand="xl", limit=2)[0]
    assert xl and all(code.startswith("XL") for code in xl)
    postpaid = client.get("/v1/products", headers=tenant.headers, query_string={"type": "postpaid"}).get_json()
    assert sorted(p["code"] for p in postpaid["items"]) == ["BPJS", "PLNPOST"]
    found = client.get("/v1/products", headers=tenant.headers, query_string={"q": "Mobile LEG"}).get_json()
    assert [p["code"] for p in found["items"]] == ["ML86"]
    none = client.get("/v1/products", headers=tenant.headers, query_string={"q": "100%_"}).get_json()
    assert none == {"items": [], "next_cursor": None}


def test_active_filter_follows_availability(app, client, tenant_factory):
    codes = seed_sandbox_catalog(app)
    tenant = tenant_factory()
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        [config] = provider_service.list_configs(uow)
        provider_service.set_enabled(uow, config.id, False)
        uow.commit()
    assert all_pages(client, tenant.headers, active="true", limit=5)[0] == []
    inactive, _ = all_pages(client, tenant.headers, active="false", limit=5)
    assert inactive == sorted(codes)


def test_bad_input_is_a_problem(app, client, tenant_factory):
    seed_sandbox_catalog(app)
    tenant = tenant_factory()
    for query in ({"type": "lifetime"}, {"limit": 0}, {"limit": 501}, {"cursor": "%%%"}, {"q": ""}):
        response = client.get("/v1/products", headers=tenant.headers, query_string=query)
        assert response.status_code == 422, query
        assert response.mimetype == "application/problem+json"
        field = next(iter(query))
        assert field in response.json["detail"], response.json  # the detail names the field
    missing = client.get("/v1/products/NOPE", headers=tenant.headers)
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"


def test_cached_reads_are_invalidated_across_processes(app, config, client, tenant_factory):
    """A second app (its own engine and pool: another web process) changes prices and
    availability; the first app's next read shows the change, never the cached answer."""
    seed_sandbox_catalog(app)
    tenant = tenant_factory()
    other = create_app(config)
    # this process's reading of the versions never ages (the clock stands still): only the
    # page script's own reading of them, with align(), can make it see another process's bump
    refcache(app).refresh_clock = lambda: 0.0
    try:
        first = client.get("/v1/products/TEL10", headers=tenant.headers).get_json()
        assert first["price"] == 10_350
        # The answer is cached: a change written behind the service's back is not seen...
        with unit_of_work(app.extensions["rop"].db) as uow:
            uow.session.execute(update(Product).where(Product.code == "TEL10").values(name="Renamed"))
            uow.commit()
        assert client.get("/v1/products/TEL10", headers=tenant.headers).get_json()["name"] == first["name"]
        # ...while a change made through the service in another process is.
        set_rule(other, tenant_id=tenant.id, target="category:pulsa", kind="markup_fixed", value=400)
        second = client.get("/v1/products/TEL10", headers=tenant.headers).get_json()
        assert (second["price"], second["name"]) == (10_750, "Renamed")
        # Provider health is part of the key: an open circuit breaker bites at once...
        with other.app_context(), unit_of_work(other.extensions["rop"].db) as uow:
            [config_id] = [r.id for r in provider_service.list_configs(uow)]
        open_breaker(other, config_id)
        assert client.get("/v1/products/TEL10", headers=tenant.headers).get_json()["active"] is False
        other.extensions["rop"].redis.delete(*other.extensions["rop"].redis.keys("rop:providers:health:*"))
        assert client.get("/v1/products/TEL10", headers=tenant.headers).get_json()["active"] is True
        # ...and so is the kill switch, flipped in another process.
        with other.app_context(), unit_of_work(other.extensions["rop"].db) as uow:
            [row] = provider_service.list_configs(uow)
            provider_service.set_enabled(uow, row.id, False)
            uow.commit()
        assert client.get("/v1/products/TEL10", headers=tenant.headers).get_json()["active"] is False
    finally:
        other.extensions["rop"].close()


def test_products_are_in_the_openapi_document(client):
    spec = client.get("/openapi.json").get_json()
    listing = spec["paths"]["/v1/products"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"category", "brand", "type", "q", "cursor", "limit"}
    assert "/v1/products/{code}" in spec["paths"]
    assert "cost" not in spec["components"]["schemas"]["Product"]["properties"]
