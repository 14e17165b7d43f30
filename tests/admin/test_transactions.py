"""Transactions in the admin UI: every tenant's list with filters, the timeline, and the
operator's actions (refund, resolve a review, re-check) through the transactions client."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select

from hub.db import unit_of_work
from hub.transactions.lifecycle import Settings
from tests.transactions.conftest import FUNDS, buy, drain, transaction, wallet


@pytest.fixture
def settings(app):
    """Status checks due at once; a pending purchase goes to review at once (no callbacks here)."""
    opts = Settings(check_schedule=(0.0,), review_after=0.0, redrive_after=0.0, sent_timeout=0.0)
    app.extensions["rop"].extras["transactions.settings"] = opts
    return opts


def _settle(app, tenant_id, ids, statuses=("succeeded", "failed", "review")):
    drain(app, until=lambda: all(transaction(app, tenant_id, i)["status"] in statuses for i in ids))


def _audit(app, action):
    from hub.tenancy.models import AuditEntry

    with unit_of_work(app.extensions["rop"].db, readonly=True) as uow:
        return [(a.actor, a.tenant_id, a.target_id, a.after) for a in uow.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action))]


def test_the_list_filters_by_tenant_status_provider_and_dates(app, client, admin_kit, funded, settings,
                                                              tenant_factory):
    ok = buy(client, funded.tenant, "081200001234").json["id"]
    bad = buy(client, funded.tenant, "081200009999").json["id"]
    _settle(app, funded.tenant.id, [ok, bad])
    other = tenant_factory()
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))

    def listed(query=""):
        return set(re.findall(r'href="/admin/transactions/(trx_[0-9a-f]+)"',
                              client.get(f"/admin/transactions/{query}").get_data(as_text=True)))

    assert listed() == {ok, bad}
    assert listed("?status=failed") == {bad}
    assert listed(f"?tenant={funded.tenant.id}&provider=sandbox&status=succeeded") == {ok}
    assert listed(f"?tenant={other.id}") == set()
    today = dt.date.today()
    assert listed(f"?from={today - dt.timedelta(days=1)}&to={today + dt.timedelta(days=1)}") == {ok, bad}
    assert listed(f"?from={today + dt.timedelta(days=2)}") == set()
    refused = client.get("/admin/transactions/?from=yesterday")
    assert refused.status_code == 422 and "must be a date" in refused.get_data(as_text=True)


def test_detail_shows_the_timeline_and_a_refund_reverses_the_money(app, client, admin_kit, funded, settings):
    trx_id = buy(client, funded.tenant, "081200001234").json["id"]
    _settle(app, funded.tenant.id, [trx_id])
    price = transaction(app, funded.tenant.id, trx_id)["price"]
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS - price
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    path = f"/admin/transactions/{trx_id}"
    page = client.get(path).get_data(as_text=True)
    assert 'status-succeeded">succeeded<' in page and 'id="timeline"' in page and 'id="attempts"' in page
    assert "refund-reason" in page and "resolve-reason" not in page
    token = admin_kit.csrf_from(client, path)
    no_reason = client.post(path + "/refund", data={"csrf_token": token, "reason": " "}, follow_redirects=True)
    assert "reason is required" in no_reason.get_data(as_text=True)
    assert transaction(app, funded.tenant.id, trx_id)["status"] == "succeeded"
    asked = client.post(path + "/refund", data={"csrf_token": token, "reason": "customer complaint 12"})
    page = asked.get_data(as_text=True)
    assert asked.status_code == 200 and f"Refund IDR {price:,}?" in page and funded.wallet_id in page
    assert funded.tenant.slug in page and 'name="confirm" value="1"' in page
    assert transaction(app, funded.tenant.id, trx_id)["status"] == "succeeded"  # the first POST only asks
    assert client.post(path + "/refund", data={"csrf_token": token, "reason": "customer complaint 12",
                                                "confirm": "1"}).status_code == 302
    again = client.post(path + "/refund", data={"csrf_token": token, "reason": "double click", "confirm": "1"},
                        follow_redirects=True)
    assert "only a succeeded one can be refunded" in again.get_data(as_text=True)
    assert transaction(app, funded.tenant.id, trx_id)["status"] == "refunded"
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS
    [(actor, tenant_id, target, after)] = _audit(app, "transaction.refund")
    assert (actor, tenant_id, target) == ("admin:op@example.com", funded.tenant.id, trx_id)
    assert after["reason"] == "customer complaint 12"
    assert "operator" in client.get(path).get_data(as_text=True)  # the refund is on the timeline


@pytest.mark.parametrize("outcome,charged", [("succeeded", True), ("failed", False)])
def test_resolving_a_review_captures_or_voids_the_hold(app, client, admin_kit, funded, settings, outcome, charged):
    trx_id = buy(client, funded.tenant, "081200008888").json["id"]  # pending; no callback reaches us here
    _settle(app, funded.tenant.id, [trx_id], statuses=("review",))
    price = transaction(app, funded.tenant.id, trx_id)["price"]
    admin_kit.login(client, admin_kit.make_admin(app, "op@example.com", role="operator"))
    path = f"/admin/transactions/{trx_id}"
    page = client.get(path).get_data(as_text=True)
    assert 'status-review">review<' in page and "recheck" in page and "refund-reason" not in page
    token = admin_kit.csrf_from(client, path)
    assert client.post(path + "/recheck", data={"csrf_token": token}).status_code == 302
    assert _audit(app, "transaction.recheck")
    form = {"csrf_token": token, "outcome": outcome, "reason": "provider portal says so"}
    page = client.post(path + "/resolve", data=form).get_data(as_text=True)
    assert f"Resolve {trx_id} as {outcome}?" in page and f"IDR {price:,}" in page and funded.wallet_id in page
    assert transaction(app, funded.tenant.id, trx_id)["status"] == "review"  # the first POST only asks
    client.post(path + "/resolve", data={**form, "confirm": "1"})
    assert transaction(app, funded.tenant.id, trx_id)["status"] == outcome
    balance = wallet(app, funded.tenant.id, funded.wallet_id)
    assert balance["held"] == 0 and balance["available"] == FUNDS - (price if charged else 0)
    [(actor, _, _, after)] = _audit(app, "transaction.resolve")
    assert actor == "admin:op@example.com" and after["reason"] == "provider portal says so"


def test_another_id_is_not_found_and_actions_need_csrf(app, client, admin_kit, funded, settings):
    admin_kit.login(client, admin_kit.make_admin(app))
    assert client.get("/admin/transactions/trx_missing").status_code == 404
    assert client.post("/admin/transactions/trx_missing/refund", data={"reason": "x"}).status_code == 400
