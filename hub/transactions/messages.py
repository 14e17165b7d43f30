"""Commands and events of the transactions service.

Commands go to the ``provider`` queue (served by ``rop worker --queues provider --threads N``):
their handlers call providers, open their own short units of work (``own_uow``) and never
hold one across a call. Events carry the transaction view (the same dict as the API).
"""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from hub.bus import Command, Event
from hub.dumping import CompiledDump


class TransactionRef(Schema):
    transaction_id = fields.String(required=True)


class ProcessRef(TransactionRef):
    #: ``bulk`` for a bulk file's row: its job goes to the ``provider_bulk`` lane
    lane = fields.String(validate=validate.OneOf(["bulk"]))


class CheckRef(Schema):
    transaction_id = fields.String(required=True)
    #: the attempt whose outcome is asked for (a later attempt makes the command stale)
    attempt = fields.Integer(required=True)
    #: an operator's recheck: also for a transaction in ``review``
    force = fields.Boolean(load_default=False)
    #: an unproven callback claimed a refund: also for a ``succeeded`` transaction
    confirm = fields.Boolean(load_default=False)


class ProcessTransaction(Command):
    """Take an accepted transaction to its providers (route, purchase, record the outcome)."""

    type = "transaction.process"
    queue = "provider"
    schema = ProcessRef
    max_retries = 8
    retry_base = 1.0
    retry_cap = 60.0

    @classmethod
    def queue_for(cls, payload: dict) -> str:
        """A bulk file's row waits in the ``provider_bulk`` lane, served after the API's
        purchases (hub.queues)."""
        return "provider_bulk" if payload.get("lane") == "bulk" else cls.queue


class CheckTransactionStatus(Command):
    """Ask the provider for the outcome of a transaction's current attempt (same reference)."""

    type = "transaction.check_status"
    queue = "provider"
    schema = CheckRef
    max_retries = 5
    retry_base = 5.0
    retry_cap = 120.0


class TransactionViewSchema(CompiledDump, Schema):
    """The transaction view (hub.transactions.lifecycle.view): every event's payload and the
    API's answer, dumped through a compiled plan (hub.dumping)."""

    id = fields.String(required=True)
    ref_id = fields.String(required=True)
    product_code = fields.String(required=True)
    customer_no = fields.String(required=True)
    status = fields.String(required=True)
    price = fields.Integer(required=True)
    currency = fields.String(required=True)
    wallet_id = fields.String(required=True)
    inquiry_id = fields.String(allow_none=True)
    serial_number = fields.String(allow_none=True)
    provider_ref = fields.String(allow_none=True)
    provider_code = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    source = fields.String(allow_none=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)


class TransactionAccepted(Event):
    """A transaction was accepted: its price is held on the wallet."""

    type = "transaction.accepted"
    schema = TransactionViewSchema


class TransactionProcessing(Event):
    """A transaction's first purchase request went to a provider."""

    type = "transaction.processing"
    schema = TransactionViewSchema


class TransactionSucceeded(Event):
    """A transaction succeeded: the hold is captured; ``serial_number`` is set where one exists."""

    type = "transaction.succeeded"
    schema = TransactionViewSchema


class TransactionFailed(Event):
    """A transaction failed for good: the hold is released."""

    type = "transaction.failed"
    schema = TransactionViewSchema


class TransactionRefunded(Event):
    """A succeeded transaction was reversed (by its provider or an operator): the price is back."""

    type = "transaction.refunded"
    schema = TransactionViewSchema


class TransactionInReview(Event):
    """A transaction's outcome is still unknown past its deadline: a person decides."""

    type = "transaction.review"
    schema = TransactionViewSchema


EVENT_FOR_STATUS: dict[str, type[Event]] = {
    "pending": TransactionAccepted,
    "processing": TransactionProcessing,
    "succeeded": TransactionSucceeded,
    "failed": TransactionFailed,
    "refunded": TransactionRefunded,
    "review": TransactionInReview,
}
