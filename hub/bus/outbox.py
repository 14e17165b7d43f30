"""The transactional outbox: publish in the caller's transaction, relay after commit, sweep.

:func:`publish` adds an outbox row (and, for a tenant's event, its row in the event store)
to the caller's unit of work; nothing reaches Redis before that transaction commits. After
the commit the relay (:mod:`hub.bus.relay`: a web process's background thread, else at once)
enqueues the messages for their handlers (the messages one handler takes from a send in
one RQ job, :func:`enqueue_envelopes`) and marks the rows published. When the relay cannot (Redis down, process killed between commit and relay),
the periodic :func:`sweep` publishes what was left behind. A crash between enqueue and
mark publishes a row twice; the processed-message record makes the second run a no-op.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import structlog
from flask import Flask, current_app
from rq import Queue, Retry
from sqlalchemy import String, any_, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY

from hub.bus.messages import Event, Message
from hub.bus.models import OutboxMessage, TenantEvent
from hub.bus.registry import registry
from hub.context import CallContext
from hub.db import DriverStatement, UnitOfWork, utcnow
from hub.queues import queue as hub_queue

log = structlog.get_logger("hub.bus")

RUN_HANDLER = "hub.bus.runner.run_handler"
RUN_HANDLER_BATCH = "hub.bus.runner.run_handler_batch"
#: the most messages one job carries to one handler (docs/bus.md, "Batches")
MAX_BATCH = 50

# Core statements (built once): a publish and a relay's mark are on every state change's path,
# and the ORM's unit of work costs several times the statements themselves.
_OUTBOX = OutboxMessage.__table__
# ... and sent through the driver's cursor (hub.db.DriverStatement)
_INSERT_OUTBOX = DriverStatement(insert(_OUTBOX))
_INSERT_EVENT = DriverStatement(insert(TenantEvent.__table__))
# one row per parameter set: psycopg sends an executemany's statements in one pipeline
_MARK_PUBLISHED = DriverStatement(update(_OUTBOX).where(_OUTBOX.c.id == bindparam("message_id"))
                                  .values(published_at=bindparam("now"), publish_count=_OUTBOX.c.publish_count + 1))
#: PostgreSQL: the same for all the relayed rows in one statement (``id = ANY(array)``), sent in autocommit — one statement, one round trip — and committed
#: without waiting for the WAL's flush: ``set_config(…, true)`` sets ``synchronous_commit`` for
#: the statement's own transaction, whose commit reads it (``SET LOCAL`` would need a BEGIN)
_NO_FSYNC_WAIT = select(func.set_config("synchronous_commit", "off", True).label("setting")).subquery("no_fsync_wait")
_MARK_ALL_PUBLISHED_NO_WAIT = DriverStatement(
    update(_OUTBOX).where(_OUTBOX.c.id == any_(bindparam("message_ids", type_=ARRAY(String(40)))),
                          _NO_FSYNC_WAIT.c.setting == "off")
    .values(published_at=bindparam("now"), publish_count=_OUTBOX.c.publish_count + 1))
_EVENTS = TenantEvent.__table__
#: PostgreSQL: a tenant's event into the outbox and the event store in one statement (a
#: data-modifying WITH), one round trip instead of two
_INSERT_OUTBOX_AND_EVENT = DriverStatement(
    insert(_EVENTS).values(id=bindparam("id"), tenant_id=bindparam("tenant_id"), type=bindparam("type"),
                           envelope=bindparam("public", type_=_EVENTS.c.envelope.type),
                           occurred_at=bindparam("occurred_at", type_=_EVENTS.c.occurred_at.type))
    .add_cte(insert(_OUTBOX).values(id=bindparam("id"), type=bindparam("type"), kind=bindparam("kind"),
                                    tenant_id=bindparam("tenant_id"),
                                    envelope=bindparam("envelope", type_=_OUTBOX.c.envelope.type),
                                    created_at=bindparam("created_at", type_=_OUTBOX.c.created_at.type),
                                    published_at=None, publish_count=0).cte("outbox_row")))


def publish(ctx: CallContext, uow: UnitOfWork, message: Message, causation: Message | None = None, *,
            at_commit: bool = False) -> Message:
    """Write ``message`` to the outbox in ``uow``'s transaction; relay it once that commits.

    :param ctx: the caller; its tenant, client and correlation id go into the envelope.
    :param causation: the message being handled that caused this one (sets causation and
        correlation ids).
    :param at_commit: write the rows when ``uow`` commits, with the other messages published
        so, in one batch (an executemany: one round trip), before any other before-commit
        work. Only for a caller without savepoints around the publish (a savepoint rolled
        back would not take the message back): a bulk group, a batch of transactions. A unit
        of work whose ``messages_at_commit`` is set publishes every message so.
    :return: the message, with its envelope fields filled in.
    """
    row, tenant_event, outbox = _prepare(ctx, message, causation)
    if at_commit or uow.messages_at_commit:
        uow.before_commit_batch(("bus.outbox", tenant_event, outbox), row,
                                lambda rows: _write(uow, rows, tenant_event, outbox=outbox), first=True)
    else:
        _write(uow, [row], tenant_event, outbox=outbox)
    if tenant_event:
        from hub.bus.webhooks import on_event

        on_event(ctx, uow, message)  # a webhook delivery, in the same transaction
    if outbox:
        relay_after_commit(uow, [row["envelope"]])
    return message


def _prepare(ctx: CallContext, message: Message, causation: Message | None) -> tuple[dict, bool, bool]:
    """Fill in ``message``'s envelope fields; :return: its outbox row (with ``occurred_at``),
    whether it is a tenant's event (the event store, webhooks) and whether it needs an
    outbox row (a handler takes it, or it is not a tenant's event)."""
    message.tenant_id = ctx.tenant_id
    message.client_id = ctx.on_behalf_of or ctx.client_id
    if causation is not None:
        message.causation_id = causation.id
        message.correlation_id = causation.correlation_id or causation.id
    else:
        message.correlation_id = ctx.correlation_id or ctx.request_id
    message.context = ctx.with_changes(correlation_id=message.correlation_id).to_dict()
    envelope = message.envelope()
    tenant_event = bool(isinstance(message, Event) and message.tenant_id and message.public)
    # A tenant's event that no handler takes would be relayed to nobody: it is kept in the
    # event store (and goes to the tenant's webhook) without an outbox row. Any other message
    # keeps its row, the record of the platform's own events.
    handled = bool(registry(current_app).handlers_for(message.type, message.kind, envelope["payload"]))
    row = {"id": message.id, "type": message.type, "kind": message.kind, "tenant_id": message.tenant_id,
           "envelope": envelope, "created_at": utcnow(), "occurred_at": message.occurred_at}
    return row, tenant_event, handled or not tenant_event


def relay_after_commit(uow: UnitOfWork, envelopes: list[dict], delivery_ids: list[str] = ()) -> None:
    """Relay ``envelopes`` and enqueue the webhook deliveries ``delivery_ids`` once ``uow``
    commits: one hand-over per transaction for all of them (:func:`hub.bus.relay.hand_over`:
    the process's background relay, or sent at once); a new one after a commit or a
    rollback (both drop the unit of work's callbacks)."""
    batch = getattr(uow, "_bus_relay", None)
    if batch is None or batch[2] not in uow._after_commit:
        from hub.bus.relay import hand_over

        app = current_app._get_current_object()
        pending: list[dict] = []
        deliveries: list[str] = []

        def relay_batch() -> None:
            hand_over(app, pending, deliveries)

        batch = (pending, deliveries, relay_batch)
        uow._bus_relay = batch  # type: ignore[attr-defined]
        uow.after_commit(relay_batch)
    batch[0].extend(envelopes)
    batch[1].extend(delivery_ids)


def staged_rows(uow: UnitOfWork, messages: list[tuple[CallContext, Message]]) -> tuple[dict[str, list[dict]],
                                                                                      Callable[[], None]]:
    """:func:`publish` of ``messages`` (each with the context it is published in) for a
    caller that writes the rows itself, in one statement of its own (the accept function on
    PostgreSQL, hub.transactions.accept): the rows :func:`publish` would insert, in the order
    of ``messages``, and ``written``, which the caller calls once its statement wrote them, so
    that they are relayed (and the webhook deliveries enqueued) after ``uow`` commits.

    :return: ``({"events": [bus_events rows], "outbox": [bus_outbox rows],
        "deliveries": [bus_webhook_deliveries rows]}, written)``.
    """
    from hub.bus.webhooks import delivery_rows

    staged: dict[str, list[dict]] = {"events": [], "outbox": [], "deliveries": []}
    events, relayed = [], []
    for ctx, message in messages:
        row, tenant_event, outbox = _prepare(ctx, message, None)
        if tenant_event:
            staged["events"].append({"id": row["id"], "tenant_id": row["tenant_id"], "type": row["type"],
                                     "envelope": _public_envelope(row["envelope"]),
                                     "occurred_at": row["occurred_at"]})
            events.append(message)
        if outbox:
            staged["outbox"].append({k: row[k] for k in ("id", "type", "kind", "tenant_id", "envelope", "created_at")}
                                    | {"published_at": None, "publish_count": 0})
            relayed.append(row["envelope"])
    staged["deliveries"] = delivery_rows(uow, events)

    def written() -> None:
        relay_after_commit(uow, relayed, [row["id"] for row in staged["deliveries"]])

    return staged, written


def _write(uow: UnitOfWork, rows: list[dict], tenant_event: bool, *, outbox: bool = True) -> None:
    """Insert ``rows`` (messages of one kind: tenant events or not) into the outbox (unless
    ``outbox`` is False: no handler takes them), and a tenant's events into the event store;
    several rows are one executemany."""
    conn = uow.session.connection()
    if tenant_event and outbox and conn.dialect.name == "postgresql":
        _INSERT_OUTBOX_AND_EVENT.run(conn, [{**row, "public": _public_envelope(row["envelope"])} for row in rows]
                                     if len(rows) > 1 else {**rows[0], "public": _public_envelope(rows[0]["envelope"])})
        return
    if outbox:
        outbox_rows = [{k: row[k] for k in ("id", "type", "kind", "tenant_id", "envelope", "created_at")}
                       | {"published_at": None, "publish_count": 0} for row in rows]
        _INSERT_OUTBOX.run(conn, outbox_rows if len(outbox_rows) > 1 else outbox_rows[0])
    if tenant_event:
        events = [{"id": row["id"], "tenant_id": row["tenant_id"], "type": row["type"],
                   "envelope": _public_envelope(row["envelope"]), "occurred_at": row["occurred_at"]} for row in rows]
        _INSERT_EVENT.run(conn, events if len(events) > 1 else events[0])


def _public_envelope(envelope: dict) -> dict:
    """What a tenant sees of an event (no internal call context)."""
    return {k: v for k, v in envelope.items() if k not in ("context", "kind")}


def _job_options(klass: type[Message]) -> dict:
    intervals = klass.retry_intervals()
    return {"retry": Retry(max=klass.max_retries, interval=intervals) if klass.max_retries else None,
            "meta": {"max_retries": klass.max_retries}, "result_ttl": 0, "failure_ttl": 7 * 86400,
            "job_timeout": 300}


def _message_class(envelope: dict) -> type[Message]:
    from hub.bus.messages import MESSAGE_TYPES

    return MESSAGE_TYPES.get(envelope["type"], Message)


def _queue_name(klass: type[Message], envelope: dict) -> str:
    return klass.queue_for(envelope.get("payload") or {}) if klass is not Message else "default"


def _queue(state, klass: type[Message], envelope: dict) -> Queue:
    return hub_queue(_queue_name(klass, envelope), state.redis)


def enqueue_envelope(app: Flask, envelope: dict, handlers: Iterable[str] | None = None, pipeline=None) -> int:
    """Enqueue one job per handler of ``envelope`` (or the given ones); return how many."""
    state = app.extensions["rop"]
    names = list(handlers) if handlers is not None else list(
        registry(app).handlers_for(envelope["type"], envelope["kind"], envelope["payload"]))
    klass = _message_class(envelope)
    queue = _queue(state, klass, envelope)
    for name in names:
        queue.enqueue(RUN_HANDLER, envelope, name, pipeline=pipeline, **_job_options(klass),
                      description=f"{envelope['type']} {envelope['id']} -> {name}")
    return len(names)


def enqueue_envelopes(app: Flask, envelopes: list[dict], pipeline=None) -> int:
    """Enqueue ``envelopes`` for their handlers: the messages one handler gets from them go
    in one job (up to :data:`MAX_BATCH` each), in their order; return how many jobs.

    One job per (message, handler) costs RQ's bookkeeping per message; a unit of work that
    publishes many messages for one handler (a bulk group's commands, a batch's outcome
    events) makes one job of them. Messages of different retry policies are not mixed; an
    ``own_uow`` handler gets a batch only when it has a batch form.
    """
    state = app.extensions["rop"]
    reg = registry(app)
    groups: dict[tuple, list[dict]] = {}
    for envelope in envelopes:
        klass = _message_class(envelope)
        for name in reg.handlers_for(envelope["type"], envelope["kind"], envelope["payload"]):
            groups.setdefault((_queue_name(klass, envelope), name, klass.max_retries), []).append(envelope)
    jobs = 0
    for (_, name, _), members in groups.items():
        klass = _message_class(members[0])
        queue = _queue(state, klass, members[0])
        # An own_uow handler without a batch form would take its messages one after the
        # other in one job: one job each keeps them concurrent (its calls wait on the network).
        size = 1 if reg.owns_uow(name) and reg.batch_for(name) is None else MAX_BATCH
        for start in range(0, len(members), size):
            part = members[start:start + size]
            if len(part) == 1:
                queue.enqueue(RUN_HANDLER, part[0], name, pipeline=pipeline, **_job_options(klass),
                              description=f"{part[0]['type']} {part[0]['id']} -> {name}")
            else:
                queue.enqueue(RUN_HANDLER_BATCH, part, name, pipeline=pipeline, **_job_options(klass),
                              description=f"{len(part)} x {part[0]['type']} {part[0]['id']}… -> {name}")
            jobs += 1
    return jobs


def _mark_published(app: Flask, ids: list[str]) -> int:
    """One short transaction on a pooled connection (no ORM session: one UPDATE)."""
    state = app.extensions["rop"]
    now = utcnow()
    if not state.db.is_sqlite:
        # The mark is advisory: if it is lost in a crash the sweep publishes the row again
        # and the processed-message records (or the handler's own guards) absorb the
        # duplicate. No need to wait for fsync.
        with state.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return max(_MARK_ALL_PUBLISHED_NO_WAIT.run(conn, {"message_ids": list(ids), "now": now}), 0)
    with state.db.engine.begin() as conn:
        return max(_MARK_PUBLISHED.run(conn, [{"message_id": i, "now": now} for i in ids]), 0)


def sweep(app: Flask | None = None, *, older_than: float = 5.0, limit: int = 500,
          abandoned_before: float | None = None) -> int:
    """Publish outbox rows left unpublished for ``older_than`` seconds; requeue abandoned jobs.

    Runs every few seconds from ``rop scheduler`` (and directly in tests). Jobs of workers
    that died mid-job (SIGKILL) are handed back to their queues by RQ's started-job
    registry cleanup, which retries them; jobs a worker had dequeued but not started when it
    died (parked, ``hub.worker.hand_back_parked``) go back to the head of their queues once
    its parking lease lapsed (30 s). ``abandoned_before`` (unix time, default now): the
    leases and heartbeats that ended before it count as lapsed.

    :return: the number of outbox rows published.
    """
    app = app or current_app._get_current_object()
    _requeue_abandoned(app, abandoned_before)
    # the relay process's pass, on the rows older than the cutoff: on PostgreSQL a row a relay
    # has taken is skipped, and one the sweep takes is marked before any relay can take it
    from hub.bus.relay import OutboxRelay

    passes = OutboxRelay(app, batch=limit)
    total = 0
    while True:
        found = passes.relay_once(older_than=older_than)
        total += found
        if found < limit:
            break
    if total:
        log.info("outbox sweep published", count=total)
    return total


def _requeue_abandoned(app: Flask, before: float | None) -> None:
    from rq.registry import StartedJobRegistry

    from hub.queues import QUEUES
    from hub.worker import hand_back_parked

    state = app.extensions["rop"]
    handed_back = hand_back_parked(state.redis, before)
    if handed_back:
        log.warning("jobs of a dead worker, dequeued but not started, handed back", count=handed_back)
    for name in QUEUES:
        StartedJobRegistry(name, connection=state.redis).cleanup(timestamp=before)


def sweep_job() -> int:
    """The periodic job (``rop scheduler``): :func:`sweep` with the defaults."""
    return sweep()
