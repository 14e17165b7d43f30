"""The RQ queues of the hub, one per kind of work, in the order a worker serves them.

``provider`` holds the jobs that call providers (I/O-bound, 100 ms – 30 s each): it is served
by ``rop worker --queues provider --threads N`` (:class:`hub.worker.HubThreadWorker`), so a
slow provider never blocks the other queues' worker (Procfile, docs/bus.md).

``provider_bulk`` is a **lane** of ``provider``: the purchases of bulk files go there, the
API's to ``provider``. A worker serving a queue serves its lanes too, after it (``rop worker
--queues provider`` takes a bulk row's job only when no API purchase's waits), so a tenant's
100,000-row file never queues another tenant's API purchases behind its rows
(docs/transactions.md, "API purchases before bulk rows").

``webhooks`` holds the deliveries of tenants' webhooks (a POST each, up to 10 s, and a burst
of thousands when a bulk file settles): they have their own lane, served by ``rop worker
--queues webhooks --threads N``, so commands, events, the scheduler's periodic jobs and
bulk progress are never queued behind a backlog of deliveries (``rop up`` runs that worker;
the Procfile has a ``webhooks`` line).
"""
from __future__ import annotations

import datetime as dt

from rq import Queue
from rq.executions import Execution, ExecutionRegistry
from rq.job import Job

#: Queue names, most urgent first. A worker started without ``--queues`` serves them all.
#: ``bulk`` (the chunks of bulk files) comes after the others, so that a tenant's large file
#: never holds up other commands, the events that settle its own rows, or the periodic jobs
#: (``default``); ``webhooks`` after ``bulk``, so that even a worker serving every queue puts
#: deliveries last.
QUEUES: tuple[str, ...] = ("commands", "events", "default", "bulk", "webhooks", "provider", "provider_bulk")

#: Each queue's lanes: queues of the same work, served by the queue's workers after it.
LANES: dict[str, tuple[str, ...]] = {"provider": ("provider_bulk",)}

#: The queues with their own workers (their own lane): ``provider`` (provider calls, with
#: its lane ``provider_bulk``) and ``webhooks`` (deliveries).
OWN_LANE: tuple[str, ...] = ("webhooks", "provider", "provider_bulk")


def with_lanes(names: list[str] | tuple[str, ...]) -> list[str]:
    """``names`` in their order, then the lanes of each that are not among them."""
    served = list(dict.fromkeys(names))
    for name in list(served):
        served += [lane for lane in LANES.get(name, ()) if lane not in served]
    return served

#: The queues of the general worker (``rop up``, Procfile ``worker``): all but those with their own lane.
GENERAL_QUEUES: tuple[str, ...] = tuple(q for q in QUEUES if q not in OWN_LANE)

#: The id prefix of the scheduler's periodic jobs (hub.scheduler; their routine log lines are DEBUG).
PERIODIC_JOB_PREFIX = "periodic-"
#: ... and the prefix of their description (``periodic transactions.sweep``).
PERIODIC_DESCRIPTION_PREFIX = "periodic "


class _ExecutionRegistry(ExecutionRegistry):
    """rq's registry of one job's executions, except that an entry whose execution is gone is
    dropped rather than an error.

    A SIGKILLed worker leaves its execution's id in the job's registry until the entry's
    score passes, while the execution's own hash expires sooner. rq 3.0 then raised
    ValueError in the clean-up after the job's next successful run (``result_ttl=0``, as
    the bus enqueues): a job that had succeeded counted as failed and ran again, for as long
    as the stale entry lived (a minute or two after bench/chaos.py's worker fault).
    """

    def get_executions(self, start: int = 0, end: int = -1) -> list[Execution]:
        executions = []
        for execution_id in self.get_execution_ids(start, end):
            try:
                executions.append(Execution.fetch(id=execution_id, job_id=self.job_id, connection=self.connection))
            except ValueError:  # its hash expired with the worker that ran it
                self.connection.zrem(self.key, execution_id)
        return executions


class HubJob(Job):
    """The hub's RQ job: rq's, with :class:`_ExecutionRegistry` (the queues' and the workers'
    job class)."""

    @property
    def execution_registry(self) -> ExecutionRegistry:
        return _ExecutionRegistry(self.id, connection=self.connection)


def queue(name: str, connection) -> Queue:
    """The RQ queue ``name`` on ``connection``.

    :raise ValueError: for a name that is not one of :data:`QUEUES`.
    """
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}; the queues are {', '.join(QUEUES)}")
    return Queue(name, connection=connection, job_class=HubJob)


def backlogs(connection, now: float | None = None) -> dict:
    """What waits in each queue and who serves them (the admin dashboard's operations panel).

    :return: ``{"queues": [{"name", "waiting", "oldest_age_s" (None when empty), "running",
        "scheduled", "failed"}], "workers": [{"name", "queues", "state", "heartbeat_age_s"}]}``
        — ``waiting``: jobs enqueued and not started; the oldest waiting job's age from its
        ``enqueued_at``; ``running``/``scheduled``/``failed``: RQ's registries.
    """
    import time

    from rq import Worker
    from rq.job import Job
    from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry

    now = time.time() if now is None else now
    out = []
    for name in QUEUES:
        q = Queue(name, connection=connection)
        waiting = q.count
        oldest = None
        head = Job.fetch_many(q.get_job_ids(0, 10), connection=connection) if waiting else []
        for job in head:  # the head: the first not expired (an expired one fetches as None)
            if job is not None and job.enqueued_at is not None:
                oldest = _age(job.enqueued_at, now)
                break
        out.append({"name": name, "waiting": waiting, "oldest_age_s": oldest,
                    "running": StartedJobRegistry(name, connection=connection).count,
                    "scheduled": ScheduledJobRegistry(name, connection=connection).count,
                    "failed": FailedJobRegistry(name, connection=connection).count})
    workers = []
    for worker in Worker.all(connection=connection):
        beat = worker.last_heartbeat
        workers.append({"name": worker.name, "queues": worker.queue_names(), "state": worker.get_state(),
                        "heartbeat_age_s": _age(beat, now) if beat is not None else None})
    return {"queues": out, "workers": workers}


def _age(at: dt.datetime, now: float) -> float:
    """Seconds from ``at`` (RQ keeps naive UTC datetimes) to ``now`` (epoch seconds)."""
    return max(0.0, now - (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).timestamp())
