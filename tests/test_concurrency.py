"""hub.concurrency.limit: at most n holders across threads and processes; leases of a dead
process come back after their ttl; Busy after the timeout. Real Redis, real processes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from hub.concurrency import KEY_PREFIX, Busy, acquire, holders, limit, release

HOLDER_SCRIPT = """
import sys, time, redis
from hub.concurrency import acquire
client = redis.Redis.from_url(sys.argv[1])
leases = [acquire(client, sys.argv[2], int(sys.argv[3]), 5, ttl=float(sys.argv[4])) for _ in range(int(sys.argv[3]))]
print("held", flush=True)
time.sleep(600)
"""


@pytest.fixture
def redis(app):
    return app.extensions["rop"].redis


def _holder_process(redis_url: str, key: str, n: int, ttl: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, redis_url, key, str(n), str(ttl)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_at_most_n_threads_hold_a_key_at_once(redis):
    inside = 0
    peak = 0
    guard = threading.Lock()
    entered = []

    def work(i: int) -> None:
        nonlocal inside, peak
        with limit(redis, "test:threads", 3, timeout=60):
            with guard:
                inside += 1
                peak = max(peak, inside)
            time.sleep(0.05)
            with guard:
                inside -= 1
            entered.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(entered) == list(range(24))
    assert peak == 3
    assert holders(redis, "test:threads") == 0


def test_busy_after_the_timeout_and_a_slot_comes_back_on_exit(redis):
    with limit(redis, "test:busy", 2, timeout=1), limit(redis, "test:busy", 2, timeout=1):
        assert holders(redis, "test:busy") == 2
        with pytest.raises(Busy) as caught, limit(redis, "test:busy", 2, timeout=0.2):
            pytest.fail("a third holder got in")
        assert caught.value.key == "test:busy" and caught.value.n == 2
    with limit(redis, "test:busy", 2, timeout=0):
        assert holders(redis, "test:busy") == 1


def test_an_exception_in_the_block_gives_the_slot_back(redis):
    with pytest.raises(RuntimeError), limit(redis, "test:raise", 1, timeout=0):
        raise RuntimeError("provider said no")
    assert holders(redis, "test:raise") == 0
    with limit(redis, "test:raise", 1, timeout=0):
        pass


def test_keys_are_independent_and_bad_arguments_are_refused(redis):
    with limit(redis, "test:a", 1, timeout=0), limit(redis, "test:b", 1, timeout=0):
        assert holders(redis, "test:a") == holders(redis, "test:b") == 1
    with pytest.raises(ValueError):
        acquire(redis, "test:a", 0, 1)
    with pytest.raises(ValueError):
        acquire(redis, "test:a", 1, 1, ttl=0.5)


def test_another_process_holding_every_slot_makes_us_wait(redis, redis_url):
    proc = _holder_process(redis_url, "test:procs", 2, 30)
    try:
        assert holders(redis, "test:procs") == 2
        with pytest.raises(Busy):
            acquire(redis, "test:procs", 2, 0.3)
    finally:
        proc.terminate()
        proc.wait(10)


def test_leases_are_extended_while_held(redis):
    lease = acquire(redis, "test:keep", 1, 0, ttl=1)
    try:
        # Three ttls later the lease is still ours: the keeper thread extended it.
        end = time.monotonic() + 3
        while time.monotonic() < end:
            with pytest.raises(Busy):
                acquire(redis, "test:keep", 1, 0, ttl=1)
            time.sleep(0.2)
        assert not lease.lost
        assert holders(redis, "test:keep") == 1
    finally:
        release(lease)
    assert holders(redis, "test:keep") == 0


def test_a_sigkilled_process_slots_come_back_after_the_ttl(redis, redis_url):
    proc = _holder_process(redis_url, "test:killed", 3, 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert holders(redis, "test:killed") == 3  # nobody released them
    with pytest.raises(Busy):
        acquire(redis, "test:killed", 3, 0)
    # Within the ttl (2 s; 15 s is only a safety net) all three slots are free again.
    leases = [acquire(redis, "test:killed", 3, 15) for _ in range(3)]
    assert holders(redis, "test:killed") == 3
    for lease in leases:
        release(lease)
    assert redis.zcard(KEY_PREFIX + "test:killed") == 0


def test_many_slots_are_taken_at_once_up_to_the_bound_and_given_back_together(redis):
    """acquire_many takes as many of the requested slots as are free (one script: atomic
    with every other holder), never waiting; release_many gives them back in one round trip."""
    from hub.concurrency import acquire_many, release_many

    with limit(redis, "many", 5, 1):  # one slot already held elsewhere
        first = acquire_many(redis, "many", 5, 3)
        assert len(first) == 3 and holders(redis, "many") == 4
        second = acquire_many(redis, "many", 5, 3)  # one left
        assert len(second) == 1 and holders(redis, "many") == 5
        assert acquire_many(redis, "many", 5, 2) == []  # none left: no wait, no Busy
        release_many(first + second)
        assert holders(redis, "many") == 1
    assert holders(redis, "many") == 0
    assert acquire_many(redis, "many", 5, 0) == []
    with pytest.raises(ValueError):
        acquire_many(redis, "many", 0, 1)


def test_threads_taking_many_slots_at_once_never_exceed_the_bound(redis):
    from hub.concurrency import acquire_many, release_many

    peak, inside, lock = 0, 0, threading.Lock()

    def taker() -> None:
        nonlocal peak, inside
        for _ in range(20):
            leases = acquire_many(redis, "many-race", 7, 3)
            with lock:
                inside += len(leases)
                peak = max(peak, inside)
            time.sleep(0.002)
            with lock:
                inside -= len(leases)
            release_many(leases)
    threads = [threading.Thread(target=taker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 3 <= peak <= 7
    assert holders(redis, "many-race") == 0
