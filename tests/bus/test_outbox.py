"""The outbox: nothing before commit, nothing lost, duplicates harmless, dead letters replayable."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from rq import Queue
from sqlalchemy import func, select

from hub.app import create_app
from hub.bus import publish
from hub.bus.models import DeadLetter, OutboxMessage, ProcessedMessage, TenantEvent, WebhookDelivery
from hub.bus.outbox import enqueue_envelope, sweep
from hub.bus.testing import Echoed, Ping, register
from hub.config import Config
from hub.context import CallContext
from hub.db import unit_of_work
from hub.embedded_redis import EmbeddedRedis, free_port
from hub.worker import make_worker

CTX = CallContext(tenant_id="ten_test", client_id="cli_test", scopes=frozenset({"*"}))


@pytest.fixture
def bus_app(app):
    register(app)
    return app


def _publish(app, n: int, mode: str = "echo", commit: bool = True) -> Ping:
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        message = publish(CTX, uow, Ping(n=n, mode=mode))
        if commit:
            uow.commit()
    return message


def _count(app, model, *where) -> int:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def _echoes(app, source: str) -> int:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        rows = uow.session.execute(select(TenantEvent.envelope).where(TenantEvent.type == "bus_test.echoed")).scalars()
        return sum(1 for e in rows if e["payload"]["source"] == source)


def _queued(app, name: str = "events") -> int:
    return Queue(name, connection=app.extensions["rop"].redis).count


def test_rollback_of_the_state_change_leaves_no_message(bus_app):
    _publish(bus_app, 1, commit=False)
    assert _count(bus_app, OutboxMessage) == 0
    assert _count(bus_app, TenantEvent) == 0
    assert _queued(bus_app) == 0


def test_a_unit_of_work_relays_again_after_a_rollback_or_a_commit(bus_app):
    with bus_app.app_context(), unit_of_work(bus_app.extensions["rop"].db) as uow:
        publish(CTX, uow, Ping(n=1))
        uow.rollback()
        publish(CTX, uow, Ping(n=2))
        publish(CTX, uow, Ping(n=3))
        uow.commit()
        jobs = Queue("events", connection=bus_app.extensions["rop"].redis).get_jobs()
        # the two messages of one commit for one handler: one job carrying both
        assert [[e["payload"]["n"] for e in job.args[0]] for job in jobs] == [[2, 3]]
        publish(CTX, uow, Ping(n=4))
        uow.commit()
    assert _queued(bus_app) == 2
    assert _count(bus_app, OutboxMessage) == 3
    assert _count(bus_app, OutboxMessage, OutboxMessage.published_at.is_(None)) == 0


def test_a_committed_event_is_relayed_marked_and_handled_once(bus_app):
    message = _publish(bus_app, 1)
    assert _queued(bus_app) == 1
    assert _count(bus_app, OutboxMessage, OutboxMessage.published_at.is_(None)) == 0
    make_worker(bus_app).work(burst=True)
    assert _echoes(bus_app, message.id) == 1
    assert _count(bus_app, ProcessedMessage, ProcessedMessage.message_id == message.id) == 1


def test_crash_between_publish_and_mark_gives_a_duplicate_handled_once(bus_app):
    message = _publish(bus_app, 1, commit=False)
    # Commit the row without relaying, enqueue it, then "crash" before marking it.
    with bus_app.app_context(), unit_of_work(bus_app.extensions["rop"].db) as uow:
        uow.session.add(OutboxMessage(id=message.id, type=message.type, kind=message.kind,
                                      tenant_id=message.tenant_id, envelope=message.envelope()))
        uow.commit()
    enqueue_envelope(bus_app, message.envelope())
    assert sweep(bus_app, older_than=0) == 1  # the sweep finds the row unmarked: published again
    assert _queued(bus_app) == 2
    make_worker(bus_app).work(burst=True)
    assert _echoes(bus_app, message.id) == 1
    assert _count(bus_app, OutboxMessage, OutboxMessage.published_at.is_(None)) == 0


def test_worker_killed_mid_job_runs_it_again_and_the_effect_happens_once(bus_app, config):
    message = _publish(bus_app, 1, mode="slow-first")
    env = dict(os.environ, ROP_DATABASE_URL=config.database_url, ROP_REDIS_URL=bus_app.extensions["rop"].redis_url,
               ROP_INSTANCE_PATH=str(config.instance_path), ROP_LOG_LEVEL="WARNING")
    script = ("from hub.app import create_app; from hub.bus.testing import register; from hub.worker import make_worker;"
              "app = create_app(); register(app); make_worker(app, ['events']).work()")
    worker = subprocess.Popen([sys.executable, "-c", script], env=env)
    redis = bus_app.extensions["rop"].redis
    try:
        deadline = time.monotonic() + 30
        while redis.get("bus_test:started") != message.id.encode():
            assert time.monotonic() < deadline, "the worker never started the job"
            assert worker.poll() is None, "the worker exited"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert _echoes(bus_app, message.id) == 0
    # The sweep hands the dead worker's job back (its heartbeat is long gone by then).
    sweep(bus_app, abandoned_before=time.time() + 3600)
    make_worker(bus_app).work(burst=True)
    assert _echoes(bus_app, message.id) == 1
    assert int(redis.get(f"bus_test:runs:{message.id}")) == 2


def test_messages_committed_while_redis_is_down_wait_in_the_outbox(app, config, tmp_path):
    port = free_port()
    server = EmbeddedRedis(tmp_path / "redis2", persist=False, port=port)
    url = server.ensure_running()
    own = create_app(Config.from_env({}, instance_path=config.instance_path, database_url=config.database_url,
                                     redis_url=url, webhook_allow_private=True, testing=True,
                                     log_format="console", log_level="CRITICAL"))
    register(own)
    try:
        server.stop()
        sent = [_publish(own, n) for n in range(5)]  # the requests commit; the relay fails quietly
        assert _count(own, OutboxMessage, OutboxMessage.published_at.is_(None)) == 5
        assert server.ensure_running() == url  # Redis is back on the same port
        own.extensions["rop"].redis.connection_pool.disconnect()
        assert sweep(own, older_than=0) == 5
        make_worker(own).work(burst=True)
        assert all(_echoes(own, m.id) == 1 for m in sent)
        assert _count(own, OutboxMessage, OutboxMessage.published_at.is_(None)) == 0
    finally:
        own.extensions["rop"].close()
        server.stop()


def test_a_poison_message_becomes_a_dead_letter_and_replays_once_fixed(bus_app, config, monkeypatch, capsys):
    from hub.cli import main

    redis = bus_app.extensions["rop"].redis
    redis.set("bus_test:broken", 1)
    message = _publish(bus_app, 1, mode="poison")
    make_worker(bus_app).work(burst=True)
    with unit_of_work(bus_app.extensions["rop"].db, readonly=True) as uow:
        letter = uow.session.execute(select(DeadLetter)).scalar_one()
        assert letter.message_id == message.id
        assert letter.attempts == Ping.max_retries + 1
        assert letter.last_error.startswith("RuntimeError: the cause is not fixed yet")
        letter_id = letter.id
    assert _echoes(bus_app, message.id) == 0

    monkeypatch.setenv("ROP_DATABASE_URL", config.database_url)
    monkeypatch.setenv("ROP_REDIS_URL", bus_app.extensions["rop"].redis_url)
    monkeypatch.setenv("ROP_INSTANCE_PATH", str(config.instance_path))
    assert main(["deadletters", "list"]) == 0
    assert letter_id in capsys.readouterr().out
    assert main(["deadletters", "replay", "dlq_nope"]) == 1
    assert capsys.readouterr().err.strip() == "rop: error: no dead letter 'dlq_nope'"

    redis.delete("bus_test:broken")
    assert main(["deadletters", "replay", letter_id]) == 0
    make_worker(bus_app).work(burst=True)
    assert _echoes(bus_app, message.id) == 1
    assert main(["deadletters", "list"]) == 0
    assert "no dead letters" in capsys.readouterr().out


def test_a_discarded_dead_letter_leaves_the_list_and_cannot_be_discarded_again(bus_app, config, monkeypatch,
                                                                               capsys):
    import json

    from hub.bus.deadletters import discard_dead_letters
    from hub.cli import main
    from hub.errors import ValidationFailed

    bus_app.extensions["rop"].redis.set("bus_test:broken", 1)
    _publish(bus_app, 1, mode="poison")
    make_worker(bus_app).work(burst=True)
    with unit_of_work(bus_app.extensions["rop"].db) as uow:
        letter_id = uow.session.execute(select(DeadLetter.id)).scalar_one()
        assert [d.id for d in discard_dead_letters(uow, [letter_id])] == [letter_id]
        uow.commit()
    with unit_of_work(bus_app.extensions["rop"].db) as uow, pytest.raises(ValidationFailed, match=letter_id):
        discard_dead_letters(uow, [letter_id])

    monkeypatch.setenv("ROP_DATABASE_URL", config.database_url)
    monkeypatch.setenv("ROP_REDIS_URL", bus_app.extensions["rop"].redis_url)
    monkeypatch.setenv("ROP_INSTANCE_PATH", str(config.instance_path))
    assert main(["deadletters", "list"]) == 0
    assert "no dead letters" in capsys.readouterr().out
    assert main(["deadletters", "list", "--all", "--json"]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["id"] == letter_id and row["discarded_at"] and row["replayed_at"] is None


def test_retry_intervals_grow_exponentially_with_jitter():
    from hub.bus import Event

    class Slow(Event):
        type = "bus_test.slow"
        max_retries = 5
        retry_base = 2.0
        retry_cap = 20.0

    delays = Slow.retry_intervals()
    assert len(delays) == 5
    for attempt, delay in enumerate(delays):
        base = min(20.0, 2.0 * 2 ** attempt)
        assert base * 0.5 <= delay <= base * 1.5


def test_the_outbox_sweep_is_a_periodic_job(app):
    from hub.scheduler import periodic_jobs

    assert any(j.func == "hub.bus.outbox.sweep_job" for j in periodic_jobs(app))


def test_messages_published_at_commit_are_written_together_then_relayed_like_the_others(bus_app):
    """``publish(at_commit=True)``: the rows appear at the commit (one executemany for each
    kind), with the event store's copy; a rollback drops them; the relay is the same."""
    with bus_app.app_context(), unit_of_work(bus_app.extensions["rop"].db) as uow:
        publish(CTX, uow, Ping(n=1), at_commit=True)
        uow.rollback()
        first = publish(CTX, uow, Ping(n=2), at_commit=True)
        second = publish(CTX, uow, Ping(n=3), at_commit=True)
        now = publish(CTX, uow, Ping(n=4))  # written at once, as ever
        conn = uow.session.connection()
        assert conn.scalar(select(func.count()).select_from(OutboxMessage)) == 1
        uow.commit()
        jobs = Queue("events", connection=bus_app.extensions["rop"].redis).get_jobs()
        assert [[e["payload"]["n"] for e in job.args[0]] for job in jobs] == [[2, 3, 4]]
    ids = {first.id, second.id, now.id}
    assert _count(bus_app, OutboxMessage, OutboxMessage.id.in_(ids), OutboxMessage.published_at.is_not(None)) == 3
    assert _count(bus_app, TenantEvent, TenantEvent.id.in_(ids)) == 3
    assert _count(bus_app, OutboxMessage) == 3
    make_worker(bus_app).work(burst=True)
    assert [_echoes(bus_app, m.id) for m in (first, second, now)] == [1, 1, 1]


