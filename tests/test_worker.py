"""Workers run jobs inside the hub's app context, against the real Redis."""
from __future__ import annotations

import pytest
from flask import current_app

from hub.queues import QUEUES, queue
from hub.worker import make_worker


def job_that_reads_the_app() -> str:
    """Runs in the worker; proves the app context is there."""
    return current_app.extensions["rop"].config.database_kind


def test_job_runs_with_the_app_context(app):
    job = queue("default", app.extensions["rop"].redis).enqueue(job_that_reads_the_app)
    make_worker(app).work(burst=True)
    job.refresh()
    assert job.return_value() == app.extensions["rop"].config.database_kind


def test_worker_serves_every_queue_by_default(app):
    worker = make_worker(app)
    assert [q.name for q in worker.queues] == list(QUEUES)


def job_that_reports_its_thread() -> str:
    import threading

    return f"{current_app.extensions['rop'].config.database_kind}:{threading.current_thread().name}"


def test_thread_worker_runs_jobs_in_its_threads_with_the_app_context(app):
    from hub.worker import HubThreadWorker, HubWorker

    q = queue("default", app.extensions["rop"].redis)
    jobs = [q.enqueue(job_that_reports_its_thread, result_ttl=60) for _ in range(20)]
    worker = make_worker(app, ["default"], threads=4)
    assert isinstance(worker, HubThreadWorker) and worker.threads == 4
    assert app.extensions["rop"].redis.connection_pool.max_connections >= 2 * 4 + 32
    assert worker.work(burst=True) is True
    kind = app.extensions["rop"].config.database_kind
    results = [j.latest_result().return_value for j in jobs]
    assert all(r.startswith(f"{kind}:rq-") for r in results)  # a pool thread, not the main one
    assert type(make_worker(app, ["default"])) is HubWorker  # threads=1: one job at a time


@pytest.mark.postgres("SQLite has no connection pool to size")
def test_a_thread_worker_keeps_few_database_connections(app, is_postgres):
    """Its jobs' Python runs under one GIL: more units of work at once only take longer each
    (and hold their row locks longer), so the pool is small, fixed, and waited on."""
    from hub.worker import DB_CONNECTIONS, DB_POOL_WAIT

    make_worker(app, ["provider"], threads=64)
    pool = app.extensions["rop"].db.engine.pool
    assert (pool.size(), pool._max_overflow, pool._timeout) == (DB_CONNECTIONS, 0, DB_POOL_WAIT)
    make_worker(app, ["provider"], threads=2, db_connections=8)
    assert app.extensions["rop"].db.engine.pool.size() == 2  # never more than the threads


@pytest.mark.parametrize("threads", [1, 4])
def test_the_command_channel_thread_polls_briefly_and_is_dead_after_unsubscribe(app, threads):
    """RQ subscribes its command channel with a 60 s wait; with redis-py 8.2, whose
    ``PubSubWorkerThread.stop()`` joins the thread, every teardown sat out that wait. The hub's
    workers poll for at most a second, and the thread is gone once the worker unsubscribes."""
    from hub.worker import COMMAND_POLL_SECONDS

    worker = make_worker(app, ["default"], threads=threads)
    worker.subscribe()
    thread = worker.pubsub_thread
    assert thread.is_alive()
    assert thread.sleep_time == COMMAND_POLL_SECONDS <= 1
    worker.unsubscribe()
    assert not thread.is_alive()


def test_a_command_sent_on_the_channel_reaches_the_worker(app):
    """The short poll still delivers RQ's commands (``rq.command.send_command``)."""
    import threading

    from rq.command import send_command

    worker = make_worker(app, ["default"])
    received = threading.Event()
    payloads = []
    worker.handle_payload = lambda message: (payloads.append(message["data"]), received.set())
    worker.subscribe()
    try:
        send_command(app.extensions["rop"].redis, worker.name, "ping-from-test")
        assert received.wait(10)
        assert b"ping-from-test" in payloads[0]
    finally:
        worker.unsubscribe()


