"""Reference data on the purchase path comes from each process's cache (hub.cache): a warm
web process reads no product, offer, price rule, provider configuration or webhook endpoint
from the database per purchase, and asks Redis for the versions at most once per
``hub.cache.REFRESH`` (50 ms) per process; a change committed in another process (the CLI) is
seen once its version is bumped, and — when the bump is lost — once the entries' TTL has
passed."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from typing import ClassVar

import pytest
from redis.connection import Connection
from sqlalchemy import event, text

from hub.app import create_app
from hub.cache import NAMESPACES, REFRESH, refcache
from tests.transactions.conftest import buy

REFERENCE_TABLES = re.compile(
    r"\b(products|product_offers|price_rules|provider_configs|provider_config_tenants|bus_webhook_endpoints)\b",
    re.IGNORECASE)


class Statements:
    """Every statement sent while inside ``with``, counted at the driver: on PostgreSQL each
    ``execute``/``executemany`` of a psycopg cursor of the engine's connections (what goes
    through SQLAlchemy and what is sent through the driver alone, as the accept function's
    call); elsewhere SQLAlchemy's ``before_cursor_execute``."""

    def __init__(self, engine):
        self.engine = engine
        self.sent: list[str] = []
        self._driver = engine.dialect.name == "postgresql"
        self._changed: list = []  # the driver connections given the counting cursor

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        self.sent.append(" ".join(statement.split()))

    def _counting(self, dbapi_conn, _record, _proxy):
        dbapi_conn.cursor_factory = self._cursor_class
        self._changed.append(dbapi_conn)

    def __enter__(self):
        if self._driver:
            import psycopg

            seen = self.sent

            class CountingCursor(psycopg.Cursor):
                def execute(self, query, *args, **kwargs):
                    seen.append(" ".join(str(query).split()))
                    return super().execute(query, *args, **kwargs)

                def executemany(self, query, *args, **kwargs):
                    seen.append(" ".join(str(query).split()))
                    return super().executemany(query, *args, **kwargs)

            self._cursor_class = CountingCursor
            event.listen(self.engine, "checkout", self._counting)
        else:
            event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc):
        if self._driver:
            import psycopg

            event.remove(self.engine, "checkout", self._counting)
            for dbapi_conn in self._changed:  # back in the pool, they count nothing any more
                dbapi_conn.cursor_factory = psycopg.Cursor
        else:
            event.remove(self.engine, "before_cursor_execute", self._seen)

    @property
    def reference_reads(self) -> list[str]:
        return [s for s in self.sent if s.upper().startswith("SELECT") and REFERENCE_TABLES.search(s)]


def _with_webhook(client, tenant) -> None:
    answer = client.put("/v1/webhook", json={"url": "http://127.0.0.1:9/hook"}, headers=tenant.headers)
    assert answer.status_code == 200, answer.json


def test_a_warm_web_process_reads_no_reference_data_per_purchase(app, client, funded):
    _with_webhook(client, funded.tenant)
    engine = app.extensions["rop"].db.engine
    with Statements(engine) as cold:  # the first purchase of this process loads what it needs
        assert buy(client, funded.tenant, "081234567890").status_code == 202
    assert cold.reference_reads, "a cold process must read the catalog (or this test sees nothing)"
    assert buy(client, funded.tenant, "081234567891").status_code == 202

    with Statements(engine) as warm:
        assert buy(client, funded.tenant, "081234567892").status_code == 202
    print(f"\nSQL statements per warm accept: {len(warm.sent)} (cold: {len(cold.sent)})")
    if engine.dialect.name == "postgresql":  # one call of the accept function writes it all
        assert [s for s in warm.sent if "rop_accept_v2" in s], warm.sent
    else:
        assert any(s.upper().startswith("INSERT INTO TRANSACTIONS ") for s in warm.sent), warm.sent
        assert any("bus_webhook_deliveries" in s for s in warm.sent), "the tenant's webhook gets the events"
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bus_webhook_deliveries WHERE tenant_id = :t"),
                            {"t": funded.tenant.id}).scalar() == 3 * 2, "the tenant's webhook gets the events"
    assert warm.reference_reads == []

    refcache(app).forget(NAMESPACES)  # a process that forgot reads it all again, once
    with Statements(engine) as again:
        assert buy(client, funded.tenant, "081234567893").status_code == 202
    assert {REFERENCE_TABLES.search(s).group(1) for s in again.reference_reads} >= {
        "products", "product_offers", "price_rules", "provider_configs", "bus_webhook_endpoints"}


