"""Fixtures of the transactions tests: the sandbox catalog, a funded tenant, workers, callbacks
over real HTTP."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from hub.bus.models import TenantEvent
from hub.context import CallContext
from hub.db import unit_of_work, utcnow
from hub.plugins.markers import hookimpl
from hub.providers.testing import LiveServer
from hub.transactions.lifecycle import Settings
from hub.worker import make_worker

FUNDS = 10_000_000


@pytest.fixture
def live(app):
    """The app served over real HTTP (the sandbox's callbacks POST to it)."""
    with LiveServer(app) as server:
        app.extensions["rop"].extras["public_url"] = server.url
        yield server


@pytest.fixture
def sandbox(app):
    """The sandbox's catalog as products; returns the platform sandbox configuration id."""
    from hub.products.testing import seed_sandbox_catalog
    from hub.providers import client as providers

    seed_sandbox_catalog(app, settings={"callback_delay": 0.05})
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        return next(c["config_id"] for c in providers.list_configs(uow) if c["provider_code"] == "sandbox")


@pytest.fixture
def fast(app):
    """Settings for tests: status checks due at once, a short review deadline."""
    settings = Settings(check_schedule=(0.0,), review_after=3600.0, redrive_after=0.0, sent_timeout=0.0)
    app.extensions["rop"].extras["transactions.settings"] = settings
    return settings


@dataclass
class Funded:
    tenant: object
    wallet_id: str


@pytest.fixture
def funded(app, tenant_factory, sandbox):
    """A tenant whose main wallet holds ``FUNDS``."""
    from hub.wallets import accounts as wallets

    tenant = tenant_factory()
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="tests", tenant_id=tenant.id)
        wallet = wallets.get_main_wallet(ctx, uow)
        wallets.topup(ctx, uow, wallet.id, FUNDS, "seed")
        uow.commit()
        return Funded(tenant, wallet.id)


def drain(app, until=None, timeout: float = 15.0) -> None:
    """Run burst workers until ``until()`` holds (or, without it, until the queues are empty).
    Retries that RQ scheduled for later are enqueued when due (``with_scheduler``)."""
    deadline = time.monotonic() + timeout
    while True:
        make_worker(app).work(burst=True, with_scheduler=True)
        if until is None or until():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        time.sleep(0.05)


def wallet(app, tenant_id: str, wallet_id: str) -> dict:
    from hub.wallets import client as wallets

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        return wallets.get_wallet(CallContext.system(tenant_id=tenant_id), uow, wallet_id)


def transaction(app, tenant_id: str, transaction_id: str) -> dict:
    from hub.transactions import client

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        return client.get(CallContext(tenant_id=tenant_id, client_id="tests",
                                      scopes=frozenset({"transactions:read"})), uow, transaction_id)


def event_types(app, tenant_id: str, transaction_id: str) -> list[str]:
    with unit_of_work(app.extensions["rop"].db) as uow:
        rows = uow.session.scalars(select(TenantEvent).where(TenantEvent.tenant_id == tenant_id)
                                   .order_by(TenantEvent.occurred_at)).all()
        return [r.type for r in rows if r.type.startswith("transaction.")
                and r.envelope["payload"].get("id") == transaction_id]


def buy(client, tenant, customer_no: str, product_code: str = "TEL10", ref_id: str | None = None, **extra):
    import uuid

    body = {"ref_id": ref_id or uuid.uuid4().hex, "product_code": product_code, "customer_no": customer_no, **extra}
    return client.post("/v1/transactions", json=body, headers=tenant.headers)


class FirstConfig:
    """A routing plugin: the named configuration first, then the rest as they came."""

    def __init__(self, config_id: str):
        self.config_id = config_id

    @hookimpl
    def route_transaction(self, ctx, product_code, candidates):
        return sorted(candidates, key=lambda c: c.config_id != self.config_id)


@pytest.fixture
def route_first(app):
    host = app.extensions["rop"].extras["plugins"]
    registered = []

    def use(config_id: str):
        plugin = FirstConfig(config_id)
        host.pm.register(plugin)
        registered.append(plugin)

    yield use
    for plugin in registered:
        host.pm.unregister(plugin)


def only_a_slow_sandbox(app, sandbox: str, latency_ms: int = 1500) -> str:
    """Switch the platform sandbox off and add one that answers after ``latency_ms``."""
    from hub.providers import service as providers

    slow = add_sandbox(app, "Slow", latency_ms=latency_ms)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        providers.set_enabled(uow, sandbox, False)
        uow.commit()
    return slow


def kill_a_provider_worker_when(app, config, sent: Callable[[], bool]) -> None:
    """Start a provider worker process and SIGKILL it as soon as ``sent()`` holds (the
    requests have left: the worker dies mid-call)."""
    env = dict(os.environ, ROP_DATABASE_URL=config.database_url, ROP_REDIS_URL=app.extensions["rop"].redis_url,
               ROP_INSTANCE_PATH=str(config.instance_path), ROP_LOG_LEVEL="WARNING")
    script = ("from hub.app import create_app; from hub.worker import make_worker;"
              "app = create_app(); make_worker(app, ['provider']).work()")
    worker = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 30
        while not sent():
            assert time.monotonic() < deadline, "the worker never called the provider"
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()


def add_sandbox(app, name: str, tenant_id: str | None = None, **settings) -> str:
    from hub.products.sync import sync_config
    from hub.providers import service as providers

    db = app.extensions["rop"].db
    with app.app_context():
        with unit_of_work(db) as uow:
            row = providers.add_config(uow, "sandbox", name, settings={"callback_delay": 0.05, **settings},
                                       credentials={"callback_secret": f"secret-{name}"}, tenant_id=tenant_id)
            uow.commit()
        report = sync_config(CallContext.system(actor="tests"), lambda: unit_of_work(db), row.id)
        assert report["status"] == "succeeded"
    return row.id


def callback_secret(app, config_id: str) -> str:
    """The callback secret the hub generated for (or was given with) a configuration."""
    from hub.providers import service as providers

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        return providers.callback_secret(providers.get_config(uow, config_id))


def in_flight(app, client, funded, number: str = "081200006666", product_code: str = "TEL10") -> dict:
    """A purchase sent and left with its outcome unknown or pending (6666 by default)."""
    created = buy(client, funded.tenant, number, product_code=product_code)
    assert created.status_code == 202, created.json
    drain(app)
    found = transaction(app, funded.tenant.id, created.json["id"])
    assert found["status"] == "processing" and found["attempts"][0]["state"] in ("unknown", "pending")
    return found


def check_now(app) -> None:
    """The sweep publishes the due status checks (as ``rop scheduler`` does every 5 s); a
    worker makes them."""
    from hub.transactions import sweep

    with app.app_context():
        assert sweep.sweep(now=utcnow() + dt.timedelta(seconds=1))["checks"] >= 1
    drain(app)


def captured(app, funded, found) -> None:
    """``found``'s price was captured once from the funded wallet, nothing else held."""
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - found["price"], 0)
