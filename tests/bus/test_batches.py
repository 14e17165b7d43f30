"""Batches: the messages one unit of work publishes for one handler travel in one job, and
they are handled exactly as if each had its own (once each; a bad one alone fails)."""
from __future__ import annotations

import pytest
from marshmallow import Schema, fields
from rq import Queue
from sqlalchemy import func, select

from hub.bus import publish
from hub.bus.messages import Command
from hub.bus.models import DeadLetter, ProcessedMessage, TenantEvent
from hub.bus.outbox import MAX_BATCH, enqueue_envelope, enqueue_envelopes
from hub.bus.registry import register_command_handler
from hub.bus.testing import Ping, register
from hub.context import CallContext
from hub.db import unit_of_work
from hub.worker import make_worker

CTX = CallContext(tenant_id="ten_test", client_id="cli_test", scopes=frozenset({"*"}))


class TallySchema(Schema):
    n = fields.Integer(required=True)


class Tally(Command):
    """A test command with an own_uow handler that has a batch form."""

    type = "bus_test.tally"
    schema = TallySchema
    queue = "commands"
    max_retries = 1
    retry_base = 0.0


def tally_one(ctx, message) -> None:
    from flask import current_app

    current_app.extensions["rop"].redis.rpush("bus_test:tally:one", message.payload["n"])


def tally_many(messages) -> None:
    from flask import current_app

    redis = current_app.extensions["rop"].redis
    redis.rpush("bus_test:tally:batches", ",".join(str(m.payload["n"]) for m in messages))
    if redis.exists("bus_test:tally:broken"):
        raise RuntimeError("the batch cannot be handled yet")


@pytest.fixture
def bus_app(app):
    register(app)
    register_command_handler(app, Tally, tally_one, own_uow=True, batch=tally_many)
    return app


def _publish_many(app, messages) -> list:
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        published = [publish(CTX, uow, m) for m in messages]
        uow.commit()
    return published


def _jobs(app, queue: str):
    return Queue(queue, connection=app.extensions["rop"].redis).get_jobs()


def _echoes(app) -> list[str]:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        rows = uow.session.scalars(select(TenantEvent.envelope).where(TenantEvent.type == "bus_test.echoed"))
        return sorted(e["payload"]["source"] for e in rows)


def _recorded(app, ids) -> int:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.execute(select(func.count()).select_from(ProcessedMessage)
                                   .where(ProcessedMessage.message_id.in_(ids))).scalar_one()


def test_one_commit_s_messages_for_a_handler_are_one_job_handled_once_each(bus_app):
    pings = _publish_many(bus_app, [Ping(n=i) for i in range(5)])
    jobs = _jobs(bus_app, "events")
    assert len(jobs) == 1
    assert jobs[0].func_name == "hub.bus.runner.run_handler_batch"
    assert [e["id"] for e in jobs[0].args[0]] == [p.id for p in pings]  # in publishing order
    make_worker(bus_app).work(burst=True)
    assert _echoes(bus_app) == sorted(p.id for p in pings)
    assert _recorded(bus_app, [p.id for p in pings]) == 5


def test_a_big_commit_is_cut_into_jobs_of_at_most_max_batch(bus_app):
    pings = _publish_many(bus_app, [Ping(n=i, mode="noop") for i in range(2 * MAX_BATCH + 3)])
    sizes = sorted(len(j.args[0]) if isinstance(j.args[0], list) else 1 for j in _jobs(bus_app, "events"))
    assert sizes == [3, MAX_BATCH, MAX_BATCH]
    make_worker(bus_app).work(burst=True)
    assert _recorded(bus_app, [p.id for p in pings]) == len(pings)


def test_messages_recorded_before_are_skipped_and_the_others_handled(bus_app):
    pings = _publish_many(bus_app, [Ping(n=i) for i in range(3)])
    # the first one was handled already (a duplicate publish of a message handled alone)
    make_worker(bus_app).work(burst=True)
    assert _echoes(bus_app) == sorted(p.id for p in pings)
    envelopes = [p.envelope() for p in pings]
    with bus_app.app_context():
        enqueue_envelopes(bus_app, envelopes)
    make_worker(bus_app).work(burst=True)
    assert _echoes(bus_app) == sorted(p.id for p in pings)  # nothing twice


