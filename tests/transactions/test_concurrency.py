"""Idempotent replays under concurrency, and many provider calls in flight at once."""
from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
from sqlalchemy import func, select

from hub.db import unit_of_work
from hub.transactions.models import Transaction

from .conftest import FUNDS, drain, wallet

CLIENTS = 20


def test_twenty_simultaneous_identical_requests_make_one_transaction_and_one_hold(app, live, funded):
    body = {"ref_id": "same-order", "product_code": "TEL10", "customer_no": "081200001234"}
    barrier = threading.Barrier(CLIENTS)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def request():
        with httpx.Client(base_url=live.url, timeout=60) as http:
            barrier.wait()
            response = http.post("/v1/transactions", json=body, headers=funded.tenant.headers)
        with lock:
            answers.append((response.status_code, response.json().get("id")))

    threads = [threading.Thread(target=request) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    codes = Counter(code for code, _ in answers)
    assert codes == Counter({202: 1, 200: CLIENTS - 1}), codes
    assert len({ident for _, ident in answers}) == 1
    with unit_of_work(app.extensions["rop"].db) as uow:
        assert uow.session.scalar(select(func.count()).select_from(Transaction)) == 1
    from hub.wallets.models import Hold

    with unit_of_work(app.extensions["rop"].db) as uow:
        holds = uow.session.scalars(select(Hold.amount)).all()
    assert len(holds) == 1
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - holds[0], holds[0])


def test_a_slow_provider_gets_more_than_a_hundred_calls_in_flight_from_one_worker(app, client, funded, sandbox):
    """150 purchases at a provider answering in 3 s, one thread worker of 128 threads: the
    calls overlap (not one blocked process per call), bounded per configuration. The
    database pool (15 connections on SQLite, 30 on PostgreSQL) is far smaller than the
    calls in flight: no call holds a connection."""
    from hub.providers import service as providers
    from hub.transactions import service
    from hub.transactions.lifecycle import Settings
    from hub.worker import make_worker

    from .conftest import add_sandbox

    slow = add_sandbox(app, "Slow", latency_ms=3000)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        providers.set_enabled(uow, sandbox, False)
        uow.commit()
    app.extensions["rop"].extras["transactions.settings"] = Settings(provider_limits={slow: 110})
    n = 150
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        for i in range(n):
            service.submit(funded.tenant.ctx, uow, ref_id=f"slow-{i}", product_code="TEL10",
                           customer_no="081200001234")
        uow.commit()

    redis = app.extensions["rop"].redis
    from hub.concurrency import holders

    peak = 0
    stop = threading.Event()

    samples = []

    def watch():
        nonlocal peak
        while not stop.is_set():
            h = holders(redis, f"provider:{slow}")
            samples.append((round(time.monotonic() - started, 2), h))
            peak = max(peak, h)
            time.sleep(0.01)

    started = time.monotonic()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    worker = make_worker(app, ["provider"], threads=128)
    worker.work(burst=True)
    elapsed = time.monotonic() - started
    stop.set()
    watcher.join(5)
    drain(app)
    with unit_of_work(app.extensions["rop"].db) as uow:
        statuses = Counter(uow.session.scalars(select(Transaction.status)).all())
    assert statuses == Counter({"succeeded": n})
    assert 100 <= peak <= 110, (peak, elapsed, samples[::50])  # many in flight, never past the configuration's bound
    assert elapsed < 30, elapsed  # one call at a time would take 450 s
