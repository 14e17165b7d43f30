"""Taking a transaction to its providers: the command handlers, callbacks and the sweep.

The rule that keeps money safe: **no unit of work is open while a provider is called**, and
every purchase is recorded *before* it is sent.

1. plan (short unit of work, row lock): what is next — a purchase at the next offer of the
   route, a status check of an attempt whose outcome is unknown, or nothing;
2. take a slot of the configuration (``hub.concurrency.limit``: at most N calls in flight
   per configuration across every process);
3. record the attempt (short unit of work: ``sent``, with the reference it is sent under);
4. call the provider with no database session open;
5. record the outcome (short unit of work, row lock, :func:`lifecycle.apply_outcome`).

A run that finds the current attempt ``sent`` without an outcome (a worker killed mid-call,
a duplicate job) does not buy again: it asks the status of that same reference. Only a
purchase answered ``rejected`` moves on to the next offer.
"""
from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog
from flask import current_app
from sqlalchemy import event, select, update
from sqlalchemy.exc import IntegrityError

from hub.bus import publish
from hub.concurrency import release
from hub.context import CallContext
from hub.db import UnitOfWork, unit_of_work, utcnow
from hub.providers import client as providers
from hub.transactions import lifecycle
from hub.transactions.lifecycle import NOTHING_BOUGHT, OPEN_ATTEMPT, Outcome
from hub.transactions.messages import CheckTransactionStatus, ProcessTransaction
from hub.transactions.models import Attempt, Inquiry, Transaction

log = structlog.get_logger("hub.transactions")


@dataclass
class Step:
    """What the next provider call of a transaction is (decided under the row lock)."""

    kind: str  # purchase | check
    transaction_id: str
    tenant_id: str
    seq: int
    config_id: str
    provider_code: str
    provider_sku: str
    reference: str
    customer_no: str
    amount: int | None = None
    provider_ref: str | None = None


def _db():
    return current_app.extensions["rop"].db


def _redis():
    return current_app.extensions["rop"].redis


# -- routing ---------------------------------------------------------------------------------
def _route(uow: UnitOfWork, trx: Transaction) -> list[str]:
    """The configuration ids to try, in order: usable ones through the ``route_transaction`` hook."""
    candidates = [providers.Route(config_id=o["config_id"], provider_code=o["provider_code"],
                                  sku=o["provider_sku"], cost=int(o.get("cost") or 0),
                                  priority=int(o.get("priority") or 0))
                  for o in trx.offers or []]
    ordered = providers.routes_for(uow, lifecycle.tenant_ctx(trx), trx.product_code, candidates)
    seen: list[str] = []
    for route in ordered:
        if route.config_id not in seen:
            seen.append(route.config_id)
    return seen


def _offer(trx: Transaction, config_id: str) -> dict:
    return next(o for o in trx.offers if o["config_id"] == config_id)


def _plan(transaction_id: str, *, force_check: bool = False) -> Step | None:
    """Decide the next provider call of a transaction (a short unit of work)."""
    with unit_of_work(_db()) as uow:
        trx = lifecycle.lock(uow, transaction_id)
        if trx is None:
            log.warning("no such transaction", transaction_id=transaction_id)
            return None
        allowed = ("pending", "processing", "review") if force_check else ("pending", "processing")
        if trx.status not in allowed:
            return None
        attempt = lifecycle.current_attempt(uow, trx)
        if attempt is not None and attempt.state not in NOTHING_BOUGHT:
            if attempt.state == "sent" or (force_check and attempt.state in OPEN_ATTEMPT):
                # Sent and never answered: an unknown outcome. Same reference, status only.
                return _step("check", trx, attempt)
            return None  # pending/unknown: callbacks and scheduled checks; or already decided
        if trx.status == "review":
            return None
        step = _next_purchase(uow, trx, attempt)
        uow.commit()  # the route, if just decided; or the failure
        return step


