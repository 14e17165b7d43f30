"""Request and response bodies of /v1/events and /v1/webhook."""
from __future__ import annotations

from marshmallow import Schema, fields, validate


class EventQuerySchema(Schema):
    after = fields.Integer(load_default=None, validate=validate.Range(min=0),
                           metadata={"description": "the cursor: events after this sequence number"})
    type = fields.String(load_default=None, metadata={"description": "only events of this type"})
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))


class EventSchema(Schema):
    sequence = fields.Integer()
    id = fields.String()
    type = fields.String()
    version = fields.Integer()
    occurred_at = fields.String()
    correlation_id = fields.String(allow_none=True)
    causation_id = fields.String(allow_none=True)
    client_id = fields.String(allow_none=True)
    tenant_id = fields.String()
    payload = fields.Dict()


class EventListSchema(Schema):
    items = fields.List(fields.Nested(EventSchema))
    next_cursor = fields.String(allow_none=True)


class WebhookInSchema(Schema):
    url = fields.URL(required=True, schemes={"http", "https"}, require_tld=False,
                     validate=validate.Length(max=2000))
    rotate_secret = fields.Boolean(load_default=False,
                                   metadata={"description": "make a new secret; the old one keeps signing 24 h"})
    schedule = fields.List(fields.Integer(validate=validate.Range(min=0, max=86400)), load_default=None,
                           metadata={"description": "seconds between attempts; default about a day"})
    events = fields.List(fields.String(validate=validate.Length(min=1, max=100)), allow_none=True,
                         validate=validate.Length(min=1, max=50),
                         metadata={"description": "the event types to send: types (`transaction.succeeded`) or "
                                                  "patterns (`transaction.*`, `*`); null: every event; "
                                                  "absent: unchanged (every event for a new webhook)"})


class WebhookSchema(Schema):
    url = fields.String()
    secret = fields.String()
    previous_secret_expires_at = fields.DateTime(attribute="previous_until", allow_none=True)
    schedule = fields.List(fields.Integer())
    events = fields.List(fields.String(), metadata={"description": "the event types sent (`*`: every event)"})


class DeliveryQuerySchema(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(["pending", "delivered", "failed"]))
    cursor = fields.String(load_default=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class AttemptSchema(Schema):
    id = fields.String()
    at = fields.DateTime()
    status_code = fields.Integer(allow_none=True)
    error = fields.String(allow_none=True)
    duration_ms = fields.Integer()


class DeliverySchema(Schema):
    id = fields.String()
    event_id = fields.String()
    event_type = fields.String()
    status = fields.String()
    attempts = fields.Integer()
    next_attempt_at = fields.DateTime(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class DeliveryDetailSchema(DeliverySchema):
    attempt_log = fields.List(fields.Nested(AttemptSchema))


class DeliveryListSchema(Schema):
    items = fields.List(fields.Nested(DeliverySchema))
    next_cursor = fields.String(allow_none=True)
