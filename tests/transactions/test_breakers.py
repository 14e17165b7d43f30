"""One tenant cannot switch a product off for every tenant.

The attack: 50 purchases ending 5555 (an unknown outcome at the sandbox) opened the shared
circuit breaker of the sandbox configuration; every other tenant got 422 "not available
now" for 30 s, again and again. Now each (tenant, configuration) has a breaker fed by all
of that tenant's outcomes, and the configuration's shared breaker is fed only by transport
failures (connection refused, timeouts, 5xx), which the provider results mark.
"""
from __future__ import annotations

import socket
import uuid
from types import MappingProxyType

from rop_digiflazz.simulator import DigiflazzSimulator

from hub.db import unit_of_work
from hub.providers import client as providers
from hub.providers import health
from hub.providers import service as provider_service
from hub.providers.contract import PurchaseRequest, State
from hub.providers.http import RequestNotSent, provider_http

from .conftest import FUNDS, buy, drain, transaction


def _funded(app, tenant_factory):
    from hub.wallets import accounts as wallets

    tenant = tenant_factory()
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        wallets.topup(tenant.operator, uow, None, FUNDS, "seed")
        uow.commit()
    return tenant


def test_fifty_5555_purchases_of_one_tenant_leave_another_tenants_purchases_accepted(app, client, funded, sandbox,
                                                                                   tenant_factory):
    greedy, other = funded.tenant, _funded(app, tenant_factory)
    for _ in range(50):
        assert buy(client, greedy, "081200005555").status_code == 202
    drain(app)
    redis = app.extensions["rop"].redis
    assert health.breaker_state(redis, sandbox) == "closed"  # the shared one: no transport failure
    assert health.breaker_state(redis, sandbox, greedy.id) == "open"  # its own, on this configuration

    product = client.get("/v1/products/TEL10", headers=other.headers)
    assert product.status_code == 200 and product.json["active"] is True
    accepted = buy(client, other, "081200001234")
    assert accepted.status_code == 202
    drain(app, lambda: transaction(app, other.id, accepted.json["id"])["status"] == "succeeded")

    # The tenant whose purchases time out is the one that gets "not available now" there.
    assert client.get("/v1/products/TEL10", headers=greedy.headers).json["active"] is False
    refused = buy(client, greedy, "081200001234")
    assert refused.status_code == 422 and "not available now" in refused.json["detail"]


def _digiflazz(app, base_url: str, name: str = "Digiflazz") -> str:
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        config_id = provider_service.add_config(uow, "digiflazz", name, settings={"base_url": base_url},
                                                credentials={"username": "u", "api_key": "k"}).id
        uow.commit()
    return config_id


def _buy_at(app, config_id: str, tenant_id: str, times: int) -> list:
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        return [providers.purchase(uow, config_id, PurchaseRequest(uuid.uuid4().hex, "xld10", "087800001230"),
                                   tenant_id=tenant_id) for _ in range(times)]


def _usable(app, tenant_id: str) -> set[str]:
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        return {c["config_id"] for c in providers.usable_configs(uow, tenant_id)}


def test_a_provider_answering_503_opens_the_shared_breaker_for_every_tenant(app):
    with DigiflazzSimulator(username="u", api_key="k") as sim:
        config_id = _digiflazz(app, sim.url)
        sim.fail_next = [503] * health.MIN_CALLS
        results = _buy_at(app, config_id, "ten_a", health.MIN_CALLS)
        assert {(r.state, r.transport_failure) for r in results} == {(State.UNKNOWN, True)}
        redis = app.extensions["rop"].redis
        assert health.breaker_state(redis, config_id) == "open"
        assert config_id not in _usable(app, "ten_b")  # another tenant: the provider is down for it too
        blocked = _buy_at(app, config_id, "ten_b", 1)[0]
        assert blocked.state is State.REJECTED and "circuit breaker" in blocked.message


def test_a_closed_port_opens_the_shared_breaker(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    config_id = _digiflazz(app, f"http://127.0.0.1:{closed}")
    results = _buy_at(app, config_id, "ten_a", health.MIN_CALLS)
    assert {(r.state, r.data.get("not_sent"), r.transport_failure) for r in results} == {(State.REJECTED, True, True)}
    assert health.breaker_state(app.extensions["rop"].redis, config_id) == "open"
    assert config_id not in _usable(app, "ten_b")


def _forgetful_provider() -> type:
    """A provider whose plugin turns a refused connection into ``unknown`` without saying it
    was the transport (``transport_failure`` left False)."""
    from marshmallow import Schema, fields

    from hub.providers.contract import Capability, Provider, ProviderResult

    class Settings(Schema):
        base_url = fields.String(required=True)

    class Forgetful(Provider):
        code, name, version = "forgetful", "Forgetful", "0.1"
        capabilities = frozenset({Capability.PREPAID})
        settings_schema = Settings
        code_table = MappingProxyType({"00": State.SUCCESS})

        def catalog(self):
            return []

        def purchase(self, request):
            try:
                provider_http().post(self.settings["base_url"], json={}, allow_private=True, timeout=1)
            except RequestNotSent:
                return ProviderResult(State.UNKNOWN, message="no answer")
            return ProviderResult(State.SUCCESS)

        def check_status(self, request):
            return ProviderResult(State.UNKNOWN)

    return Forgetful


def test_the_hub_marks_a_transport_failure_its_plugin_did_not(app):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    host = app.extensions["rop"].extras["plugins"]
    host.providers["forgetful"] = _forgetful_provider()  # the hub's HTTP client notices, the hub marks it
    try:
        with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
            config_id = provider_service.add_config(uow, "forgetful", "Forgetful",
                                                    settings={"base_url": f"http://127.0.0.1:{closed}"}).id
            uow.commit()
            results = [providers.purchase(uow, config_id, PurchaseRequest(f"f{i}", "X", "081212345678"),
                                          tenant_id="ten_a") for i in range(health.MIN_CALLS)]
        assert all(r.state is State.UNKNOWN and r.transport_failure for r in results)
        assert health.breaker_state(app.extensions["rop"].redis, config_id) == "open"
    finally:
        del host.providers["forgetful"]
