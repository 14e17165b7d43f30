"""Unknown outcomes: the sandbox counts purchases per reference, and no reference is ever
bought twice — across duplicate deliveries, job retries, a restarted hub and a worker
killed in the middle of the provider call."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

from rop_sandbox.plugin import purchase_count, purchase_counts

from hub.app import create_app
from hub.bus import publish
from hub.bus.outbox import sweep as bus_sweep
from hub.context import CallContext
from hub.db import unit_of_work, utcnow
from hub.transactions import processing
from hub.transactions.messages import ProcessTransaction

from .conftest import FUNDS, buy, drain, transaction, wallet
from .test_routing_and_callbacks import _add_sandbox


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
            processing.run(created["id"])
    finally:
        restarted.extensions["rop"].close()
    assert purchase_count(redis, reference) == 1

    with app.app_context():
        processing.sweep(now=utcnow() + dt.timedelta(seconds=1))  # the status check is due
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "succeeded"
    assert purchase_counts(redis) == {reference: 1}
    assert [e["detail"].get("via") for e in found["timeline"] if e["kind"] == "outcome"] == [
        "purchase", "status_check"]
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS - created["price"]


def test_a_worker_killed_mid_call_never_buys_twice(app, client, config, funded, sandbox):
    from hub.providers import service as providers

    _add_sandbox(app, "Slow", latency_ms=1500)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        providers.set_enabled(uow, sandbox, False)  # only the slow configuration remains
        uow.commit()
    created = buy(client, funded.tenant, "081200001234").json
    reference = f"{created['id']}-1"
    redis = app.extensions["rop"].redis
    env = dict(os.environ, ROP_DATABASE_URL=config.database_url, ROP_REDIS_URL=app.extensions["rop"].redis_url,
               ROP_INSTANCE_PATH=str(config.instance_path), ROP_LOG_LEVEL="WARNING")
    script = ("from hub.app import create_app; from hub.worker import make_worker;"
              "app = create_app(); make_worker(app, ['provider']).work()")
    worker = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        deadline = time.monotonic() + 30
        while purchase_count(redis, reference) == 0:  # the request has left: kill it mid-call
            assert time.monotonic() < deadline, "the worker never called the provider"
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "processing" and found["attempts"][0]["state"] == "sent"

    # The bus sweep hands the dead worker's job back; the re-run finds the attempt sent and
    # unanswered: a status check with the same reference, not another purchase.
    bus_sweep(app, abandoned_before=time.time() + 3600)
    drain(app, lambda: transaction(app, funded.tenant.id, created["id"])["status"] == "succeeded", timeout=30)
    assert purchase_counts(redis) == {reference: 1}
    found = transaction(app, funded.tenant.id, created["id"])
    assert [e["detail"].get("via") for e in found["timeline"] if e["kind"] == "outcome"] == ["status_check"]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - created["price"], 0)
