"""Health, circuit breaker, the shared HTTP client, and the built-in hooks."""
from __future__ import annotations

import socket
import time

import pytest

from hub.context import CallContext
from hub.db import unit_of_work
from hub.providers import client, health, service
from hub.providers.contract import ProviderResult, PurchaseRequest, State
from hub.providers.http import OutcomeUnknown, ProviderHttp, RequestNotSent, check_destination
from hub.providers.testing import LiveServer


def test_breaker_opens_on_failures_and_a_good_probe_closes_it(app):
    redis = app.extensions["rop"].redis
    for _ in range(health.MIN_CALLS):
        health.record(redis, "pcf_x", "unknown", 30_000, transport_failure=True)
    assert health.breaker_state(redis, "pcf_x") == "open" and not health.allow_call(redis, "pcf_x")
    redis.set("rop:providers:health:pcf_x:open_until", 0)  # the open period is over
    assert health.breaker_state(redis, "pcf_x") == "half_open"
    assert health.allow_call(redis, "pcf_x") and not health.allow_call(redis, "pcf_x")  # one probe
    health.record(redis, "pcf_x", "success", 120)
    assert health.breaker_state(redis, "pcf_x") == "closed"


def test_an_open_breaker_removes_the_config_from_routing(app):
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        row = service.add_config(uow, "sandbox", "Sandbox", settings={"fault_rate": 1.0})
        uow.commit()
        for i in range(health.MIN_CALLS):
            assert client.purchase(uow, row.id, PurchaseRequest(f"h{i}", "TEL10", "081212345678")).state \
                is State.UNKNOWN
        assert service.usable_configs(uow, "ten_a") == []
        result = client.purchase(uow, row.id, PurchaseRequest("h-last", "TEL10", "081212345678"))
        assert result.state is State.REJECTED and result.data["not_sent"]
        assert service.masked(row)["health"]["success_rate"] == 0.0


def test_http_client_tells_never_sent_from_unknown_outcome():
    http = ProviderHttp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    with pytest.raises(RequestNotSent):
        http.post(f"http://127.0.0.1:{free_port}/x", allow_private=True, timeout=1)

    def slow(environ, start_response):
        import time

        time.sleep(1.0)
        start_response("200 OK", [])
        return [b"late"]

    with LiveServer(slow) as server, pytest.raises(OutcomeUnknown):
        http.post(server.url, allow_private=True, timeout=0.2)


def test_ssrf_guard_refuses_private_addresses_unless_allowed():
    with pytest.raises(RequestNotSent):
        check_destination("http://127.0.0.1:9/x", allow_private=False)
    with pytest.raises(RequestNotSent):
        check_destination("file:///etc/passwd", allow_private=True)
    check_destination("http://127.0.0.1:9/x", allow_private=True)


@pytest.mark.parametrize("kind,operator,number,ok", [
    ("pulsa", "telkomsel", "081234567890", True), ("pulsa", "telkomsel", "+6281234567890", True),
    ("pulsa", "xl", "081234567890", False), ("pulsa", "indosat", "0857-1234-5678", True),
    ("data", None, "12345", False), ("pln", "pln", "12345678901", True), ("pln", "pln", "1234", False),
])
def test_built_in_customer_number_rules(app, kind, operator, number, ok):
    with app.app_context():
        assert (client.validate_customer_number(kind, operator, number) is None) is ok


def test_built_in_router_orders_by_cost_and_keeps_only_usable_configs(app):
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        a = service.add_config(uow, "sandbox", "A")
        b = service.add_config(uow, "sandbox", "B")
        off = service.add_config(uow, "sandbox", "Off", enabled=False)
        uow.commit()
        routes = [client.Route(a.id, "sandbox", "TEL10", 10_400), client.Route(b.id, "sandbox", "TEL10", 10_300),
                  client.Route(off.id, "sandbox", "TEL10", 9_000)]
        ordered = client.routes_for(uow, CallContext.system(tenant_id="ten_a"), "TEL10", routes)
    assert [r.config_id for r in ordered] == [b.id, a.id]


def test_built_in_pricing_adds_the_margin(app):
    host = app.extensions["rop"].extras["plugins"]
    assert host.hook.price_product(tenant_id="t", product_code="TEL10", sku="TEL10", cost=10_000,
                                   currency="IDR", product={"margin": 500}) == 10_500


def test_http_errors_say_whether_the_request_may_have_been_sent_and_results_carry_the_transport_marker():
    from hub.providers.faults import Fault, FaultProxy
    from hub.providers.http import ProviderServerError, UnreadableAnswer, failure_result, read_json

    def ok(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"ok": true}']

    http = ProviderHttp()
    with LiveServer(ok) as server, FaultProxy(server.url) as proxy:
        assert read_json(http.get(proxy.url, allow_private=True)) == {"ok": True}
        cases = [(Fault.REFUSE, {}, RequestNotSent, False), (Fault.CUT, {}, OutcomeUnknown, True),
                 (Fault.STATUS, {"status": 503}, ProviderServerError, True)]
        for fault, options, error, sent in cases:
            proxy.set(fault, **options)
            with pytest.raises(error) as raised:
                http.post(proxy.url, json={}, allow_private=True, timeout=1)
            proxy.clear()
            assert raised.value.may_have_been_sent is sent and raised.value.transport_failure
            purchase = failure_result(raised.value, "purchase")
            assert purchase.transport_failure and purchase.state is (State.UNKNOWN if sent else State.REJECTED)
            assert purchase.data.get("not_sent", False) is not sent
            assert failure_result(raised.value, "check_status").state is State.UNKNOWN  # never "not sent"
        proxy.set(Fault.GARBAGE)
        with pytest.raises(UnreadableAnswer):
            read_json(http.get(proxy.url, allow_private=True))
        proxy.clear()
        assert http.post(proxy.url, allow_private=True, server_errors=False).status_code == 200