def test_with_rop_cache_ttl_0_every_purchase_reads_the_reference_data_again(app, config, funded):
    import dataclasses

    uncached = create_app(dataclasses.replace(config, cache_ttl=0))
    try:
        web = uncached.test_client()
        engine = uncached.extensions["rop"].db.engine
        assert buy(web, funded.tenant, "081234567890").status_code == 202
        with Statements(engine) as sent:
            assert buy(web, funded.tenant, "081234567891").status_code == 202
        assert {REFERENCE_TABLES.search(s).group(1) for s in sent.reference_reads} >= {
            "products", "product_offers", "price_rules", "provider_configs"}
    finally:
        uncached.extensions["rop"].close()


class CountingConnection(Connection):
    """A real Redis connection that notes every command it sends (pipelines included)."""

    sent: ClassVar[list[list[str]]] = []  # one list of command lines per round trip

    def send_command(self, *args, **kwargs):
        CountingConnection.sent.append([" ".join(str(a) for a in args[:8])])
        return super().send_command(*args, **kwargs)

    def pack_commands(self, commands):
        CountingConnection.sent.append([" ".join(str(a) for a in args[:8]) for args in commands])
        return super().pack_commands(commands)


class Clock:
    """A cache's clock that moves only when the test moves it."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_redis_commands_per_accept_are_counted_and_the_cache_costs_one_mget_per_refresh(app, client, funded):
    """A warm accept sends the rate limit's script and nothing for the cache while the
    process's reading of the versions is younger than REFRESH (a test clock holds it); once
    it is older, the versions and the tenant's breakers come back in one MGET."""
    _with_webhook(client, funded.tenant)
    with app.app_context():
        cache = refcache()
    clock = cache.refresh_clock = Clock()
    pool = app.extensions["rop"].redis.connection_pool
    pool.disconnect()
    pool.connection_class = CountingConnection
    pool.reset()

    def counted(number: str) -> tuple[list[list[str]], list[str]]:
        CountingConnection.sent = []
        assert buy(client, funded.tenant, number).status_code == 202
        # the relay's pipeline (RQ jobs, webhook deliveries) left out: in a web worker the
        # background relay sends one for many requests (hub.bus.relay)
        trips = [trip for trip in CountingConnection.sent if not any(" rq:" in line for line in trip)]
        commands = [line for trip in trips for line in trip]
        print(f"\nRedis per warm accept: {len(trips)} round trips, {len(commands)} commands:\n  "
              + "\n  ".join(" | ".join(trip) for trip in trips))
        return trips, [line for line in commands if "rop:cache:" in line or "rop:providers:health:" in line]

    for n in range(2):  # warm
        assert buy(client, funded.tenant, f"08123456780{n}").status_code == 202
    trips, cache_part = counted("081234567809")
    assert cache_part == [] and len(trips) == 1 and trips[0][0].startswith("EVALSHA"), trips  # the rate limit
    clock.now += REFRESH + 0.001
    trips, cache_part = counted("081234567808")
    # the versions of every namespace and this tenant's breakers: one MGET
    assert len(cache_part) == 1, cache_part
    assert cache_part[0].startswith("MGET rop:cache:products:version rop:cache:providers:version"), cache_part
    assert "rop:providers:health:" in cache_part[0]
    assert len(trips) == 2, trips


@pytest.fixture
def other_app(config):
    """A second hub app (another web process) on the same database and Redis."""
    application = create_app(config)
    yield application
    application.extensions["rop"].close()


