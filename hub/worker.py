"""``rop worker``: RQ workers that run every job inside the hub's app context.

Two worker classes:

- :class:`HubWorker` (``rop worker``, the default): :class:`rq.SimpleWorker`, one job at a
  time in the worker process. RQ's forking ``Worker`` pays a fork per job (measured: ~100
  jobs/s against ~260 for the simple worker); the hub's jobs are short, idempotent and run
  their own unit of work, so the isolation a fork buys is not worth it.
- :class:`HubThreadWorker` (``rop worker --threads N``): up to N jobs at once, each in a
  thread of one process. For the ``provider`` queue, whose jobs spend 100 ms – 30 s waiting
  on a provider's socket (the GIL is released meanwhile), so one process keeps N calls in
  flight instead of one.

The thread worker keeps RQ's bookkeeping per job (one RQ execution per running job, the
started/finished/failed registries, retries, dependents) by running RQ's own
``perform_job`` in each thread; what it adds is the dispatch loop (dequeue only when a thread
is free), one heartbeat thread for the worker and all running executions, job timeouts that
work outside the main thread (:class:`ThreadDeathPenalty`), and a graceful stop
(SIGTERM/SIGINT: finish the running jobs, take no new ones; a second signal exits at once and
leaves the running jobs to the started-job cleanup of the bus sweep).

Both run RQ's scheduler (which puts a failed job's retry back on its queue once its delay is
over) in a thread, not in the process RQ forks for it: that process died at the first Redis
error and was started again only every 10 minutes.

Both park what they dequeue (:class:`ParkingMixin`): RQ's multi-queue dequeue pops a job off
its queue and keeps no copy until the job is in the started-job registry, so a worker killed
in between lost the job (the outbox had already counted it relayed). Here a job is always in
exactly one place: its queue, one worker's parked list (moved there atomically by the
dequeue), or RQ's started-job registry (moved there atomically by the start); the bus sweep
hands the parked jobs of a dead worker back to their queues (:func:`hand_back_parked`).
"""
from __future__ import annotations

import ctypes
import heapq
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from flask import Flask
from rq import Queue, SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.executions import Execution
from rq.scheduler import RQScheduler
from rq.timeouts import BaseDeathPenalty, JobTimeoutException
from rq.utils import as_text, now
from rq.worker import DequeueStrategy, WorkerStatus

from hub.availability import REDIS_ERRORS
from hub.queues import (
    PERIODIC_DESCRIPTION_PREFIX,
    PERIODIC_JOB_PREFIX,
    QUEUES,
    HubJob,
    queue,
    with_lanes,
)
from hub.state import HubState

#: How long the worker's command-channel thread blocks waiting for a message (seconds). RQ
#: subscribes with ``sleep_time=60``; from redis-py 8.2 on, ``PubSubWorkerThread.stop()`` joins
#: the thread, which after ``unsubscribe()`` sits out its whole wait: every worker teardown took
#: up to 60 s. A short poll bounds a stop by this much, whatever the redis-py and rq versions.
COMMAND_POLL_SECONDS = 0.5

# -- parking: a dequeued job is never lost -------------------------------------------------------
#: A worker's parked jobs of one queue: dequeued (atomically moved here), not started yet.
PARKED_KEY = "rop:parked:{queue}:{worker}"
#: Sorted set: worker name → until when its parked jobs are its own (unix time). Every dequeue
#: extends it by :data:`PARK_LEASE_SECONDS`; a job is parked for the moment between its dequeue
#: and its start, so only a dead (or stalled) worker lets it lapse.
PARK_LEASES_KEY = "rop:parked-leases"
#: How long a worker's parked jobs stay its own after its last dequeue (seconds). The sweep
#: hands back the parked jobs of a worker whose lease lapsed; if that worker was only stalled,
#: its start finds the job gone and skips it (the job runs once, elsewhere).
PARK_LEASE_SECONDS = 30.0
#: A worker of several queues, idle: how long it blocks on its first queue before it looks at
#: all of them again (Redis blocks on one list only when the pop must also park: BLMOVE).
MULTI_QUEUE_WAIT = 0.1


def parked_key(queue_name: str, worker_name: str) -> str:
    return PARKED_KEY.format(queue=queue_name, worker=worker_name)


# Move up to ARGV[1] job ids from each queue KEYS[i] to its parked list KEYS[i+1], in priority
# order, and extend the worker's lease (ARGV[2] name, ARGV[3] until). Returns [queue key, id, …].
_TAKE = """
local want = tonumber(ARGV[1])
local out = {}
for i = 2, #KEYS, 2 do
  while #out < 2 * want do
    local id = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
    if not id then break end
    out[#out + 1] = KEYS[i]
    out[#out + 1] = id
  end
  if #out >= 2 * want then break end
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return out
"""

