"""Routing and fallback, callbacks (authentic, forged, from another configuration)."""
from __future__ import annotations

import json

import pytest
from rop_sandbox.plugin import SIGNATURE_HEADER, purchase_count, sign
from sqlalchemy import select

from hub.context import CallContext
from hub.db import unit_of_work
from hub.providers.models import ProviderCallback

from .conftest import FUNDS, add_sandbox, buy, callback_secret, drain, transaction, wallet


def test_out_of_stock_at_the_first_provider_falls_back_to_the_second(app, client, live, funded, route_first,
                                                                      sandbox):
    empty = add_sandbox(app, "Empty shelves", reject_rate=1.0)
    route_first(empty)
    created = buy(client, funded.tenant, "081200001234").json
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "succeeded"
    assert [(a["config_id"], a["state"]) for a in found["attempts"]] == [(empty, "rejected"), (sandbox, "success")]
    redis = app.extensions["rop"].redis
    assert [purchase_count(redis, a["reference"]) for a in found["attempts"]] == [1, 1]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - created["price"], 0)  # one capture
    _assert_one_capture(app, funded.tenant.id, created["id"])


def test_a_failed_purchase_is_never_tried_elsewhere(app, client, live, funded, route_first, sandbox):
    other = add_sandbox(app, "Second")
    route_first(sandbox)
    created = buy(client, funded.tenant, "081200009999").json
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "failed"
    assert [a["config_id"] for a in found["attempts"]] == [sandbox]
    assert other not in [a["config_id"] for a in found["attempts"]]
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS


def test_every_provider_rejecting_fails_and_releases_the_hold(app, client, live, funded, sandbox):
    add_sandbox(app, "Also out", reject_rate=1.0)
    created = buy(client, funded.tenant, "081200004444").json
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "failed" and "no provider could fulfil" in found["error"]
    assert len(found["attempts"]) == 2 and {a["state"] for a in found["attempts"]} == {"rejected"}
    assert wallet(app, funded.tenant.id, funded.wallet_id) ["available"] == FUNDS


def _assert_one_capture(app, tenant_id, transaction_id):
    from hub.wallets.models import Journal

    with unit_of_work(app.extensions["rop"].db) as uow:
        keys = uow.session.scalars(select(Journal.idem_key).where(Journal.tenant_id == tenant_id,
                                                                 Journal.kind == "capture")).all()
    assert keys == [f"{transaction_id}:capture"]


def _post_callback(client, config_id, body: dict, secret: str | None):
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: sign(secret, raw) if secret else "forged"}
    return client.post(f"/callbacks/sandbox/{config_id}", data=raw, headers=headers)


def test_a_forged_callback_changes_nothing(app, client, funded, sandbox):
    """A pending purchase (8888) whose real callback never comes (no live server); a forged
    'success' is refused and the transaction, the money and the events stay as they were."""
    created = buy(client, funded.tenant, "081200008888").json
    drain(app)
    before = transaction(app, funded.tenant.id, created["id"])
    assert before["status"] == "processing"
    reference = before["attempts"][0]["reference"]
    forged = _post_callback(client, sandbox, {"ref_id": reference, "rc": "00", "sn": "FAKE"}, None)
    assert forged.status_code == 403
    drain(app)
    after = transaction(app, funded.tenant.id, created["id"])
    assert after["status"] == "processing" and after["serial_number"] is None
    assert after["timeline"] == before["timeline"]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert money["held"] == created["price"]
    with unit_of_work(app.extensions["rop"].db) as uow:
        reasons = uow.session.scalars(select(ProviderCallback.reason).where(
            ProviderCallback.accepted.is_(False))).all()
    assert reasons == ["bad signature"]


def test_an_authentic_callback_from_another_configuration_changes_nothing(app, client, funded, sandbox,
                                                                          tenant_factory):
    """Another tenant's own configuration can sign callbacks with its own secret; it must
    not settle a purchase that was sent to another configuration."""
    intruder = add_sandbox(app, "Another tenant's own", tenant_id=tenant_factory().id)
    created = buy(client, funded.tenant, "081200008888").json
    drain(app)
    reference = transaction(app, funded.tenant.id, created["id"])["attempts"][0]["reference"]
    response = _post_callback(client, intruder, {"ref_id": reference, "rc": "00", "sn": "X"},
                              "secret-Another tenant's own")
    assert response.status_code == 200  # authentic for its own configuration
    drain(app)
    assert transaction(app, funded.tenant.id, created["id"])["status"] == "processing"


def test_a_duplicated_callback_moves_money_once(app, client, funded, sandbox):
    created = buy(client, funded.tenant, "081200008888").json
    drain(app)
    reference = transaction(app, funded.tenant.id, created["id"])["attempts"][0]["reference"]
    secret = callback_secret(app, sandbox)
    for _ in range(3):
        assert _post_callback(client, sandbox, {"ref_id": reference, "rc": "00", "sn": "SN1",
                                                "sku": "TEL10"}, secret).status_code == 200
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "succeeded" and found["serial_number"] == "SN1"
    _assert_one_capture(app, funded.tenant.id, created["id"])
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS - created["price"]


def test_a_callback_with_weak_proof_is_confirmed_by_a_status_check(app, client, funded, sandbox, live,
                                                                    monkeypatch):
    """A provider declaring ``weak_callback_auth`` (IAK signs only the reference): its
    callback does not move money by itself; a status check of the same reference does."""
    from rop_sandbox.plugin import SandboxProvider

    monkeypatch.setattr(SandboxProvider, "weak_callback_auth", True)
    created = buy(client, funded.tenant, "081200008888").json
    drain(app, lambda: transaction(app, funded.tenant.id, created["id"])["status"] == "succeeded")
    found = transaction(app, funded.tenant.id, created["id"])
    assert [e["detail"].get("weak_proof") for e in found["timeline"] if e["kind"] == "callback"] == [True]
    assert [e["detail"].get("via") for e in found["timeline"] if e["kind"] == "outcome"] == [
        "purchase", "status_check"]
    _assert_one_capture(app, funded.tenant.id, created["id"])


def test_a_success_reported_after_a_failure_moves_no_money_and_is_flagged(app, client, funded, sandbox):
    """A provider changing its mind (an authentic 'success' after its own 'failed') never
    captures a released hold: the transaction stays failed and the timeline says anomaly."""
    created = buy(client, funded.tenant, "081200009999").json
    drain(app)
    reference = transaction(app, funded.tenant.id, created["id"])["attempts"][0]["reference"]
    assert _post_callback(client, sandbox, {"ref_id": reference, "rc": "00", "sn": "LATE"},
                          callback_secret(app, sandbox)).status_code == 200
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "failed" and found["serial_number"] is None
    assert [e["kind"] for e in found["timeline"]][-1] == "anomaly"
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS, 0)


def test_the_state_machine_refuses_illegal_transitions(app, funded):
    from hub.transactions import lifecycle
    from hub.transactions.testing import make_transaction

    transaction_id = make_transaction(app, funded.tenant.id)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        trx = lifecycle.lock(uow, transaction_id)
        for target in ("succeeded", "refunded", "review", "pending"):
            with pytest.raises(lifecycle.IllegalTransition):
                lifecycle.transition(CallContext.system(tenant_id=trx.tenant_id), uow, trx, target)
    assert lifecycle.TRANSITIONS["failed"] == frozenset() and lifecycle.TRANSITIONS["refunded"] == frozenset()
