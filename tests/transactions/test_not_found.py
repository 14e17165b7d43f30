"""'Not found' is an answer: while the reference is young the hub keeps checking; after the
provider's grace period the purchase was never received, so nothing was bought: the hub
tries the next offer of the route, and with none left fails the transaction and releases
the hold. Through the sandbox (test number 2222) and through a real HTTP provider (the Acme
simulator behind a fault proxy that loses the request on the way)."""
from __future__ import annotations

import datetime as dt

import pytest
from rop_sandbox.plugin import SandboxProvider, purchase_count, purchase_counts
from sqlalchemy import update

from hub.db import unit_of_work, utcnow
from hub.providers import service as providers
from hub.providers.testing import Fault, FaultProxy
from hub.transactions import sweep
from hub.transactions.models import Attempt
from tests.providers.partner.acme import AcmeProvider
from tests.providers.partner.acme_simulator import AcmeSimulator

from .conftest import FUNDS, add_sandbox, buy, drain, transaction, wallet


def _sent_long_ago(app, transaction_id: str, seq: int, seconds: float) -> None:
    """The attempt was sent ``seconds`` ago (the provider's grace period has passed)."""
    with unit_of_work(app.extensions["rop"].db) as uow:
        uow.session.execute(update(Attempt).where(Attempt.transaction_id == transaction_id, Attempt.seq == seq)
                            .values(sent_at=utcnow() - dt.timedelta(seconds=seconds)))
        uow.commit()


def _status_checks_due(app) -> None:
    with app.app_context():
        sweep.sweep(now=utcnow() + dt.timedelta(seconds=1))
    drain(app)


def _readings(found: dict) -> list[str]:
    return [e["detail"]["reading"] for e in found["timeline"] if e["kind"] == "outcome" and "reading" in e["detail"]]


def test_not_found_while_young_keeps_checking_then_tries_the_next_offer_then_releases_the_hold(
        app, client, live, funded, fast, sandbox):
    add_sandbox(app, "Backup")
    created = buy(client, funded.tenant, "081200002222").json  # 2222: the request is lost on the way
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "processing" and found["attempts"][0]["state"] == "unknown"

    _status_checks_due(app)  # "not found" a moment after sending: it may still arrive
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "processing" and [a["state"] for a in found["attempts"]] == ["unknown"]
    assert "checking again" in _readings(found)[-1]
    assert wallet(app, funded.tenant.id, funded.wallet_id)["held"] == created["price"]

    _sent_long_ago(app, created["id"], 1, SandboxProvider.not_found_grace + 1)
    _status_checks_due(app)  # past the grace period: never received; the next offer is tried
    found = transaction(app, funded.tenant.id, created["id"])
    assert [a["state"] for a in found["attempts"]] == ["not_found", "unknown"]
    assert found["attempts"][0]["config_id"] != found["attempts"][1]["config_id"]
    assert "never received" in _readings(found)[-1]

    _sent_long_ago(app, created["id"], 2, SandboxProvider.not_found_grace + 1)
    _status_checks_due(app)  # the last offer was never received either: failed, hold released
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "failed" and [a["state"] for a in found["attempts"]] == ["not_found", "not_found"]
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert money["available"] == FUNDS and money["held"] == 0
    assert purchase_counts(app.extensions["rop"].redis) == {}  # nothing was ever bought


@pytest.fixture
def acme(app):
    """The Acme plugin installed in the hub for this test (registered, then removed)."""
    host = app.extensions["rop"].extras["plugins"]
    host.providers["acme"] = AcmeProvider
    try:
        yield AcmeProvider
    finally:
        host.providers.pop("acme", None)


def test_a_purchase_the_provider_never_received_goes_to_the_next_provider_after_the_grace_period(
        app, client, live, funded, fast, sandbox, acme, route_first):
    from hub.context import CallContext
    from hub.products.sync import sync_config

    db = app.extensions["rop"].db
    with AcmeSimulator(products={"TEL10": ("Telkomsel 10,000", "pulsa", "telkomsel", 10_100)}) as simulator, \
            FaultProxy(simulator.url) as proxy:
        with app.app_context(), unit_of_work(db) as uow:
            row = providers.add_config(uow, "acme", "Acme", settings={"base_url": proxy.url, "timeout": 1.0},
                                       credentials={"api_key": "key", "api_secret": "secret",
                                                    "callback_secret": "cbsecret"})
            uow.commit()
            acme_config = row.id
        with app.app_context():
            assert sync_config(CallContext.system(actor="tests"), lambda: unit_of_work(db), acme_config)[
                "status"] == "succeeded"
        route_first(acme_config)
        proxy.set(Fault.HOLD, forward=False)  # the purchase is lost on the way: a read timeout
        created = buy(client, funded.tenant, "081212345678").json
        drain(app)
        proxy.clear()
        found = transaction(app, funded.tenant.id, created["id"])
        assert found["status"] == "processing" and found["attempts"][0]["state"] == "unknown"
        assert found["attempts"][0]["config_id"] == acme_config

        _status_checks_due(app)  # Acme answers 404 ORDER_NOT_FOUND; the reference is young
        found = transaction(app, funded.tenant.id, created["id"])
        assert found["status"] == "processing" and len(found["attempts"]) == 1

        _sent_long_ago(app, created["id"], 1, AcmeProvider.not_found_grace + 1)
        _status_checks_due(app)
        found = transaction(app, funded.tenant.id, created["id"])
        assert found["status"] == "succeeded"
        assert [(a["state"], a["config_id"]) for a in found["attempts"]] == [
            ("not_found", acme_config), ("success", sandbox)]
        assert simulator.orders == {}  # Acme never received it
        assert purchase_count(app.extensions["rop"].redis, f"{created['id']}-2") == 1
        assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS - created["price"]


def test_not_found_from_a_provider_without_a_grace_period_stays_unknown(app, client, live, funded, fast, sandbox,
                                                                          monkeypatch):
    monkeypatch.setattr(SandboxProvider, "not_found_grace", None)
    created = buy(client, funded.tenant, "081200002222").json
    drain(app)
    _sent_long_ago(app, created["id"], 1, 3600)
    _status_checks_due(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "processing" and [a["state"] for a in found["attempts"]] == ["unknown"]
    assert "declares no grace period" in _readings(found)[-1]
    assert wallet(app, funded.tenant.id, funded.wallet_id)["held"] == created["price"]


def test_in_review_a_recheck_that_finds_nothing_past_the_grace_period_fails_it_and_releases_the_hold(
        app, client, live, funded, fast, sandbox):
    from hub.context import CallContext
    from hub.transactions import client as transactions

    created = buy(client, funded.tenant, "081200002222").json
    drain(app)
    with app.app_context():
        assert sweep.sweep(now=utcnow() + dt.timedelta(hours=2))["review"] == 1
    drain(app)
    assert transaction(app, funded.tenant.id, created["id"])["status"] == "review"
    _sent_long_ago(app, created["id"], 1, SandboxProvider.not_found_grace + 1)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        transactions.recheck(CallContext.system(actor="admin:ops@example.com"), uow, created["id"])
        uow.commit()
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "failed" and "never received" in found["error"]
    assert [a["state"] for a in found["attempts"]] == ["not_found"]  # in review no other offer is tried
    money = wallet(app, funded.tenant.id, funded.wallet_id)
    assert money["available"] == FUNDS and money["held"] == 0
