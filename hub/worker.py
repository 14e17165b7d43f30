"""``rop worker``: RQ workers that run every job inside the hub's app context.

Worker class: :class:`rq.SimpleWorker` (jobs run in the worker process itself). RQ's
forking ``Worker`` pays a fork per job (measured here: ~100 jobs/s against ~260 for the
simple worker); the hub's jobs are short, idempotent and run their own unit of work, so
the isolation a fork buys is not worth it. Scale by running more worker processes.
"""
from __future__ import annotations

from collections.abc import Sequence

from flask import Flask
from rq import SimpleWorker

from hub.queues import QUEUES, queue
from hub.state import HubState


class HubWorker(SimpleWorker):
    """A SimpleWorker that pushes the hub's app context around each job."""

    flask_app: Flask | None = None

    def perform_job(self, *args, **kwargs):  # noqa: D102 (RQ's signature varies by version)
        app = self.flask_app
        if app is None:
            return super().perform_job(*args, **kwargs)
        with app.app_context():
            return super().perform_job(*args, **kwargs)


def make_worker(app: Flask, queue_names: Sequence[str] | None = None, name: str | None = None) -> HubWorker:
    """A worker of ``app`` on ``queue_names`` (all queues by default)."""
    state: HubState = app.extensions["rop"]
    names = list(queue_names or QUEUES)
    queues = [queue(n, state.redis) for n in names]
    worker = HubWorker(queues, connection=state.redis, name=name)
    worker.flask_app = app
    return worker
