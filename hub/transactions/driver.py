"""The driver: takes transactions to their providers, many at once; one is a batch of one.

The rule that keeps money safe: **no unit of work is open while a provider is called**, and
every purchase is recorded *before* it is sent. Each round of :func:`drive`, for all the
transactions still moving:

1. plan and claim (one unit of work, the rows locked in id order): for each one, what is
   next — a purchase at the next offer of its route, a status check of an attempt sent and
   never answered for ``sent_timeout`` (a worker killed mid-call, a batch delivered twice:
   the same reference is asked, nothing is bought again), or nothing — then a slot of each call's configuration
   (``hub.concurrency``: at most N calls in flight per configuration across every process),
   and every purchase with a slot recorded ``sent`` with the reference it goes under, all
   committed before any call. Routes come from the process's cache of the configurations;
   the claim reads the configurations of its purchases as committed (one statement, rows
   share-locked to the commit): a purchase whose configuration was removed, switched off or
   disabled for the tenant meanwhile is not sent, its attempt answered ``rejected`` in that
   same commit;
2. the calls, concurrently (a thread each, no session open);
3. the outcomes (one unit of work: every status change, the money moves wallet by wallet,
   the events in one insert; :func:`lifecycle.apply_outcome`, under the row lock, so a late
   or repeated answer changes nothing it should not).

A purchase answered ``rejected`` (or a check that finds it never received) goes on to the
next offer in the next round; one without a free slot waits for the next round, and when no
call could go at all the round waits for a slot. A batch delivered twice, or two drivers on
one transaction, claim each attempt once (its unique key): the loser of a batch retries its
purchases one by one and leaves the one taken to the run that took it.
"""
from __future__ import annotations

import datetime as dt

import structlog
from flask import current_app
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError

from hub.db import UnitOfWork, unit_of_work, utcnow
from hub.providers import client as providers
from hub.transactions import calls, lifecycle
from hub.transactions.calls import Step
from hub.transactions.lifecycle import NOTHING_BOUGHT, Outcome
from hub.transactions.models import Attempt, Transaction
from hub.transactions.routing import check_of, next_purchase

log = structlog.get_logger("hub.transactions")
#: the answer recorded for a purchase whose configuration the claim found no longer usable
UNUSABLE = "not sent: the provider configuration was removed, switched off or disabled for the tenant"


def _db():
    return current_app.extensions["rop"].db


def drive(transaction_ids: list[str]) -> None:
    """Take the transactions as far as they go now (safe to run twice, concurrently too)."""
    app = current_app._get_current_object()
    pending = list(dict.fromkeys(transaction_ids))
    spare: dict[str, list] = {}  # a slot waited for, by configuration: the next round uses it
    try:
        while pending:  # each round records or drops a step, or raises Busy; routes are finite
            steps, leased = _start(pending, spare)
            going = [step for step in steps if step.transaction_id in leased and not step.unusable]
            unsent = [step.transaction_id for step in steps if step.unusable]  # rejected: their next offer
            try:
                configs = calls.configs_of({step.tenant_id for step in going})
                closed = calls.closed_breakers(going) if len(going) > 1 else set()
                if len(going) == 1:  # one call: on this thread
                    outcomes = [(going[0], calls.call_provider(going[0], going[0].operation,
                                                               configs[going[0].tenant_id]))]
                else:
                    futures = [(step, calls.call_pool().submit(
                        _call_in_app, app, step, configs[step.tenant_id],
                        (step.config_id, step.tenant_id) in closed)) for step in going]
                    outcomes = [(step, future.result()) for step, future in futures]
            finally:
                calls.release_all(leased.values())  # the round's slots, in one round trip
            pending = record_outcomes(outcomes) + unsent
            waiting = [step for step in steps if step.transaction_id not in leased]
            if waiting and not going and not unsent:
                spare.setdefault(waiting[0].config_id, []).append(calls.wait_for_slot(waiting[0].config_id))
            pending.extend(step.transaction_id for step in waiting)
    finally:
        for leases in spare.values():
            calls.release_all(leases)


