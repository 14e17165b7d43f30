"""HTTP of the transactions service (docs/transactions.md, "API")."""
from __future__ import annotations

import re
import time
from http import HTTPStatus

import structlog
from flask import g, request
from flask.views import MethodView

from hub.auth import current_ctx, requires
from hub.availability import REDIS_ERRORS
from hub.edge import Blueprint
from hub.state import current_state
from hub.transactions import lifecycle, service
from hub.transactions.accept import accept
from hub.transactions.schemas import (
    InquiryCreateSchema,
    InquirySchema,
    TransactionCreateSchema,
    TransactionDetailSchema,
    TransactionListArgs,
    TransactionListSchema,
    TransactionSchema,
)
from hub.web import request_uow

bp = Blueprint("transactions", __name__, url_prefix="/v1", description="Purchases, bill inquiries and their outcomes")

log = structlog.get_logger("hub.transactions.api")

_WAIT = re.compile(r"(?:^|[;,\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def _requested_wait() -> float:
    """``Prefer: wait=N`` (RFC 7240), capped; 0 when absent."""
    match = _WAIT.search(request.headers.get("Prefer", ""))
    if not match:
        return 0.0
    return min(float(match.group(1)), lifecycle.settings().max_wait)


def _wait_until_final(transaction_id: str, status: str, seconds: float) -> bool:
    """Block on Redis (no database connection held) until the transaction is final or in
    review, or ``seconds`` pass. The state change pushes to a per-transaction key after its
    commit; the list persists, so a change between our read and our wait is not missed.

    :return: False when Redis could not be waited on (unreachable): the caller answers at
        once, without ``Preference-Applied`` — the purchase itself is committed already.
    """
    if seconds <= 0 or status in lifecycle.FINAL or status == "review":
        return True
    uow = g.get("_rop_uow")
    if uow is not None:
        uow.close()  # give the connection back while waiting
    redis = current_state().redis
    key = lifecycle.WAIT_KEY.format(transaction_id)
    deadline = time.monotonic() + seconds
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            # In slices shorter than the Redis client's socket timeout.
            popped = redis.blpop([key], timeout=min(left, 5.0))
            if popped is not None:
                redis.lpush(key, "1")  # another request may wait on the same transaction
                redis.expire(key, 120)
                return True
    except REDIS_ERRORS as exc:
        log.warning("Prefer: wait not honoured: Redis is unreachable", transaction_id=transaction_id,
                    error=f"{type(exc).__name__}: {exc}"[:300])
        return False


@bp.route("/transactions")
class Transactions(MethodView):
    @requires("transactions:write")
    @bp.arguments(TransactionCreateSchema)
    @bp.response(202, TransactionSchema)
    @bp.alt_response(200, schema=TransactionSchema,
                     description="Final (succeeded, failed, refunded; e.g. under Prefer: wait), or a replay "
                                 "of the same request")
    @bp.doc(responses={402: HTTPStatus(402).name})
    def post(self, body):
        """Buy a product: 202 with the accepted transaction while it is in progress; 200 once it
        is final (``Prefer: wait=N`` answers once it is final or N seconds passed) and for a
        replay of the same ``ref_id`` and body."""
        ctx = current_ctx()
        uow = request_uow()
        # One call of the accept function on PostgreSQL, the Python path on SQLite; either way
        # the wallet row is locked last, for the hold's own writes and the commit (accept.py).
        trx, created = accept(ctx, uow, **body)
        uow.commit()
        wait = _requested_wait()
        headers = {}
        if wait:
            if _wait_until_final(trx.id, trx.status, wait):
                headers["Preference-Applied"] = f"wait={wait:g}"
            trx = service.get(ctx, request_uow(), trx.id)
        in_progress = created and trx.status not in lifecycle.FINAL
        return lifecycle.view(trx), (202 if in_progress else 200), headers

    @requires("transactions:read")
    @bp.arguments(TransactionListArgs, location="query")
    @bp.response(200, TransactionListSchema)
    def get(self, args):
        """The tenant's transactions, newest first: ``?ref_id=&status=&product_code=&customer_no=&source=``."""
        rows, next_cursor = service.list_(current_ctx(), request_uow(), **args)
        return {"items": [lifecycle.view(t) for t in rows], "next_cursor": next_cursor}


@bp.route("/transactions/<transaction_id>")
class TransactionOne(MethodView):
    @requires("transactions:read")
    @bp.response(200, TransactionDetailSchema)
    def get(self, transaction_id: str):
        """One transaction with its timeline (state changes, attempts, callbacks, checks)."""
        uow = request_uow()
        trx = service.get(current_ctx(), uow, transaction_id)
        wait = _requested_wait()
        if wait:
            _wait_until_final(trx.id, trx.status, wait)
            uow = request_uow()
            trx = service.get(current_ctx(), uow, transaction_id)
        return dict(lifecycle.view(trx), timeline=service.timeline(uow, trx))


@bp.route("/inquiries")
class Inquiries(MethodView):
    @requires("transactions:write")
    @bp.arguments(InquiryCreateSchema)
    @bp.response(201, InquirySchema)
    def post(self, body):
        """Look up a postpaid bill: ``{id, amount, customer_name, details, expires_at}``; pay it
        with ``POST /v1/transactions`` and this ``inquiry_id``."""
        uow = request_uow()
        inquiry = service.inquire(current_ctx(), uow, body["product_code"], body["customer_no"])
        uow.commit()
        return service.inquiry_view(inquiry)
