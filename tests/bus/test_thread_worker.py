"""The thread worker (``rop worker --threads N``) and ``own_uow`` handlers.

Against a real Redis, the run's database and a real slow HTTP server in a thread that
counts the requests it is serving at once (overall and per key). Assertions are on counts;
timeouts are only safety nets.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from flask import current_app
from marshmallow import Schema, fields
from rq import Queue, Retry
from rq.registry import FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from sqlalchemy import func, select

from hub.bus import Command, publish, register_command_handler
from hub.bus.models import DeadLetter, ProcessedMessage
from hub.bus.outbox import enqueue_envelope, sweep
from hub.bus.testing import Ping, SlowServer, register
from hub.concurrency import Busy, acquire, holders, limit
from hub.context import CallContext
from hub.db import unit_of_work
from hub.worker import make_worker

CTX = CallContext(tenant_id="ten_test", client_id="cli_test", scopes=frozenset({"*"}))
HTTP = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=512, max_keepalive_connections=512))


# -- a slow provider ---------------------------------------------------------------------------
@pytest.fixture
def slow_server():
    server = SlowServer().start()
    yield server
    server.stop()


# -- messages and handlers of these tests --------------------------------------------------------
class CallSchema(Schema):
    url = fields.String(required=True)
    delay = fields.Float(load_default=0.5)
    key = fields.String(load_default="")
    limit = fields.Integer(load_default=0)


class CallProvider(Command):
    """A provider call: the kind of job the provider queue exists for."""

    type = "bus_test.call_provider"
    queue = "provider"
    schema = CallSchema
    max_retries = 2
    retry_base = 0.0


def call_provider(ctx, message) -> None:
    """own_uow handler: calls the slow server, through a per-key limit when asked."""
    data = message.data
    url = f"{data['url']}?delay={data['delay']}&key={data['key']}"
    if data["limit"]:
        with limit(current_app.extensions["rop"].redis, data["key"], data["limit"], timeout=120):
            HTTP.get(url).raise_for_status()
    else:
        HTTP.get(url).raise_for_status()


class ChargeSchema(Schema):
    ref = fields.String(required=True)
    mode = fields.String(load_default="ok")  # ok | fail-after-effect | always-fail


class Charge(Command):
    """A command with an effect that must happen once (its handler keeps its own state)."""

    type = "bus_test.charge"
    queue = "provider"
    schema = ChargeSchema
    max_retries = 2
    retry_base = 0.0


def charge(ctx, message) -> None:
    """own_uow handler with its own state machine: the effect happens on the transition
    new -> charged only (``SET NX``), so a second run for the same message is a no-op."""
    state = current_app.extensions["rop"]
    redis = state.redis
    data = message.data
    ref = data["ref"]
    redis.incr(f"charge:runs:{ref}")
    redis.set(f"charge:pool_checked_out:{ref}", state.db.engine.pool.checkedout())
    if data["mode"] == "always-fail":
        raise RuntimeError("the provider is down")
    if redis.set(f"charge:state:{ref}", "charged", nx=True):
        redis.incr(f"charge:effects:{ref}")
    if data["mode"] == "fail-after-effect" and redis.incr(f"charge:failures:{ref}") == 1:
        raise RuntimeError("crashed after the effect, before the record")


@pytest.fixture
def bus_app(app):
    register(app)  # Ping, for the dead-letter test
    register_command_handler(app, CallProvider, call_provider, own_uow=True)
    register_command_handler(app, Charge, charge, own_uow=True)
    return app


def _publish(app, messages) -> list:
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        sent = [publish(CTX, uow, m) for m in messages]
        uow.commit()
    return sent


def _count(app, model, *where) -> int:
    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return uow.session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


# -- in flight -----------------------------------------------------------------------------------
WORKER_SCRIPT = """
import sys
from hub.app import create_app
from hub.bus import register_command_handler
from hub.worker import HubThreadWorker, make_worker
from tests.bus.test_thread_worker import CallProvider, call_provider
app = create_app()
register_command_handler(app, CallProvider, call_provider, own_uow=True)
worker = make_worker(app, ["provider"], threads=int(sys.argv[1]))
assert isinstance(worker, HubThreadWorker)
worker.work(burst=True, logging_level="WARNING")
"""


def test_one_process_of_128_threads_keeps_at_least_100_calls_in_flight(bus_app, config, slow_server):
    # A slow provider (3 s a call). In flight = completed calls/s x call time: at 0.5 s a call the
    # same process reaches 100 only at the start of a burst on a quiet machine (docs/bus.md).
    sent = _publish(bus_app, [CallProvider(url=slow_server.url, delay=3.0) for _ in range(200)])
    redis = bus_app.extensions["rop"].redis
    assert Queue("provider", connection=redis).count == 200
    # One worker process (the server runs in this one), as `rop worker --threads 128` runs.
    worker = subprocess.run([sys.executable, "-c", WORKER_SCRIPT, "128"], env=_worker_env(bus_app, config), check=False,
                            cwd=os.getcwd(), timeout=300)
    assert worker.returncode == 0
    # Every message handled once; a call that failed in transport (seen once: the shared
    # test client's socket gone, EBADF) is retried by its message's policy, so the server
    # may have served a few more than 200.
    assert 200 <= slow_server.served <= 210, slow_server.served
    assert slow_server.max_in_flight >= 100, slow_server.max_in_flight
    assert slow_server.max_in_flight <= 128
    assert _count(bus_app, ProcessedMessage, ProcessedMessage.message_id.in_([m.id for m in sent])) == 200
    assert _count(bus_app, DeadLetter) == 0
    assert StartedJobRegistry("provider", connection=redis).count == 0
    assert Queue("provider", connection=redis).count == 0


def test_a_per_key_limit_holds_while_other_calls_flow(bus_app, slow_server):
    limited = [CallProvider(url=slow_server.url, delay=0.2, key="cfg_small", limit=5) for _ in range(40)]
    free = [CallProvider(url=slow_server.url, delay=2.0, key="cfg_big") for _ in range(60)]
    _publish(bus_app, [m for pair in zip(limited, free[:40]) for m in pair] + free[40:])
    make_worker(bus_app, ["provider"], threads=128).work(burst=True)
    assert slow_server.served == 100
    assert slow_server.max_per_key["cfg_small"] <= 5
    assert slow_server.max_per_key["cfg_small"] >= 2  # the limit admits several at once
    # Jobs waiting for a cfg_small slot hold a thread each, but the other key's calls still flow.
    assert slow_server.max_per_key["cfg_big"] >= 30
    assert holders(bus_app.extensions["rop"].redis, "cfg_small") == 0
    assert _count(bus_app, DeadLetter) == 0


# -- failures ------------------------------------------------------------------------------------
def test_a_poison_message_retries_then_dead_letters_in_the_thread_worker(bus_app):
    bus_app.extensions["rop"].redis.set("bus_test:broken", 1)
    message = _publish(bus_app, [Ping(n=1, mode="poison")])[0]
    make_worker(bus_app, ["events"], threads=8).work(burst=True)
    with unit_of_work(bus_app.extensions["rop"].db, readonly=True) as uow:
        letter = uow.session.execute(select(DeadLetter)).scalar_one()
        assert letter.message_id == message.id
        assert letter.attempts == Ping.max_retries + 1
        assert letter.last_error.startswith("RuntimeError: the cause is not fixed yet")


def flaky_job(key: str) -> str:
    """Fails until it has run three times (RQ retries it)."""
    if current_app.extensions["rop"].redis.incr(key) < 3:
        raise RuntimeError("not yet")
    return "ok"


def failing_job(key: str) -> None:
    current_app.extensions["rop"].redis.incr(key)
    raise RuntimeError("always")


def overrunning_job(key: str) -> None:
    redis = current_app.extensions["rop"].redis
    redis.set(key, "started")
    for _ in range(600):  # 60 s of Python code; the 1 s job timeout interrupts it
        time.sleep(0.1)
    redis.set(key, "finished")


def test_rq_bookkeeping_per_job_retries_failures_and_timeouts(app):
    redis = app.extensions["rop"].redis
    q = Queue("provider", connection=redis)
    flaky = q.enqueue(flaky_job, "runs:flaky", retry=Retry(max=3), result_ttl=600)
    failing = q.enqueue(failing_job, "runs:failing", retry=Retry(max=1))
    slow = q.enqueue(overrunning_job, "runs:slow", job_timeout=1)
    done = [q.enqueue(flaky_job, f"runs:ok{i}", retry=Retry(max=3), result_ttl=600) for i in range(5)]
    make_worker(app, ["provider"], threads=16).work(burst=True)
    for job in (flaky, failing, slow, *done):
        job.refresh()
    assert flaky.get_status() == "finished" and flaky.return_value() == "ok"
    assert int(redis.get("runs:flaky")) == 3
    assert failing.get_status() == "failed" and int(redis.get("runs:failing")) == 2
    assert slow.get_status() == "failed" and redis.get("runs:slow") == b"started"
    assert "JobTimeoutException" in (slow.latest_result().exc_string or "")
    assert all(j.get_status() == "finished" for j in done)
    assert sorted(FailedJobRegistry("provider", connection=redis).get_job_ids()) == sorted([failing.id, slow.id])
    assert FinishedJobRegistry("provider", connection=redis).count == 6
    assert StartedJobRegistry("provider", connection=redis).count == 0


# -- own_uow ------------------------------------------------------------------------------------
def test_own_uow_handler_runs_without_a_unit_of_work_and_is_recorded_once(bus_app):
    message = _publish(bus_app, [Charge(ref="a")])[0]
    make_worker(bus_app, ["provider"]).work(burst=True)  # one thread: the pool is ours alone
    redis = bus_app.extensions["rop"].redis
    assert int(redis.get("charge:runs:a")) == 1
    assert int(redis.get("charge:pool_checked_out:a")) == 0  # no connection held around it
    assert _count(bus_app, ProcessedMessage, ProcessedMessage.message_id == message.id) == 1
    # The same message again (a duplicate publish): recorded, so the handler is not called.
    enqueue_envelope(bus_app, message.envelope())
    make_worker(bus_app, ["provider"], threads=4).work(burst=True)
    assert int(redis.get("charge:runs:a")) == 1
    assert int(redis.get("charge:effects:a")) == 1


def test_own_uow_rerun_after_a_failure_before_the_record_is_absorbed_by_the_handler(bus_app):
    message = _publish(bus_app, [Charge(ref="b", mode="fail-after-effect")])[0]
    make_worker(bus_app, ["provider"], threads=4).work(burst=True)
    redis = bus_app.extensions["rop"].redis
    assert int(redis.get("charge:runs:b")) == 2  # ran again: the first run was not recorded
    assert int(redis.get("charge:effects:b")) == 1  # its own state made the second run a no-op
    assert _count(bus_app, ProcessedMessage, ProcessedMessage.message_id == message.id) == 1
    assert _count(bus_app, DeadLetter) == 0


def test_own_uow_concurrent_duplicates_are_harmless(bus_app):
    message = _publish(bus_app, [Charge(ref="c")])[0]
    for _ in range(5):
        enqueue_envelope(bus_app, message.envelope())
    make_worker(bus_app, ["provider"], threads=8).work(burst=True)
    redis = bus_app.extensions["rop"].redis
    assert 1 <= int(redis.get("charge:runs:c")) <= 6
    assert int(redis.get("charge:effects:c")) == 1
    assert _count(bus_app, ProcessedMessage, ProcessedMessage.message_id == message.id) == 1


def test_own_uow_failures_retry_and_dead_letter_as_before(bus_app):
    message = _publish(bus_app, [Charge(ref="d", mode="always-fail")])[0]
    make_worker(bus_app, ["provider"], threads=4).work(burst=True)
    with unit_of_work(bus_app.extensions["rop"].db, readonly=True) as uow:
        letter = uow.session.execute(select(DeadLetter)).scalar_one()
        assert letter.message_id == message.id and letter.attempts == Charge.max_retries + 1
    assert int(bus_app.extensions["rop"].redis.get("charge:runs:d")) == Charge.max_retries + 1
    assert _count(bus_app, ProcessedMessage, ProcessedMessage.message_id == message.id) == 0


# -- a real worker process -----------------------------------------------------------------------
def slow_call(url: str, delay: float, counter: str) -> None:
    """A raw provider-queue job for the process tests: one call, then count it."""
    HTTP.get(f"{url}?delay={delay}").raise_for_status()
    current_app.extensions["rop"].redis.incr(counter)


def limited_call(url: str, key: str, n: int, ttl: float) -> None:
    with limit(current_app.extensions["rop"].redis, key, n, timeout=300, ttl=ttl):
        HTTP.get(f"{url}?delay=300&key={key}")


def _worker_env(app, config) -> dict:
    return dict(os.environ, ROP_DATABASE_URL=config.database_url, ROP_REDIS_URL=app.extensions["rop"].redis_url,
                ROP_INSTANCE_PATH=str(config.instance_path), ROP_LOG_LEVEL="WARNING")


def _worker_process(app, config, threads: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--queues", "provider",
                             "--threads", str(threads)], env=_worker_env(app, config), cwd=os.getcwd())


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"the worker exited while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigterm_finishes_the_running_jobs_and_takes_no_new_ones(app, config, slow_server):
    redis = app.extensions["rop"].redis
    q = Queue("provider", connection=redis)
    for _ in range(12):
        q.enqueue(slow_call, slow_server.url, 2.0, "calls:done")
    proc = _worker_process(app, config, threads=8)
    try:
        _wait_for(lambda: slow_server.in_flight == 8, proc, "8 calls in flight")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert int(redis.get("calls:done")) == 8  # every running job finished
    assert slow_server.served == 8
    assert q.count == 4  # the others wait for the next worker
    assert StartedJobRegistry("provider", connection=redis).count == 0
    assert FinishedJobRegistry("provider", connection=redis).count == 8


def test_a_sigkilled_thread_worker_leases_and_jobs_come_back(app, config, slow_server):
    redis = app.extensions["rop"].redis
    q = Queue("provider", connection=redis)
    jobs = [q.enqueue(limited_call, slow_server.url, "cfg_killed", 5, 2.0, retry=Retry(max=1)) for _ in range(8)]
    proc = _worker_process(app, config, threads=8)
    try:
        _wait_for(lambda: slow_server.per_key.get("cfg_killed") == 5, proc, "5 limited calls in flight")
        _wait_for(lambda: StartedJobRegistry("provider", connection=redis).count == 8, proc, "8 started jobs")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert holders(redis, "cfg_killed") == 5  # nobody gave them back
    with pytest.raises(Busy):
        acquire(redis, "cfg_killed", 5, 0)
    # The leases lapse after their ttl (2 s): all five slots are ours again.
    with limit(redis, "cfg_killed", 5, timeout=15), limit(redis, "cfg_killed", 5, timeout=15):
        leases = [acquire(redis, "cfg_killed", 5, 15) for _ in range(3)]
        assert holders(redis, "cfg_killed") == 5
    for lease in leases:
        from hub.concurrency import release

        release(lease)
    # The dead worker's jobs go back to the queue (the bus sweep, once their heartbeat lapsed).
    sweep(app, abandoned_before=time.time() + 3600)
    assert sorted(q.job_ids) == sorted(j.id for j in jobs)


def test_a_second_signal_exits_at_once_and_the_abandoned_jobs_come_back(app, config, slow_server):
    redis = app.extensions["rop"].redis
    q = Queue("provider", connection=redis)
    jobs = [q.enqueue(slow_call, slow_server.url, 300, "calls:cold", retry=Retry(max=1)) for _ in range(4)]
    proc = _worker_process(app, config, threads=4)
    try:
        _wait_for(lambda: slow_server.in_flight == 4, proc, "4 calls in flight")
        proc.send_signal(signal.SIGTERM)  # warm: would wait for the 300 s calls
        time.sleep(1.5)  # a second signal within 1 s counts as the same Ctrl-C
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)  # cold: exit now
        assert proc.wait(30) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert redis.get("calls:cold") is None  # none finished
    assert StartedJobRegistry("provider", connection=redis).count == 4
    sweep(app, abandoned_before=time.time() + 3600)
    assert sorted(q.job_ids) == sorted(j.id for j in jobs)
