"""Redis goes away: the routes that need it answer 503 with Retry-After, every other route
answers as usual (rate limits fail open, counted and logged), /readyz says Redis is down,
and everything works again once it is back. A real Redis server, stopped and restarted."""
from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import func, select

from hub import auth
from hub.availability import RETRY_AFTER
from hub.context import CallContext
from hub.db import unit_of_work
from tests.bulk.conftest import csv_body
from tests.outages.conftest import metric
from tests.tenancy.test_route_security import (
    BODY,
    OWNED_OBJECTS,
    PLATFORM_ROUTES,
    PUBLIC_CATALOG_ROUTES,
    _url,
    _v1_rules,
)
from tests.transactions.conftest import drain

#: The routes that need Redis to answer (docs/security.md, "When Redis or the database is away"):
#: the catalog (its cache, its versions and the providers' health live there), purchases and
#: bill inquiries (the route and the price depend on the providers' health).
NEEDS_REDIS = {("GET", "/v1/products"), ("GET", "/v1/products/<code>"), ("POST", "/v1/transactions"),
               ("POST", "/v1/inquiries")}


def _funded(app, tenant_id: str) -> tuple[str, str]:
    """The tenant's main wallet (funded) and a sub-wallet."""
    from hub.wallets import accounts as wallets

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="tests", tenant_id=tenant_id)
        main = wallets.get_main_wallet(ctx, uow)
        wallets.topup(ctx, uow, main.id, 1_000_000, f"seed-{uuid.uuid4().hex[:6]}")
        sub = wallets.create_wallet(ctx, uow, owner_ref="branch-1")
        uow.commit()
        return main.id, sub.id


def _requests(app, owner) -> list[tuple[str, str, str, dict]]:
    """(method, rule, url, request kwargs) for every /v1 route, each with a request that
    succeeds when everything is up."""
    from hub.products.testing import seed_sandbox_catalog

    seed_sandbox_catalog(app)
    main, sub = _funded(app, owner.id)
    bodies = {
        ("POST", "/v1/wallets"): {"json": {"owner_ref": "redis-walk"}},
        ("POST", "/v1/transfers"): {"json": {"from_wallet_id": main, "to_wallet_id": sub, "amount": 100,
                                             "ref_id": "redis-walk"}},
        ("PUT", "/v1/webhook"): {"json": {"url": "http://127.0.0.1:9/hook"}},
        ("POST", "/v1/bulk"): {"data": csv_body([("redis-walk-1", "TEL10", "081234567890")]),
                               "content_type": "text/csv"},
        ("POST", "/v1/transactions"): {"json": {"ref_id": "redis-walk", "product_code": "TEL10",
                                                "customer_no": "081234567890"}},
        ("POST", "/v1/inquiries"): {"json": {"product_code": "PLNPOST", "customer_no": "123456789012"}},
    }
    made = []
    for rule, method in _v1_rules(app):
        factory = OWNED_OBJECTS.get(rule.rule) or PUBLIC_CATALOG_ROUTES.get(rule.rule)
        values = factory(app, owner) if factory else {}
        kwargs = {"json": values.pop(BODY)} if BODY in values else bodies.get((method, rule.rule), {})
        made.append((method, rule.rule, _url(rule, values), kwargs))
    # DELETEs last: what they remove (the webhook) is what other requests of the walk read
    made.sort(key=lambda request: request[0] == "DELETE")
    return made


def test_without_redis_every_route_answers_or_says_503_and_all_answer_once_it_is_back(app, client, tenant_factory,
                                                                                      platform_factory, own_redis):
    owner = tenant_factory()
    requests = _requests(app, owner)
    # Platform routes (top-ups) are called as a platform client acting for the owner.
    platform = {rule: platform_factory(scopes=list(scopes)).headers_for(owner)
                for rule, scopes in PLATFORM_ROUTES.items()}
    assert {(m, r) for m, r, _, _ in requests} >= NEEDS_REDIS, "a route of NEEDS_REDIS is gone: update it"
    own_redis.stop()

    unavailable = set()
    for method, rule, url, kwargs in requests:
        response = client.open(url, method=method, headers=platform.get(rule, owner.headers), **kwargs)
        assert response.status_code != 500, f"{method} {rule}: 500 without Redis"
        if response.status_code == 503:
            assert response.mimetype == "application/problem+json", f"{method} {rule}"
            assert response.headers["Retry-After"] == str(RETRY_AFTER)
            body = response.get_json()
            assert body["dependency"] == "redis" and "Redis" in body["detail"]
            unavailable.add((method, rule))
        else:
            assert response.status_code < 300, f"{method} {rule}: {response.status_code} {response.get_data()[:300]}"
    assert unavailable == NEEDS_REDIS

    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.headers["Retry-After"] == str(RETRY_AFTER)
    body = ready.get_json()
    assert body["down"] == ["redis"]
    assert body["checks"]["redis"]["state"] == "down" and body["checks"]["database"]["state"] == "up"

    # The refused purchase left nothing behind: the same request is a new purchase once Redis is back.
    from hub.transactions.models import Transaction

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        assert uow.session.scalar(select(func.count()).select_from(Transaction)
                                  .where(Transaction.ref_id == "redis-walk")) == 0
    own_redis.start()
    for method, rule, url, kwargs in requests:
        if (method, rule) in NEEDS_REDIS:
            response = client.open(url, method=method, headers=platform.get(rule, owner.headers), **kwargs)
            assert response.status_code in (200, 201, 202), f"{method} {rule}: {response.status_code}"
            if rule == "/v1/transactions":
                assert response.status_code == 202  # created now, not a replay
    assert client.get("/readyz").get_json()["checks"]["redis"]["state"] == "up"