def _call_in_app(app, step: Step, configs: dict, breakers_closed: bool) -> Outcome:
    with app.app_context():
        return calls.call_provider(step, step.operation, configs, breakers_closed=breakers_closed)


# -- 1. plan and claim -------------------------------------------------------------------------
def _start(ids: list[str], spare: dict[str, list]) -> tuple[list[Step], dict[str, object]]:
    """Plan the transactions' next calls and claim them, in one unit of work: the steps, and
    the slot of each step that has one (by transaction id; its purchase recorded ``sent``)."""
    leased: dict[str, object] = {}
    try:
        with unit_of_work(_db()) as uow:
            uow.messages_at_commit = True  # one insert for the batch's events
            locked = _locked(uow, ids)
            attempts = _current_attempts(uow, locked)
            steps: list[Step] = []
            claimed: dict[str, Transaction] = {}
            overdue_before = utcnow() - dt.timedelta(seconds=lifecycle.settings().sent_timeout)
            for trx in locked:
                if trx.status not in ("pending", "processing"):
                    continue
                attempt = attempts.get(trx.id)
                if attempt is not None and attempt.state not in NOTHING_BOUGHT:
                    # Sent and never answered for ``sent_timeout``: its status, same reference.
                    # A younger one's call may still be waiting to leave (another run's, a
                    # duplicate delivery's): a check now could read "not found" as never
                    # received and buy elsewhere; its scheduled check comes at sent_timeout.
                    if attempt.state == "sent" and attempt.sent_at <= overdue_before:
                        steps.append(check_of(trx, attempt))
                    continue  # pending/unknown: callbacks and scheduled checks; or decided
                step = next_purchase(uow, trx, attempt)  # or failed: no offer left
                if step is not None:
                    steps.append(step)
                    claimed[trx.id] = trx
            leased = calls.take_slots(steps, spare)
            buying = [step for step in steps if step.kind == "purchase" and step.transaction_id in leased]
            # Routed from the process's cache: the configurations as committed now, share-locked
            # to the commit (a removal waits, then sees these attempts and retires instead)
            usable = providers.usable_now(uow, {(step.config_id, step.tenant_id) for step in buying})
            for step in buying:
                step.unusable = (step.config_id, step.tenant_id) not in usable
                trx = claimed[step.transaction_id]
                attempt = record_attempt(uow, trx, step)
                if step.unusable:  # answered in the claim itself: never left "sent" for the sweep
                    lifecycle.apply_outcome(lifecycle.tenant_ctx(trx), uow, trx, attempt,
                                            Outcome("rejected", message=UNUSABLE, not_sent=True), "purchase")
            uow.commit()
        return steps, leased
    except IntegrityError:  # a concurrent run recorded one of these attempts first
        calls.release_all(leased.values())
        if len(ids) == 1:
            return [], {}  # it carries this one on
        steps, leased = [], {}
        try:
            for transaction_id in ids:  # one by one: only the one taken is left to the other run
                one, one_leased = _start([transaction_id], spare)
                steps.extend(one)
                leased.update(one_leased)
        except BaseException:
            calls.release_all(leased.values())  # the ones claimed so far: their sweep checks them
            raise
        return steps, leased
    except BaseException:
        calls.release_all(leased.values())
        raise


def _locked(uow: UnitOfWork, ids: list[str]) -> list[Transaction]:
    """The transactions, locked in id order (two batches never wait on each other in a circle)."""
    return list(uow.session.scalars(select(Transaction).where(Transaction.id.in_(ids)).order_by(Transaction.id)
                                    .with_for_update().execution_options(populate_existing=True)))