# Hand back the parked jobs of the workers whose lease ended at or before ARGV[1] (and of the
# worker ARGV[2], whatever its lease; '' for none) to the head of their queues, in their order.
# ARGV[3]: RQ's queue key prefix; ARGV[4…]: the queue names. Returns how many jobs moved.
_HAND_BACK = """
local workers = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if ARGV[2] ~= '' then workers[#workers + 1] = ARGV[2] end
local moved = 0
for _, worker in ipairs(workers) do
  for i = 4, #ARGV do
    local parked = 'rop:parked:' .. ARGV[i] .. ':' .. worker
    while redis.call('LMOVE', parked, ARGV[3] .. ARGV[i], 'RIGHT', 'LEFT') do
      moved = moved + 1
    end
  end
  redis.call('ZREM', KEYS[1], worker)
end
return moved
"""


def hand_back_parked(connection, before: float | None = None, worker_name: str | None = None) -> int:
    """Put the parked jobs of dead workers back at the head of their queues; return how many.

    :param before: a worker whose lease ended at or before this time (unix; default: now) is
        dead. The bus sweep calls this every 5 s (``hub.bus.outbox.sweep``).
    :param worker_name: also this worker's, whatever its lease (a worker stopping hands back
        its own).
    """
    cutoff = time.time() if before is None else before
    moved = connection.register_script(_HAND_BACK)(
        keys=[PARK_LEASES_KEY], args=[repr(cutoff), worker_name or "", Queue.redis_queue_namespace_prefix, *QUEUES])
    return int(moved or 0)


class ParkingMixin:
    """Dequeue by parking, start by unparking: no moment where a job is nowhere.

    :meth:`take_jobs` moves jobs from the worker's queues to its parked lists (one Lua script,
    or BLMOVE when it blocks); :meth:`claim` takes each out of its parked list in the same
    MULTI/EXEC that registers its RQ execution (the started-job registry). A job the sweep
    handed back meanwhile (the worker's lease lapsed) is no longer parked there: the claim
    finds nothing to remove, undoes the execution and skips the job, so it never runs twice
    at once.
    """

    def on_parked(self, taken: list[tuple]) -> None:
        """Called with the jobs just parked, before they start. Nothing by default; a test
        pauses a worker process here to kill it in that window."""

    def _lease_until(self) -> float:
        return time.time() + PARK_LEASE_SECONDS

    def take_jobs(self, count: int, wait: float | None) -> list[tuple]:
        """Up to ``count`` (job, queue) pairs, in queue priority order, each parked.

        :param wait: None: what is there now; else block up to that many seconds for one.
        """
        queues = list(self._ordered_queues)
        parked = [parked_key(q.name, self.name) for q in queues]
        keys = [PARK_LEASES_KEY]
        for q, p in zip(queues, parked):
            keys += [q.key, p]
        take = self.connection.register_script(_TAKE)
        deadline = None if wait is None else time.monotonic() + wait
        while True:
            popped = take(keys=keys, args=[count, self.name, repr(self._lease_until())])
            pairs = [(as_text(popped[i]), as_text(popped[i + 1])) for i in range(0, len(popped), 2)]
            if pairs or deadline is None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            block = left if len(queues) == 1 else min(left, MULTI_QUEUE_WAIT)
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.zadd(PARK_LEASES_KEY, {self.name: self._lease_until() + block})
                pipe.blmove(queues[0].key, parked[0], max(block, 0.01), "LEFT", "RIGHT")
                job_id = pipe.execute()[1]
            if job_id is not None:
                pairs = [(queues[0].key, as_text(job_id))]
                break
        by_key = {q.key: q for q in queues}
        jobs = self._fetch_jobs([job_id for _, job_id in pairs])
        taken = []
        gone = []
        for (queue_key, job_id), job in zip(pairs, jobs):
            if job is None:  # deleted since it was enqueued (RQ skips these too)
                gone.append((by_key[queue_key], job_id))
                continue
            job.redis_server_version = self.get_redis_server_version()
            taken.append((job, by_key[queue_key]))
        if gone:
            with self.connection.pipeline(transaction=False) as pipe:
                for q, job_id in gone:
                    pipe.lrem(parked_key(q.name, self.name), 1, job_id)
                pipe.execute()
        return taken

    def _fetch_jobs(self, ids: list[str]) -> list:
        try:
            return self.job_class.fetch_many(ids, connection=self.connection, serializer=self.serializer)
        except Exception:  # noqa: BLE001 - one job that cannot be loaded: load one by one, skip it
            jobs = []
            for job_id in ids:
                try:
                    jobs.append(self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer))
                except Exception:
                    self.log.exception("Worker %s: job %s cannot be loaded; skipped", self.name, job_id)
                    jobs.append(None)
            return jobs

    def claim(self, taken: list[tuple]) -> list[tuple]:
        """Start ``taken``: unpark each job and register its RQ execution in one MULTI/EXEC.

        :return: (job, queue, execution) of the jobs still parked here; the others were handed
            back by the sweep (this worker's lease lapsed) and are skipped.
        """
        with self.connection.pipeline() as pipe:
            marks = []  # (where the job's LREM answers in the pipeline, its execution)
            for job, job_queue in taken:
                at = len(pipe)
                pipe.lrem(parked_key(job_queue.name, self.name), 1, job.id)
                marks.append((at, Execution.create(job, self.get_heartbeat_ttl(job), pipeline=pipe,
                                                   worker_name=self.name)))
            self.set_state(WorkerStatus.BUSY, pipeline=pipe)
            results = pipe.execute()
        claimed, lost = [], []
        for (job, job_queue), (at, execution) in zip(taken, marks):
            (claimed if results[at] else lost).append((job, job_queue, execution))
        if lost:
            with self.connection.pipeline() as pipe:
                for job, _queue, execution in lost:
                    execution.delete(job, pipe)
                pipe.execute()
            for job, _queue, _execution in lost:
                self.log.warning("Worker %s: job %s was handed back while parked here (lease lapsed); "
                                 "skipped: it runs elsewhere", self.name, job.id)
        return claimed

    def hand_back_own(self) -> None:
        """A worker stopping: its parked jobs (none, unless a dequeue and its start were cut by
        an error) go back to their queues."""
        try:
            hand_back_parked(self.connection, before=0, worker_name=self.name)
        except REDIS_ERRORS:
            self.log.warning("Worker %s: could not hand back its parked jobs; the sweep will", self.name)


