"""Every sandbox test number end to end: the HTTP API, a real worker, a real Redis, callbacks
over real HTTP. Final status, wallet balance, provider purchases and events must agree."""
from __future__ import annotations

import datetime as dt

import pytest
from rop_sandbox.plugin import purchase_count

from hub.db import utcnow
from hub.transactions import sweep

from .conftest import FUNDS, buy, drain, event_types, transaction, wallet

PRICE_KEYS = ("available", "held")

# number → (final status, money kept by the platform?, events after accepted)
CASES = {
    "081200001234": ("succeeded", True, ["processing", "succeeded"]),
    "081200009999": ("failed", False, ["processing", "failed"]),
    "081200004444": ("failed", False, ["processing", "failed"]),
    "081200008888": ("succeeded", True, ["processing", "succeeded"]),
    "081200007777": ("failed", False, ["processing", "failed"]),
    "081200006666": ("succeeded", True, ["processing", "succeeded"]),
    "081200005555": ("failed", False, ["processing", "failed"]),
    "081200003333": ("refunded", False, ["processing", "succeeded", "refunded"]),
}

# number → the transaction's error: what happened, in the provider's words (never "status")
ERRORS = {
    "081200001234": None,
    "081200009999": "failed at the provider: invalid customer number",
    "081200004444": "no provider could fulfil it: out of stock",
    "081200008888": None,
    "081200007777": "failed at the provider: failed at operator",
    "081200006666": None,
    "081200005555": "failed at the provider: failed at operator",
    "081200003333": "refunded by the provider: reversed by operator",
}


def _final(app, tenant_id, trx_id, status):
    def check():
        found = transaction(app, tenant_id, trx_id)
        return found["status"] == status
    return check


@pytest.mark.parametrize("number", sorted(CASES))
def test_every_sandbox_number_end_to_end(app, client, live, funded, fast, number):
    status, charged, events = CASES[number]
    tenant = funded.tenant
    response = buy(client, tenant, number)
    assert response.status_code == 202, response.json
    accepted = response.json
    assert accepted["status"] == "pending"
    price = accepted["price"]
    assert price > 0
    held = wallet(app, tenant.id, funded.wallet_id)
    assert (held["available"], held["held"]) == (FUNDS - price, price)

    def settled():
        with app.app_context():
            sweep.sweep(now=utcnow() + dt.timedelta(seconds=1))  # due status checks
        return transaction(app, tenant.id, accepted["id"])["status"] == status

    drain(app, settled, timeout=20)
    drain(app)  # the events' own subscribers (webhooks, plugins)
    final = transaction(app, tenant.id, accepted["id"])
    money = wallet(app, tenant.id, funded.wallet_id)
    assert money["held"] == 0
    assert money["available"] == (FUNDS - price if charged else FUNDS)
    if status in ("succeeded", "refunded"):
        assert final["serial_number"] and final["provider_ref"]
    # one attempt, one purchase of its reference — whatever the path
    assert [a["reference"] for a in final["attempts"]] == [f"{accepted['id']}-1"]
    redis = app.extensions["rop"].redis
    assert purchase_count(redis, f"{accepted['id']}-1") == 1
    assert event_types(app, tenant.id, accepted["id"]) == ["transaction.accepted"] + [
        f"transaction.{e}" for e in events]
    assert [e["to_status"] for e in final["timeline"] if e["kind"] == "status"] == ["pending"] + events
    shown = client.get(f"/v1/transactions/{accepted['id']}", headers=tenant.headers).json
    assert shown["error"] == ERRORS[number]
