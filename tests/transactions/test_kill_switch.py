"""The kill switch stops new purchases only: an unknown outcome is still asked of the provider.

The attack: buy a 6666 number (outcome unknown; the provider would report success), click
Disable on the configuration: the next status check was answered locally ("provider
configuration is switched off"), the transaction failed and the hold was released — the
customer delivered, the tenant's money back. The cause in the core: a ``rejected`` answer to
a status check made the transaction ``failed``.
"""
from __future__ import annotations

import datetime as dt

from rop_digiflazz.simulator import DigiflazzSimulator

from hub.context import CallContext
from hub.db import unit_of_work, utcnow
from hub.transactions import sweep

from .conftest import FUNDS, buy, captured, check_now, drain, in_flight, transaction, wallet

OPERATOR = CallContext.system(actor="cli:tests")


def test_a_disabled_tenant_and_a_tenant_switched_off_a_configuration_still_get_their_answer(
        app, client, funded, fast, sandbox):
    from hub.providers import service as providers
    from hub.tenancy.service import set_tenant_status

    found = in_flight(app, client, funded)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        providers.enable_for_tenant(uow, sandbox, funded.tenant.id, False)
        set_tenant_status(OPERATOR, uow, funded.tenant.id, "disabled")
        uow.commit()
    check_now(app)
    after = transaction(app, funded.tenant.id, found["id"])
    assert after["status"] == "succeeded"
    captured(app, funded, after)


def test_a_rejected_status_check_leaves_the_outcome_unknown_and_goes_to_review_past_the_deadline(
        app, client, funded, fast, sandbox):
    """A real Digiflazz-protocol server: the purchase is pending; the status check is refused
    (rc 41, a bad signature: the operator replaced the API key with a wrong one — a
    configuration problem, not the purchase's outcome). Before, that failed the transaction
    and released the hold while the provider delivered."""
    from hub.products.sync import sync_config
    from hub.providers import service as providers

    with DigiflazzSimulator(username="hubuser", api_key="right-key") as sim, app.app_context():
        db = app.extensions["rop"].db
        with unit_of_work(db) as uow:
            config_id = providers.add_config(uow, "digiflazz", "Digiflazz", settings={"base_url": sim.url},
                                             credentials={"username": "hubuser", "api_key": "right-key"}).id
            providers.set_enabled(uow, sandbox, False)
            uow.commit()
        assert sync_config(OPERATOR, lambda: unit_of_work(db), config_id)["status"] == "succeeded"
        found = in_flight(app, client, funded, "087800001233", product_code="XLD10")  # pending at Digiflazz
        assert found["attempts"][0]["config_id"] == config_id

        with unit_of_work(db) as uow:
            providers.set_credentials(uow, config_id, {"username": "hubuser", "api_key": "wrong-key"})
            uow.commit()
        check_now(app)
        after = transaction(app, funded.tenant.id, found["id"])
        assert after["status"] == "processing" and after["attempts"][0]["state"] == "unknown"
        last = [e["detail"] for e in after["timeline"] if e["kind"] == "outcome"][-1]
        assert (last["via"], last["state"], last["treated_as"]) == ("status_check", "rejected", "unknown")
        assert wallet(app, funded.tenant.id, funded.wallet_id)["held"] == found["price"]

        with app.app_context():
            assert sweep.sweep(now=utcnow() + dt.timedelta(hours=2))["review"] == 1
        in_review = transaction(app, funded.tenant.id, found["id"])
        assert in_review["status"] == "review"
        assert wallet(app, funded.tenant.id, funded.wallet_id)["held"] == found["price"]
        assert [a["state"] for a in in_review["attempts"]] == ["unknown"]  # never tried elsewhere

        with unit_of_work(db) as uow:  # the key put right; the operator asks again
            providers.set_credentials(uow, config_id, {"username": "hubuser", "api_key": "right-key"})
            uow.commit()
        from hub.transactions import client as transactions

        with unit_of_work(db) as uow:
            transactions.recheck(OPERATOR, uow, found["id"])
            uow.commit()
        drain(app, lambda: transaction(app, funded.tenant.id, found["id"])["status"] == "succeeded")
    captured(app, funded, transaction(app, funded.tenant.id, found["id"]))


def test_a_rejected_purchase_still_means_it_did_not_happen(app, client, funded, fast, sandbox):
    """The other side of the rule: ``rejected`` answering the purchase itself (4444, out of
    stock) releases the hold at once (no offer left)."""
    created = buy(client, funded.tenant, "081200004444").json
    drain(app)
    found = transaction(app, funded.tenant.id, created["id"])
    assert found["status"] == "failed" and found["attempts"][0]["state"] == "rejected"
    assert wallet(app, funded.tenant.id, funded.wallet_id)["available"] == FUNDS


def test_in_flight_purchases_are_counted_per_configuration_and_tenant(app, client, funded, fast, sandbox,
                                                                      tenant_factory, config, monkeypatch,
                                                                      capsys):
    from hub.cli import main
    from hub.transactions import client as transactions
    from hub.wallets import accounts as wallets

    other = tenant_factory()
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        wallets.topup(other.operator, uow, None, FUNDS, "seed")
        uow.commit()
    for number in ("081200006666", "081200008888"):
        in_flight(app, client, funded, number)
    in_flight(app, client, type(funded)(other, None), "081200005555")
    assert buy(client, funded.tenant, "081200001234").status_code == 202  # succeeds: not in flight
    drain(app)
    with app.app_context(), unit_of_work(app.extensions["rop"].db) as uow:
        assert transactions.in_flight_by_config(OPERATOR, uow, [sandbox, "pcf_none"]) == {sandbox: 3, "pcf_none": 0}
        assert transactions.in_flight_by_config(OPERATOR, uow, [sandbox], tenant_id=other.id) == {sandbox: 1}
        assert transactions.in_flight_by_config(OPERATOR, uow) == {sandbox: 3}
    for key, value in {"ROP_DATABASE_URL": config.database_url, "ROP_REDIS_URL": config.redis_url,
                       "ROP_INSTANCE_PATH": str(config.instance_path),
                       "ROP_ENCRYPTION_KEYS": ",".join(config.encryption_keys)}.items():
        monkeypatch.setenv(key, value)
    assert main(["providers", "disable", sandbox]) == 0
    assert "3 purchase(s) in flight there keep their status checks and callbacks" in capsys.readouterr().out