_PERIODIC = (PERIODIC_JOB_PREFIX, PERIODIC_DESCRIPTION_PREFIX)


class _PeriodicAtDebug(logging.LoggerAdapter):
    """RQ's per-job INFO lines (dequeued, "Job OK", result kept) of the scheduler's routine
    periodic jobs go to DEBUG: a handful of jobs every few seconds would otherwise fill the
    log (and push ``make run``'s demo credentials off the screen). Other jobs' lines, and
    every warning and error, are unchanged."""

    def log(self, level, msg, *args, **kwargs):
        if level == logging.INFO and any(isinstance(a, str) and a.startswith(_PERIODIC) for a in args):
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)

    def info(self, msg, *args, **kwargs):
        self.log(logging.INFO, msg, *args, **kwargs)

    def process(self, msg, kwargs):
        return msg, kwargs  # keep RQ's own ``extra`` (the default adapter would replace it)

    @property
    def level(self) -> int:
        return self.logger.level


class HubWorker(ParkingMixin, SimpleWorker):
    """A SimpleWorker that pushes the hub's app context around each job (and parks what it
    dequeues: :class:`ParkingMixin`)."""

    flask_app: Flask | None = None
    job_class = HubJob

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._running: dict[str, tuple] = {}  # execution id -> (job, execution)
        self._beat_stop = threading.Event()
        self._beat_thread: threading.Thread | None = None
        self._scheduler_stop = threading.Event()
        self._scheduler_thread: threading.Thread | None = None
        self.log = _PeriodicAtDebug(self.log)

    def bootstrap(self, *args, **kwargs):
        """RQ's start, then the heartbeat thread (it extends the running jobs' leases)."""
        super().bootstrap(*args, **kwargs)
        self._beat_stop.clear()
        self._beat_thread = threading.Thread(target=self._heartbeat_loop, name="rop-worker-heartbeat", daemon=True)
        self._beat_thread.start()

    def _stop_beating(self) -> None:
        self._beat_stop.set()
        if self._beat_thread is not None:
            self._beat_thread.join(5)
            self._beat_thread = None

    # RQ's SimpleWorker assumes no heartbeat during a job (timeout + 60 s: a SIGKILLed worker's
    # job came back after 6 minutes); ours beats every job_monitoring_interval, so an abandoned
    # job is noticed after ~90 s, as with a forking worker.
    # A job past its timeout (stuck in a C call the watchdog cannot interrupt) keeps a positive
    # lease while its thread lives: a non-positive TTL would delete the execution and let the
    # sweep hand the job to another worker while it still runs.
    def get_heartbeat_ttl(self, job, working_time: float = 0.0) -> int:
        if job.timeout and job.timeout > 0:
            return int(min(max(job.timeout - working_time, 0), self.job_monitoring_interval)) + 60
        return self.job_monitoring_interval + 60

    # -- heartbeats ------------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        interval = max(1, min(self.job_monitoring_interval, self.worker_ttl // 3))
        while not self._beat_stop.wait(interval):
            try:
                self.beat()
            except Exception:
                self.log.warning("Worker %s: heartbeat failed", self.name, exc_info=True)

    def beat(self) -> None:
        """Extend the worker's key and every running execution's lease in one round trip."""
        running = list(self._running.values())
        with self.connection.pipeline() as pipe:
            self.heartbeat(pipeline=pipe)
            marks = []
            for job, execution in running:
                working = (now() - job.started_at).total_seconds() if job.started_at else 0.0
                ttl = int(self.get_heartbeat_ttl(job, working))
                at = len(pipe)
                execution.heartbeat(job.started_job_registry, ttl, pipeline=pipe)
                marks.append((at, execution.key))
                at = len(pipe)
                job.heartbeat(now(), ttl, pipeline=pipe, xx=True)
                marks.append((at, job.key))
            results = pipe.execute()
            # An execution or job that ended meanwhile was just recreated by HSET (it returns 1
            # for a new field): delete it again (RQ does the same, rq/rq#1450).
            stale = [key for at, key in marks if results[at] == 1]
            if stale:
                pipe.delete(*stale)
                pipe.execute()

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None):
        """RQ's loop (heartbeat, maintenance, retry while Redis is away), dequeuing by parking.

        :param timeout: None: what is there now (burst); else block up to that many seconds
            at a time. :return: (job, queue), or None (burst and empty, or idle too long).
        """
        try:
            self.set_state(WorkerStatus.IDLE)
        except REDIS_ERRORS:
            pass  # Redis away: the loop below waits for it
        self.procline("Listening on " + ",".join(self.queue_names()))
        connection_wait_time = 1.0
        idle_since = time.monotonic()
        result = None
        while True:
            try:
                self.heartbeat()
                if self.should_run_maintenance_tasks:
                    self.run_maintenance_tasks()
                wait = timeout
                if wait is not None and max_idle_time is not None:
                    wait = max(0.0, min(wait, max_idle_time - (time.monotonic() - idle_since)))
                taken = self.take_jobs(1, wait)
                if taken:
                    result = taken[0]
                    job, job_queue = result
                    self.reorder_queues(reference_queue=job_queue)
                    self.log.info("Worker %s: %s: %s (%s)", self.name, job_queue.name, job.description, job.id)
                    break
                if timeout is None:
                    break
                if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                    break
            except REDIS_ERRORS as conn_err:
                self.log.error("Worker %s: could not connect to Redis instance: %s retrying in %d seconds...",
                               self.name, conn_err, connection_wait_time)
                time.sleep(connection_wait_time)
                connection_wait_time = min(connection_wait_time * self.exponential_backoff_factor,
                                           self.max_connection_wait_time)
        self.heartbeat()
        return result

    # RQ's work loop ends the worker at any error around a job but the dequeue's (which waits
    # for Redis and retries): a Redis outage at a job's end, at the heartbeat after it, at the
    # suspension check or at the maintenance would stop the process. Each of these leaves the
    # outage to the dequeue loop instead; a job whose end could not be recorded is handed back
    # by the sweep once its lease lapses, as if its worker had died.
    def heartbeat(self, timeout: int | None = None, pipeline=None):
        if pipeline is not None:  # queued in the caller's pipeline: its execute() raises
            return super().heartbeat(timeout, pipeline)
        try:
            return super().heartbeat(timeout)
        except REDIS_ERRORS as exc:
            self.log.warning("Worker %s: heartbeat not sent, Redis unreachable (%s)", self.name, exc)
            return None

    def check_for_suspension(self, burst: bool) -> None:
        try:
            super().check_for_suspension(burst)
        except REDIS_ERRORS as exc:
            self.log.warning("Worker %s: suspension not checked, Redis unreachable (%s)", self.name, exc)

    def execute_job(self, job, queue):
        try:
            self._execute_parked(job, queue)
        except REDIS_ERRORS as exc:
            self.log.error("Worker %s: job %s ran, its end not recorded: Redis unreachable (%s); the sweep "
                           "hands it back when its lease lapses", self.name, job.id, exc)

    def _execute_parked(self, job, queue):
        """Start the parked job (unless the sweep handed it back meanwhile), run it here."""
        self.on_parked([(job, queue)])
        # Busy from here (RQ's SIGTERM handler raises StopRequested in an idle worker): a stop
        # must not cut in between the claim's EXEC and the job's run, when the job is neither
        # parked nor started (RQ's cleanup of the started registry skips a job not STARTED).
        self._state = WorkerStatus.BUSY
        claimed = self.claim([(job, queue)])
        if claimed:
            execution = claimed[0][2]
            self.executions[execution.id] = execution
            self._running[execution.id] = (job, execution)
            try:
                self.perform_job(job, queue, execution)
            finally:
                self._running.pop(execution.id, None)
        self.set_state(WorkerStatus.IDLE)

    def teardown(self):
        self._stop_beating()
        self.hand_back_own()
        super().teardown()

    def subscribe(self):
        """Listen on this worker's command channel (RQ's ``rq worker`` commands: stop, kill).

        RQ's own version, with a poll of :data:`COMMAND_POLL_SECONDS` instead of 60 s.
        """
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=COMMAND_POLL_SECONDS, daemon=True, exception_handler=self._command_channel_failed)

    def _command_channel_failed(self, exc: BaseException, pubsub, thread) -> None:
        """The command thread's exception handler: retry after a Redis outage, else stop."""
        if isinstance(exc, REDIS_ERRORS):
            self.log.warning("Worker %s: command channel lost (%s); retrying", self.name, exc)
            time.sleep(COMMAND_POLL_SECONDS)
            return
        self.log.warning("Worker %s: command channel thread exiting on %r", self.name, exc)
        thread.stop()

    def unsubscribe(self):
        """Stop the command thread first (it wakes within :data:`COMMAND_POLL_SECONDS`), then
        unsubscribe and close: no read of the socket races the close."""
        thread, pubsub = self.pubsub_thread, self.pubsub
        if thread is None or pubsub is None:
            return
        self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
        thread.stop()
        thread.join(timeout=2 * COMMAND_POLL_SECONDS + 1)
        try:
            pubsub.unsubscribe()
        except REDIS_ERRORS:
            pass  # the connection is gone: nothing to unsubscribe
        pubsub.close()

    # -- RQ's scheduler (scheduled retries), in a thread ------------------------------------------
    # RQ forks its scheduler into a process of its own, which dies at the first Redis error and
    # is started again only by the worker's maintenance, every 10 minutes: meanwhile no retry of
    # this worker's queues ran (the fault suite lost a refund so, its callback's handler retried
    # after a Redis restart). A thread survives Redis errors (its round is tried again) and is
    # no fork of a threaded process.
    def _start_scheduler(self, burst: bool = False, logging_level: str | None = "INFO",
                         date_format: str = DEFAULT_LOGGING_DATE_FORMAT, log_format: str = DEFAULT_LOGGING_FORMAT):
        if burst:
            return super()._start_scheduler(True, logging_level, date_format, log_format)
        self.scheduler = RQScheduler(self.queues, connection=self.connection, serializer=self.serializer,
                                     logging_level=logging_level if logging_level is not None else self.log.level,
                                     date_format=date_format, log_format=log_format)
        self._scheduler_thread = threading.Thread(target=self._scheduler_loop, name="rop-rq-scheduler", daemon=True)
        self._scheduler_thread.start()

    def _scheduler_loop(self) -> None:
        scheduler = self.scheduler
        try:
            scheduler.acquire_locks()
            scheduler.register_birth()
        except Exception:
            self.log.warning("Worker %s: RQ scheduler could not start", self.name, exc_info=True)
        wait = 0.0
        while not self._scheduler_stop.wait(wait):
            wait = scheduler.interval
            try:
                # A queue whose lock another scheduler holds is asked for again every round, not
                # after RQ's 2 minutes: the lock of a worker killed with its scheduler lapses
                # (60 s) with nobody else waiting for it.
                if set(self.queue_names()) - scheduler.acquired_locks:
                    scheduler.acquire_locks()
                scheduler.heartbeat()
                if scheduler.acquired_locks:
                    scheduler.enqueue_scheduled_jobs()
            except Exception:
                self.log.warning("Worker %s: RQ scheduler round failed", self.name, exc_info=True)
        try:
            scheduler.stop()
        except Exception:
            self.log.warning("Worker %s: RQ scheduler did not stop cleanly", self.name, exc_info=True)

    def _stop_scheduler_thread(self, join: bool = True) -> None:
        self._scheduler_stop.set()
        if join and self._scheduler_thread is not None:
            self._scheduler_thread.join(10)

    def stop_scheduler(self):  # RQ's teardown calls it for its forked scheduler process
        self._stop_scheduler_thread()

    def run_maintenance_tasks(self):
        # RQ's version restarts a dead scheduler *process* (a fork); ours is a thread.
        try:
            self.clean_registries()
            self.clean_group_registries()
        except REDIS_ERRORS as exc:
            self.log.warning("Worker %s: maintenance skipped, Redis unreachable (%s)", self.name, exc)

    def perform_job(self, *args, **kwargs):
        app = self.flask_app
        if app is None:
            return super().perform_job(*args, **kwargs)
        with app.app_context():
            return super().perform_job(*args, **kwargs)


