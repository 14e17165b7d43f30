"""Pending past the deadline goes to review; the operator's actions (recheck, resolve, refund),
each audited, each moving money exactly once."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from hub.context import CallContext
from hub.db import unit_of_work, utcnow
from hub.errors import Conflict, Forbidden, NotFound, ValidationFailed
from hub.tenancy.models import AuditEntry
from hub.transactions import client as transactions
from hub.transactions import sweep

from .conftest import FUNDS, buy, drain, transaction, wallet

OPERATOR = CallContext.system(actor="admin:ops@example.com")


def _operate(app, fn, *args, ctx=OPERATOR):
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        result = fn(ctx, uow, *args)
        uow.commit()
        return result


def _in_review(app, client, funded, number="081200008888") -> dict:
    """A purchase left pending (no callback server) until the sweep passes its deadline."""
    created = buy(client, funded.tenant, number).json
    drain(app)
    assert transaction(app, funded.tenant.id, created["id"])["status"] == "processing"
    with app.app_context():
        counts = sweep.sweep(now=utcnow() + dt.timedelta(hours=2))
    assert counts["review"] == 1
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "review"
    return found


def _audits(app, action):
    with unit_of_work(app.extensions["rop"].db) as uow:
        return [(a.actor, a.target_id, a.after) for a in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action))]


def test_pending_past_the_deadline_goes_to_review_with_the_money_still_held(app, client, funded):
    found = _in_review(app, client, funded)
    assert wallet(app, funded.tenant.id, funded.wallet_id)["held"] == found["price"]
    assert [e["to_status"] for e in found["timeline"] if e["kind"] == "status"] == ["pending", "processing", "review"]
    assert "deadline" in found["error"]


def test_recheck_asks_the_provider_again_and_settles_a_review(app, client, funded):
    found = _in_review(app, client, funded)  # 8888: the sandbox's status says success
    _operate(app, transactions.recheck, found["id"])
    drain(app)
    after = transaction(app, funded.tenant.id, found["id"])
    assert after["status"] == "succeeded" and after["serial_number"]
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS - found["price"]
    assert _audits(app, "transaction.recheck") == [("admin:ops@example.com", found["id"], {"status": "review"})]
    assert any(e["kind"] == "status_check" and e["detail"]["forced"] for e in after["timeline"])


def test_resolve_a_review_as_failed_releases_the_hold_once(app, client, funded):
    found = _in_review(app, client, funded)
    with pytest.raises(ValidationFailed):
        _operate(app, transactions.resolve, found["id"], "failed", " ")
    view = _operate(app, transactions.resolve, found["id"], "failed", "provider confirmed by phone: not sent")
    assert view["status"] == "failed"
    with pytest.raises(Conflict):
        _operate(app, transactions.resolve, found["id"], "succeeded", "changed my mind")
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS, 0)
    assert _audits(app, "transaction.resolve")[0][2]["status"] == "failed"


def test_resolve_a_review_as_succeeded_captures(app, client, funded):
    found = _in_review(app, client, funded)
    _operate(app, transactions.resolve, found["id"], "succeeded", "the customer got the credit")
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - found["price"], 0)
    timeline = transaction(app, funded.tenant.id, found["id"])["timeline"]
    assert timeline[-1]["actor"] == "admin:ops@example.com"
    assert timeline[-1]["detail"]["reason"] == "the customer got the credit"


def test_refund_a_succeeded_transaction_reverses_it_once(app, client, funded, live):
    created = buy(client, funded.tenant, "081200001234").json
    drain(app)
    with pytest.raises(ValidationFailed):
        _operate(app, transactions.refund, created["id"], "")
    _operate(app, transactions.refund, created["id"], "customer complaint #42")
    with pytest.raises(Conflict):
        _operate(app, transactions.refund, created["id"], "again")
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "refunded"
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS
    assert [a[1] for a in _audits(app, "transaction.refund")] == [created["id"]]
    drain(app)


def test_operator_actions_need_the_process_scope_and_stay_in_a_tenant(app, client, funded, tenant_factory):
    created = buy(client, funded.tenant, "081200001234").json
    with pytest.raises(Forbidden):
        _operate(app, transactions.refund, created["id"], "x", ctx=funded.tenant.ctx)
    other = CallContext(tenant_id=tenant_factory().id, client_id="svc", scopes=frozenset({"transactions:process"}))
    with pytest.raises(NotFound):
        _operate(app, transactions.refund, created["id"], "x", ctx=other)


def test_a_late_refund_callback_after_success_reverses_through_the_ledger(app, client, funded, live):
    created = buy(client, funded.tenant, "081200003333").json

    def refunded():
        return transaction(app, funded.tenant.id, created["id"])["status"] == "refunded"

    drain(app, refunded)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["serial_number"]  # it did succeed first
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS
