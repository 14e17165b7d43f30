"""Messages and handlers for the bus's own tests and ``bench/bus.py`` (never registered by
the app factory: a test or the bench calls :func:`register`)."""
from __future__ import annotations

import time

from marshmallow import Schema, fields

from hub.bus.messages import Event
from hub.bus.outbox import publish
from hub.bus.registry import subscribe


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
    from hub.db import new_id, unit_of_work, utcnow

    with unit_of_work(app.extensions["rop"].db) as uow:
        if uow.session.get(WebhookEndpoint, tenant_id) is None:
            uow.session.add(WebhookEndpoint(tenant_id=tenant_id, url="http://127.0.0.1:9/hook", secret="whsec_test"))
        event = Ping(n=0, mode="noop")
        event.tenant_id = tenant_id
        uow.session.add(TenantEvent(id=event.id, tenant_id=tenant_id, type=event.type, envelope=event.envelope(),
                                    occurred_at=event.occurred_at))
        delivery = WebhookDelivery(id=new_id("whd"), tenant_id=tenant_id, event_id=event.id, event_type=event.type,
                                   status="delivered", attempts=1, delivered_at=utcnow())
        uow.session.add(delivery)
        uow.commit()
    return delivery.id