# -- job timeouts in threads -------------------------------------------------------------------
class _Watchdog:
    """One thread that raises a timeout exception in job threads whose deadline passed."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.heap: list[tuple[float, int]] = []
        self.entries: dict[int, tuple[int, type[BaseException]]] = {}  # token -> (thread id, exception)
        self.fired: set[int] = set()
        self.counter = itertools.count()
        self.pid = os.getpid()
        threading.Thread(target=self._run, name="rop-job-watchdog", daemon=True).start()

    def add(self, deadline: float, thread_id: int, exception: type[BaseException]) -> int:
        with self.lock:
            token = next(self.counter)
            self.entries[token] = (thread_id, exception)
            heapq.heappush(self.heap, (deadline, token))
            self.lock.notify()
            return token

    def cancel(self, token: int) -> None:
        with self.lock:
            entry = self.entries.pop(token, None)
            if token in self.fired:
                self.fired.discard(token)
                if entry is not None:
                    # Fired just as the job ended: clear the exception if it is still pending.
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(entry[0]), None)

    def _run(self) -> None:
        with self.lock:
            while True:
                while self.heap and self.heap[0][1] not in self.entries:
                    heapq.heappop(self.heap)
                if not self.heap:
                    self.lock.wait()
                    continue
                deadline, token = self.heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self.lock.wait(left)
                    continue
                heapq.heappop(self.heap)
                thread_id, exception = self.entries[token]
                self.fired.add(token)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exception))


_WATCHDOG: _Watchdog | None = None
_WATCHDOG_LOCK = threading.Lock()


def _watchdog() -> _Watchdog:
    global _WATCHDOG
    with _WATCHDOG_LOCK:
        if _WATCHDOG is None or _WATCHDOG.pid != os.getpid():
            _WATCHDOG = _Watchdog()
        return _WATCHDOG


class ThreadDeathPenalty(BaseDeathPenalty):
    """RQ's job timeout for jobs run in any thread (RQ's default uses SIGALRM: main thread only).

    When the job's time is up, the exception is raised in the job's thread asynchronously: it
    takes effect when that thread next runs Python code, not inside a blocking C call (a
    socket read without a timeout). It is a safety net; calls must carry their own timeouts.
    """

    def __init__(self, timeout, exception=JobTimeoutException, **kwargs):
        message = f"Task exceeded maximum timeout value ({timeout} seconds)"
        # PyThreadState_SetAsyncExc takes a class: bake the message into a subclass.
        timed_out = type(exception.__name__, (exception,),
                         {"__init__": lambda self, *args: exception.__init__(self, message),
                          "__module__": exception.__module__})
        super().__init__(timeout, timed_out, **kwargs)
        self._thread_id = threading.get_ident()
        self._token: int | None = None

    def setup_death_penalty(self):
        if self._timeout and self._timeout > 0:
            self._token = _watchdog().add(time.monotonic() + self._timeout, self._thread_id, self._exception)

    def cancel_death_penalty(self):
        if self._token is not None:
            token, self._token = self._token, None
            _watchdog().cancel(token)


# -- the thread worker ---------------------------------------------------------------------------
class _PerJobAtDebug(logging.LoggerAdapter):
    """RQ logs three or four INFO lines per job; at hundreds of jobs a second they cost CPU and
    say nothing a metric would not: the thread worker sends RQ's INFO lines to DEBUG (warnings
    and errors unchanged; the worker's own start/stop lines stay INFO)."""

    def info(self, msg, *args, **kwargs):
        self.debug(msg, *args, **kwargs)

    def process(self, msg, kwargs):
        return msg, kwargs  # keep RQ's own ``extra`` (the default adapter would replace it)

    @property
    def level(self) -> int:
        return self.logger.level


