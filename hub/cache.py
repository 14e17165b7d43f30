"""Reference data cached in each process, invalidated through version keys in Redis.

Reference data — the catalog (products, offers, price rules), the provider configurations a
tenant may use (kill switch, tenant enablement), whether a tenant has a webhook — is read on
every purchase and changes rarely. Each process keeps what it read in memory, by
``(namespace, key)``; each namespace has a version key in Redis (``rop:cache:<ns>:version``):

- A reader asks Redis for the versions of every namespace with one ``MGET``, and uses an
  entry only while it was loaded under the version Redis has then. One reading serves every
  thread of the process for :data:`REFRESH` seconds (50 ms: at hundreds of purchases a
  second, one ``MGET`` per process every few dozen requests instead of one per request);
  an HTTP request keeps the reading it started with, so it sees one set of versions
  throughout. Callers that need other keys read with them (the breakers' ``open_until``)
  have them read in that same ``MGET`` and kept as long (:meth:`RefCache.versions`); so is
  the relay process's heartbeat (:data:`WATCHED`), read with every reading. So a
  change committed elsewhere is seen by this process within :data:`REFRESH` seconds of its
  bump; this process's own bumps, at once.
- A writer bumps its namespace's version (``INCR``) once its unit of work commits
  (:meth:`RefCache.bump`): every process loads the entry again once its reading of the
  versions is renewed (within :data:`REFRESH` seconds; the writer's own process at once).
- A bump lost with a crash between the commit and the ``INCR`` is bounded by the TTL
  (``ROP_CACHE_TTL`` seconds, default 5): no entry is used longer than that after it was
  loaded. ``ROP_CACHE_TTL=0`` turns the cache off (every read loads).
- Without Redis the versions cannot be known: reads go to the database (nothing is kept),
  so a Redis outage costs speed, never a stale answer.

Entries are shared by the threads of a process: a cached value is never changed in place.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any

from flask import current_app, g, has_request_context

from hub.availability import REDIS_ERRORS

#: The namespaces and what bumps them: ``products`` (catalog sync, products and offers
#: switched on or off, offer priority, price rules), ``providers`` (configurations added,
#: their credentials, the kill switch, tenant enablement), ``webhooks`` (a tenant's endpoint set).
NAMESPACES: tuple[str, ...] = ("products", "providers", "webhooks")
#: How long (seconds) one reading of the versions (and of the keys read with them) serves
#: the process's threads.
REFRESH = 0.05
#: Other keys every reading of the versions reads too, by the name its snapshot has them
#: under (their values as they are; None when not set): the relay process's heartbeat
#: (hub.bus.relay), which every unit of work's commit asks about.
WATCHED: dict[str, str] = {"relay_heartbeat": "rop:relay:heartbeat"}
#: Sets of other keys (a tenant's breakers) whose reading a process keeps at most.
MAX_EXTRA_READINGS = 10_000
#: Entries one process keeps at most (all namespaces); past it the cache starts afresh.
MAX_ENTRIES = 50_000


def version_key(namespace: str) -> str:
    return f"rop:cache:{namespace}:version"


class RefCache:
    """A process's reference-data cache (one per app: :func:`refcache`).

    :param redis: a function answering the Redis client (the app's, which it may replace).
    :param ttl: seconds an entry is used at most after it was loaded (0: no caching).
    :param clock: the monotonic clock entries expire by (tests give their own; the
        versions' re-reading keeps the real one).
    :param refresh: seconds one reading of the versions serves the process (0: every
        request, and every use outside one, reads them again).
    :param refresh_clock: the monotonic clock readings age by (tests give their own).
    """

    def __init__(self, redis: Callable[[], Any], ttl: float, clock: Callable[[], float] = time.monotonic,
                 refresh: float = REFRESH, refresh_clock: Callable[[], float] = time.monotonic):
        self._redis = redis
        self.ttl = ttl
        self.clock = clock
        self.refresh_after = refresh
        self.refresh_clock = refresh_clock
        self._entries: dict[tuple[str, Hashable], tuple[Any, float, Any]] = {}
        #: the process's last reading of the versions: (refresh_clock() before its MGET, snapshot)
        self._reading: tuple[float, dict[str, Any]] | None = None
        #: the values of other keys read with the versions, by the keys asked: (time, values)
        self._extras: dict[tuple[str, ...], tuple[float, list[Any]]] = {}
        #: bumped each time the readings are dropped (a bump, a refresh)
        self._generation = 0
        self._keys = [version_key(ns) for ns in NAMESPACES]
        self._request_key = f"_rop_cache_versions_{id(self)}"  # this cache's reading, in flask.g
        #: how many times each namespace's entries were loaded (misses), for benches and tests
        self.loads: dict[str, int] = dict.fromkeys(NAMESPACES, 0)

    @property
    def redis(self) -> Any:
        return self._redis()

    # -- versions ---------------------------------------------------------------------------
    def _fresh(self, read_at: float) -> bool:
        return 0 <= self.refresh_clock() - read_at < self.refresh_after

    def _snapshot(self) -> dict[str, Any] | None:
        in_request = has_request_context()
        if in_request:
            found = g.get(self._request_key)
            if found is not None:
                return found
        kept = self._reading
        if kept is None or not self._fresh(kept[0]):
            return None
        if in_request:
            setattr(g, self._request_key, kept[1])
        return kept[1]

    def _keep(self, snapshot: dict[str, Any], read_at: float, generation: int) -> None:
        """Keep ``snapshot`` for this request and — unless the readings were dropped since it
        was asked for (``generation``: a bump or a refresh in between, whose reading must not
        be replaced by an older one) — for the process."""
        if has_request_context():
            setattr(g, self._request_key, snapshot)
        if generation == self._generation:
            self._reading = (read_at, snapshot)

    def _drop(self) -> None:
        """Drop this request's and the process's readings: the next use reads again."""
        if has_request_context():
            setattr(g, self._request_key, None)
        self._generation += 1
        self._reading = None
        self._extras = {}

    def _kept_extras(self, keys: tuple[str, ...]) -> list[Any] | None:
        found = self._extras.get(keys)
        return list(found[1]) if found is not None and self._fresh(found[0]) else None

    def _keep_extras(self, keys: tuple[str, ...], values: list[Any], read_at: float, generation: int) -> None:
        if generation != self._generation:
            return
        if len(self._extras) >= MAX_EXTRA_READINGS:
            self._extras = {}
        self._extras[keys] = (read_at, values)

    def versions(self, extra_keys: Sequence[str] = ()) -> tuple[dict[str, Any], list[Any]]:
        """The namespaces' versions as this request sees them, and the values of
        ``extra_keys``; both as read at most :data:`REFRESH` seconds ago by any thread of
        the process (the request's own reading of the versions is kept for the request). At
        most one Redis command: an ``MGET`` of the versions (when they are to be read again)
        and the extra keys (when they are). A reading is dated from before its ``MGET`` was
        sent, and is not kept for the process when a bump or a refresh came while it was out."""
        extra = tuple(extra_keys)
        snapshot = self._snapshot()
        read_at, generation = self.refresh_clock(), self._generation
        if snapshot is not None:
            if not extra:
                return snapshot, []
            kept = self._kept_extras(extra)
            if kept is None:
                kept = list(self.redis.mget(list(extra)))
                self._keep_extras(extra, kept, read_at, generation)
            return snapshot, kept
        values = self.redis.mget([*self._keys, *WATCHED.values(), *extra])
        # a version never bumped (or lost with Redis's data) reads as 0
        snapshot = {ns: value or b"0" for ns, value in zip(NAMESPACES, values)}
        # the watched keys as they are (None: not set)
        snapshot.update(zip(WATCHED, values[len(NAMESPACES):]))
        self._keep(snapshot, read_at, generation)
        found = list(values[len(NAMESPACES) + len(WATCHED):])
        if extra:
            self._keep_extras(extra, found, read_at, generation)
        return snapshot, list(found)

    # -- entries ----------------------------------------------------------------------------
    def _version(self, namespace: str) -> Any:
        """``namespace``'s version for this request; None when Redis cannot be reached (then
        nothing cached can be trusted: the caller reads the database, and keeps nothing)."""
        if self.ttl <= 0:
            return None
        try:
            return self.versions()[0][namespace]
        except REDIS_ERRORS:
            return None

    def get(self, namespace: str, key: Hashable, load: Callable[[], Any]) -> Any:
        """The value cached under ``(namespace, key)`` when it was loaded under the version
        Redis has now and less than the TTL ago; else ``load()``, kept. Without the cache
        (TTL 0) or without Redis, ``load()`` every time."""
        version = self._version(namespace)
        if version is None:
            self.loads[namespace] += 1
            return load()
        found = self._entries.get((namespace, key))
        now = self.clock()
        if found is not None and found[0] == version and now < found[1]:
            return found[2]
        value = load()
        self.loads[namespace] += 1
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[(namespace, key)] = (version, now + self.ttl, value)
        return value

    def get_many(self, namespace: str, keys: Iterable[Hashable],
                 load: Callable[[list[Hashable]], dict[Hashable, Any]]) -> dict[Hashable, Any]:
        """:meth:`get` for many keys: ``load(missing_keys)`` once for those not usable, its
        answer by key (a key it leaves out is kept as None: a miss is cached too)."""
        keys = list(dict.fromkeys(keys))
        version = self._version(namespace)
        if version is None:
            self.loads[namespace] += 1
            loaded = load(keys)
            return {key: loaded.get(key) for key in keys}
        now = self.clock()
        found: dict[Hashable, Any] = {}
        missing = []
        for key in keys:
            entry = self._entries.get((namespace, key))
            if entry is not None and entry[0] == version and now < entry[1]:
                found[key] = entry[2]
            else:
                missing.append(key)
        if missing:
            loaded = load(missing)
            self.loads[namespace] += 1
            if len(self._entries) + len(missing) >= MAX_ENTRIES:
                self._entries.clear()
            for key in missing:
                found[key] = loaded.get(key)
                self._entries[(namespace, key)] = (version, now + self.ttl, found[key])
        return found

    def entry(self, namespace: str, key: Hashable) -> tuple[Any, Any] | None:
        """``(version, value)`` kept under ``(namespace, key)`` and not expired, whatever
        the version now (a guess of which other keys to read in the same round trip);
        None when nothing usable is kept."""
        found = self._entries.get((namespace, key))
        if found is None or self.ttl <= 0 or self.clock() >= found[1]:
            return None
        return found[0], found[2]

    def align(self, seen: dict[str, Any]) -> None:
        """Versions read now by other means (a Redis script of the caller's): when the
        process's reading differs from them, it is read again on the next use — what the
        caller builds from cached entries then is no older than what it read."""
        snapshot = self._snapshot()
        if snapshot is not None and any(snapshot.get(ns) != (value or b"0") for ns, value in seen.items()):
            self.refresh()

    def refresh(self) -> None:
        """Read the versions again on the next use (a newer one was seen elsewhere)."""
        self._drop()

    # -- writers ----------------------------------------------------------------------------
    def bump(self, uow: Any, *namespaces: str) -> None:
        """Bump ``namespaces``' versions once ``uow`` commits (every process reloads)."""
        uow.after_commit(lambda: self.bump_now(*namespaces))

    def bump_now(self, *namespaces: str) -> None:
        """Bump ``namespaces``' versions now (after a commit made elsewhere). This process
        forgets its entries of them first, so it sees the change even when Redis is down."""
        self.forget(namespaces)
        pipe = self.redis.pipeline(transaction=False)
        for namespace in namespaces:
            pipe.incr(version_key(namespace))
        pipe.execute()

    def forget(self, namespaces: Iterable[str]) -> None:
        """Drop this process's entries of ``namespaces`` and its reading of the versions."""
        names = set(namespaces)
        unknown = names - set(NAMESPACES)
        if unknown:
            raise ValueError(f"unknown cache namespace(s): {', '.join(sorted(unknown))}")
        for entry in [k for k in list(self._entries) if k[0] in names]:
            self._entries.pop(entry, None)
        self._drop()


def refcache(app: Any = None) -> RefCache:
    """The reference-data cache of ``app`` (default: the current app), made on first use."""
    state = (app or current_app).extensions["rop"]
    found = state.extras.get("refcache")
    if found is None:
        found = state.extras.setdefault("refcache", RefCache(lambda: state.redis, state.config.cache_ttl))
    return found
