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