def test_a_tenant_event_no_handler_takes_is_stored_and_sent_to_the_webhook_without_an_outbox_row(bus_app):
    """Nothing would relay it: no outbox row, no job; GET /v1/events and the tenant's webhook
    still have it. A platform event keeps its outbox row (its only record)."""
    from hub.bus.webhooks import set_webhook

    with bus_app.app_context(), unit_of_work(bus_app.extensions["rop"].db) as uow:
        set_webhook(CTX, uow, "https://hooks.example.com/rop")
        uow.commit()
    with bus_app.app_context(), unit_of_work(bus_app.extensions["rop"].db) as uow:
        stored = publish(CTX, uow, Echoed(source="unhandled"))
        platform = publish(CallContext.system(actor="tests"), uow, Echoed(source="platform"))
        later = publish(CTX, uow, Echoed(source="at-commit"), at_commit=True)
        uow.commit()
    assert _count(bus_app, TenantEvent, TenantEvent.id.in_([stored.id, later.id])) == 2
    assert _count(bus_app, OutboxMessage, OutboxMessage.id.in_([stored.id, later.id])) == 0
    assert _count(bus_app, OutboxMessage, OutboxMessage.id == platform.id) == 1
    assert _queued(bus_app) == 0
    assert _count(bus_app, WebhookDelivery, WebhookDelivery.event_id.in_([stored.id, later.id])) == 2
    [deliveries] = Queue("webhooks", connection=bus_app.extensions["rop"].redis).get_jobs()
    assert len(deliveries.args[0]) == 2  # one batch job of the unit of work's two deliveries


