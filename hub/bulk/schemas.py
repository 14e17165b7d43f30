"""Request and response schemas of the bulk API."""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from hub.bulk.models import ITEM_STATUSES, JOB_STATUSES
from hub.bulk.service import ON_INSUFFICIENT_FUNDS, ON_INVALID
from hub.edge import INT32


class BulkSubmitArgs(Schema):
    """Options of POST /v1/bulk (query string; also form fields of a multipart upload, or
    top-level keys of a JSON body)."""

    format = fields.String(load_default=None, metadata={"description": "csv, json, or a plugin's format; "
                                                        "default: by file name, then by content type"})
    reference = fields.String(load_default=None, validate=validate.Length(min=1, max=255),
                              metadata={"description": "the client's bulk reference (idempotency); "
                                                       "default: the file's SHA-256"})
    on_invalid = fields.String(load_default=None, validate=validate.OneOf(ON_INVALID),
                               metadata={"description": "reject (default): any invalid row rejects the file; "
                                                        "skip: process the valid rows"})
    on_insufficient_funds = fields.String(load_default=None, validate=validate.OneOf(ON_INSUFFICIENT_FUNDS),
                                          metadata={"description": "reject (default): the wallet must cover the "
                                                                   "valid rows' total; partial: send rows until "
                                                                   "it runs out"})
    wallet_id = fields.String(load_default=None, metadata={"description": "default: the tenant's main wallet"})


class BulkJobSchema(Schema):
    id = fields.String()
    status = fields.String(metadata={"enum": list(JOB_STATUSES)})
    reference = fields.String(allow_none=True)
    file_name = fields.String(allow_none=True)
    format = fields.String()
    file_sha256 = fields.String()
    on_invalid = fields.String()
    on_insufficient_funds = fields.String()
    wallet_id = fields.String(allow_none=True)
    total = fields.Integer()
    validated = fields.Integer(metadata={"description": "rows checked so far (moves while validating)"})
    valid = fields.Integer()
    invalid = fields.Integer()
    submitted = fields.Integer()
    succeeded = fields.Integer()
    failed = fields.Integer()
    refunded = fields.Integer()
    review = fields.Integer()
    cancelled = fields.Integer()
    skipped = fields.Integer()
    pending = fields.Integer()
    amount = fields.Integer(allow_none=True, metadata={
        "description": "the valid rows' prices; null while the job is validating (not known yet)"})
    amount_succeeded = fields.Integer()
    currency = fields.String(allow_none=True, metadata={"description": "the wallet's, known from the submission"})
    error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    updated_at = fields.DateTime()


class BulkJobListSchema(Schema):
    items = fields.List(fields.Nested(BulkJobSchema))
    next_cursor = fields.String(allow_none=True)


class BulkListArgs(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(JOB_STATUSES))
    cursor = fields.String(load_default=None)
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


class BulkItemArgs(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(ITEM_STATUSES))
    cursor = fields.Integer(load_default=None, validate=[validate.Range(min=0), INT32])
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class BulkItemSchema(Schema):
    row = fields.Integer()
    ref_id = fields.String(allow_none=True)
    product_code = fields.String(allow_none=True)
    customer_no = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": list(ITEM_STATUSES)})
    price = fields.Integer(allow_none=True)
    transaction_id = fields.String(allow_none=True)
    serial_number = fields.String(allow_none=True)
    error = fields.String(allow_none=True)


class BulkItemListSchema(Schema):
    items = fields.List(fields.Nested(BulkItemSchema))
    next_cursor = fields.Integer(allow_none=True)
