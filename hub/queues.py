"""The RQ queues of the hub, one per kind of work, in the order a worker serves them.

``provider`` holds the jobs that call providers (I/O-bound, 100 ms – 30 s each): it is served
by ``rop worker --queues provider --threads N`` (:class:`hub.worker.HubThreadWorker`), so a
slow provider never blocks the other queues' worker (Procfile, docs/bus.md).
"""
from __future__ import annotations

from rq import Queue

#: Queue names, most urgent first. A worker started without ``--queues`` serves them all.
#: ``bulk`` (the chunks of bulk files) comes after the others, so that a tenant's large file
#: never holds up other commands, the events that settle its own rows, or webhooks.
QUEUES: tuple[str, ...] = ("commands", "events", "webhooks", "default", "bulk", "provider")

#: The queues of the general worker (``rop up``, Procfile ``worker``): all but ``provider``.
GENERAL_QUEUES: tuple[str, ...] = tuple(q for q in QUEUES if q != "provider")


def queue(name: str, connection) -> Queue:
    """The RQ queue ``name`` on ``connection``.

    :raise ValueError: for a name that is not one of :data:`QUEUES`.
    """
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}; the queues are {', '.join(QUEUES)}")
    return Queue(name, connection=connection)