def test_a_tenants_own_failures_open_its_breaker_only_and_transport_failures_open_the_shared_one(app):
    redis = app.extensions["rop"].redis
    for _ in range(health.MIN_CALLS):
        health.record(redis, "pcf_t", "unknown", 30_000, tenant_id="ten_a")
    assert health.breaker_state(redis, "pcf_t", "ten_a") == "open"
    assert health.breaker_state(redis, "pcf_t") == "closed"
    assert health.is_open(redis, "pcf_t", "ten_a") and not health.is_open(redis, "pcf_t", "ten_b")
    assert not health.allow_call(redis, "pcf_t", "ten_a") and health.allow_call(redis, "pcf_t", "ten_b")
    assert health.open_many(redis, ["pcf_t", "pcf_other"], "ten_a") == {"pcf_t": True, "pcf_other": False}
    for _ in range(health.MIN_CALLS):
        health.record(redis, "pcf_t", "unknown", 30_000, tenant_id="ten_c", transport_failure=True)
    assert health.breaker_state(redis, "pcf_t") == "open"
    assert health.is_open(redis, "pcf_t", "ten_b") and not health.allow_call(redis, "pcf_t")


def test_the_http_clients_failures_are_noted_as_transport_failures_during_a_watched_call(app):
    from hub.providers.http import failure_result, watch_transport

    assert ProviderResult(State.UNKNOWN).transport_failure is False  # by default: an answer about the purchase

    def unavailable(environ, start_response):
        start_response("503 Service Unavailable", [("Content-Type", "text/html")])
        return [b"<html>down</html>"]

    http = ProviderHttp()
    with LiveServer(unavailable) as server, watch_transport() as seen, pytest.raises(OutcomeUnknown) as raised:
        http.post(server.url, allow_private=True, timeout=5)
    assert len(seen) == 1 and "503" in seen[0]
    result = failure_result(raised.value, "purchase")
    assert (result.state, result.transport_failure) == (State.UNKNOWN, True)
    assert failure_result(RequestNotSent("refused"), "purchase").data == {"not_sent": True}


def test_a_batch_reads_which_breakers_are_closed_in_one_go(app):
    """closed_for: the pairs whose shared and tenant breakers are both closed; a tenant's open
    breaker leaves out that tenant only, the shared one every tenant; a half-open one is not
    closed (its probe is taken call by call, by allow_call)."""
    redis = app.extensions["rop"].redis
    pairs = [("pcf_b", "ten_a"), ("pcf_b", "ten_b"), ("pcf_c", "ten_a"), ("pcf_c", None)]
    assert health.closed_for(redis, pairs) == set(pairs)
    for _ in range(health.MIN_CALLS):
        health.record(redis, "pcf_b", "unknown", 30_000, tenant_id="ten_a")
    assert health.closed_for(redis, pairs) == set(pairs) - {("pcf_b", "ten_a")}
    for _ in range(health.MIN_CALLS):
        health.record(redis, "pcf_c", "unknown", 30_000, transport_failure=True)
    assert health.closed_for(redis, pairs) == {("pcf_b", "ten_b")}
    redis.set("rop:providers:health:pcf_c:open_until", time.time() - 1)  # half-open
    assert health.closed_for(redis, pairs) == {("pcf_b", "ten_b")}
    assert health.allow_call(redis, "pcf_c") and not health.allow_call(redis, "pcf_c")  # one probe
    health.record(redis, "pcf_c", "success", 100)  # the probe succeeded: closed
    assert health.closed_for(redis, pairs) == {("pcf_b", "ten_b"), ("pcf_c", "ten_a"), ("pcf_c", None)}


def test_the_provider_client_keeps_a_connection_for_every_call_in_flight():
    """A batch's calls go out together, round after round: each call thread's connection is
    kept alive for the next round (the hub's 128 call and 64 status-check threads, each with
    one), not only the first 20, and none waits for a connection. Each request is held until all
    120 are in flight (5 s at most): a client with fewer connections never gets there."""
    from concurrent.futures import ThreadPoolExecutor

    from hub.bus.testing import SlowServer

    server = SlowServer().start()
    http = ProviderHttp()
    try:
        with ThreadPoolExecutor(max_workers=120) as pool:
            for _ in range(3):  # three rounds of 120 calls at once, as three batches would make
                with server.lock:
                    server.max_in_flight = 0  # each round shows its own
                calls = [pool.submit(http.request, "GET", f"{server.url}?hold=120&delay=5", allow_private=True)
                         for _ in range(120)]
                assert all(call.result().status_code == 200 for call in calls)
                assert server.max_in_flight == 120  # none waited for another's connection
        assert server.connections <= 130  # the first round's, kept for the next two (20 before: 320)
    finally:
        server.stop()
