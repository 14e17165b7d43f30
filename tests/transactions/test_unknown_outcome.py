"""Unknown outcomes: the sandbox counts purchases per reference, and no reference is ever
bought twice — across duplicate deliveries, job retries, a restarted hub and a worker
killed in the middle of the provider call."""
from __future__ import annotations

import datetime as dt
import time

from rop_sandbox.plugin import purchase_count, purchase_counts

from hub.app import create_app
from hub.bus import publish
from hub.bus.outbox import sweep as bus_sweep
from hub.context import CallContext
from hub.db import unit_of_work, utcnow
from hub.transactions import driver, lifecycle, sweep
from hub.transactions.messages import ProcessTransaction

from .conftest import (
    FUNDS,
    buy,
    drain,
    kill_a_provider_worker_when,
    only_a_slow_sandbox,
    transaction,
    wallet,
)


def _redeliver(app, tenant_id: str, transaction_id: str, times: int) -> None:
    """Publish the processing command again, as a duplicate delivery or a replayed dead letter would."""
    ctx = CallContext.system(actor="tests", tenant_id=tenant_id)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        for _ in range(times):
            publish(ctx, uow, ProcessTransaction(transaction_id=transaction_id))
        uow.commit()


def test_redeliveries_and_a_restarted_hub_never_buy_an_unknown_outcome_again(app, client, config, live, funded,
                                                                             fast):
    created = buy(client, funded.tenant, "081200006666").json
    drain(app)
    reference = f"{created['id']}-1"
    redis = app.extensions["rop"].redis
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "processing" and found["attempts"][0]["state"] == "unknown"
    assert purchase_count(redis, reference) == 1

    _redeliver(app, funded.tenant.id, created["id"], 3)
    drain(app)
    assert purchase_count(redis, reference) == 1

    restarted = create_app(config)  # another process's hub on the same database and Redis
    try:
        restarted.extensions["rop"].extras["transactions.settings"] = fast
        with restarted.app_context():
            driver.drive([created["id"]])
    finally:
        restarted.extensions["rop"].close()
    assert purchase_count(redis, reference) == 1

    with app.app_context():
        sweep.sweep(now=utcnow() + dt.timedelta(seconds=1))  # the status check is due
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "succeeded"
    assert purchase_counts(redis) == {reference: 1}
    assert [e["detail"].get("via") for e in found["timeline"] if e["kind"] == "outcome"] == [
        "purchase", "status_check"]
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS - created["price"]


def test_a_worker_killed_mid_call_never_buys_twice(app, client, config, funded, sandbox):
    only_a_slow_sandbox(app, sandbox)
    created = buy(client, funded.tenant, "081200001234").json
    reference = f"{created['id']}-1"
    redis = app.extensions["rop"].redis
    kill_a_provider_worker_when(app, config, lambda: purchase_count(redis, reference) > 0)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "processing" and found["attempts"][0]["state"] == "sent"

    # The bus sweep hands the dead worker's job back; the re-run finds the attempt sent and
    # unanswered, too recently to ask (a call of it may still be on its way): nothing. Once it
    # is ``sent_timeout`` old, the sweep's check asks the same reference: no other purchase.
    bus_sweep(app, abandoned_before=time.time() + 3600)
    drain(app)
    assert transaction(app, funded.tenant.id, created["id"])["attempts"][0]["state"] == "sent"
    with app.app_context():
        sweep.sweep(now=utcnow() + dt.timedelta(seconds=lifecycle.settings().sent_timeout + 1))
    drain(app, lambda: transaction(app, funded.tenant.id, created["id"])["status"] == "succeeded", timeout=30)
    assert purchase_counts(redis) == {reference: 1}
    found = transaction(app, funded.tenant.id, created["id"])
    assert [e["detail"].get("via") for e in found["timeline"] if e["kind"] == "outcome"] == ["status_check"]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - created["price"], 0)
