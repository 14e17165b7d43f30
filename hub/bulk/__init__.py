"""The Digital Bulk Service: files of purchases, validated, sent as transactions, followed (docs/bulk.md)."""
from __future__ import annotations


def init_app(app, api) -> None:
    from hub.bulk import handlers
    from hub.bulk.api import bp
    from hub.bulk.messages import ProcessBulkChunk, ValidateBulkJob
    from hub.bus import register_command_handler, subscribe
    from hub.transactions.messages import (
        TransactionFailed,
        TransactionInReview,
        TransactionRefunded,
        TransactionSucceeded,
    )

    register_command_handler(app, ValidateBulkJob, handlers.validate_job, own_uow=True)
    register_command_handler(app, ProcessBulkChunk, handlers.process_chunk, own_uow=True)
    for event in (TransactionSucceeded, TransactionFailed, TransactionRefunded, TransactionInReview):
        # only a bulk row's transactions: an API purchase's outcome gets no outbox row, job or
        # handler run for it
        subscribe(app, event, handlers.follow_transaction, when=handlers.of_a_bulk_row)
    api.register_blueprint(bp)