def test_the_rate_limiter_fails_open_while_redis_is_away_and_counts_again_when_it_is_back(
        app, client, tenant_factory, own_redis, monkeypatch):
    frozen = (int(time.time()) // 60) * 60 + 5  # one rate-limit window throughout
    monkeypatch.setattr(auth.time, "time", lambda: frozen)
    clock = [time.monotonic()]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    t = tenant_factory(rate_limit_per_minute=2)
    assert [client.get("/v1/wallets", headers=t.headers).status_code for _ in range(3)] == [200, 200, 429]

    own_redis.stop()
    unmetered = metric("rop_rate_limit_unenforced_total")
    statuses = [client.get("/v1/wallets", headers=t.headers).status_code for _ in range(5)]
    assert statuses == [200] * 5  # past the limit, but nothing can count: they proceed
    assert metric("rop_rate_limit_unenforced_total") == unmetered + 5

    own_redis.start()  # empty: this window's count starts again
    # For LIMITER_RETRY_AFTER after a failure the limiter does not ask Redis (no connect per request).
    assert client.get("/v1/wallets", headers=t.headers).status_code == 200
    assert metric("rop_rate_limit_unenforced_total") == unmetered + 6
    clock[0] += auth.LIMITER_RETRY_AFTER + auth.STATUS_TTL
    assert [client.get("/v1/wallets", headers=t.headers).status_code for _ in range(3)] == [200, 200, 429]
    assert metric("rop_rate_limit_unenforced_total") == unmetered + 6


def test_a_wait_on_a_transaction_answers_at_once_without_redis(app, client, tenant_factory, own_redis):
    from hub.transactions.testing import make_transaction

    t = tenant_factory()
    transaction_id = make_transaction(app, t.id)
    own_redis.stop()
    response = client.get(f"/v1/transactions/{transaction_id}", headers={**t.headers, "Prefer": "wait=30"})
    assert response.status_code == 200 and response.get_json()["status"] == "pending"


def test_work_accepted_while_redis_is_away_is_done_once_it_is_back(app, client, tenant_factory, own_redis):
    """A bulk file is accepted without Redis: its messages wait in the outbox (docs/bus.md) and
    the relay's sweep sends them once Redis is back; then it runs to the end."""
    from hub.bus.outbox import sweep
    from hub.products.testing import seed_sandbox_catalog

    seed_sandbox_catalog(app, settings={"callback_delay": 0.05})
    t = tenant_factory()
    _funded(app, t.id)
    own_redis.stop()
    submitted = client.post("/v1/bulk", data=csv_body([("down-1", "TEL10", "081234567890")]),
                            content_type="text/csv", headers=t.headers)
    assert submitted.status_code == 202
    job_id = submitted.get_json()["id"]
    own_redis.start()
    app.extensions["rop"].redis.connection_pool.disconnect()
    assert sweep(app, older_than=0) >= 1

    def done():
        return client.get(f"/v1/bulk/{job_id}", headers=t.headers).get_json()["status"] == "completed"

    drain(app, until=done, timeout=60)
    items = client.get(f"/v1/bulk/{job_id}/items", headers=t.headers).get_json()["items"]
    assert [i["status"] for i in items] == ["succeeded"]


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/openapi.json"])
def test_the_process_endpoints_do_not_need_redis(client, own_redis, path):
    own_redis.stop()
    assert client.get(path).status_code == 200


def test_a_provider_callback_is_taken_without_redis_and_its_effect_waits_in_the_outbox(app, client, own_redis):
    import json

    from rop_sandbox.plugin import SIGNATURE_HEADER, sign

    from hub.bus.models import OutboxMessage
    from hub.providers import service as providers

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        row = providers.add_config(uow, "sandbox", "Sandbox", credentials={"callback_secret": "cb-down"})
        uow.commit()
        config_id = row.id
    own_redis.stop()
    body = json.dumps({"ref_id": "trx-down-1", "rc": "00", "sku": "TEL10"}).encode()
    response = client.post(f"/callbacks/sandbox/{config_id}", data=body,
                           headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign("cb-down", body)})
    assert response.status_code == 200 and response.get_json()["accepted"] is True
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        waiting = [m.envelope["payload"]["ref_id"] for m in uow.session.scalars(
            select(OutboxMessage).where(OutboxMessage.published_at.is_(None))) if m.type == "provider.callback_received"]
    assert waiting == ["trx-down-1"]


