"""Callbacks whose authenticity cannot be proven never move money.

The attack: the sandbox signed callbacks with a constant secret and ``rop demo`` configured
it with no credentials; a tenant, seeing its configuration id and attempt reference on its
transaction's timeline, signed a "refunded" callback with the constant and got its money
back for a delivered purchase. Now no plugin has a default secret, the hub generates one per
configuration, and a callback of a configuration without one only triggers a status check
of its reference.
"""
from __future__ import annotations

import json

from rop_sandbox.plugin import SIGNATURE_HEADER, sign
from sqlalchemy import select

from hub.db import unit_of_work
from hub.providers.models import ProviderCallback, ProviderConfig
from hub.queues import queue

from .conftest import FUNDS, buy, callback_secret, captured, drain, in_flight, transaction, wallet

OLD_CONSTANT = "sandbox-secret"


def _callback(client, config_id: str, body: dict, secret: str | None):
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({SIGNATURE_HEADER: sign(secret, raw)} if secret else {})}
    return client.post(f"/callbacks/sandbox/{config_id}", data=raw, headers=headers)


def _delivered(app, client, funded, number: str = "081200001234") -> dict:
    created = buy(client, funded.tenant, number).json
    drain(app, lambda: transaction(app, funded.tenant.id, created["id"])["status"] == "succeeded")
    return transaction(app, funded.tenant.id, created["id"])


def _without_secret(app, config_id: str) -> None:
    """Make the configuration as one added before the hub generated secrets: no credentials."""
    from hub.providers import crypto

    with unit_of_work(app.extensions["rop"].db) as uow:
        row = uow.session.get(ProviderConfig, config_id)
        row.credentials_encrypted = crypto.encrypt(app.extensions["rop"].config.encryption_keys, {})
        uow.commit()


def _captured_once(app, funded, found: dict) -> None:
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS - found["price"], 0)


def _checks_unanswered(monkeypatch, *, first_only: bool) -> list:
    """Status checks answered "unknown" (the first one only, or all); :return: the steps
    of the checks sent, as they are sent."""
    from hub.transactions import calls
    from hub.transactions.lifecycle import Outcome

    real, sent = calls.call_provider, []

    def unanswered(step, operation, *args, **kwargs):
        if operation == "check_status":
            sent.append(step)
            if len(sent) == 1 or not first_only:
                return Outcome(state="unknown", message="timed out")
        return real(step, operation, *args, **kwargs)

    monkeypatch.setattr(calls, "call_provider", unanswered)
    return sent


def _delivered_unrecorded(app, client, funded, monkeypatch) -> dict:
    """A 3333 purchase the provider delivered (its refund comes later) whose answer the hub
    lost (as when the database restarts under the call): in flight, its attempt unknown."""
    from hub.transactions import calls
    from hub.transactions.lifecycle import Outcome

    real = calls.call_provider

    def answer_lost(step, operation, *args, **kwargs):
        outcome = real(step, operation, *args, **kwargs)  # the provider delivers
        return Outcome(state="unknown", message="timed out") if operation == "purchase" else outcome

    monkeypatch.setattr(calls, "call_provider", answer_lost)
    created = buy(client, funded.tenant, "081200003333").json
    drain(app)
    monkeypatch.setattr(calls, "call_provider", real)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "processing" and found["attempts"][0]["state"] == "unknown"
    return found


def _record_late_success(app, transaction_id: str) -> None:
    """The purchase's own answer (success), recorded late."""
    from hub.transactions import lifecycle
    from hub.transactions.lifecycle import Outcome
    from hub.transactions.models import Attempt

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        trx = lifecycle.lock(uow, transaction_id)
        attempt = uow.session.scalars(select(Attempt).where(Attempt.transaction_id == transaction_id)).one()
        lifecycle.apply_outcome(lifecycle.tenant_ctx(trx), uow, trx, attempt, Outcome(state="success"), "purchase")
        uow.commit()


def test_the_hub_generates_each_configurations_callback_secret(app, sandbox):
    from hub.providers import service

    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        other = service.add_config(uow, "sandbox", "Another")
        given = service.add_config(uow, "sandbox", "Given", credentials={"callback_secret": "mine-and-long"})
        uow.commit()
        secrets = [service.callback_secret(service.get_config(uow, c)) for c in (sandbox, other.id, given.id)]
        # Replacing the credentials without naming the secret keeps it (the provider keeps
        # signing with it).
        service.set_credentials(uow, other.id, {})
        uow.commit()
        kept = service.callback_secret(service.get_config(uow, other.id))
    assert secrets[2] == "mine-and-long" and kept == secrets[1]
    assert len(set(secrets)) == 3 and OLD_CONSTANT not in secrets
    assert all(len(s) >= 32 for s in secrets[:2])


