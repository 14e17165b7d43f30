"""The web process's relay: what its requests commit reaches the queues in batches, off the
request thread (docs/bus.md, "The relay").

Without it, a unit of work relays its messages itself once it commits (:func:`send`): RQ
jobs and webhook deliveries enqueued in one pipeline, the outbox rows marked published. On
the accept path that was about a third of a request's CPU, two more Redis round trips and a
second statement per purchase.

A gunicorn worker of the hub starts one :class:`BackgroundRelay` (``hub.gunicorn_conf``).
A request's after-commit then only hands its envelopes and delivery ids to it (no I/O); the
relay's thread sends what has gathered meanwhile, from every request thread of the process,
as one Redis pipeline — the messages one handler takes go in one job of up to
``MAX_BATCH`` (a batch of ``ProcessTransaction`` commands is processed as one) — and marks
all their outbox rows published in one statement. A send costs about 0.5 ms of CPU whatever
it carries (the job, the pipeline, the statement) and some 15 µs more per envelope, so the
relay sends at most once every :data:`PACE` seconds (20 ms): an idle process's relay sends
at once, a busy one's what gathered meanwhile — at 300 purchases a second, six in a send
instead of one or two, a fifth of the relay's CPU.

What is lost with the process (SIGKILL between a commit and the relay's send) is in the
database: the outbox sweep (``rop scheduler``, every few seconds) publishes rows left
unpublished for 5 s, and the deliveries' sweep enqueues deliveries pending for 2 minutes.
A worker that stops gracefully (gunicorn's ``worker_exit``) sends what it holds first.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import structlog
from flask import Flask

log = structlog.get_logger("hub.bus")

#: the most envelopes (and, apart, delivery ids) one send takes
MAX_SEND = 500
#: the least time (seconds) between the starts of two sends: a send does not wait for more
#: envelopes, but the next one waits until this long after the last one started
PACE = 0.02
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


def hand_over(app: Flask, envelopes: list[dict], delivery_ids: list[str]) -> None:
    """After a commit: to the background relay when the process runs one, else sent now."""
    if not (envelopes or delivery_ids):
        return
    relay = background_relay(app)
    if relay is not None:
        relay.put(envelopes, delivery_ids)
    else:
        send(app, envelopes, delivery_ids)