def record_wanted(ctx, uow, message) -> None:
    """A subscriber for the condition test: counts what reaches it, in Redis."""
    from flask import current_app

    current_app.extensions["rop"].redis.rpush("bus_test:wanted", message.payload["source"])


def test_a_subscriber_with_a_condition_gets_only_the_events_it_wants_and_the_rest_no_outbox_row(bus_app):
    """``subscribe(..., when=)``: an event for which no subscriber's condition holds is a
    tenant event no handler takes (stored, no outbox row, no job); one that holds goes to it."""
    from hub.bus import subscribe

    subscribe(bus_app, Echoed, record_wanted, when=lambda payload: payload["source"] == "wanted")
    with bus_app.app_context(), unit_of_work(bus_app.extensions["rop"].db) as uow:
        skipped = publish(CTX, uow, Echoed(source="other"))
        wanted = publish(CTX, uow, Echoed(source="wanted"))
        uow.commit()
    assert _count(bus_app, TenantEvent, TenantEvent.id.in_([skipped.id, wanted.id])) == 2
    assert _count(bus_app, OutboxMessage, OutboxMessage.id == skipped.id) == 0
    assert _count(bus_app, OutboxMessage, OutboxMessage.id == wanted.id) == 1
    make_worker(bus_app).work(burst=True)
    redis = bus_app.extensions["rop"].redis
    assert redis.lrange("bus_test:wanted", 0, -1) == [b"wanted"]
    # the relay asks the same question: an envelope it is handed that no condition wants
    # makes no job
    with bus_app.app_context():
        assert enqueue_envelope(bus_app, {**wanted.envelope(), "payload": {"source": "other", "n": 0}}) == 0
