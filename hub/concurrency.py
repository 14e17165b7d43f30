"""Bounded concurrency across processes: at most ``n`` holders of a key at a time (Redis).

    from hub.concurrency import Busy, limit

    with limit(redis, f"provider:{config_id}", n=config.max_concurrency, timeout=10):
        response = http.post(...)          # at most n of these, across every worker process

Each holder owns a *lease*: a member of the sorted set ``rop:limit:<key>``, scored with the
time (the Redis server's clock, in ms) at which it lapses. Taking a slot drops lapsed leases
and then adds ours if fewer than ``n`` remain, in one Lua script, so it is atomic across
processes and machines. While the block runs, one keeper thread per process extends the
leases the process holds every ``ttl / 3`` seconds; a process that dies (SIGKILL, power loss)
stops extending them and its slots come back at most ``ttl`` seconds later. Leaving the block
removes the lease at once.

Waiting is polling with jittered backoff (25 ms doubling to 250 ms): no notification is lost
when a holder dies, and a waiter costs a few Redis calls per second. Waiters are not served
in arrival order. :class:`Busy` is raised when no slot came within ``timeout`` seconds.

Limits: a process stalled for longer than ``ttl`` (its keeper thread not scheduled) can lose
a lease while its call is still running; the next holder then makes ``n + 1`` for a moment.
The keeper logs it and sets ``lease.lost``. Pick ``ttl`` well above any pause you expect.
"""
from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("hub.concurrency")

KEY_PREFIX = "rop:limit:"

# KEYS[1] the set; ARGV: token, n, ttl (ms). Returns 1 when the lease is ours.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]) + 1000)
return 1
"""

# KEYS[1] the set; ARGV: n, ttl (ms), token, token, ... Adds leases of the tokens, in order,
# while fewer than n remain; returns how many were added (the first ones).
_ACQUIRE_MANY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local free = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
local taken = 0
for i = 3, #ARGV do
  if taken >= free then break end
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
  taken = taken + 1
end
if taken > 0 then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]) + 1000)
end
return taken
"""