# -- a job dequeued is never lost: parked until it starts ---------------------------------------
#: A worker process that stops right after its dequeue, before the start, until ``go`` exists
#: (the test kills it there, or lets its lease lapse), then finishes in burst mode.
PAUSED_WORKER = """
import pathlib, sys, time
from hub.app import create_app
from hub.worker import make_worker
parked, go, threads, queues = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
worker = make_worker(create_app(), queues, name="paused-%d" % threads, threads=threads)
def pause(taken):
    pathlib.Path(parked).write_text(" ".join(job.id for job, _queue in taken))
    while not pathlib.Path(go).exists():
        time.sleep(0.02)
worker.on_parked = pause
worker.work(burst=True)
"""

#: both kinds of worker the hub runs: the general one (several queues, one job at a time) and
#: the provider one (one queue, threads)
WORKER_KINDS = [pytest.param(1, ("commands", "events", "webhooks", "default", "bulk"), "events", id="general"),
                pytest.param(4, ("provider",), "provider", id="provider")]


def _worker_env(app, config) -> dict:
    """The environment of a worker process on the test's database and Redis."""
    import os

    return dict(os.environ, ROP_DATABASE_URL=config.database_url, ROP_REDIS_URL=app.extensions["rop"].redis_url,
                ROP_INSTANCE_PATH=str(config.instance_path), ROP_LOG_LEVEL="WARNING")


def _paused_worker(app, config, tmp_path, threads: int, queues) -> tuple:
    import subprocess
    import sys
    import time

    parked, go = tmp_path / "parked", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", PAUSED_WORKER, str(parked), str(go), str(threads),
                             ",".join(queues)], env=_worker_env(app, config))
    deadline = time.monotonic() + 120
    while not (parked.exists() and parked.read_text()):
        assert proc.poll() is None, "the worker exited"
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the worker never dequeued the job")
        time.sleep(0.02)
    return proc, parked, go


def _sweep_after_the_lease(app) -> None:
    """The bus sweep as it runs once the parked jobs' lease has lapsed."""
    import time

    from hub.bus.outbox import sweep
    from hub.worker import PARK_LEASE_SECONDS

    with app.app_context():
        sweep(app, abandoned_before=time.time() + PARK_LEASE_SECONDS + 1)


@pytest.mark.parametrize("threads,queues,job_queue", WORKER_KINDS)
def test_a_worker_killed_between_dequeue_and_start_loses_no_job(app, config, tmp_path, threads, queues, job_queue):
    """RQ's dequeue of several queues pops the job and keeps no copy until the job is in the
    started-job registry: a worker SIGKILLed in between lost it (the fault suite lost a
    refund event so). Now the dequeue parks it, and the bus sweep hands it back."""
    import os
    import signal

    from hub.worker import PARK_LEASES_KEY, parked_key

    redis = app.extensions["rop"].redis
    made = tmp_path / "made"
    job = queue(job_queue, redis).enqueue("os.mkdir", str(made))  # run twice, it would fail
    proc, parked, _go = _paused_worker(app, config, tmp_path, threads, queues)
    try:
        assert parked.read_text() == job.id
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    name = f"paused-{threads}"
    assert redis.lrange(parked_key(job_queue, name), 0, -1) == [job.id.encode()]  # nowhere else:
    assert job.id not in queue(job_queue, redis).job_ids
    assert job.id not in queue(job_queue, redis).started_job_registry
    assert not made.exists()

    _sweep_after_the_lease(app)
    assert redis.llen(parked_key(job_queue, name)) == 0 and redis.zscore(PARK_LEASES_KEY, name) is None
    assert queue(job_queue, redis).job_ids == [job.id]
    make_worker(app, [job_queue], threads=threads).work(burst=True)
    assert made.is_dir() and job.get_status(refresh=True) == "finished"


