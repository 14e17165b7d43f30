"""The relay process (``rop relay``, hub.bus.relay.OutboxRelay): while its heartbeat is set,
a commit leaves its messages in the outbox and the relay moves them to the queues in
batches, each row once (several relays on PostgreSQL too); without it, commits relay their
own; Redis down in a pass marks nothing; the real process, started and stopped."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from rq import Queue
from sqlalchemy import func, select

from hub.bus.models import OutboxMessage
from hub.bus.outbox import sweep
from hub.bus.relay import HEARTBEAT_KEY, OutboxRelay, relay_process_alive
from hub.cache import refcache
from hub.db import unit_of_work
from hub.transactions.models import Transaction
from tests.transactions.conftest import buy, drain

FINAL = {"succeeded", "failed"}


def _unpublished(app) -> int:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.published_at.is_(None)))


def _statuses(app, tenant_id: str) -> list[str]:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return list(uow.session.scalars(select(Transaction.status).where(Transaction.tenant_id == tenant_id)))


def _provider_jobs(app) -> list[list[dict]]:
    """The envelopes of each job on the provider queue (a batch job carries several)."""
    queue = Queue("provider", connection=app.extensions["rop"].redis)
    out = []
    for job in queue.get_jobs():
        out.append(job.args[0] if isinstance(job.args[0], list) else [job.args[0]])
    return out


def _heartbeat(app, on: bool) -> None:
    redis = app.extensions["rop"].redis
    if on:
        redis.set(HEARTBEAT_KEY, "test", ex=60)
    else:
        redis.delete(HEARTBEAT_KEY)
    refcache(app).refresh()  # this process sees it at once (others within 50 ms)


def test_while_a_relay_process_runs_commits_leave_their_messages_for_it_and_one_pass_relays_them(
        app, client, funded):
    _heartbeat(app, True)
    with app.app_context():
        assert relay_process_alive(app)
    for n in range(3):
        assert buy(client, funded.tenant, f"08120000771{n}").status_code == 202
    assert _unpublished(app) == 3 and _provider_jobs(app) == []  # nothing relayed by the requests
    relay = OutboxRelay(app)
    with app.app_context():
        assert relay.relay_once() == 3
        assert relay.relay_once() == 0
    assert _unpublished(app) == 0
    jobs = _provider_jobs(app)
    assert len(jobs) == 1 and len(jobs[0]) == 3  # the three purchases' commands in one batch job
    assert relay.relayed == {"passes": 1, "rows": 3}
    _heartbeat(app, False)
    drain(app, until=lambda: _statuses(app, funded.tenant.id) == ["succeeded"] * 3)


def test_without_a_relay_process_a_commit_relays_its_own_messages(app, client, funded):
    _heartbeat(app, False)
    with app.app_context():
        assert not relay_process_alive(app)
    assert buy(client, funded.tenant, "081200007720").status_code == 202
    assert _unpublished(app) == 0 and len(_provider_jobs(app)) == 1


def test_a_pass_takes_at_most_its_batch_oldest_first(app, client, funded):
    _heartbeat(app, True)
    refs = [f"batch-{n}" for n in range(5)]
    for n, ref in enumerate(refs):
        assert buy(client, funded.tenant, f"08120000773{n}", ref_id=ref).status_code == 202
    relay = OutboxRelay(app, batch=2)
    with app.app_context():
        assert [relay.relay_once() for _ in range(4)] == [2, 2, 1, 0]
    sent = [envelope["payload"]["transaction_id"] for job in _provider_jobs(app) for envelope in job]
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        by_ref = dict(uow.session.execute(select(Transaction.ref_id, Transaction.id)
                                          .where(Transaction.tenant_id == funded.tenant.id)).all())
    assert sent == [by_ref[ref] for ref in refs]


def test_relays_and_the_outbox_sweep_racing_on_postgresql_take_each_row_once(app, client, funded):
    if app.extensions["rop"].db.is_sqlite:
        pytest.skip("several relay processes need PostgreSQL (FOR UPDATE SKIP LOCKED); SQLite runs one")
    _heartbeat(app, True)
    for n in range(40):
        assert buy(client, funded.tenant, f"0812000{n:05d}").status_code == 202
    relays = [OutboxRelay(app, batch=3) for _ in range(4)]
    start = threading.Barrier(len(relays) + 1)
    swept: list[int] = []

    def run(relay: OutboxRelay) -> None:
        with app.app_context():
            start.wait(10)
            while relay.relay_once():
                pass

    def sweeping() -> None:  # the scheduler's outbox sweep, on every row (older than 0 s)
        with app.app_context():
            start.wait(10)
            swept.append(sweep(app, older_than=0, limit=3))

    threads = [threading.Thread(target=run, args=(relay,)) for relay in relays] + [threading.Thread(target=sweeping)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    sent = [envelope["id"] for job in _provider_jobs(app) for envelope in job]
    assert len(sent) == 40 and len(set(sent)) == 40
    assert sum(relay.relayed["rows"] for relay in relays) + swept[0] == 40
    assert sum(1 for relay in relays if relay.relayed["rows"]) >= 2  # they did run side by side
    assert _unpublished(app) == 0


def test_the_rop_relay_process_beats_relays_and_clears_its_heartbeat_when_stopped(app, client, funded, config):
    redis = app.extensions["rop"].redis
    redis.delete(HEARTBEAT_KEY)
    env = dict(os.environ, ROP_DATABASE_URL=config.database_url, ROP_REDIS_URL=app.extensions["rop"].redis_url,
               ROP_INSTANCE_PATH=str(config.instance_path), ROP_LOG_LEVEL="WARNING")
    relay = subprocess.Popen([sys.executable, "-m", "hub.cli", "relay"], env=env)
    try:
        deadline = time.monotonic() + 60
        while redis.get(HEARTBEAT_KEY) is None:
            assert relay.poll() is None, "rop relay exited"
            assert time.monotonic() < deadline, "no heartbeat"
            time.sleep(0.05)
        refcache(app).refresh()
        for n in range(3):
            assert buy(client, funded.tenant, f"08120000774{n}").status_code == 202
        deadline = time.monotonic() + 30
        while _unpublished(app):
            assert time.monotonic() < deadline, "the relay process did not relay"
            time.sleep(0.05)
        drain(app, until=lambda: set(_statuses(app, funded.tenant.id)) == {"succeeded"})
        relay.send_signal(signal.SIGTERM)
        assert relay.wait(30) == 0
        assert redis.get(HEARTBEAT_KEY) is None  # the others relay their own commits again
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()


def test_while_a_provider_job_waits_the_relay_holds_its_passes_back_for_at_most_hold_max(app, client, funded):
    """The provider workers busy (a job waits in their queue): the rows committed meanwhile
    stay in the outbox, to go as a bigger batch, but for HOLD_MAX at most; then the relay
    passes again even though the job still waits."""
    from hub.queues import queue

    _heartbeat(app, True)
    waiting = queue("provider", app.extensions["rop"].redis).enqueue("builtins.print", "a job that waits")
    assert buy(client, funded.tenant, "081200007790").status_code == 202
    relay, stop = OutboxRelay(app, hold_max=1.0), threading.Event()
    runner = threading.Thread(target=relay.run, args=(stop,))
    runner.start()
    try:
        time.sleep(0.3)
        assert _unpublished(app) == 1  # held back: the provider queue is not empty
        deadline = time.monotonic() + 15
        while _unpublished(app) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _unpublished(app) == 0  # the hold is bounded
        assert waiting.id in queue("provider", app.extensions["rop"].redis).job_ids
    finally:
        stop.set()
        runner.join(10)
    # with nothing waiting, no hold
    queue("provider", app.extensions["rop"].redis).empty()
    _heartbeat(app, True)
    assert buy(client, funded.tenant, "081200007791").status_code == 202
    with app.app_context():
        assert not relay.backlogged() and relay.relay_once() == 1
