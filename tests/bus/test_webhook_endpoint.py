"""``DELETE /v1/webhook`` and the per-endpoint filter of event types, through HTTP."""
from __future__ import annotations

import json

from hub.bus import publish
from hub.bus.testing import Ping, register
from hub.db import unit_of_work
from hub.worker import make_worker
from tests.bus.test_webhooks import SCOPES


def _ping(app, tenant, n=1, mode="echo"):
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        publish(tenant.ctx, uow, Ping(n=n, mode=mode))
        uow.commit()


def test_delete_removes_the_webhook_and_its_deliveries_stop(app, client, tenant_factory, receiver_factory):
    register(app)
    tenant = tenant_factory(scopes=SCOPES)
    missing = client.delete("/v1/webhook", headers=tenant.headers)
    assert missing.status_code == 404 and missing.content_type.startswith("application/problem+json")
    receiver = receiver_factory()
    assert client.put("/v1/webhook", json={"url": receiver.url}, headers=tenant.headers).status_code == 200
    _ping(app, tenant, mode="noop")  # a delivery pending when the webhook goes
    deleted = client.delete("/v1/webhook", headers=tenant.headers)
    assert deleted.status_code == 204 and deleted.data == b""
    assert client.get("/v1/webhook", headers=tenant.headers).status_code == 404
    _ping(app, tenant, n=2, mode="noop")  # after: no delivery at all
    make_worker(app).work(burst=True)
    assert receiver.requests == []
    items = client.get("/v1/webhook/deliveries", headers=tenant.headers).get_json()["items"]
    assert [d["status"] for d in items] == ["failed"]
    reader = tenant_factory(scopes=["events:read"])
    assert client.delete("/v1/webhook", headers=reader.headers).status_code == 403


def test_the_event_filter_chooses_what_is_delivered(app, client, tenant_factory, receiver_factory):
    register(app)
    tenant = tenant_factory(scopes=SCOPES)
    receiver = receiver_factory()
    put = client.put("/v1/webhook", json={"url": receiver.url}, headers=tenant.headers).get_json()
    assert put["events"] == ["*"]  # default: every event
    only = client.put("/v1/webhook", json={"url": receiver.url, "events": ["bus_test.echoed"]}, headers=tenant.headers)
    assert only.status_code == 200 and only.get_json()["events"] == ["bus_test.echoed"]
    # a PUT without events keeps the filter
    kept = client.put("/v1/webhook", json={"url": receiver.url}, headers=tenant.headers).get_json()
    assert kept["events"] == ["bus_test.echoed"] and kept["secret"] == put["secret"]
    _ping(app, tenant)  # a ping (filtered out) whose subscriber publishes an echo (sent)
    make_worker(app).work(burst=True)
    assert [json.loads(body)["type"] for _headers, body in receiver.requests] == ["bus_test.echoed"]
    assert client.get("/v1/events", headers=tenant.headers).get_json()["items"][0]["type"] == "bus_test.ping"

    pattern = client.put("/v1/webhook", json={"url": receiver.url, "events": ["bus_test.*"]}, headers=tenant.headers)
    assert pattern.get_json()["events"] == ["bus_test.*"]
    _ping(app, tenant, n=2)
    make_worker(app).work(burst=True)
    assert [json.loads(b)["type"] for _h, b in receiver.requests[1:]] == ["bus_test.ping", "bus_test.echoed"]
    every = client.put("/v1/webhook", json={"url": receiver.url, "events": None}, headers=tenant.headers)
    assert every.get_json()["events"] == ["*"]
    assert client.get("/v1/webhook", headers=tenant.headers).get_json()["events"] == ["*"]


def test_a_filter_that_matches_no_event_type_is_refused(client, tenant_factory):
    tenant = tenant_factory(scopes=SCOPES)
    url = "http://127.0.0.1:9/hook"
    ok = client.put("/v1/webhook", json={"url": url, "events": ["transaction.*", "wallet.credited"]},
                    headers=tenant.headers)
    assert ok.status_code == 200 and ok.get_json()["events"] == ["transaction.*", "wallet.credited"]
    for events in (["transaction.suceeded"], [], ["transaction.process"]):  # a typo; none; an internal command
        bad = client.put("/v1/webhook", json={"url": url, "events": events}, headers=tenant.headers)
        assert bad.status_code == 422, events
        assert bad.content_type.startswith("application/problem+json")
        assert "events" in json.dumps(bad.get_json())
    assert client.get("/v1/webhook", headers=tenant.headers).get_json()["events"] == ["transaction.*", "wallet.credited"]


def test_the_openapi_describes_delete_and_the_filter(client):
    spec = client.get("/openapi.json").get_json()
    assert "delete" in spec["paths"]["/v1/webhook"]
    schemas = spec["components"]["schemas"]
    assert "events" in schemas["WebhookIn"]["properties"] and "events" in schemas["Webhook"]["properties"]