@pytest.mark.parametrize("threads,queues,job_queue", WORKER_KINDS)
def test_a_stalled_worker_whose_parked_job_was_handed_back_skips_it(app, config, tmp_path, threads, queues,
                                                                    job_queue):
    """A worker stalled past its lease between dequeue and start (not dead): the sweep hands
    its parked job back, another worker runs it, and the stalled one, resuming, finds it gone
    from its parked list and skips it — never two runs of one job."""
    from rq.registry import FailedJobRegistry

    from hub.worker import PARK_LEASES_KEY, parked_key

    redis = app.extensions["rop"].redis
    made = tmp_path / "made"
    job = queue(job_queue, redis).enqueue("os.mkdir", str(made))  # a second run would fail
    proc, _parked, go = _paused_worker(app, config, tmp_path, threads, queues)
    try:
        _sweep_after_the_lease(app)
        assert queue(job_queue, redis).job_ids == [job.id]
        make_worker(app, [job_queue]).work(burst=True)
        assert made.is_dir() and job.get_status(refresh=True) == "finished"
        go.touch()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert job.get_status(refresh=True) == "finished"
    assert FailedJobRegistry(job_queue, connection=redis).count == 0
    name = f"paused-{threads}"
    assert redis.llen(parked_key(job_queue, name)) == 0 and redis.zscore(PARK_LEASES_KEY, name) is None


def test_a_worker_that_stops_hands_back_what_it_had_parked(app):
    """A dequeue whose start was cut short (an error between the two) leaves the job parked:
    the worker's own stop hands it back at once, not after its lease."""
    from hub.worker import parked_key

    redis = app.extensions["rop"].redis
    job = queue("events", redis).enqueue("os.getpid")
    worker = make_worker(app, ["commands", "events"], name="stopping")
    assert [j.id for j, _q in worker.take_jobs(5, None)] == [job.id]
    assert redis.lrange(parked_key("events", "stopping"), 0, -1) == [job.id.encode()]
    assert queue("events", redis).job_ids == []
    worker.hand_back_own()
    assert queue("events", redis).job_ids == [job.id] and redis.llen(parked_key("events", "stopping")) == 0


def test_a_general_worker_killed_mid_job_has_it_handed_back_after_its_90_s_lease(app, config, tmp_path):
    """RQ's SimpleWorker gives a running job a lease of its timeout + 60 s (360 s for the bus's
    jobs) and never extends it: a SIGKILLed general worker's job came back after six minutes.
    Its heartbeat thread extends a lease of 90 s instead, as the thread worker's does."""
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil
    from rq.registry import FailedJobRegistry

    from hub.bus.outbox import sweep

    redis = app.extensions["rop"].redis
    events = queue("events", redis)
    job = events.enqueue("time.sleep", 600, job_timeout=300)
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--queues", "commands", "--queues",
                             "events"], env=_worker_env(app, config))
    orphans = []
    try:
        deadline = time.monotonic() + 120
        while job.id not in events.started_job_registry:
            assert proc.poll() is None and time.monotonic() < deadline, "the worker never started the job"
            time.sleep(0.05)
        orphans = psutil.Process(proc.pid).children(recursive=True)  # RQ's scheduler process
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in orphans:  # the worker alone died: its scheduler would outlive the test
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
    with app.app_context():
        sweep(app, abandoned_before=time.time() + 95)  # the sweep as it runs 95 s later
    assert job.id not in events.started_job_registry
    assert job.id in FailedJobRegistry("events", connection=redis)  # abandoned (no retries: failed)


def job_that_counts(key: str) -> int:
    return current_app.extensions["rop"].redis.incr(key)


@pytest.mark.parametrize("threads", [1, 4])
def test_a_job_whose_registry_names_an_execution_that_is_gone_finishes_once(app, threads):
    """What a SIGKILLed worker can leave (seen in bench/chaos.py's worker fault): the job's
    execution registry still names the dead worker's execution while that execution's hash
    has expired. rq 3.0 raised ValueError in the clean-up after the job's next successful run,
    so a job that had succeeded counted as failed and ran again, for as long as the stale
    entry lived. The hub's job class drops such an entry: the job finishes once."""
    import time

    from rq.executions import ExecutionRegistry
    from rq.registry import FailedJobRegistry

    redis = app.extensions["rop"].redis
    q = queue("default", redis)
    job = q.enqueue(job_that_counts, "ran", result_ttl=0)  # as the bus enqueues: deleted once done
    registry = ExecutionRegistry(job.id, connection=redis)
    redis.zadd(registry.key, {"dead-workers-execution": time.time() + 600})  # its hash: gone
    make_worker(app, ["default"], threads=threads).work(burst=True)
    assert int(redis.get("ran")) == 1
    assert FailedJobRegistry("default", connection=redis).count == 0
    assert "dead-workers-execution" not in registry.get_execution_ids()
