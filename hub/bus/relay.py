"""The relay: what units of work commit reaches the queues in batches (docs/bus.md, "The relay").

**The relay process** (``rop relay``, :class:`OutboxRelay`; a line of the Procfile, a child
of ``rop up``) takes the outbox rows nobody has published yet, oldest first, up to
:data:`RELAY_BATCH` at a time, whichever process committed them: it enqueues them in one
Redis pipeline (the messages one handler takes in one job of up to ``MAX_BATCH``: a batch of
``ProcessTransaction`` commands is processed as one) and marks them published in the same
database transaction that locked them (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: several
relay processes never take the same row). When a pass found fewer rows than it may take, it
waits :data:`PACE` seconds before the next; else it goes on at once. While it runs it keeps
its heartbeat (:data:`HEARTBEAT_KEY`) set in Redis; every process reads the heartbeat with
its cache versions (hub.cache: no Redis command of its own), and while it is set a unit of
work's commit leaves its messages in the outbox for the relay process: an accepted
purchase then costs its web process no relaying at all.

**Without a relay process** (its heartbeat gone: not running, or dead for 3 s) a unit of
work relays its messages itself once it commits (:func:`send`): RQ jobs and webhook
deliveries enqueued in one pipeline, the outbox rows marked published — in a gunicorn
worker from one :class:`BackgroundRelay` thread per process (``hub.gunicorn_conf``), which
sends what the requests handed over meanwhile, at most once every :data:`PACE` seconds (a
send costs about 0.5 ms of CPU whatever it carries, some 15 µs more per envelope); elsewhere
(workers, the CLI, the tests' apps) at once. Webhook deliveries always go this way: they
have no outbox row.

What a process loses (SIGKILL between a commit and its relay's send; a relay process dying
between its enqueue and its commit: the rows are enqueued again, the processed-message
records absorb the duplicates) is in the database: the outbox sweep (``rop scheduler``,
every few seconds) publishes rows left unpublished for 5 s, and the deliveries' sweep
enqueues deliveries pending for 2 minutes. A web worker that stops gracefully (gunicorn's
``worker_exit``) sends what it holds first; a relay process finishes its pass.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque

import structlog
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from hub.availability import REDIS_ERRORS
from hub.cache import WATCHED, refcache
from hub.db import utcnow
from hub.driver import as_sqlalchemy, raw_connection

log = structlog.get_logger("hub.bus")

#: the most envelopes (and, apart, delivery ids) one send takes
MAX_SEND = 500
#: the least time (seconds) between the starts of two sends: a send does not wait for more
#: envelopes, but the next one waits until this long after the last one started (the relay
#: process: its wait after a pass that found fewer rows than it may take)
PACE = 0.02
#: the Redis key a relay process keeps set while it runs, for HEARTBEAT_TTL seconds at a time
HEARTBEAT_KEY = WATCHED["relay_heartbeat"]
HEARTBEAT_TTL = 3
#: the longest (seconds) a relay process holds its passes back while a provider job waits in
#: its queue (every message waits with them: commands, events)
HOLD_MAX = 0.5
#: the most outbox rows one pass of a relay process takes
RELAY_BATCH = 500
#: PostgreSQL: a relay pass's rows, taken and marked published in one statement
_TAKE = ("UPDATE bus_outbox SET published_at = %s, publish_count = publish_count + 1 WHERE id IN "
         "(SELECT id FROM bus_outbox WHERE published_at IS NULL ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED) "
         "RETURNING id, envelope, created_at")
#: ... of the rows written before a time (the outbox sweep's)
_TAKE_OLDER = _TAKE.replace("WHERE published_at IS NULL", "WHERE published_at IS NULL AND created_at <= %s")
_KEY = "bus.background_relay"


class BackgroundRelay:
    """Relays the committed messages and webhook deliveries of an app's units of work from
    one thread of its own (see the module's docstring)."""

    def __init__(self, app: Flask, *, max_send: int = MAX_SEND, pace: float = PACE):
        self.app = app
        self.max_send = max_send
        self.pace = pace
        self._last_send = time.monotonic() - pace
        self._envelopes: deque[dict] = deque()
        self._deliveries: deque[str] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._busy = False
        self._thread: threading.Thread | None = None
        #: what it sent so far: sends, envelopes, deliveries
        self.sent = {"sends": 0, "envelopes": 0, "deliveries": 0}

    # -- the request side ----------------------------------------------------------------
    def put(self, envelopes: list[dict], delivery_ids: list[str]) -> None:
        """Hand over what a unit of work committed (called in its after-commit: no I/O)."""
        with self._cond:
            self._envelopes.extend(envelopes)
            self._deliveries.extend(delivery_ids)
            self._cond.notify()

    def pending(self) -> int:
        """Envelopes and deliveries handed over and not sent yet."""
        with self._cond:
            return len(self._envelopes) + len(self._deliveries)

    # -- the relay's thread --------------------------------------------------------------
    def start(self) -> BackgroundRelay:
        self._thread = threading.Thread(target=self._run, name="rop-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is held, then end the thread (a graceful stop of the process)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)
        else:  # never started: send here
            while self.send_once():
                pass

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything handed over so far was sent; :return: False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not (self._envelopes or self._deliveries or self._busy), timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._envelopes or self._deliveries or self._stopping)
                if self._stopping and not (self._envelopes or self._deliveries):
                    return
                # Paced: within PACE of the last send's start, what is handed over meanwhile
                # joins this one (a stop does not wait).
                early = self._last_send + self.pace - time.monotonic()
                if early > 0:
                    self._cond.wait_for(lambda: self._stopping, early)
            self._last_send = time.monotonic()
            self.send_once()

    def send_once(self) -> int:
        """Send up to ``max_send`` envelopes and deliveries; :return: how many were taken."""
        with self._cond:
            envelopes = [self._envelopes.popleft() for _ in range(min(self.max_send, len(self._envelopes)))]
            deliveries = [self._deliveries.popleft() for _ in range(min(self.max_send, len(self._deliveries)))]
            self._busy = taken = bool(envelopes or deliveries)
        try:
            if taken:
                send(self.app, envelopes, deliveries)
                self.sent["sends"] += 1
                self.sent["envelopes"] += len(envelopes)
                self.sent["deliveries"] += len(deliveries)
        except Exception as exc:  # noqa: BLE001 - never kill the thread: the sweeps have the rows
            log.warning("background relay failed; the sweeps will publish", error=str(exc),
                        envelopes=len(envelopes), deliveries=len(deliveries))
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
        return len(envelopes) + len(deliveries)


def send(app: Flask, envelopes: list[dict], delivery_ids: list[str]) -> int:
    """Enqueue ``envelopes`` for their handlers and the deliveries ``delivery_ids`` in one
    Redis pipeline, then mark the envelopes' outbox rows published (one statement).

    Redis down: nothing is marked (logged; the sweeps publish). :return: rows marked.
    """
    from hub.bus.outbox import _mark_published, enqueue_envelopes
    from hub.bus.webhooks import enqueue_now

    state = app.extensions["rop"]
    try:
        with state.redis.pipeline(transaction=False) as pipe:
            if envelopes:
                enqueue_envelopes(app, envelopes, pipeline=pipe)
            if delivery_ids:
                enqueue_now(app, delivery_ids, pipeline=pipe)
            pipe.execute()
    except Exception as exc:  # noqa: BLE001 - Redis down: the rows wait for the sweeps
        log.warning("outbox relay failed; the sweep will publish", error=str(exc), count=len(envelopes),
                    deliveries=len(delivery_ids))
        return 0
    return _mark_published(app, [e["id"] for e in envelopes]) if envelopes else 0


def background_relay(app: Flask) -> BackgroundRelay | None:
    """The app's background relay, if its process runs one."""
    return app.extensions["rop"].extras.get(_KEY)


def start_background_relay(app: Flask) -> BackgroundRelay:
    """Give ``app`` a background relay (a web worker, once it has loaded the app)."""
    relay = app.extensions["rop"].extras.get(_KEY)
    if relay is None:
        relay = app.extensions["rop"].extras[_KEY] = BackgroundRelay(app).start()
    return relay


def stop_background_relay(app: Flask, timeout: float = 10.0) -> None:
    """Send what the app's background relay holds and stop it (a graceful stop)."""
    relay = app.extensions["rop"].extras.pop(_KEY, None)
    if relay is not None:
        relay.stop(timeout)


def relay_process_alive(app: Flask) -> bool:
    """Whether a relay process runs: its heartbeat as this process's (or request's) reading
    of the cache versions has it — no Redis command of its own; False when Redis cannot be
    read (then nothing can be relayed now anyway: the sweep publishes)."""
    try:
        snapshot, _ = refcache(app).versions()
    except REDIS_ERRORS:
        return False
    return snapshot.get("relay_heartbeat") is not None


def hand_over(app: Flask, envelopes: list[dict], delivery_ids: list[str]) -> None:
    """After a commit: nothing for the envelopes while a relay process runs (it takes their
    outbox rows); else, and for the deliveries, to the background relay when the process
    runs one, else sent now."""
    if envelopes and relay_process_alive(app):
        envelopes = []
    if not (envelopes or delivery_ids):
        return
    relay = background_relay(app)
    if relay is not None:
        relay.put(envelopes, delivery_ids)
    else:
        send(app, envelopes, delivery_ids)


# -- the relay process ------------------------------------------------------------------------
class OutboxRelay:
    """``rop relay``: moves committed outbox rows to the queues in batches (see the module's
    docstring). :meth:`relay_once` is one pass; :meth:`run` passes until stopped."""

    def __init__(self, app: Flask, *, batch: int = RELAY_BATCH, pace: float = PACE, hold_max: float = HOLD_MAX):
        self.app = app
        self.batch = batch
        self.pace = pace
        self.hold_max = hold_max
        #: what it relayed so far: passes that found rows, rows
        self.relayed = {"passes": 0, "rows": 0}

    def relay_once(self, older_than: float | None = None) -> int:
        """Take up to ``batch`` unpublished outbox rows, oldest first (skipping rows another
        relay has locked), enqueue them in one pipeline and mark them published, in one
        database transaction. :return: how many rows. :raise: the Redis or database error
        (nothing is marked then).

        :param older_than: only rows written at least this many seconds ago (the outbox
            sweep's pass: hub.bus.outbox.sweep)."""
        state = self.app.extensions["rop"]
        cutoff = utcnow() - dt.timedelta(seconds=older_than) if older_than is not None else None
        if state.db.is_sqlite:
            return self._relay_sqlite(state, cutoff)
        # PostgreSQL: one statement takes and marks the rows (locked until the commit, which
        # comes once they are enqueued), on the driver's connection: a pass costs the
        # statement, the pipeline and the commit
        fairy = raw_connection(state.db.engine, _TAKE)
        driver = fairy.driver_connection
        try:
            rows = (driver.execute(_TAKE, (utcnow(), self.batch)) if cutoff is None else
                    driver.execute(_TAKE_OLDER, (utcnow(), cutoff, self.batch))).fetchall()
            if rows:
                rows.sort(key=lambda row: (row[2], row[0]))  # RETURNING keeps no order
                self._enqueue(state, [row[1] for row in rows])
            driver.commit()
        except state.db.engine.dialect.loaded_dbapi.Error as exc:
            raise as_sqlalchemy(exc, state.db.engine.dialect, driver, None, _TAKE, None, fairy.invalidate) from exc
        finally:
            fairy.close()  # rolls back what was not committed (a failed enqueue)
        return self._counted(len(rows))

    def _relay_sqlite(self, state, cutoff: dt.datetime | None) -> int:
        from hub.bus.models import OutboxMessage

        outbox = OutboxMessage.__table__
        taken = select(outbox.c.id, outbox.c.envelope).where(outbox.c.published_at.is_(None))
        if cutoff is not None:
            taken = taken.where(outbox.c.created_at <= cutoff)
        # a look first, without the write lock (every writing transaction takes it at BEGIN):
        # an idle relay's passes never hold up the writers
        with state.db.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn, conn.begin():
            if conn.execute(taken.with_only_columns(outbox.c.id).limit(1)).first() is None:
                return 0
        with state.db.engine.begin() as conn:
            rows = conn.execute(taken.order_by(outbox.c.created_at, outbox.c.id).limit(self.batch)).all()
            if rows:
                self._enqueue(state, [row.envelope for row in rows])
                conn.execute(update(outbox).where(outbox.c.id.in_([row.id for row in rows]))
                             .values(published_at=utcnow(), publish_count=outbox.c.publish_count + 1))
        return self._counted(len(rows))

    def _enqueue(self, state, envelopes: list[dict]) -> None:
        from hub.bus.outbox import enqueue_envelopes

        with state.redis.pipeline(transaction=False) as pipe:
            enqueue_envelopes(self.app, envelopes, pipeline=pipe)
            pipe.execute()

    def _counted(self, rows: int) -> int:
        if rows:
            self.relayed["passes"] += 1
            self.relayed["rows"] += rows
        return rows

    def backlogged(self) -> bool:
        """Whether a job waits, not started, in the provider queue: the provider workers have
        more than they take now, so a batch sent now would only wait behind it, and the rows
        committed while it waits make the next batch bigger (RQ's bookkeeping, the driver's
        units of work and round trips are paid per batch). The minimal pipeline's adaptive
        batching, with a bound on the hold."""
        from hub.queues import queue

        return self.hold_max > 0 and queue("provider", self.app.extensions["rop"].redis).count > 0

    def beat(self) -> None:
        """Set the heartbeat for HEARTBEAT_TTL seconds (Redis down: the next beat will)."""
        try:
            self.app.extensions["rop"].redis.set(HEARTBEAT_KEY, str(time.time()), ex=HEARTBEAT_TTL)
        except REDIS_ERRORS:
            pass

    def run(self, stop: threading.Event) -> None:
        """Pass until ``stop`` is set (:meth:`_passes`), in one app context; a stop clears the
        heartbeat: the other processes relay their own commits again within 50 ms."""
        log.info("relay started", batch=self.batch, pace_s=self.pace)
        with self.app.app_context():
            try:
                self._passes(stop)
            finally:
                try:
                    self.app.extensions["rop"].redis.delete(HEARTBEAT_KEY)
                except REDIS_ERRORS:
                    pass
                log.info("relay stopped", **self.relayed)

    def _passes(self, stop: threading.Event) -> None:
        """Beat once a second and pass; after a failed pass back off (0.1 s doubling to 2 s)
        and go on. While a provider job waits in its queue (the provider workers are busy),
        hold the next pass back, for at most :data:`HOLD_MAX` seconds at a time: the rows
        committed meanwhile go in bigger batches (see :meth:`backlogged`)."""
        beaten, backoff, holding_since = 0.0, 0.0, None
        while not stop.is_set():
            if time.monotonic() - beaten >= 1.0:
                self.beat()
                beaten = time.monotonic()
            try:
                if self.backlogged():
                    holding_since = holding_since or time.monotonic()
                    if time.monotonic() - holding_since < self.hold_max:
                        stop.wait(self.pace)
                        continue
                holding_since = None
                found = self.relay_once()
            except Exception as exc:  # noqa: BLE001 - the relay outlives any failed pass
                # Redis or the database away (expected: a warning) or anything else (an error,
                # with its traceback): the pass rolled back. A relay that died instead would be
                # restarted until rop up gave up.
                backoff = min(max(backoff * 2, 0.1), 2.0)
                expected = isinstance(exc, (*REDIS_ERRORS, SQLAlchemyError))
                (log.warning if expected else log.exception)(
                    "relay pass failed; retrying", error=f"{type(exc).__name__}: {exc}"[:300], retry_in=backoff)
                stop.wait(backoff)
                continue
            backoff = 0.0
            if found < self.batch:
                stop.wait(self.pace)
