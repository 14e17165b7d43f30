"""A web worker's background relay (hub.bus.relay): the requests hand what they commit to it,
it sends it in batches; purchases of several tenants from many threads reach their final
status through it exactly once; a graceful stop sends what it holds; a process that dies
before its relay sent loses nothing (the outbox sweep publishes the rows)."""
from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from hub.bus.models import OutboxMessage
from hub.bus.outbox import sweep
from hub.bus.relay import (
    BackgroundRelay,
    background_relay,
    start_background_relay,
    stop_background_relay,
)
from hub.context import CallContext
from hub.db import unit_of_work
from hub.transactions.models import Transaction
from hub.wallets import accounts as wallets
from hub.wallets import checks
from tests.transactions.conftest import FUNDS, buy, drain

THREADS = 8
EACH = 4
FINAL = {"succeeded", "failed"}


def _unpublished(app) -> int:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.published_at.is_(None)))


def _statuses(app, tenant_ids: list[str]) -> list[str]:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return list(uow.session.scalars(select(Transaction.status).where(Transaction.tenant_id.in_(tenant_ids))))


def _second_funded(app, tenant_factory):
    tenant = tenant_factory()
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="tests", tenant_id=tenant.id)
        wallets.topup(ctx, uow, wallets.get_main_wallet(ctx, uow).id, FUNDS, "seed")
        uow.commit()
    return tenant


@pytest.fixture
def relay(app):
    relay = start_background_relay(app)
    yield relay
    stop_background_relay(app)


def test_purchases_of_two_tenants_from_many_threads_are_final_once_through_the_relay(app, funded, tenant_factory,
                                                                                      relay):
    other = _second_funded(app, tenant_factory)
    tenants = [funded.tenant, other]
    answers: list[int] = []
    start = threading.Barrier(THREADS)

    def post(n: int) -> None:
        client = app.test_client()
        start.wait(30)
        for k in range(EACH):  # the sandbox's test numbers: …9999 fails, any other succeeds
            answers.append(buy(client, tenants[n % 2], f"0812{n:02d}{k}{'9999' if k % 2 else '1234'}").status_code)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == [202] * (THREADS * EACH)
    assert relay.flush(10)
    assert relay.sent["envelopes"] == THREADS * EACH  # one ProcessTransaction command each
    assert _unpublished(app) == 0
    ids = [t.id for t in tenants]
    drain(app, until=lambda: set(_statuses(app, ids)) <= FINAL)
    statuses = _statuses(app, ids)
    assert len(statuses) == THREADS * EACH and statuses.count("succeeded") == statuses.count("failed")
    with app.app_context(), unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        for tenant in tenants:
            ctx = CallContext.system(tenant_id=tenant.id)
            wallet = wallets.get_main_wallet(ctx, uow)
            assert wallet.held == 0
        assert checks.verify_ledger(uow)["ok"]


def test_a_busy_relay_sends_at_most_once_a_pace_and_a_stop_does_not_wait(app, client, funded):
    """An idle relay sends at once; what is handed over within its pace of that send waits
    for the next one, all of it in one send; a graceful stop sends at once."""
    relay = app.extensions["rop"].extras["bus.background_relay"] = BackgroundRelay(app, pace=60.0).start()
    try:
        assert buy(client, funded.tenant, "081200006610").status_code == 202
        assert relay.flush(10) and relay.sent == {"sends": 1, "envelopes": 1, "deliveries": 0}
        for n in range(2):
            assert buy(client, funded.tenant, f"08120000662{n}").status_code == 202
        assert relay.pending() == 2 and relay.sent["sends"] == 1 and _unpublished(app) == 2  # within the pace
    finally:
        stop_background_relay(app)
    assert relay.sent == {"sends": 2, "envelopes": 3, "deliveries": 0} and _unpublished(app) == 0
    drain(app, until=lambda: set(_statuses(app, [funded.tenant.id])) <= FINAL)


def test_a_graceful_stop_sends_what_the_relay_holds(app, client, funded):
    relay = app.extensions["rop"].extras["bus.background_relay"] = BackgroundRelay(app)  # its thread not started
    for n in range(3):
        assert buy(client, funded.tenant, f"0812000077{n}0").status_code == 202
    assert relay.pending() == 3 and _unpublished(app) == 3
    stop_background_relay(app)
    assert background_relay(app) is None and relay.pending() == 0 and _unpublished(app) == 0
    drain(app, until=lambda: set(_statuses(app, [funded.tenant.id])) <= FINAL)


def test_what_a_dead_process_had_not_relayed_is_published_by_the_sweep(app, client, funded):
    app.extensions["rop"].extras["bus.background_relay"] = BackgroundRelay(app)
    ref = uuid.uuid4().hex
    assert buy(client, funded.tenant, "081200008880", ref_id=ref).status_code == 202
    # the process dies (SIGKILL): what its relay held is gone with it
    del app.extensions["rop"].extras["bus.background_relay"]
    assert _unpublished(app) == 1
    assert sweep(app, older_than=0) == 1
    assert _unpublished(app) == 0
    drain(app, until=lambda: _statuses(app, [funded.tenant.id]) == ["succeeded"])