def test_a_refund_forged_with_the_old_constant_is_refused_and_moves_no_money(app, client, funded, sandbox):
    found = _delivered(app, client, funded)
    reference, config_id = found["attempts"][0]["reference"], found["attempts"][0]["config_id"]
    assert config_id == sandbox  # what the tenant sees on its timeline
    forged = _callback(client, sandbox, {"ref_id": reference, "rc": "60", "sku": "TEL10"}, OLD_CONSTANT)
    assert forged.status_code == 403
    drain(app)
    after = transaction(app, funded.tenant.id, found["id"])
    assert after["status"] == "succeeded" and after["timeline"] == found["timeline"]
    _captured_once(app, funded, found)


def test_without_a_secret_a_forged_refund_only_triggers_a_status_check(app, client, funded, sandbox):
    """A configuration with no secret (made before the hub generated them): the tenant's
    unsigned "refunded" callback is read, answered 200 ``verified: false``, and asks the
    provider about the reference; the provider says success, so nothing moves. A second one
    within a minute asks nothing more."""
    found = _delivered(app, client, funded)
    _without_secret(app, sandbox)
    reference = found["attempts"][0]["reference"]
    body = {"ref_id": reference, "rc": "60", "sku": "TEL10"}
    for signed_with in (OLD_CONSTANT, None):
        response = _callback(client, sandbox, body, signed_with)
        assert response.status_code == 200 and response.json["verified"] is False
    drain(app)
    after = transaction(app, funded.tenant.id, found["id"])
    assert after["status"] == "succeeded"
    _captured_once(app, funded, found)
    new = after["timeline"][len(found["timeline"]):]
    assert sorted(e["kind"] for e in new) == ["callback", "callback", "outcome", "status_check", "status_check"]
    assert [e["detail"].get("weak_proof") for e in new if e["kind"] == "callback"] == [True, True]
    checks = [e["detail"] for e in new if e["kind"] == "status_check"]
    assert sorted(("skipped" in c, c.get("confirm", False)) for c in checks) == [(False, True), (True, False)]
    outcome = next(e["detail"] for e in new if e["kind"] == "outcome")
    assert (outcome["via"], outcome["state"]) == ("status_check", "success")
    with unit_of_work(app.extensions["rop"].db) as uow:
        proofs = [r.result.get("proof") for r in uow.session.scalars(select(ProviderCallback))]
    assert proofs == ["unproven", "unproven"]


def test_without_a_secret_a_real_refund_is_confirmed_by_the_status_check(app, client, funded, sandbox):
    """3333 (success, then refunded at the provider): the unproven refund callback does not
    reverse by itself; the status check it triggers says refunded, and that reverses once."""
    found = _delivered(app, client, funded, "081200003333")
    _without_secret(app, sandbox)
    reference = found["attempts"][0]["reference"]
    assert _callback(client, sandbox, {"ref_id": reference, "rc": "60", "sku": "TEL10"}, None).status_code == 200
    drain(app, lambda: transaction(app, funded.tenant.id, found["id"])["status"] == "refunded")
    after = transaction(app, funded.tenant.id, found["id"])
    assert [e["detail"].get("via") for e in after["timeline"] if e["kind"] == "outcome"][-1] == "status_check"
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS, 0)


def test_a_refund_callback_whose_handler_failed_before_its_commit_is_still_confirmed(app, client, funded, sandbox,
                                                                                    monkeypatch):
    """The handler of an unproven refund callback fails before its commit (the fault suite:
    PostgreSQL restarted under it) and is retried. Its status check must still be asked:
    before, the retry found the spacing key the failed run had set in Redis, skipped the
    check, and the provider's refund of a delivered purchase was never applied."""
    from sqlalchemy.exc import OperationalError

    from hub.transactions import handlers
    from hub.transactions.messages import CheckTransactionStatus

    found = _delivered(app, client, funded, "081200003333")
    _without_secret(app, sandbox)
    real, failed = handlers.publish, []

    def publish_once_failing(ctx, uow, message, *args, **kwargs):
        if isinstance(message, CheckTransactionStatus) and not failed:
            failed.append(message)
            raise OperationalError("INSERT INTO bus_outbox", {}, Exception("server closed the connection"))
        return real(ctx, uow, message, *args, **kwargs)

    monkeypatch.setattr(handlers, "publish", publish_once_failing)
    reference = found["attempts"][0]["reference"]
    assert _callback(client, sandbox, {"ref_id": reference, "rc": "60", "sku": "TEL10"}, None).status_code == 200
    drain(app, lambda: transaction(app, funded.tenant.id, found["id"])["status"] == "refunded", timeout=60)
    assert failed, "the first run of the handler did not fail"
    after = transaction(app, funded.tenant.id, found["id"])
    assert after["status"] == "refunded"
    assert not [e for e in after["timeline"] if e["kind"] == "status_check" and "skipped" in e["detail"]]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS, 0)


