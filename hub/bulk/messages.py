"""Commands and events of the bulk service."""
from __future__ import annotations

from marshmallow import Schema, fields

from hub.bus import Command, Event


class JobRefSchema(Schema):
    job_id = fields.String(required=True)


class ValidateBulkJob(Command):
    """Validate a received file's rows, apply the job's policies, then queue its chunks."""

    type = "bulk.validate_job"
    schema = JobRefSchema
    max_retries = 5
    retry_base = 5.0


class ChunkSchema(Schema):
    job_id = fields.String(required=True)
    first_row = fields.Integer(required=True)
    last_row = fields.Integer(required=True)


class ProcessBulkChunk(Command):
    """Submit the valid rows ``first_row..last_row`` of a job as transactions (each by its own ref_id)."""

    type = "bulk.process_chunk"
    queue = "bulk"  # after every other queue of the general workers (hub.queues)
    schema = ChunkSchema
    max_retries = 8
    retry_base = 2.0


class BulkJobSchema(Schema):
    id = fields.String(required=True)
    status = fields.String(required=True)
    reference = fields.String(allow_none=True)
    total = fields.Integer(required=True)
    valid = fields.Integer(required=True)
    invalid = fields.Integer(required=True)
    succeeded = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    refunded = fields.Integer(required=True)
    review = fields.Integer(required=True)
    cancelled = fields.Integer(required=True)
    skipped = fields.Integer(required=True)
    pending = fields.Integer(required=True)
    amount = fields.Integer(required=True)
    amount_succeeded = fields.Integer(required=True)
    currency = fields.String(allow_none=True)


class BulkCompleted(Event):
    """Every valid row of a job reached an outcome (``review`` rows wait for a person)."""

    type = "bulk.completed"
    schema = BulkJobSchema


class BulkCancelled(Event):
    """A job was cancelled: rows not sent yet will not be; rows in flight finish."""

    type = "bulk.cancelled"
    schema = BulkJobSchema


class BulkRejected(Event):
    """A job's policy refused the file (invalid rows, or the wallet cannot cover it)."""

    type = "bulk.rejected"
    schema = BulkJobSchema
