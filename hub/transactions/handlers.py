"""The transactions service's message handlers, registered in one table: the processing
commands (a batch of purchases, a status check) go to the driver; an authentic provider
callback moves its transaction."""
from __future__ import annotations

import threading

import structlog
from flask import Flask, current_app
from rq.timeouts import BaseTimeoutException
from sqlalchemy import select

from hub.bus import publish, register_command_handler, subscribe
from hub.context import CallContext
from hub.db import UnitOfWork, unit_of_work
from hub.providers.messages import ProviderCallbackReceived
from hub.transactions import calls, driver, lifecycle
from hub.transactions.lifecycle import NOTHING_BOUGHT, OPEN_ATTEMPT, Outcome
from hub.transactions.messages import CheckTransactionStatus, ProcessTransaction
from hub.transactions.models import Attempt, Transaction
from hub.transactions.routing import check_of

log = structlog.get_logger("hub.transactions")

#: batches one process drives at once; more wait their turn (their rows' calls would only queue
#: for the same database connections and the same GIL, each taking longer: measured, docs/bulk.md)
BATCHES_AT_ONCE = 8
_batch_gate = threading.BoundedSemaphore(BATCHES_AT_ONCE)


def register(app: Flask) -> None:
    # Provider calls: own short units of work, never one held across a call.
    # No processed-message record for the driver's commands: every write it makes is
    # guarded by the state it expects (an attempt's unique key, the row's status and current
    # attempt under its lock), so a command run twice changes nothing the first run decided
    # (docs/bus.md, "own_uow").
    register_command_handler(app, ProcessTransaction, process_transaction, own_uow=True,
                             batch=process_transactions, recorded=False)
    register_command_handler(app, CheckTransactionStatus, check_transaction_status, own_uow=True,
                             batch=check_transaction_statuses)
    # Callbacks move money in the runner's unit of work (no provider call).
    subscribe(app, ProviderCallbackReceived, on_provider_callback)


def _db():
    return current_app.extensions["rop"].db


def _redis():
    return current_app.extensions["rop"].redis


def process_transaction(ctx: CallContext, message) -> None:
    """Handler of :class:`ProcessTransaction` (``own_uow``): the driver, for a batch of one."""
    driver.drive([message.payload["transaction_id"]])


def process_transactions(messages: list) -> None:
    """Batch form of :func:`process_transaction` (the commands the relay put in one job,
    whichever requests or bulk groups wrote them): the driver for all of them, at most
    :data:`BATCHES_AT_ONCE` batches at a time in this process."""
    with _batch_gate:
        driver.drive([m.payload["transaction_id"] for m in messages])


def check_transaction_statuses(messages: list) -> None:
    """Batch form of :func:`check_transaction_status` (the sweep's due checks, published
    together): each check made as alone, all at once (a thread each from the status checks'
    own pool, ``calls.check_pool``), so that one slow provider's checks hold one job, not a
    worker thread each. A check that raised (``ConfirmationOpen``, the database away) fails
    the job after the others are made: the bus retries it whole (a status check is safe to
    make again)."""
    app = current_app._get_current_object()

    def one(message) -> None:
        with app.app_context():
            check_transaction_status(message.call_context(), message)
    futures = [calls.check_pool().submit(one, message) for message in messages]
    failed = []
    for future in futures:
        try:
            future.result()
        except BaseTimeoutException:  # the job's own timeout (raised in this thread by RQ)
            for waiting in futures:
                waiting.cancel()  # the checks not started: the job's retry (or the sweep) makes them
            raise
        except Exception as exc:  # noqa: BLE001 - the others still count; the job is retried after
            failed.append(exc)
    if failed:
        raise failed[0]


class ConfirmationOpen(RuntimeError):
    """A confirming status check (a claimed refund of a succeeded transaction) got no final
    answer: the bus retries it (then dead-letters it for an operator)."""


def check_transaction_status(ctx: CallContext, message) -> None:
    """Handler of :class:`CheckTransactionStatus` (``own_uow``): ask the provider about the
    current attempt by its reference; a stale command (a later attempt exists) does nothing.
    ``confirm``: a succeeded transaction's reference is asked too (an unproven callback
    claimed a refund or a failure, after the delivery or while it was in flight: only the
    provider's answer may reverse it)."""
    payload = message.payload
    transaction_id, seq = payload["transaction_id"], payload["attempt"]
    force, confirm = payload.get("force", False), payload.get("confirm", False)
    with unit_of_work(_db(), readonly=True) as uow:
        trx = uow.session.get(Transaction, transaction_id)
        if trx is None:
            return
        attempt = lifecycle.current_attempt(uow, trx)
        status = trx.status
        current = (attempt.seq, attempt.state) if attempt is not None else (None, None)
    if current[0] == seq and current[1] in NOTHING_BOUGHT and status == "processing":
        driver.drive([transaction_id])  # interrupted between a rejection (or "never received") and the next offer
        return
    if current[0] != seq or not _checkable(status, current[1], force=force, confirm=confirm):
        return
    with unit_of_work(_db()) as uow:
        trx = lifecycle.lock(uow, transaction_id)
        attempt = lifecycle.current_attempt(uow, trx)
        if attempt is None or attempt.seq != seq or not _checkable(trx.status, attempt.state, force=force,
                                                                    confirm=confirm):
            return
        # confirming a delivered purchase (no scheduled check follows it), not checking one in flight
        confirming = trx.status == "succeeded"
        step = check_of(trx, attempt)
        lifecycle.note(uow, trx, "status_check", {"attempt": seq, "reference": attempt.reference,
                                                  "forced": bool(force), **({"confirm": True} if confirming else {})})
        uow.commit()
    outcome = driver.check(step)
    if confirm and outcome.state not in ("success", "failed", "refunded") and (
            confirming or _delivered_meanwhile(transaction_id, seq)):
        # A succeeded transaction has no scheduled checks: an unanswered confirmation (the
        # provider or the database away) would leave a real refund unapplied for good. So
        # would a claim checked in flight whose delivery was recorded while the check ran.
        raise ConfirmationOpen(f"the provider's answer to the confirming check of {transaction_id} "
                               f"was {outcome.state!r}")