def test_one_poison_message_fails_alone_and_the_others_are_handled(bus_app):
    redis = bus_app.extensions["rop"].redis
    redis.set("bus_test:broken", "1")
    good = [Ping(n=1), Ping(n=2)]
    bad = Ping(n=3, mode="poison")
    published = _publish_many(bus_app, [good[0], bad, good[1]])
    make_worker(bus_app).work(burst=True, with_scheduler=True)
    assert _echoes(bus_app) == sorted(p.id for p in (published[0], published[2]))
    with unit_of_work(bus_app.extensions["rop"].db, readonly=True) as uow:
        letters = [(d.message_id, d.attempts) for d in uow.session.scalars(select(DeadLetter))]
    # the poison message had its own retries, then its own dead letter; the others none
    assert letters == [(published[1].id, 3)]
    assert _recorded(bus_app, [p.id for p in published]) == 2


def test_an_own_uow_batch_form_gets_the_unrecorded_messages_at_once(bus_app):
    redis = bus_app.extensions["rop"].redis
    tallies = _publish_many(bus_app, [Tally(n=i) for i in range(4)])
    jobs = _jobs(bus_app, "commands")
    assert len(jobs) == 1
    make_worker(bus_app).work(burst=True)
    assert redis.lrange("bus_test:tally:batches", 0, -1) == [b"0,1,2,3"]
    assert redis.lrange("bus_test:tally:one", 0, -1) == []
    assert _recorded(bus_app, [t.id for t in tallies]) == 4
    # again: every one recorded, the batch form is not called
    with bus_app.app_context():
        enqueue_envelopes(bus_app, [t.envelope() for t in tallies])
    make_worker(bus_app).work(burst=True)
    assert redis.llen("bus_test:tally:batches") == 1


def test_an_own_uow_batch_that_keeps_failing_leaves_a_dead_letter_for_each_message(bus_app):
    redis = bus_app.extensions["rop"].redis
    redis.set("bus_test:tally:broken", "1")
    tallies = _publish_many(bus_app, [Tally(n=i) for i in range(3)])
    make_worker(bus_app).work(burst=True, with_scheduler=True)
    assert redis.llen("bus_test:tally:batches") == 2  # the first run and its one retry
    with unit_of_work(bus_app.extensions["rop"].db, readonly=True) as uow:
        letters = sorted(d.message_id for d in uow.session.scalars(select(DeadLetter)))
    assert letters == sorted(t.id for t in tallies)
    assert _recorded(bus_app, [t.id for t in tallies]) == 0


def test_a_batch_form_needs_an_own_uow_handler(app):
    with pytest.raises(ValueError, match="own_uow"):
        register_command_handler(app, Tally, tally_one, batch=tally_many)


# -- handlers without a processed-message record -------------------------------------------------
@pytest.fixture
def unrecorded_app(app):
    register(app)
    register_command_handler(app, Tally, tally_one, own_uow=True, batch=tally_many, recorded=False)
    return app


def test_an_unrecorded_own_uow_handler_runs_each_delivery_and_writes_no_record(unrecorded_app):
    """``recorded=False``: no look-up and no record; a delivery made twice runs twice (the
    handler's own guards are what make that harmless), alone or in a batch."""
    app = unrecorded_app
    redis = app.extensions["rop"].redis
    tallies = _publish_many(app, [Tally(n=i) for i in range(3)])
    make_worker(app).work(burst=True)
    assert redis.lrange("bus_test:tally:batches", 0, -1) == [b"0,1,2"]
    assert _recorded(app, [t.id for t in tallies]) == 0
    with app.app_context():
        enqueue_envelopes(app, [t.envelope() for t in tallies])  # the batch delivered again
        enqueue_envelope(app, tallies[0].envelope())  # and one of them alone
    make_worker(app).work(burst=True)
    assert redis.lrange("bus_test:tally:batches", 0, -1) == [b"0,1,2", b"0,1,2"]
    assert redis.lrange("bus_test:tally:one", 0, -1) == [b"0"]
    assert _recorded(app, [t.id for t in tallies]) == 0


def test_an_unrecorded_batch_that_keeps_failing_still_leaves_its_dead_letters(unrecorded_app):
    app = unrecorded_app
    app.extensions["rop"].redis.set("bus_test:tally:broken", "1")
    tallies = _publish_many(app, [Tally(n=i) for i in range(2)])
    make_worker(app).work(burst=True, with_scheduler=True)
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        letters = sorted(d.message_id for d in uow.session.scalars(select(DeadLetter)))
    assert letters == sorted(t.id for t in tallies)


def test_only_an_own_uow_handler_may_go_without_a_record(app):
    with pytest.raises(ValueError, match="own_uow"):
        register_command_handler(app, Tally, tally_one, recorded=False)