def _current_attempts(uow: UnitOfWork, locked: list[Transaction]) -> dict[str, Attempt]:
    """Each transaction's current attempt (by transaction id), read in one statement."""
    found = _attempts(uow, [(trx.id, trx.attempt_count) for trx in locked if trx.attempt_count])
    return {transaction_id: attempt for (transaction_id, _), attempt in found.items()}


def _attempts(uow: UnitOfWork, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], Attempt]:
    """The attempts of these (transaction id, attempt number) pairs, read in one statement."""
    if not wanted:
        return {}
    return {(a.transaction_id, a.seq): a for a in uow.session.scalars(
        select(Attempt).where(tuple_(Attempt.transaction_id, Attempt.seq).in_(wanted))
        .execution_options(populate_existing=True))}


def record_attempt(uow: UnitOfWork, trx: Transaction, step: Step) -> Attempt:
    """Record the purchase ``step`` as attempt ``step.seq``, ``sent`` (in ``uow``, before the call)."""
    now = utcnow()
    attempt = Attempt(transaction_id=trx.id, tenant_id=trx.tenant_id, seq=step.seq,
                      config_id=step.config_id, provider_code=step.provider_code,
                      provider_sku=step.provider_sku, reference=step.reference, state="sent", sent_at=now)
    uow.session.add(attempt)
    trx.attempt_count = step.seq
    trx.config_id, trx.provider_code = step.config_id, step.provider_code
    trx.check_count = 0
    trx.next_check_at = now + dt.timedelta(seconds=lifecycle.settings().sent_timeout)
    lifecycle.note(uow, trx, "attempt", {"attempt": step.seq, "provider_code": step.provider_code,
                                         "config_id": step.config_id, "provider_sku": step.provider_sku,
                                         "reference": step.reference})
    if trx.status == "pending":
        lifecycle.transition(lifecycle.tenant_ctx(trx), uow, trx, "processing")
    return attempt


# -- 3. the outcomes ---------------------------------------------------------------------------
def record_outcomes(results: list[tuple[Step, Outcome]]) -> list[str]:
    """Apply the calls' answers in one unit of work; :return: the ids whose next offer is due.

    When the batch's unit of work fails (a deadlock, a lost connection), each outcome is
    recorded alone (a failure of one alone raises: the job is retried)."""
    if not results:
        return []
    try:
        return _record(results)
    except Exception:
        if len(results) == 1:
            raise
        log.exception("recording a batch's outcomes failed; recording them one by one", count=len(results))
        return [transaction_id for one in results for transaction_id in _record([one])]


def _record(results: list[tuple[Step, Outcome]]) -> list[str]:
    by_id = {step.transaction_id: (step, outcome) for step, outcome in results}
    try_next: list[str] = []
    with unit_of_work(_db()) as uow:
        uow.messages_at_commit = True  # one insert for the batch's events
        transactions = _locked(uow, list(by_id))
        attempts = _attempts(uow, [(step.transaction_id, step.seq) for step, _ in results])
        for trx in transactions:
            step, outcome = by_id[trx.id]
            attempt = attempts.get((trx.id, step.seq))
            if attempt is not None and lifecycle.apply_outcome(
                    lifecycle.tenant_ctx(trx), uow, trx, attempt, outcome, step.via,
                    not_found_grace=_declared(step.provider_code, "not_found_grace")):
                try_next.append(trx.id)
        uow.commit()
    return try_next


def check(step: Step) -> Outcome:
    """A status check of ``step``'s attempt now (a slot waited for), its answer recorded; a
    purchase never received goes on to the next offer."""
    with calls.slot(step.config_id):
        outcome = calls.call_provider(step, "check_status")
    if record_outcomes([(step, outcome)]):
        drive([step.transaction_id])  # the next offer, or failed with the hold released
    return outcome


def _declared(provider_code: str | None, attribute: str):
    """What the provider class declares (``weak_callback_auth``, ``not_found_grace``), or None
    when it is not installed."""
    cls = providers.provider_class(provider_code) if provider_code else None
    return getattr(cls, attribute) if cls is not None else None
