"""Purchases accepted together (one unit of work, as a bulk group is) are processed together
(one job, ``hub.transactions.driver.drive``) with every rule of one alone: outcomes, fallback, slots,
never a second purchase of a reference."""
from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import pytest
from rop_sandbox.plugin import purchase_count, purchase_counts
from rq import Queue
from sqlalchemy import func, select, update

from hub.auth import service_context
from hub.bus.models import OutboxMessage, ProcessedMessage
from hub.bus.outbox import enqueue_envelopes
from hub.bus.outbox import sweep as bus_sweep
from hub.concurrency import holders
from hub.context import CallContext
from hub.db import unit_of_work, utcnow
from hub.transactions import calls, driver, lifecycle, sweep
from hub.transactions import client as transactions
from hub.transactions.messages import ProcessTransaction
from hub.transactions.models import Attempt, TimelineEntry, Transaction

from .conftest import (
    FUNDS,
    add_sandbox,
    drain,
    event_types,
    kill_a_provider_worker_when,
    only_a_slow_sandbox,
    transaction,
    wallet,
)
from .test_end_to_end import CASES


def _submit_together(app, tenant_id: str, numbers: list[str]) -> list[dict]:
    """Accept one purchase per number in one unit of work (the holds at its commit)."""
    ctx = service_context(CallContext.system(actor="tests", tenant_id=tenant_id), "bulk")
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        views = [transactions.submit(ctx, uow, ref_id=uuid.uuid4().hex, product_code="TEL10",
                                     customer_no=n).transaction for n in numbers]
        uow.commit()
    return views


def _provider_jobs(app) -> list:
    return Queue("provider", connection=app.extensions["rop"].redis).get_jobs()


def _statuses(app, tenant_id: str, views: list[dict]) -> list[str]:
    return [transaction(app, tenant_id, v["id"])["status"] for v in views]


def test_every_sandbox_number_in_one_batch(app, live, funded, fast):
    numbers = sorted(CASES)
    views = _submit_together(app, funded.tenant.id, numbers)
    jobs = _provider_jobs(app)
    assert len(jobs) == 1 and len(jobs[0].args[0]) == len(numbers)  # one job carries them all

    def settled():
        with app.app_context():
            sweep.sweep(now=utcnow() + dt.timedelta(seconds=1))  # due status checks
        return _statuses(app, funded.tenant.id, views) == [CASES[n][0] for n in numbers]

    drain(app, settled, timeout=30)
    drain(app)
    redis = app.extensions["rop"].redis
    for number, view in zip(numbers, views):
        status, _charged, events = CASES[number]
        found = transaction(app, funded.tenant.id, view["id"])
        assert [a["reference"] for a in found["attempts"]] == [f"{view['id']}-1"], number
        assert purchase_count(redis, f"{view['id']}-1") == 1, number
        assert event_types(app, funded.tenant.id, view["id"]) == ["transaction.accepted"] + [
            f"transaction.{e}" for e in events], number
        if status in ("succeeded", "refunded"):
            assert found["serial_number"] and found["provider_ref"], number
    charged = sum(v["price"] for n, v in zip(numbers, views) if CASES[n][1])
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - charged, 0)


def test_the_messages_outcomes_build_unvalidated_are_valid(app, live, funded, fast):
    """Status events and the wallet's hold and movement events are built with
    ``Message.built`` (not validated again): after every sandbox outcome (success, failure,
    fallback, refund), each stored envelope's payload loads through its message's schema."""
    from sqlalchemy import text

    from hub.bus.messages import MESSAGE_TYPES

    views = _submit_together(app, funded.tenant.id, list(CASES))
    drain(app)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(s in ("pending", "processing") for s in
                                              _statuses(app, funded.tenant.id, views)):
        with app.app_context():
            sweep.sweep(now=utcnow() + dt.timedelta(seconds=1))
        drain(app)
    with app.extensions["rop"].db.engine.connect() as conn:
        envelopes = [row[0] for row in conn.execute(
            text("SELECT envelope FROM bus_outbox WHERE tenant_id = :t UNION ALL "
                 "SELECT envelope FROM bus_events WHERE tenant_id = :t"), {"t": funded.tenant.id})]
    envelopes = [json.loads(e) if isinstance(e, str) else e for e in envelopes]  # SQLite: text
    types = {e["type"] for e in envelopes}
    assert {"transaction.succeeded", "transaction.failed", "wallet.hold_captured", "wallet.hold_voided",
            "wallet.debited"} <= types, types
    for envelope in envelopes:
        assert MESSAGE_TYPES[envelope["type"]]._schema().validate(envelope["payload"]) == {}, envelope


