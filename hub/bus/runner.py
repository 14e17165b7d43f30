"""The RQ job that runs one handler for one message, exactly once in effect.

The handler runs in a unit of work together with the insert of its processed-message
record ``(message id, handler)``: the effect and the record commit together or not at
all. A message already recorded is skipped (a duplicate publish, a retried job whose
first run committed). A failure raises so that RQ retries with the message type's
backoff; the last failure writes a dead letter instead.

A handler registered with ``own_uow=True`` runs outside any unit of work of the runner:
``func(ctx, message)`` opens its own short ones (a provider call must not hold the
database's write lock or a pooled connection). The runner checks the record before
calling it and writes the record after it returns. Between the two the handler may run
twice for one message (a concurrent duplicate job, or a crash after its effect but before
the record): its own state machine must make the second run harmless (docs/bus.md). One
registered with ``recorded=False`` as well gets no record at all: its state machine is the
only guard (the transactions driver's commands).
"""
from __future__ import annotations

import traceback

import structlog
from flask import current_app
from rq import get_current_job
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from hub.bus.messages import Message
from hub.bus.models import DeadLetter, ProcessedMessage
from hub.bus.registry import registry
from hub.context import CallContext
from hub.db import new_id, unit_of_work, utcnow

log = structlog.get_logger("hub.bus")


def run_handler(envelope: dict, handler: str) -> str:
    """Run ``handler`` for ``envelope``; return ``"done"``, ``"duplicate"`` or ``"dead"``."""
    app = current_app._get_current_object()
    state = app.extensions["rop"]
    func = registry(app).lookup(handler)
    job = get_current_job()
    try:
        if func is None:
            raise LookupError(f"no handler {handler!r} is registered in this worker")
        message = Message.from_envelope(envelope)
        ctx = message.call_context()
        if registry(app).owns_uow(handler):
            if not registry(app).records(handler):
                func(ctx, message)
                return "done"
            return _run_own_uow(state.db, func, ctx, message, handler)
        with unit_of_work(state.db) as uow:
            # The record goes in first: a duplicate fails here, before the handler runs.
            uow.session.add(ProcessedMessage(message_id=message.id, handler=handler, tenant_id=message.tenant_id))
            try:
                uow.session.flush()
            except IntegrityError:
                # Recorded before, or by a concurrent run (which held the row until it committed).
                return "duplicate"
            func(ctx, uow, message)
            uow.commit()
        return "done"
    except Exception as exc:
        retries_left = job.retries_left if job is not None else 0
        if retries_left:
            log.warning("handler failed; will retry", handler=handler, message_id=envelope.get("id"),
                        type=envelope.get("type"), error=_one_line(exc), retries_left=retries_left)
            raise
        attempts = _attempts(job)
        record_dead_letter(envelope, handler, _one_line(exc), attempts, traceback.format_exc())
        return "dead"


def run_handler_batch(envelopes: list[dict], handler: str) -> str:
    """Run ``handler`` for several messages (one unit of work's, :func:`enqueue_envelopes`).

    An ordinary handler runs for all of them in one unit of work, each message's record
    beside its effect, so they commit together. Messages recorded before are skipped. When
    the batch fails (a handler raised, a concurrent run recorded one first), nothing of it
    is kept and each message goes back to the queue as a job of its own, with its own
    retries and dead letter: one bad message never holds the others up or takes them down.

    An ``own_uow`` handler gets the messages not recorded yet through its batch form
    (``register_command_handler(batch=…)``), or one after the other; they are recorded after
    it returns. It fails as one job: retried whole (its messages must be safe to run again),
    then a dead letter for each.

    :return: ``"done"``, ``"duplicate"`` (every message recorded before), ``"split"`` or ``"dead"``.
    """
    app = current_app._get_current_object()
    state = app.extensions["rop"]
    reg = registry(app)
    func = reg.lookup(handler)
    if func is not None and not reg.owns_uow(handler):
        return _run_batch(app, state.db, func, envelopes, handler)
    job = get_current_job()
    try:
        if func is None:
            raise LookupError(f"no handler {handler!r} is registered in this worker")
        return _run_own_uow_batch(state.db, func, reg.batch_for(handler), envelopes, handler,
                                  recorded=reg.records(handler))
    except Exception as exc:
        retries_left = job.retries_left if job is not None else 0
        if retries_left:
            log.warning("batch handler failed; will retry", handler=handler, count=len(envelopes),
                        first_message_id=envelopes[0].get("id"), error=_one_line(exc), retries_left=retries_left)
            raise
        trace = traceback.format_exc()
        for envelope in envelopes:
            record_dead_letter(envelope, handler, _one_line(exc), _attempts(job), trace)
        return "dead"


