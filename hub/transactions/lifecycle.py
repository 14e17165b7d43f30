"""The transaction state machine: the one place a transaction changes status and money moves.

Every change happens under the transaction's row lock (``SELECT … FOR UPDATE``; on SQLite
the writer transaction holds the database lock), is checked against :data:`TRANSITIONS`,
moves money through the wallets client in the same database transaction (idempotency keys
derived from the transaction id), writes a timeline line and publishes the event. A
duplicate worker run, a late callback or a status check that races a callback therefore
finds the transition already made and does nothing.

Outcomes from purchases, status checks and callbacks all go through :func:`apply_outcome`.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, NamedTuple

import structlog
from flask import current_app
from sqlalchemy import select

from hub.auth import service_context
from hub.context import CallContext
from hub.db import UnitOfWork, utcnow
from hub.transactions.models import FINAL, Attempt, TimelineEntry, Transaction
from hub.transactions.settings import Settings

log = structlog.get_logger("hub.transactions")

#: Legal status changes. Money: → succeeded captures the hold, → failed voids it,
#: succeeded → refunded reverses the capture.
TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"processing", "failed"}),
    "processing": frozenset({"succeeded", "failed", "review"}),
    "review": frozenset({"succeeded", "failed"}),
    "succeeded": frozenset({"refunded"}),
    "failed": frozenset(),
    "refunded": frozenset(),
}
#: Attempt states that an answer may still change (no definitive outcome yet).
OPEN_ATTEMPT = frozenset({"sent", "pending", "unknown"})
#: Attempt states under which nothing was bought: the purchase was refused (``rejected``) or
#: the provider never received it (``not_found`` after its grace period). The next offer of
#: the route may be tried.
NOTHING_BOUGHT = frozenset({"rejected", "not_found"})
#: Statuses whose transaction is waiting for a provider's answer.
IN_FLIGHT = frozenset({"processing", "review"})

WAIT_KEY = "rop:transactions:done:{}"
_TIMELINE = TimelineEntry.__table__


class IllegalTransition(Exception):
    """A status change the state machine does not allow (a bug or a stale caller)."""


def settings() -> Settings:
    """The service's tunables: the configuration's (``ROP_TX_*``), unless a test set its own."""
    state = current_app.extensions["rop"]
    found = state.extras.get("transactions.settings")
    if found is None:
        found = state.extras["transactions.settings"] = state.config.transactions or Settings()
    return found


def tenant_ctx(trx: Transaction, *, actor: str | None = None, correlation_id: str | None = None) -> CallContext:
    """The context a worker acts in for ``trx``: its tenant, on behalf of the submitting client."""
    return CallContext(tenant_id=trx.tenant_id, client_id=trx.client_id, scopes=frozenset(),
                       actor=actor or "transactions", correlation_id=correlation_id)


def lock(uow: UnitOfWork, transaction_id: str) -> Transaction | None:
    """The transaction, locked for this unit of work (platform-level: any tenant)."""
    return uow.session.scalars(select(Transaction).where(Transaction.id == transaction_id)
                               .with_for_update().execution_options(populate_existing=True)).first()


def current_attempt(uow: UnitOfWork, trx: Transaction) -> Attempt | None:
    if not trx.attempt_count:
        return None
    return uow.session.scalars(select(Attempt).where(Attempt.transaction_id == trx.id,
                                                     Attempt.seq == trx.attempt_count)
                               .execution_options(populate_existing=True)).first()


def view(trx: Transaction) -> dict[str, Any]:
    """The transaction as the API, the events and other services see it."""
    return {"id": trx.id, "ref_id": trx.ref_id, "product_code": trx.product_code,
            "customer_no": trx.customer_no, "status": trx.status, "price": trx.price,
            "currency": trx.currency, "wallet_id": trx.wallet_id, "inquiry_id": trx.inquiry_id,
            "serial_number": trx.serial_number, "provider_ref": trx.provider_ref,
            "provider_code": trx.provider_code, "error": trx.error, "source": trx.source,
            "created_at": trx.created_at, "updated_at": trx.updated_at, "completed_at": trx.completed_at}


def note(uow: UnitOfWork, trx: Transaction, kind: str, detail: dict[str, Any] | None = None, *,
         actor: str | None = None, from_status: str | None = None, to_status: str | None = None) -> None:
    """Add one line to the transaction's timeline.

    In a unit of work that writes its messages at the commit (``messages_at_commit``: the
    driver's; no savepoints), the lines are written there too, all of them in one insert
    before the money moves."""
    row = {"transaction_id": trx.id, "tenant_id": trx.tenant_id, "kind": kind, "from_status": from_status,
           "to_status": to_status, "detail": detail, "actor": actor, "at": utcnow()}
    if uow.messages_at_commit:
        uow.before_commit_batch(("transactions.timeline",), row, lambda rows: _write_timeline(uow, rows),
                                first=True)
    else:
        uow.session.add(TimelineEntry(**row))


def _write_timeline(uow: UnitOfWork, rows: list[dict[str, Any]]) -> None:
    uow.session.connection().execute(_TIMELINE.insert(), rows)


def publish_status(ctx: CallContext, uow: UnitOfWork, trx: Transaction, *, at_commit: bool = False) -> None:
    """Publish the event of the transaction's current status (payload: its view);
    ``at_commit``: as :func:`hub.bus.publish`'s."""
    from hub.bus import publish
    from hub.transactions.messages import EVENT_FOR_STATUS

    # built by the hub from its own row: dumped through the schema, not validated again
    # (tests/transactions/test_batches.py validates what the outcomes publish)
    publish(ctx, uow, EVENT_FOR_STATUS[trx.status].built(**view(trx)), at_commit=at_commit)


def transition(ctx: CallContext, uow: UnitOfWork, trx: Transaction, new_status: str, *,
               error: str | None = None, actor: str | None = None, detail: dict[str, Any] | None = None) -> None:
    """Move ``trx`` (locked by the caller) to ``new_status``, with its money movement.

    :raise IllegalTransition: when the state machine does not allow it.
    """
    old = trx.status
    if new_status not in TRANSITIONS[old]:
        raise IllegalTransition(f"transaction {trx.id}: {old} → {new_status} is not allowed")
    _move_money(ctx, uow, trx, new_status)
    now = utcnow()
    trx.status = new_status
    trx.updated_at = now
    if error is not None:
        trx.error = error
    elif old == "review":
        trx.error = None  # the review's reason ("no final answer…") no longer holds
    if new_status in FINAL:
        trx.completed_at = now
        trx.next_check_at = None
        trx.deadline_at = None
    if new_status == "review":
        trx.next_check_at = None
    note(uow, trx, "status", detail or ({"error": error} if error else None), actor=actor,
         from_status=old, to_status=new_status)
    publish_status(ctx, uow, trx)
    if new_status in FINAL or new_status == "review":
        uow.after_commit_batch(("transactions.wake",), trx.id, _wake)
    uow.after_commit(_StateHook(ctx, view(trx), old, new_status))


def _move_money(ctx: CallContext, uow: UnitOfWork, trx: Transaction, new_status: str) -> None:
    if trx.hold_id is None or new_status not in ("succeeded", "failed", "refunded"):
        return
    svc = service_context(ctx.with_changes(tenant_id=trx.tenant_id), "transactions")
    # Last in the unit of work: the capture, void or reversal locks the wallet's row until
    # the commit, and every purchase and outcome of the wallet queues on that lock. All the
    # money moves of one unit of work (a batch's outcomes, of any tenants) are made together,
    # wallet by wallet in id order: two batches that lock wallets in different orders would
    # deadlock (and take a purchase waiting on one of them down with them).
    uow.before_commit_batch(("transactions.money",), _Move(trx.wallet_id, new_status, trx.hold_id, trx.id, svc),
                            lambda moves: _move_all(uow, moves))


class _Move(NamedTuple):
    """A money move asked for by a status change: which wallet, why, which hold, whose."""

    wallet_id: str
    status: str  # succeeded: capture; failed: void; refunded: reverse the capture
    hold_id: str
    transaction_id: str
    ctx: CallContext


def _move_all(uow: UnitOfWork, moves: list[_Move]) -> None:
    """The money moves of a unit of work, wallet by wallet in id order; a wallet's captures
    together (its balances move once for all of them: wallets.capture_holds), then its voids
    and reversals, each in the order they were asked for."""
    from hub.wallets import client as wallets

    by_wallet: dict[str, list[_Move]] = {}
    for move in moves:
        by_wallet.setdefault(move.wallet_id, []).append(move)
    for wallet_id in sorted(by_wallet):
        group = by_wallet[wallet_id]
        captures = [(m.hold_id, f"{m.transaction_id}:capture") for m in group if m.status == "succeeded"]
        if captures:
            wallets.capture_holds(group[0].ctx, uow, captures)
        for m in group:
            if m.status == "failed":
                wallets.void_hold(m.ctx, uow, m.hold_id, key=f"{m.transaction_id}:void")
            elif m.status == "refunded":
                wallets.reverse_capture(m.ctx, uow, m.hold_id, key=f"{m.transaction_id}:reverse")


def _wake(transaction_ids: list[str]) -> None:
    """After commit: wake the requests waiting on these transactions (``Prefer: wait``), in
    one round trip."""
    redis = current_app.extensions["rop"].redis
    with redis.pipeline(transaction=False) as pipe:
        for transaction_id in transaction_ids:
            key = WAIT_KEY.format(transaction_id)
            pipe.lpush(key, "1")
            pipe.expire(key, 120)
        pipe.execute()


class _StateHook:
    """After commit: tell the plugins (hook ``transaction_state_changed``)."""

    def __init__(self, ctx: CallContext, transaction: dict[str, Any], old: str, new: str):
        self.ctx, self.transaction, self.old, self.new = ctx, transaction, old, new

    def __call__(self) -> None:
        host = current_app.extensions["rop"].extras.get("plugins")
        if host is not None:
            host.hook.transaction_state_changed(ctx=self.ctx, transaction=self.transaction,
                                                old_state=self.old, new_state=self.new)


# -- outcomes ------------------------------------------------------------------------------
@dataclass
class Outcome:
    """A provider's answer about one attempt, normalized (from a ProviderResult or a callback)."""

    state: str
    provider_ref: str | None = None
    serial_number: str | None = None
    message: str | None = None
    response_code: str | None = None
    cost: int | None = None
    #: the request never left the hub (switched off, breaker open, no connection, the
    #: configuration unusable at the claim): a rejection the provider did not make
    not_sent: bool = False

    @classmethod
    def from_result(cls, result) -> Outcome:
        return cls(state=result.state.value, provider_ref=result.provider_ref, serial_number=result.serial_number,
                   message=result.message, response_code=result.provider_code, cost=result.cost,
                   not_sent=bool((result.data or {}).get("not_sent")))

    def as_detail(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (None, "") and v is not False}


def _schedule_check(trx: Transaction, now: dt.datetime) -> None:
    schedule = settings().check_schedule
    delay = schedule[min(trx.check_count, len(schedule) - 1)]
    trx.next_check_at = now + dt.timedelta(seconds=delay)
    if trx.deadline_at is None:
        trx.deadline_at = now + dt.timedelta(seconds=settings().review_after)


def _read_not_found(outcome: Outcome, attempt: Attempt, via: str, grace: float | None,
                    now: dt.datetime) -> tuple[str, str]:
    """What a "not found" answer means: ``not_found`` (never received: nothing was bought)
    when a status check gives it after the provider's grace period; otherwise ``unknown`` (the
    request may still be on its way, or the provider cannot tell): keep checking."""
    if via != "status_check" or grace is None:
        return "unknown", "not found: the provider declares no grace period, the outcome stays unknown"
    age = (now - attempt.sent_at).total_seconds()
    if age < grace:
        return "unknown", f"not found {age:.0f} s after sending (grace {grace:.0f} s): checking again"
    return "not_found", f"not found {age:.0f} s after sending (grace {grace:.0f} s): never received"


def apply_outcome(ctx: CallContext, uow: UnitOfWork, trx: Transaction, attempt: Attempt, outcome: Outcome,
                  via: str, *, not_found_grace: float | None = None) -> bool:
    """Record ``outcome`` of ``attempt`` and move ``trx`` (both locked by the caller) accordingly.

    :param via: ``purchase`` (the call's own answer), ``status_check`` or ``callback``.
    :param not_found_grace: the provider's ``not_found_grace``: a status check's "not found"
        after it means the purchase was never received (nothing bought); before it, or
        without one, "not found" is an unknown outcome.
    :return: True when nothing was bought (rejected; never received) and the next offer may be tried.

    ``rejected`` means the *request* was refused before anything existed at the provider.
    To the purchase itself that settles it: the purchase did not happen (the next offer may
    be tried). To a status check it says nothing about the purchase — the check was not sent
    (a switched-off configuration, a breaker), or refused (rate limited, a bad key, an IP
    not allowed) — so the outcome stays unknown: checked again later, ``review`` past the
    deadline; never failed, never tried elsewhere. Only "not found" past the provider's
    grace period tells a status check that nothing was bought.
    """
    state = outcome.state
    now = utcnow()
    detail = {"via": via, "attempt": attempt.seq, "reference": attempt.reference, **outcome.as_detail()}
    if state == "not_found":
        state, detail["reading"] = _read_not_found(outcome, attempt, via, not_found_grace, now)
    elif via == "status_check" and state == "rejected":
        state = "unknown"
        detail["treated_as"] = "unknown"
    note(uow, trx, "outcome", detail)
    if attempt.state in OPEN_ATTEMPT:
        attempt.state = state
        attempt.answered_at = now
        attempt.provider_ref = outcome.provider_ref or attempt.provider_ref
        attempt.serial_number = outcome.serial_number or attempt.serial_number
        attempt.response_code = outcome.response_code
        attempt.message = outcome.message
        attempt.cost = outcome.cost if outcome.cost is not None else attempt.cost
        attempt.not_sent = outcome.not_sent and state == "rejected" and via == "purchase"
    elif attempt.state == "success" and state in ("refunded", "failed"):
        attempt.state = "refunded"
        attempt.message = outcome.message
    elif state not in ("pending", "unknown") and state != attempt.state:
        # A definitive answer contradicting an earlier definitive one: keep the first,
        # tell a person (never move money twice on a provider's change of mind).
        _anomaly(uow, trx, f"attempt {attempt.seq} was {attempt.state}, now reported {state} ({via})")
        return False
    if attempt.seq != trx.attempt_count:
        if state == "success":
            _anomaly(uow, trx, f"an earlier attempt ({attempt.seq}) reports success ({via})")
        return False

    status = trx.status
    if state == "success":
        if status in IN_FLIGHT:
            trx.provider_ref = outcome.provider_ref or attempt.provider_ref
            trx.serial_number = outcome.serial_number or attempt.serial_number
            trx.provider_code, trx.config_id = attempt.provider_code, attempt.config_id
            transition(ctx, uow, trx, "succeeded", detail={"via": via})
        elif status == "succeeded" and not trx.serial_number and outcome.serial_number:
            trx.serial_number = outcome.serial_number
        elif status == "failed":
            _anomaly(uow, trx, f"the provider reports success after the transaction failed ({via})")
    elif state == "failed":
        if status in IN_FLIGHT:
            transition(ctx, uow, trx, "failed", error=_reason("failed at the provider", outcome),
                       detail={"via": via})
        elif status == "succeeded":
            transition(ctx, uow, trx, "refunded", error=_reason("failed at the provider after success", outcome),
                       detail={"via": via})
    elif state == "refunded":
        if status == "succeeded":
            transition(ctx, uow, trx, "refunded", error=_reason("refunded by the provider", outcome),
                       detail={"via": via})
        elif status in IN_FLIGHT:
            transition(ctx, uow, trx, "failed", error=_reason("reversed by the provider", outcome),
                       detail={"via": via})
    elif state == "not_found":
        # Never received, the provider's grace period over: nothing was bought under this
        # reference. In flight: the next offer of the route, as after a rejection (none left:
        # failed, the hold released); in review (no more offers are tried): failed.
        if status == "processing":
            return True
        if status == "review":
            transition(ctx, uow, trx, "failed", error=detail["reading"], detail={"via": via})
    elif state == "rejected":
        if via == "purchase":
            return status == "processing"
        # A callback saying the provider refused the purchase: definitive, but the purchase
        # was already sent once — never try elsewhere. (A status check's rejection never
        # gets here: it leaves the outcome unknown, above.)
        if status in IN_FLIGHT:
            transition(ctx, uow, trx, "failed", error=_reason("refused by the provider", outcome),
                       detail={"via": via})
    elif state in ("pending", "unknown") and status == "processing":
        if via == "status_check":
            trx.check_count += 1
        _schedule_check(trx, now)
        if trx.deadline_at is not None and now >= trx.deadline_at:
            transition(ctx, uow, trx, "review", error=f"no final answer from the provider ({state})")
    return False


def _reason(what: str, outcome) -> str:
    """A transaction's ``error``: what happened, then the provider's own words (``failed at the
    provider: invalid customer number``)."""
    message = (outcome.message or "").strip()
    return f"{what}: {message}" if message else what


def _anomaly(uow: UnitOfWork, trx: Transaction, what: str) -> None:
    log.error("transaction anomaly", transaction_id=trx.id, what=what)
    note(uow, trx, "anomaly", {"what": what})
