"""The RQ queues of the hub, one per kind of work, in the order a worker serves them."""
from __future__ import annotations

from rq import Queue

#: Queue names, most urgent first. A worker started without ``--queues`` serves them all.
QUEUES: tuple[str, ...] = ("commands", "events", "webhooks", "default")


def queue(name: str, connection) -> Queue:
    """The RQ queue ``name`` on ``connection``.

    :raise ValueError: for a name that is not one of :data:`QUEUES`.
    """
    if name not in QUEUES:
        raise ValueError(f"unknown queue {name!r}; the queues are {', '.join(QUEUES)}")
    return Queue(name, connection=connection)
