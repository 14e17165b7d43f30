"""HTTP of the bus: a tenant's events feed and its webhook."""
from __future__ import annotations

from flask.views import MethodView

from hub.auth import current_ctx, requires
from hub.bus import feed, webhooks
from hub.bus.models import TenantEvent, WebhookDelivery
from hub.bus.schemas import (
    DeliveryDetailSchema,
    DeliveryListSchema,
    DeliveryQuerySchema,
    DeliverySchema,
    EventListSchema,
    EventQuerySchema,
    WebhookInSchema,
    WebhookSchema,
)
from hub.edge import Blueprint
from hub.scoping import get_owned, tenant_select
from hub.state import current_state
from hub.web import request_uow

bp = Blueprint("events", __name__, url_prefix="/v1", description="Events feed and webhook")


def _webhook_body(endpoint) -> dict:
    return {"url": endpoint.url, "secret": endpoint.secret, "previous_until": endpoint.previous_until,
            "schedule": webhooks.schedule_of(endpoint), "events": webhooks.events_of(endpoint)}


@bp.route("/events")
class Events(MethodView):
    @requires("events:read")
    @bp.arguments(EventQuerySchema, location="query")
    @bp.response(200, EventListSchema)
    def get(self, query):
        """This tenant's events, in the order they committed; ``after`` is the cursor (a
        sequence number): a follower never skips an event (hub.bus.feed)."""
        ctx = current_ctx()
        feed.sequence(current_state().db.engine)  # the events committed since, numbered
        stmt = (tenant_select(ctx, TenantEvent).where(TenantEvent.feed_seq.is_not(None))
                .order_by(TenantEvent.feed_seq).limit(query["limit"]))
        if query["after"] is not None:
            stmt = stmt.where(TenantEvent.feed_seq > query["after"])
        if query["type"]:
            stmt = stmt.where(TenantEvent.type == query["type"])
        rows = request_uow().session.execute(stmt).scalars().all()
        items = [dict(row.envelope, sequence=row.feed_seq) for row in rows]
        last = str(rows[-1].feed_seq) if rows else (str(query["after"]) if query["after"] is not None else None)
        return {"items": items, "next_cursor": last}


@bp.route("/webhook")
class Webhook(MethodView):
    @requires("webhooks:write")
    @bp.arguments(WebhookInSchema)
    @bp.response(200, WebhookSchema)
    def put(self, body):
        """Set the webhook URL; returns the signing secret (``rotate_secret`` makes a new one).
        ``events`` chooses the event types sent (default: every event)."""
        uow = request_uow()
        events = body.get("events", webhooks.UNCHANGED)
        endpoint = webhooks.set_webhook(current_ctx(), uow, body["url"], rotate_secret=body["rotate_secret"],
                                        schedule=body["schedule"], events=events)
        uow.commit()
        return _webhook_body(endpoint)

    @requires("webhooks:write")
    @bp.response(200, WebhookSchema)
    def get(self):
        """The webhook URL, secret and schedule."""
        return _webhook_body(webhooks.get_webhook(current_ctx(), request_uow()))

    @requires("webhooks:write")
    @bp.response(204)
    def delete(self):
        """Remove the webhook: no more deliveries (pending ones end as failed); 404 when none is set."""
        uow = request_uow()
        webhooks.delete_webhook(current_ctx(), uow)
        uow.commit()


@bp.route("/webhook/deliveries")
class Deliveries(MethodView):
    @requires("webhooks:write")
    @bp.arguments(DeliveryQuerySchema, location="query")
    @bp.response(200, DeliveryListSchema)
    def get(self, query):
        """Deliveries, newest first."""
        items = webhooks.list_deliveries(current_ctx(), request_uow(), status=query["status"],
                                         cursor=query["cursor"], limit=query["limit"])
        return {"items": items, "next_cursor": items[-1].id if len(items) == query["limit"] else None}


@bp.route("/webhook/deliveries/<delivery_id>")
class Delivery(MethodView):
    @requires("webhooks:write")
    @bp.response(200, DeliveryDetailSchema)
    def get(self, delivery_id: str):
        """A delivery and every attempt."""
        ctx, uow = current_ctx(), request_uow()
        delivery = get_owned(uow.session, ctx, WebhookDelivery, delivery_id, what="delivery")
        fields = ("id", "event_id", "event_type", "status", "attempts", "next_attempt_at", "delivered_at", "created_at")
        return {**{f: getattr(delivery, f) for f in fields},
                "attempt_log": webhooks.list_attempts(ctx, uow, delivery_id)}


@bp.route("/webhook/deliveries/<delivery_id>/resend")
class Resend(MethodView):
    @requires("webhooks:write")
    @bp.response(202, DeliverySchema)
    def post(self, delivery_id: str):
        """Send the delivery's event again (a new delivery)."""
        uow = request_uow()
        delivery = webhooks.resend_delivery(current_ctx(), uow, delivery_id)
        uow.commit()
        return delivery
