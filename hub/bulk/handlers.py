"""Command and event handlers of the bulk service (wired in :func:`hub.bulk.init_app`)."""
from __future__ import annotations

from hub.bulk import service
from hub.bus import Message
from hub.context import CallContext
from hub.db import UnitOfWork
from hub.state import current_state


def validate_job(ctx: CallContext, message: Message) -> None:
    """ValidateBulkJob (own units of work: one per batch of rows)."""
    service.validate_job(ctx, current_state().db, message.payload["job_id"])


def process_chunk(ctx: CallContext, message: Message) -> None:
    """ProcessBulkChunk (own units of work: a few rows each, so a kill loses nothing committed)."""
    payload = message.payload
    service.process_chunk(ctx, current_state().db, payload["job_id"], payload["first_row"], payload["last_row"])


def of_a_bulk_row(payload: dict) -> bool:
    """Whether a transaction event is about a bulk row's transaction (its ``source``)."""
    return service.bulk_row_of(payload) is not None


def follow_transaction(ctx: CallContext, uow: UnitOfWork, message: Message) -> None:
    """transaction.succeeded/failed/refunded/review: move the row of a bulk transaction."""
    service.apply_transaction_event(ctx, uow, message.payload)