def _next_purchase(uow: UnitOfWork, trx: Transaction, attempt: Attempt | None) -> Step | None:
    """The purchase at the route's next offer (the route decided now if it was not yet); with
    no offer left the transaction fails (the hold is voided at the commit) and it is None."""
    if trx.route is None:
        trx.route = _route(uow, trx)
    tried = trx.attempt_count
    if tried >= len(trx.route):
        last = attempt.message if attempt is not None else None
        error = ("no provider could fulfil it" + (f": {last}" if last else "")
                 if trx.route else "no provider is available for this product now")
        lifecycle.transition(lifecycle.tenant_ctx(trx), uow, trx, "failed", error=error)
        return None
    config_id = trx.route[tried]
    offer = _offer(trx, config_id)
    return Step("purchase", trx.id, trx.tenant_id, tried + 1, config_id, offer["provider_code"],
                offer["provider_sku"], _reference(uow, trx, tried + 1), trx.customer_no,
                amount=_bill_amount(uow, trx))


def _reference(uow: UnitOfWork, trx: Transaction, seq: int) -> str:
    """The reference a purchase is sent under: one per attempt; a postpaid payment re-uses its
    inquiry's reference (providers match the payment to the bill by it)."""
    if trx.inquiry_id:
        inquiry = uow.session.get(Inquiry, trx.inquiry_id)
        if inquiry is not None:
            return inquiry.reference
    return f"{trx.id}-{seq}"


def _bill_amount(uow: UnitOfWork, trx: Transaction) -> int | None:
    if not trx.inquiry_id:
        return None
    inquiry = uow.session.get(Inquiry, trx.inquiry_id)
    return inquiry.bill_amount if inquiry is not None else None


def _step(kind: str, trx: Transaction, attempt: Attempt) -> Step:
    return Step(kind, trx.id, trx.tenant_id, attempt.seq, attempt.config_id, attempt.provider_code,
                attempt.provider_sku, attempt.reference, trx.customer_no, provider_ref=attempt.provider_ref)


def _record_attempt(step: Step) -> bool:
    """Write the attempt (``sent``) before the call; False when another run made it first."""
    with unit_of_work(_db()) as uow:
        trx = lifecycle.lock(uow, step.transaction_id)
        if trx is None or trx.status not in ("pending", "processing") or trx.attempt_count != step.seq - 1:
            return False
        _add_attempt(uow, trx, step)
        try:
            uow.commit()
        except IntegrityError:  # a concurrent run recorded this attempt first
            return False
    return True


def _add_attempt(uow: UnitOfWork, trx: Transaction, step: Step) -> None:
    now = utcnow()
    uow.session.add(Attempt(transaction_id=trx.id, tenant_id=trx.tenant_id, seq=step.seq,
                            config_id=step.config_id, provider_code=step.provider_code,
                            provider_sku=step.provider_sku, reference=step.reference, state="sent",
                            sent_at=now))
    trx.attempt_count = step.seq
    trx.config_id, trx.provider_code = step.config_id, step.provider_code
    trx.check_count = 0
    trx.next_check_at = now + dt.timedelta(seconds=lifecycle.settings().sent_timeout)
    lifecycle.note(uow, trx, "attempt", {"attempt": step.seq, "provider_code": step.provider_code,
                                         "config_id": step.config_id, "provider_sku": step.provider_sku,
                                         "reference": step.reference})
    if trx.status == "pending":
        lifecycle.transition(lifecycle.tenant_ctx(trx), uow, trx, "processing")


def _record_outcome(step: Step, outcome: Outcome, via: str) -> bool:
    """Apply a call's answer; True when the next offer should be tried."""
    with unit_of_work(_db()) as uow:
        trx = lifecycle.lock(uow, step.transaction_id)
        attempt = uow.session.scalars(select(Attempt).where(Attempt.transaction_id == step.transaction_id,
                                                            Attempt.seq == step.seq)).first()
        if trx is None or attempt is None:
            return False
        try_next = lifecycle.apply_outcome(lifecycle.tenant_ctx(trx), uow, trx, attempt, outcome, via,
                                           not_found_grace=_declared(step.provider_code, "not_found_grace"))
        uow.commit()
    return try_next


# -- calling -----------------------------------------------------------------------------------
def preload_configs(uow: UnitOfWork, tenant_id: str) -> list:
    """Load the tenant's provider configurations into ``uow``'s session and keep them alive.

    The providers client looks a configuration up by id before each call; with the row in
    the session (the identity map holds rows only weakly: the returned list keeps them) that
    lookup is answered from memory, so after the caller ends the read transaction the call
    itself needs no database connection. Keep the list until the call returns.
    """
    loaded: list = []
    event.listen(uow.session, "loaded_as_persistent", lambda _session, row: loaded.append(row))
    providers.usable_configs(uow, tenant_id, healthy_only=False)
    return loaded