def test_a_confirming_check_without_a_final_answer_is_asked_again(app, client, funded, sandbox, monkeypatch):
    """The status check that confirms a claimed refund gets no final answer the first time
    (the provider or the database away): it is retried, not dropped (a succeeded
    transaction has no scheduled checks), and the refund is applied."""
    found = _delivered(app, client, funded, "081200003333")
    _without_secret(app, sandbox)
    unanswered = _checks_unanswered(monkeypatch, first_only=True)
    reference = found["attempts"][0]["reference"]
    assert _callback(client, sandbox, {"ref_id": reference, "rc": "60", "sku": "TEL10"}, None).status_code == 200
    drain(app, lambda: transaction(app, funded.tenant.id, found["id"])["status"] == "refunded", timeout=60)
    assert unanswered and transaction(app, funded.tenant.id, found["id"])["status"] == "refunded"
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS, 0)


def test_a_refund_claimed_in_flight_is_confirmed_though_the_purchase_succeeded_before_the_check(
        app, client, funded, sandbox, monkeypatch):
    """The fault suite's lost refund: the provider delivered (3333) but the hub had not
    recorded the answer yet (the database restarting) when the provider's refund callback
    came. The unproven callback asked for a status check of the in-flight purchase; the
    delivery was recorded before that check ran; the check found a succeeded transaction and,
    asked without ``confirm``, did nothing, and the spacing key held back any other check: the
    refund was never applied. A refund (or failure) claimed in flight is now confirmed even
    when the transaction has succeeded by the time the check runs."""
    from hub.transactions import handlers
    from hub.transactions.messages import CheckTransactionStatus
    from hub.transactions.models import Transaction

    _without_secret(app, sandbox)
    found = _delivered_unrecorded(app, client, funded, monkeypatch)
    real_publish = handlers.publish
    asked = []

    def publish(ctx, uow, message, *args, **kwargs):
        if isinstance(message, CheckTransactionStatus):
            asked.append(message.payload)
            uow.after_commit(lambda: _record_late_success(app, message.payload["transaction_id"]))
        return real_publish(ctx, uow, message, *args, **kwargs)

    monkeypatch.setattr(handlers, "publish", publish)
    reference = found["attempts"][0]["reference"]
    assert _callback(client, sandbox, {"ref_id": reference, "rc": "60", "sku": "TEL10"}, None).status_code == 200
    drain(app, lambda: transaction(app, funded.tenant.id, found["id"])["status"] == "refunded")
    assert len(asked) == 1 and asked[0]["confirm"] is True, asked
    after = transaction(app, funded.tenant.id, found["id"])
    assert after["status"] == "refunded", [(e["kind"], e["detail"]) for e in after["timeline"]]
    statuses = [e["to_status"] for e in after["timeline"] if e["kind"] == "status"]
    assert statuses[-2:] == ["succeeded", "refunded"]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS, 0)
    with unit_of_work(app.extensions["rop"].db) as uow:
        assert uow.session.get(Transaction, found["id"]).status == "refunded"


def test_a_refund_claimed_in_flight_whose_check_went_unanswered_while_the_delivery_was_recorded_is_asked_again(
        app, client, funded, sandbox, monkeypatch):
    """The same race, one step later: the check of the claimed refund runs while the purchase
    is still in flight, gets no final answer, and the delivery is recorded meanwhile. A
    succeeded transaction has no scheduled checks, so the check is retried (now confirming)
    instead of ending there."""
    from hub.transactions import calls
    from hub.transactions.lifecycle import Outcome

    _without_secret(app, sandbox)
    found = _delivered_unrecorded(app, client, funded, monkeypatch)
    real_call, checks = calls.call_provider, []

    def check_unanswered_while_delivered(step, operation, *args, **kwargs):
        if operation != "check_status":
            return real_call(step, operation, *args, **kwargs)
        checks.append(step)
        if len(checks) > 1:
            return real_call(step, operation, *args, **kwargs)
        _record_late_success(app, step.transaction_id)
        return Outcome(state="unknown", message="timed out")

    monkeypatch.setattr(calls, "call_provider", check_unanswered_while_delivered)
    reference = found["attempts"][0]["reference"]
    assert _callback(client, sandbox, {"ref_id": reference, "rc": "60", "sku": "TEL10"}, None).status_code == 200
    drain(app, lambda: transaction(app, funded.tenant.id, found["id"])["status"] == "refunded", timeout=60)
    assert len(checks) == 2
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS, 0)