def test_a_batch_falls_back_to_the_next_provider_with_one_capture_each(app, live, funded, route_first, sandbox):
    empty = add_sandbox(app, "Empty shelves", reject_rate=1.0)
    route_first(empty)
    views = _submit_together(app, funded.tenant.id, ["081200001234"] * 4)
    drain(app)
    redis = app.extensions["rop"].redis
    for view in views:
        found = transaction(app, funded.tenant.id, view["id"])
        assert found["status"] == "succeeded"
        assert [(a["config_id"], a["state"]) for a in found["attempts"]] == [(empty, "rejected"),
                                                                               (sandbox, "success")]
        assert [purchase_count(redis, a["reference"]) for a in found["attempts"]] == [1, 1]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - sum(v["price"] for v in views), 0)


def test_a_batch_takes_only_the_free_slots_and_the_rest_wait_their_turn(app, live, funded, fast, sandbox):
    fast.provider_limit = 2
    views = _submit_together(app, funded.tenant.id, ["081200001234"] * 6)
    drain(app)
    assert _statuses(app, funded.tenant.id, views) == ["succeeded"] * 6
    redis = app.extensions["rop"].redis
    assert purchase_counts(redis) == {f"{v['id']}-1": 1 for v in views}
    assert holders(redis, f"provider:{sandbox}") == 0  # every slot given back


def test_a_batch_run_again_buys_nothing_twice(app, live, funded, sandbox):
    views = _submit_together(app, funded.tenant.id, ["081200001234"] * 3)
    drain(app)
    with app.app_context():
        driver.drive([v["id"] for v in views])  # a redelivered batch: nothing left to do
    redis = app.extensions["rop"].redis
    assert purchase_counts(redis) == {f"{v['id']}-1": 1 for v in views}
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - sum(v["price"] for v in views), 0)


def test_the_commands_delivered_again_by_the_queue_change_nothing_and_leave_no_record(app, live, funded, sandbox):
    """The driver's commands keep no processed-message record (``recorded=False``): a batch
    job delivered again after its purchases were decided runs the driver again, whose
    guards (the row's status, its current attempt) leave every purchase as it was."""
    views = _submit_together(app, funded.tenant.id, ["081200001234"] * 3)
    drain(app)
    db = app.extensions["rop"].db
    with unit_of_work(db, readonly=True) as uow:
        envelopes = list(uow.session.scalars(select(OutboxMessage.envelope).where(
            OutboxMessage.type == ProcessTransaction.type)))
        lines = uow.session.scalar(select(func.count()).select_from(TimelineEntry))
    assert len(envelopes) == 3
    with app.app_context():
        enqueue_envelopes(app, envelopes)
    drain(app)
    assert purchase_counts(app.extensions["rop"].redis) == {f"{v['id']}-1": 1 for v in views}
    assert _statuses(app, funded.tenant.id, views) == ["succeeded"] * 3
    with unit_of_work(db, readonly=True) as uow:
        assert uow.session.scalar(select(func.count()).select_from(TimelineEntry)) == lines
        assert uow.session.scalar(select(func.count()).select_from(ProcessedMessage).where(
            ProcessedMessage.message_id.in_([e["id"] for e in envelopes]))) == 0
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - sum(v["price"] for v in views), 0)


