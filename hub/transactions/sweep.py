"""The transactions sweep (a periodic job of ``rop scheduler``): due status checks published,
accepted transactions never processed driven again, transactions past their deadline moved
to ``review``."""
from __future__ import annotations

import datetime as dt

import structlog
from flask import current_app
from sqlalchemy import func, select, update

from hub.bus import publish
from hub.db import unit_of_work, utcnow
from hub.transactions import lifecycle
from hub.transactions.messages import CheckTransactionStatus, ProcessTransaction
from hub.transactions.models import Transaction

log = structlog.get_logger("hub.transactions")


def _db():
    return current_app.extensions["rop"].db


def _redis():
    return current_app.extensions["rop"].redis


def sweep(now: dt.datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Publish due status checks, re-drive accepted transactions that were never processed
    (not while the provider queue has jobs waiting: theirs may be among them), and move
    transactions pending past their deadline to ``review``.

    Each due transaction is claimed by moving its ``next_check_at`` forward with a guarded
    update, so overlapping sweeps do not both publish it.
    """
    now = now or utcnow()
    opts = lifecycle.settings()
    counts = {"checks": 0, "redriven": 0, "review": 0, "waiting": 0}
    # A pending transaction whose command waits in a busy provider queue is not lost: driving
    # it again would add a job per transaction to that backlog (each doing alone what its
    # batch will do), and slow the queue further. It is re-driven once the queue has drained.
    # Meanwhile the pending ones are not even read: tens of thousands of a bulk file's rows
    # waiting in the lane would otherwise fill every sweep's ``limit`` and hold back the
    # status checks of purchases already sent.
    backlog = _provider_backlog()
    due_statuses = ("processing",) if backlog else ("pending", "processing")
    with unit_of_work(_db(), readonly=True) as uow:
        due = uow.session.execute(
            select(Transaction.id, Transaction.status, Transaction.next_check_at)
            .where(Transaction.status.in_(due_statuses), Transaction.next_check_at <= now)
            .order_by(Transaction.next_check_at).limit(limit)).all()
        if backlog:
            counts["waiting"] = uow.session.scalar(select(func.count()).select_from(Transaction).where(
                Transaction.status == "pending", Transaction.next_check_at <= now))
        late = uow.session.scalars(
            select(Transaction.id).where(Transaction.status == "processing", Transaction.deadline_at <= now)
            .limit(limit)).all()
    lease = dt.timedelta(seconds=max(opts.sent_timeout, 60.0))
    # One unit of work for all of them: their commands reach the provider workers as batch
    # jobs (the checks made concurrently inside a job), not a job each.
    with unit_of_work(_db()) as uow:
        uow.messages_at_commit = True
        for transaction_id, status, due_at in due:
            claimed = uow.session.execute(
                update(Transaction).where(Transaction.id == transaction_id, Transaction.status == status,
                                          Transaction.next_check_at == due_at)
                .values(next_check_at=now + lease)).rowcount
            if not claimed:
                continue
            trx = uow.session.get(Transaction, transaction_id)
            ctx = lifecycle.tenant_ctx(trx, actor="transactions:sweep")
            if status == "pending":
                publish(ctx, uow, ProcessTransaction(transaction_id=transaction_id))
                counts["redriven"] += 1
            else:
                publish(ctx, uow, CheckTransactionStatus(transaction_id=transaction_id, attempt=trx.attempt_count))
                counts["checks"] += 1
        uow.commit()
    for transaction_id in late:
        with unit_of_work(_db()) as uow:
            trx = lifecycle.lock(uow, transaction_id)
            if trx is None or trx.status != "processing" or trx.deadline_at is None or trx.deadline_at > now:
                continue
            lifecycle.transition(lifecycle.tenant_ctx(trx, actor="transactions:sweep"), uow, trx, "review",
                                 error="no final answer from the provider before the deadline")
            uow.commit()
            counts["review"] += 1
    if counts["checks"] or counts["redriven"] or counts["review"]:
        log.info("transactions sweep", **counts)
    return counts


def _provider_backlog() -> int:
    """Jobs waiting (not started) in the ``provider`` queue and its lanes."""
    from rq import Queue

    from hub.queues import with_lanes

    return sum(Queue(name, connection=_redis()).count for name in with_lanes([ProcessTransaction.queue]))


def sweep_job() -> dict[str, int]:
    """The periodic job (``rop scheduler``)."""
    return sweep()