def test_a_forged_failure_of_a_purchase_in_flight_whose_check_goes_unanswered_is_left_to_the_scheduled_checks(
        app, client, funded, sandbox, monkeypatch):
    """A forged "failed" for a purchase in flight asks a check with ``confirm``; when its
    answer is not final and the purchase is still in flight, the check is not retried (no
    retries, no dead letter for a forger to cause): the scheduled checks go on."""
    _without_secret(app, sandbox)
    found = in_flight(app, client, funded)
    checks = _checks_unanswered(monkeypatch, first_only=False)
    reference = found["attempts"][0]["reference"]
    assert _callback(client, sandbox, {"ref_id": reference, "rc": "50", "sku": "TEL10"}, None).status_code == 200
    drain(app)
    assert len(checks) == 1
    # not failed, so no retry is waiting for its time (RQ schedules a failed job's retry)
    provider_queue = queue("provider", app.extensions["rop"].redis)
    assert provider_queue.scheduled_job_registry.count == 0 and provider_queue.failed_job_registry.count == 0
    after = transaction(app, funded.tenant.id, found["id"])
    assert after["status"] == "processing"
    asked = [e["detail"] for e in after["timeline"] if e["kind"] == "status_check"]
    assert len(asked) == 1 and "confirm" not in asked[0]


def test_an_unproven_success_does_not_hold_back_the_check_of_a_refund_claimed_after_it(app, client, funded, sandbox):
    """Without a secret: a "success" callback for a purchase in flight asks a check (the
    provider says success); a "refunded" callback within the minute asks its own check (a
    reversal's spacing is its own), where before it was skipped."""
    _without_secret(app, sandbox)
    found = in_flight(app, client, funded)
    reference = found["attempts"][0]["reference"]
    assert _callback(client, sandbox, {"ref_id": reference, "rc": "00", "sn": "SN1", "sku": "TEL10"},
                     None).status_code == 200
    drain(app, lambda: transaction(app, funded.tenant.id, found["id"])["status"] == "succeeded")
    assert _callback(client, sandbox, {"ref_id": reference, "rc": "60", "sku": "TEL10"}, None).status_code == 200
    drain(app)
    after = transaction(app, funded.tenant.id, found["id"])
    checks = [e["detail"] for e in after["timeline"] if e["kind"] == "status_check"]
    assert [("skipped" in c, c.get("confirm", False)) for c in checks] == [(False, False), (False, True)], checks
    assert after["status"] == "succeeded"  # the provider says success: nothing moves
    captured(app, funded, after)


def test_without_a_secret_a_forged_success_cannot_capture_a_purchase_that_failed(app, client, funded, sandbox):
    """7777 (pending, then failed at the provider): a forged unsigned "success" asks the
    provider, which says failed: the hold is released, nothing captured."""
    _without_secret(app, sandbox)
    created = buy(client, funded.tenant, "081200007777").json
    drain(app, lambda: transaction(app, funded.tenant.id, created["id"])["status"] == "processing")
    reference = transaction(app, funded.tenant.id, created["id"])["attempts"][0]["reference"]
    assert _callback(client, sandbox, {"ref_id": reference, "rc": "00", "sn": "FAKE", "sku": "TEL10"},
                     None).status_code == 200
    drain(app, lambda: transaction(app, funded.tenant.id, created["id"])["status"] == "failed")
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["serial_number"] is None
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert (money["available"], money["held"]) == (FUNDS, 0)


def test_the_demo_gives_its_sandbox_configuration_a_secret(app):
    """``rop demo`` configures the sandbox with a generated secret, and gives one to a demo
    configuration made before (no credentials)."""
    from hub.providers import service
    from hub.tenancy.demo import seed_demo

    seed_demo(app)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        row = next(r for r in service.list_configs(uow) if r.provider_code == "sandbox")
        first = service.callback_secret(row)
        config_id = row.id
    assert first and first != OLD_CONSTANT
    _without_secret(app, config_id)
    seed_demo(app)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        again = service.callback_secret(service.get_config(uow, config_id))
    assert again and again not in (first, OLD_CONSTANT)


def test_rop_providers_add_prints_the_generated_secret_once_on_stderr(app, monkeypatch, capsys, config):
    from hub.cli import main

    for key, value in {"ROP_DATABASE_URL": config.database_url, "ROP_REDIS_URL": config.redis_url,
                       "ROP_INSTANCE_PATH": str(config.instance_path), "ROP_PUBLIC_URL": "https://hub.example.com",
                       "ROP_ENCRYPTION_KEYS": ",".join(config.encryption_keys)}.items():
        monkeypatch.setenv(key, value)
    assert main(["providers", "add", "sandbox", "--name", "Generated"]) == 0
    out, err = capsys.readouterr()
    config_id = out.strip()
    assert config_id.startswith("pcf_") and "callback secret" in err
    assert f"https://hub.example.com/callbacks/sandbox/{config_id}" in err
    assert callback_secret(app, config_id) in err
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        stored = uow.session.get(ProviderConfig, config_id).credentials_encrypted
    assert callback_secret(app, config_id) not in stored