def test_a_command_delivered_again_leaves_an_attempt_sent_moments_ago_to_its_call(app, live, funded, sandbox):
    """A purchase claimed (its attempt ``sent``, committed) whose call has not left yet — it
    waits for a call thread — and its command delivered again: the second run must not ask
    its status now (the provider would not know the reference yet, and "not found" past the
    provider's grace reads as never received: the next offer would be bought too). It leaves
    the attempt alone; once ``sent_timeout`` has passed, a run asks the same reference."""
    views = _submit_together(app, funded.tenant.id, ["081200001234"])
    trx_id = views[0]["id"]
    with app.app_context():
        steps, leased = driver._start([trx_id], {})  # run A claims it; its call is still to come
        calls.release_all(leased.values())
        assert [step.kind for step in steps] == ["purchase"]
    db = app.extensions["rop"].db
    with unit_of_work(db, readonly=True) as uow:
        envelopes = list(uow.session.scalars(select(OutboxMessage.envelope).where(
            OutboxMessage.type == ProcessTransaction.type)))
    with app.app_context():
        enqueue_envelopes(app, envelopes)  # the command again
    drain(app)
    found = transaction(app, funded.tenant.id, trx_id)
    assert [a["state"] for a in found["attempts"]] == ["sent"]
    assert [e for e in found["timeline"] if e["kind"] == "outcome"] == []
    assert purchase_counts(app.extensions["rop"].redis) == {}
    # sent_timeout later (the attempt made that old), a delivery asks its status, same reference
    with app.app_context(), unit_of_work(db) as uow:
        old = utcnow() - dt.timedelta(seconds=lifecycle.settings().sent_timeout + 1)
        uow.session.execute(update(Attempt).where(Attempt.transaction_id == trx_id).values(sent_at=old))
        uow.commit()
    with app.app_context():
        enqueue_envelopes(app, envelopes)
    drain(app)
    found = transaction(app, funded.tenant.id, trx_id)
    assert [e["detail"].get("via") for e in found["timeline"] if e["kind"] == "outcome"] == ["status_check"]
    assert purchase_counts(app.extensions["rop"].redis) == {}  # never bought: asked, not sent again


@pytest.mark.postgres(reason="three drivers at once: SQLite has one writer at a time")
def test_three_drivers_racing_on_overlapping_batches_buy_each_purchase_once(app, funded, fast, sandbox):
    """Duplicate deliveries in flight together (a redelivered job, the sweep's re-drive and
    the first job): each purchase is claimed by one driver; the others find its attempt sent
    and only ask its status. Every purchase ends succeeded, bought once, paid once."""
    import threading

    views = _submit_together(app, funded.tenant.id, [f"0812000056{n:02d}" for n in range(12)])
    ids = [v["id"] for v in views]
    errors: list[BaseException] = []

    def driving(batch: list[str]) -> None:
        try:
            with app.app_context():
                driver.drive(batch)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=driving, args=(batch,)) for batch in (ids[:8], ids[4:], ids[::-1])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    deadline = time.monotonic() + 30
    while set(_statuses(app, funded.tenant.id, views)) != {"succeeded"} and time.monotonic() < deadline:
        with app.app_context():  # an answer a check read as "not yet": the scheduled check settles it
            sweep.sweep(now=utcnow() + dt.timedelta(seconds=1))
        drain(app)
    assert set(_statuses(app, funded.tenant.id, views)) == {"succeeded"}
    assert purchase_counts(app.extensions["rop"].redis) == {f"{i}-1": 1 for i in ids}
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - sum(v["price"] for v in views), 0)


def test_the_sweeps_status_checks_go_in_one_batch_job_made_at_once(app, live, funded, fast, sandbox):
    """Purchases whose outcome is unknown (6666: a timeout, then a status check says success):
    the sweep publishes their due checks in one unit of work, which reach the provider queue
    as one batch job; the job makes every check and records each answer."""
    views = _submit_together(app, funded.tenant.id, [f"0812{n:04d}6666" for n in range(5)])
    drain(app)
    assert set(_statuses(app, funded.tenant.id, views)) == {"processing"}
    with app.app_context():
        assert sweep.sweep(now=utcnow() + dt.timedelta(seconds=1))["checks"] == 5
    jobs = _provider_jobs(app)
    assert len(jobs) == 1 and len(jobs[0].args[0]) == 5
    assert {e["type"] for e in jobs[0].args[0]} == {"transaction.check_status"}
    drain(app)
    assert _statuses(app, funded.tenant.id, views) == ["succeeded"] * 5
    assert purchase_counts(app.extensions["rop"].redis) == {f"{v['id']}-1": 1 for v in views}