# KEYS[1] the set; ARGV: token, ttl (ms). Returns 1 when extended, 0 when the lease is gone.
# A lapsed lease still in the set has not been counted as free by anyone (every acquire drops
# lapsed leases before counting), so extending it is safe.
_REFRESH = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], tonumber(last[2]) + 1000)
return 1
"""


class Busy(Exception):
    """No slot of ``key`` came free within the timeout."""

    def __init__(self, key: str, n: int, waited: float):
        super().__init__(f"all {n} slot(s) of {key!r} stayed taken for {waited:.1f} s")
        self.key = key
        self.n = n
        self.waited = waited


@dataclass(eq=False)
class Lease:
    """One held slot of ``key``. ``lost`` turns True if it lapsed while held (see the module doc)."""

    redis: object = field(repr=False)
    key: str
    token: str
    ttl: float
    lost: bool = False
    refreshed_at: float = field(default_factory=time.monotonic, repr=False)


def holders(redis, key: str) -> int:
    """How many unlapsed leases ``key`` has now (for tests and monitoring)."""
    return int(redis.eval(
        "local t = redis.call('TIME') "
        "return redis.call('ZCOUNT', KEYS[1], '(' .. (tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)), '+inf')",
        1, KEY_PREFIX + key))


def acquire(redis, key: str, n: int, timeout: float, *, ttl: float = 30.0) -> Lease:
    """Take a slot of ``key`` (at most ``n`` holders), waiting up to ``timeout`` seconds.

    Prefer :func:`limit`; a lease taken here must be given back with :func:`release`.

    :raise Busy: when no slot came free in time.
    :raise ValueError: for ``n < 1`` or ``ttl`` under one second.
    """
    if n < 1:
        raise ValueError(f"a limit needs at least one slot, got n={n}")
    if ttl < 1:
        raise ValueError(f"the lease ttl must be at least 1 s, got {ttl}")
    script = redis.register_script(_ACQUIRE)
    token = f"{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex}"
    started = time.monotonic()
    deadline = started + max(0.0, timeout)
    delay = 0.025
    while True:
        if script(keys=[KEY_PREFIX + key], args=[token, n, int(ttl * 1000)]) == 1:
            lease = Lease(redis=redis, key=key, token=token, ttl=ttl)
            _keeper().hold(lease)
            return lease
        left = deadline - time.monotonic()
        if left <= 0:
            raise Busy(key, n, time.monotonic() - started)
        time.sleep(min(left, delay * random.uniform(0.5, 1.5)))
        delay = min(delay * 2, 0.25)


def acquire_many(redis, key: str, n: int, count: int, *, ttl: float = 30.0) -> list[Lease]:
    """Take up to ``count`` slots of ``key`` (at most ``n`` holders) now, without waiting, in
    one round trip: as many leases as were free (maybe none). Give each back with
    :func:`release` or all with :func:`release_many`."""
    if n < 1:
        raise ValueError(f"a limit needs at least one slot, got n={n}")
    if ttl < 1:
        raise ValueError(f"the lease ttl must be at least 1 s, got {ttl}")
    if count < 1:
        return []
    prefix = f"{os.getpid()}:{threading.get_ident()}:"
    tokens = [prefix + uuid.uuid4().hex for _ in range(count)]
    taken = int(redis.register_script(_ACQUIRE_MANY)(keys=[KEY_PREFIX + key], args=[n, int(ttl * 1000), *tokens]))
    leases = [Lease(redis=redis, key=key, token=token, ttl=ttl) for token in tokens[:taken]]
    keeper = _keeper()
    for lease in leases:
        keeper.hold(lease)
    return leases


def release(lease: Lease) -> None:
    """Give the slot back (at once; a lease that lapsed is simply gone)."""
    _keeper().drop(lease)
    lease.redis.zrem(KEY_PREFIX + lease.key, lease.token)


def forget(leases) -> None:
    """Stop extending ``leases`` (each lapses after its ttl unless released first)."""
    keeper = _keeper()
    for lease in leases:
        keeper.drop(lease)


def release_many(leases) -> None:
    """:func:`release` of many leases: one ``ZREM`` per key, in one round trip per client.
    They are forgotten first (:func:`forget`): with Redis away they lapse after their ttl."""
    leases = list(leases)
    forget(leases)
    by_client: dict[int, tuple[object, dict[str, list[str]]]] = {}
    for lease in leases:
        by_client.setdefault(id(lease.redis), (lease.redis, {}))[1].setdefault(lease.key, []).append(lease.token)
    for client, by_key in by_client.values():
        with client.pipeline(transaction=False) as pipe:
            for key, tokens in by_key.items():
                pipe.zrem(KEY_PREFIX + key, *tokens)
            pipe.execute()


@contextmanager
def limit(redis, key: str, n: int, timeout: float, *, ttl: float = 30.0) -> Iterator[Lease]:
    """Run the block as one of at most ``n`` holders of ``key`` across all processes.

    :param redis: the Redis client (``state.redis``).
    :param key: what is limited, e.g. ``"provider:pcf_123"``.
    :param n: how many holders at most.
    :param timeout: seconds to wait for a slot before :class:`Busy`.
    :param ttl: lease lifetime without refresh: how soon a dead process's slot comes back.
    :raise Busy: when no slot came free within ``timeout``.
    """
    lease = acquire(redis, key, n, timeout, ttl=ttl)
    try:
        yield lease
    finally:
        try:
            release(lease)
        except Exception:  # noqa: BLE001 - Redis down: the lease lapses after ttl instead
            log.warning("could not release a concurrency lease; it lapses after its ttl", key=key, ttl=ttl)


class _Keeper:
    """The thread that extends the leases this process holds."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.leases: dict[str, Lease] = {}
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rop-lease-keeper", daemon=True)
        self.thread.start()

    def hold(self, lease: Lease) -> None:
        with self.lock:
            self.leases[lease.token] = lease
        self.wake.set()

    def drop(self, lease: Lease) -> None:
        with self.lock:
            self.leases.pop(lease.token, None)

    def _run(self) -> None:
        while True:
            with self.lock:
                leases = list(self.leases.values())
            now = time.monotonic()
            due = [lease for lease in leases if now - lease.refreshed_at >= lease.ttl / 3]
            if due:
                self._refresh(due)
            # Sleep until the next lease is due (at most 1 s, so new short leases are seen).
            waits = [lease.refreshed_at + lease.ttl / 3 - time.monotonic() for lease in leases]
            self.wake.wait(max(0.05, min([1.0, *waits])))
            self.wake.clear()

    def _refresh(self, leases: list[Lease]) -> None:
        by_client: dict[int, list[Lease]] = {}
        for lease in leases:
            by_client.setdefault(id(lease.redis), []).append(lease)
        for group in by_client.values():
            client = group[0].redis
            try:
                script = client.register_script(_REFRESH)
                with client.pipeline(transaction=False) as pipe:
                    for lease in group:
                        script(keys=[KEY_PREFIX + lease.key], args=[lease.token, int(lease.ttl * 1000)], client=pipe)
                    results = pipe.execute()
            except Exception as exc:  # noqa: BLE001 - Redis away: try again on the next round
                log.warning("could not extend concurrency leases", error=str(exc), count=len(group))
                continue
            now = time.monotonic()
            for lease, ok in zip(group, results):
                with self.lock:
                    if lease.token not in self.leases:
                        continue  # released meanwhile
                lease.refreshed_at = now
                if not ok and not lease.lost:
                    lease.lost = True
                    log.warning("a concurrency lease lapsed while held", key=lease.key, ttl=lease.ttl)


_KEEPER: _Keeper | None = None
_KEEPER_LOCK = threading.Lock()


def _keeper() -> _Keeper:
    global _KEEPER
    with _KEEPER_LOCK:
        if _KEEPER is None or _KEEPER.pid != os.getpid():  # first use, or in a forked child
            _KEEPER = _Keeper()
        return _KEEPER