def _slot(config_id: str):
    from hub.concurrency import limit

    opts = lifecycle.settings()
    bound = opts.provider_limits.get(config_id, opts.provider_limit)
    return limit(_redis(), f"provider:{config_id}", bound, opts.slot_timeout, ttl=60.0)


def call_provider(step: Step, operation: str, configs: dict | None = None) -> Outcome:
    """Call ``operation`` (purchase or check_status) for ``step`` with no database session open.

    The configuration is read first and the read transaction ends before the call (the
    session keeps the row, so the call itself touches no connection); ``configs``, the
    tenant's configurations prepared before (:func:`_configs_of`, by id), spare that read
    and any session. An exception from the plugin is an unknown outcome: the request may
    have left.
    """
    prepared = (configs or {}).get(step.config_id)
    uow = None if prepared is not None else UnitOfWork(_db().session(readonly=True))
    try:
        if uow is not None:
            loaded = preload_configs(uow, step.tenant_id)
            uow.session.commit()  # ends the read: no connection is held during the call
        try:
            if operation == "purchase":
                request = providers.PurchaseRequest(ref_id=step.reference, sku=step.provider_sku,
                                                    customer_no=step.customer_no, amount=step.amount)
            else:
                request = providers.StatusRequest(ref_id=step.reference, sku=step.provider_sku,
                                                  customer_no=step.customer_no, provider_ref=step.provider_ref)
            # For this tenant: its breaker on the configuration is consulted and fed too.
            if prepared is not None:
                result = providers.call_prepared(prepared, operation, request, tenant_id=step.tenant_id)
            elif operation == "purchase":
                result = providers.purchase(uow, step.config_id, request, tenant_id=step.tenant_id)
            else:
                result = providers.check_status(uow, step.config_id, request, tenant_id=step.tenant_id)
        except Exception as exc:
            log.exception("provider call raised; outcome unknown", operation=operation,
                          transaction_id=step.transaction_id, config_id=step.config_id)
            return Outcome("unknown", message=f"{type(exc).__name__}: {exc}"[:500])
        if uow is not None:
            del loaded  # the rows were kept alive for the call's look-ups
    finally:
        if uow is not None:
            uow.session.close()
    return Outcome.from_result(result)


# -- handlers ----------------------------------------------------------------------------------
def process_transaction(ctx: CallContext, message) -> None:
    """Handler of :class:`ProcessTransaction` (``own_uow``): purchase along the route until an
    answer other than ``rejected``; an unanswered earlier attempt gets a status check instead."""
    run(message.payload["transaction_id"])


def run(transaction_id: str) -> None:
    """Drive one transaction as far as it goes now (safe to run twice, concurrently too)."""
    for _ in range(32):  # bounded: each purchase step consumes one offer of the route
        step = _plan(transaction_id)
        if step is None:
            return
        if step.kind == "check":
            _check(step)
            return
        with _slot(step.config_id):
            if not _record_attempt(step):
                return  # another run took this step; it carries on
            outcome = call_provider(step, "purchase")
        if not _record_outcome(step, outcome, "purchase"):
            return


# -- many at once ------------------------------------------------------------------------------
#: threads per process that make the provider calls of batches (their calls wait on the network)
CALL_THREADS = 128
#: batches one process drives at once; more wait their turn (their rows' calls would only queue
#: for the same database connections and the same GIL, each taking longer: measured, docs/bulk.md)
BATCHES_AT_ONCE = 8
_batch_gate = threading.BoundedSemaphore(BATCHES_AT_ONCE)
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _call_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=CALL_THREADS, thread_name_prefix="rop-provider-call")
        return _pool


def process_transactions(messages: list) -> None:
    """Batch form of :func:`process_transaction` (the ``ProcessTransaction`` commands one unit
    of work published, e.g. a bulk group's): :func:`run_many`, at most
    :data:`BATCHES_AT_ONCE` at a time in this process."""
    with _batch_gate:
        run_many([m.payload["transaction_id"] for m in messages])


