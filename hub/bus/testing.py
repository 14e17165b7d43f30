"""Messages and handlers for the bus's own tests and ``bench/bus.py`` (never registered by
the app factory: a test or the bench calls :func:`register`)."""
from __future__ import annotations

import time

from marshmallow import Schema, fields

from hub.bus.messages import Command, Event
from hub.bus.outbox import publish
from hub.bus.registry import register_command_handler, subscribe


class PingSchema(Schema):
    n = fields.Integer(required=True)
    mode = fields.String(load_default="echo")  # echo | noop | slow-first | poison


class Ping(Event):
    """A test event; what its subscriber does depends on ``mode``."""

    type = "bus_test.ping"
    schema = PingSchema
    max_retries = 2
    retry_base = 0.0  # retry at once: tests do not wait


class EchoSchema(Schema):
    source = fields.String(required=True)


class Echoed(Event):
    """What the ``echo`` subscriber publishes: its effect, a database row, once per ping."""

    type = "bus_test.echoed"
    schema = EchoSchema


def on_ping(ctx, uow, message) -> None:
    """Subscriber of :class:`Ping`; its effect is an ``Echoed`` event written in ``uow``."""
    from flask import current_app

    mode = message.payload.get("mode", "echo")
    redis = current_app.extensions["rop"].redis
    if mode == "noop":
        return
    if mode == "poison" and redis.exists("bus_test:broken"):
        raise RuntimeError("the cause is not fixed yet")
    if mode == "slow-first" and redis.incr(f"bus_test:runs:{message.id}") == 1:
        redis.set("bus_test:started", message.id)
        time.sleep(120)  # the test kills the worker here
    publish(ctx, uow, Echoed(source=message.id), causation=message)


def register(app) -> None:
    """Subscribe :func:`on_ping` to :class:`Ping` in ``app``."""
    subscribe(app, Ping, on_ping)


def raw_noop_job() -> None:
    """A plain RQ job for the bench's raw baseline: counts itself and does nothing else."""
    from flask import current_app

    current_app.extensions["rop"].redis.incr("bus_bench:raw")


def make_delivery(app, tenant_id: str) -> str:
    """A webhook (on a loopback URL) and one pending delivery of a test event for ``tenant_id``;
    returns the delivery id (the route-security walk of the tests uses it)."""
    from hub.bus.models import TenantEvent, WebhookDelivery, WebhookEndpoint
    from hub.cache import refcache
    from hub.db import new_id, unit_of_work, utcnow

    with unit_of_work(app.extensions["rop"].db) as uow:
        if uow.session.get(WebhookEndpoint, tenant_id) is None:
            uow.session.add(WebhookEndpoint(tenant_id=tenant_id, url="http://127.0.0.1:9/hook", secret="whsec_test"))
            refcache(app).bump(uow, "webhooks")
        event = Ping(n=0, mode="noop")
        event.tenant_id = tenant_id
        uow.session.add(TenantEvent(id=event.id, tenant_id=tenant_id, type=event.type, envelope=event.envelope(),
                                    occurred_at=event.occurred_at))
        delivery = WebhookDelivery(id=new_id("whd"), tenant_id=tenant_id, event_id=event.id, event_type=event.type,
                                   status="delivered", attempts=1, delivered_at=utcnow())
        uow.session.add(delivery)
        uow.commit()
    return delivery.id


class SlowCallSchema(Schema):
    url = fields.String(required=True)  # the full URL, query string included


class SlowCall(Command):
    """A provider-like call for ``bench/inflight.py`` (on the provider queue)."""

    type = "bus_test.slow_call"
    queue = "provider"
    schema = SlowCallSchema
    max_retries = 2
    retry_base = 0.0


_HTTP = None


def on_slow_call(ctx, message) -> None:
    """``own_uow`` handler of :class:`SlowCall`: one GET, no unit of work held around it."""
    import httpx

    global _HTTP
    if _HTTP is None:
        _HTTP = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=1024, max_keepalive_connections=1024))
    _HTTP.get(message.payload["url"]).raise_for_status()


def register_slow_call(app) -> None:
    """Register :func:`on_slow_call` (``own_uow=True``) for :class:`SlowCall` in ``app``."""
    register_command_handler(app, SlowCall, on_slow_call, own_uow=True)


class SlowServer:
    """A real HTTP server (in a thread) standing in for a slow provider: ``GET /call?delay=S&key=K``
    answers after S seconds; with ``&hold=N`` it answers as soon as N requests are in flight at
    once (S is then the longest it waits for them), so a test of concurrency does not depend on
    how fast a loaded machine starts its threads. It counts the requests it serves at once,
    overall and per key, for the thread-worker tests and ``bench/inflight.py``. ``start()`` / ``stop()``."""

    def __init__(self) -> None:
        import threading
        from http.server import ThreadingHTTPServer

        server_self = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # 128+ clients connect at once

        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)  # a hold= was reached, or stop()
        self.released = 0  # how many times held requests were let go
        self.stopping = threading.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.per_key: dict[str, int] = {}
        self.max_per_key: dict[str, int] = {}
        self.served = 0
        self.connections = 0  # TCP connections accepted (a keep-alive client reuses its own)
        self.httpd = Server(("127.0.0.1", 0), _slow_handler(server_self))
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="slow-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/call"

    def start(self) -> SlowServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # requests still sleeping or held answer at once
        with self.changed:
            self.changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _enter(self, key: str) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            if key:
                self.per_key[key] = self.per_key.get(key, 0) + 1
                self.max_per_key[key] = max(self.max_per_key.get(key, 0), self.per_key[key])

    def _hold(self, count: int, timeout: float) -> None:
        """Wait until ``count`` requests are in flight at once, ``stop()`` or ``timeout``; the
        request that makes ``count`` releases every request then held."""
        with self.changed:
            released = self.released
            if self.in_flight >= count:
                self.released += 1
                self.changed.notify_all()
                return
            self.changed.wait_for(lambda: self.released > released or self.stopping.is_set(), timeout)

    def _leave(self, key: str) -> None:
        with self.lock:
            self.in_flight -= 1
            self.served += 1
            if key:
                self.per_key[key] -= 1


def _slow_handler(server: SlowServer):
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import parse_qs, urlparse

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection per client thread

        def setup(self):  # once per connection
            super().setup()
            with server.lock:
                server.connections += 1

        def do_GET(self):
            query = parse_qs(urlparse(self.path).query)
            delay = float(query.get("delay", ["0.5"])[0])
            key = query.get("key", [""])[0]
            hold = int(query.get("hold", ["0"])[0])
            server._enter(key)
            try:
                if hold:
                    server._hold(hold, delay)
                else:
                    server.stopping.wait(delay)
            finally:
                server._leave(key)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    return Handler