def test_a_worker_killed_mid_batch_never_buys_twice(app, config, funded, sandbox):
    only_a_slow_sandbox(app, sandbox)
    views = _submit_together(app, funded.tenant.id, ["081200001234"] * 5)
    references = [f"{v['id']}-1" for v in views]
    redis = app.extensions["rop"].redis
    kill_a_provider_worker_when(app, config, lambda: all(purchase_count(redis, r) for r in references))
    assert _statuses(app, funded.tenant.id, views) == ["processing"] * 5

    # The batch's job is handed back; the re-run finds every attempt sent and unanswered, too
    # recently for a check (a call of it might still be on its way): it leaves them. Once
    # they are ``sent_timeout`` old, the sweep's checks ask the same references; nothing is
    # bought again.
    bus_sweep(app, abandoned_before=time.time() + 3600)
    drain(app)
    assert _statuses(app, funded.tenant.id, views) == ["processing"] * 5
    with app.app_context():
        due = utcnow() + dt.timedelta(seconds=lifecycle.settings().sent_timeout + 1)
        assert sweep.sweep(now=due)["checks"] == 5
    drain(app, lambda: _statuses(app, funded.tenant.id, views) == ["succeeded"] * 5, timeout=30)
    assert purchase_counts(redis) == {r: 1 for r in references}
    for view in views:
        found = transaction(app, funded.tenant.id, view["id"])
        assert [e["detail"].get("via") for e in found["timeline"] if e["kind"] == "outcome"] == ["status_check"]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - sum(v["price"] for v in views), 0)


def test_the_sweep_does_not_drive_again_what_waits_in_a_busy_provider_queue(app, funded, fast, sandbox):
    views = _submit_together(app, funded.tenant.id, ["081200001234"] * 3)
    later = utcnow() + dt.timedelta(seconds=1)  # past redrive_after (0 s here): all three are due
    with app.app_context():
        counts = sweep.sweep(now=later)
    # their batch's job is still in the queue: nothing is published again
    assert (counts["redriven"], counts["waiting"]) == (0, 3)
    assert len(_provider_jobs(app)) == 1
    Queue("provider", connection=app.extensions["rop"].redis).empty()  # the command is lost
    with app.app_context():
        counts = sweep.sweep(now=later)
    assert counts["redriven"] == 3  # the queue is empty: each is driven again
    drain(app)
    assert _statuses(app, funded.tenant.id, views) == ["succeeded"] * 3
    assert purchase_counts(app.extensions["rop"].redis) == {f"{v['id']}-1": 1 for v in views}


def test_pending_rows_waiting_in_a_backlog_never_crowd_out_the_status_checks(app, live, funded, fast, sandbox):
    """While the provider queue (or its bulk lane) has jobs waiting, the sweep does not even
    read the pending transactions: a bulk file's thousands of rows, due for a re-drive, would
    fill its ``limit`` every time and the status checks of purchases already sent would wait."""
    unknown = _submit_together(app, funded.tenant.id, ["081200006666"])  # a timeout: checked later
    drain(app)
    assert _statuses(app, funded.tenant.id, unknown) == ["processing"]
    waiting = _submit_together(app, funded.tenant.id, ["081200001234"] * 3)  # their job waits
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:  # due long before the check
        uow.session.execute(update(Transaction).where(Transaction.id.in_([v["id"] for v in waiting]))
                            .values(next_check_at=utcnow() - dt.timedelta(hours=1)))
        uow.commit()
    with app.app_context():
        counts = sweep.sweep(now=utcnow() + dt.timedelta(seconds=1), limit=2)
    assert (counts["checks"], counts["redriven"], counts["waiting"]) == (1, 0, 3)


