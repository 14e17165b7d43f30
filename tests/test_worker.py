"""Workers run jobs inside the hub's app context, against the real Redis."""
from __future__ import annotations

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