@pytest.fixture
def rop(instance_path, database_url, redis_url, app):
    """The ``rop`` CLI in a process of its own."""
    env = {**os.environ, "ROP_INSTANCE_PATH": str(instance_path), "ROP_DATABASE_URL": database_url,
           "ROP_REDIS_URL": redis_url, "ROP_LOG_LEVEL": "WARNING"}

    def run(*args):
        done = subprocess.run([sys.executable, "-m", "hub.cli", *args], check=False, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done

    return run


def _price(client, tenant) -> int:
    answer = buy(client, tenant, "081234567890", ref_id=uuid.uuid4().hex)
    assert answer.status_code == 202, answer.json
    return answer.json["price"]


def test_a_price_change_from_the_cli_is_seen_by_another_process_at_once_and_a_lost_bump_within_the_ttl(
        app, funded, other_app, rop):
    clock = Clock()
    cache = refcache(other_app)
    cache.clock = clock
    web = other_app.test_client()
    before = _price(web, funded.tenant)
    assert _price(web, funded.tenant) == before  # cached now: the clock stands still

    rop("pricing", "set", "--tenant", funded.tenant.slug, "--product", "TEL10", "markup_fixed", "777")
    assert _price(web, funded.tenant) == before + 777  # the bump: the next request reloads

    with app.extensions["rop"].db.engine.begin() as conn:  # a write whose bump is lost
        assert conn.execute(text("UPDATE price_rules SET value = 1777 WHERE owner = :tenant"),
                            {"tenant": funded.tenant.id}).rowcount == 1
    assert _price(web, funded.tenant) == before + 777  # within the TTL: the cached rules
    clock.now += cache.ttl
    assert _price(web, funded.tenant) == before + 1777  # past it: read again


def test_the_kill_switch_from_the_cli_stops_another_process_at_once_and_a_lost_bump_within_the_ttl(
        app, funded, sandbox, other_app, rop):
    clock = Clock()
    cache = refcache(other_app)
    cache.clock = clock
    web = other_app.test_client()
    assert buy(web, funded.tenant, "081234567890").status_code == 202

    rop("providers", "disable", sandbox)
    refused = buy(web, funded.tenant, "081234567890")
    assert refused.status_code == 422 and "not available" in refused.json["detail"], refused.json

    with app.extensions["rop"].db.engine.begin() as conn:  # switched on again, the bump lost
        conn.execute(text("UPDATE provider_configs SET enabled = :on WHERE id = :id"), {"on": True, "id": sandbox})
    assert buy(web, funded.tenant, "081234567890").status_code == 422  # within the TTL: still off here
    clock.now += cache.ttl
    assert buy(web, funded.tenant, "081234567890").status_code == 202  # past it: on again


PROVIDER_TABLES = re.compile(r"\b(provider_configs|provider_config_tenants)\b", re.IGNORECASE)


def _final(app, tenant_id: str, transaction_id: str) -> dict:
    from tests.transactions.conftest import transaction

    found = transaction(app, tenant_id, transaction_id)
    return found if found["status"] in ("succeeded", "failed") else {}


def test_a_warm_provider_worker_reads_no_configuration_per_batch_and_sees_the_kill_switch_at_once(
        app, client, funded, sandbox, rop):
    """The driver routes and calls from the process's cache (the configurations a tenant may
    use, each prepared and decrypted once), so a warm worker's batch reads no configuration
    but the claim's check of its own (one statement);
    a configuration switched off by another process (the CLI) is no longer used by the next
    batch, whose purchases were accepted before it was switched off."""
    from tests.transactions.conftest import drain

    engine = app.extensions["rop"].db.engine
    first = buy(client, funded.tenant, "081234567890").json["id"]
    drain(app, until=lambda: _final(app, funded.tenant.id, first))  # the worker's caches warm up

    second = buy(client, funded.tenant, "081234567891").json["id"]
    with Statements(engine) as warm:
        drain(app, until=lambda: _final(app, funded.tenant.id, second))
    assert _final(app, funded.tenant.id, second)["status"] == "succeeded"
    assert warm.sent, "the batch was recorded (or this test sees nothing)"
    # the claim's one check of its configurations as committed (usable_now), and nothing more:
    # no list of the tenant's configurations, no credentials read and decrypted
    read = [s for s in warm.sent if PROVIDER_TABLES.search(s)]
    assert len(read) == 1 and "provider_configs.all_tenants" in read[0], read
    assert not [s for s in warm.sent if "credentials_encrypted" in s], warm.sent

    third = buy(client, funded.tenant, "081234567892").json["id"]  # accepted while it is on
    rop("providers", "disable", sandbox)
    time.sleep(2 * REFRESH)  # another process's bump: seen once this one's reading of it is renewed
    drain(app, until=lambda: _final(app, funded.tenant.id, third))
    found = _final(app, funded.tenant.id, third)
    assert (found["status"], found["error"]) == ("failed", "no provider is available for this product now"), found


def test_a_purchase_routed_from_a_stale_cache_to_a_configuration_switched_off_is_not_sent(
        app, client, funded, sandbox):
    """The worker's cache still has the configuration (a bump lost, or within REFRESH of it),
    but the claim reads it as committed: switched off, the purchase is not sent — its
    attempt answered rejected in the claim's own commit (never left ``sent`` for the sweep to
    check), the next offer tried (none here: failed, the hold voided)."""
    from tests.transactions.conftest import drain, wallet

    first = buy(client, funded.tenant, "081234567890").json["id"]
    drain(app, until=lambda: _final(app, funded.tenant.id, first))  # the worker's caches warm up
    before = wallet(app, funded.tenant.id, funded.wallet_id)
    second = buy(client, funded.tenant, "081234567891").json["id"]
    with app.extensions["rop"].db.engine.begin() as conn:  # switched off, the bump lost
        conn.execute(text("UPDATE provider_configs SET enabled = :off WHERE id = :id"), {"off": False, "id": sandbox})
    from hub.transactions import calls, driver

    with app.app_context():  # the claim alone (a worker killed right after it): answered there
        steps, leased = driver._start([second], {})
        calls.release_all(leased.values())
    assert [step.unusable for step in steps] == [True]
    with app.extensions["rop"].db.engine.connect() as conn:
        assert conn.execute(text("SELECT state FROM transaction_attempts WHERE transaction_id = :t"),
                            {"t": second}).scalars().all() == ["rejected"]
    drain(app, until=lambda: _final(app, funded.tenant.id, second))
    found = _final(app, funded.tenant.id, second)
    assert found["status"] == "failed" and "not sent" in found["error"], found
    with app.extensions["rop"].db.engine.connect() as conn:
        attempts = conn.execute(text("SELECT state, message, not_sent FROM transaction_attempts "
                                     "WHERE transaction_id = :t"), {"t": second}).all()
    # not the provider's rejection: the dashboard counts it apart (tests/transactions/test_operator_client.py)
    assert [(state, "not sent" in message, bool(not_sent)) for state, message, not_sent in attempts] == [
        ("rejected", True, True)]
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == before["available"]  # voided


def test_the_claim_reads_which_configurations_a_tenant_may_use_now(app, funded, sandbox, tenant_factory):
    """providers.usable_now: a platform configuration for every tenant; a tenant's own only for
    it; one enabled for some tenants only for those; switched off or missing for none."""
    from hub.db import unit_of_work
    from hub.providers import client as providers
    from hub.providers import service

    other = tenant_factory().id
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        own = service.add_config(uow, "sandbox", "Own", tenant_id=funded.tenant.id).id
        some = service.add_config(uow, "sandbox", "Some", all_tenants=False).id
        service.enable_for_tenant(uow, some, other)
        uow.commit()
        pairs = {(c, t) for c in (sandbox, own, some, "pcf_missing") for t in (funded.tenant.id, other)}
        assert providers.usable_now(uow, pairs) == {
            (sandbox, funded.tenant.id), (sandbox, other), (own, funded.tenant.id), (some, other)}
        service.set_enabled(uow, sandbox, False)
        uow.commit()
        assert providers.usable_now(uow, pairs) == {(own, funded.tenant.id), (some, other)}
        uow.commit()


@pytest.mark.postgres
@pytest.mark.parametrize("switched_off", [False, True])
def test_a_removal_waits_for_a_claim_of_its_configuration_and_then_retires_it(app, funded, sandbox, switched_off):
    """A claim share-locks the configurations of its purchases until its commit — one switched
    off too (its purchase is refused, its attempt recorded); ``rop providers remove`` locks
    the row first: it waits, then counts the attempt the claim recorded and retires the
    configuration instead of deleting it (an attempt at a deleted configuration could never
    be checked nor receive its callback)."""
    import threading

    from hub.context import CallContext
    from hub.db import UnitOfWork, unit_of_work, utcnow
    from hub.providers import client as providers
    from hub.providers import service
    from hub.transactions.models import Attempt

    db = app.extensions["rop"].db
    with app.app_context():
        if switched_off:
            with unit_of_work(db) as uow:
                service.set_enabled(uow, sandbox, False)
                uow.commit()
        claim = UnitOfWork(db.session())
        assert providers.usable_now(claim, {(sandbox, funded.tenant.id)}) == (
            set() if switched_off else {(sandbox, funded.tenant.id)})
        claim.session.add(Attempt(transaction_id="trx_claimed", tenant_id=funded.tenant.id, seq=1, config_id=sandbox,
                                  provider_code="sandbox", provider_sku="TEL10", reference="trx_claimed-1",
                                  state="sent", sent_at=utcnow()))
        claim.session.flush()
        removed: list = []

        def remove() -> None:
            with app.app_context():
                remover = UnitOfWork(db.session())
                try:
                    removed.append(service.remove_config(CallContext.system(), remover, sandbox)[0])
                    remover.commit()
                finally:
                    remover.close()

        remover = threading.Thread(target=remove)
        remover.start()
        remover.join(1.0)
        assert remover.is_alive() and removed == [], "the removal must wait for the claim"
        claim.commit()
        claim.close()
        remover.join(30)
    assert removed == ["retired"]
