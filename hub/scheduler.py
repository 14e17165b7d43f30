"""``rop scheduler``: periodic jobs, with one active scheduler however many are started.

Services register periodic jobs with :func:`register_periodic` in their ``init_app``.
The scheduler does not run them itself: when one is due it enqueues it on its RQ queue
for the workers. Leadership is a Redis key (``SET NX PX``) that the active scheduler
renews; a second scheduler waits as a standby and takes over when the key expires.
A job's due slot is recorded in Redis with the enqueue, so a leader change never runs
one slot twice.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import structlog
from flask import Flask

from hub.queues import PERIODIC_DESCRIPTION_PREFIX, PERIODIC_JOB_PREFIX, queue

log = structlog.get_logger("hub.scheduler")

_JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
LEADER_KEY = "rop:scheduler:leader"
SLOT_KEY = "rop:scheduler:slot:{name}"

# Renew the lease only if we still hold it; give it up only if it is ours.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
_CLAIM = (
    "local p = redis.call('get', KEYS[1]) "
    "if p and tonumber(p) >= tonumber(ARGV[1]) then return 0 end "
    "redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1"
)
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


@dataclass(frozen=True)
class PeriodicJob:
    """A job enqueued every ``every`` seconds.

    :param name: unique name, shown in logs.
    :param func: an importable function (``module.function``) run by a worker inside the app context.
    :param every: the period in seconds.
    :param queue: the queue it goes to.
    :param timeout: RQ's job timeout in seconds.
    """

    name: str
    func: str
    every: float
    queue: str = "default"
    timeout: int = 600


def register_periodic(app: Flask, job: PeriodicJob) -> None:
    """Add ``job`` to the app's periodic jobs (replacing one of the same name)."""
    jobs: dict[str, PeriodicJob] = app.extensions["rop"].extras.setdefault("periodic", {})
    jobs[job.name] = job


def periodic_jobs(app: Flask) -> list[PeriodicJob]:
    return list(app.extensions["rop"].extras.get("periodic", {}).values())


class Scheduler:
    """The scheduler loop of one process."""

    def __init__(self, app: Flask, *, lease_seconds: float = 15.0, tick: float = 1.0):
        self.app = app
        self.redis = app.extensions["rop"].redis
        self.lease_ms = int(lease_seconds * 1000)
        self.tick = tick
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self.is_leader = False

    def try_lead(self) -> bool:
        """Take or renew the leader lease; return whether this process leads."""
        if self.is_leader:
            self.is_leader = bool(self.redis.eval(_RENEW, 1, LEADER_KEY, self.token, self.lease_ms))
            if not self.is_leader:
                log.warning("scheduler lost leadership", token=self.token)
        else:
            self.is_leader = bool(self.redis.set(LEADER_KEY, self.token, nx=True, px=self.lease_ms))
            if self.is_leader:
                log.info("scheduler leads", token=self.token)
        return self.is_leader

    def run_due(self, now: float | None = None) -> list[str]:
        """Enqueue every job whose current slot has not been enqueued yet; return their names."""
        now = time.time() if now is None else now
        enqueued = []
        for job in periodic_jobs(self.app):
            slot = int(now // job.every)
            key = SLOT_KEY.format(name=job.name)
            # Claim the slot atomically: a racing or newly elected leader cannot claim it again.
            if not self.redis.eval(_CLAIM, 1, key, slot, max(int(job.every * 3), 60)):
                continue
            queue(job.queue, self.redis).enqueue(
                job.func, job_id=f"{PERIODIC_JOB_PREFIX}{_JOB_ID_UNSAFE.sub('_', job.name)}-{slot}", job_timeout=job.timeout,
                result_ttl=3600, failure_ttl=86400, description=f"{PERIODIC_DESCRIPTION_PREFIX}{job.name}",
            )
            enqueued.append(job.name)
        if enqueued:  # routine, every few seconds: DEBUG (ROP_LOG_LEVEL=DEBUG shows it)
            log.debug("periodic jobs enqueued", jobs=enqueued)
        return enqueued

    def stop(self, *_args) -> None:
        self.stopping.set()

    def run(self, install_signals: bool = True) -> None:
        """Loop until stopped (SIGINT or SIGTERM), leading when the lease is free."""
        if install_signals:
            signal.signal(signal.SIGTERM, self.stop)
            signal.signal(signal.SIGINT, self.stop)
        log.info("scheduler started", jobs=[j.name for j in periodic_jobs(self.app)], token=self.token)
        try:
            while not self.stopping.is_set():
                try:
                    if self.try_lead():
                        self.run_due()
                except Exception:  # Redis down: keep trying; the lease lapses meanwhile
                    self.is_leader = False
                    log.exception("scheduler tick failed")
                self.stopping.wait(self.tick)
        finally:
            try:
                self.redis.eval(_RELEASE, 1, LEADER_KEY, self.token)
            except Exception:
                pass
            log.info("scheduler stopped", token=self.token)

