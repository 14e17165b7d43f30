"""Redis goes away under a running worker: RQ's scheduler inside it (the one that puts a failed
job's retry back on its queue when its delay is over) must be working again once Redis is back.

RQ's own worker forks its scheduler into a process of its own, which dies at the first Redis
error and is started again only by the worker's maintenance, every 10 minutes. Meanwhile no
retry of the worker's queues ran: the fault suite's PostgreSQL restart, after its Redis
restart, lost a provider's refund so (the callback's handler failed while the database was
away, and its retry was never enqueued). The hub's workers run the scheduler in a thread that
outlives Redis errors.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import pytest

from hub.queues import queue
from tests.test_worker import _worker_env

WORKER = """
import sys
from hub.app import create_app
from hub.worker import make_worker
queues, threads = sys.argv[1].split(","), int(sys.argv[2])
make_worker(create_app(), queues, name="outage-%d" % threads, threads=threads).work(with_scheduler=True)
"""


def _wait_for(what: str, check, seconds: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, f"the worker exited (status {proc.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.1)


def _worker(app, config, queues, threads: int) -> subprocess.Popen:
    """A worker process of ``queues`` (its scheduler on) on the test's database and own Redis."""
    return subprocess.Popen([sys.executable, "-c", WORKER, ",".join(queues), str(threads)],
                            env=_worker_env(app, config))


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("threads,queues", [
    pytest.param(1, ("commands", "events", "default", "bulk"), id="general"),
    pytest.param(4, ("default",), id="threads"),
])
def test_a_worker_schedules_retries_again_once_redis_is_back(app, config, own_redis, tmp_path, threads, queues):
    redis = app.extensions["rop"].redis
    proc = _worker(app, config, queues, threads)
    try:
        before = tmp_path / "before"
        queue("default", redis).enqueue_in(dt.timedelta(seconds=1), "os.mkdir", str(before))
        _wait_for("a scheduled job run before the outage", before.is_dir, 60, proc)

        own_redis.stop()
        time.sleep(4)  # longer than the scheduler's round (1 s) and the Redis client's own retries
        own_redis.start()

        after = tmp_path / "after"
        queue("default", redis).enqueue_in(dt.timedelta(seconds=1), "os.mkdir", str(after))
        # The scheduler's lock was lost with Redis (an empty server): its next round takes it
        # again (or, had another worker taken it, that one schedules).
        _wait_for("a scheduled job run after the outage", after.is_dir, 30, proc)
    finally:
        _stop(proc)


def test_a_worker_takes_the_scheduler_lock_a_dead_worker_left_once_it_lapses(app, config, own_redis, tmp_path):
    """A worker killed with its scheduler leaves its lock for 60 s; the next worker takes it
    in its first round after that (RQ's own scheduler asks again only every 2 minutes)."""
    from rq.scheduler import RQScheduler

    redis = app.extensions["rop"].redis
    redis.set(RQScheduler.get_locking_key("default"), "a-dead-worker", ex=3)
    proc = _worker(app, config, ["default"], 1)
    try:
        made = tmp_path / "made"
        queue("default", redis).enqueue_in(dt.timedelta(seconds=1), "os.mkdir", str(made))
        _wait_for("the scheduled job run once the dead worker's lock lapsed", made.is_dir, 30, proc)
        assert redis.get(RQScheduler.get_locking_key("default")) != b"a-dead-worker"
    finally:
        _stop(proc)


def shut_redis_down(url: str) -> None:
    """A job that stops the Redis server it came from: its own end and the worker's heartbeat
    after it meet a server that is gone."""
    import redis as redis_py

    try:
        redis_py.Redis.from_url(url).shutdown(nosave=True)
    except redis_py.exceptions.ConnectionError:
        pass  # the server closed the connection as it went


def test_a_general_worker_outlives_redis_going_away_at_a_jobs_end(app, config, own_redis, tmp_path):
    """RQ's work loop ends the worker at any Redis error around a job but the dequeue's: the
    hub's worker waits for Redis instead, and serves again once it is back."""
    redis = app.extensions["rop"].redis
    proc = _worker(app, config, ["default"], 1)
    try:
        queue("default", redis).enqueue("tests.outages.test_worker_scheduler.shut_redis_down", own_redis.url)
        deadline = time.monotonic() + 60
        while _pings(redis):
            assert time.monotonic() < deadline, "the job did not stop Redis"
            time.sleep(0.1)
        time.sleep(3)  # the job's end, the heartbeat after it and the suspension check meet no server
        assert proc.poll() is None, f"the worker exited (status {proc.returncode}) when Redis went away"
        own_redis.start()
        after = tmp_path / "after"
        queue("default", redis).enqueue("os.mkdir", str(after))
        _wait_for("a job run once Redis is back", after.is_dir, 60, proc)
    finally:
        _stop(proc)


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any error: not answering
        return False