def _delivered_meanwhile(transaction_id: str, seq: int) -> bool:
    """Whether attempt ``seq`` of the transaction is now its successful one (a success
    recorded while a check of it was out)."""
    with unit_of_work(_db(), readonly=True) as uow:
        trx = uow.session.get(Transaction, transaction_id)
        attempt = lifecycle.current_attempt(uow, trx) if trx is not None else None
        return (trx is not None and attempt is not None and trx.status == "succeeded" and attempt.seq == seq
                and attempt.state == "success")


def _checkable(status: str, attempt_state: str | None, *, force: bool, confirm: bool) -> bool:
    """Whether a status check of the current attempt may go out: an open attempt of a
    processing transaction (or of one in review, forced), or — to confirm a claimed
    refund — the successful attempt of a succeeded one."""
    if attempt_state in OPEN_ATTEMPT:
        return status == "processing" or (force and status == "review")
    return confirm and status == "succeeded" and attempt_state == "success"


def on_provider_callback(ctx: CallContext, uow: UnitOfWork, message) -> None:
    """Subscriber of ``provider.callback_received``: an authentic callback about one of our
    references moves its transaction (same guarded transition as everything else)."""
    payload = message.payload
    reference = payload.get("ref_id")
    if not reference:
        return
    attempt = uow.session.scalars(select(Attempt).where(Attempt.reference == reference)
                                  .order_by(Attempt.seq.desc())).first()
    if attempt is None:
        return  # not a transaction's reference (an inquiry, another service)
    if attempt.config_id != payload.get("config_id"):
        # Authentic for *its* configuration, but about a purchase sent elsewhere: a tenant's
        # own provider configuration must not be able to settle another's transactions.
        log.warning("callback for a reference sent to another configuration", reference=reference,
                    config_id=payload.get("config_id"), expected=attempt.config_id)
        return
    trx = lifecycle.lock(uow, attempt.transaction_id)
    if trx is None:
        return
    uow.session.refresh(attempt)
    outcome = Outcome(state=payload["state"], provider_ref=payload.get("provider_ref"),
                      serial_number=payload.get("serial_number"), message=payload.get("message"),
                      cost=payload.get("cost"))
    proven = bool(payload.get("proven"))
    lifecycle.note(uow, trx, "callback", {"callback_id": payload.get("callback_id"), "attempt": attempt.seq,
                                          "state": outcome.state, **({} if proven else {"weak_proof": True})})
    if not proven:
        # A callback whose authenticity cannot be proven (the configuration has no secret,
        # or the provider's callbacks prove little: a static header, a signature over the
        # reference only) never moves money: it only triggers a status check with the same
        # reference, whose answer does.
        _confirm_by_status_check(uow, trx, attempt, outcome, message)
        return
    lifecycle.apply_outcome(lifecycle.tenant_ctx(trx, correlation_id=message.correlation_id), uow, trx,
                            attempt, outcome, "callback")


#: seconds between two status checks one reference's unproven callbacks may trigger
CALLBACK_CHECK_SPACING = 60


def _confirm_by_status_check(uow: UnitOfWork, trx: Transaction, attempt: Attempt, outcome: Outcome,
                             message) -> None:
    """Publish a status check of ``attempt``'s reference when the unproven callback claims an
    answer that would move money: a final one while the transaction is in flight, a refund
    (or a failure) of a succeeded one. At most one per reference and kind of claim (a
    reversal, any other) every :data:`CALLBACK_CHECK_SPACING` seconds (a forger must not make
    the hub hammer the provider); the scheduled checks go on as before."""
    in_flight = trx.status in lifecycle.IN_FLIGHT and attempt.state in OPEN_ATTEMPT \
        and outcome.state not in ("pending", "unknown")
    reversal = trx.status == "succeeded" and attempt.state == "success" and outcome.state in ("refunded", "failed")
    if not (in_flight or reversal):
        return
    # A refund (or a failure) claimed while the purchase is in flight is asked with ``confirm``
    # too: its success may be recorded before the check runs (an answer recorded late, the
    # database restarting), and the check must then still read the provider's answer — the
    # spacing key below holds back any other check of this reference for a minute.
    claims_a_reversal = outcome.state in ("refunded", "failed")
    # Claims of a reversal are spaced apart from the others: an unproven "success" must not
    # hold back the check of a "refunded" that follows it within the minute.
    kind = "reversal" if claims_a_reversal else "outcome"
    redis, key = _redis(), f"rop:transactions:callback-check:{kind}:{attempt.reference}"
    if redis.exists(key):
        lifecycle.note(uow, trx, "status_check", {"attempt": attempt.seq, "reference": attempt.reference,
                                                  "skipped": "one was asked for this reference within "
                                                             f"{CALLBACK_CHECK_SPACING} s"})
        return
    publish(lifecycle.tenant_ctx(trx, correlation_id=message.correlation_id), uow,
            CheckTransactionStatus(transaction_id=trx.id, attempt=attempt.seq, force=trx.status == "review",
                                   confirm=claims_a_reversal), causation=message)
    # The spacing starts once the check is asked for good (committed). Set before the commit,
    # the key outlived a handler that failed before it (a database restart): its retry found
    # the key, skipped the check, and a provider's refund of a delivered purchase was lost.
    uow.after_commit(lambda: redis.set(key, "1", ex=CALLBACK_CHECK_SPACING))