def run_many(transaction_ids: list[str]) -> None:
    """Drive several transactions as far as they go now, with the same rules as :func:`run`.

    The same steps, each for all of them at once. One unit of work plans them all (row locks
    in id order), takes the slots of their configurations and records every attempt that has
    one ``sent``; the calls go out together (a thread each, no session open); one unit of
    work records every outcome (the captures last: the tenant's wallet row is locked once).
    Slots are taken without waiting (a batch never sits on slots while it waits for more): a
    purchase without one goes in the next round, with the purchases whose provider rejected
    them (their next offer). When no slot is free at all the batch waits for one, outside any
    unit of work, as :func:`run` does. An unanswered attempt found by the plan (a worker
    killed mid-call) gets its status check through :func:`run`, after the batch.
    """
    app = current_app._get_current_object()
    pending = list(dict.fromkeys(transaction_ids))
    checks: list[str] = []
    spare: dict[str, list] = {}  # a slot waited for, by configuration: the next round uses it
    while pending:  # each round records or drops a step, or raises Busy; routes are finite
        steps, unanswered, leased = _start_many(pending, spare)
        checks.extend(unanswered)
        configs = _configs_of({s.tenant_id for s in steps if s.transaction_id in leased})
        calls = [(step, _call_pool().submit(_call_in_app, app, step, leased[step.transaction_id],
                                            configs[step.tenant_id]))
                 for step in steps if step.transaction_id in leased]
        pending = _record_outcomes([(step, future.result()) for step, future in calls])
        waiting = [s for s in steps if s.transaction_id not in leased]
        if waiting and not calls:
            spare.setdefault(waiting[0].config_id, []).append(_wait_for_slot(waiting[0].config_id))
        pending.extend(s.transaction_id for s in waiting)
    for leases in spare.values():
        for lease in leases:
            release(lease)
    for transaction_id in dict.fromkeys(checks):
        run(transaction_id)


def _start_many(ids: list[str], spare: dict[str, list]) -> tuple[list[Step], list[str], dict[str, object]]:
    """:func:`_plan` and :func:`_record_attempt` for many, in one unit of work: the purchase
    steps, the ids with an unanswered attempt to check, and the slot of each step recorded
    ``sent`` (by transaction id; the others had no free slot and are not recorded)."""
    steps: list[Step] = []
    others: list[str] = []
    leased: dict[str, object] = {}
    try:
        with unit_of_work(_db()) as uow:
            uow.messages_at_commit = True  # one insert for the batch's events
            locked = {}
            for trx in _locked_many(uow, ids):
                if trx.status not in ("pending", "processing"):
                    continue
                attempt = lifecycle.current_attempt(uow, trx)
                if attempt is not None and attempt.state not in NOTHING_BOUGHT:
                    if attempt.state == "sent":
                        others.append(trx.id)  # an unknown outcome: run() asks its status
                    continue
                step = _next_purchase(uow, trx, attempt)
                if step is not None:
                    steps.append(step)
                    locked[trx.id] = trx
            leased = _take_slots(steps, spare)
            for step in steps:
                if step.transaction_id in leased:
                    _add_attempt(uow, locked[step.transaction_id], step)
            uow.commit()
    except IntegrityError:  # a concurrent run recorded one of these attempts first: one by one
        for lease in leased.values():
            release(lease)
        return [], others + [s.transaction_id for s in steps], {}
    except BaseException:
        for lease in leased.values():
            release(lease)
        raise
    return steps, others, leased


def _wait_for_slot(config_id: str):
    """Wait for a slot of ``config_id`` as :func:`run` does (:raise Busy: after the timeout)."""
    from hub.concurrency import acquire

    opts = lifecycle.settings()
    return acquire(_redis(), f"provider:{config_id}", opts.provider_limits.get(config_id, opts.provider_limit),
                   opts.slot_timeout, ttl=60.0)


def _call_in_app(app, step: Step, lease, configs: dict) -> Outcome:
    try:
        with app.app_context():
            return call_provider(step, "purchase", configs)
    finally:
        release(lease)


def _configs_of(tenant_ids: set[str]) -> dict[str, dict]:
    """Each tenant's provider configurations, read and decrypted once for a batch's calls
    (``providers.prepare``: by configuration id)."""
    found: dict[str, dict] = {}
    if tenant_ids:
        with unit_of_work(_db(), readonly=True) as uow:
            for tenant_id in tenant_ids:
                found[tenant_id] = providers.prepare(uow, tenant_id)
            uow.session.commit()
    return found


def _locked_many(uow: UnitOfWork, ids: list[str]) -> list[Transaction]:
    """The transactions, locked in id order (two batches never wait on each other in a circle)."""
    return list(uow.session.scalars(select(Transaction).where(Transaction.id.in_(ids)).order_by(Transaction.id)
                                    .with_for_update().execution_options(populate_existing=True)))