@pytest.mark.postgres(reason="row locks: SQLite has one writer at a time, nothing to deadlock")
def test_a_batch_of_several_wallets_moves_their_money_in_wallet_id_order(app, live, funded, fast, tenant_factory):
    """A batch's outcomes may be of several tenants (a web worker's relay sends the purchases of
    many requests as one job): its money moves lock the wallets in id order, whatever the order
    of its transactions, so that two batches never wait on each other's wallets (a deadlock,
    which PostgreSQL ends by aborting one, and a purchase waiting on either with it)."""
    from sqlalchemy import event

    other = tenant_factory()
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        ctx = CallContext.system(actor="tests", tenant_id=other.id)
        from hub.wallets import accounts

        accounts.topup(ctx, uow, accounts.get_main_wallet(ctx, uow).id, FUNDS, "seed")
        uow.commit()
    # failures (the sandbox's …9999): one void each, in the batch's transaction order before
    wallet_of: dict[str, str] = {}
    pair = None
    while pair is None:  # ids are random: until one of the greater wallet's comes first
        for tenant in (funded.tenant, other):
            wallet_of |= {v["id"]: v["wallet_id"] for v in _submit_together(app, tenant.id, ["081200009999"] * 4)}
        greater = max(wallet_of.values())
        ordered = sorted(wallet_of)  # the batch locks its transactions in id order
        pair = next(((t, u) for t in ordered for u in ordered
                     if t < u and wallet_of[t] == greater and wallet_of[u] != greater), None)
    first, then = pair
    moved: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if " ".join(statement.split()).startswith("UPDATE wallets") and isinstance(parameters, dict):
            moved.append(parameters.get("wallet_id"))

    engine = app.extensions["rop"].db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        with app.app_context():
            driver.drive([first, then])
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert moved == sorted(moved) and set(moved) == {wallet_of[first], wallet_of[then]}, moved
    assert transaction(app, funded.tenant.id, first if wallet_of[first] == funded.wallet_id else then)["status"] == "failed"


def test_a_claim_that_fails_halfway_through_the_one_by_one_retry_keeps_no_slot(app, funded, sandbox, monkeypatch):
    """A batch that lost an attempt's race retries its claims one by one; when one of those
    fails (the database gone), the slots taken for the ones before are given back: a slot
    kept would be renewed by the process for good, one fewer call for every tenant."""
    from sqlalchemy.exc import IntegrityError

    views = _submit_together(app, funded.tenant.id, ["081200007801", "081200007802"])
    real, calls_made = driver.record_attempt, []

    def failing(uow, trx, step):
        calls_made.append(trx.id)
        if len(calls_made) == 1:  # the batch's claim: another run recorded an attempt first
            raise IntegrityError("INSERT INTO transaction_attempts", {}, Exception("duplicate key"))
        if trx.id == max(v["id"] for v in views):  # the second one's own claim: the database gone
            raise RuntimeError("server closed the connection")
        return real(uow, trx, step)

    monkeypatch.setattr(driver, "record_attempt", failing)
    with app.app_context(), pytest.raises(RuntimeError):
        driver.drive([v["id"] for v in views])
    assert holders(app.extensions["rop"].redis, f"provider:{sandbox}") == 0


def test_slots_that_cannot_be_given_back_do_not_lose_the_answers(app, funded, sandbox, monkeypatch):
    """Redis failing as the round gives its slots back: the answers of the calls made are
    recorded all the same (the slots lapse after their TTL)."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from hub.concurrency import forget
    from hub.transactions import calls

    views = _submit_together(app, funded.tenant.id, ["081200007811", "081200007812"])

    def unreachable(leases):
        forget(leases)  # as release_many does before its ZREM, which fails here
        raise RedisConnectionError("Redis went away")

    monkeypatch.setattr(calls, "release_many", unreachable)
    with app.app_context():
        driver.drive([v["id"] for v in views])
    assert _statuses(app, funded.tenant.id, views) == ["succeeded", "succeeded"]
    assert purchase_counts(app.extensions["rop"].redis) == {f"{v['id']}-1": 1 for v in views}