class HubThreadWorker(HubWorker):
    """Runs up to ``threads`` jobs of its queues at once, each in a thread with the app context.

    A job is dequeued only when a thread is free, so jobs wait in Redis (where another worker
    can take them), not in this process.
    """

    death_penalty_class = ThreadDeathPenalty

    def __init__(self, queues, *args, threads: int = 8, **kwargs):
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        super().__init__(queues, *args, **kwargs)
        self.threads = threads
        #: How long the dispatcher blocks on an empty queue (bounds how late a stop is noticed).
        self.poll_seconds = 1
        #: Most jobs taken from Redis in one round trip (when that many threads are free).
        self.batch_size = 64
        self._free = threading.Semaphore(threads)
        self._changed = threading.Condition()
        self._cold_stop = False

    @property
    def _logger(self) -> logging.Logger:
        return getattr(self.log, "logger", self.log)

    @property
    def running(self) -> int:
        """How many jobs run right now."""
        return len(self._running)

    def work(self, burst: bool = False, logging_level: str | None = None,
             date_format: str = DEFAULT_LOGGING_DATE_FORMAT, log_format: str = DEFAULT_LOGGING_FORMAT,
             max_jobs: int | None = None, max_idle_time: int | None = None, with_scheduler: bool = False,
             dequeue_strategy: DequeueStrategy = DequeueStrategy.DEFAULT) -> bool:
        """Serve the queues until stopped (or, with ``burst``, until they are empty and idle).

        :return: whether any job was started.
        """
        self.bootstrap(logging_level, date_format, log_format)
        self.log = _PerJobAtDebug(self.log)
        self._dequeue_strategy = dequeue_strategy
        if with_scheduler:
            self._start_scheduler(burst, logging_level, date_format, log_format)
        self._install_signal_handlers()
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix=f"rq-{self.name[:8]}")
        started = 0
        looked_after_last_job = False
        idle_since = time.monotonic()
        backoff = 1.0
        self._logger.info("Worker %s: %d threads", self.name, self.threads)
        try:
            while True:
                try:
                    self.check_for_suspension(burst)
                    if self.should_run_maintenance_tasks:
                        self.run_maintenance_tasks()
                    if self._stop_requested:
                        self._logger.info("Worker %s: stopping on request", self.name)
                        break
                    if max_jobs is not None and started >= max_jobs:
                        self._logger.info("Worker %s: started %d jobs, quitting", self.name, started)
                        break
                    if not self._free.acquire(timeout=self.poll_seconds):
                        continue  # every thread busy: look at the stop flag again
                    slots = 1  # take every free thread at once: one round trip dequeues them all
                    limit = self.batch_size if max_jobs is None else min(self.batch_size, max_jobs - started)
                    while slots < limit and self._free.acquire(blocking=False):
                        slots += 1
                    try:
                        batch = self._dequeue_batch(slots, burst)
                    except BaseException:
                        self._release(slots)
                        raise
                    self._release(slots - len(batch))
                    backoff = 1.0
                    if not batch:
                        if self._running:
                            idle_since = time.monotonic()
                            looked_after_last_job = False
                            if burst:  # a running job may still requeue itself (retry)
                                self._wait_for_change(self.poll_seconds)
                            continue
                        if burst:
                            if not looked_after_last_job:
                                # The last job may have ended between the look-up and now, after
                                # requeueing itself (an immediate retry): look once more.
                                looked_after_last_job = True
                                continue
                            self._logger.info("Worker %s: done, quitting", self.name)
                            break
                        if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                            self._logger.info("Worker %s: idle for %d seconds, quitting", self.name, max_idle_time)
                            break
                        self._set_idle_if_nothing_runs()
                        continue
                    self._start(pool, batch)
                    started += len(batch)
                except REDIS_ERRORS as exc:
                    self.log.error("Worker %s: Redis unavailable (%s); retrying in %.0f s", self.name, exc, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.max_connection_wait_time)
        finally:
            self._stop_requested = True
            if self._running:
                self._logger.info("Worker %s: waiting for %d running job(s) to finish", self.name, len(self._running))
            pool.shutdown(wait=True)
            self._stop_beating()
            self._stop_scheduler_thread()
            self.teardown()
        return bool(started)

    def _release(self, slots: int) -> None:
        for _ in range(slots):
            self._free.release()

    def _dequeue_batch(self, count: int, burst: bool) -> list[tuple]:
        """Up to ``count`` jobs, in queue priority order, parked: what is there at once (one
        round trip), else (not in burst mode) the next one within :attr:`poll_seconds`."""
        return self.take_jobs(count, None if burst else self.poll_seconds)

    def _start(self, pool: ThreadPoolExecutor, batch: list[tuple]) -> None:
        """Claim the parked jobs (their RQ executions, one MULTI/EXEC), then run each in a thread."""
        self.on_parked(batch)
        try:
            claimed = self.claim(batch)
        except BaseException:
            self._release(len(batch))
            raise
        self._release(len(batch) - len(claimed))
        for job, job_queue, execution in claimed:
            self.executions[execution.id] = execution
            self._running[execution.id] = (job, execution)
            self.log.debug("Worker %s: %s: %s (%s)", self.name, job_queue.name, job.description, job.id)
            pool.submit(self._run_job, job, job_queue, execution)

    def _run_job(self, job, job_queue, execution) -> None:
        try:
            self.perform_job(job, job_queue, execution)
        except BaseException:  # RQ's perform_job handles the job's own errors; this is its bookkeeping
            self.log.exception("Worker %s: bookkeeping of job %s failed", self.name, job.id)
        finally:
            self._running.pop(execution.id, None)
            self.executions.pop(execution.id, None)
            self._free.release()
            with self._changed:
                self._changed.notify_all()

    def _wait_for_change(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)

    def _set_idle_if_nothing_runs(self) -> None:
        if not self._running and self.get_state() != WorkerStatus.IDLE:
            self.set_state(WorkerStatus.IDLE)

    # -- stopping --------------------------------------------------------------------------------
    def request_stop(self, signum, frame):
        """First SIGTERM/SIGINT: finish the running jobs, take no new ones.

        Only flags: the main loop notices within :attr:`poll_seconds` (a signal handler must not
        touch Redis: it may interrupt the main thread inside the connection pool's lock).
        """
        self._shutdown_requested_date = now()
        self._stop_requested = True
        signal.signal(signal.SIGINT, self.request_force_stop)
        signal.signal(signal.SIGTERM, self.request_force_stop)
        self._logger.info("Worker %s: warm shut down requested; finishing %d running job(s)", self.name,
                      len(self._running))

    def request_force_stop(self, signum, frame):
        """Second signal: exit now. Running jobs are abandoned; the bus sweep hands them back once
        their heartbeat lapses (about 90 s), and their handlers run again (idempotent)."""
        if self._shutdown_requested_date and (now() - self._shutdown_requested_date).total_seconds() < 1:
            return  # the same Ctrl-C delivered twice
        if self._cold_stop:
            return
        self._cold_stop = True
        self.log.warning("Worker %s: cold shut down; abandoning %d running job(s)", self.name, len(self._running))
        # Not from the handler itself: it may have interrupted this thread inside a lock that
        # register_death needs (the Redis pool's). Job threads are not daemons, so only
        # os._exit leaves them behind; the timer is the backstop if Redis does not answer.
        threading.Thread(target=self._exit_now, name="rop-cold-stop", daemon=True).start()
        threading.Timer(5, os._exit, args=(1,)).start()

    def _exit_now(self) -> None:
        try:
            self._scheduler_stop.set()
            self.hand_back_own()
            self.register_death()
        except Exception:
            self.log.warning("Worker %s: could not register its death", self.name, exc_info=True)
        finally:
            os._exit(1)