def _take_slots(steps: list[Step], spare: dict[str, list]) -> dict[str, object]:
    """A slot of its configuration for each step that can have one now (a spare one first),
    without waiting; by transaction id."""
    from hub.concurrency import Busy, acquire

    opts = lifecycle.settings()
    leased: dict[str, object] = {}
    for step in steps:
        if spare.get(step.config_id):
            leased[step.transaction_id] = spare[step.config_id].pop()
            continue
        bound = opts.provider_limits.get(step.config_id, opts.provider_limit)
        try:
            leased[step.transaction_id] = acquire(_redis(), f"provider:{step.config_id}", bound, 0, ttl=60.0)
        except Busy:
            continue
    return leased


def _record_outcomes(results: list[tuple[Step, Outcome]]) -> list[str]:
    """:func:`_record_outcome` for many in one unit of work; the ids whose next offer is due."""
    if not results:
        return []
    by_id = {step.transaction_id: (step, outcome) for step, outcome in results}
    try_next: list[str] = []
    try:
        with unit_of_work(_db()) as uow:
            uow.messages_at_commit = True  # one insert for the batch's events
            transactions = _locked_many(uow, list(by_id))
            attempts = {(a.transaction_id, a.seq): a for a in uow.session.scalars(
                select(Attempt).where(Attempt.transaction_id.in_(list(by_id))))}
            for trx in transactions:
                step, outcome = by_id[trx.id]
                attempt = attempts.get((trx.id, step.seq))
                if attempt is not None and lifecycle.apply_outcome(lifecycle.tenant_ctx(trx), uow, trx, attempt,
                                                                   outcome, "purchase"):
                    try_next.append(trx.id)
            uow.commit()
        return try_next
    except Exception:
        log.exception("recording a batch's outcomes failed; recording them one by one", count=len(results))
        return [step.transaction_id for step, outcome in results if _record_outcome(step, outcome, "purchase")]


def _check(step: Step) -> Outcome:
    with _slot(step.config_id):
        outcome = call_provider(step, "check_status")
    if _record_outcome(step, outcome, "status_check"):
        run(step.transaction_id)  # never received: the next offer, or failed with the hold released
    return outcome


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
        run(transaction_id)  # interrupted between a rejection (or "never received") and the next offer
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
        step = _step("check", trx, attempt)
        lifecycle.note(uow, trx, "status_check", {"attempt": seq, "reference": attempt.reference,
                                                  "forced": bool(force), **({"confirm": True} if confirming else {})})
        uow.commit()
    outcome = _check(step)
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


def _declared(provider_code: str | None, attribute: str):
    """What the provider class declares (``weak_callback_auth``, ``not_found_grace``), or None
    when it is not installed."""
    cls = providers.provider_class(provider_code) if provider_code else None
    return getattr(cls, attribute) if cls is not None else None
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


# -- the sweep ---------------------------------------------------------------------------------
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
    with unit_of_work(_db(), readonly=True) as uow:
        due = uow.session.execute(
            select(Transaction.id, Transaction.status, Transaction.next_check_at)
            .where(Transaction.status.in_(("pending", "processing")), Transaction.next_check_at <= now)
            .order_by(Transaction.next_check_at).limit(limit)).all()
        late = uow.session.scalars(
            select(Transaction.id).where(Transaction.status == "processing", Transaction.deadline_at <= now)
            .limit(limit)).all()
    lease = dt.timedelta(seconds=max(opts.sent_timeout, 60.0))
    # A pending transaction whose command waits in a busy provider queue is not lost: driving
    # it again would add a job per transaction to that backlog (each doing alone what its
    # batch will do), and slow the queue further. It is re-driven once the queue has drained.
    backlog = _provider_backlog() if any(status == "pending" for _, status, _ in due) else 0
    for transaction_id, status, due_at in due:
        if status == "pending" and backlog:
            counts["waiting"] += 1
            continue
        with unit_of_work(_db()) as uow:
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
    """Jobs waiting (not started) in the ``provider`` queue."""
    from rq import Queue

    return Queue(ProcessTransaction.queue, connection=_redis()).count


def sweep_job() -> dict[str, int]:
    """The periodic job (``rop scheduler``)."""
    return sweep()
