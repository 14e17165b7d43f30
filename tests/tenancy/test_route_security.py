"""Walks the app's URL map: every /v1 route needs a token, and another tenant's ids are 404.

Generated over the routes, so a route added later is covered without anyone remembering:
a /v1 route with path parameters must have an owned-object factory in OWNED_OBJECTS, or
this test fails and says so.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from hub.app import create_app

#: A factory may add a valid request body under this key, so that the walk reaches the
#: ownership check of a route whose body is validated first.
BODY = "__body__"

#: rule -> factory(app, owner: TestTenant) returning the URL's path parameters for an
#: object that ``owner`` owns. Each service adds its routes here.
OWNED_OBJECTS: dict[str, Callable] = {
    "/v1/clients/<client_id>": lambda app, owner: {"client_id": owner.client_id},
    "/v1/webhook/deliveries/<delivery_id>": lambda app, owner: {"delivery_id": _bus_delivery(app, owner)},
    "/v1/webhook/deliveries/<delivery_id>/resend": lambda app, owner: {"delivery_id": _bus_delivery(app, owner)},
    "/v1/wallets/<wallet_id>": lambda app, owner: {"wallet_id": _main_wallet(app, owner)},
    "/v1/wallets/<wallet_id>/entries": lambda app, owner: {"wallet_id": _main_wallet(app, owner)},
    "/v1/wallets/<wallet_id>/topups": lambda app, owner: {"wallet_id": _main_wallet(app, owner),
                                                           BODY: {"amount": 100, "ref_id": "route-walk"}},
    "/v1/bulk/<job_id>": lambda app, owner: {"job_id": _bulk_job(app, owner)},
    "/v1/bulk/<job_id>/items": lambda app, owner: {"job_id": _bulk_job(app, owner)},
    "/v1/bulk/<job_id>/results.csv": lambda app, owner: {"job_id": _bulk_job(app, owner)},
    "/v1/bulk/<job_id>/cancel": lambda app, owner: {"job_id": _bulk_job(app, owner)},
    "/v1/transactions/<transaction_id>": lambda app, owner: {"transaction_id": _transaction(app, owner)},
}

#: Routes only the platform calls (a tenant's client gets 403 whatever its scopes): the walk
#: calls them as a platform client acting for the intruder, then for the owner.
PLATFORM_ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/wallets/<wallet_id>/topups": ("wallets:topup",),
}

#: Routes whose path names a platform-wide object rather than a tenant's: a product code is
#: the same catalog entry for every tenant, so both tenants get 200 there. What must not
#: cross tenants is the tenant-specific part of the answer (its price from its own rules):
#: ``test_public_catalog_routes_never_show_another_tenants_price`` checks that instead.
#: rule -> factory(app, owner) returning the path parameters and giving ``owner`` a price
#: rule of its own (the intruder must not see that price).
PUBLIC_CATALOG_ROUTES: dict[str, Callable] = {
    "/v1/products/<code>": lambda app, owner: {"code": _product_priced_for(app, owner)},
}


def _product_priced_for(app, owner) -> str:
    from hub.context import CallContext
    from hub.db import unit_of_work
    from hub.products.rules import set_rule
    from hub.products.testing import seed_sandbox_catalog

    seed_sandbox_catalog(app)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        set_rule(CallContext.system(actor="tests"), uow, tenant_id=owner.id, target="product:TEL10",
                 kind="fixed_price", value=987_654)
        uow.commit()
    return "TEL10"


def _main_wallet(app, owner) -> str:
    from hub.context import CallContext
    from hub.db import unit_of_work
    from hub.wallets import accounts

    with unit_of_work(app.extensions["rop"].db) as uow:
        wallet_id = accounts.get_main_wallet(CallContext.system(tenant_id=owner.id), uow).id
        uow.commit()
    return wallet_id


def _bulk_job(app, owner) -> str:
    from hub.bulk.testing import make_job

    return make_job(app, owner.id)


def _transaction(app, owner) -> str:
    from hub.transactions.testing import make_transaction

    return make_transaction(app, owner.id)


def _bus_delivery(app, owner) -> str:
    from hub.bus.testing import make_delivery

    return make_delivery(app, owner.id)


def _v1_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1"):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule, method


def _url(rule, values: dict) -> str:
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: str(values[m.group(1)]), rule.rule)


def test_there_are_v1_routes_to_check(app):
    assert list(_v1_rules(app)), "no /v1 routes found: the URL map walk would check nothing"


def test_every_v1_view_is_guarded_by_requires(app):
    unguarded = []
    for rule, _method in _v1_rules(app):
        view = app.view_functions[rule.endpoint]
        view_class = getattr(view, "view_class", None)
        if view_class is not None:
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                func = getattr(view_class, method.lower(), None)
                if func is not None and not hasattr(func, "_rop_requires"):
                    unguarded.append(f"{method} {rule.rule}")
        elif not hasattr(view, "_rop_requires"):
            unguarded.append(rule.rule)
    assert unguarded == [], f"/v1 views without @requires: {unguarded}"


def test_every_v1_route_without_a_token_is_401(app, client):
    for rule, method in _v1_rules(app):
        values = {arg: "x_probe" for arg in rule.arguments}
        response = client.open(_url(rule, values), method=method, json={})
        assert response.status_code == 401, f"{method} {rule.rule} answered {response.status_code} without a token"
        assert response.mimetype == "application/problem+json"


def test_every_v1_route_with_ids_answers_404_to_another_tenant(app, client, tenant_factory, platform_factory):
    owner, intruder = tenant_factory(), tenant_factory()
    platform = {rule: platform_factory(scopes=list(scopes)) for rule, scopes in PLATFORM_ROUTES.items()}
    missing = []
    for rule, method in _v1_rules(app):
        if not rule.arguments or rule.rule in PUBLIC_CATALOG_ROUTES:
            continue
        factory = OWNED_OBJECTS.get(rule.rule)
        if factory is None:
            missing.append(rule.rule)
            continue
        values = factory(app, owner)
        body = values.pop(BODY, {})
        url = _url(rule, values)
        as_intruder, as_owner = intruder.headers, owner.headers
        if rule.rule in platform:
            as_intruder, as_owner = platform[rule.rule].headers_for(intruder), platform[rule.rule].headers_for(owner)
        # The intruder goes first: the owner's call may use the body up (a ref_id, say).
        response = client.open(url, method=method, headers=as_intruder, json=body)
        assert response.status_code == 404, f"{method} {rule.rule}: another tenant got {response.status_code}"
        assert response.mimetype == "application/problem+json"
        own = client.open(url, method=method, headers=as_owner, json=body)
        assert own.status_code != 404, f"{method} {url}: the owner itself gets 404; the factory is wrong"
    assert not missing, f"add an owned-object factory to OWNED_OBJECTS for: {sorted(set(missing))}"


def test_platform_routes_answer_403_to_a_tenants_own_client_with_every_scope(app, client, tenant_factory):
    """A top-up records money the platform received: the tenant's own client never makes one,
    on its own objects either, whatever scopes it was given."""
    from hub.tenancy.scopes import TENANT_SCOPES

    owner = tenant_factory(scopes=sorted(TENANT_SCOPES))
    for rule, method in _v1_rules(app):
        if rule.rule not in PLATFORM_ROUTES:
            continue
        values = OWNED_OBJECTS[rule.rule](app, owner)
        body = values.pop(BODY, {})
        response = client.open(_url(rule, values), method=method, headers=owner.headers, json=body)
        assert response.status_code == 403, f"{method} {rule.rule}: the tenant's own client got {response.status_code}"
        assert response.mimetype == "application/problem+json"


def test_public_catalog_routes_never_show_another_tenants_price(app, client, tenant_factory):
    owner, intruder = tenant_factory(), tenant_factory()
    for rule, method in _v1_rules(app):
        if rule.rule not in PUBLIC_CATALOG_ROUTES:
            continue
        url = _url(rule, PUBLIC_CATALOG_ROUTES[rule.rule](app, owner))
        own = client.open(url, method=method, headers=owner.headers)
        seen = client.open(url, method=method, headers=intruder.headers)
        assert own.status_code == seen.status_code == 200, f"{method} {rule.rule}"
        assert "987654" in own.get_data(as_text=True), "the factory's tenant price is not applied"
        assert "987654" not in seen.get_data(as_text=True), f"{method} {rule.rule} leaks another tenant's price"
        assert "cost" not in seen.get_data(as_text=True)


def test_the_walk_catches_an_unguarded_route(config):
    """The checks above are real: an app with an unguarded /v1 route fails them."""
    application = create_app(config)

    @application.route("/v1/leaky/<thing_id>")
    def leaky(thing_id):
        return {"thing": thing_id}

    with pytest.raises(AssertionError):
        test_every_v1_view_is_guarded_by_requires(application)
    with pytest.raises(AssertionError):
        test_every_v1_route_without_a_token_is_401(application, application.test_client())
    application.extensions["rop"].close()