def test_a_purchase_whose_relay_met_redis_down_is_published_by_the_sweep_once_it_is_back(
        app, client, tenant_factory, own_redis):
    """A web worker's background relay (hub.bus.relay) that cannot reach Redis marks nothing:
    the outbox row waits, and the sweep sends it once Redis is back; the purchase completes."""
    from hub.bus.models import OutboxMessage
    from hub.bus.outbox import sweep
    from hub.bus.relay import BackgroundRelay
    from hub.products.testing import seed_sandbox_catalog
    from hub.transactions.models import Transaction

    seed_sandbox_catalog(app, settings={"callback_delay": 0.05})
    t = tenant_factory()
    _funded(app, t.id)
    relay = app.extensions["rop"].extras["bus.background_relay"] = BackgroundRelay(app)  # not started
    answer = client.post("/v1/transactions", json={"ref_id": "relay-down", "product_code": "TEL10",
                                                   "customer_no": "081234567890"}, headers=t.headers)
    assert answer.status_code == 202, answer.get_json()
    own_redis.stop()
    assert relay.send_once() == 1  # taken, and the send failed (logged)
    db = app.extensions["rop"].db

    def unpublished() -> int:
        with unit_of_work(db, readonly=True) as uow:
            return uow.session.scalar(select(func.count()).select_from(OutboxMessage)
                                      .where(OutboxMessage.published_at.is_(None)))

    assert unpublished() == 1 and relay.pending() == 0
    own_redis.start()
    app.extensions["rop"].redis.connection_pool.disconnect()
    assert sweep(app, older_than=0) == 1 and unpublished() == 0

    def done() -> bool:
        with unit_of_work(db, readonly=True) as uow:
            return uow.session.scalar(select(Transaction.status).where(Transaction.tenant_id == t.id)) == "succeeded"

    drain(app, until=done, timeout=60)


def test_a_relay_process_pass_that_meets_redis_down_marks_nothing_and_the_next_pass_relays(
        app, client, tenant_factory, own_redis):
    """The relay process (hub.bus.relay.OutboxRelay): Redis gone between taking the rows and
    enqueuing them rolls the pass back (the rows stay unpublished, unlocked); the process
    backs off and goes on, and once Redis is back its pass relays them; the purchase completes."""
    import threading

    from hub.availability import REDIS_ERRORS
    from hub.bus.models import OutboxMessage
    from hub.bus.relay import HEARTBEAT_KEY, OutboxRelay
    from hub.cache import refcache
    from hub.products.testing import seed_sandbox_catalog
    from hub.transactions.models import Transaction

    seed_sandbox_catalog(app, settings={"callback_delay": 0.05})
    t = tenant_factory()
    _funded(app, t.id)
    redis = app.extensions["rop"].redis
    redis.set(HEARTBEAT_KEY, "test", ex=60)
    refcache(app).refresh()
    answer = client.post("/v1/transactions", json={"ref_id": "relay-process-down", "product_code": "TEL10",
                                                   "customer_no": "081234567890"}, headers=t.headers)
    assert answer.status_code == 202, answer.get_json()
    db = app.extensions["rop"].db

    def unpublished() -> int:
        with unit_of_work(db, readonly=True) as uow:
            return uow.session.scalar(select(func.count()).select_from(OutboxMessage)
                                      .where(OutboxMessage.published_at.is_(None)))

    assert unpublished() == 1
    own_redis.stop()
    relay = OutboxRelay(app)
    with app.app_context(), pytest.raises(REDIS_ERRORS):
        relay.relay_once()
    assert unpublished() == 1 and relay.relayed["rows"] == 0
    # the process's loop keeps going through the outage, then relays
    stop = threading.Event()
    loop = threading.Thread(target=relay.run, args=(stop,))
    loop.start()
    try:
        time.sleep(0.5)
        assert unpublished() == 1
        own_redis.start()
        redis.connection_pool.disconnect()
        deadline = time.monotonic() + 30
        while unpublished():
            assert time.monotonic() < deadline, "not relayed once Redis was back"
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(30)
    assert relay.relayed["rows"] == 1

    def done() -> bool:
        with unit_of_work(db, readonly=True) as uow:
            return uow.session.scalar(select(Transaction.status).where(Transaction.tenant_id == t.id)) == "succeeded"

    drain(app, until=done, timeout=60)
