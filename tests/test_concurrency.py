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