#: How long a job thread of a thread worker waits for a database connection (seconds).
DB_POOL_WAIT = 300

#: Database connections of a thread worker (``rop worker --db-connections``): how many of its
#: jobs are inside a unit of work at once.
DB_CONNECTIONS = 4


def size_pools_for_threads(state: HubState, threads: int, db_connections: int = DB_CONNECTIONS) -> None:
    """Let ``threads`` jobs share the app's Redis and database pools.

    Redis: redis-py's pool refuses a connection past ``max_connections`` (100 by default)
    instead of waiting, so it grows to two per thread plus the worker's own (dispatcher,
    heartbeats, lease keeper, pubsub). Database: ``db_connections`` connections, no overflow;
    a thread waits for one, up to ``DB_POOL_WAIT`` seconds (SQLAlchemy's default of 30 s
    turned a busy moment into failed jobs: a wait for a connection is queueing, not an
    error). That is only right because handlers hold a connection for a short unit of work,
    never across a provider call (the ``own_uow`` contract, docs/bus.md).

    Why so few: the jobs' Python runs under one GIL, so more units of work at once do not
    make more progress, they only take longer each — and each holds its row locks (a
    tenant's wallet row, under a capture) for as long as it takes, while that tenant's
    purchases queue on them. With the Procfile's 128 threads and the pool's former 10 + 20,
    one tenant's purchases were accepted at 40/s; with 4 connections, 140/s (bench/
    transactions.py, docs/transactions.md). The provider calls themselves hold no connection
    and stay ``threads`` at once.
    """
    pool = state.redis.connection_pool
    pool.max_connections = max(pool.max_connections or 0, 2 * threads + 32)
    if not state.db.is_sqlite:
        from hub.db import Database

        old = state.db
        state.db = Database(old.url, driver_shortcuts=old.driver_shortcuts, pool_timeout=DB_POOL_WAIT,
                            pool_size=max(1, min(threads, db_connections)), max_overflow=0)
        old.dispose()


def make_worker(app: Flask, queue_names: Sequence[str] | None = None, name: str | None = None,
                threads: int = 1, db_connections: int = DB_CONNECTIONS) -> HubWorker:
    """A worker of ``app`` on ``queue_names`` (all queues by default).

    :param threads: 1 for :class:`HubWorker` (one job at a time); more for a
        :class:`HubThreadWorker` running that many jobs at once.
    :param db_connections: a thread worker's database connections (its jobs inside a unit of
        work at once; see :func:`size_pools_for_threads`).
    """
    state: HubState = app.extensions["rop"]
    names = with_lanes(queue_names or QUEUES)
    if threads > 1:
        size_pools_for_threads(state, threads, db_connections)
        queues = [queue(n, state.redis) for n in names]
        for q in queues:
            q.death_penalty_class = ThreadDeathPenalty
        worker: HubWorker = HubThreadWorker(queues, connection=state.redis, name=name, threads=threads)
    else:
        worker = HubWorker([queue(n, state.redis) for n in names], connection=state.redis, name=name)
    worker.flask_app = app
    return worker
