"""Request and response schemas of the transactions API."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from hub.transactions.messages import TransactionViewSchema
from hub.transactions.models import STATUSES


class TransactionCreateSchema(Schema):
    ref_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    product_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    customer_no = fields.String(required=True, validate=validate.Length(min=1, max=64))
    wallet_id = fields.String(load_default=None, allow_none=True)
    inquiry_id = fields.String(load_default=None, allow_none=True)


class InquiryCreateSchema(Schema):
    product_code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    customer_no = fields.String(required=True, validate=validate.Length(min=1, max=64))


class InquirySchema(Schema):
    id = fields.String()
    product_code = fields.String()
    customer_no = fields.String()
    amount = fields.Integer()
    currency = fields.String()
    customer_name = fields.String(allow_none=True)
    details = fields.Dict()
    expires_at = fields.DateTime()
    transaction_id = fields.String(allow_none=True)
    created_at = fields.DateTime()


class TimelineEntrySchema(Schema):
    at = fields.DateTime()
    kind = fields.String()
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    detail = fields.Dict()
    actor = fields.String(allow_none=True)


class TransactionSchema(TransactionViewSchema):
    """The transaction view (the same fields as the events' payload)."""


class TransactionDetailSchema(TransactionSchema):
    timeline = fields.List(fields.Nested(TimelineEntrySchema))


class TransactionListSchema(Schema):
    items = fields.List(fields.Nested(TransactionSchema))
    next_cursor = fields.String(allow_none=True)


class TransactionListArgs(Schema):
    ref_id = fields.String(load_default=None)
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))
    product_code = fields.String(load_default=None)
    customer_no = fields.String(load_default=None)
    source = fields.String(load_default=None)
    created_from = fields.AwareDateTime(load_default=None)
    created_to = fields.AwareDateTime(load_default=None)
    cursor = fields.String(load_default=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