def _recorded(uow, ids: list[str], handler: str) -> set[str]:
    return set(uow.session.scalars(select(ProcessedMessage.message_id).where(
        ProcessedMessage.message_id.in_(ids), ProcessedMessage.handler == handler)))


def _run_batch(app, db, func, envelopes: list[dict], handler: str) -> str:
    from hub.bus.outbox import enqueue_envelope

    try:
        messages = [Message.from_envelope(e) for e in envelopes]  # a bad one splits the batch too
        with unit_of_work(db) as uow:
            seen = _recorded(uow, [m.id for m in messages], handler)
            todo = [m for m in messages if m.id not in seen]
            if not todo:
                return "duplicate"
            uow.session.execute(insert(ProcessedMessage), [
                {"message_id": m.id, "handler": handler, "tenant_id": m.tenant_id, "processed_at": utcnow()}
                for m in todo])
            for message in todo:
                func(message.call_context(), uow, message)
            uow.commit()
        return "done"
    except Exception as exc:  # noqa: BLE001 - any failure: each message is retried on its own
        # Nothing of the batch was kept: each message runs again as a job of its own.
        log.warning("batch failed; its messages run one by one", handler=handler, count=len(envelopes),
                    error=_one_line(exc))
        with app.extensions["rop"].redis.pipeline(transaction=False) as pipe:
            for envelope in envelopes:
                enqueue_envelope(app, envelope, [handler], pipeline=pipe)
            pipe.execute()
        return "split"


def _run_own_uow_batch(db, func, batch, envelopes: list[dict], handler: str, *, recorded: bool = True) -> str:
    messages = [Message.from_envelope(e) for e in envelopes]
    if recorded:
        with unit_of_work(db, readonly=True) as uow:
            seen = _recorded(uow, [m.id for m in messages], handler)
        todo = [m for m in messages if m.id not in seen]
        if not todo:
            return "duplicate"
    else:
        todo = messages
    if batch is not None:
        batch(todo)
    else:
        for message in todo:
            func(message.call_context(), message)
    if not recorded:
        return "done"
    rows = [{"message_id": m.id, "handler": handler, "tenant_id": m.tenant_id, "processed_at": utcnow()}
            for m in todo]
    try:
        with unit_of_work(db) as uow:
            uow.session.execute(insert(ProcessedMessage), rows)
            uow.commit()
    except IntegrityError:
        # A concurrent run recorded some of them first: record the others one by one.
        for row in rows:
            with unit_of_work(db) as uow:
                try:
                    uow.session.execute(insert(ProcessedMessage).values(**row))
                    uow.commit()
                except IntegrityError:
                    pass
    return "done"


def _run_own_uow(db, func, ctx: CallContext, message: Message, handler: str) -> str:
    """Run an ``own_uow`` handler: skip it when recorded, record it once it returned."""
    # Core statements rather than the ORM: these two run around every provider call.
    with unit_of_work(db, readonly=True) as uow:
        seen = uow.session.execute(
            select(ProcessedMessage.message_id).where(ProcessedMessage.message_id == message.id,
                                                      ProcessedMessage.handler == handler)).first()
    if seen is not None:
        return "duplicate"
    func(ctx, message)
    with unit_of_work(db) as uow:
        try:
            uow.session.execute(insert(ProcessedMessage).values(
                message_id=message.id, handler=handler, tenant_id=message.tenant_id, processed_at=utcnow()))
            uow.commit()
        except IntegrityError:
            # A concurrent run of the same message recorded it first; both ran the handler,
            # whose own state machine made the second run a no-op.
            log.info("handler run concurrently; recorded by the other run", handler=handler, message_id=message.id)
    return "done"


def _attempts(job) -> int:
    """How many times the job ran: the first attempt plus its retries."""
    return (job.meta.get("max_retries", 0) if job is not None else 0) + 1


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text.splitlines()[0][:500] if text else type(exc).__name__


def record_dead_letter(envelope: dict, handler: str, error: str, attempts: int, trace: str = "") -> DeadLetter:
    """Write the dead letter of (message, handler) with its last error."""
    state = current_app.extensions["rop"]
    with unit_of_work(state.db) as uow:
        letter = DeadLetter(id=new_id("dlq"), message_id=envelope["id"], type=envelope["type"], handler=handler,
                            tenant_id=envelope.get("tenant_id"), envelope=envelope,
                            last_error=error + ("\n" + trace if trace else ""), attempts=attempts)
        uow.session.add(letter)
        uow.commit()
    log.error("message dead-lettered", handler=handler, message_id=envelope["id"], type=envelope["type"],
              error=error, attempts=attempts)
    return letter
